#!/usr/bin/env bash
# The 5-minute demo: CSV -> SQL -> JSON lines, no broker.
# Builds `ferris` if needed (a debug build: it shares the test suite's build, and a 40-row demo
# does not need release speed), runs demos/quickstart/quickstart.sql from the repo root,
# and prints the two output files. Safe to run again: the outputs are replaced.
#
# FERRIS=/path/to/ferris bash scripts/quickstart.sh   uses that binary and skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=demos/quickstart
ferris="${FERRIS:-${CARGO_TARGET_DIR:-target}/debug/ferris}"

if [[ -z "${FERRIS:-}" ]]; then
  if command -v cargo >/dev/null 2>&1; then
    # A no-op when the binary is up to date. Only the binary: the tests and benchmarks are
    # the test suite's to build. No dev-dependency changes a dependency's features, so the
    # test suite's build (scripts/test.sh) reuses every crate built here, and this one reuses
    # the test suite's.
    echo "==> building ferris"
    # The etcd client's protocol code is generated at build time, by protoc (scripts/protoc.sh).
    PROTOC="${PROTOC:-$(bash scripts/protoc.sh)}"
    export PROTOC
    cargo build --workspace --bin ferris
  elif [[ ! -x "$ferris" ]]; then
    echo "quickstart: cargo not found and $ferris not built; install Rust from https://rustup.rs" >&2
    exit 1
  fi
fi

echo "==> $ferris run $demo/quickstart.sql"
rm -rf "$demo/out"
"$ferris" run "$demo/quickstart.sql"

for file in large_fees spend_by_category; do
  path="$demo/out/$file.jsonl"
  echo
  echo "==> $path ($(wc -l < "$path") rows)"
  head -n 10 "$path"
done
