//! The connection every Kafka client starts from: the brokers and librdkafka properties, how
//! Kafka errors are told apart (passing or not), and the consumer group offsets a
//! transaction commits.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::error::{ConnectorError, Result};

/// How long a metadata request may take before the broker counts as unreachable.
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a blocking librdkafka call (metadata, offsets) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| ConnectorError::storage("a Kafka metadata call", e))?
}

/// Drops a client that joins its polling thread when dropped (rust-rdkafka's admin client
/// and threaded producer) on a thread of its own: that thread wakes every 100 ms to look
/// whether it should stop, which would hold a job's start or end that long for each.
pub(crate) fn drop_aside<T: Send + 'static>(client: T) {
    // Should no thread be had, the closure, and the client with it, is dropped here.
    let _ = std::thread::Builder::new()
        .name("kafka client drop".into())
        .spawn(move || drop(client));
}

/// Where the brokers are, and librdkafka properties given as `'<name>.kafka.<property>'`.
#[derive(Debug, Clone, Default)]
pub struct KafkaConnection {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties; they override ours.
    pub properties: Vec<(String, String)>,
}

impl KafkaConnection {
    /// A client config with our `defaults`, then the user's properties over them.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The partitions of `topic`; an error names the topic and brokers when it does not
    /// exist or cannot be reached.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        let consumer: BaseConsumer = self
            .client_config(&[])
            .create()
            .map_err(|e| self.error("connecting to", e))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| self.error(&format!("reading topic '{topic}' from"), e))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(self.missing(topic));
        };
        if found.error().is_some() || found.partitions().is_empty() {
            return Err(self.missing(topic));
        }
        let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Assigns `partitions` of `topic` to `consumer`, asking for the topic's metadata first:
    /// a consumer that does not know a partition's leader yet starts fetching only on
    /// librdkafka's next metadata scan, a second later (measured: 1 005 ms to the first
    /// message, against 5 ms).
    pub(crate) fn assign<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        topic: &str,
        partitions: &TopicPartitionList,
    ) -> Result<()> {
        consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| self.error(&format!("reading topic '{topic}' from"), e))?;
        consumer
            .assign(partitions)
            .map_err(|e| self.error(&format!("assigning partitions of '{topic}' on"), e))
    }

    pub(crate) fn missing(&self, topic: &str) -> ConnectorError {
        ConnectorError::Config(format!(
            "topic '{topic}' does not exist on {} (create it first)",
            self.bootstrap_servers
        ))
    }

    pub(crate) fn error(&self, doing: &str, e: rdkafka::error::KafkaError) -> ConnectorError {
        let context = format!("{doing} Kafka at {}", self.bootstrap_servers);
        if is_transient(&e) {
            return ConnectorError::Unavailable {
                context,
                source: Box::new(e),
            };
        }
        ConnectorError::storage(context, e)
    }
}

/// Whether a Kafka error passes: the brokers out of reach, a leader or coordinator moving, a
/// request timing out, a transaction that may be retried.
fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    if let rdkafka::error::KafkaError::Transaction(e) = e {
        return e.is_retriable() || !e.is_fatal();
    }
    e.rdkafka_error_code().is_some_and(|code| {
        matches!(
            code,
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::NetworkException
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::MessageTimedOut
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
                | Code::CoordinatorNotAvailable
                | Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::WaitingForCoordinator
                | Code::RebalanceInProgress
                | Code::Resolve
                | Code::NotEnoughReplicas
                | Code::NotEnoughReplicasAfterAppend
        )
    })
}

/// A consumer group's offsets, to commit inside a sink's Kafka transaction.
pub struct GroupOffsets {
    pub(crate) offsets: rdkafka::TopicPartitionList,
    pub(crate) group: rdkafka::consumer::ConsumerGroupMetadata,
}
