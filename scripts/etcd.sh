#!/usr/bin/env bash
# The etcd server for the cluster tests: one node on loopback. The binary is built once from the
# Go module proxy (the wrapper module scripts/etcd/, which pins the etcd version in its go.mod)
# into a cache folder outside the repository; a changed go.mod, go.sum or main.go builds again.
# Needs Go (the version in scripts/etcd/go.mod or newer) and curl.
#
#   bash scripts/etcd.sh install  build the binary if needed and print its absolute path (the
#                                 tests start their own etcd processes from it: FERRIS_ETCD)
#   bash scripts/etcd.sh start    start the server (a no-op if it already runs) and print
#                                 "endpoints: 127.0.0.1:PORT"
#   bash scripts/etcd.sh stop     stop it (fine if it does not run); its keys stay in
#                                 FERRIS_ETCD_DIR for the next start
#   bash scripts/etcd.sh clean    stop it and delete its data
#   bash scripts/etcd.sh status   exit 0 if it answers on its port, 1 otherwise
#
# Environment:
#   FERRIS_ETCD_PORT  the client port on 127.0.0.1 (default 2379; the peer port is the next
#                     one; stop and status default to the port the running server was started on)
#   FERRIS_ETCD_DIR   etcd.pid, etcd.port, etcd.log and the data folder (default target/etcd)
#   FERRIS_CACHE      the cache folder for the binary (default ~/.cache/ferris-streams)
# Messages go to stderr; stdout carries only the outputs named above, for $(...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE=etcd.sh
WHAT=etcd
STOP_GRACE=5 # seconds for a clean shutdown
# shellcheck source=lib/service.sh
source "$ROOT/scripts/lib/service.sh"
# shellcheck source=lib/go_binary.sh
source "$ROOT/scripts/lib/go_binary.sh"
MODULE="$ROOT/scripts/etcd"
DIR="$(abs "${FERRIS_ETCD_DIR:-$ROOT/target/etcd}")"
CACHE="$(abs "${FERRIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferris-streams}")"
PID_FILE="$DIR/etcd.pid"
PORT_FILE="$DIR/etcd.port"
LOG="$DIR/etcd.log"
DATA="$DIR/data"
START_TIMEOUT=30 # seconds for the server to report healthy after it is launched

# --- The binary ---------------------------------------------------------------------------------

etcd_version() {
  awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" { print $3 }
       $1 == "go.etcd.io/etcd/server/v3" { print $2 }' "$MODULE/go.mod" | sed -n '1s/^v//p'
}

# Builds the etcd binary the first time (a no-op after that) and prints its path.
ensure_binary() {
  local version
  version="$(etcd_version)"
  [[ -n "$version" ]] || die "no go.etcd.io/etcd/server/v3 requirement in $MODULE/go.mod"
  build_go_binary etcd "$version" "-s -w" 600 "a minute or two"
}

# --- The server process ---------------------------------------------------------------------------

check_port() {
  # The peer port is the next one.
  if [[ ! "$1" =~ ^[0-9]+$ ]] || ((10#$1 < 1 || 10#$1 > 65534)); then die "not a client port: $1"; fi
}

# The port to talk to: $FERRIS_ETCD_PORT, else the running server's, else 2379.
port() {
  local port="${FERRIS_ETCD_PORT:-}"
  if [[ -z "$port" && -s "$PORT_FILE" ]]; then port="$(<"$PORT_FILE")"; fi
  port="${port:-2379}"
  check_port "$port"
  printf '%s\n' "$((10#$port))"
}

# Whether $1 is a live etcd of this folder (not a zombie, not a recycled pid).
alive() { runs_with "$1" "/etcd --data-dir $DATA "; }

# Whether an etcd on 127.0.0.1:$1 reports itself healthy (it has a leader and serves reads).
healthy() {
  local body
  body="$(curl -sf --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null)" || return 1
  [[ "$body" == *'"health":"true"'* ]]
}

cmd_start() {
  local etcd port peer pid
  command -v curl >/dev/null 2>&1 || die "curl not found (Debian: apt-get install curl)"
  lock
  etcd="$(ensure_binary)"
  port="${FERRIS_ETCD_PORT:-}"
  pid="$(read_pid)"
  if alive "$pid"; then
    local running_port
    running_port="$(cat "$PORT_FILE" 2>/dev/null || true)"
    port="${port:-$running_port}"
    if [[ "$port" != "$running_port" ]]; then
      die "an etcd already runs on port ${running_port:-?} (pid $pid); stop it first: bash scripts/etcd.sh stop"
    fi
    if healthy "$port"; then
      say "etcd already running (pid $pid, log $LOG)"
      echo "endpoints: 127.0.0.1:$port"
      return 0
    fi
    say "etcd (pid $pid) runs but is not healthy on port $port: restarting it"
    stop_pid "$pid"
  fi
  port="${port:-2379}"
  check_port "$port"
  port=$((10#$port))
  peer=$((port + 1))
  rm -f "$PID_FILE" "$PORT_FILE"
  local p
  for p in "$port" "$peer"; do
    if port_open "$p"; then
      die "port $p on 127.0.0.1 is taken by another process; free it or set FERRIS_ETCD_PORT" \
        "(etcd takes that port and the next)"
    fi
  done

  echo "$port" >"$PORT_FILE"
  # --data-dir first: alive() recognizes this folder's server by it. A data folder made for
  # another port keeps its member's old peer address; one node needs no peer, so it still runs.
  local -a server=("$etcd" --data-dir "$DATA" --name ferris
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port"
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer"
    --initial-cluster "ferris=http://127.0.0.1:$peer"
    --heartbeat-interval 50 --election-timeout 250 --log-level warn)
  # Detached (own session, stdin from /dev/null, output to the log) so that it outlives this
  # script and holds none of the caller's pipes. The child writes its own pid, then becomes etcd.
  # shellcheck disable=SC2016 # $$, $0 and $@ are the child's
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "${server[@]}" </dev/null >"$LOG" 2>&1 9>&-
  local i
  for ((i = 0; i < 50; i++)); do # 5 s for the pid file
    pid="$(read_pid)"
    [[ -n "$pid" ]] && break
    sleep 0.1
  done
  [[ -n "$pid" ]] || { log_tail; die "etcd did not start"; }
  # Interrupted while waiting: leave nothing running.
  trap 'abort_start "$pid" 130' INT
  trap 'abort_start "$pid" 143' TERM

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! alive "$pid"; then
      log_tail
      rm -f "$PID_FILE" "$PORT_FILE"
      die "etcd exited during startup (log: $LOG)"
    fi
    if healthy "$port"; then break; fi
    if ((SECONDS >= deadline)); then
      log_tail
      stop_pid "$pid"
      rm -f "$PID_FILE" "$PORT_FILE"
      die "etcd was not healthy on port $port within ${START_TIMEOUT}s (log: $LOG)"
    fi
    sleep 0.1
  done
  trap - INT TERM
  say "etcd started (pid $pid, etcd $(etcd_version), log $LOG)"
  echo "endpoints: 127.0.0.1:$port"
}

cmd_stop() {
  local pid
  lock
  pid="$(read_pid)"
  if alive "$pid"; then
    stop_pid "$pid"
    say "etcd stopped (pid $pid)"
  else
    say "etcd not running"
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
}

cmd_clean() {
  cmd_stop
  rm -rf "$DATA"
  say "deleted etcd's data ($DATA)"
}

cmd_status() {
  local pid port
  command -v curl >/dev/null 2>&1 || die "curl not found (Debian: apt-get install curl)"
  pid="$(read_pid)"
  port="$(port)"
  if healthy "$port"; then
    if alive "$pid"; then
      echo "running (pid $pid), endpoints: 127.0.0.1:$port"
    else
      say "an etcd that was not started from $DIR answers on 127.0.0.1:$port"
      echo "running, endpoints: 127.0.0.1:$port"
    fi
    return 0
  fi
  if alive "$pid"; then
    say "etcd (pid $pid) is not healthy on 127.0.0.1:$port"
  elif port_open "$port"; then
    say "not running from $DIR (but something else listens on 127.0.0.1:$port)"
  else
    say "not running"
  fi
  return 1
}

case "${1:-}" in
  install) ensure_binary ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  status) cmd_status ;;
  *)
    echo "usage: bash scripts/etcd.sh install|start|stop|clean|status" >&2
    exit 2
    ;;
esac
