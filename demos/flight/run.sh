#!/usr/bin/env bash
# Arrow Flight SQL end to end: `ferris server`, two jobs sent with `ferris-flight`, and
# queries from Python with ADBC.
#
#   bash demos/flight/run.sh [--keep]      (from anywhere)
#
# 1. Installs the Flight SQL clients (scripts/requirements-flight.txt: pyarrow, ADBC) into the
#    project venv (.venv) if they are not there.
# 2. Starts `ferris server` on a free port of 127.0.0.1 with a random auth token, in the
#    background, from the repository root; it is stopped when this script exits. Its log:
#    demos/flight/out/server.log.
# 3. Sends jobs.sql with the `ferris-flight` CLI: the quickstart's CREATE STREAM large_fees and
#    CREATE TABLE spend_by_category, writing to demos/flight/out/. They run in the server.
# 4. Waits for their output files (each appears whole, when its job commits).
# 5. Runs query.py: a SELECT over the quickstart CSV (with its WITH clause), printed as an
#    Arrow table, then SHOW STREAMS and SHOW TABLES.
#
# --keep                 leave the server running at the end, until Ctrl-C, and print how to
#                        connect to it (ferris-flight, Python).
# FERRIS=/path/to/ferris use that binary (and ferris-flight next to it). Otherwise
#                        target/debug/ferris, built with the test suite's build (cargo build
#                        --workspace --all-targets) only when it or ferris-flight is missing:
#                        after pulling changes, rebuild it yourself.
set -euo pipefail

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'flight demo: %s\n' "$*" >&2; exit 1; }

keep=no
case "${1:-}" in
  "") ;;
  --keep) keep=yes ;;
  *) die "usage: bash demos/flight/run.sh [--keep]" ;;
esac

# A relative FERRIS is relative to where the script was started from.
if [[ -n "${FERRIS:-}" && "$FERRIS" == */* && "$FERRIS" != /* ]]; then FERRIS="$PWD/$FERRIS"; fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

demo=demos/flight
out="$demo/out"
log="$out/server.log"
requirements=scripts/requirements-flight.txt

# --- ferris and ferris-flight -------------------------------------------------------------------
ferris="${FERRIS:-target/debug/ferris}"
client="$(dirname "$ferris")/ferris-flight"
if [[ -z "${FERRIS:-}" && ( ! -x "$ferris" || ! -x "$client" ) ]]; then
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found and $ferris not built; install Rust from https://rustup.rs"
  say "building ferris (cargo build --workspace --all-targets)"
  # The test suite's build (scripts/test.sh): building the binaries alone would resolve
  # dependency features differently and compile DataFusion a second time.
  cargo build --workspace --all-targets
fi
[[ -x "$ferris" ]] || die "$ferris is not an executable file"
[[ -x "$client" ]] || die "$client is not an executable file (it is built with ferris)"

# --- the Python clients -------------------------------------------------------------------------
python="$(bash scripts/venv.sh)"
if ! "$python" -c 'import adbc_driver_flightsql.dbapi, pyarrow' 2>/dev/null; then
  [[ -f "$requirements" ]] || die "$requirements is missing"
  say "installing $requirements (pyarrow, ADBC Flight SQL) into $("$python" -c 'import sys; print(sys.prefix)')"
  "$python" -m pip install --disable-pip-version-check --no-input --quiet \
    --no-deps --require-hashes -r "$requirements"
  "$python" -c 'import adbc_driver_flightsql.dbapi, pyarrow'
fi

# --- the server ---------------------------------------------------------------------------------
rm -rf "$out"
mkdir -p "$out"
token="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
say "starting: $ferris server --flight 127.0.0.1:0 --auth-token $token   (log: $log)"
"$ferris" server --flight 127.0.0.1:0 --auth-token "$token" 2>"$log" &
server_pid=$!
stop_server() {
  # The jobs over files have ended by now: nothing is lost by stopping the server at once.
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Port 0: the system picks a free port, and the server says which.
address=""
for _ in $(seq 300); do
  address="$(sed -n 's/^ferris: Flight SQL listening on //p' "$log")"
  [[ -n "$address" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$log" >&2
    die "the server stopped"
  fi
  sleep 0.1
done
[[ -n "$address" ]] || die "the server did not say where it listens within 30s (see $log)"
port="${address##*:}"
echo "ferris: Flight SQL listening on $address"

# --- the jobs -----------------------------------------------------------------------------------
# From standard input, ferris-flight sends each statement on its own and prints its reply.
say "starting the jobs: $client --port $port --token $token < $demo/jobs.sql"
"$client" --port "$port" --token "$token" <"$demo/jobs.sql"

say "waiting for the jobs' output in $out/"
for name in large_fees spend_by_category; do
  path="$out/$name.jsonl"
  for _ in $(seq 100); do
    [[ -f "$path" ]] && break
    sleep 0.1
  done
  [[ -f "$path" ]] || die "no $path after 10s: did the job fail? (see $log)"
  echo "$path: $(wc -l <"$path") rows"
done

# --- Python -------------------------------------------------------------------------------------
say "querying from Python: $python $demo/query.py grpc://$address $token"
"$python" "$demo/query.py" "grpc://$address" "$token"

say "$out/spend_by_category.jsonl"
cat "$out/spend_by_category.jsonl"

if [[ "$keep" == yes ]]; then
  say "the server keeps running on $address until Ctrl-C; try"
  echo "  $client --port $port --token $token -e \"DESCRIBE large_fees\""
  echo "  $client --port $port --token $token      (a prompt: statements end with ';')"
  echo "  $python $demo/query.py grpc://$address $token"
  wait "$server_pid"
fi
