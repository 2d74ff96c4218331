CREATE TABLE first_orders AS
SELECT order_id, ts, symbol, qty
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY ts) AS rn
  FROM orders
)
WHERE rn = 1
EMIT CHANGES
WITH (
  'orders.type' = 'file_source',
  'orders.path' = '{in:orders.csv}',
  'orders.format' = 'csv',
  'orders.batch.size' = '2',
  'first_orders.type' = 'file_sink',
  'first_orders.path' = '{out}',
  'first_orders.format' = 'json'
);
