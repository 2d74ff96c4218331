#!/usr/bin/env python3
"""Queries a running `ferris server` from Python over Arrow Flight SQL, with ADBC.

    python demos/flight/query.py grpc://127.0.0.1:PORT TOKEN

run.sh runs it against the server it starts. The paths in the SQL are the server's: relative to
the directory the server was started in (run.sh starts it in the repository root). Its
packages: scripts/requirements-flight.txt (adbc-driver-flightsql, pyarrow).
"""

import sys

import adbc_driver_flightsql.dbapi as flight_sql

# A plain query: it declares its source in its own WITH clause and returns its rows.
SPEND_BY_ACCOUNT = """
SELECT account, COUNT(*) AS txns, SUM(CAST(amount AS DECIMAL(12,2))) AS total
FROM transactions
GROUP BY account
ORDER BY account
WITH (
  'transactions.type' = 'file_source',
  'transactions.path' = 'demos/quickstart/transactions.csv'
)
"""

uri, token = sys.argv[1], sys.argv[2]
auth = {"adbc.flight.sql.authorization_header": f"Bearer {token}"}
# autocommit=True: the server has no transactions (without it the DB-API layer warns).
with flight_sql.connect(uri, db_kwargs=auth, autocommit=True) as conn, conn.cursor() as cur:
    cur.execute(SPEND_BY_ACCOUNT)
    print(cur.fetch_arrow_table())
    for statement in ("SHOW STREAMS", "SHOW TABLES"):
        cur.execute(statement)
        print(f"\n{statement}:", *cur.fetchall(), sep="\n  ")
