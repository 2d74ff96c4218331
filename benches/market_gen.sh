#!/usr/bin/env bash
# The trading demo's market data generator (ferris-market-gen, release build) writing as fast
# as it can to the test broker, beside the baseline of Apache Kafka's own producer benchmark
# (ProducerPerformance) writing as many records of the same average size to a topic of the
# same partitions, on the same broker, one after the other.
#
#   bash benches/market_gen.sh [SECONDS]      (default 20)
#
# Prints messages per second, per CPU-second (user + system of the process) and peak RSS for
# each. The broker runs on the same 2 cores and takes its share of them: the numbers compare
# the two producers, not the machine's ceiling.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-20}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The generator has no DataFusion in its dependencies: building it alone changes no feature
# of anything the workspace's build shares.
PROTOC="$(bash scripts/protoc.sh)" cargo build --release -p ferris-market-gen >&2
bash scripts/kafka.sh start >/dev/null
for topic in quotes trades orders fills perf_baseline; do
  bash scripts/kafka.sh delete-topic "$topic" >/dev/null
  bash scripts/kafka.sh topic "$topic" 4 >/dev/null
done

measure() { # name, command...: runs it under /usr/bin/time, keeps its output and the timing
  local name="$1"
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" "$@" >"$work/$name.out" 2>&1
}

measure generator target/release/ferris-market-gen --rate 100000000 --duration "$seconds" \
  --data demos/trading
line="$(grep '^ferris-market-gen:' "$work/generator.out")"
messages="$(sed -E 's/^ferris-market-gen: ([0-9]+) messages.*/\1/' <<<"$line")"
bytes="$(sed -E 's/.*messages \(([0-9]+) bytes\).*/\1/' <<<"$line")"
size=$((bytes / messages))
measure baseline bash scripts/kafka.sh producer-perf --topic perf_baseline \
  --num-records "$messages" --record-size "$size" --throughput -1

printf '%-44s %10s %8s %12s %14s %10s\n' run messages "wall s" "messages/s" "per CPU-s" "peak RSS"
for name in generator baseline; do
  read -r wall user system rss <"$work/$name.time"
  label="ferris-market-gen (Protobuf, 4 topics)"
  [[ "$name" == baseline ]] && label="baseline: Kafka ProducerPerformance"
  awk -v l="$label" -v n="$messages" -v w="$wall" -v u="$user" -v s="$system" -v r="$rss" \
    'BEGIN { printf "%-44s %10d %8.1f %12.0f %14.0f %7.0f MB\n", l, n, w, n / w, n / (u + s), r / 1024 }'
done
echo "($size-byte messages on average; the generator's own line: $line)"
