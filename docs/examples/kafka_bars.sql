-- Ten-second bars from the Kafka topic 'ticks' (written by kafka_produce.sql) to the topic
-- 'bars'. Reads what the topic holds, then ends: every window is written.
-- Needs: bash scripts/kafka.sh topic bars 3
CREATE TABLE bars AS
SELECT symbol,
       _window_start,
       _window_end,
       COUNT(*) AS trades,
       SUM(qty) AS volume,
       SUM(price * qty) AS notional
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(10s)
WITH (
  'ticks.type' = 'kafka_source',
  'ticks.topic' = 'ticks',
  'ticks.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
  'ticks.scan.bounded.mode' = 'latest-offset',
  'ticks.watermark.max_out_of_orderness' = '2s',
  'bars.type' = 'kafka_sink',
  'bars.topic' = 'bars'
);
