CREATE STREAM big_trade_volume AS
WITH big AS (
  SELECT symbol, qty FROM trades WHERE qty >= 100
)
SELECT symbol, _window_start AS window_start, COUNT(*) AS big_trades, SUM(qty) AS volume
FROM big
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
  'big_trade_volume.type' = 'file_sink',
  'big_trade_volume.path' = '{out}',
  'big_trade_volume.format' = 'json'
);
