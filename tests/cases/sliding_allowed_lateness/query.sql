CREATE STREAM corrected_sliding AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW SLIDING(INTERVAL '10' SECOND, INTERVAL '5' SECOND)
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
  'late.data.allowed.lateness' = '4s',
  'corrected_sliding.type' = 'file_sink',
  'corrected_sliding.path' = '{out}',
  'corrected_sliding.format' = 'json'
);
