-- A changelog to a Kafka topic: per symbol, its trades and volume while the volume is at most
-- 250; a symbol that goes over is deleted, with a tombstone.
-- Needs the topic 'ticks' (kafka_produce.sql) and: bash scripts/kafka.sh topic within_limit 3
CREATE TABLE within_limit AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
HAVING SUM(qty) <= 250
EMIT CHANGES
WITH (
  'ticks.type' = 'kafka_source',
  'ticks.topic' = 'ticks',
  'ticks.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
  'ticks.scan.bounded.mode' = 'latest-offset',
  -- One message per micro-batch, so that every change shows.
  'ticks.batch.size' = '1',
  'within_limit.type' = 'kafka_sink',
  'within_limit.topic' = 'within_limit'
);
