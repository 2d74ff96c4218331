//! Kafka topics as sources and sinks, over librdkafka (the `rdkafka` crate).
//!
//! A [`KafkaSource`] reads a topic as micro-batches: messages are gathered until the batch is
//! full or its linger time is up, their values decoded by a [`MessageFormat`] in one go, and
//! the message metadata added as columns (`_key`, `_timestamp`, `_partition`, `_offset`,
//! `_topic`, `_headers`). A [`KafkaSink`] writes one message per result row, with a key, a
//! timestamp and headers, and a tombstone for a retraction.
//!
//! Delivery is at least once: a source's offsets are committed to its consumer group only
//! when the job says that everything they produced has reached the sink
//! ([`KafkaSource::commit`]).
//!
//! [`MessageFormat`]: crate::MessageFormat

mod admin;
mod connection;
mod dead_letter;
mod exchange;
mod metadata;
pub(crate) mod options;
mod producer;
mod sink;
mod source;

pub use admin::{PartitionDetail, TopicSummary};
pub use connection::{GroupOffsets, KafkaConnection};
pub(crate) use dead_letter::DeadLetter;
pub use dead_letter::DeadLetterTopic;
pub use exchange::KafkaExchange;
pub use metadata::{OFFSET_COLUMN, PARTITION_COLUMN, TIMESTAMP_COLUMN, metadata_fields};
pub use options::DEFAULT_BOOTSTRAP_SERVERS;
pub use sink::{KafkaSink, KafkaSinkConfig};
pub use source::{KafkaSource, KafkaSourceConfig, KafkaSourceReader, OffsetReset};
