-- Late records go to a file instead of being dropped.
CREATE STREAM on_time_bars AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(10s)
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s',
  'late.data.strategy' = 'dead_letter',
  'late.data.dead_letter.path' = 'docs/examples/out/late_ticks.jsonl',
  'on_time_bars.type' = 'file_sink',
  'on_time_bars.path' = 'docs/examples/out/on_time_bars.jsonl'
);
