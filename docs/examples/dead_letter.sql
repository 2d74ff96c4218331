-- Malformed records go to a dead-letter file; the valid ones go on.
CREATE STREAM clean_trades AS
SELECT * FROM trades
WITH (
  'trades.type' = 'file_source',
  'trades.path' = 'docs/examples/bad_trades.csv',
  'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,4), qty BIGINT',
  'trades.on.error' = 'dead_letter',
  'trades.dead_letter.path' = 'docs/examples/out/bad_trades.jsonl',
  'clean_trades.type' = 'file_sink',
  'clean_trades.path' = 'docs/examples/out/clean_trades.jsonl'
);
