CREATE STREAM both_venues AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM (
  SELECT symbol, price, qty FROM trades WHERE symbol <> 'TSLA'
  UNION ALL
  SELECT symbol, price, qty FROM more_trades
) AS all_trades
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
  'more_trades.type' = 'file_source',
  'more_trades.path' = '{in:more_trades.csv}',
  'more_trades.format' = 'csv',
  'more_trades.event.time.field' = 'ts',
  'more_trades.watermark.strategy' = 'bounded_out_of_orderness',
  'more_trades.watermark.max_out_of_orderness' = '2s',
  'both_venues.type' = 'file_sink',
  'both_venues.path' = '{out}',
  'both_venues.format' = 'json'
);
