CREATE TABLE symbol_totals AS
SELECT symbol, COUNT(*) AS trades,
       SUM(CAST(price AS DECIMAL(18,4))) AS price_sum,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM trades
GROUP BY symbol
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'symbol_totals.type' = 'file_sink',
  'symbol_totals.path' = '{out}',
  'symbol_totals.format' = 'json'
);
