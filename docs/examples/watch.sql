-- Watch a folder: every CSV file dropped into it (and every line appended to one) is read
-- as it arrives. Runs until Ctrl-C, which commits the last part file.
-- Create the folder first:  mkdir -p docs/examples/out/inbox
CREATE STREAM ticks AS
SELECT ts, LOWER(symbol) AS symbol, CAST(price AS DECIMAL(10,4)) * qty AS notional
FROM inbox
WITH (
  'inbox.type' = 'file_source',
  'inbox.path' = 'docs/examples/out/inbox/',
  'inbox.format' = 'csv',
  'inbox.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,4), qty BIGINT',
  'inbox.watch' = 'true',
  'inbox.watch.interval' = '200ms',
  'ticks.type' = 'file_sink',
  'ticks.path' = 'docs/examples/out/ticks/',
  'ticks.rollover.interval' = '5s'
);
