CREATE STREAM busiest_slides AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS windows, MAX(trades) AS most_trades
FROM (
  SELECT symbol, COUNT(*) AS trades
  FROM trades
  GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '20' SECOND), symbol
)
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '30' SECOND)
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'busiest_slides.type' = 'file_sink',
  'busiest_slides.path' = '{out}',
  'busiest_slides.format' = 'json'
);
