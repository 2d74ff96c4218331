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
# Later issues add them here, before the build and tests that need them:
#   - a Python venv in .venv (ignored by git) for the Python tests and tools;
#   - a Kafka broker, started here and stopped by an EXIT trap.
# Nothing yet.

# --- Build and test -----------------------------------------------------------------------
step "cargo build"
cargo build --workspace --all-targets

step "cargo test"
cargo test --workspace

step "all tests passed"
