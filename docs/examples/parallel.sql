-- Per-symbol volume per minute over a folder of daily files, as two instances: each file
-- falls to one instance, and each symbol's rows meet in one instance of the window operator.
CREATE STREAM minute_volume AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM daily
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '1' MINUTE)
EMIT FINAL
WITH (
  'parallelism' = '2',
  'daily.type' = 'file_source',
  'daily.path' = 'docs/examples/daily',
  'daily.format' = 'csv',
  'daily.event.time.field' = 'ts',
  'minute_volume.type' = 'file_sink',
  'minute_volume.path' = 'docs/examples/out/minute_volume.jsonl'
);
