-- The sessions of sessions.sql as a changelog, one record per micro-batch: when an
-- out-of-order record bridges two sessions, the row of the one whose start moves is
-- retracted (-D) before the merged session's row (+U).
SELECT symbol,
       _window_start AS session_start,
       _window_end AS session_end,
       COUNT(*) AS trades,
       SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW SESSION(5s)
EMIT CHANGES
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.batch.size' = '1',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s'
);
