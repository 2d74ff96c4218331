#!/usr/bin/env python3
"""Prints the messages of a Kafka topic as Kafka holds them: tombstones and headers included.

    python demos/kafka-e2e/consume.py TOPIC [--bootstrap 127.0.0.1:9092]

One line per message, partition by partition, from the oldest message to the current end:

    PARTITION@OFFSET TIMESTAMP key=KEY value=VALUE [headers={...}]

KEY and VALUE are printed as text (bytes that are not UTF-8 as hex); a message without a
value, a tombstone, shows `value=(tombstone)`, and one without a key `key=(none)`. TIMESTAMP
is the message timestamp in UTC. Reads without a consumer group: it commits nothing and
changes nothing. Needs kafka-python (demos/kafka-e2e/requirements.txt; run.sh installs it).
"""

import argparse
import datetime
import sys

from kafka import KafkaConsumer, TopicPartition


def text(data):
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topic")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()

    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False)
    partitions = consumer.partitions_for_topic(args.topic)
    if not partitions:
        sys.exit(f"consume.py: no topic '{args.topic}' on {args.bootstrap}")
    for partition in sorted(partitions):
        tp = TopicPartition(args.topic, partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        while consumer.position(tp) < end:
            messages = consumer.poll(timeout_ms=500).get(tp, [])
            for m in messages:
                when = datetime.datetime.fromtimestamp(m.timestamp / 1000, datetime.timezone.utc)
                value = text(m.value)
                line = (
                    f"{m.partition}@{m.offset} {when.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}"
                    f" key={'(none)' if m.key is None else text(m.key)} value={'(tombstone)' if value is None else value}"
                )
                if m.headers:
                    line += " headers={" + ", ".join(f"{k}: {text(v)}" for k, v in m.headers) + "}"
                print(line)
    consumer.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # e.g. piped into head
        sys.exit(0)
