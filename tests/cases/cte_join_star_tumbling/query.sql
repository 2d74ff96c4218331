CREATE STREAM sector_volume AS
WITH joined AS (
  SELECT t.*, i.sector FROM trades AS t JOIN instruments AS i ON t.symbol = i.symbol
)
SELECT sector, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM joined
GROUP BY sector
WINDOW TUMBLING(INTERVAL '10' SECOND)
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
  'sector_volume.type' = 'file_sink',
  'sector_volume.path' = '{out}',
  'sector_volume.format' = 'json'
);
