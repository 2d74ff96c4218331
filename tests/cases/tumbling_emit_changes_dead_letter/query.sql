CREATE STREAM running_dead_lettered AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'trades.batch.size' = '2',
  'late.data.strategy' = 'dead_letter',
  'late.data.dead_letter.path' = 'late.jsonl',
  'running_dead_lettered.type' = 'file_sink',
  'running_dead_lettered.path' = '{out}',
  'running_dead_lettered.format' = 'json'
);
