CREATE STREAM busiest_symbol AS
SELECT window_end, symbol, trades
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_end ORDER BY trades DESC, symbol) AS rn
  FROM (
    SELECT symbol, HOP_END(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS window_end,
           COUNT(*) AS trades
    FROM trades
    GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND), symbol
  )
)
WHERE rn = 1
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'busiest_symbol.type' = 'file_sink',
  'busiest_symbol.path' = '{out}',
  'busiest_symbol.format' = 'json'
);
