CREATE TABLE biggest_trades AS
SELECT symbol, rn AS rank, qty, seq
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY symbol ORDER BY qty DESC, seq) AS rn
  FROM trades
)
WHERE rn <= 3
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'trades.batch.size' = '2',
  'biggest_trades.type' = 'file_sink',
  'biggest_trades.path' = '{out}',
  'biggest_trades.format' = 'json'
);
