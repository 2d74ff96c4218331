#!/usr/bin/env bash
# The trading demo: Protobuf market data through Kafka, exact-decimal analytics in SQL, and the
# live dashboard of `ferris server --http` (demos/trading/README.md).
#
#   bash demos/trading/run.sh                  runs until Ctrl-C; open the URL it prints
#   bash demos/trading/run.sh --duration 60s   runs that long, then checks the results and ends
#
# 1. Starts the test broker (scripts/kafka.sh; a no-op if it runs; left running afterwards)
#    and creates the demo's topics afresh, so every run starts from empty topics.
# 2. Starts `ferris server` with its dashboard on http://127.0.0.1:8080/ (state in
#    target/trading-demo/state, emptied first) and deploys trading.sql to it.
# 3. Starts ferris-market-gen: quotes, trades, orders and fills as Protobuf messages.
# 4. With --duration: stops the generator once that has passed, and check.py recomputes the
#    bars and the P&L from the raw topics with Python's decimal and compares them with what
#    the server computed, digit for digit (and shows what float64 gets wrong). Its exit status
#    is the script's.
#
# Options:
#   --duration SECONDS   run headless for that long, then check (a trailing 's' is allowed)
#   --rate N             messages per second (default 2000; five times that during bursts)
#   --speed FACTOR       event time runs FACTOR times as fast as the clock (default 1; the
#                        tests use 10, so that minutes close every six seconds)
#   --browser-test       with --duration: also drive the dashboard in headless Chromium
#                        (tests/browser/dashboard.mjs) before the checks
# Environment: FERRIS (the ferris binary, else $CARGO_TARGET_DIR or target, /debug/ferris),
# FERRIS_MARKET_GEN (the generator, else beside it: ferris-market-gen), FERRIS_HTTP_PORT (default 8080),
# FERRIS_FLIGHT_PORT (default 50051), FERRIS_KAFKA_PORT (see scripts/kafka.sh).
set -euo pipefail

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'trading demo: %s\n' "$*" >&2; exit 1; }

duration=""
rate=2000
speed=1
browser_test=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="${2:?--duration needs a number of seconds}"; duration="${duration%s}"; shift 2 ;;
    --rate) rate="${2:?--rate needs a number}"; shift 2 ;;
    --speed) speed="${2:?--speed needs a number}"; shift 2 ;;
    --browser-test) browser_test=true; shift ;;
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (--help lists them)" ;;
  esac
done
[[ -z "$duration" || "$duration" =~ ^[0-9]+$ ]] || die "--duration: '$duration' is no whole number of seconds"
[[ "$browser_test" == false || -n "$duration" ]] || die "--browser-test needs --duration"

for path_var in FERRIS FERRIS_MARKET_GEN; do
  value="${!path_var:-}"
  if [[ -n "$value" && "$value" == */* && "$value" != /* ]]; then printf -v "$path_var" '%s' "$PWD/$value"; fi
done
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

demo=demos/trading
work=target/trading-demo
http_port="${FERRIS_HTTP_PORT:-8080}"
flight_port="${FERRIS_FLIGHT_PORT:-50051}"
url="http://127.0.0.1:$http_port/"

# --- binaries -----------------------------------------------------------------------------------
target="${CARGO_TARGET_DIR:-target}"
ferris="${FERRIS:-$target/debug/ferris}"
generator="${FERRIS_MARKET_GEN:-$target/debug/ferris-market-gen}"
if [[ ! -x "$ferris" || ! -x "$generator" ]] && [[ -z "${FERRIS:-}${FERRIS_MARKET_GEN:-}" ]]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found and $ferris not built; install Rust from https://rustup.rs"
  say "building ferris and ferris-market-gen (cargo build --workspace --all-targets)"
  # The test suite's build (scripts/test.sh): building one binary alone would resolve
  # dependency features differently and compile DataFusion a second time.
  PROTOC="$(bash scripts/protoc.sh)" cargo build --workspace --all-targets
fi
for binary in "$ferris" "$generator"; do
  [[ -x "$binary" ]] || die "$binary is not an executable file"
done

# --- the broker and the topics ------------------------------------------------------------------
say "starting the Kafka broker"
started="$(bash scripts/kafka.sh start)"
bootstrap="${started#bootstrap servers: }"
echo "bootstrap servers: $bootstrap"
[[ "$bootstrap" == "127.0.0.1:9092" ]] ||
  die "trading.sql reads the broker at 127.0.0.1:9092; this one is at $bootstrap"

say "creating the topics afresh"
# Orders and fills have one partition each: the interval join of fills to orders then lets
# rows go as soon as no partner can come (docs/sql.md, interval joins).
for topic_partitions in quotes:4 trades:4 orders:1 fills:1 bars:4 alerts:4; do
  topic="${topic_partitions%:*}"
  bash scripts/kafka.sh delete-topic "$topic" >/dev/null
  bash scripts/kafka.sh topic "$topic" "${topic_partitions#*:}"
done

# --- the server ---------------------------------------------------------------------------------
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Another server on these ports would answer for ours.
for port in "$http_port" "$flight_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is taken (an earlier demo still running?): set FERRIS_HTTP_PORT / FERRIS_FLIGHT_PORT"
  fi
done
rm -rf "$work"
mkdir -p "$work"
say "starting ferris server (log: $work/server.log)"
"$ferris" server --flight "127.0.0.1:$flight_port" --http "127.0.0.1:$http_port" \
  --state-dir "$work/state" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$http_port/ready" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || die "the server exited: $(tail -n 5 "$work/server.log")"
  sleep 0.1
done
curl -sf "http://127.0.0.1:$http_port/ready" >/dev/null || die "the server is not ready after 10 s"
kill -0 "${pids[0]}" 2>/dev/null || die "the server exited: $(tail -n 5 "$work/server.log")"

say "$ferris deploy $demo/trading.sql --server 127.0.0.1:$flight_port"
deployed="$("$ferris" deploy "$demo/trading.sql" --server "127.0.0.1:$flight_port" 2>&1)" ||
  die "deploying $demo/trading.sql failed: $deployed"
grep -E '^\| [a-z_0-9]+ +\| [A-Z]+ ' <<<"$deployed" || true

# --- the market ---------------------------------------------------------------------------------
say "starting ferris-market-gen: $rate messages per second, event time at ${speed}x (log: $work/generator.log)"
generator_args=(--bootstrap "$bootstrap" --rate "$rate" --speed "$speed" --data "$demo")
[[ -n "$duration" ]] && generator_args+=(--duration "$duration")
"$generator" "${generator_args[@]}" >"$work/generator.log" 2>&1 &
generator_pid=$!
pids+=("$generator_pid")

cat <<EOF

The dashboard: $url
  Jobs       $url#jobs
  Trading    $url#trading   (bars appear as each minute of trading closes)
  SQL        $url#sql       (try: SELECT * FROM positions ORDER BY pnl DESC LIMIT 10)
Flight SQL:  grpc://127.0.0.1:$flight_port   (ferris-flight --server 127.0.0.1:$flight_port)
EOF

if [[ -z "$duration" ]]; then
  echo
  echo "Ctrl-C stops the generator and the server (the broker keeps running: bash scripts/kafka.sh stop)."
  wait "$generator_pid"
  die "the generator stopped: $(tail -n 3 "$work/generator.log")"
fi

python="$(bash scripts/venv.sh)"
want="$(sed -n 's/^kafka-python==\([^[:space:]]*\).*/\1/p' demos/kafka-e2e/requirements.txt)"
have="$("$python" -c 'import importlib.metadata as m; print(m.version("kafka-python"))' 2>/dev/null || true)"
if [[ "$have" != "$want" ]]; then
  say "installing kafka-python $want"
  "$python" -m pip install --disable-pip-version-check --no-input --quiet \
    --no-deps --require-hashes -r demos/kafka-e2e/requirements.txt
fi

if [[ "$browser_test" == true ]]; then
  say "driving the dashboard in headless Chromium (tests/browser/dashboard.mjs)"
  modules="$(bash scripts/browser.sh)"
  FERRIS_NODE_MODULES="$modules" FERRIS_DASHBOARD="$url" FERRIS_SCREENSHOTS="$work/screenshots" \
    node tests/browser/dashboard.mjs
fi

say "waiting for the generator to finish ($duration s in all)"
wait "$generator_pid" || die "the generator failed: $(tail -n 3 "$work/generator.log")"
cat "$work/generator.log"

say "checking the server's results against the raw topics ($demo/check.py)"
"$python" "$demo/check.py" --bootstrap "$bootstrap" --http "http://127.0.0.1:$http_port"
