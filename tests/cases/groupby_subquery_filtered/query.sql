CREATE TABLE rare_symbols AS
SELECT symbol PRIMARY KEY, trades
FROM (SELECT symbol, COUNT(*) AS trades FROM trades GROUP BY symbol) AS counts
WHERE trades <= 40
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'trades.batch.size' = '2',
  'rare_symbols.type' = 'file_sink',
  'rare_symbols.path' = '{out}',
  'rare_symbols.format' = 'json'
);
