CREATE TABLE largest_notionals AS
SELECT rn AS rank, seq, symbol, notional
FROM (
  SELECT seq, symbol, CAST(price AS DECIMAL(18,4)) * qty AS notional,
         ROW_NUMBER() OVER (ORDER BY CAST(price AS DECIMAL(18,4)) * qty DESC, seq) AS rn
  FROM trades
)
WHERE rn <= 5
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'trades.batch.size' = '2',
  'largest_notionals.type' = 'file_sink',
  'largest_notionals.path' = '{out}',
  'largest_notionals.format' = 'json'
);
