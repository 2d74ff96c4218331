CREATE STREAM distinct_sizes AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, COUNT_DISTINCT(qty) AS distinct_qty
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
  'trades.watermark.max_out_of_orderness' = '2s',
  'distinct_sizes.type' = 'file_sink',
  'distinct_sizes.path' = '{out}',
  'distinct_sizes.format' = 'json'
);
