-- Protobuf both ways: trades of ticks.csv written to the topic 'trades_pb' as shop.Trade
-- messages (docs/examples/trade.proto), then read back.
-- Needs: bash scripts/kafka.sh topic trades_pb 1
CREATE STREAM trades_pb AS
SELECT symbol,
       CASE WHEN qty >= 100 THEN 'BUY' ELSE 'SELL' END AS side,  -- an enum, by name
       qty,
       CAST(price AS DOUBLE) AS price,
       ts,                                                        -- a google.protobuf.Timestamp
       make_array('docs', lower(symbol)) AS tags,                 -- repeated string
       named_struct('mic', 'XNAS', 'country', 'US') AS venue      -- a nested message
FROM ticks
WITH (
  'ticks.type' = 'file_source',
  'ticks.path' = 'docs/examples/ticks.csv',
  'trades_pb.type' = 'kafka_sink',
  'trades_pb.topic' = 'trades_pb',
  'trades_pb.format' = 'protobuf',
  'trades_pb.protobuf.schema.file' = 'docs/examples/trade.proto',
  'trades_pb.protobuf.message' = 'shop.Trade'
);

SELECT symbol, side, qty, price, ts, note, tags, attributes, venue
FROM trades
WHERE qty >= 100
WITH (
  'trades.type' = 'kafka_source',
  'trades.topic' = 'trades_pb',
  'trades.format' = 'protobuf',
  'trades.protobuf.schema.file' = 'docs/examples/trade.proto',
  'trades.protobuf.message' = 'shop.Trade',
  'trades.scan.bounded.mode' = 'latest-offset'
);
