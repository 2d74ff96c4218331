CREATE TABLE trade_totals AS
SELECT COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional,
       MIN(CAST(price AS DECIMAL(18,4))) AS low,
       MAX(CAST(price AS DECIMAL(18,4))) AS high
FROM trades
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'trades.batch.size' = '2',
  'trade_totals.type' = 'file_sink',
  'trade_totals.path' = '{out}',
  'trade_totals.format' = 'json'
);
