-- Writes the ticks of ticks.csv to the Kafka topic 'ticks', one JSON message per trade,
-- keyed by symbol, with the trade's time as the message timestamp.
-- Needs a broker and the topic: bash scripts/kafka.sh start && bash scripts/kafka.sh topic ticks 3
CREATE STREAM ticks_to_kafka AS
SELECT ts, symbol, CAST(price AS DECIMAL(10,2)) AS price, qty
FROM ticks_file
WITH (
  'ticks_file.type' = 'file_source',
  'ticks_file.path' = 'docs/examples/ticks.csv',
  'ticks_to_kafka.type' = 'kafka_sink',
  'ticks_to_kafka.bootstrap.servers' = '127.0.0.1:9092',
  'ticks_to_kafka.topic' = 'ticks',
  'ticks_to_kafka.key.field' = 'symbol',
  'ticks_to_kafka.timestamp.field' = 'ts'
);
