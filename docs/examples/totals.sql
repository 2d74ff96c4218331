-- A table of one row: an aggregate without GROUP BY, its key empty.
CREATE TABLE totals AS
SELECT COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(10,4)) * qty) AS notional
FROM trades
WITH (
  'trades.type' = 'file_source',
  'trades.path' = 'docs/examples/trades.csv',
  'totals.type' = 'file_sink',
  'totals.path' = 'docs/examples/out/totals.jsonl'
);

-- GROUP BY an expression, over a subquery: a UNION ALL of the trades and, once more, the
-- small ones.
CREATE TABLE size_buckets AS
SELECT CASE WHEN qty >= 100 THEN 'large' ELSE 'small' END AS size,
       COUNT(*) AS trades, SUM(qty) AS volume
FROM (SELECT qty FROM trades UNION ALL SELECT qty FROM trades WHERE qty < 100) AS both_sides
GROUP BY CASE WHEN qty >= 100 THEN 'large' ELSE 'small' END
WITH (
  'trades.type' = 'file_source',
  'trades.path' = 'docs/examples/trades.csv',
  'size_buckets.type' = 'file_sink',
  'size_buckets.path' = 'docs/examples/out/size_buckets.jsonl'
);
