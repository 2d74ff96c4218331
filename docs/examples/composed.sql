-- A common table expression feeding a window: the big trades' volume per symbol and
-- ten seconds. The watermark is the source's: a small trade still moves it on.
CREATE STREAM big_volume AS
WITH big AS (
  SELECT symbol, qty FROM ticks WHERE qty >= 100
)
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM big
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '5s',
  'big_volume.type' = 'file_sink',
  'big_volume.path' = 'docs/examples/out/big_volume.jsonl'
);

-- A window over the UNION ALL of two streams: their watermarks merge (the lesser holds).
CREATE STREAM all_volume AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM (
  SELECT symbol, qty FROM ticks
  UNION ALL
  SELECT symbol, qty FROM trades
) AS both_feeds
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts',
  'ticks.watermark.max_out_of_orderness' = '5s',
  'trades.type' = 'file_source',
  'trades.path' = 'docs/examples/trades.csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.max_out_of_orderness' = '5s',
  'all_volume.type' = 'file_sink',
  'all_volume.path' = 'docs/examples/out/all_volume.jsonl'
);
