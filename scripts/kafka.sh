#!/usr/bin/env bash
# The test broker: Apache Kafka 4 in KRaft mode (broker and controller in one JVM, no
# ZooKeeper) on loopback, with transactions working on one node. Its jars come from Maven
# Central (scripts/kafka/pom.xml) into a cache folder outside the repository, once.
#
#   bash scripts/kafka.sh start              start the broker (a no-op if it already runs) and
#                                            print "bootstrap servers: 127.0.0.1:PORT"
#   bash scripts/kafka.sh stop               stop it (fine if it does not run); its topics and
#                                            messages stay in FERRIS_KAFKA_DIR for the next start
#   bash scripts/kafka.sh clean              stop it and delete every topic and message
#   bash scripts/kafka.sh status             exit 0 if it runs and answers, 1 otherwise
#   bash scripts/kafka.sh topic NAME PARTS   create a topic (fine if it exists with PARTS
#                                            partitions)
#   bash scripts/kafka.sh delete-topic NAME  delete a topic (fine if there is none)
#   bash scripts/kafka.sh fetch              only fetch the jars (prints their folder)
#
# Environment:
#   FERRIS_KAFKA_PORT  the broker's port on 127.0.0.1 (default 9092; stop, status and topic
#                      default to the port the running broker was started on)
#   FERRIS_KAFKA_DIR   broker.pid, broker.port, broker.log, server.properties and the data
#                      folder (default target/kafka)
#   FERRIS_CACHE       the cache folder for the jars (default ~/.cache/ferris-streams)
#   FERRIS_KAFKA_HEAP  the broker's -Xmx (default 1g)
# Messages go to stderr; stdout carries only the outputs named above, for $(...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE=kafka.sh
WHAT=broker
STOP_GRACE=30 # seconds for a clean shutdown
# shellcheck source=lib/service.sh
source "$ROOT/scripts/lib/service.sh"
POM="$ROOT/scripts/kafka/pom.xml"
DIR="$(abs "${FERRIS_KAFKA_DIR:-$ROOT/target/kafka}")"
CACHE="$(abs "${FERRIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferris-streams}")"
PID_FILE="$DIR/broker.pid"
PORT_FILE="$DIR/broker.port"
LOG="$DIR/broker.log"
DATA="$DIR/data"
START_TIMEOUT=60 # seconds for the broker to answer after it is launched

# --- The jars ---------------------------------------------------------------------------------

kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM"
}

# The folder of the broker's jars, fetched with Maven the first time (a no-op after that).
ensure_jars() {
  local version lib
  version="$(kafka_version)"
  [[ -n "$version" ]] || die "no <kafka.version> in $POM"
  lib="$CACHE/kafka-$version"
  # The marker names the pom's hash: a changed pom fetches again.
  local marker
  marker="$lib/fetched-$(sha256sum "$POM" | cut -c1-16)"
  if [[ ! -e "$marker" ]]; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found (Debian: apt-get install maven)"
    command -v java >/dev/null 2>&1 || die "java not found (Debian: apt-get install openjdk-17-jre-headless)"
    say "fetching Apache Kafka $version with Maven into $lib (once)"
    rm -rf "$lib.tmp"
    mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$lib.tmp" >&2 || die "mvn could not fetch Apache Kafka $version"
    rm -rf "$lib"
    mv "$lib.tmp" "$lib"
    touch "$marker"
  fi
  printf '%s\n' "$lib"
}

# Runs a Kafka tool's main class ($1) with the remaining arguments.
tool() {
  local lib main="$1"
  shift
  lib="$(ensure_jars)"
  java -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/tools-log4j2.properties" \
    -cp "$lib/*" "$main" "$@"
}

# --- The broker process -------------------------------------------------------------------------

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

# Whether $1 is a live broker of this folder (not a zombie, not a recycled pid).
alive() { runs_with "$1" "kafka.Kafka $DIR/server.properties"; }

# A port on loopback that nothing listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether the broker of this folder has started and accepts connections on port $1: the
# broker logs that line once its listeners, controller and metadata are up.
answering() {
  port_open "$1" && grep -q "Kafka Server started" "$LOG" 2>/dev/null
}

log_tail() {
  if [[ -s "$LOG" ]]; then
    say "last lines of $LOG:"
    grep -E " (ERROR|WARN|FATAL) |Exception" "$LOG" | tail -n 20 | sed 's/^/    /' >&2 || true
  fi
}

# Writes server.properties for a broker on port $1 whose controller listens on port $2.
# One node holds every replica, so every internal topic has one replica, and a transaction
# needs only that one in sync.
write_config() {
  cat >"$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$2
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$1,CONTROLLER://127.0.0.1:$2
advertised.listeners=PLAINTEXT://127.0.0.1:$1
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=1
# Topics are created explicitly (kafka.sh topic, or the tests' admin client).
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# A consumer group forms as soon as its first member joins: no 3 s wait for more.
group.initial.rebalance.delay.ms=0
EOF
}

cmd_start() {
  local lib port pid i
  lock
  lib="$(ensure_jars)"
  port="${FERRIS_KAFKA_PORT:-}"
  pid="$(read_pid)"
  if alive "$pid"; then
    local running_port
    running_port="$(cat "$PORT_FILE" 2>/dev/null || true)"
    port="${port:-$running_port}"
    if [[ "$port" != "$running_port" ]]; then
      die "a broker already runs on port ${running_port:-?} (pid $pid); stop it first: bash scripts/kafka.sh stop"
    fi
    if answering "$port"; then
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

  # The controller's port is chosen once per data folder and kept: the quorum's address.
  local controller_port=""
  [[ -s "$DIR/controller.port" ]] && controller_port="$(<"$DIR/controller.port")"
  if [[ -z "$controller_port" ]] || port_open "$controller_port"; then
    controller_port="$(free_port)"
    echo "$controller_port" >"$DIR/controller.port"
  fi
  write_config "$port" "$controller_port"
  if [[ ! -e "$DATA/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(tool kafka.tools.StorageTool random-uuid)"
    tool kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" \
      -c "$DIR/server.properties" >&2 || die "could not format the broker's storage in $DATA"
  fi

  echo "$port" >"$PORT_FILE"
  local -a broker=(java "-Xmx${FERRIS_KAFKA_HEAP:-1g}" -Xms256m -XX:+UseG1GC
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties"
    -cp "$lib/*" kafka.Kafka "$DIR/server.properties")
  # Detached (own session, stdin from /dev/null, output to the log) so that it outlives this
  # script and holds none of the caller's pipes. The child writes its own pid, then becomes java.
  # shellcheck disable=SC2016 # $$, $0 and $@ are the child's
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
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
      log_tail
      rm -f "$PID_FILE" "$PORT_FILE"
      die "the broker exited during startup (log: $LOG)"
    fi
    if answering "$port"; then break; fi
    if ((SECONDS >= deadline)); then
      log_tail
      stop_pid "$pid"
      rm -f "$PID_FILE" "$PORT_FILE"
      die "the broker did not answer on port $port within ${START_TIMEOUT}s (log: $LOG)"
    fi
    sleep 0.2
  done
  trap - INT TERM
  say "broker started (pid $pid, Apache Kafka $(kafka_version), log $LOG)"
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

cmd_clean() {
  cmd_stop
  rm -rf "$DATA" "$DIR/controller.port"
  say "deleted the broker's data ($DATA)"
}

cmd_status() {
  local pid port
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
  if answering "$port"; then
    echo "running (pid $pid), bootstrap servers: 127.0.0.1:$port"
  else
    say "the broker (pid $pid) does not answer on 127.0.0.1:$port"
    return 1
  fi
}

check_topic_name() {
  [[ "$1" =~ ^[A-Za-z0-9._-]{1,249}$ && "$1" != . && "$1" != .. ]] ||
    die "not a Kafka topic name: '$1' (letters, digits, '.', '_', '-'; at most 249)"
}

cmd_topic() {
  (($# == 2)) || die "usage: kafka.sh topic NAME PARTITIONS"
  local name="$1" partitions="$2" port have
  check_topic_name "$name"
  [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "not a partition count: '$partitions'"
  port="$(port)"
  port_open "$port" || die "no broker on 127.0.0.1:$port (bash scripts/kafka.sh start)"
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --create \
    --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 >/dev/null ||
    die "could not create topic $name"
  # It may have existed: fine if it has the partitions asked for.
  have="$(tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" \
    --describe --topic "$name" | sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | head -n 1)"
  [[ "$have" == "$partitions" ]] ||
    die "topic $name exists with ${have:-?} partitions, not $partitions"
  say "topic $name has $partitions partitions"
}

cmd_delete_topic() {
  (($# == 1)) || die "usage: kafka.sh delete-topic NAME"
  local name="$1" port
  check_topic_name "$name"
  port="$(port)"
  port_open "$port" || die "no broker on 127.0.0.1:$port (bash scripts/kafka.sh start)"
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --delete \
    --if-exists --topic "$name" >/dev/null || die "could not delete topic $name"
  say "topic $name deleted (if it existed)"
}

# Apache Kafka's producer benchmark against the running broker, as the project's
# benchmarks' baseline: ProducerPerformance with the arguments given (the bootstrap servers
# are added). The JVM runs with its full JIT, unlike the short-lived admin tools.
cmd_producer_perf() {
  local port lib
  port="$(port)"
  port_open "$port" || die "no broker on 127.0.0.1:$port (bash scripts/kafka.sh start)"
  lib="$(ensure_jars)"
  java -Dlog4j2.configurationFile="$ROOT/scripts/kafka/tools-log4j2.properties" \
    -cp "$lib/*" org.apache.kafka.tools.ProducerPerformance "$@" \
    --producer-props "bootstrap.servers=127.0.0.1:$port"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  status) cmd_status ;;
  topic) shift; cmd_topic "$@" ;;
  delete-topic) shift; cmd_delete_topic "$@" ;;
  fetch) ensure_jars ;;
  producer-perf) shift; cmd_producer_perf "$@" ;;
  *)
    echo "usage: bash scripts/kafka.sh start|stop|clean|status|fetch|topic NAME PARTITIONS|delete-topic NAME|producer-perf ARGS" >&2
    exit 2
    ;;
esac
