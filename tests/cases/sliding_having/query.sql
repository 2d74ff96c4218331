CREATE STREAM sliding_volume AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
HAVING COUNT(*) >= 3
WINDOW SLIDING(INTERVAL '20' SECOND, INTERVAL '5' SECOND)
EMIT FINAL
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'sliding_volume.type' = 'file_sink',
  'sliding_volume.path' = '{out}',
  'sliding_volume.format' = 'json'
);
