CREATE STREAM sector_notional AS
SELECT i.sector AS sector, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades,
       SUM(CAST(t.price AS DECIMAL(18,4)) * t.qty) AS notional
FROM trades t JOIN instruments i ON t.symbol = i.symbol
GROUP BY i.sector
WINDOW TUMBLING(INTERVAL '30' SECOND)
EMIT FINAL
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'instruments.type' = 'file_source',
  'instruments.path' = '{in:instruments.csv}',
  'instruments.format' = 'csv',
  'sector_notional.type' = 'file_sink',
  'sector_notional.path' = '{out}',
  'sector_notional.format' = 'json'
);
