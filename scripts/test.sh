#!/usr/bin/env bash
# The whole test suite, for a fresh machine (Debian with a Rust toolchain, Python 3.11, Java 17,
# Maven, Go, curl and openssl). protoc (scripts/protoc.sh), etcd (scripts/etcd.sh) and
# kube-apiserver (scripts/kube-apiserver.sh) are fetched and built into a cache folder on the
# first run.
# Run from anywhere: bash scripts/test.sh
#
# The conformance tests run our cases in tests/cases/, and the shared ones from
# ../shared/conformance when it is there (next to this repo, as CI lays it out), or from
# $FERRIS_CONFORMANCE_DIR (absolute, or relative to the repo root).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- Prerequisites ------------------------------------------------------------------------
# The shared conformance cases run when they are there (CI lays them out next to the repo);
# our own cases in tests/cases/ always run.
if [[ -n "${FERRIS_CONFORMANCE_DIR:-}" ]]; then
  [[ -d "$FERRIS_CONFORMANCE_DIR" ]] || { echo "test.sh: FERRIS_CONFORMANCE_DIR=$FERRIS_CONFORMANCE_DIR is not a folder" >&2; exit 1; }
  # The tests run in their crate's folder: hand them an absolute path.
  FERRIS_CONFORMANCE_DIR="$(cd "$FERRIS_CONFORMANCE_DIR" && pwd)"
  export FERRIS_CONFORMANCE_DIR
  echo "conformance cases: tests/cases and $FERRIS_CONFORMANCE_DIR"
elif [[ -d ../shared/conformance ]]; then
  echo "conformance cases: tests/cases and ../shared/conformance"
else
  echo "conformance cases: tests/cases only (no ../shared/conformance next to the repo)"
fi
for tool in java mvn python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "test.sh: $tool is missing: the Kafka broker and the JDBC test need Java 17 and Maven," >&2
    echo "         the Python clients python3 (Debian: apt-get install openjdk-17-jdk-headless maven python3-venv)" >&2
    exit 1
  }
done

# --- Static checks (fast, so they fail first) ---------------------------------------------
# Clippy compiles build scripts: etcd-client's generates the etcd client's gRPC code with protoc
# (PROTOC), fetched from Maven Central once by scripts/protoc.sh (or $PROTOC when set).
PROTOC="$(bash scripts/protoc.sh)"
export PROTOC
# A toolchain without rustfmt or clippy (rustup component add rustfmt clippy) skips that
# check and says so at the end: it is not a reason to skip the tests.
unchecked=()
if cargo fmt --version >/dev/null 2>&1; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
else
  unchecked+=("formatting (cargo fmt is missing: rustup component add rustfmt)")
fi
if cargo clippy --version >/dev/null 2>&1; then
  step "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
else
  unchecked+=("lints (cargo clippy is missing: rustup component add clippy)")
fi

# The quickstart builds the binary alone (scripts/quickstart.sh); it shares every compiled
# crate with this suite only while no dev-dependency turns on a feature of a dependency.
step "dev-dependencies change no dependency's features"
features() { cargo tree --workspace --prefix none -f '{p}|{f}' "$@" | sed 's/ (\*)$//' | sort -u; }
# Packages of the normal build with a feature set that only the build with tests has.
changed="$(python3 - <(features -e no-dev) <(features) <<'EOF'
import sys
def feature_sets(path):
    sets = {}
    for line in open(path):
        package, _, features = line.rstrip("\n").partition("|")
        sets.setdefault(package, set()).add(features)
    return sets
normal, with_tests = feature_sets(sys.argv[1]), feature_sets(sys.argv[2])
for package, features in sorted(normal.items()):
    for extra in sorted(with_tests[package] - features):
        print(f"{package}: {extra}")
EOF
)"
if [[ -n "$changed" ]]; then
  echo "test.sh: dev-dependencies change these dependencies' features, so the quickstart's" >&2
  echo "         build and this one would each compile them:" >&2
  printf '         %s\n' "$changed" >&2
  exit 1
fi

# --- Services and tools for integration tests ---------------------------------------------
# - A Python venv (scripts/venv.sh) for the Python tools: the Schema Registry stand-in
#   tests/kafka/schema_registry.py, the S3 stand-in (moto), and the Arrow Flight SQL clients
#   (pyarrow, ADBC) that tests/flight/clients.py drives the server with. FERRIS_PYTHON is its
#   python.
# - The test broker, Apache Kafka (scripts/kafka.sh), on 127.0.0.1:${FERRIS_KAFKA_PORT:-9092}:
#   FERRIS_KAFKA_BOOTSTRAP is its address. Started here with empty storage and stopped by an
#   EXIT trap; one that was already running (bash scripts/kafka.sh start, by hand) is used and
#   left running.
# - The etcd server binary for the cluster tests (scripts/etcd.sh install, built from the Go
#   module proxy once): FERRIS_ETCD is its path. Not started here: the tests start their own
#   etcd processes from it, on free ports.
# - kube-apiserver (scripts/kube-apiserver.sh install, built from the Go module proxy once),
#   which the Kubernetes test starts with an etcd of its own through the same script.
# All install nothing when already installed.
step "python venv, kafka broker, etcd and kube-apiserver"
FERRIS_PYTHON="$(bash scripts/venv.sh)"
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
# The S3 stand-in (moto's server) that the S3 checkpoint tests write to.
ensure_python 'import moto.server, flask_cors' scripts/requirements-s3.txt
export FERRIS_PYTHON
kafka_was_running=no
if bash scripts/kafka.sh status >/dev/null 2>&1; then
  kafka_was_running=yes
else
  bash scripts/kafka.sh clean
fi
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
echo "FERRIS_KAFKA_BOOTSTRAP=$FERRIS_KAFKA_BOOTSTRAP"
echo "FERRIS_PYTHON=$FERRIS_PYTHON"
FERRIS_ETCD="$(bash scripts/etcd.sh install)"
export FERRIS_ETCD
echo "FERRIS_ETCD=$FERRIS_ETCD"
# The Kubernetes API server for k8s/tests/apiserver.rs (scripts/kube-apiserver.sh, built from
# the Go module proxy once: about 8 minutes on 2 cores). The test starts its own, on free ports.
kube_apiserver="$(bash scripts/kube-apiserver.sh install)"
echo "kube-apiserver: $kube_apiserver"
# Headless Chromium for the dashboard's browser test: Debian's chromium (apt-get, once) and
# playwright-core from npm (pinned, into a cache folder once).
echo "playwright-core: $(bash scripts/browser.sh)"

# --- Build and test -----------------------------------------------------------------------
step "cargo build"
cargo build --workspace --all-targets

# The JDBC checks (tests/jdbc/) that flight-server/tests/jdbc.rs runs with the Arrow Flight SQL
# JDBC driver from Maven Central (cached in ~/.m2).
step "JDBC checks (maven)"
mvn -q -B -f tests/jdbc/pom.xml package
FERRIS_JDBC_CLASSPATH="$PWD/target/jdbc/classes:$(cat target/jdbc/classpath.txt)"
export FERRIS_JDBC_CLASSPATH

step "cargo test"
cargo test --workspace

# The trading demo end to end (demos/trading/README.md): ten minutes of market data at ten
# times the clock's pace, the server's bars and P&L checked digit for digit against the raw
# topics, and the dashboard driven in headless Chromium (tests/browser/dashboard.mjs).
step "trading demo: bash demos/trading/run.sh --duration 60 --speed 10 --browser-test"
bash demos/trading/run.sh --duration 60 --speed 10 --browser-test

if ((${#unchecked[@]})); then
  step "all tests passed; not checked: ${unchecked[*]}"
else
  step "all tests passed"
fi
