-- Malformed messages to a dead-letter topic.
-- Needs: bash scripts/kafka.sh topic raw_trades 1 && bash scripts/kafka.sh topic bad_trades 1

-- Each line of bad_trades.csv (after its header) as one message of the topic 'raw_trades':
-- the file is read as one column (no '|' in it), written with the raw format.
CREATE STREAM raw_trades AS
SELECT line FROM lines
WITH (
  'lines.type' = 'file_source',
  'lines.path' = 'docs/examples/bad_trades.csv',
  'lines.format' = 'csv',
  'lines.delimiter' = '|',
  'lines.schema' = 'line VARCHAR',
  'raw_trades.type' = 'kafka_sink',
  'raw_trades.topic' = 'raw_trades',
  'raw_trades.format' = 'raw'
);

-- The messages read as CSV trades: the two malformed ones go to the topic 'bad_trades'.
CREATE STREAM clean_trades AS
SELECT ts, symbol, price, qty, _offset
FROM trades
WITH (
  'trades.type' = 'kafka_source',
  'trades.topic' = 'raw_trades',
  'trades.format' = 'csv',
  'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,4), qty BIGINT',
  'trades.scan.bounded.mode' = 'latest-offset',
  'trades.on.error' = 'dead_letter',
  'trades.dead_letter.topic' = 'bad_trades',
  'clean_trades.type' = 'file_sink',
  'clean_trades.path' = 'docs/examples/out/clean_kafka_trades.jsonl'
);

-- The dead letters: the original bytes, and why, in the headers.
SELECT _offset, CAST(value AS VARCHAR) AS message, _headers
FROM bad
WITH (
  'bad.type' = 'kafka_source',
  'bad.topic' = 'bad_trades',
  'bad.format' = 'raw',
  'bad.scan.bounded.mode' = 'latest-offset'
);
