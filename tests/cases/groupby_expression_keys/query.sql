CREATE TABLE size_classes AS
SELECT SUBSTR(symbol, 1, 1) AS initial,
       CASE WHEN qty >= 400 THEN 'big' ELSE CAST(qty / 100 AS VARCHAR) END AS size_class,
       COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM trades
GROUP BY SUBSTR(symbol, 1, 1), CASE WHEN qty >= 400 THEN 'big' ELSE CAST(qty / 100 AS VARCHAR) END
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'trades.batch.size' = '2',
  'size_classes.type' = 'file_sink',
  'size_classes.path' = '{out}',
  'size_classes.format' = 'json'
);
