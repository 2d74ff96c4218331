CREATE STREAM corrected_counts AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(CAST(price AS DECIMAL(18,4))) AS notional
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
  'trades.watermark.max_out_of_orderness' = '1s',
  'late.data.strategy' = 'allowed_lateness',
  'late.data.allowed.lateness' = '5s',
  'corrected_counts.type' = 'file_sink',
  'corrected_counts.path' = '{out}',
  'corrected_counts.format' = 'json'
);
