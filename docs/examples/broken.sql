-- Fails on purpose: 'prize' is not a column of trades.
SELECT symbol,
       SUM(qty) AS volume,
       AVG(prize) AS avg_price
FROM trades
GROUP BY symbol
WITH ('trades.type' = 'file_source', 'trades.path' = 'docs/examples/trades.csv');
