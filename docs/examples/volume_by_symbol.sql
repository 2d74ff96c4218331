-- A table: one row per symbol. The key is the GROUP BY column.
CREATE TABLE volume_by_symbol AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume, MAX(ts) AS last_trade
FROM trades
GROUP BY symbol
WITH (
  'trades.type' = 'file_source',
  'trades.path' = 'docs/examples/trades.csv',
  'volume_by_symbol.type' = 'file_sink',
  'volume_by_symbol.path' = 'docs/examples/out/volume_by_symbol.jsonl'
);

SHOW TABLES;
DESCRIBE volume_by_symbol;
