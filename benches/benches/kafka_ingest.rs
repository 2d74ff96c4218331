//! Kafka ingest: a topic read into Arrow batches by `KafkaSource` (JSON decoded into columns,
//! plus the metadata columns; and the raw format, bytes only) against a bare rdkafka consumer
//! that only touches each message. All on one core of this process; the broker (Apache Kafka, from
//! `bash scripts/kafka.sh start`, at `FERRIS_KAFKA_BOOTSTRAP`) runs in its own.

use std::sync::Arc;
use std::time::Duration;

use ferris_benches::{kafka_topic, measure, produce_trades, rows, runtime};
use ferris_connectors::kafka::{KafkaConnection, KafkaSource, KafkaSourceConfig, OffsetReset};
use ferris_connectors::{MessageFormat, OnError, SourceMetrics, StopSignal};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

const PARTITIONS: i32 = 4;

fn main() {
    let rows = rows(1_000_000);
    let bootstrap =
        std::env::var("FERRIS_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = format!("bench_ingest_{}", std::process::id());
    kafka_topic(&topic, &bootstrap, PARTITIONS);
    produce_trades(&topic, &bootstrap, rows);
    let connection = KafkaConnection {
        bootstrap_servers: bootstrap.clone(),
        properties: vec![],
    };
    let runtime = runtime();

    let bare = measure(|| bare_consumer(&topic, &bootstrap));
    assert_eq!(bare.rows as usize, rows);
    bare.print("bare rdkafka consumer (count + touch)    ");

    for (name, format, schema) in [
        (
            "ferris kafka_source raw  -> Arrow batches",
            MessageFormat::Raw,
            None,
        ),
        (
            "ferris kafka_source json -> Arrow batches",
            MessageFormat::Json,
            Some(trades_schema()),
        ),
    ] {
        let source = runtime
            .block_on(KafkaSource::try_new(KafkaSourceConfig {
                name: "trades".into(),
                connection: connection.clone(),
                topic: topic.clone(),
                group_id: format!("{topic}-{}", format.name()),
                offset_reset: OffsetReset::Earliest,
                bounded: true,
                format,
                schema,
                batch_size: 8192,
                linger: Duration::from_millis(100),
                on_error: OnError::Fail,
            }))
            .unwrap();
        let ferris = measure(|| {
            runtime.block_on(async {
                let metrics = Arc::new(SourceMetrics::default());
                let mut reader = source.reader(StopSignal::new(), metrics).unwrap();
                let mut read = 0;
                while let Some(batch) = reader.next_batch().await.unwrap() {
                    read += batch.num_rows() as u64;
                }
                read
            })
        });
        assert_eq!(ferris.rows as usize, rows);
        ferris.print(name);
        println!(
            "ratio: {:.2}x the bare consumer's records/s per core (goal: 0.80 or better)",
            ferris.rows_per_core_second() / bare.rows_per_core_second()
        );
    }
}

/// `ts BIGINT, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT`.
fn trades_schema() -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, true),
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Decimal128(18, 4), true),
        Field::new("qty", DataType::Int64, true),
    ]))
}

/// Reads every message once with a plain consumer, summing payload sizes.
fn bare_consumer(topic: &str, bootstrap: &str) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let (mut count, mut bytes, mut at_end) = (0u64, 0usize, 0);
    while at_end < PARTITIONS {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                count += 1;
                bytes += message.payload_len();
            }
            Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    assert!(bytes > 0);
    count
}
