//! The dead-letter topic: malformed records, kept with the reason they were rejected.

use std::sync::OnceLock;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::connection::KafkaConnection;
use super::producer::CheckedProducer;
use crate::error::Result;

/// A rejected record on its way to the dead-letter topic.
#[derive(Debug)]
pub(crate) struct DeadLetter<'a> {
    /// Where it came from: `topic/partition@offset`, or `file:line`.
    pub origin: String,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub reason: &'a str,
}

/// Writes rejected records to a topic: the original bytes as the value (and key), with the
/// headers `ferris.error` (why), `ferris.source` (the source's name) and `ferris.origin`.
pub struct DeadLetterTopic {
    connection: KafkaConnection,
    topic: String,
    /// Connected at the first rejected record.
    producer: OnceLock<CheckedProducer>,
}

impl std::fmt::Debug for DeadLetterTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterTopic")
            .field("topic", &self.topic)
            .finish()
    }
}

impl DeadLetterTopic {
    /// A writer to `topic`; nothing connects until a record is rejected.
    pub fn new(connection: KafkaConnection, topic: String) -> Self {
        Self {
            connection,
            topic,
            producer: OnceLock::new(),
        }
    }

    /// Writes the records and waits until the broker has them.
    pub(crate) fn write(&self, source: &str, records: &[DeadLetter<'_>]) -> Result<()> {
        let producer = match self.producer.get() {
            Some(producer) => producer,
            None => {
                let producer = CheckedProducer::new(&self.connection, &[])?;
                self.producer.get_or_init(|| producer)
            }
        };
        for record in records {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "ferris.error",
                    value: Some(record.reason),
                })
                .insert(Header {
                    key: "ferris.source",
                    value: Some(source),
                })
                .insert(Header {
                    key: "ferris.origin",
                    value: Some(&record.origin),
                });
            let mut message = BaseRecord::<[u8], [u8]>::to(&self.topic)
                .payload(record.value)
                .headers(headers);
            if let Some(key) = record.key {
                message = message.key(key);
            }
            producer.send(&self.topic, message)?;
        }
        producer.flush(&self.topic)
    }
}
