-- Per symbol and 20 seconds: how many 5-second bars traded, and the busiest of them.
CREATE STREAM busiest_bars AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS bars, MAX(volume) AS busiest_bar
FROM (
  SELECT symbol, SUM(qty) AS volume
  FROM ticks
  GROUP BY symbol
  WINDOW TUMBLING(INTERVAL '5' SECOND)
) AS bars
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '20' SECOND)
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '5s',
  'busiest_bars.type' = 'file_sink',
  'busiest_bars.path' = 'docs/examples/out/busiest_bars.jsonl'
);

-- Per symbol, its busiest 5-second bar so far: a table over a window's rows.
CREATE TABLE best_bar AS
SELECT symbol, MAX(volume) AS best_volume, COUNT(*) AS bars
FROM (
  SELECT symbol, SUM(qty) AS volume
  FROM ticks
  GROUP BY TUMBLE(ts, INTERVAL '5' SECOND), symbol
)
GROUP BY symbol
EMIT CHANGES
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.watermark.max_out_of_orderness' = '5s',
  'best_bar.type' = 'file_sink',
  'best_bar.path' = 'docs/examples/out/best_bar.jsonl'
);
