CREATE STREAM session_running AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW SESSION(INTERVAL '4' SECOND)
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '1s',
  'trades.batch.size' = '2',
  'session_running.type' = 'file_sink',
  'session_running.path' = '{out}',
  'session_running.format' = 'json'
);
