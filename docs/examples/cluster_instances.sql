-- Ten-second volume per symbol from the Kafka topic 'ticks' (written by kafka_produce.sql) to
-- the topic 'cluster_volume', as two instances that a cluster's leader places on two nodes.
-- Their rows meet in the topic 'cluster_volume-repartition-0'.
-- Needs: bash scripts/kafka.sh topic cluster_volume 1, and a cluster (docs/cluster.md).
CREATE STREAM cluster_volume AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(10s)
WITH (
  'ticks.type' = 'kafka_source',
  'ticks.topic' = 'ticks',
  'ticks.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
  'ticks.watermark.max_out_of_orderness' = '2s',
  'ticks.watermark.idle.timeout' = '5s',
  'cluster_volume.type' = 'kafka_sink',
  'cluster_volume.topic' = 'cluster_volume',
  'parallelism' = '2'
);
