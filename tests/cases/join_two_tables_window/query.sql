CREATE STREAM desk_volume AS
SELECT d.desk AS desk, _window_start AS window_start, COUNT(*) AS trades, SUM(t.qty) AS volume
FROM trades t
  JOIN instruments i ON t.symbol = i.symbol
  JOIN desks d ON i.sector = d.sector
GROUP BY d.desk
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
  'desks.type' = 'file_source',
  'desks.path' = '{in:desks.csv}',
  'desks.format' = 'csv',
  'desk_volume.type' = 'file_sink',
  'desk_volume.path' = '{out}',
  'desk_volume.format' = 'json'
);
