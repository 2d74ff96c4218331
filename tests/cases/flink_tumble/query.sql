CREATE STREAM flink_windows AS
SELECT symbol,
       TUMBLE_START(ts, INTERVAL '15' SECOND) AS window_start,
       COUNT(*) AS trades, SUM(qty) AS volume, MAX(price) AS max_price
FROM trades
GROUP BY TUMBLE(ts, INTERVAL '15' SECOND), symbol
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '3s',
  'flink_windows.type' = 'file_sink',
  'flink_windows.path' = '{out}',
  'flink_windows.format' = 'json'
);
