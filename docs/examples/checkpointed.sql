-- Ten-second bars over a watched folder, checkpointed every second: run it with a state dir,
--   mkdir -p docs/examples/out/arrivals
--   cp docs/examples/ticks.csv docs/examples/out/arrivals/1.csv
--   ferris run --state-dir docs/examples/out/state docs/examples/checkpointed.sql
-- kill it any way you like (kill -9 too) and run the same command again: it resumes from its
-- last checkpoint, and docs/examples/out/checkpointed_bars/ holds every bar exactly once.
CREATE STREAM checkpointed_bars AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM arrivals
GROUP BY symbol
WINDOW TUMBLING(10s)
EMIT FINAL
WITH (
  'arrivals.type' = 'file_source',
  'arrivals.path' = 'docs/examples/out/arrivals/',
  'arrivals.format' = 'csv',
  'arrivals.watch' = 'true',
  'arrivals.event.time.field' = 'ts',
  'checkpointed_bars.type' = 'file_sink',
  'checkpointed_bars.path' = 'docs/examples/out/checkpointed_bars/',
  'checkpoint.interval' = '1s'
);
