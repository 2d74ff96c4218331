-- FerrisStreams quickstart: CSV in, SQL, JSON lines out. No broker needed.
-- Run from the repository root:  ferris run demos/quickstart/quickstart.sql
-- Paths in WITH are relative to the working directory.

-- (a) A stream: every transaction over 100, with a 1.5% fee.
--     CREATE STREAM appends one output row per matching input row.
--     The @ferris: hints say how Kubernetes runs it (ferris-k8s-deploy, docs/kubernetes.md):
--     a report, run every morning. They change nothing in `ferris run`.
-- @ferris:workload = reporting
-- @ferris:schedule = 0 6 * * *
CREATE STREAM large_fees AS
SELECT
  txn_id,
  account,
  UPPER(category) AS category,
  -- The CSV column is read as a number; casting it to DECIMAL(12,2) makes it exact cents.
  CAST(amount AS DECIMAL(12,2)) AS amount,
  -- DECIMAL * DECIMAL stays exact: DECIMAL(12,2) * DECIMAL(6,4) has scale 2 + 4 = 6.
  CAST(amount AS DECIMAL(12,2)) * CAST(0.015 AS DECIMAL(6,4)) AS fee
FROM transactions
WHERE CAST(amount AS DECIMAL(12,2)) > 100
WITH (
  -- The source: 'transactions' is the name the FROM clause uses.
  'transactions.type' = 'file_source',
  'transactions.path' = 'demos/quickstart/transactions.csv',
  'transactions.format' = 'csv',
  -- The sink: named like the job. JSON lines, committed atomically when the job ends.
  'large_fees.type' = 'file_sink',
  'large_fees.path' = 'demos/quickstart/out/large_fees.jsonl',
  'large_fees.format' = 'json'
);

-- (b) A table: total spend per category, one row per key (the GROUP BY column).
--     EMIT FINAL: a group's row is written once it can no longer change, here when the
--     file has been read to its end.
--     Each statement declares the sources it reads in its own WITH.
-- @ferris:workload = reporting
-- @ferris:schedule = 0 6 * * *
CREATE TABLE spend_by_category AS
SELECT
  category,
  COUNT(*) AS txns,
  SUM(CAST(amount AS DECIMAL(12,2))) AS total
FROM transactions
GROUP BY category
EMIT FINAL
WITH (
  'transactions.type' = 'file_source',
  'transactions.path' = 'demos/quickstart/transactions.csv',
  'transactions.format' = 'csv',
  'spend_by_category.type' = 'file_sink',
  'spend_by_category.path' = 'demos/quickstart/out/spend_by_category.jsonl',
  'spend_by_category.format' = 'json'
);
