-- Statements run in order, and a job over files finishes before the next statement starts,
-- so a later statement can read what an earlier one wrote.
CREATE STREAM notional AS
SELECT symbol, CAST(price AS DECIMAL(10,4)) * qty AS notional
FROM trades
WITH (
  'trades.type' = 'file_source',
  'trades.path' = 'docs/examples/trades.csv',
  'notional.type' = 'file_sink',
  'notional.path' = 'docs/examples/out/notional.csv'
);

SELECT symbol, SUM(notional) AS total_notional
FROM notional_file
GROUP BY symbol
ORDER BY symbol
WITH (
  'notional_file.type' = 'file_source',
  'notional_file.path' = 'docs/examples/out/notional.csv',
  'notional_file.schema' = 'symbol VARCHAR, notional DECIMAL(20,4)'
);
