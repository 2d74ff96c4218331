CREATE AGGREGATE FUNCTION vwap(price DECIMAL(18,4), qty BIGINT) RETURNS DECIMAL(38,6)
LANGUAGE python AS '
from decimal import Decimal

def vwap(price, qty):
    prices, qtys = price.to_pylist(), qty.to_pylist()
    notional = sum((p * q for p, q in zip(prices, qtys)), Decimal(0))
    return (notional / sum(qtys)).quantize(Decimal("0.000001"))
';

CREATE AGGREGATE FUNCTION big_median(qty BIGINT) RETURNS DOUBLE LANGUAGE python AS '
import statistics

def big_median(qty):
    values = qty.to_pylist()
    return float(statistics.median(values)) if values else None
';

CREATE STREAM prices AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades,
       vwap(CAST(price AS DECIMAL(18,4)), qty) AS vwap,
       big_median(qty) FILTER (WHERE qty > 100) AS big_median
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
WITH (
  'trades.type' = 'file_source',
  'trades.path' = '{in:trades}',
  'trades.format' = 'csv',
  'trades.event.time.field' = 'ts',
  'trades.watermark.strategy' = 'bounded_out_of_orderness',
  'trades.watermark.max_out_of_orderness' = '2s',
  'prices.type' = 'file_sink',
  'prices.path' = '{out}',
  'prices.format' = 'json'
);
