-- Ten-second windows every five seconds: each record counts in two windows.
SELECT symbol, _window_start, _window_end, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW SLIDING(10s, 5s)
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s'
);
