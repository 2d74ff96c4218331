-- Ten-second bars per symbol, in event time, written once each window is final.
CREATE STREAM bars AS
SELECT symbol,
       _window_start AS window_start,
       _window_end AS window_end,
       COUNT(*) AS trades,
       SUM(qty) AS volume,
       MAX(price) AS high
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(10s)
EMIT FINAL
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s',
  'bars.type' = 'file_sink',
  'bars.path' = 'docs/examples/out/bars.jsonl'
);
