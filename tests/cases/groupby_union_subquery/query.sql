CREATE TABLE symbol_totals AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM (
  SELECT symbol, price, qty FROM trades WHERE qty > 50
  UNION ALL
  SELECT symbol, price, qty FROM more_trades
) AS all_trades
GROUP BY symbol
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'more_trades.type' = 'file_source',
  'more_trades.path' = '{in:more_trades.csv}',
  'more_trades.format' = 'csv',
  'more_trades.event.time.field' = 'ts',
  'more_trades.watermark.strategy' = 'bounded_out_of_orderness',
  'more_trades.watermark.max_out_of_orderness' = '5s',
  'symbol_totals.type' = 'file_sink',
  'symbol_totals.path' = '{out}',
  'symbol_totals.format' = 'json'
);
