-- A watched job started as one instance, then spread over two from its checkpoint.
CREATE STREAM minute_volume AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM daily GROUP BY symbol WINDOW TUMBLING(INTERVAL '1' MINUTE) EMIT FINAL
WITH ('daily.type' = 'file_source', 'daily.path' = 'docs/examples/daily', 'daily.format' = 'csv',
      'daily.watch' = 'true', 'daily.event.time.field' = 'ts',
      'minute_volume.type' = 'file_sink', 'minute_volume.path' = 'docs/examples/out/minute_volume_watch/');
ALTER JOB minute_volume SET PARALLELISM 2;
