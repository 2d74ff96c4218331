#!/usr/bin/env bash
# Kafka end to end: JSON trades in a Kafka topic -> one-minute bars in SQL -> JSON lines.
#
#   bash demos/kafka-e2e/run.sh      (from anywhere)
#
# 1. Starts the test broker (Apache Kafka) on 127.0.0.1:9092 (scripts/kafka.sh; a no-op if it runs) and
#    leaves it running: `bash scripts/kafka.sh stop` stops it.
# 2. Installs the pinned kafka-python into the project venv (.venv) if it is not there.
# 3. Deletes the topic 'trades' if it exists and creates it with 4 partitions, so that every
#    run starts from an empty topic (deleting it also drops its consumer groups' offsets).
# 4. Produces 2000 JSON trades to it (produce.py).
# 5. Runs minute_bars.sql: a bounded read of the topic, one-minute tumbling windows in event
#    time, written to demos/kafka-e2e/out/minute_bars.jsonl.
# 6. Prints the first bars and checks their totals against what was produced.
#
# FERRIS=/path/to/ferris   use that binary. Otherwise target/debug/ferris, built with the test
#                          suite's build (cargo build --workspace --all-targets) only when it is
#                          missing: after pulling changes, rebuild it yourself.
# FERRIS_KAFKA_PORT        another broker port (see scripts/kafka.sh).
set -euo pipefail

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'kafka-e2e: %s\n' "$*" >&2; exit 1; }

# A relative FERRIS is relative to where the script was started from.
if [[ -n "${FERRIS:-}" && "$FERRIS" == */* && "$FERRIS" != /* ]]; then FERRIS="$PWD/$FERRIS"; fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

demo=demos/kafka-e2e
topic=trades
partitions=4
out="$demo/out"

# --- ferris -------------------------------------------------------------------------------------
ferris="${FERRIS:-target/debug/ferris}"
if [[ -z "${FERRIS:-}" && ! -x "$ferris" ]]; then
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found and $ferris not built; install Rust from https://rustup.rs"
  say "building ferris (cargo build --workspace --all-targets)"
  # The test suite's build (scripts/test.sh): building the binary alone would resolve dependency
  # features differently and compile DataFusion a second time.
  cargo build --workspace --all-targets
fi
command -v "$ferris" >/dev/null 2>&1 || die "$ferris is not an executable file"

# --- the broker and the Python client -----------------------------------------------------------
say "starting the Kafka broker"
started="$(bash scripts/kafka.sh start)"
bootstrap="${started#bootstrap servers: }"
echo "bootstrap servers: $bootstrap"

python="$(bash scripts/venv.sh)"
want="$(sed -n 's/^kafka-python==\([^[:space:]]*\).*/\1/p' "$demo/requirements.txt")"
have="$("$python" -c 'import importlib.metadata as m; print(m.version("kafka-python"))' 2>/dev/null || true)"
if [[ "$have" != "$want" ]]; then
  say "installing kafka-python $want into $("$python" -c 'import sys; print(sys.prefix)')"
  "$python" -m pip install --disable-pip-version-check --no-input --quiet \
    --no-deps --require-hashes -r "$demo/requirements.txt"
fi

# --- the topic ----------------------------------------------------------------------------------
say "creating topic '$topic' ($partitions partitions)"
# A topic left by an earlier run would hold its trades too.
bash scripts/kafka.sh delete-topic "$topic"
bash scripts/kafka.sh topic "$topic" "$partitions"

# --- produce ------------------------------------------------------------------------------------
rm -rf "$out"
mkdir -p "$out"
say "producing trades: $python $demo/produce.py"
"$python" "$demo/produce.py" --bootstrap "$bootstrap" --topic "$topic" --count 2000 \
  --summary "$out/produced.json"

# --- the SQL job --------------------------------------------------------------------------------
sql="$demo/minute_bars.sql"
if [[ "$bootstrap" == "127.0.0.1:9092" ]]; then
  say "$ferris run $sql"
  "$ferris" run "$sql"
else
  # The file names 127.0.0.1:9092; point it at the broker that runs.
  say "$ferris run -e \"\$(sed 's/127.0.0.1:9092/$bootstrap/' $sql)\""
  "$ferris" run -e "$(sed "s/127\.0\.0\.1:9092/$bootstrap/" "$sql")"
fi

# --- the output ---------------------------------------------------------------------------------
bars="$out/minute_bars.jsonl"
say "$bars ($(wc -l <"$bars") bars; the first 10)"
head -n 10 "$bars"

say "checking the bars against what was produced"
"$python" - "$bars" "$out/produced.json" <<'EOF'
import json, sys
from decimal import Decimal

bars_path, produced_path = sys.argv[1:]
bars = [json.loads(line, parse_float=Decimal) for line in open(bars_path, encoding="utf-8")]
produced = json.load(open(produced_path, encoding="utf-8"))
trades = sum(bar["trades"] for bar in bars)
notional = sum((bar["notional"] for bar in bars), Decimal(0))
symbols = len({bar["symbol"] for bar in bars})
minutes = len({bar["minute"] for bar in bars})
print(f"{len(bars)} bars ({symbols} symbols x {minutes} minutes), {trades} trades, notional {notional}")
if trades != produced["trades"] or notional != Decimal(produced["notional"]):
    sys.exit(
        f"MISMATCH: produced {produced['trades']} trades, notional {produced['notional']}"
    )
print(f"OK: every produced trade is in exactly one bar, and the notional is exact to the cent")
EOF
echo
echo "The broker keeps running (bash scripts/kafka.sh stop stops it)."
