"""The trading demo's independent check: recomputes the one-minute bars and every account's
positions and P&L from the raw topics, with Python's decimal, and compares them digit for digit
with what ferris computed (the `bars` topic, and the server's `positions` table); then shows
what the same sums in float64 get wrong.

It decodes the Protobuf messages itself (the wire format, by field number), so it shares no
code with the generator (prost) nor with ferris (prost-reflect).

    python check.py [--bootstrap HOST:PORT] [--http URL] [--timeout SECONDS]

Exit status 0 when everything agrees, 1 with the differences otherwise.
"""

import argparse
import json
import re
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

WATERMARK_BOUND_MS = 5_000  # trading.sql: 'trades.watermark.max_out_of_orderness' = '5s'
MINUTE_MS = 60_000


# --- the Protobuf wire format -----------------------------------------------------------------

def varint(data, at):
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def fields(data):
    """{field number: value} of one message: ints for varints, bytes for length-delimited."""
    out = {}
    at = 0
    while at < len(data):
        tag, at = varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            out[number], at = varint(data, at)
        elif wire == 2:
            length, at = varint(data, at)
            out[number] = data[at:at + length]
            at += length
        elif wire == 1:
            out[number] = data[at:at + 8]
            at += 8
        elif wire == 5:
            out[number] = data[at:at + 4]
            at += 4
        else:
            raise ValueError(f"wire type {wire} of field {number}")
    return out


def text(message, number):
    return message.get(number, b"").decode("utf-8")


def millis(message, number):
    """A google.protobuf.Timestamp field in epoch milliseconds."""
    timestamp = fields(message.get(number, b""))
    return timestamp.get(1, 0) * 1000 + timestamp.get(2, 0) // 1_000_000


def int64(message, number):
    value = message.get(number, 0)
    return value - (1 << 64) if value >= 1 << 63 else value


# market_v2.proto (field numbers are the same in version 1)
def trade(payload):
    m = fields(payload)
    return {"symbol": text(m, 1), "price": Decimal(text(m, 2)), "qty": int64(m, 3),
            "trade_id": text(m, 5), "time": millis(m, 6)}


def fill(payload):
    m = fields(payload)
    return {"fill_id": text(m, 1), "account": text(m, 3), "symbol": text(m, 4),
            "side": {1: "BUY", 2: "SELL"}.get(m.get(5, 0), "SIDE_UNSPECIFIED"),
            "price": Decimal(text(m, 6)), "qty": int64(m, 7), "time": millis(m, 8)}


# --- reading --------------------------------------------------------------------------------

def read_topic(bootstrap, topic, decode=lambda v: v, committed_only=False):
    """Every message of `topic` up to its end now, as (partition, decoded value) in order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed" if committed_only else "read_uncommitted",
                             consumer_timeout_ms=2_000)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    messages = []
    deadline = time.time() + 120
    while any(consumer.position(p) < ends[p] for p in partitions) and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            messages.extend((r.partition, decode(r.value)) for r in records)
    consumer.close()
    return messages


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def query(http, sql):
    """A pull query's rows through POST /api/v1/query (Server-Sent Events)."""
    request = urllib.request.Request(f"{http}/api/v1/query", data=sql.encode(), method="POST")
    rows = []
    with urllib.request.urlopen(request, timeout=30) as response:
        event = None
        for line in response:
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "rows":
                    rows.extend(data)
                elif event == "error":
                    raise RuntimeError(data["error"])
                elif event == "end":
                    return rows
    raise RuntimeError("the query's stream ended without its end event")


def wait_for_records(http, job, count, timeout):
    """Waits until `job` has read `count` records."""
    deadline = time.time() + timeout
    while True:
        read = int(get_json(f"{http}/api/v1/jobs/{job}")["records_in"])
        if read >= count:
            return
        if time.time() > deadline:
            sys.exit(f"FAILED: job {job} read {read} of the {count} records in {timeout} s")
        time.sleep(0.5)


def unexposed_metrics(http):
    """The ferris_* metrics monitoring/grafana-dashboard.json queries that /metrics lacks."""
    dashboard = (Path(__file__).parent / "monitoring" / "grafana-dashboard.json").read_text()
    wanted = set(re.findall(r"ferris_[a-z_]+", dashboard))
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as response:
        exposed = set(re.findall(r"^# TYPE (ferris_[a-z_]+)", response.read().decode(), re.M))
    return sorted(wanted - exposed)


def minute_text(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


# --- the expected results ----------------------------------------------------------------------

def expected_bars(trades):
    """Bars of the windows the job's watermark closed, from the trades it did not drop as late;
    and the windows it may or may not have closed."""
    high = {}
    before_last = {}
    kept = []
    late = 0
    for partition, t in trades:
        # A window is final once the watermark (the largest event time so far less 5 s,
        # the least of the partitions') reaches its end; a trade of a final window is late.
        # Here the generator's late trades are three minutes behind, far past any window.
        if t["time"] < high.get(partition, t["time"]) - 120_000:
            late += 1
            continue
        before_last[partition] = high.get(partition)
        high[partition] = max(high.get(partition, t["time"]), t["time"])
        kept.append(t)
    # The engine's watermark is the one stamped on the last row it read, which that row did
    # not move yet: somewhere between the partitions' highs without their last rows and with.
    watermark = min(high.values()) - WATERMARK_BOUND_MS
    surely = min(h if h is not None else -(1 << 62) for h in before_last.values()) - WATERMARK_BOUND_MS
    windows = defaultdict(list)
    for t in kept:
        start = t["time"] // MINUTE_MS * MINUTE_MS
        if start + MINUTE_MS <= watermark:
            windows[(t["symbol"], start)].append(t)
    bars = {}
    optional = set()
    for (symbol, start), rows in windows.items():
        ordered = sorted(rows, key=lambda r: (r["time"], r["trade_id"]))
        volume = sum(r["qty"] for r in rows)
        notional = sum((r["price"] * r["qty"] for r in rows), Decimal(0))
        key = (symbol, minute_text(start))
        bars[key] = {
            "open": ordered[0]["price"], "high": max(r["price"] for r in rows),
            "low": min(r["price"] for r in rows), "close": ordered[-1]["price"],
            "volume": volume, "trades": len(rows), "notional": notional,
            "vwap": half_up(Fraction(notional) / volume, 6),
            "float_notional": sum(float(r["price"]) * r["qty"] for r in rows),
        }
        if start + MINUTE_MS > surely:
            optional.add(key)
    return bars, optional, late


def half_up(value, places):
    """`value` (a Fraction) rounded to `places` decimals, halves away from zero."""
    scaled = abs(value) * 10**places
    whole = int(scaled + Fraction(1, 2))
    return (Decimal(whole if value >= 0 else -whole)).scaleb(-places)


def usd_rates():
    """Each instrument's rate to US dollars, from the reference file the SQL joins."""
    lines = (Path(__file__).parent / "instruments.csv").read_text().splitlines()
    header = lines[0].split(",")
    symbol, rate = header.index("symbol"), header.index("usd_rate")
    return {f[symbol]: Decimal(f[rate]) for f in (line.split(",") for line in lines[1:] if line)}


def expected_positions(fills):
    rates = usd_rates()
    groups = defaultdict(list)
    for _, f in fills:
        groups[(f["account"], f["symbol"])].append(f)
    positions = {}
    for key, rows in groups.items():
        sign = [1 if f["side"] == "BUY" else -1 for f in rows]
        position = sum(s * f["qty"] for s, f in zip(sign, rows))
        cash = sum((-s * f["price"] * f["qty"] for s, f in zip(sign, rows)), Decimal(0))
        mark = max(rows, key=lambda f: (f["time"], f["fill_id"]))["price"]
        pnl = cash + position * mark
        bought = sum(f["qty"] for f in rows if f["side"] == "BUY")
        sold = sum(f["qty"] for f in rows if f["side"] != "BUY")
        realised = Decimal(0)
        if bought and sold:
            # The average-cost method as an exact fraction (an average can repeat forever,
            # and the result can be a tie exactly), then rounded as the SQL's CAST rounds.
            bought_value = sum((f["price"] * f["qty"] for f in rows if f["side"] == "BUY"), Decimal(0))
            sold_value = sum((f["price"] * f["qty"] for f in rows if f["side"] != "BUY"), Decimal(0))
            exact = min(bought, sold) * (Fraction(sold_value) / sold - Fraction(bought_value) / bought)
            realised = half_up(exact, 6)
        positions[key] = {
            "position": position, "cash": cash, "mark": mark, "pnl": pnl,
            "realised": realised, "unrealised": pnl - realised,
            "pnl_usd": (pnl * rates[key[1]]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
            "fills": len(rows),
            "float_pnl": sum(-s * float(f["price"]) * f["qty"] for s, f in zip(sign, rows))
            + position * float(mark),
        }
    return positions


# --- comparing -------------------------------------------------------------------------------

def compare(what, expected, got, columns, optional=frozenset()):
    """Differences between two {key: row} maps, column by column, as text lines; the
    `optional` keys of `expected` may be missing from `got`."""
    problems = []
    for key in sorted(set(expected) - set(got) - set(optional)):
        problems.append(f"{what} {key}: missing from ferris's results")
    for key in sorted(set(got) - set(expected)):
        problems.append(f"{what} {key}: ferris has it, the raw topics do not")
    for key in sorted(set(expected) & set(got)):
        for column in columns:
            want, have = expected[key][column], got[key][column]
            if Decimal(str(have)) != Decimal(str(want)):
                problems.append(f"{what} {key} {column}: ferris {have}, expected {want}")
    return problems


def float_misses(rows, exact, approximate):
    """How many of the rows float64 gets wrong, and the worst one. A float's value is read as
    Python prints it (the shortest text that reads back as the same float), which is how a
    float result reaches a report or a JSON document."""
    worst = None
    wrong = 0
    for key, row in rows.items():
        printed = repr(row[approximate])
        error = abs(Decimal(printed) - row[exact])
        if error:
            wrong += 1
            if worst is None or error > worst[0]:
                worst = (error, key, row[exact], printed)
    return wrong, worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--http", default="http://127.0.0.1:8080")
    parser.add_argument("--timeout", type=int, default=90)
    args = parser.parse_args()

    trades = read_topic(args.bootstrap, "trades", trade)
    fills = read_topic(args.bootstrap, "fills", fill)
    print(f"raw topics: {len(trades)} trades, {len(fills)} fills")
    bars, optional, late = expected_bars(trades)
    positions = expected_positions(fills)

    wait_for_records(args.http, "bars", len(trades), args.timeout)
    wait_for_records(args.http, "positions", len(fills), args.timeout)
    # Bars reach their topic when the job's checkpoint commits its transaction (every 10 s).
    deadline = time.time() + args.timeout
    while True:
        written = {}
        for _, payload in read_topic(args.bootstrap, "bars", committed_only=True):
            bar = json.loads(payload, parse_float=Decimal)
            written[(bar["symbol"], bar["minute"])] = bar
        if set(bars) - optional <= set(written) or time.time() > deadline:
            break
        time.sleep(1)
    # records_in counts at the source: the table may be a batch behind it.
    while True:
        held = {(r["account"], r["symbol"]): r
                for r in query(args.http, "SELECT * FROM positions")}
        if sum(int(r["fills"]) for r in held.values()) >= len(fills) or time.time() > deadline:
            break
        time.sleep(0.5)

    problems = compare("bar", bars, written,
                       ["open", "high", "low", "close", "volume", "trades", "notional", "vwap"],
                       optional)
    bars = {key: bar for key, bar in bars.items() if key in written}
    problems += compare("position", positions, held,
                        ["position", "cash", "mark", "pnl", "realised", "unrealised", "pnl_usd",
                         "fills"])
    status = get_json(f"{args.http}/api/v1/jobs/bars")
    if int(status["late_records"]) != late:
        problems.append(f"bars: ferris dropped {status['late_records']} trades as late, expected {late}")

    notional = sum((b["notional"] for b in bars.values()), Decimal(0))
    print(f"bars: {len(bars)} closed one-minute bars of {len({s for s, _ in bars})} symbols, "
          f"{sum(b['trades'] for b in bars.values())} trades ({late} dropped as late), "
          f"notional {notional}")
    print(f"positions: {len(positions)} (account, symbol) pairs, P&L "
          f"{sum((p['pnl_usd'] for p in positions.values()), Decimal(0))} USD")
    problems += [f"monitoring/grafana-dashboard.json queries {name}, which /metrics does not have"
                 for name in unexposed_metrics(args.http)]
    if problems:
        print(f"\nMISMATCH: {len(problems)} differences", file=sys.stderr)
        for line in problems[:30]:
            print("  " + line, file=sys.stderr)
        sys.exit(1)
    print("OK: every bar (open, high, low, close, volume, trades, notional, VWAP) and every "
          "position (quantity, cash, mark, P&L, realised and unrealised, P&L in US dollars) agrees with ferris to the last digit")

    for what, rows, exact, approximate in [("bar notionals", bars, "notional", "float_notional"),
                                            ("P&L values", positions, "pnl", "float_pnl")]:
        wrong, worst = float_misses(rows, exact, approximate)
        line = f"float64: {wrong} of {len(rows)} {what} are not the exact sum"
        if worst:
            line += f"; the worst, {worst[1]}: exact {worst[2]}, float64 {worst[3]}"
        print(line)


if __name__ == "__main__":
    main()
