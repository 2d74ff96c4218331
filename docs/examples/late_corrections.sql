-- Windows stay open 5 seconds past their end: a late record corrects its window's row.
CREATE STREAM corrected_bars AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(10s)
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.batch.size' = '1',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '2s',
  'late.data.strategy' = 'allowed_lateness',
  'late.data.allowed.lateness' = '5s',
  'corrected_bars.type' = 'file_sink',
  'corrected_bars.path' = 'docs/examples/out/corrected_bars.jsonl'
);
