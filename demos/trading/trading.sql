-- The trading demo's jobs (demos/trading/README.md). run.sh deploys them to `ferris server`:
--   ferris deploy demos/trading/trading.sql --server 127.0.0.1:50051
-- Paths are relative to the repository's root, where run.sh starts the server. The topics
-- quotes, trades (4 partitions each), orders, fills (1 partition each, see executions),
-- bars and alerts must exist: run.sh creates them.
--
-- Every topic holds Protobuf messages of demos/trading/proto/market_v2.proto, written by
-- ferris-market-gen; some trades are of market_v1.proto, which v2 reads (docs/protobuf-evolution.md).
-- Prices arrive as decimal text and are read as DECIMAL(18,6) by each source's declared
-- schema: money stays exact from the wire to the result, never a float.

-- 1. One-minute OHLCV bars per symbol, written when the minute closes (EMIT FINAL). A table
--    keyed by (symbol, minute): the server answers pull queries on it (the dashboard's
--    candlesticks), and every bar also goes to the topic 'bars' as JSON.
CREATE TABLE bars AS
SELECT symbol,
       _window_start AS minute,
       -- Trades of the same millisecond are ordered by their id: open and close are exact.
       FIRST_VALUE(price ORDER BY exchange_time, trade_id) AS open,
       MAX(price) AS high,
       MIN(price) AS low,
       LAST_VALUE(price ORDER BY exchange_time, trade_id) AS close,
       SUM(qty) AS volume,
       COUNT(*) AS trades,
       -- DECIMAL(18,6) * BIGINT, summed: exact to the last digit.
       SUM(price * qty) AS notional,
       CAST(SUM(price * qty) / SUM(qty) AS DECIMAL(18,6)) AS vwap
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '1' MINUTE)
EMIT FINAL
WITH (
  'trades.type' = 'kafka_source',
  'trades.topic' = 'trades',
  'trades.format' = 'protobuf',
  'trades.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'trades.protobuf.message' = 'market.Trade',
  -- Only the fields used, typed: price from decimal text to an exact DECIMAL.
  'trades.schema' = 'symbol VARCHAR, price DECIMAL(18,6), qty BIGINT, trade_id VARCHAR, exchange_time TIMESTAMP',
  -- Event time is the exchange's; trades up to 5 s out of order still count.
  'trades.event.time.field' = 'exchange_time',
  'trades.watermark.max_out_of_orderness' = '5s',
  'bars.type' = 'kafka_sink',
  'bars.topic' = 'bars'
);

-- 2. VWAP over the last five minutes, every minute (a sliding window): the dashboard's VWAP
--    line. Kept by the server (no sink): a table answering pull queries.
CREATE TABLE vwap_5m AS
SELECT symbol,
       _window_start AS window_start,
       _window_end AS as_of,
       CAST(SUM(price * qty) / SUM(qty) AS DECIMAL(18,6)) AS vwap,
       SUM(qty) AS volume
FROM trades
GROUP BY symbol
WINDOW SLIDING(INTERVAL '5' MINUTE, INTERVAL '1' MINUTE)
EMIT FINAL
WITH (
  'trades.type' = 'kafka_source',
  'trades.topic' = 'trades',
  'trades.format' = 'protobuf',
  'trades.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'trades.protobuf.message' = 'market.Trade',
  'trades.schema' = 'symbol VARCHAR, price DECIMAL(18,6), qty BIGINT, exchange_time TIMESTAMP',
  'trades.event.time.field' = 'exchange_time',
  'trades.watermark.max_out_of_orderness' = '5s'
);

-- 3. Price spikes: a minute whose highest or lowest trade is more than 1 % away from that
--    minute's VWAP. Each alert goes to the topic 'alerts' (JSON) as its minute closes.
CREATE STREAM price_spikes AS
SELECT symbol,
       _window_start AS minute,
       CAST(SUM(price * qty) / SUM(qty) AS DECIMAL(18,6)) AS vwap,
       MIN(price) AS low,
       MAX(price) AS high,
       COUNT(*) AS trades
FROM trades
GROUP BY symbol
HAVING MAX(price) * SUM(qty) > 1.01 * SUM(price * qty)
    OR MIN(price) * SUM(qty) < 0.99 * SUM(price * qty)
WINDOW TUMBLING(INTERVAL '1' MINUTE)
WITH (
  'trades.type' = 'kafka_source',
  'trades.topic' = 'trades',
  'trades.format' = 'protobuf',
  'trades.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'trades.protobuf.message' = 'market.Trade',
  'trades.schema' = 'symbol VARCHAR, price DECIMAL(18,6), qty BIGINT, exchange_time TIMESTAMP',
  'trades.event.time.field' = 'exchange_time',
  'trades.watermark.max_out_of_orderness' = '5s',
  'price_spikes.type' = 'kafka_sink',
  'price_spikes.topic' = 'alerts',
  'price_spikes.key.field' = 'symbol'
);

-- 4. Trades enriched with the instrument reference file (a lookup join): sector, currency
--    and the notional in US dollars. Kept by the server: a stream to follow (push query).
CREATE STREAM trades_enriched AS
SELECT t.symbol, t.exchange_time, t.price, t.qty, t.venue, t.aggressor,
       i.sector, i.currency,
       -- Rounded to the cent once, at the end (half up).
       CAST(t.price * t.qty * i.usd_rate AS DECIMAL(20,2)) AS usd_notional
FROM trades t JOIN instruments i ON t.symbol = i.symbol
WITH (
  'trades.type' = 'kafka_source',
  'trades.topic' = 'trades',
  'trades.format' = 'protobuf',
  'trades.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'trades.protobuf.message' = 'market.Trade',
  -- venue and aggressor: enums by name. A version-1 trade has no aggressor (SIDE_UNSPECIFIED).
  'trades.schema' = 'symbol VARCHAR, price DECIMAL(18,6), qty BIGINT, venue VARCHAR, aggressor VARCHAR, exchange_time TIMESTAMP',
  'instruments.type' = 'file_source',
  'instruments.path' = 'demos/trading/instruments.csv',
  'instruments.schema' = 'symbol VARCHAR, name VARCHAR, sector VARCHAR, currency VARCHAR, usd_rate DECIMAL(12,6), lot_size BIGINT, tick_size DECIMAL(12,6), reference_price DECIMAL(18,6), max_position BIGINT, max_order_notional DECIMAL(18,2)'
);

-- 5. Positions and P&L per account and symbol, from the fills: a table that changes with
--    every fill (EMIT CHANGES), in the instrument's currency, DECIMAL(18,6).
--    - cash: what the account paid (-) and got (+);
--    - pnl: the position marked to the account's last fill price, cash + position * mark;
--    - realised: on the quantity both bought and sold, the average selling price less the
--      average buying price (the average-cost method); unrealised: the rest of pnl;
--    - pnl_usd: pnl at the instrument file's rate to US dollars (a lookup join), to the cent.
CREATE TABLE positions AS
SELECT account PRIMARY KEY, symbol PRIMARY KEY, currency, position, cash, mark,
       pnl, realised, pnl - realised AS unrealised, pnl_usd, fills
FROM (
WITH signed AS (
  -- A fill's quantity with its sign: bought +, sold -.
  SELECT f.account, f.symbol, f.price, f.time, f.fill_id, i.currency, i.usd_rate,
         CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END AS qty
  FROM fills f JOIN instruments i ON f.symbol = i.symbol
)
SELECT account,
       symbol,
       MAX(currency) AS currency,
       SUM(qty) AS position,
       CAST(-SUM(price * qty) AS DECIMAL(24,6)) AS cash,
       LAST_VALUE(price ORDER BY time, fill_id) AS mark,
       CAST(SUM(qty) * LAST_VALUE(price ORDER BY time, fill_id) - SUM(price * qty)
            AS DECIMAL(18,6)) AS pnl,
       -- bought B for BV, sold S for SV: realised = min(B, S) * (SV / S - BV / B), which is
       -- (SV * B - BV * S) / max(B, S): one division of an exact dividend. A decimal division
       -- keeps four more places than its dividend, so the dividend is cast to 14: 18 places
       -- are enough for the rounding to 6 to be exact, ties included.
       CAST(COALESCE(CAST(SUM(price * GREATEST(-qty, 0)) * SUM(GREATEST(qty, 0))
                          - SUM(price * GREATEST(qty, 0)) * SUM(GREATEST(-qty, 0))
                          AS DECIMAL(38,14))
                     / NULLIF(GREATEST(SUM(GREATEST(qty, 0)), SUM(GREATEST(-qty, 0))), 0), 0)
            AS DECIMAL(18,6)) AS realised,
       CAST((SUM(qty) * LAST_VALUE(price ORDER BY time, fill_id) - SUM(price * qty)) * MAX(usd_rate)
            AS DECIMAL(20,2)) AS pnl_usd,
       COUNT(*) AS fills
FROM signed
GROUP BY account, symbol
)
EMIT CHANGES
WITH (
  'fills.type' = 'kafka_source',
  'fills.topic' = 'fills',
  'fills.format' = 'protobuf',
  'fills.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'fills.protobuf.message' = 'market.Fill',
  'fills.schema' = 'fill_id VARCHAR, account VARCHAR, symbol VARCHAR, side VARCHAR, price DECIMAL(18,6), qty BIGINT, time TIMESTAMP',
  'instruments.type' = 'file_source',
  'instruments.path' = 'demos/trading/instruments.csv',
  'instruments.schema' = 'symbol VARCHAR, name VARCHAR, sector VARCHAR, currency VARCHAR, usd_rate DECIMAL(12,6), lot_size BIGINT, tick_size DECIMAL(12,6), reference_price DECIMAL(18,6), max_position BIGINT, max_order_notional DECIMAL(18,2)'
);

-- 6. Fills joined to their orders within 5 seconds (an interval join): how long each order
--    took to fill and how much better than its limit it filled, per share. Both topics have
--    one partition, so the join lets rows go once no partner can come.
CREATE STREAM executions AS
SELECT f.fill_id, f.order_id, f.account, f.symbol, f.side, f.qty,
       o.limit_price, f.price,
       CASE WHEN f.side = 'BUY' THEN o.limit_price - f.price ELSE f.price - o.limit_price END AS improvement,
       f.time - o.time AS time_to_fill
FROM fills f JOIN orders o
  ON f.order_id = o.order_id AND f.time BETWEEN o.time AND o.time + INTERVAL '5' SECOND
WITH (
  'fills.type' = 'kafka_source',
  'fills.topic' = 'fills',
  'fills.format' = 'protobuf',
  'fills.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'fills.protobuf.message' = 'market.Fill',
  'fills.schema' = 'fill_id VARCHAR, order_id VARCHAR, account VARCHAR, symbol VARCHAR, side VARCHAR, price DECIMAL(18,6), qty BIGINT, time TIMESTAMP',
  'fills.event.time.field' = 'time',
  'orders.type' = 'kafka_source',
  'orders.topic' = 'orders',
  'orders.format' = 'protobuf',
  'orders.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'orders.protobuf.message' = 'market.Order',
  'orders.schema' = 'order_id VARCHAR, limit_price DECIMAL(18,6), time TIMESTAMP',
  'orders.event.time.field' = 'time'
);

-- 7. Risk-limit breaches: an account whose fills in one minute add up to more US dollars
--    (gross, both sides) than its limit in accounts.csv. Two lookup joins feed the window.
CREATE STREAM risk_breaches AS
SELECT f.account,
       _window_start AS minute,
       CAST(SUM(f.price * f.qty * i.usd_rate) AS DECIMAL(20,2)) AS gross_usd,
       MAX(a.max_gross_notional_per_minute) AS limit_usd,
       COUNT(*) AS fills
FROM fills f
  JOIN instruments i ON f.symbol = i.symbol
  JOIN accounts a ON f.account = a.account
GROUP BY f.account
HAVING SUM(f.price * f.qty * i.usd_rate) > MAX(a.max_gross_notional_per_minute)
WINDOW TUMBLING(INTERVAL '1' MINUTE)
WITH (
  'fills.type' = 'kafka_source',
  'fills.topic' = 'fills',
  'fills.format' = 'protobuf',
  'fills.protobuf.schema.file' = 'demos/trading/proto/market_v2.proto',
  'fills.protobuf.message' = 'market.Fill',
  'fills.schema' = 'account VARCHAR, symbol VARCHAR, price DECIMAL(18,6), qty BIGINT, time TIMESTAMP',
  'fills.event.time.field' = 'time',
  'fills.watermark.max_out_of_orderness' = '1s',
  'instruments.type' = 'file_source',
  'instruments.path' = 'demos/trading/instruments.csv',
  'instruments.schema' = 'symbol VARCHAR, name VARCHAR, sector VARCHAR, currency VARCHAR, usd_rate DECIMAL(12,6), lot_size BIGINT, tick_size DECIMAL(12,6), reference_price DECIMAL(18,6), max_position BIGINT, max_order_notional DECIMAL(18,2)',
  'accounts.type' = 'file_source',
  'accounts.path' = 'demos/trading/accounts.csv',
  'accounts.schema' = 'account VARCHAR, desk VARCHAR, max_gross_notional_per_minute DECIMAL(18,2)'
);
