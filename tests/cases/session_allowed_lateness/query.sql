CREATE STREAM corrected_sessions AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW SESSION(INTERVAL '3' SECOND)
EMIT FINAL
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '1s',
  'trades.batch.size' = '2',
  'late.data.strategy' = 'allowed_lateness',
  'late.data.allowed.lateness' = '3s',
  'corrected_sessions.type' = 'file_sink',
  'corrected_sessions.path' = '{out}',
  'corrected_sessions.format' = 'json'
);
