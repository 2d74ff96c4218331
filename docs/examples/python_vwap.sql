-- A volume-weighted average price per symbol and 10 seconds, written in Python: the
-- function is given each window's prices and quantities of a symbol at once.
CREATE AGGREGATE FUNCTION vwap(price DECIMAL(10,2), qty BIGINT) RETURNS DECIMAL(38,4)
LANGUAGE python AS '
from decimal import Decimal

def vwap(price, qty):
    notional = sum((p * q for p, q in zip(price.to_pylist(), qty.to_pylist())), Decimal(0))
    return (notional / sum(qty.to_pylist())).quantize(Decimal("0.0001"))
';

SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, vwap(price, qty) AS vwap
FROM ticks
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
WITH ('ticks.type' = 'file_source', 'ticks.path' = 'docs/examples/ticks.csv',
      'ticks.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
      'ticks.event.time.field' = 'ts');
