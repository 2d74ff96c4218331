-- The two symbols of most volume in each 10-second window, written once per window.
CREATE STREAM top_symbols AS
WITH volumes AS (
  SELECT symbol, _window_start AS window_start, SUM(qty) AS volume
  FROM ticks
  GROUP BY symbol
  WINDOW TUMBLING(INTERVAL '10' SECOND)
)
SELECT window_start, rn AS rank, symbol, volume
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY volume DESC) AS rn
  FROM volumes
)
WHERE rn <= 2
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '5s',
  'top_symbols.type' = 'file_sink',
  'top_symbols.path' = 'docs/examples/out/top_symbols.jsonl'
);
