#!/usr/bin/env python3
"""Produces sample stock trades to a Kafka topic, one JSON message per trade.

    python demos/kafka-e2e/produce.py [--bootstrap 127.0.0.1:9092] [--topic trades]
                                      [--count 2000] [--seed 7] [--summary FILE]

Each message is keyed by its symbol (so a symbol's trades share a partition, in time order),
carries the trade time as its Kafka timestamp, and has the value

    {"symbol":"AAPL","price":189.27,"qty":120,"ts":1772443800123}

`price` has exactly two decimals, `qty` is a whole number of shares, and `ts` is the trade
time in epoch milliseconds, increasing from 2026-03-02 09:30:00 UTC over 10 minutes. The
trades are the same on every run (a seeded random walk per symbol). With --summary, the
totals the demo checks its output against are written to FILE as JSON.

Needs kafka-python (demos/kafka-e2e/requirements.txt; run.sh installs it).
"""

import argparse
import json
import random
import sys
from collections import Counter
from decimal import Decimal

from kafka import KafkaProducer

START_MS = 1772443800000  # 2026-03-02T09:30:00Z
SPAN_MS = 10 * 60 * 1000  # the trades cover 10 minutes
SYMBOLS = {  # symbol: opening price
    "AAPL": Decimal("189.50"),
    "AMZN": Decimal("180.25"),
    "META": Decimal("502.10"),
    "MSFT": Decimal("415.10"),
    "TSLA": Decimal("222.00"),
}
CENT = Decimal("0.01")


def trades(count, seed):
    """(symbol, price, qty, ts) tuples, in time order."""
    rng = random.Random(seed)
    prices = dict(SYMBOLS)
    slot = SPAN_MS // count  # each trade in its own slot: times strictly increase
    for i in range(count):
        symbol = rng.choice(sorted(SYMBOLS))
        step = Decimal(rng.randint(-25, 25)) * CENT
        prices[symbol] = max(CENT, prices[symbol] + step)
        qty = rng.choice([1, 5, 10, 25, 50, 100, 200, 500])
        ts = START_MS + i * slot + rng.randrange(slot)
        yield symbol, prices[symbol], qty, ts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="trades")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--summary", help="write the totals to this JSON file")
    args = parser.parse_args()
    if not 0 < args.count <= SPAN_MS:
        parser.error(f"--count must be between 1 and {SPAN_MS}")

    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        linger_ms=5,
        # Topics are created explicitly (scripts/kafka.sh topic): never auto-create one.
        allow_auto_create_topics=False,
    )
    sent = []
    notional = Decimal(0)
    for symbol, price, qty, ts in trades(args.count, args.seed):
        # Written by hand so that the price keeps its two decimals as written.
        value = f'{{"symbol":"{symbol}","price":{price:.2f},"qty":{qty},"ts":{ts}}}'
        sent.append(
            producer.send(
                args.topic, key=symbol.encode(), value=value.encode(), timestamp_ms=ts
            )
        )
        notional += price * qty
    producer.flush(timeout=30)
    # Every message must have reached the broker: .get() raises the error of one that did not.
    partitions = Counter(future.get(timeout=30).partition for future in sent)
    producer.close()

    per_partition = ", ".join(f"{p}: {n}" for p, n in sorted(partitions.items()))
    print(
        f"produced {len(sent)} trades to topic '{args.topic}' on {args.bootstrap} "
        f"(messages per partition: {per_partition}); total notional {notional:.2f}"
    )
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as f:
            json.dump({"trades": len(sent), "notional": f"{notional:.2f}"}, f)
            f.write("\n")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
