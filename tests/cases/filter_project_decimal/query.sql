CREATE STREAM sized_trades AS
SELECT seq, ts, symbol,
       CAST(price AS DECIMAL(18,4)) * qty AS notional,
       CASE WHEN qty > 100 THEN 'big' ELSE 'small' END AS size
FROM trades
WHERE qty >= 25 AND symbol <> 'TSLA'
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'sized_trades.type' = 'file_sink',
  'sized_trades.path' = '{out}',
  'sized_trades.format' = 'json'
);
