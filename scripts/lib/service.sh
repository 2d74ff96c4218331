# What the scripts that run a test service (kafka.sh, etcd.sh, kube-apiserver.sh) share:
# messages, the pid file, a lock on the service's folder, its log's last lines, and stopping
# its process. Sourced, not run. (kafka.sh has a log_tail of its own: its log is noisy.)
#
# The script sets before sourcing: SERVICE (its name in messages, e.g. "kafka.sh"), WHAT (the
# process in messages, e.g. "broker"), DIR (its folder), PID_FILE, PORT_FILE, LOG, and
# STOP_GRACE (seconds a SIGTERM gets before SIGKILL); and defines alive PID (whether PID is a
# live process of this service and folder).

say() { printf '%s: %s\n' "$SERVICE" "$*" >&2; }
die() { say "$*"; exit 1; }

# An absolute path for $1 (relative to the current folder).
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

# The pid in the pid file, if it holds one.
read_pid() {
  local pid=""
  if [[ -s "$PID_FILE" ]]; then pid="$(<"$PID_FILE")"; fi
  [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
  return 0
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether $1 is a live process (not a zombie, not a recycled pid) whose command line holds $2:
# what each script's `alive` asks, with the words that tell its own process.
runs_with() {
  local pid="$1" cmdline
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$2"* ]]
}

# One start, stop or clean at a time in the folder.
lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 120 9 || die "another $SERVICE holds $DIR/lock"
  fi
}

# SIGTERM, STOP_GRACE seconds for a clean shutdown, then SIGKILL.
stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_GRACE * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  say "$WHAT (pid $pid) ignored SIGTERM for $STOP_GRACE s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  die "$WHAT (pid $pid) is still alive after SIGKILL"
}

# The last lines of the service's log, to stderr (a start that failed says why).
log_tail() {
  if [[ -s "$LOG" ]]; then
    say "last lines of $LOG:"
    tail -n 20 "$LOG" | sed 's/^/    /' >&2 || true
  fi
}

# A start that failed stops what it launched and exits with $2.
abort_start() {
  stop_pid "$1"
  rm -f "$PID_FILE" "$PORT_FILE"
  exit "$2"
}
