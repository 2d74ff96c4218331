-- The two largest trades of each symbol so far, kept up to date as trades come.
CREATE TABLE top_trades AS
SELECT symbol, rn AS rank, qty, ts
FROM (
  SELECT symbol, qty, ts,
         ROW_NUMBER() OVER (PARTITION BY symbol ORDER BY qty DESC) AS rn
  FROM ticks
)
WHERE rn <= 2
EMIT CHANGES
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.batch.size' = '4',
  'top_trades.type' = 'file_sink',
  'top_trades.path' = 'docs/examples/out/top_trades.jsonl'
);
