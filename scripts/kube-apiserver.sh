#!/usr/bin/env bash
# A Kubernetes API server for the integration tests: one kube-apiserver on loopback, with an etcd
# of its own (started through scripts/etcd.sh) and no controllers, scheduler or kubelet, so the
# objects it accepts are validated and stored but nothing runs them. The binary is built once
# from the Go module proxy (the wrapper module scripts/kube-apiserver/, which pins the Kubernetes
# version in its go.mod) into a cache folder outside the repository; a changed go.mod, go.sum or
# main.go builds again. Needs Go (the version in scripts/kube-apiserver/go.mod or newer), curl
# and openssl.
#
#   bash scripts/kube-apiserver.sh install  build the binary (and etcd's) if needed and print
#                                           its absolute path (once: 5 to 15 minutes on 2 cores)
#   bash scripts/kube-apiserver.sh start    start etcd and the server (a no-op if they already
#                                           run), wait until /readyz says ok, write a kubeconfig
#                                           (an admin token in group system:masters; the
#                                           server's self-signed certificate is not checked)
#                                           and print "kubeconfig: /absolute/path"
#   bash scripts/kube-apiserver.sh stop     stop the server and its etcd (fine if they do not
#                                           run); the objects stay in FERRIS_KUBE_DIR for the
#                                           next start
#   bash scripts/kube-apiserver.sh clean    stop them and delete the objects, the keys, the
#                                           token and the kubeconfig
#   bash scripts/kube-apiserver.sh status   exit 0 if the server answers ready on its port (and
#                                           print "running (pid N), kubeconfig: PATH"), 1 if not
#
# Environment:
#   FERRIS_KUBE_PORT       the secure (HTTPS) port on 127.0.0.1 (default 6443; 0 takes the first
#                          free one from 6443 up; stop and status default to the port the running
#                          server was started on)
#   FERRIS_KUBE_ETCD_PORT  the client port of its etcd on 127.0.0.1 (default 12379; the peer port
#                          is the next one; 0 takes the first free pair from 12379 up; a start
#                          defaults to the port its etcd ran on last)
#   FERRIS_KUBE_DIR        kube-apiserver.pid, .port and .log, the kubeconfig, the keys and token
#                          (pki/) and the etcd folder (etcd/) (default target/kube)
#   FERRIS_CACHE           the cache folder for the binaries (default ~/.cache/ferris-streams)
#   FERRIS_KUBE_OWNER_PID  a start stops both once this process is gone (a test's own pid)
# Messages go to stderr; stdout carries only the outputs named above, for $(...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE="kube-apiserver.sh"
WHAT="kube-apiserver"
STOP_GRACE=20 # seconds for a clean shutdown
# shellcheck source=lib/service.sh
source "$ROOT/scripts/lib/service.sh"
# shellcheck source=lib/go_binary.sh
source "$ROOT/scripts/lib/go_binary.sh"
MODULE="$ROOT/scripts/kube-apiserver"
DIR="$(abs "${FERRIS_KUBE_DIR:-$ROOT/target/kube}")"
CACHE="$(abs "${FERRIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferris-streams}")"
PID_FILE="$DIR/kube-apiserver.pid"
PORT_FILE="$DIR/kube-apiserver.port"
LOG="$DIR/kube-apiserver.log"
PKI="$DIR/pki"                     # the serving certificate (made by the server), keys, token
TOKENS="$PKI/tokens.csv"           # --token-auth-file: token,user,uid,"groups"
KUBECONFIG_FILE="$DIR/kubeconfig"
ETCD_DIR="$DIR/etcd"               # FERRIS_ETCD_DIR of its etcd.sh
DEFAULT_PORT=6443
DEFAULT_ETCD_PORT=12379
START_TIMEOUT=120 # seconds for the server to report ready after it is launched

# --- The binary ---------------------------------------------------------------------------------

kube_version() {
  awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }
       $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2 }' "$MODULE/go.mod" | sed -n '1s/^v//p'
}

# What the release build stamps in (the server's /version and --version; without it they say
# v0.0.0-master).
ldflags() {
  local version="$1" major minor
  major="${version%%.*}"
  minor="${version#*.}"
  minor="${minor%%.*}"
  local v=k8s.io/component-base/version
  printf '%s' "-s -w -X $v.gitVersion=v$version -X $v.gitMajor=$major -X $v.gitMinor=$minor" \
    " -X $v.gitTreeState=clean"
}

# Builds the kube-apiserver binary the first time (a no-op after that) and prints its path.
ensure_binary() {
  local version
  version="$(kube_version)"
  [[ -n "$version" ]] || die "no k8s.io/kubernetes requirement in $MODULE/go.mod"
  build_go_binary kube-apiserver "$version" "$(ldflags "$version")" 1800 "5 to 15 minutes on 2 cores"
}

# --- Its etcd -------------------------------------------------------------------------------------

etcd_sh() {
  FERRIS_ETCD_DIR="$ETCD_DIR" FERRIS_CACHE="$CACHE" bash "$ROOT/scripts/etcd.sh" "$@"
}

# Starts its etcd (a no-op if it runs) and prints its client port.
start_etcd() {
  local port="${FERRIS_KUBE_ETCD_PORT:-}" out
  if [[ -z "$port" && -s "$ETCD_DIR/etcd.port" ]]; then port="$(<"$ETCD_DIR/etcd.port")"; fi
  port="${port:-$DEFAULT_ETCD_PORT}"
  check_port "$port" FERRIS_KUBE_ETCD_PORT
  port=$((10#$port))
  if ((port == 0)); then
    # A running etcd keeps its port; else the first free pair (client, peer).
    if etcd_sh status >/dev/null 2>&1; then
      port="$(<"$ETCD_DIR/etcd.port")"
    else
      port="$(free_port "$DEFAULT_ETCD_PORT" 2)"
    fi
  fi
  out="$(FERRIS_ETCD_PORT="$port" etcd_sh start)" || die "its etcd did not start (log: $ETCD_DIR/etcd.log)"
  [[ "$out" == "endpoints: 127.0.0.1:$port" ]] || die "etcd.sh start printed '$out'"
  printf '%s\n' "$port"
}

# --- The server process ---------------------------------------------------------------------------

# $1 a port (0: pick one), $2 the variable it came from.
check_port() {
  if [[ ! "$1" =~ ^[0-9]+$ ]] || ((10#$1 > 65534)); then die "not a port: $2=$1"; fi
}

# The first port from $1 up such that it and the $2 - 1 after it are free on 127.0.0.1.
free_port() {
  local p="$1" n="$2" i ok
  for ((; p + n - 1 <= 65535; p++)); do
    ok=1
    for ((i = 0; i < n; i++)); do
      if port_open $((p + i)); then ok=0; break; fi
    done
    if ((ok)); then printf '%s\n' "$p"; return 0; fi
  done
  die "no free port on 127.0.0.1 from $1 up"
}

# The port to talk to: $FERRIS_KUBE_PORT (unless 0), else the running server's, else 6443.
port() {
  local port="${FERRIS_KUBE_PORT:-}"
  if [[ -n "$port" ]]; then check_port "$port" FERRIS_KUBE_PORT; port=$((10#$port)); fi
  if [[ -z "$port" || "$port" == 0 ]] && [[ -s "$PORT_FILE" ]]; then port="$(<"$PORT_FILE")"; fi
  if [[ -z "$port" || "$port" == 0 ]]; then port="$DEFAULT_PORT"; fi
  printf '%s\n' "$port"
}

# Whether $1 is a live kube-apiserver of this folder (not a zombie, not a recycled pid).
alive() { runs_with "$1" "/kube-apiserver --cert-dir $PKI "; }

token() { cut -d, -f1 "$TOKENS" 2>/dev/null | head -n 1; }

# Whether a kube-apiserver on 127.0.0.1:$1 answers ready (etcd reached, its bootstrap done).
ready() {
  local body
  body="$(curl -sk --max-time 3 -H "Authorization: Bearer $(token)" \
    "https://127.0.0.1:$1/readyz" 2>/dev/null)" || return 1
  [[ "$body" == ok ]]
}

# The admin token and the service-account key pair, made once and kept until clean.
ensure_credentials() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [[ ! -s "$TOKENS" ]]; then
    local token
    token="$(openssl rand -hex 24)" || die "openssl rand failed"
    printf '%s,ferris-admin,ferris-admin,"system:masters"\n' "$token" >"$TOKENS.tmp"
    mv "$TOKENS.tmp" "$TOKENS"
  fi
  if [[ ! -s "$PKI/sa.key" || ! -s "$PKI/sa.pub" ]]; then
    if ! openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key.tmp" \
      2>/dev/null || ! openssl pkey -in "$PKI/sa.key.tmp" -pubout -out "$PKI/sa.pub" 2>/dev/null; then
      die "openssl could not make the service-account key pair in $PKI"
    fi
    mv "$PKI/sa.key.tmp" "$PKI/sa.key"
  fi
}

write_kubeconfig() {
  local port="$1"
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ferris
  cluster:
    server: https://127.0.0.1:$port
    insecure-skip-tls-verify: true
users:
- name: ferris-admin
  user:
    token: $(token)
contexts:
- name: ferris
  context:
    cluster: ferris
    user: ferris-admin
    namespace: default
current-context: ferris
EOF
  chmod 600 "$KUBECONFIG_FILE.tmp"
  mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# A start that failed stops what it launched (the server, then its etcd) and exits with $2.
abort_kube_start() {
  if (($2 != 1)); then say "start interrupted: stopping what it started"; fi
  if [[ -n "$1" ]] && alive "$1"; then stop_pid "$1"; fi
  rm -f "$PID_FILE" "$PORT_FILE"
  etcd_sh stop >/dev/null 2>&1 || true
  exit "$2"
}

cmd_start() {
  local kube port pid etcd_port
  command -v curl >/dev/null 2>&1 || die "curl not found (Debian: apt-get install curl)"
  command -v openssl >/dev/null 2>&1 || die "openssl not found (Debian: apt-get install openssl)"
  lock
  kube="$(ensure_binary)"
  port="${FERRIS_KUBE_PORT:-}"
  if [[ -n "$port" ]]; then check_port "$port" FERRIS_KUBE_PORT; port=$((10#$port)); fi
  pid="$(read_pid)"
  if alive "$pid"; then
    local running_port
    running_port="$(cat "$PORT_FILE" 2>/dev/null || true)"
    if [[ -z "$port" || "$port" == 0 ]]; then port="$running_port"; fi
    if [[ "$port" != "$running_port" ]]; then
      die "a kube-apiserver already runs on port ${running_port:-?} (pid $pid); stop it first:" \
        "bash scripts/kube-apiserver.sh stop"
    fi
    if ready "$port"; then
      write_kubeconfig "$port"
      say "kube-apiserver already running (pid $pid, log $LOG)"
      echo "kubeconfig: $KUBECONFIG_FILE"
      return 0
    fi
    say "kube-apiserver (pid $pid) runs but is not ready on port $port: restarting it"
    stop_pid "$pid"
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
  port="${port:-$DEFAULT_PORT}"
  if ((port == 0)); then
    port="$(free_port "$DEFAULT_PORT" 1)"
  elif port_open "$port"; then
    die "port $port on 127.0.0.1 is taken by another process; free it or set FERRIS_KUBE_PORT" \
      "(0 takes a free one)"
  fi
  ensure_credentials
  # An interrupt from here on leaves nothing running.
  trap 'abort_kube_start "${pid:-}" 130' INT
  trap 'abort_kube_start "${pid:-}" 143' TERM
  pid=""
  etcd_port="$(start_etcd)" || abort_kube_start "" 1

  echo "$port" >"$PORT_FILE"
  # --cert-dir first: alive() recognizes this folder's server by it. The serving certificate is
  # self-signed, made by the server in --cert-dir (for localhost and 127.0.0.1). The advertised
  # address is loopback, which the "kubernetes" Service's Endpoints may not hold: with an
  # endpoint reconciler the server refuses to start ("cannot use public IP 127.0.0.1 with
  # endpoint reconciler"). Only tokens of the token file authenticate (no client
  # certificates); RBAC lets system:masters do everything. Without --service-cluster-ip-range
  # it warns that its default is deprecated.
  local -a server=("$kube" --cert-dir "$PKI"
    --bind-address 127.0.0.1 --secure-port "$port" --advertise-address 127.0.0.1
    --etcd-servers "http://127.0.0.1:$etcd_port"
    --token-auth-file "$TOKENS" --authorization-mode RBAC
    --service-account-issuer https://kubernetes.default.svc.cluster.local
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key"
    --service-cluster-ip-range 10.96.0.0/16
    --endpoint-reconciler-type none
    --profiling=false)
  # Detached (own session, stdin from /dev/null, output to the log) so that it outlives this
  # script and holds none of the caller's pipes. The child writes its own pid, then becomes the
  # server.
  # shellcheck disable=SC2016 # $$, $0 and $@ are the child's
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$PID_FILE" "${server[@]}" </dev/null >"$LOG" 2>&1 9>&-
  local i
  for ((i = 0; i < 50; i++)); do # 5 s for the pid file
    pid="$(read_pid)"
    [[ -n "$pid" ]] && break
    sleep 0.1
  done
  [[ -n "$pid" ]] || { log_tail; abort_kube_start "" 1; }

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! alive "$pid"; then
      log_tail
      say "kube-apiserver exited during startup (log: $LOG)"
      abort_kube_start "" 1
    fi
    if ready "$port"; then break; fi
    if ((SECONDS >= deadline)); then
      log_tail
      say "kube-apiserver was not ready on port $port within ${START_TIMEOUT}s (log: $LOG)"
      abort_kube_start "$pid" 1
    fi
    sleep 0.2
  done
  trap - INT TERM
  write_kubeconfig "$port"
  say "kube-apiserver started (pid $pid, Kubernetes $(kube_version), https://127.0.0.1:$port," \
    "etcd 127.0.0.1:$etcd_port, log $LOG)"
  stop_with_owner
  echo "kubeconfig: $KUBECONFIG_FILE"
}

# With FERRIS_KUBE_OWNER_PID, a watcher stops the server and its etcd once that process is
# gone: a test killed before it could stop them leaves nothing running. (It must not hold
# the folder's lock, fd 9, or its stop would wait for itself.)
stop_with_owner() {
  local owner="${FERRIS_KUBE_OWNER_PID:-}"
  [[ -n "$owner" ]] || return 0
  [[ "$owner" =~ ^[0-9]+$ ]] || die "not a pid: FERRIS_KUBE_OWNER_PID=$owner"
  # shellcheck disable=SC2016 # expanded by the watcher's shell
  setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
                  if [[ -d "$2" ]]; then FERRIS_KUBE_DIR="$2" bash "$3" stop; fi' \
    watcher "$owner" "$DIR" "$ROOT/scripts/kube-apiserver.sh" </dev/null >/dev/null 2>&1 9>&- &
}

cmd_stop() {
  local pid
  lock
  pid="$(read_pid)"
  if alive "$pid"; then
    stop_pid "$pid"
    say "kube-apiserver stopped (pid $pid)"
  else
    say "kube-apiserver not running"
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
  etcd_sh stop
}

cmd_clean() {
  cmd_stop
  etcd_sh clean
  rm -rf "$PKI" "$KUBECONFIG_FILE"
  say "deleted the server's objects, keys, token and kubeconfig ($DIR)"
}

cmd_status() {
  local pid port
  command -v curl >/dev/null 2>&1 || die "curl not found (Debian: apt-get install curl)"
  pid="$(read_pid)"
  port="$(port)"
  if ready "$port"; then
    if alive "$pid"; then
      echo "running (pid $pid), kubeconfig: $KUBECONFIG_FILE"
      return 0
    fi
    say "a kube-apiserver that was not started from $DIR answers on 127.0.0.1:$port"
    return 1
  fi
  if alive "$pid"; then
    say "kube-apiserver (pid $pid) is not ready on 127.0.0.1:$port"
  elif port_open "$port"; then
    say "not running from $DIR (but something else listens on 127.0.0.1:$port)"
  else
    say "not running"
  fi
  return 1
}

case "${1:-}" in
  install)
    # start needs etcd's binary as well: built here too, so that one install builds both.
    etcd_sh install >/dev/null
    ensure_binary
    ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  status) cmd_status ;;
  *)
    echo "usage: bash scripts/kube-apiserver.sh install|start|stop|clean|status" >&2
    exit 2
    ;;
esac
