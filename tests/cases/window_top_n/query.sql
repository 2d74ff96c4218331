CREATE STREAM top_symbols AS
WITH volumes AS (
  SELECT symbol, _window_start AS window_start, SUM(qty) AS volume
  FROM trades
  GROUP BY symbol
  WINDOW TUMBLING(INTERVAL '10' SECOND)
)
SELECT window_start, rn AS rank, symbol, volume
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY volume DESC, symbol) AS rn
  FROM volumes
  WHERE window_start >= TIMESTAMP '2026-03-02 09:30:20'
)
WHERE rn <= 2
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'top_symbols.type' = 'file_sink',
  'top_symbols.path' = '{out}',
  'top_symbols.format' = 'json'
);
