"""The trading demo's end-to-end latency: from the end of a one-minute window (the last moment a
trade of it can have) to its bar being answered by the server, as the dashboard reads it.

Run it against the demo at the clock's pace (bash demos/trading/run.sh, without --speed):

    python benches/trading_latency.py [--http URL] [--minutes N]

It asks the server for its newest bars every 100 ms (a pull query through POST /api/v1/query,
the dashboard's route) and, for each minute that appears, prints how long after that minute's
end it did. Beside it, the floor the SQL sets: a minute is final once the watermark passes its
end, and the watermark trails the newest trade by 'trades.watermark.max_out_of_orderness'
(5 s in trading.sql). The dashboard adds up to its own refresh (2 s) on top.
"""

import argparse
import json
import statistics
import time
import urllib.request
from datetime import datetime, timezone

FLOOR_S = 5.0  # trading.sql: 'trades.watermark.max_out_of_orderness' = '5s'


def newest_minute(http):
    request = urllib.request.Request(f"{http}/api/v1/query", method="POST",
                                     data=b"SELECT MAX(minute) AS minute FROM bars")
    with urllib.request.urlopen(request, timeout=10) as response:
        event = None
        for line in response:
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "rows":
                value = json.loads(line[6:])[0]["minute"]
                return value and datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
            elif event == "end":
                return None
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", default="http://127.0.0.1:8080")
    parser.add_argument("--minutes", type=int, default=3)
    args = parser.parse_args()
    seen = newest_minute(args.http)
    latencies = []
    print(f"{'minute':<20} {'bar answered after the minute ended':>36}")
    while len(latencies) < args.minutes:
        time.sleep(0.1)
        minute = newest_minute(args.http)
        if minute is None or minute == seen:
            continue
        latency = time.time() - (minute.timestamp() + 60)
        seen = minute
        latencies.append(latency)
        print(f"{minute:%H:%M:%S} UTC {latency:>30.2f} s")
    print(f"\nlatency over {len(latencies)} minutes: min {min(latencies):.2f} s, "
          f"median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
          f"(floor set by the watermark bound: {FLOOR_S:.2f} s; the dashboard adds up to 2 s)")


if __name__ == "__main__":
    main()
