CREATE STREAM sliding_running AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW SLIDING(INTERVAL '20' SECOND, INTERVAL '5' SECOND)
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'trades.batch.size' = '2',
  'sliding_running.type' = 'file_sink',
  'sliding_running.path' = '{out}',
  'sliding_running.format' = 'json'
);
