CREATE STREAM dead_lettered_counts AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '1s',
  'late.data.strategy' = 'dead_letter',
  'late.data.dead_letter.path' = 'late.jsonl',
  'dead_lettered_counts.type' = 'file_sink',
  'dead_lettered_counts.path' = '{out}',
  'dead_lettered_counts.format' = 'json'
);
