-- Two jobs for the Flight SQL demo, sent to a running `ferris server` by run.sh with
--   ferris-flight --port PORT --token TOKEN < demos/flight/jobs.sql
-- (read from standard input, each statement is sent on its own and its reply printed).
-- They are the quickstart's two statements, writing under demos/flight/out/ instead. Paths
-- are the server's: relative to the directory it was started in (the repository root).
-- Keep every statement ending with a line that ends in a semicolon, and nothing after the last.

-- A stream: every transaction over 100, with a 1.5% fee, as an exact decimal. On Kubernetes
-- (ferris-k8s-deploy), a realtime workload: scaled on records per second.
-- @ferris:workload = realtime
-- @ferris:replicas = 1..4
CREATE STREAM large_fees AS
SELECT
  txn_id,
  account,
  UPPER(category) AS category,
  CAST(amount AS DECIMAL(12,2)) AS amount,
  CAST(amount AS DECIMAL(12,2)) * CAST(0.015 AS DECIMAL(6,4)) AS fee
FROM transactions
WHERE CAST(amount AS DECIMAL(12,2)) > 100
WITH (
  'transactions.type' = 'file_source',
  'transactions.path' = 'demos/quickstart/transactions.csv',
  'transactions.format' = 'csv',
  'large_fees.type' = 'file_sink',
  'large_fees.path' = 'demos/flight/out/large_fees.jsonl',
  'large_fees.format' = 'json'
);

-- A table keyed by category: total spend per category, written once the file is read. On
-- Kubernetes, an analytics workload: scaled on memory and state.
-- @ferris:workload = analytics
-- @ferris:resources = cpu 250m..1, memory 512Mi..1Gi
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
  'spend_by_category.path' = 'demos/flight/out/spend_by_category.jsonl',
  'spend_by_category.format' = 'json'
);
