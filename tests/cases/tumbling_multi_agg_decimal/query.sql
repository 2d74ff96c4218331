CREATE STREAM ten_second_stats AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades,
       SUM(CAST(price AS DECIMAL(18,4))) AS notional,
       MIN(qty) AS min_qty,
       MAX(qty) AS max_qty,
       AVG(CAST(price AS DOUBLE)) AS avg_price
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
  'ten_second_stats.type' = 'file_sink',
  'ten_second_stats.path' = '{out}',
  'ten_second_stats.format' = 'json'
);
