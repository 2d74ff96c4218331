CREATE TABLE busiest_windows AS
SELECT symbol, MAX(trades) AS busiest, COUNT(*) AS windows
FROM (
  SELECT symbol, COUNT(*) AS trades
  FROM trades
  GROUP BY TUMBLE(ts, INTERVAL '15' SECOND), symbol
)
GROUP BY symbol
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '3s',
  'busiest_windows.type' = 'file_sink',
  'busiest_windows.path' = '{out}',
  'busiest_windows.format' = 'json'
);
