-- Ten-second volume per symbol from the Kafka topic 'ticks' (written by kafka_produce.sql) to
-- the topic 'instance_volume', as two instances in two processes: run this file twice, once
-- with --instance 0 and once with --instance 1. Their rows meet in the topic
-- 'instance_volume-repartition-0', which the first to start makes.
-- Needs: bash scripts/kafka.sh topic instance_volume 1
CREATE STREAM instance_volume AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(10s)
WITH (
  'ticks.type' = 'kafka_source',
  'ticks.topic' = 'ticks',
  'ticks.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
  'ticks.scan.bounded.mode' = 'latest-offset',
  'ticks.watermark.max_out_of_orderness' = '2s',
  'instance_volume.type' = 'kafka_sink',
  'instance_volume.topic' = 'instance_volume',
  'parallelism' = '2'
);
