CREATE STREAM minute_of_bars AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS bars, MAX(trades) AS busiest_bar, SUM(volume) AS volume,
       SUM(notional) AS notional, MAX(bar_start) AS last_bar
FROM (
  SELECT symbol, _window_start AS bar_start, COUNT(*) AS trades, SUM(qty) AS volume,
         SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
  FROM trades
  GROUP BY symbol
  HAVING COUNT(*) >= 2
  WINDOW TUMBLING(INTERVAL '10' SECOND)
) AS bars
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '1' MINUTE)
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '3s',
  'minute_of_bars.type' = 'file_sink',
  'minute_of_bars.path' = '{out}',
  'minute_of_bars.format' = 'json'
);
