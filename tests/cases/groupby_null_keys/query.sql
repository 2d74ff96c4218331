CREATE TABLE venue_totals AS
SELECT venue, COUNT(*) AS trades, COUNT(venue) AS with_venue, SUM(qty) AS volume
FROM trades
GROUP BY venue
EMIT CHANGES
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades.csv}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '5s',
  'trades.batch.size' = '2',
  'venue_totals.type' = 'file_sink',
  'venue_totals.path' = '{out}',
  'venue_totals.format' = 'json'
);
