-- A table without a window: a changelog of upserts, one row per symbol changed by each micro-batch.
CREATE TABLE volume_changes AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
EMIT CHANGES
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.batch.size' = '4',
  'volume_changes.type' = 'file_sink',
  'volume_changes.path' = 'docs/examples/out/volume_changes.jsonl'
);
