//! A producer that reports what the broker refused: librdkafka tells delivery failures only
//! to a callback, so they are kept there until the next flush returns them.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::connection::{KafkaConnection, drop_aside};
use crate::error::{ConnectorError, Result};

/// How long a flush may wait for the broker before the write counts as failed.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Keeps the first delivery failure since the last flush.
#[derive(Default)]
pub(crate) struct DeliveryReport {
    failure: Mutex<Option<KafkaError>>,
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| error.clone());
        }
    }
}

/// A producer for one connection whose flush fails when any message since the last one
/// failed.
pub(crate) struct CheckedProducer {
    /// Taken only when dropped.
    client: Option<ThreadedProducer<DeliveryReport>>,
    /// It has a `transactional.id`.
    transactional: bool,
    connection: KafkaConnection,
}

impl CheckedProducer {
    pub(crate) fn new(connection: &KafkaConnection, defaults: &[(&str, &str)]) -> Result<Self> {
        let config = connection.client_config(defaults);
        let producer = config
            .create_with_context(DeliveryReport::default())
            .map_err(|e| connection.error("connecting to", e))?;
        Ok(Self {
            client: Some(producer),
            transactional: config.get("transactional.id").is_some(),
            connection: connection.clone(),
        })
    }

    fn producer(&self) -> &ThreadedProducer<DeliveryReport> {
        self.client.as_ref().expect("taken only when dropped")
    }

    /// Queues a message, waiting while librdkafka's queue is full.
    pub(crate) fn send(&self, topic: &str, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
        loop {
            match self.producer().send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer().poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(self.failed(topic, e)),
            }
        }
    }

    /// Waits until the broker has every queued message.
    pub(crate) fn flush(&self, topic: &str) -> Result<()> {
        self.producer()
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| self.failed(topic, e))?;
        let failure = self
            .producer()
            .context()
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match failure {
            Some(e) => Err(self.failed(topic, e)),
            None => Ok(()),
        }
    }

    /// Initialises a transactional producer (aborting what an earlier one with its id left
    /// open) and opens its first transaction.
    pub(crate) fn begin(&self, topic: &str) -> Result<()> {
        self.producer()
            .init_transactions(FLUSH_TIMEOUT)
            .map_err(|e| self.failed(topic, e))?;
        self.producer()
            .begin_transaction()
            .map_err(|e| self.failed(topic, e))
    }

    /// Commits the open transaction, with consumer offsets in it, and opens the next.
    pub(crate) fn commit(&self, topic: &str, offsets: &[crate::kafka::GroupOffsets]) -> Result<()> {
        self.flush(topic)?;
        for group in offsets {
            self.producer()
                .send_offsets_to_transaction(&group.offsets, &group.group, FLUSH_TIMEOUT)
                .map_err(|e| self.failed(topic, e))?;
        }
        self.producer()
            .commit_transaction(FLUSH_TIMEOUT)
            .map_err(|e| self.failed(topic, e))?;
        self.producer()
            .begin_transaction()
            .map_err(|e| self.failed(topic, e))
    }

    fn failed(&self, topic: &str, e: KafkaError) -> ConnectorError {
        self.connection
            .error(&format!("writing to topic '{topic}' on"), e)
    }
}

impl Drop for CheckedProducer {
    /// Everything was flushed or given up on before: nothing waits in its queue that a
    /// later drop would deliver. A transactional one is dropped in place: a commit that
    /// timed out may still be on its way, and must land or be gone before the job's next
    /// attempt reads which checkpoint was committed.
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !self.transactional
        {
            drop_aside(client);
        }
    }
}
