CREATE STREAM file_split_counts AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'file_split_counts.type' = 'file_sink',
  'file_split_counts.path' = '{out}',
  'file_split_counts.format' = 'json'
);
