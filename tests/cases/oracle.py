#!/usr/bin/env python3
"""Independent oracle for FerrisStreams' own conformance cases (tests/cases/).

Regenerate every case folder (inputs, expected.jsonl, meta.json, query.sql), from the repo root:

    python3 tests/cases/oracle.py

The output is deterministic (seeded `random.Random`, sorted rows): running it again rewrites every
file byte for byte. Check the `ferris` binary against the cases (nothing is rewritten):

    python3 tests/cases/oracle.py --check [--ferris target/debug/ferris] [--cases a,b] [--batch-sizes 1,7]

The case format and the semantics implemented here are those of shared/conformance/README.md:
- tumbling window of size S: [floor(t/S)*S, +S), aligned to the Unix epoch (UTC);
- sliding window SLIDING(size, advance): every [k*advance, k*advance+size) containing t;
- session window with gap G, per key: events closer than G (strictly) merge; window_start is the
  first event's time, window_end the last event's time + G;
- watermark with bound B: after each record (file order) W = max event time seen so far - B;
  a window [start, end) is final once W >= end; a record whose windows are all final under the W
  left by the records before it is late and dropped (a record with some windows final and some not
  goes to the windows that are not final); at the end of the input W = +inf;
- allowed lateness L: a window is emitted when W >= end and kept (updated, re-emitted) until
  W >= end + L; records for a window with W >= end + L are dropped; for sessions, see
  `session_windows_lateness`;
- 'late.data.strategy' = 'dead_letter': late records are left out as with 'drop' and written to
  the dead-letter file (the aggregate's input columns, the event time in `_window_start`); a
  case's expected_late.jsonl (beyond the README's format) lists them, compared as a multiset;
- EMIT CHANGES rows carry `_op`: `+U` upserts, `-D` retracts (a session merged away); as in the
  runner (tests/src/lib.rs), a retraction withdraws its key's earlier row;
- an aggregate over a window's rows (beyond the README's format): an inner window's rows are
  its final ones, their event time the window's end - 1 ms; a window Top-N writes each
  window's first N once.

Only the Python 3.11 standard library is used: `decimal.Decimal` for money, integer epoch
milliseconds for time. The oracle reads back the CSV it wrote, so it computes from exactly the
text ferris reads.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from collections import Counter
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
EPOCH = datetime(1970, 1, 1)
BASE_MS = 1772443800000  # 2026-03-02 09:30:00.000 UTC
SEC = 1000
Q4 = Decimal("0.0001")

SYMBOLS = {"AAPL": "187.40", "MSFT": "415.10", "NVDA": "880.25", "AMZN": "180.30", "TSLA": "222.14"}


# ----------------------------------------------------------------------------------------------
# time and value helpers


def fmt_ts(ms: int) -> str:
    dt = EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


def parse_ts(text: str) -> int:
    dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
    return (dt - EPOCH) // timedelta(milliseconds=1)


def ts(ms: int) -> dict:
    return {"ts_ms": ms}

def trades_and_volume(contents, with_end=True):
    """Expected rows of the cases that count trades and sum qty per (symbol, window)."""
    rows = []
    for (k, s, e), rs in contents.items():
        row = {"symbol": k, "window_start": ts(s)}
        if with_end:
            row["window_end"] = ts(e)
        row.update({"trades": len(rs), "volume": sum(r["qty"] for r in rs)})
        rows.append(row)
    return rows



def dec(value: Decimal, scale: int) -> dict:
    return {"dec": str(value.quantize(Decimal(1).scaleb(-scale)))}


def dec4(text: str) -> Decimal:
    """CAST(price AS DECIMAL(18,4)) of a price read as DOUBLE: rounds to scale 4 (exact here)."""
    return Decimal(text).quantize(Q4)


# ----------------------------------------------------------------------------------------------
# input generation


def gen_trades(
    seed: int,
    n: int,
    bound: int,
    *,
    step_ms: int = 200,
    weights: dict[str, int] | None = None,
    delays: list[tuple[float, int, int]] = (),
    qty=lambda rng: rng.randint(1, 500),
    extra_symbols: dict[str, str] | None = None,
) -> list[dict]:
    """Trades in file (arrival) order. Each trade has an event time t and a delay d; the file is
    sorted by t + d. Most delays are within 0.9 * bound (out of order, never late); `delays` adds
    (probability, lo, hi) bands of larger delays (some of those records are late)."""
    rng = random.Random(seed)
    prices = {s: Decimal(p) for s, p in SYMBOLS.items()}
    prices.update({s: Decimal(p) for s, p in (extra_symbols or {}).items()})
    names = list(weights) if weights else list(SYMBOLS)
    wts = [weights[s] for s in names] if weights else None
    t = BASE_MS - rng.randint(0, 400)
    events = []
    for i in range(n):
        t += rng.randint(0, 2 * step_ms)
        sym = rng.choices(names, wts)[0]
        prices[sym] = max(Decimal("1.0000"), prices[sym] + Decimal(rng.randint(-900, 900)) / 10000).quantize(Q4)
        u = rng.random()
        delay = None
        for prob, lo, hi in delays:
            if u < prob:
                delay = rng.randint(lo, hi)
                break
            u -= prob
        if delay is None:
            delay = rng.randint(0, bound * 9 // 10)
        events.append((t + delay, i, t, sym, prices[sym], qty(rng)))
    events.sort()
    return [
        {"ts": fmt_ts(e[2]), "symbol": e[3], "price": f"{e[4]:.4f}", "qty": e[5], "seq": k}
        for k, e in enumerate(events)
    ]


def inject_boundaries(rows: list[dict], seed: int, bound: int, period: int, exact: int, near: int,
                      slack: int = 400, a_symbol: str | None = None) -> list[dict]:
    """Pin the README's 'final once W >= end': at a few places where the largest event time so far
    is just below a window end e + bound, insert a record at e + bound (so W = e exactly) followed
    by a record in [e - period, e), which is then late for the window ending at e; and (`near`)
    the same with e + bound - 1 (W = e - 1), where the second record still counts. With `a_symbol`
    the first record has that symbol (and the second another one)."""
    rng = random.Random(seed)
    ms = [parse_ts(r["ts"]) for r in rows]
    high, spots = None, []
    for i, t in enumerate(ms):
        if high is not None and 50 <= i < len(ms) - 50:
            e = ((high - bound) // period + 1) * period
            if e + bound - high <= slack:
                spots.append((i, e))
        high = t if high is None else max(high, t)
    chosen, last = [], -10**9
    for i, e in spots:
        if i - last >= 80 and rng.random() < 0.5:
            chosen.append((i, e))
            last = i
    chosen = rng.sample(chosen, exact + near)
    kinds = ["exact"] * exact + ["near"] * near
    rng.shuffle(kinds)
    for (i, e), kind in sorted(zip(chosen, kinds), reverse=True):
        a_from = next(r for r in reversed(rows[:i]) if a_symbol in (None, r["symbol"]))
        b_from = next(r for r in reversed(rows[:i - 1]) if r["symbol"] != a_symbol)
        a = dict(a_from, ts=fmt_ts(e + bound - (0 if kind == "exact" else 1)), qty=rng.randint(1, 500))
        b = dict(b_from, ts=fmt_ts(e - rng.randint(1, min(period - 1, 1500))), qty=rng.randint(1, 500))
        rows[i:i] = [a, b]
    for k, r in enumerate(rows):
        r["seq"] = k
    return rows


def gen_bursty(seed: int, bound: int, gap: int, very_late: float = 0.0) -> list[dict]:
    """Bursty trades for session windows: per symbol, bursts of trades closer than `gap`, apart by
    quiet spells longer than `gap`. Some quiet spells are just over `gap` and get a 'bridge' trade
    in their middle that arrives after the next burst started: it merges two open sessions. Two
    spells are exactly `gap` long (not closer than G: no merge). Some trades arrive far too late;
    with `very_late`, that share of the trades is 20 to 40 s late (beyond allowed lateness)."""
    rng = random.Random(seed)
    events = []  # (arrival, order, t, symbol)
    order = 0
    exact_gap_left = 2
    for sym in SYMBOLS:
        t = BASE_MS + rng.randint(0, 3000)
        bridge_from = None  # (a_last) when the next burst's first trade must be bridged
        for _burst in range(rng.randint(9, 13)):
            for j in range(rng.randint(3, 14)):
                if j:
                    t += rng.randint(100, 2500)
                if j == 0 and bridge_from is not None:
                    # the burst's first trade arrives on time; the bridge right after it
                    events.append((t, order, t, sym)); order += 1
                    mid = (bridge_from + t) // 2
                    events.append((t + rng.randint(1, 300), order, mid, sym)); order += 1
                    bridge_from = None
                    continue
                u = rng.random()
                if u < 0.04:
                    delay = rng.randint(5 * SEC, 15 * SEC)  # late: own window final already
                elif u < 0.08:
                    delay = rng.randint(bound + 1, 4 * SEC)  # beyond the bound
                elif very_late and u < 0.08 + very_late:
                    delay = rng.randint(20 * SEC, 40 * SEC)
                else:
                    delay = rng.randint(0, bound * 9 // 10)
                events.append((t + delay, order, t, sym)); order += 1
            u = rng.random()
            if exact_gap_left and u < 0.12:
                exact_gap_left -= 1
                t += gap
            elif u < 0.35:
                bridge_from = t
                t += rng.randint(gap + 100, gap + 600)
            else:
                t += rng.randint(gap + 1000, gap + 20 * SEC)
    events.sort()
    prices = {s: Decimal(p) for s, p in SYMBOLS.items()}
    rows = []
    for k, (_a, _o, t, sym) in enumerate(events):
        prices[sym] = (prices[sym] + Decimal(rng.randint(-900, 900)) / 10000).quantize(Q4)
        rows.append({"ts": fmt_ts(t), "symbol": sym, "price": f"{prices[sym]:.4f}", "qty": rng.randint(1, 500), "seq": k})
    return rows


def to_csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([r[c] for c in columns])
    return out.getvalue()


def read_trades(text: str) -> list[dict]:
    """Parse the CSV as ferris reads it: ts -> epoch ms, price kept as text (a DOUBLE column)."""
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        rows.append({"ts": parse_ts(r["ts"]), "symbol": r["symbol"], "price": r["price"], "qty": int(r["qty"]), "seq": int(r["seq"])})
    return rows


# ----------------------------------------------------------------------------------------------
# the semantics


def tumbling(size: int):
    return lambda t: [((t // size) * size, (t // size) * size + size)]


def sliding(size: int, advance: int):
    def windows(t):
        first = (t - size) // advance + 1
        return [(k * advance, k * advance + size) for k in range(first, t // advance + 1)]
    return windows


class Stats(dict):
    def bump(self, name, by=1):
        self[name] = self.get(name, 0) + by


def aligned_windows(recs, bound, windows_of, key_of=lambda r: r["symbol"], lateness=0, stats=None, late=None):
    """Assign records to tumbling/sliding windows under the watermark. Returns
    {(key, start, end): [records]} of accepted records; windows as they are when W = +inf.
    The records dropped as late are appended to `late` (a list), if given."""
    stats = stats if stats is not None else Stats()
    W = None  # -inf
    high = None
    contents: dict = {}
    for r in recs:
        t = r["ts"]
        wins = windows_of(t)
        live = [w for w in wins if W is None or W < w[1] + lateness]
        if not live:
            stats.bump("late_dropped")
            if late is not None:
                late.append(r)
            if any(W == e for _s, e in wins):
                stats.bump("late_at_W_eq_end")
        else:
            if len(live) < len(wins):
                stats.bump("partly_late")
            if W is not None and any(W == e for _s, e in wins):
                stats.bump("at_W_eq_end_counted" if W in [e for _s, e in live] else "at_W_eq_end_excluded")
            if lateness and any(W is not None and W >= w[1] for w in live):
                stats.bump("late_accepted")
            if lateness and any(W is not None and W == w[1] + lateness for w in wins):
                raise ValueError("a record exactly at end + allowed lateness (ambiguous)")
            key = key_of(r)
            if key is not None:
                for s, e in live:
                    contents.setdefault((key, s, e), []).append(r)
        high = t if high is None else max(high, t)
        W = high - bound
    return contents, stats


class Ambiguous(Exception):
    def __init__(self, seq, why):
        super().__init__(f"record seq {seq}: {why}")
        self.seq = seq


def session_windows(recs, bound, gap, key_of=lambda r: r["symbol"], stats=None):
    """Per-key sessions under the watermark. Returns {(key, start, end): [records]}.
    A record is late when its own window [t, t+G) is final and it touches no open session.
    Two configurations the README does not pin down raise Ambiguous (the generator drops
    such records): a record whose own window is final but that touches an open session, and
    a record whose own window is open but that touches a session already final (emitted)."""
    stats = stats if stats is not None else Stats()
    W = None
    high = None
    sessions: dict = {}  # key -> list of [start, last, records]
    done = []
    for r in recs:
        t = r["ts"]
        lst = sessions.setdefault(key_of(r), [])
        is_final = lambda s: W is not None and W >= s[1] + gap
        touching = [s for s in lst if s[0] < t + gap and t < s[1] + gap]
        open_t = [s for s in touching if not is_final(s)]
        final_t = [s for s in touching if is_final(s)]
        if W is not None and W >= t + gap:
            if open_t:
                raise Ambiguous(r["seq"], "own window final, but it touches an open session")
            stats.bump("late_dropped")
        else:
            if final_t:
                raise Ambiguous(r["seq"], "own window open, but it touches a final session")
            if len(open_t) >= 2:
                stats.bump("merges", len(open_t) - 1)
            if W is not None and t < high - bound:
                stats.bump("beyond_bound_accepted")
            new = [min([t] + [s[0] for s in open_t]), max([t] + [s[1] for s in open_t]), [r]]
            # an open session whose start moves: under EMIT CHANGES its row is retracted
            stats.bump("starts_moved", sum(1 for s in open_t if s[0] != new[0]))
            for s in open_t:
                new[2].extend(s[2])
                lst.remove(s)
            lst.append(new)
        high = t if high is None else max(high, t)
        W = high - bound
    out = {}
    for key, lst in sessions.items():
        for s, last, rs in lst:
            out[(key, s, last + gap)] = rs
    return out, stats


def session_windows_lateness(recs, bound, gap, lateness, key_of=lambda r: r["symbol"], stats=None):
    """Per-key sessions with allowed lateness L. Returns {(key, start, end): [records]}.
    The rules (the brief's for sessions; cf. the README's for aligned windows), with W the
    watermark left by the records before this one:
    - a session [start, last] is final (its row emitted) once W >= last + G, and stays open
      (a record may still join it: a correction, re-emitted under the same start) until
      W >= last + G + L; then it is closed;
    - a record at t touches a session when start - G < t < last + G (closer than G);
    - a record that touches open sessions joins them (merging them all, start = the earliest),
      even when its own window expired already (t + G + L <= W);
    - a record that touches no open session is late (dropped) when t + G + L <= W, and
      otherwise starts a session of its own (final at once when W >= t + G).
    Configurations these rules leave undefined raise Ambiguous (the generator drops such
    records from the input):
    - an accepted record that touches a closed session (whose final row can no longer change);
    - an accepted record that moves the start of a session whose final row is out already
      (sticky: a corrected session counts as emitted): EMIT FINAL output has no `_op` column,
      so the row under the old (symbol, window_start) is never retracted, and whether the
      output then holds both rows is not pinned down;
    - W exactly at last + G + L of a touching session, or exactly at t + G + L (the
      boundary of allowed lateness, left open as in `aligned_windows`)."""
    stats = stats if stats is not None else Stats()
    W = None
    high = None
    sessions: dict = {}  # key -> list of [start, last, records, emitted, corrected]
    for r in recs:
        t = r["ts"]
        lst = sessions.setdefault(key_of(r), [])
        if W is not None:
            for s in lst:
                s[3] = s[3] or W >= s[1] + gap
        is_closed = lambda s: W is not None and W >= s[1] + gap + lateness
        touching = [s for s in lst if s[0] < t + gap and t < s[1] + gap]
        open_t = [s for s in touching if not is_closed(s)]
        closed_t = [s for s in touching if is_closed(s)]
        expired = W is not None and W >= t + gap + lateness
        if W is not None and (W == t + gap + lateness or any(W == s[1] + gap + lateness for s in touching)):
            raise Ambiguous(r["seq"], "W exactly at the end of allowed lateness")
        if not open_t and expired:
            stats.bump("late_dropped")
        else:
            if closed_t:
                raise Ambiguous(r["seq"], "accepted, but it touches a closed session")
            start = min([t] + [s[0] for s in open_t])
            if any(s[3] and s[0] != start for s in open_t):
                raise Ambiguous(r["seq"], "it moves the start of a session emitted as final")
            if expired:
                stats.bump("joined_open_session_own_window_expired")
            if any(s[3] for s in open_t):
                stats.bump("records_joining_emitted_sessions")
            elif not open_t and W is not None and W >= t + gap:
                stats.bump("new_session_final_at_once")
            if len(open_t) >= 2:
                stats.bump("merges", len(open_t) - 1)
            stats.bump("starts_moved", sum(1 for s in open_t if s[0] != start))
            new = [start, max([t] + [s[1] for s in open_t]), [r], any(s[3] for s in open_t), any(s[3] for s in open_t)]
            for s in open_t:
                new[2].extend(s[2])
                lst.remove(s)
            lst.append(new)
        high = t if high is None else max(high, t)
        W = high - bound
    out = {}
    for key, lst in sessions.items():
        for s, last, rs, _emitted, corrected in lst:
            out[(key, s, last + gap)] = rs
            stats.bump("sessions_corrected_after_final", int(corrected))
    return out, stats


def drop_ambiguous(rows, compute):
    """Drop records that make `compute` raise Ambiguous until none do; renumber seq."""
    dropped = 0
    while True:
        recs = read_trades(to_csv(rows, ["ts", "symbol", "price", "qty", "seq"]))
        try:
            compute(recs)
            break
        except Ambiguous as e:
            rows = [r for r in rows if r["seq"] != e.seq]
            dropped += 1
    for k, r in enumerate(rows):
        r["seq"] = k
    return rows, dropped


def count_late_for(recs, bound, windows_of):
    _c, st = aligned_windows(recs, bound, windows_of, key_of=lambda r: None)
    return st


# ----------------------------------------------------------------------------------------------
# the cases

SINK_TAIL = """  '{name}.type' = 'file_sink',
  '{name}.path' = '{{out}}',
  '{name}.format' = 'json'
);
"""


def trades_with(bound: str, extra: str = "") -> str:
    return (
        "WITH (\n"
        "  'trades.type' = 'file_source',\n"
        "  'trades.path' = '{in:trades.csv}',\n"
        "  'trades.format' = 'csv',\n"
        "  'trades.event.time.field' = 'ts',\n"
        "  'trades.watermark.strategy' = 'bounded_out_of_orderness',\n"
        f"  'trades.watermark.max_out_of_orderness' = '{bound}',\n" + extra
    )


def more_trades_with(bound: str) -> str:
    """The options of a second trades source, `more_trades`, to add to trades_with."""
    return (
        "  'more_trades.type' = 'file_source',\n"
        "  'more_trades.path' = '{in:more_trades.csv}',\n"
        "  'more_trades.format' = 'csv',\n"
        "  'more_trades.event.time.field' = 'ts',\n"
        "  'more_trades.watermark.strategy' = 'bounded_out_of_orderness',\n"
        f"  'more_trades.watermark.max_out_of_orderness' = '{bound}',\n"
    )


def trades_and_volume_sql(name, window, emit, source, with_end=True, having=None):
    """The job of the cases that count trades and sum qty per symbol and window."""
    end = "_window_end AS window_end,\n       " if with_end else ""
    having = f"HAVING {having}\n" if having else ""
    return (
        f"CREATE STREAM {name} AS\n"
        f"SELECT symbol, _window_start AS window_start, {end}COUNT(*) AS trades, SUM(qty) AS volume\n"
        "FROM trades\n"
        "GROUP BY symbol\n"
        f"{having}WINDOW {window}\n"
        f"EMIT {emit}\n" + source + SINK_TAIL.format(name=name)
    )


def window_agg_rows(contents, build):
    return [build(key, s, e, rs) for (key, s, e), rs in contents.items()]


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


TRADE_COLS = ["ts", "symbol", "price", "qty", "seq"]


@case
def tumbling_multi_agg_decimal():
    bound = 2 * SEC
    rows = gen_trades(101, 1500, bound, delays=[(0.04, 3 * SEC, 14 * SEC)])
    rows = inject_boundaries(rows, 102, bound, 10 * SEC, exact=3, near=2)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))
    expected = window_agg_rows(contents, lambda k, s, e, rs: {
        "symbol": k, "window_start": ts(s), "window_end": ts(e), "trades": len(rs),
        "notional": dec(sum((dec4(r["price"]) for r in rs), Decimal(0)), 4),
        "min_qty": min(r["qty"] for r in rs), "max_qty": max(r["qty"] for r in rs),
        "avg_price": math.fsum(float(r["price"]) for r in rs) / len(rs),
    })
    sql = """CREATE STREAM ten_second_stats AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades,
       SUM(CAST(price AS DECIMAL(18,4))) AS notional,
       MIN(qty) AS min_qty,
       MAX(qty) AS max_qty,
       AVG(CAST(price AS DOUBLE)) AS avg_price
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
""" + trades_with("2s") + SINK_TAIL.format(name="ten_second_stats")
    meta = {"mode": "final", "key": ["symbol", "window_start"], "float_tol": 1e-9}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def tumbling_files_split():
    """A source of three files, each a stretch of time: split by file in a parallel job, each
    file's rows reach the window operator through an exchange that merges their watermarks."""
    bound = 2 * SEC
    rows = gen_trades(111, 1200, bound)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))
    expected = window_agg_rows(contents, lambda k, s, e, rs: {
        "symbol": k, "window_start": ts(s), "trades": len(rs), "volume": sum(r["qty"] for r in rs),
    })
    sql = trades_and_volume_sql(
        "file_split_counts", "TUMBLING(INTERVAL '10' SECOND)", "FINAL",
        trades_with("2s").replace("{in:trades.csv}", "{in:trades}"), with_end=False)
    third = len(rows) // 3
    parts = [rows[:third], rows[third:2 * third], rows[2 * third:]]
    inputs = {f"trades/part-{i}.csv": (part, TRADE_COLS) for i, part in enumerate(parts)}
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, inputs, expected, meta, st


@case
def sliding_having():
    bound = 2 * SEC
    weights = {"AAPL": 30, "MSFT": 25, "NVDA": 20, "AMZN": 8, "TSLA": 3}
    rows = gen_trades(202, 1200, bound, step_ms=250, weights=weights, delays=[(0.05, 3 * SEC, 25 * SEC)])
    rows = inject_boundaries(rows, 203, bound, 5 * SEC, exact=3, near=2)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, sliding(20 * SEC, 5 * SEC))
    st["windows_below_having"] = sum(1 for rs in contents.values() if len(rs) < 3)
    expected = [
        {"symbol": k, "window_start": ts(s), "window_end": ts(e), "trades": len(rs), "volume": sum(r["qty"] for r in rs)}
        for (k, s, e), rs in contents.items() if len(rs) >= 3
    ]
    sql = trades_and_volume_sql("sliding_volume", "SLIDING(INTERVAL '20' SECOND, INTERVAL '5' SECOND)", "FINAL", trades_with("2s"), having='COUNT(*) >= 3')
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def session_multi_agg():
    bound, gap = 1 * SEC, 4 * SEC
    rows = gen_bursty(303, bound, gap)
    rows, dropped = drop_ambiguous(rows, lambda recs: session_windows(recs, bound, gap))
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = session_windows(recs, bound, gap)
    st["ambiguous_records_removed_from_input"] = dropped
    expected = trades_and_volume(contents)
    sql = trades_and_volume_sql("sessions", "SESSION(INTERVAL '4' SECOND)", "FINAL", trades_with("1s"))
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def tumbling_emit_changes():
    bound = 2 * SEC
    rows = gen_trades(404, 1400, bound, delays=[(0.04, 3 * SEC, 14 * SEC)])
    rows = inject_boundaries(rows, 405, bound, 10 * SEC, exact=2, near=1)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))
    expected = trades_and_volume(contents, with_end=False)
    sql = trades_and_volume_sql("running_counts", 'TUMBLING(10s)', "CHANGES", trades_with("2s"), with_end=False)
    meta = {"mode": "changes", "key": ["symbol", "window_start"], "monotonic": ["trades", "volume"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def tumbling_allowed_lateness():
    bound, lateness = 1 * SEC, 5 * SEC
    rows = gen_trades(505, 1500, bound, delays=[(0.06, 2 * SEC, 8 * SEC), (0.03, 17 * SEC, 30 * SEC)])
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC), lateness=lateness)
    expected = [
        {"symbol": k, "window_start": ts(s), "window_end": ts(e), "trades": len(rs),
         "notional": dec(sum((dec4(r["price"]) for r in rs), Decimal(0)), 4)}
        for (k, s, e), rs in contents.items()
    ]
    sql = """CREATE STREAM corrected_counts AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades, SUM(CAST(price AS DECIMAL(18,4))) AS notional
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
""" + trades_with("1s", "  'late.data.strategy' = 'allowed_lateness',\n  'late.data.allowed.lateness' = '5s',\n") + SINK_TAIL.format(name="corrected_counts")
    meta = {"mode": "changes", "key": ["symbol", "window_start"], "monotonic": ["trades"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def flink_tumble():
    bound = 3 * SEC
    rows = gen_trades(606, 1300, bound, delays=[(0.05, 4 * SEC, 20 * SEC)])
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(15 * SEC))
    expected = [
        {"symbol": k, "window_start": ts(s), "trades": len(rs), "volume": sum(r["qty"] for r in rs),
         "max_price": float(max(Decimal(r["price"]) for r in rs))}
        for (k, s, e), rs in contents.items()
    ]
    sql = """CREATE STREAM flink_windows AS
SELECT symbol,
       TUMBLE_START(ts, INTERVAL '15' SECOND) AS window_start,
       COUNT(*) AS trades, SUM(qty) AS volume, MAX(price) AS max_price
FROM trades
GROUP BY TUMBLE(ts, INTERVAL '15' SECOND), symbol
""" + trades_with("3s") + SINK_TAIL.format(name="flink_windows")
    meta = {"mode": "final", "key": ["symbol", "window_start"], "float_tol": 1e-12}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


INSTRUMENTS = [
    ("AAPL", "Technology"), ("MSFT", "Technology"), ("NVDA", "Semiconductors"),
    ("AMZN", "Consumer"), ("TSLA", "Automotive"), ("IBM", "Technology"),
]


@case
def join_two_tables_window():
    # The stream joined to two tables, the second on a column of the first: two lookup joins
    # under one window (an instrument's sector, then the sector's desk).
    bound = 2 * SEC
    weights = {"AAPL": 20, "MSFT": 20, "NVDA": 20, "AMZN": 15, "TSLA": 15, "ZZZZ": 2}
    rows = gen_trades(717, 1200, bound, weights=weights, delays=[(0.04, 3 * SEC, 40 * SEC)],
                      extra_symbols={"ZZZZ": "12.5000"})
    rows = inject_boundaries(rows, 718, bound, 30 * SEC, exact=2, near=1, slack=1500, a_symbol="ZZZZ")
    recs = read_trades(to_csv(rows, TRADE_COLS))
    sector = dict(INSTRUMENTS)
    # Automotive has no desk: its trades match the first table and not the second.
    desks = [("Technology", "growth"), ("Semiconductors", "growth"), ("Consumer", "value")]
    desk = dict(desks)
    contents, st = aligned_windows(recs, bound, tumbling(30 * SEC),
                                   key_of=lambda r: desk.get(sector.get(r["symbol"])))
    st["unmatched_trades"] = sum(1 for r in recs if desk.get(sector.get(r["symbol"])) is None)
    expected = [
        {"desk": k, "window_start": ts(s), "trades": len(rs),
         "volume": sum(r["qty"] for r in rs)}
        for (k, s, e), rs in contents.items()
    ]
    instruments = [{"symbol": s, "sector": sec} for s, sec in INSTRUMENTS]
    sql = """CREATE STREAM desk_volume AS
SELECT d.desk AS desk, _window_start AS window_start, COUNT(*) AS trades, SUM(t.qty) AS volume
FROM trades t
  JOIN instruments i ON t.symbol = i.symbol
  JOIN desks d ON i.sector = d.sector
GROUP BY d.desk
WINDOW TUMBLING(INTERVAL '30' SECOND)
EMIT FINAL
""" + trades_with("2s", "  'instruments.type' = 'file_source',\n  'instruments.path' = '{in:instruments.csv}',\n  'instruments.format' = 'csv',\n  'desks.type' = 'file_source',\n  'desks.path' = '{in:desks.csv}',\n  'desks.format' = 'csv',\n") + SINK_TAIL.format(name="desk_volume")
    meta = {"mode": "final", "key": ["desk", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS),
                 "instruments.csv": (instruments, ["symbol", "sector"]),
                 "desks.csv": ([{"sector": s, "desk": d} for s, d in desks], ["sector", "desk"])}, expected, meta, st


@case
def join_table_window():
    bound = 2 * SEC
    weights = {"AAPL": 20, "MSFT": 20, "NVDA": 20, "AMZN": 15, "TSLA": 15, "ZZZZ": 2}
    rows = gen_trades(707, 1600, bound, weights=weights, delays=[(0.04, 3 * SEC, 40 * SEC)],
                      extra_symbols={"ZZZZ": "12.5000"})
    # the watermark is the source's: an unmatched trade (dropped by the join) still advances it
    rows = inject_boundaries(rows, 708, bound, 30 * SEC, exact=2, near=1, slack=1500, a_symbol="ZZZZ")
    recs = read_trades(to_csv(rows, TRADE_COLS))
    sector = dict(INSTRUMENTS)
    contents, st = aligned_windows(recs, bound, tumbling(30 * SEC), key_of=lambda r: sector.get(r["symbol"]))
    st["unmatched_trades"] = sum(1 for r in recs if r["symbol"] not in sector)
    expected = [
        {"sector": k, "window_start": ts(s), "window_end": ts(e), "trades": len(rs),
         "notional": dec(sum((dec4(r["price"]) * r["qty"] for r in rs), Decimal(0)), 4)}
        for (k, s, e), rs in contents.items()
    ]
    instruments = [{"symbol": s, "sector": sec} for s, sec in INSTRUMENTS]
    sql = """CREATE STREAM sector_notional AS
SELECT i.sector AS sector, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS trades,
       SUM(CAST(t.price AS DECIMAL(18,4)) * t.qty) AS notional
FROM trades t JOIN instruments i ON t.symbol = i.symbol
GROUP BY i.sector
WINDOW TUMBLING(INTERVAL '30' SECOND)
EMIT FINAL
""" + trades_with("2s", "  'instruments.type' = 'file_source',\n  'instruments.path' = '{in:instruments.csv}',\n  'instruments.format' = 'csv',\n") + SINK_TAIL.format(name="sector_notional")
    meta = {"mode": "final", "key": ["sector", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS), "instruments.csv": (instruments, ["symbol", "sector"])}, expected, meta, st


@case
def count_distinct_alias():
    bound = 2 * SEC
    rows = gen_trades(808, 1200, bound, delays=[(0.04, 3 * SEC, 14 * SEC)],
                      qty=lambda rng: rng.choice([10, 20, 25, 50, 75, 100, 150, 200, 250, 500]))
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))
    expected = [
        {"symbol": k, "window_start": ts(s), "trades": len(rs), "distinct_qty": len({r["qty"] for r in rs})}
        for (k, s, e), rs in contents.items()
    ]
    sql = """CREATE STREAM distinct_sizes AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, COUNT_DISTINCT(qty) AS distinct_qty
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
""" + trades_with("2s") + SINK_TAIL.format(name="distinct_sizes")
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def filter_project_decimal():
    bound = 5 * SEC
    rows = gen_trades(909, 800, bound, delays=[(0.03, 6 * SEC, 30 * SEC)], qty=lambda rng: rng.randint(1, 300))
    recs = read_trades(to_csv(rows, TRADE_COLS))
    st = count_late_for(recs, bound, tumbling(10 * SEC))
    st = Stats(beyond_bound_rows_kept=st.get("late_dropped", 0))
    expected = [
        {"seq": r["seq"], "ts": ts(r["ts"]), "symbol": r["symbol"],
         "notional": dec(dec4(r["price"]) * r["qty"], 4),
         "size": "big" if r["qty"] > 100 else "small"}
        for r in recs if r["qty"] >= 25 and r["symbol"] != "TSLA"
    ]
    sql = """CREATE STREAM sized_trades AS
SELECT seq, ts, symbol,
       CAST(price AS DECIMAL(18,4)) * qty AS notional,
       CASE WHEN qty > 100 THEN 'big' ELSE 'small' END AS size
FROM trades
WHERE qty >= 25 AND symbol <> 'TSLA'
""" + trades_with("5s") + SINK_TAIL.format(name="sized_trades")
    meta = {"mode": "rows", "key": ["seq"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def groupby_table_changes():
    bound = 5 * SEC
    rows = gen_trades(1010, 1000, bound, delays=[(0.03, 6 * SEC, 30 * SEC)])
    recs = read_trades(to_csv(rows, TRADE_COLS))
    st = count_late_for(recs, bound, tumbling(10 * SEC))
    st = Stats(beyond_bound_rows_kept=st.get("late_dropped", 0))
    groups: dict = {}
    for r in recs:
        groups.setdefault(r["symbol"], []).append(r)
    expected = [
        {"symbol": k, "trades": len(rs),
         "price_sum": dec(sum((dec4(r["price"]) for r in rs), Decimal(0)), 4),
         "notional": dec(sum((dec4(r["price"]) * r["qty"] for r in rs), Decimal(0)), 4)}
        for k, rs in groups.items()
    ]
    sql = """CREATE TABLE symbol_totals AS
SELECT symbol, COUNT(*) AS trades,
       SUM(CAST(price AS DECIMAL(18,4))) AS price_sum,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM trades
GROUP BY symbol
EMIT CHANGES
""" + trades_with("5s") + SINK_TAIL.format(name="symbol_totals")
    meta = {"mode": "changes", "key": ["symbol"], "monotonic": ["trades"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


def totals(rs):
    """COUNT(*), SUM(qty) and the exact notional of trades `rs`."""
    return {"trades": len(rs), "volume": sum(r["qty"] for r in rs),
            "notional": dec(sum((dec4(r["price"]) * r["qty"] for r in rs), Decimal(0)), 4)}


@case
def global_aggregate_table():
    """An aggregate without GROUP BY: a table of one row, updated as trades arrive."""
    bound = 5 * SEC
    rows = gen_trades(1111, 700, bound, delays=[(0.03, 6 * SEC, 30 * SEC)])
    recs = read_trades(to_csv(rows, TRADE_COLS))
    row = totals(recs)
    row.update({"low": dec(min(dec4(r["price"]) for r in recs), 4),
                "high": dec(max(dec4(r["price"]) for r in recs), 4)})
    sql = """CREATE TABLE trade_totals AS
SELECT COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional,
       MIN(CAST(price AS DECIMAL(18,4))) AS low,
       MAX(CAST(price AS DECIMAL(18,4))) AS high
FROM trades
EMIT CHANGES
""" + trades_with("5s", SMALL_BATCHES) + SINK_TAIL.format(name="trade_totals")
    meta = {"mode": "changes", "key": [], "monotonic": ["trades", "volume"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, [row], meta, Stats()


@case
def groupby_expression_keys():
    """GROUP BY expressions, one of them a text key made from a number through a cast."""
    bound = 5 * SEC
    rows = gen_trades(1212, 900, bound)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    groups: dict = {}
    for r in recs:
        size = "big" if r["qty"] >= 400 else str(r["qty"] // 100)
        groups.setdefault((r["symbol"][0], size), []).append(r)
    expected = [{"initial": i, "size_class": c, **totals(rs)} for (i, c), rs in groups.items()]
    sql = """CREATE TABLE size_classes AS
SELECT SUBSTR(symbol, 1, 1) AS initial,
       CASE WHEN qty >= 400 THEN 'big' ELSE CAST(qty / 100 AS VARCHAR) END AS size_class,
       COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM trades
GROUP BY SUBSTR(symbol, 1, 1), CASE WHEN qty >= 400 THEN 'big' ELSE CAST(qty / 100 AS VARCHAR) END
EMIT CHANGES
""" + trades_with("5s", SMALL_BATCHES) + SINK_TAIL.format(name="size_classes")
    meta = {"mode": "changes", "key": ["initial", "size_class"], "monotonic": ["trades", "volume"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, Stats()


VENUE_COLS = TRADE_COLS + ["venue"]


@case
def groupby_null_keys():
    """A key column with empty (NULL) values: the NULLs are one group, as in SQL."""
    bound = 5 * SEC
    rows = gen_trades(1313, 800, bound)
    rng = random.Random(1314)
    for r in rows:
        r["venue"] = rng.choice(["XNAS", "XNYS", "BATS", ""])
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["venue"] or None, []).append(r)
    expected = [{"venue": v, "trades": len(rs), "with_venue": 0 if v is None else len(rs),
                 "volume": sum(r["qty"] for r in rs)} for v, rs in groups.items()]
    sql = """CREATE TABLE venue_totals AS
SELECT venue, COUNT(*) AS trades, COUNT(venue) AS with_venue, SUM(qty) AS volume
FROM trades
GROUP BY venue
EMIT CHANGES
""" + trades_with("5s", SMALL_BATCHES) + SINK_TAIL.format(name="venue_totals")
    meta = {"mode": "changes", "key": ["venue"], "monotonic": ["trades", "volume"]}
    return sql, {"trades.csv": (rows, VENUE_COLS)}, expected, meta, Stats()


@case
def groupby_union_subquery():
    """GROUP BY over a subquery: a filtered stream UNION ALL another stream."""
    bound = 5 * SEC
    rows = gen_trades(1414, 600, bound)
    more = gen_trades(1415, 500, bound)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    more_recs = read_trades(to_csv(more, TRADE_COLS))
    groups: dict = {}
    for r in [r for r in recs if r["qty"] > 50] + more_recs:
        groups.setdefault(r["symbol"], []).append(r)
    expected = [{"symbol": k, **totals(rs)} for k, rs in groups.items()]
    sql = """CREATE TABLE symbol_totals AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM (
  SELECT symbol, price, qty FROM trades WHERE qty > 50
  UNION ALL
  SELECT symbol, price, qty FROM more_trades
) AS all_trades
GROUP BY symbol
EMIT CHANGES
""" + trades_with("5s", more_trades_with("5s")) + SINK_TAIL.format(name="symbol_totals")
    meta = {"mode": "changes", "key": ["symbol"], "monotonic": ["trades", "volume"]}
    inputs = {"trades.csv": (rows, TRADE_COLS), "more_trades.csv": (more, TRADE_COLS)}
    return sql, inputs, expected, meta, Stats()


@case
def groupby_subquery_filtered():
    """A filter over a keyed table's subquery, from outside it: as a HAVING, a key whose count
    grows past the bound is retracted. Rare symbols stay."""
    bound = 5 * SEC
    weights = {"AAPL": 10, "MSFT": 10, "NVDA": 1, "AMZN": 1, "TSLA": 10}
    rows = gen_trades(1416, 400, bound, weights=weights)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    counts: dict = {}
    for r in recs:
        counts[r["symbol"]] = counts.get(r["symbol"], 0) + 1
    expected = [{"symbol": k, "trades": n} for k, n in counts.items() if n <= 40]
    sql = """CREATE TABLE rare_symbols AS
SELECT symbol PRIMARY KEY, trades
FROM (SELECT symbol, COUNT(*) AS trades FROM trades GROUP BY symbol) AS counts
WHERE trades <= 40
EMIT CHANGES
""" + trades_with("5s", SMALL_BATCHES) + SINK_TAIL.format(name="rare_symbols")
    meta = {"mode": "changes", "key": ["symbol"], "monotonic": []}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, Stats()


@case
def groupby_empty_input():
    """A GROUP BY over a source with a header and no rows (its schema given, as there is no
    row to infer it from): an empty table."""
    schema = "  'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DOUBLE, qty BIGINT, seq BIGINT',\n"
    sql = """CREATE TABLE symbol_totals AS
SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume
FROM trades
GROUP BY symbol
EMIT CHANGES
""" + trades_with("5s", schema) + SINK_TAIL.format(name="symbol_totals")
    meta = {"mode": "changes", "key": ["symbol"]}
    return sql, {"trades.csv": ([], TRADE_COLS)}, [], meta, Stats()


@case
def cte_filter_tumbling():
    """A common table expression filtering the stream feeds a tumbling window. The watermark
    is the source's: a trade the filter drops still moves it on."""
    bound = 2 * SEC
    rows = gen_trades(1717, 1500, bound, delays=[(0.04, 3 * SEC, 14 * SEC)])
    rows = inject_boundaries(rows, 1718, bound, 10 * SEC, exact=3, near=2)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC),
                                   key_of=lambda r: r["symbol"] if r["qty"] >= 100 else None)
    expected = [
        {"symbol": k, "window_start": ts(s), "big_trades": len(rs), "volume": sum(r["qty"] for r in rs)}
        for (k, s, e), rs in contents.items()
    ]
    sql = """CREATE STREAM big_trade_volume AS
WITH big AS (
  SELECT symbol, qty FROM trades WHERE qty >= 100
)
SELECT symbol, _window_start AS window_start, COUNT(*) AS big_trades, SUM(qty) AS volume
FROM big
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
""" + trades_with("2s") + SINK_TAIL.format(name="big_trade_volume")
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def cte_join_star_tumbling():
    """A common table expression joins the stream to a table and takes every column of the
    stream (`t.*`, its event time and watermark among them) into a tumbling window per
    sector. A trade without an instrument is dropped by the join but still moves the
    watermark on."""
    bound = 2 * SEC
    weights = {"AAPL": 20, "MSFT": 20, "NVDA": 20, "AMZN": 15, "TSLA": 15, "ZZZZ": 2}
    rows = gen_trades(1919, 1200, bound, weights=weights, delays=[(0.04, 3 * SEC, 14 * SEC)],
                      extra_symbols={"ZZZZ": "12.5000"})
    rows = inject_boundaries(rows, 1920, bound, 10 * SEC, exact=2, near=1, slack=1500, a_symbol="ZZZZ")
    recs = read_trades(to_csv(rows, TRADE_COLS))
    sector = dict(INSTRUMENTS)
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC), key_of=lambda r: sector.get(r["symbol"]))
    expected = [
        {"sector": k, "window_start": ts(s), "trades": len(rs), "volume": sum(r["qty"] for r in rs)}
        for (k, s, e), rs in contents.items()
    ]
    instruments = [{"symbol": s, "sector": sec} for s, sec in INSTRUMENTS]
    sql = """CREATE STREAM sector_volume AS
WITH joined AS (
  SELECT t.*, i.sector FROM trades AS t JOIN instruments AS i ON t.symbol = i.symbol
)
SELECT sector, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume
FROM joined
GROUP BY sector
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
""" + trades_with("2s", "  'instruments.type' = 'file_source',\n  'instruments.path' = '{in:instruments.csv}',\n  'instruments.format' = 'csv',\n") + SINK_TAIL.format(name="sector_volume")
    meta = {"mode": "final", "key": ["sector", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS), "instruments.csv": (instruments, ["symbol", "sector"])}, expected, meta, st


@case
def union_tumbling():
    """A tumbling window over the UNION ALL of two streams (one filtered in its branch): their
    watermarks merge (the least holds), so with every trade within its own stream's bound none
    is late, and each window holds both streams' trades."""
    bound = 2 * SEC
    rows = gen_trades(1818, 800, bound)
    more = gen_trades(1819, 700, bound)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    more_recs = read_trades(to_csv(more, TRADE_COLS))
    size = 10 * SEC
    contents: dict = {}
    for r in [r for r in recs if r["symbol"] != "TSLA"] + more_recs:
        start = r["ts"] // size * size
        contents.setdefault((r["symbol"], start), []).append(r)
    expected = [{"symbol": k, "window_start": ts(s), **totals(rs)} for (k, s), rs in contents.items()]
    sql = """CREATE STREAM both_venues AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS volume,
       SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
FROM (
  SELECT symbol, price, qty FROM trades WHERE symbol <> 'TSLA'
  UNION ALL
  SELECT symbol, price, qty FROM more_trades
) AS all_trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
""" + trades_with("2s", more_trades_with("2s")) + SINK_TAIL.format(name="both_venues")
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    inputs = {"trades.csv": (rows, TRADE_COLS), "more_trades.csv": (more, TRADE_COLS)}
    return sql, inputs, expected, meta, Stats()


# The new changelog cases set a small source batch size: with the default (8192 rows) the
# whole input is one micro-batch, emitted once, so the updates, corrections and retractions
# between micro-batches would go untested by a plain run. 2 keeps multi-row batches (a record
# judged against a watermark another record of its batch moved) while emitting often.
# (`--check --batch-sizes` replaces it.)
SMALL_BATCHES = "  'trades.batch.size' = '2',\n"


def late_rows(late):
    """The dead-letter rows expected for late records: the aggregate's input columns (the group
    key and SUM's argument), the event time in `_window_start`."""
    return [{"symbol": r["symbol"], "qty": r["qty"], "_window_start": ts(r["ts"])} for r in late]


@case
def sliding_emit_changes():
    bound = 2 * SEC
    weights = {"AAPL": 30, "MSFT": 25, "NVDA": 20, "AMZN": 15, "TSLA": 10}
    rows = gen_trades(1111, 1300, bound, step_ms=250, weights=weights, delays=[(0.05, 3 * SEC, 25 * SEC)])
    rows = inject_boundaries(rows, 1112, bound, 5 * SEC, exact=3, near=2)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, sliding(20 * SEC, 5 * SEC))
    expected = trades_and_volume(contents)
    sql = trades_and_volume_sql("sliding_running", "SLIDING(INTERVAL '20' SECOND, INTERVAL '5' SECOND)", "CHANGES", trades_with("2s", SMALL_BATCHES))
    meta = {"mode": "changes", "key": ["symbol", "window_start"], "monotonic": ["trades"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def session_emit_changes():
    # EMIT CHANGES rows carry `_op`: `+U` upserts, `-D` retracts. When a record bridges open
    # sessions (or extends one backwards), the sessions whose start moves have their earlier
    # row retracted and the merged session is upserted under the earliest start; a retraction
    # withdraws its key's earlier row, so the expected rows are the final sessions. `trades`
    # never decreases per key: a key's row is only ever replaced by the same session grown,
    # and a start, once moved away from, is never a session's start again.
    bound, gap = 1 * SEC, 4 * SEC
    rows = gen_bursty(1212, bound, gap)
    rows, dropped = drop_ambiguous(rows, lambda recs: session_windows(recs, bound, gap))
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = session_windows(recs, bound, gap)
    st["ambiguous_records_removed_from_input"] = dropped
    expected = trades_and_volume(contents)
    sql = trades_and_volume_sql("session_running", "SESSION(INTERVAL '4' SECOND)", "CHANGES", trades_with("1s", SMALL_BATCHES))
    meta = {"mode": "changes", "key": ["symbol", "window_start"], "monotonic": ["trades"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def tumbling_late_dead_letter():
    # As with 'drop', late records are left out of the results; they are also written to the
    # dead-letter file (relative: next to the output, in the scratch folder). expected_late.jsonl
    # holds them (not part of the README's case format; `--check` compares it as a multiset).
    bound = 1 * SEC
    rows = gen_trades(1313, 1400, bound, delays=[(0.05, 2 * SEC, 14 * SEC)])
    rows = inject_boundaries(rows, 1314, bound, 10 * SEC, exact=3, near=2)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    late = []
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC), late=late)
    expected = trades_and_volume(contents)
    sql = trades_and_volume_sql("dead_lettered_counts", "TUMBLING(INTERVAL '10' SECOND)", "FINAL", trades_with("1s", "  'late.data.strategy' = 'dead_letter',\n  'late.data.dead_letter.path' = 'late.jsonl',\n"))
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st, {"expected_late.jsonl": late_rows(late)}


@case
def sliding_allowed_lateness():
    # EMIT FINAL with allowed lateness: a window's row is emitted when W >= end and re-emitted
    # (no `_op`) for each correction until W >= end + L; the last row per key is the corrected one.
    bound, lateness = 1 * SEC, 4 * SEC
    rows = gen_trades(1414, 1500, bound, delays=[(0.06, 2 * SEC, 9 * SEC), (0.04, 9 * SEC, 16 * SEC), (0.03, 17 * SEC, 30 * SEC)])
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, sliding(10 * SEC, 5 * SEC), lateness=lateness)
    expected = trades_and_volume(contents)
    sql = trades_and_volume_sql("corrected_sliding", "SLIDING(INTERVAL '10' SECOND, INTERVAL '5' SECOND)", "FINAL", trades_with("1s", SMALL_BATCHES + "  'late.data.strategy' = 'allowed_lateness',\n  'late.data.allowed.lateness' = '4s',\n"))
    meta = {"mode": "changes", "key": ["symbol", "window_start"], "monotonic": ["trades"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def session_allowed_lateness():
    # EMIT FINAL sessions with allowed lateness (rules in `session_windows_lateness`). A late
    # record that would move the start of a session already emitted as final is removed from
    # the input: FINAL output has no `_op`, so the old (symbol, window_start) row would stay
    # unretracted and what the output should then hold is not pinned down. Within that, a
    # key's row is only re-emitted grown, so `trades` is monotonic.
    bound, gap, lateness = 1 * SEC, 3 * SEC, 3 * SEC
    rows = gen_bursty(1522, bound, gap, very_late=0.04)
    compute = lambda recs: session_windows_lateness(recs, bound, gap, lateness)
    rows, dropped = drop_ambiguous(rows, compute)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = compute(recs)
    st["ambiguous_records_removed_from_input"] = dropped
    expected = trades_and_volume(contents)
    sql = trades_and_volume_sql("corrected_sessions", "SESSION(INTERVAL '3' SECOND)", "FINAL", trades_with("1s", SMALL_BATCHES + "  'late.data.strategy' = 'allowed_lateness',\n  'late.data.allowed.lateness' = '3s',\n"))
    meta = {"mode": "changes", "key": ["symbol", "window_start"], "monotonic": ["trades"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def tumbling_emit_changes_dead_letter():
    bound = 2 * SEC
    rows = gen_trades(1616, 1400, bound, delays=[(0.05, 3 * SEC, 16 * SEC)])
    rows = inject_boundaries(rows, 1617, bound, 10 * SEC, exact=3, near=1)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    late = []
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC), late=late)
    expected = trades_and_volume(contents, with_end=False)
    sql = trades_and_volume_sql("running_dead_lettered", "TUMBLING(INTERVAL '10' SECOND)", "CHANGES", trades_with("2s", SMALL_BATCHES + "  'late.data.strategy' = 'dead_letter',\n  'late.data.dead_letter.path' = 'late.jsonl',\n"), with_end=False)
    meta = {"mode": "changes", "key": ["symbol", "window_start"], "monotonic": ["trades"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st, {"expected_late.jsonl": late_rows(late)}


# ----------------------------------------------------------------------------------------------
# writing


@case
def top_n_per_key():
    """Top-N per key: the three largest trades of each symbol (ties: the earlier trade first),
    a changelog keyed by symbol and rank. At a rank, the size only grows."""
    bound = 5 * SEC
    rows = gen_trades(1301, 900, bound, qty=lambda rng: rng.randint(1, 60))
    recs = read_trades(to_csv(rows, TRADE_COLS))
    by_symbol: dict = {}
    for r in recs:
        by_symbol.setdefault(r["symbol"], []).append(r)
    expected = [
        {"symbol": k, "rank": n + 1, "qty": r["qty"], "seq": r["seq"]}
        for k, rs in by_symbol.items()
        for n, r in enumerate(sorted(rs, key=lambda r: (-r["qty"], r["seq"]))[:3])
    ]
    sql = """CREATE TABLE biggest_trades AS
SELECT symbol, rn AS rank, qty, seq
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY symbol ORDER BY qty DESC, seq) AS rn
  FROM trades
)
WHERE rn <= 3
EMIT CHANGES
""" + trades_with("5s", SMALL_BATCHES) + SINK_TAIL.format(name="biggest_trades")
    meta = {"mode": "changes", "key": ["symbol", "rank"], "monotonic": ["qty"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, Stats()


@case
def top_n_global_decimal():
    """Top-N without PARTITION BY: the five largest notionals of all trades, ordered by an exact
    DECIMAL product, the rank not selected first."""
    bound = 5 * SEC
    rows = gen_trades(1302, 800, bound)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    best = sorted(recs, key=lambda r: (-(dec4(r["price"]) * r["qty"]), r["seq"]))[:5]
    expected = [
        {"rank": n + 1, "seq": r["seq"], "symbol": r["symbol"],
         "notional": dec(dec4(r["price"]) * r["qty"], 4)}
        for n, r in enumerate(best)
    ]
    sql = """CREATE TABLE largest_notionals AS
SELECT rn AS rank, seq, symbol, notional
FROM (
  SELECT seq, symbol, CAST(price AS DECIMAL(18,4)) * qty AS notional,
         ROW_NUMBER() OVER (ORDER BY CAST(price AS DECIMAL(18,4)) * qty DESC, seq) AS rn
  FROM trades
)
WHERE rn <= 5
EMIT CHANGES
""" + trades_with("5s", SMALL_BATCHES) + SINK_TAIL.format(name="largest_notionals")
    meta = {"mode": "changes", "key": ["rank"], "monotonic": []}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, Stats()


def over_windows(contents, outer_size):
    """The rows of inner windows {(key, start, end): records}, grouped by key and the outer
    tumbling window their event time (the inner window's end - 1 ms, Flink's window_time)
    falls in: {(key, outer_start): [(start, end, records)]}. An inner window is final when
    emitted, so none of them is late for the outer window."""
    outer: dict = {}
    for (k, s, e), rs in contents.items():
        start = (e - 1) // outer_size * outer_size
        outer.setdefault((k, start), []).append((s, e, rs))
    return outer


@case
def window_over_window():
    """An aggregate over a windowed aggregate's rows: 10-second bars per symbol of at least two
    trades (a WINDOW clause and a HAVING in a subquery), then per minute the busiest bar, the
    bars' sums and how many bars there were. The source is three files, each a stretch of
    time: in a parallel job each instance reads its files, an exchange brings each symbol's
    trades to one instance of the inner window, and another each symbol's bars to one
    instance of the outer window, merging the inner instances' watermarks."""
    bound = 3 * SEC
    rows = gen_trades(1401, 1400, bound)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))
    contents = {w: rs for w, rs in contents.items() if len(rs) >= 2}
    expected = []
    for (k, start), bars in over_windows(contents, 60 * SEC).items():
        expected.append({
            "symbol": k, "window_start": ts(start), "window_end": ts(start + 60 * SEC),
            "bars": len(bars),
            "busiest_bar": max(len(rs) for _s, _e, rs in bars),
            "volume": sum(r["qty"] for _s, _e, rs in bars for r in rs),
            "notional": dec(sum((dec4(r["price"]) * r["qty"] for _s, _e, rs in bars for r in rs),
                                Decimal(0)), 4),
            "last_bar": ts(max(s for s, _e, _rs in bars)),
        })
    sql = """CREATE STREAM minute_of_bars AS
SELECT symbol, _window_start AS window_start, _window_end AS window_end,
       COUNT(*) AS bars, MAX(trades) AS busiest_bar, SUM(volume) AS volume,
       SUM(notional) AS notional, MAX(bar_start) AS last_bar
FROM (
  SELECT symbol, _window_start AS bar_start, COUNT(*) AS trades, SUM(qty) AS volume,
         SUM(CAST(price AS DECIMAL(18,4)) * qty) AS notional
  FROM trades
  GROUP BY symbol
  HAVING COUNT(*) >= 2
  WINDOW TUMBLING(INTERVAL '10' SECOND)
) AS bars
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '1' MINUTE)
""" + trades_with("3s").replace("{in:trades.csv}", "{in:trades}") + SINK_TAIL.format(name="minute_of_bars")
    third = len(rows) // 3
    parts = [rows[:third], rows[third:2 * third], rows[2 * third:]]
    inputs = {f"trades/part-{i}.csv": (part, TRADE_COLS) for i, part in enumerate(parts)}
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, inputs, expected, meta, st


@case
def sliding_over_window():
    """A window over sliding windows' rows (Flink's HOP in the subquery): per symbol and 30
    seconds, the most trades any 20-second window sliding by 5 seconds held, among those
    that end in it, and how many of them there were. Overlapping windows end one after
    another: each goes to the outer window its end falls in."""
    bound = 2 * SEC
    weights = {"AAPL": 30, "MSFT": 25, "NVDA": 20, "AMZN": 8, "TSLA": 3}
    rows = gen_trades(1406, 1100, bound, step_ms=250, weights=weights,
                      delays=[(0.05, 3 * SEC, 25 * SEC)])
    rows = inject_boundaries(rows, 1407, bound, 5 * SEC, exact=3, near=2)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, sliding(20 * SEC, 5 * SEC))
    expected = [
        {"symbol": k, "window_start": ts(start), "windows": len(inner),
         "most_trades": max(len(rs) for _s, _e, rs in inner)}
        for (k, start), inner in over_windows(contents, 30 * SEC).items()
    ]
    sql = """CREATE STREAM busiest_slides AS
SELECT symbol, _window_start AS window_start, COUNT(*) AS windows, MAX(trades) AS most_trades
FROM (
  SELECT symbol, COUNT(*) AS trades
  FROM trades
  GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '20' SECOND), symbol
)
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '30' SECOND)
""" + trades_with("2s") + SINK_TAIL.format(name="busiest_slides")
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def table_over_window():
    """A table by keys over a window's rows (Flink's group-window syntax in the subquery): per
    symbol, its busiest 15-second window so far and how many windows it traded in, a
    changelog. Both only grow."""
    bound = 3 * SEC
    rows = gen_trades(1403, 1000, bound, delays=[(0.04, 4 * SEC, 25 * SEC)])
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(15 * SEC))
    per_symbol: dict = {}
    for (k, _s, _e), rs in contents.items():
        per_symbol.setdefault(k, []).append(len(rs))
    expected = [{"symbol": k, "busiest": max(counts), "windows": len(counts)}
                for k, counts in per_symbol.items()]
    sql = """CREATE TABLE busiest_windows AS
SELECT symbol, MAX(trades) AS busiest, COUNT(*) AS windows
FROM (
  SELECT symbol, COUNT(*) AS trades
  FROM trades
  GROUP BY TUMBLE(ts, INTERVAL '15' SECOND), symbol
)
GROUP BY symbol
EMIT CHANGES
""" + trades_with("3s") + SINK_TAIL.format(name="busiest_windows")
    meta = {"mode": "changes", "key": ["symbol"], "monotonic": ["busiest", "windows"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def window_top_n_sliding():
    """Window Top-N over sliding windows (Flink's HOP), partitioned by the window's end: the
    symbol of most trades in each 10-second window sliding by 5 seconds (ties: by symbol),
    with late trades and trades at window bounds."""
    bound = 2 * SEC
    rows = gen_trades(1408, 1200, bound, step_ms=250, delays=[(0.05, 3 * SEC, 20 * SEC)])
    rows = inject_boundaries(rows, 1409, bound, 5 * SEC, exact=3, near=2)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, sliding(10 * SEC, 5 * SEC))
    per_window: dict = {}
    for (k, _s, e), rs in contents.items():
        per_window.setdefault(e, []).append((k, len(rs)))
    expected = [
        {"window_end": ts(e), "symbol": k, "trades": n}
        for e, counts in per_window.items()
        for k, n in sorted(counts, key=lambda kn: (-kn[1], kn[0]))[:1]
    ]
    sql = """CREATE STREAM busiest_symbol AS
SELECT window_end, symbol, trades
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_end ORDER BY trades DESC, symbol) AS rn
  FROM (
    SELECT symbol, HOP_END(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS window_end,
           COUNT(*) AS trades
    FROM trades
    GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND), symbol
  )
)
WHERE rn = 1
""" + trades_with("2s") + SINK_TAIL.format(name="busiest_symbol")
    meta = {"mode": "final", "key": ["window_end"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def window_top_n():
    """Window Top-N (Flink's): the two symbols of most volume in each 10-second window from
    09:30:20 on (ties: by symbol), over a CTE's windowed aggregate filtered by its window
    start. Each window's two rows are written once, when the window's watermark passes its
    end. The source is three files, each a stretch of time: in a parallel job an exchange
    brings each window's rows to one instance of the ranking, merging the window
    instances' watermarks."""
    bound = 2 * SEC
    rows = gen_trades(1404, 1300, bound, qty=lambda rng: rng.randint(1, 40))
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))
    per_window: dict = {}
    for (k, s, _e), rs in contents.items():
        if s >= BASE_MS + 20 * SEC:
            per_window.setdefault(s, []).append((k, sum(r["qty"] for r in rs)))
    expected = [
        {"window_start": ts(s), "rank": n + 1, "symbol": k, "volume": v}
        for s, volumes in per_window.items()
        for n, (k, v) in enumerate(sorted(volumes, key=lambda kv: (-kv[1], kv[0]))[:2])
    ]
    sql = """CREATE STREAM top_symbols AS
WITH volumes AS (
  SELECT symbol, _window_start AS window_start, SUM(qty) AS volume
  FROM trades
  GROUP BY symbol
  WINDOW TUMBLING(INTERVAL '10' SECOND)
)
SELECT window_start, rn AS rank, symbol, volume
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY volume DESC, symbol) AS rn
  FROM volumes
  WHERE window_start >= TIMESTAMP '2026-03-02 09:30:20'
)
WHERE rn <= 2
""" + trades_with("2s").replace("{in:trades.csv}", "{in:trades}") + SINK_TAIL.format(name="top_symbols")
    third = len(rows) // 3
    parts = [rows[:third], rows[third:2 * third], rows[2 * third:]]
    inputs = {f"trades/part-{i}.csv": (part, TRADE_COLS) for i, part in enumerate(parts)}
    meta = {"mode": "final", "key": ["window_start", "rank"]}
    return sql, inputs, expected, meta, st


@case
def sql_functions_tumbling():
    """Functions written in SQL (CREATE FUNCTION) inside a window's aggregates: an exact DECIMAL
    notional, and a fee of 0.1 % below 10 000 and 0.05 % from it, one calling the other."""
    bound = 2 * SEC
    rows = gen_trades(1401, 1200, bound, delays=[(0.03, 3 * SEC, 14 * SEC)])
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))

    def notional(r):
        return dec4(r["price"]) * r["qty"]

    def fee(n):
        return n * (Decimal("0.0005") if n > 10000 else Decimal("0.001"))

    expected = window_agg_rows(contents, lambda k, s, e, rs: {
        "symbol": k, "window_start": ts(s),
        "notional": dec(sum((notional(r) for r in rs), Decimal(0)), 4),
        "fees": dec(sum((fee(notional(r)) for r in rs), Decimal(0)), 8),
    })
    sql = """CREATE FUNCTION notional(price DECIMAL(18,4), qty BIGINT) RETURNS DECIMAL(38,4)
AS 'price * qty';

CREATE FUNCTION fee(amount DECIMAL(38,4)) RETURNS DECIMAL(38,8)
AS 'CASE WHEN amount > 10000 THEN amount * 0.0005 ELSE amount * 0.001 END';

CREATE STREAM fees AS
SELECT symbol, _window_start AS window_start,
       SUM(notional(CAST(price AS DECIMAL(18,4)), qty)) AS notional,
       SUM(fee(notional(CAST(price AS DECIMAL(18,4)), qty))) AS fees
FROM trades
GROUP BY symbol
WINDOW TUMBLING(INTERVAL '10' SECOND)
EMIT FINAL
""" + trades_with("2s") + SINK_TAIL.format(name="fees")
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, {"trades.csv": (rows, TRADE_COLS)}, expected, meta, st


@case
def python_aggregate_tumbling():
    """Aggregate functions written in Python (CREATE AGGREGATE FUNCTION ... LANGUAGE python)
    in a window: an exact DECIMAL volume-weighted price of two parameters, and a median of the
    quantities over 100 (a FILTER; a window without any gets NULL). Three files: in a parallel
    job each symbol's trades cross an exchange to one instance, and a restore hands the
    windows' buffered values back from the checkpoint."""
    bound = 2 * SEC
    # No late trades: which are late would depend on how the instances' reads interleave.
    rows = gen_trades(1501, 1200, bound)
    recs = read_trades(to_csv(rows, TRADE_COLS))
    contents, st = aligned_windows(recs, bound, tumbling(10 * SEC))

    def vwap(rs):
        notional = sum((dec4(r["price"]) * r["qty"] for r in rs), Decimal(0))
        return (notional / sum(r["qty"] for r in rs)).quantize(Decimal("0.000001"))

    def big_median(rs):
        big = [r["qty"] for r in rs if r["qty"] > 100]
        return float(statistics.median(big)) if big else None

    expected = window_agg_rows(contents, lambda k, s, e, rs: {
        "symbol": k, "window_start": ts(s), "trades": len(rs),
        "vwap": dec(vwap(rs), 6), "big_median": big_median(rs),
    })
    sql = """CREATE AGGREGATE FUNCTION vwap(price DECIMAL(18,4), qty BIGINT) RETURNS DECIMAL(38,6)
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
""" + trades_with("2s").replace("{in:trades.csv}", "{in:trades}") + SINK_TAIL.format(name="prices")
    third = len(rows) // 3
    parts = [rows[:third], rows[third:2 * third], rows[2 * third:]]
    inputs = {f"trades/part-{i}.csv": (part, TRADE_COLS) for i, part in enumerate(parts)}
    meta = {"mode": "final", "key": ["symbol", "window_start"]}
    return sql, inputs, expected, meta, st


ORDER_COLS = ["ts", "order_id", "symbol", "qty"]


@case
def dedup_first_per_key():
    """ROW_NUMBER() ... = 1 as deduplication: orders sent again (by a sender that retries, some
    with a clock behind), the first of each order id by its time kept. A resend with an earlier
    time replaces the row of its order id."""
    rng = random.Random(1303)
    events = []
    for i in range(500):
        t = BASE_MS + i * 250 + rng.randint(0, 200)
        order = {"order_id": f"o{i:04d}", "symbol": rng.choice(list(SYMBOLS)), "qty": rng.randint(1, 500)}
        events.append((t + rng.randint(0, 500), t, order))
        times = {t}
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            resent = t + rng.randint(-3000, 5000)
            if resent in times:
                continue
            times.add(resent)
            events.append((t + rng.randint(1000, 20000), resent, order))
    events.sort(key=lambda e: (e[0], e[1]))
    rows = [{"ts": fmt_ts(sent), **order} for _, sent, order in events]
    first: dict = {}
    for r in read_orders(to_csv(rows, ORDER_COLS)):
        if r["order_id"] not in first or r["ts"] < first[r["order_id"]]["ts"]:
            first[r["order_id"]] = r
    expected = [
        {"order_id": r["order_id"], "ts": ts(r["ts"]), "symbol": r["symbol"], "qty": r["qty"]}
        for r in first.values()
    ]
    sql = """CREATE TABLE first_orders AS
SELECT order_id, ts, symbol, qty
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY ts) AS rn
  FROM orders
)
WHERE rn = 1
EMIT CHANGES
WITH (
  'orders.type' = 'file_source',
  'orders.path' = '{in:orders.csv}',
  'orders.format' = 'csv',
  'orders.batch.size' = '2',
""" + SINK_TAIL.format(name="first_orders")
    meta = {"mode": "changes", "key": ["order_id"], "monotonic": []}
    return sql, {"orders.csv": (rows, ORDER_COLS)}, expected, meta, Stats()


def read_orders(text: str) -> list[dict]:
    """Parse the orders CSV as ferris reads it: ts -> epoch ms, qty -> int."""
    return [
        {"ts": parse_ts(r["ts"]), "order_id": r["order_id"], "symbol": r["symbol"], "qty": int(r["qty"])}
        for r in csv.DictReader(io.StringIO(text))
    ]


def sort_key(meta):
    def k(row):
        parts = []
        for c in meta["key"]:
            v = row[c]
            if isinstance(v, dict):
                v = v.get("ts_ms", v.get("dec"))
            parts.append((str(type(v)), v))
        return parts
    return k


def generate(names):
    for name in names:
        sql, inputs, expected, meta, st, *extra = CASES[name]()
        d = HERE / name
        d.mkdir(exist_ok=True)
        for fname, (rows, cols) in inputs.items():
            (d / fname).parent.mkdir(exist_ok=True)
            (d / fname).write_text(to_csv(rows, cols))
        expected.sort(key=sort_key(meta))
        (d / "expected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in expected))
        (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        (d / "query.sql").write_text(sql)
        for fname, lines in (extra[0] if extra else {}).items():
            (d / fname).write_text("".join(json.dumps(r) + "\n" for r in lines))
        n_in = {f: len(r) for f, (r, _c) in inputs.items()}
        print(f"{name}: inputs {n_in}, {len(expected)} expected rows, {dict(sorted(st.items()))}")


# ----------------------------------------------------------------------------------------------
# checking ferris (the comparison rules of shared/conformance/README.md)


def norm_out_ts(v):
    """Epoch-ms candidates an output value may stand for."""
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace(" ", "T"))
        except ValueError:
            return []
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
        return [(dt - EPOCH) // timedelta(microseconds=1) // 1000]
    if isinstance(v, int) and not isinstance(v, bool):
        return [v * 1000, v, v // 1000, v // 1_000_000]
    return []


def as_decimal(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    if isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except Exception:
            return None
        return d if d.is_finite() and "e" not in v.lower() else None
    return None


def canon(expected_value, actual):
    """A key part of an output row, normalised as the expected value's kind says."""
    if isinstance(expected_value, dict) and "ts_ms" in expected_value:
        plausible = [c for c in norm_out_ts(actual) if 946684800000 <= c <= 4102444800000]
        return ("ts", plausible[0]) if plausible else ("raw", repr(actual))
    if isinstance(expected_value, dict) and "dec" in expected_value:
        d = as_decimal(actual)
        return ("dec", d.normalize()) if d is not None else ("raw", repr(actual))
    if isinstance(actual, (int, Decimal)) and not isinstance(actual, bool):
        return ("num", Decimal(actual).normalize())
    return ("v", json.dumps(actual, default=str))


def canon_expected(v):
    if isinstance(v, dict) and "ts_ms" in v:
        return ("ts", v["ts_ms"])
    if isinstance(v, dict) and "dec" in v:
        return ("dec", Decimal(v["dec"]).normalize())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return ("num", Decimal(v).normalize())
    return ("v", json.dumps(v))


def equal(expected_value, actual, tol):
    if isinstance(expected_value, dict) and "ts_ms" in expected_value:
        return expected_value["ts_ms"] in norm_out_ts(actual)
    if isinstance(expected_value, dict) and "dec" in expected_value:
        d = as_decimal(actual)
        return d is not None and d == Decimal(expected_value["dec"])
    if isinstance(expected_value, float):
        if isinstance(actual, bool) or not isinstance(actual, (int, Decimal)):
            return False
        got = float(actual)
        return got == expected_value or abs(got - expected_value) <= (tol or 0.0) * max(abs(got), abs(expected_value))
    if isinstance(expected_value, int) and not isinstance(expected_value, bool):
        return isinstance(actual, (int, Decimal)) and not isinstance(actual, bool) and Decimal(actual) == expected_value
    return expected_value == actual


def lower(row):
    return {k.lower(): v for k, v in row.items()}


def compare(meta, expected, out_text):
    keys = [k.lower() for k in meta["key"]]
    tol = meta.get("float_tol")
    mono = [c.lower() for c in meta.get("monotonic", [])]
    ref = expected[0] if expected else {}  # with no row expected, any row is unexpected
    actual = [lower(json.loads(l, parse_float=Decimal)) for l in out_text.splitlines() if l.strip()]
    problems = []

    def key_of(row):
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"a row has no key column {missing}: {row}")
        return tuple(canon(ref.get(k), row[k]) for k in keys)

    wanted = {tuple(canon_expected(r[k]) for k in keys): r for r in expected}
    got = {}
    if meta["mode"] in ("final", "rows"):
        for r in actual:
            k = key_of(r)
            if k in got:
                problems.append(f"key {show_key(k)} appears twice in the output")
            got[k] = r
    elif meta["mode"] == "changes":
        for r in actual:
            k = key_of(r)
            if str(r.get("_op", "")).lower() in ("-d", "-u", "delete", "retract"):
                # a retraction withdraws its key's earlier row (e.g. a session merged away)
                got.pop(k, None)
                continue
            if k in got:
                for c in mono:
                    b, a = got[k].get(c), r.get(c)
                    if isinstance(a, (int, Decimal)) and isinstance(b, (int, Decimal)) and a < b:
                        problems.append(f"'{c}' of key {show_key(k)} went down from {b} to {a}")
            got[k] = r
    else:
        raise ValueError(f"unknown mode {meta['mode']!r}")
    for k, er in wanted.items():
        ar = got.get(k)
        if ar is None:
            problems.append(f"missing row {show_key(k)}: expected {json.dumps(er)}")
            continue
        for c, ev in er.items():
            if c not in ar:
                problems.append(f"row {show_key(k)} has no column '{c}'")
            elif not equal(ev, ar[c], tol):
                problems.append(f"row {show_key(k)}: '{c}' is {ar[c]}, expected {json.dumps(ev)}")
    for k in got:
        if k not in wanted:
            problems.append(f"unexpected row {show_key(k)}: {json.dumps(got[k], default=str)}")
    return problems, len(actual)


def compare_late(expected_late, text):
    """The dead-letter file against the expected late records: equal as multisets, on the
    expected rows' columns (the file may have more)."""
    cols = list(expected_late[0]) if expected_late else []
    actual = [lower(json.loads(l, parse_float=Decimal)) for l in text.splitlines() if l.strip()]
    want = Counter(tuple(canon_expected(r[c]) for c in cols) for r in expected_late)
    got = Counter(tuple(canon(expected_late[0][c], r.get(c.lower())) for c in cols) for r in actual) if cols else Counter()
    show = show_key
    problems = [f"late record {show(k)} missing from the dead-letter file" + (f" ({n - got[k]} of {n})" if n > 1 else "")
                for k, n in want.items() if got[k] < n]
    problems += [f"dead-letter row {show(k)} is not a late record" + (f" ({n - want[k]} of {n})" if n > 1 else "")
                 for k, n in got.items() if want[k] < n]
    if not cols and actual:
        problems.append(f"{len(actual)} dead-letter rows, none expected")
    return problems, len(actual)


def fmt_iso(ms):
    return fmt_ts(ms).replace(" ", "T")


def show_key(k):
    out = []
    for kind, v in k:
        out.append(fmt_iso(v) if kind == "ts" else format(v, "f") if isinstance(v, Decimal) else str(v))
    return "|".join(out)


def find_ferris(path):
    path = Path(path).resolve()
    for _ in range(24):
        if path.exists():
            return path
        print(f"waiting for {path} ...", file=sys.stderr)
        time.sleep(5)
    raise SystemExit(f"no ferris binary at {path}")


def run_case(ferris, d, batch_size=None):
    sql = (d / "query.sql").read_text()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        out = scratch / "out.jsonl"
        while "{in:" in sql:
            s = sql.index("{in:")
            e = sql.index("}", s)
            sql = sql[:s] + str(d / sql[s + 4:e]) + sql[e + 1:]
        sql = sql.replace("{out}", str(out))
        if batch_size:
            sources = re.findall(r"'(\w+)\.type' = 'file_source'", sql)
            for n in sources:  # a batch size the query sets is replaced (an option may not repeat)
                option = f"'{n}.batch.size' = '{batch_size}'"
                sql, found = re.subn(rf"'{n}\.batch\.size' = '\d+'", option, sql)
                if not found:
                    at = sql.rindex("WITH (") + len("WITH (")
                    sql = sql[:at] + option + ", " + sql[at:]
        (scratch / "query.sql").write_text(sql)
        run = subprocess.run([str(find_ferris(ferris)), "run", str(scratch / "query.sql")], cwd=scratch,
                             capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            return None, f"ferris run exited with {run.returncode}: {run.stderr.strip()}", run.stderr.strip()
        if out.is_dir():
            text = "".join(p.read_text() for p in sorted(out.iterdir()) if p.is_file())
        elif out.exists():
            text = out.read_text()
        else:
            return None, "no output written", run.stderr.strip()
        dead = re.search(r"'late\.data\.dead_letter\.path'\s*=\s*'([^']*)'", sql)
        if dead:
            late = scratch / dead.group(1)  # a relative path is the scratch folder's
            text = (text, late.read_text() if late.is_file() else "")
        return text, None, run.stderr.strip()


def check(names, ferris, batch_sizes, verbose):
    failed = 0
    for name in names:
        d = HERE / name
        meta = json.loads((d / "meta.json").read_text())
        expected = [json.loads(l) for l in (d / "expected.jsonl").read_text().splitlines() if l.strip()]
        for bs in [None] + batch_sizes:
            label = name + (f" (batch.size {bs})" if bs else "")
            text, err, summary = run_case(ferris, d, bs)
            if err:
                print(f"{label}: FAILED: {err}")
                failed += 1
                continue
            late_text = None
            if isinstance(text, tuple):
                text, late_text = text
            try:
                problems, n_out = compare(meta, expected, text)
            except ValueError as e:
                problems, n_out = [str(e)], -1
            if (d / "expected_late.jsonl").exists():
                expected_late = [json.loads(l) for l in (d / "expected_late.jsonl").read_text().splitlines() if l.strip()]
                if late_text is None:
                    problems.append("the query names no dead-letter file to check expected_late.jsonl against")
                else:
                    late_problems, n_late = compare_late(expected_late, late_text)
                    problems += late_problems
                    summary += f"; dead letters: {n_late} written, {len(expected_late)} expected"
            if problems:
                failed += 1
                print(f"{label}: FAILED: {len(problems)} differences ({len(expected)} rows expected, {n_out} written) [{summary}]")
                for p in (problems if verbose else problems[:12]):
                    print(f"    {p}")
            else:
                print(f"{label}: ok ({len(expected)} rows expected, {n_out} written) [{summary}]")
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="run ferris on every case and compare; write nothing")
    ap.add_argument("--ferris", default=str(HERE.parent.parent / "target" / "debug" / "ferris"))
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--batch-sizes", default="", help="with --check: also run with these source batch sizes")
    ap.add_argument("-v", "--verbose", action="store_true", help="show every difference")
    args = ap.parse_args()
    names = [n for n in args.cases.split(",") if n] or list(CASES)
    for n in names:
        if n not in CASES:
            raise SystemExit(f"unknown case {n}")
    if args.check:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s]
        failed = check(names, Path(args.ferris), sizes, args.verbose)
        sys.exit(1 if failed else 0)
    generate(names)


if __name__ == "__main__":
    main()
