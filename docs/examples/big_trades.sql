-- A stream: trades of 100 shares or more, with their notional value as an exact decimal.
CREATE STREAM big_trades AS
SELECT ts,
       symbol,
       CAST(price AS DECIMAL(10,4)) AS price,
       qty,
       CAST(price AS DECIMAL(10,4)) * qty AS notional
FROM trades
WHERE qty >= 100
WITH (
  'trades.type' = 'file_source',
  'trades.path' = 'docs/examples/trades.csv',
  'big_trades.type' = 'file_sink',
  'big_trades.path' = 'docs/examples/out/big_trades.jsonl'
);
