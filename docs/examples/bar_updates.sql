-- The same bars as tumbling.sql, updated after every micro-batch of 4 records.
CREATE STREAM bar_updates AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(10s)
EMIT CHANGES
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.batch.size' = '4',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s',
  'bar_updates.type' = 'file_sink',
  'bar_updates.path' = 'docs/examples/out/bar_updates.jsonl'
);
