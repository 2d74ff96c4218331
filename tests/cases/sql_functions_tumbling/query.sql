CREATE FUNCTION notional(price DECIMAL(18,4), qty BIGINT) RETURNS DECIMAL(38,4)
AS 'price * qty';

CREATE FUNCTION fee(amount DECIMAL(38,4)) RETURNS DECIMAL(38,8)
AS 'CASE WHEN amount > 10000 THEN amount * 0.0005 ELSE amount * 0.001 END';

CREATE STREAM fees AS
SELECT symbol, _window_start AS window_start,
       SUM(notional(CAST(price AS DECIMAL(18,4)), qty)) AS notional,
       SUM(fee(notional(CAST(price AS DECIMAL(18,4)), qty))) AS fees
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'fees.type' = 'file_sink',
  'fees.path' = '{out}',
  'fees.format' = 'json'
);
