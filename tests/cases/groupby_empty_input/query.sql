CREATE TABLE symbol_totals AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume
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
  'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DOUBLE, qty BIGINT, seq BIGINT',
  'symbol_totals.type' = 'file_sink',
  'symbol_totals.path' = '{out}',
  'symbol_totals.format' = 'json'
);
