-- Each tick looked up in a table of sectors (read whole when the job starts), then ten-second
-- volume per sector. TSLA has no sector: the inner join drops its ticks.
CREATE STREAM sector_volume AS
SELECT s.sector, _window_start AS window_start, SUM(t.qty) AS volume
FROM ticks t JOIN sectors s ON t.symbol = s.symbol
GROUP BY s.sector
WINDOW TUMBLING(INTERVAL '10' SECOND)
WITH (
  'ticks.type' = 'file_source', 'ticks.path' = 'docs/examples/ticks.csv',
  'ticks.event.time.field' = 'ts', 'ticks.watermark.max_out_of_orderness' = '2s',
  'sectors.type' = 'file_source', 'sectors.path' = 'docs/examples/sectors.csv',
  'sector_volume.type' = 'file_sink', 'sector_volume.path' = 'docs/examples/out/sector_volume.jsonl'
);
