-- FerrisStreams Kafka demo: one-minute bars per symbol, from a Kafka topic to a JSON-lines file.
-- Run from the repository root, after produce.py has filled the topic (run.sh does both):
--   ferris run demos/kafka-e2e/minute_bars.sql

-- On Kubernetes (ferris-k8s-deploy, docs/kubernetes.md): a trading workload of two
-- instances, on 2 to 6 pods scaled on consumer lag and CPU. Hints change nothing in
-- `ferris run`.
-- @ferris:workload = trading
-- @ferris:parallelism = 2
-- @ferris:replicas = 2..6
-- @ferris:resources = cpu 500m..2, memory 1Gi
CREATE STREAM minute_bars AS
SELECT
  symbol,
  _window_start AS minute,
  COUNT(*) AS trades,
  SUM(qty) AS volume,
  -- DECIMAL(10,2) * INT stays exact, and so does its SUM.
  SUM(price * qty) AS notional
FROM trades
GROUP BY symbol
-- One-minute windows of event time: the ts field of each message.
WINDOW TUMBLING(1m)
WITH (
  -- The source: the topic 'trades', JSON messages like
  -- {"symbol":"AAPL","price":189.27,"qty":120,"ts":1772443800123}.
  'trades.type' = 'kafka_source',
  'trades.bootstrap.servers' = '127.0.0.1:9092',
  'trades.topic' = 'trades',
  'trades.format' = 'json',
  -- Declared, so that price is an exact decimal (inferred, it would be a DOUBLE).
  'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty INT, ts BIGINT',
  -- Read every partition up to its current end, then end: every window is written and
  -- ferris exits. Without it the job runs on, waiting for new messages, until Ctrl-C.
  'trades.scan.bounded.mode' = 'latest-offset',
  -- Event time is the ts field (epoch milliseconds) instead of the Kafka message timestamp.
  'trades.event.time.field' = 'ts',
  -- The sink: named like the job. Committed atomically when the job ends.
  'minute_bars.type' = 'file_sink',
  'minute_bars.path' = 'demos/kafka-e2e/out/minute_bars.jsonl'
);
