-- Bursts of trading per symbol: a session ends after 5 seconds without a trade.
SELECT symbol,
       _window_start AS session_start,
       _window_end AS session_end,
       COUNT(*) AS trades,
       SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW SESSION(5s)
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s'
);
