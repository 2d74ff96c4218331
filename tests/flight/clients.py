#!/usr/bin/env python3
"""Drives a running Ferris Flight SQL server with real clients: pyarrow.flight and ADBC.

    target/debug/ferris server --flight 127.0.0.1:0 --auth-token TOKEN   # prints the port
    python tests/flight/clients.py --uri grpc://127.0.0.1:PORT --token TOKEN

Run it against a fresh server: it creates the streams big_trades and manual_trades and the
table symbol_totals (kept by the server: no sink). It writes its own data (trades.csv in a
fresh temp dir), computes the expected results in Python from the same rows, prints one line per check passed and exits
non-zero with a message at the first failure (leaving the temp dir for a look; a passing run
removes it). Its packages: scripts/requirements-flight.txt (scripts/test.sh installs them
into the project venv).
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from decimal import Decimal

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi
import pyarrow as pa
from pyarrow import flight

# 20 trades: symbols A, B, C; prices with 2 decimals; quantities 1..10.
ROWS = [
    ("ABC"[i % 3], Decimal(f"{10 + (i * 37) % 90}.{(i * 53) % 100:02d}"), 1 + (i * 7) % 10)
    for i in range(20)
]
TIMEOUT = 30.0  # seconds for any one call
JOB_TIMEOUT = 10.0  # seconds for the job's sink file to appear


@contextlib.contextmanager
def check(what):
    """Prints `ok  what` when the block passes; exits with `FAIL what: ...` when it raises."""
    try:
        yield
    except Exception as e:
        if not isinstance(e, AssertionError):
            traceback.print_exc()
        sys.exit(f"FAIL {what}: {type(e).__name__}: {e}")
    print(f"ok   {what}", flush=True)


def source_options(csv_path):
    """The WITH options that declare the `trades` source."""
    return (
        f"'trades.type' = 'file_source', 'trades.path' = '{csv_path}', "
        "'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT'"
    )


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(field_number, payload):
    """One protobuf field of wire type 2 (string, bytes or message)."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def statement_query_command(sql):
    """google.protobuf.Any{type_url, value = CommandStatementQuery{query = sql}}, by hand."""
    type_url = "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    query = length_delimited(1, sql.encode())
    return length_delimited(1, type_url.encode()) + length_delimited(2, query)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", required=True, help="grpc://127.0.0.1:PORT")
    parser.add_argument("--token", required=True, help="the server's --auth-token")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="ferris-flight-")
    csv_path = os.path.join(tmp, "trades.csv")
    with open(csv_path, "w") as f:
        f.write("symbol,price,qty\n")
        f.writelines(f"{s},{p},{q}\n" for s, p, q in ROWS)
    sink_path = os.path.join(tmp, "big.jsonl")
    source = source_options(csv_path)

    qty_by_symbol, notional_by_symbol = defaultdict(int), defaultdict(Decimal)
    for symbol, price, qty in ROWS:
        qty_by_symbol[symbol] += qty
        notional_by_symbol[symbol] += price * qty
    expected_sums = [{"symbol": s, "qty": q} for s, q in sorted(qty_by_symbol.items())]
    expected_big = sorted((s, q) for s, _, q in ROWS if q > 5)
    sums_sql = (
        "SELECT symbol, SUM(qty) AS qty FROM trades GROUP BY symbol ORDER BY symbol "
        f"WITH ({source})"
    )

    # --- pyarrow.flight: raw Flight calls --------------------------------------------------
    client = flight.FlightClient(args.uri)
    descriptor = flight.FlightDescriptor.for_command(statement_query_command(sums_sql))

    with check("pyarrow.flight: a query without a token is refused as unauthenticated"):
        try:
            client.get_flight_info(descriptor, flight.FlightCallOptions(timeout=TIMEOUT))
        except flight.FlightUnauthenticatedError:
            pass
        else:
            raise AssertionError("get_flight_info without a token succeeded")

    with check("pyarrow.flight: the basic-auth handshake hands out the bearer token"):
        header = client.authenticate_basic_token(
            b"ferris", args.token.encode(), flight.FlightCallOptions(timeout=TIMEOUT)
        )
        expected = (b"authorization", b"Bearer " + args.token.encode())
        assert header == expected, f"handshake returned {header!r}, expected {expected!r}"
    options = flight.FlightCallOptions(headers=[header], timeout=TIMEOUT)

    with check("pyarrow.flight: CommandStatementQuery returns the per-symbol sums"):
        info = client.get_flight_info(descriptor, options)
        assert info.endpoints, "the FlightInfo has no endpoint"
        tables = [client.do_get(e.ticket, options).read_all() for e in info.endpoints]
        table = pa.concat_tables(tables)
        got = table.to_pylist()
        assert got == expected_sums, f"got {got}, expected {expected_sums}"
        schema = table.schema
        assert info.schema.equals(schema), f"FlightInfo schema {info.schema} != data {schema}"
        assert schema.field("qty").type == pa.int64(), f"SUM(qty) is {schema.field('qty').type}"
    client.close()

    # --- ADBC: the Flight SQL driver behind Python's DB-API -------------------------------
    db_kwargs = {
        adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {args.token}",
        adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: str(TIMEOUT),
        adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: str(TIMEOUT),
        adbc_driver_flightsql.DatabaseOptions.TIMEOUT_UPDATE.value: str(TIMEOUT),
    }
    # autocommit=True: the server has no transactions (otherwise the DB-API layer warns).
    with adbc_driver_flightsql.dbapi.connect(
        args.uri, db_kwargs=db_kwargs, autocommit=True
    ) as conn, conn.cursor() as cur:
        run_adbc_checks(
            conn, cur, source, sink_path, expected_sums, notional_by_symbol, expected_big
        )
    shutil.rmtree(tmp, ignore_errors=True)
    print("all Flight SQL client checks passed")


def run_adbc_checks(conn, cur, source, sink_path, expected_sums, notional_by_symbol, expected_big):
    with check("ADBC: a query returns the per-symbol sums, notional as an exact DECIMAL"):
        cur.execute(
            "SELECT symbol, SUM(qty) AS qty, SUM(price * qty) AS notional FROM trades "
            f"GROUP BY symbol ORDER BY symbol WITH ({source})"
        )
        table = cur.fetch_arrow_table()
        sums = table.select(["symbol", "qty"]).to_pylist()
        assert sums == expected_sums, f"got {sums}, expected {expected_sums}"
        kind = table.schema.field("notional").type
        assert pa.types.is_decimal128(kind), f"SUM(price * qty) is {kind}, not decimal128"
        got = dict(zip(table["symbol"].to_pylist(), table["notional"].to_pylist()))
        expected = dict(notional_by_symbol)
        assert got == expected, f"notional {got}, expected {expected}"

    with check("ADBC: a prepared statement binds parameter $1"):
        # The DB-API layer binds (41,) as a one-row record batch: column "0", int64.
        cur.execute("SELECT CAST($1 AS BIGINT) + 1 AS answer", parameters=(41,))
        answer = cur.fetch_arrow_table().to_pylist()
        assert answer == [{"answer": 42}], f"got {answer}, expected [{{'answer': 42}}]"

    with check("ADBC: ? placeholders bind in order, like $1, $2"):
        cur.execute("SELECT CAST(? AS BIGINT) - CAST(? AS BIGINT) AS answer", parameters=(50, 8))
        answer = cur.fetch_arrow_table().to_pylist()
        assert answer == [{"answer": 42}], f"got {answer}, expected [{{'answer': 42}}]"

    with check("ADBC: a statement mixing ? and $1 is refused at the placeholder's position"):
        try:
            cur.execute("SELECT ? + $1 AS n", parameters=(1, 2))
        except adbc_driver_flightsql.dbapi.Error as e:
            assert "1:12: placeholder $1 after ? at 1:8" in str(e), f"error: {e}"
        else:
            raise AssertionError("a statement with ? and $1 ran")

    with check("ADBC: CREATE STREAM starts a job that writes its file sink"):
        cur.execute(
            "CREATE STREAM big_trades AS SELECT symbol, qty FROM trades WHERE qty > 5 WITH ("
            f"{source}, 'big_trades.type' = 'file_sink', 'big_trades.path' = '{sink_path}')"
        )
        reply = cur.fetch_arrow_table()
        assert reply.column_names == ["job", "status"], f"reply columns {reply.column_names}"
        assert reply.num_rows == 1, f"reply has {reply.num_rows} rows: {reply.to_pylist()}"
        assert reply["job"][0].as_py() == "big_trades", f"reply {reply.to_pylist()}"
        deadline, lines = time.monotonic() + JOB_TIMEOUT, []
        while time.monotonic() < deadline:
            if os.path.exists(sink_path):  # committed whole, by a rename
                with open(sink_path) as f:
                    lines = f.read().splitlines()
                if len(lines) >= len(expected_big):
                    break
            time.sleep(0.1)
        n, expected = len(lines), len(expected_big)
        assert n == expected, f"{sink_path} has {n} lines after {JOB_TIMEOUT}s, expected {expected}"
        written = sorted((r["symbol"], r["qty"]) for r in map(json.loads, lines))
        assert written == expected_big, f"{sink_path} holds {written}, expected {expected_big}"

    with check("ADBC: executemany inserts each parameter row into a stream"):
        folder = os.path.join(os.path.dirname(sink_path), "manual_trades")
        cur.execute(
            "CREATE STREAM manual_trades AS SELECT symbol, qty FROM trades WHERE qty < 0 WITH ("
            f"{source}, 'manual_trades.type' = 'file_sink', 'manual_trades.path' = '{folder}/')"
        )
        cur.fetch_arrow_table()
        cur.executemany(
            "INSERT INTO manual_trades VALUES ($1, $2)", [("ZZZ", 7), ("YYY", 9)]
        )
        assert cur.rowcount == 2, f"rowcount {cur.rowcount}"
        cur.executemany("INSERT INTO manual_trades VALUES (?, ?)", [("XXX", 3)])
        assert cur.rowcount == 1, f"rowcount {cur.rowcount}"
        written = []
        for name in sorted(os.listdir(folder)):
            if not name.startswith("."):
                with open(os.path.join(folder, name)) as f:
                    written += [json.loads(line) for line in f]
        got = sorted((r["symbol"], r["qty"]) for r in written)
        assert got == [("XXX", 3), ("YYY", 9), ("ZZZ", 7)], f"{folder} holds {got}"

    with check("ADBC: ? in a pull query on the state of a table the server keeps (no sink)"):
        cur.execute(
            "CREATE TABLE symbol_totals AS SELECT symbol, COUNT(*) AS trades FROM trades "
            f"GROUP BY symbol WITH ({source})"
        )
        cur.fetch_arrow_table()
        expected = [{"trades": sum(1 for symbol, _, _ in ROWS if symbol == "A")}]
        deadline, got = time.monotonic() + JOB_TIMEOUT, None
        while time.monotonic() < deadline and got != expected:
            cur.execute("SELECT trades FROM symbol_totals WHERE symbol = ?", parameters=("A",))
            got = cur.fetch_arrow_table().to_pylist()
            time.sleep(0.1)
        assert got == expected, f"got {got}, expected {expected}"

    with check("ADBC: get_objects lists big_trades and trades under ferris.public"):
        catalogs = conn.adbc_get_objects().read_all().to_pylist()
        tables = {
            (c["catalog_name"], s["db_schema_name"], t["table_name"]): t
            for c in catalogs
            for s in c["catalog_db_schemas"] or []
            for t in s["db_schema_tables"] or []
        }
        for name in ("big_trades", "trades"):
            key = ("ferris", "public", name)
            assert key in tables, f"no ferris.public.{name} in {sorted(tables)}"
        big_trades = tables["ferris", "public", "big_trades"]
        columns = [c["column_name"] for c in big_trades["table_columns"] or []]
        assert columns == ["symbol", "qty"], f"big_trades columns {columns}"

    with check("ADBC: get_table_schema(big_trades) is symbol string, qty int64"):
        schema = conn.adbc_get_table_schema("big_trades")
        fields = [(f.name, f.type) for f in schema]
        assert fields == [("symbol", pa.string()), ("qty", pa.int64())], f"got {schema}"

    with check("ADBC: get_table_types includes TABLE and STREAM"):
        types = conn.adbc_get_table_types()
        assert {"TABLE", "STREAM"} <= set(types), f"table types {types}"

    with check("ADBC: SHOW STREAMS lists big_trades"):
        cur.execute("SHOW STREAMS")
        rows = {r["name"]: r for r in cur.fetch_arrow_table().to_pylist()}
        assert "big_trades" in rows, f"SHOW STREAMS: {sorted(rows)}"
        assert rows["big_trades"]["kind"] == "stream", f"big_trades row {rows['big_trades']}"


if __name__ == "__main__":
    main()
