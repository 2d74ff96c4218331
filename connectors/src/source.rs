//! Any source: one type for the engine to register, whatever the connector.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::file_source::{FileSource, FileSourceReader};
use crate::kafka::{KafkaSource, KafkaSourceReader};
use crate::metrics::SourceMetrics;
use crate::stop::StopSignal;

/// A configured source.
#[derive(Debug, Clone)]
pub enum Source {
    /// Files: CSV, JSON lines, Parquet.
    File(FileSource),
    /// A Kafka topic.
    Kafka(KafkaSource),
}

impl Source {
    /// The columns of its rows.
    pub fn schema(&self) -> SchemaRef {
        match self {
            Self::File(file) => file.schema(),
            Self::Kafka(kafka) => kafka.schema(),
        }
    }

    /// Whether it ends by itself.
    pub fn is_bounded(&self) -> bool {
        match self {
            Self::File(file) => file.is_bounded(),
            Self::Kafka(kafka) => kafka.is_bounded(),
        }
    }

    /// The connector's name in SQL (`'<name>.type'`).
    pub fn connector(&self) -> &'static str {
        match self {
            Self::File(_) => "file_source",
            Self::Kafka(_) => "kafka_source",
        }
    }

    /// Where it reads: a path, or `kafka://servers/topic`.
    pub fn location(&self) -> String {
        match self {
            Self::File(file) => file.config().location.display().to_string(),
            Self::Kafka(kafka) => {
                let config = kafka.config();
                format!(
                    "kafka://{}/{}",
                    config.connection.bootstrap_servers, config.topic
                )
            }
        }
    }

    /// The name of its record format.
    pub fn format(&self) -> String {
        match self {
            Self::File(file) => file.config().format.to_string(),
            Self::Kafka(kafka) => kafka.config().format.name().to_string(),
        }
    }

    /// A reader from its start (files) or its group's committed offsets (Kafka).
    pub fn reader(&self, stop: StopSignal, metrics: Arc<SourceMetrics>) -> Result<SourceReader> {
        Ok(match self {
            Self::File(file) => SourceReader::File(file.reader(stop, metrics)),
            Self::Kafka(kafka) => SourceReader::Kafka(kafka.reader(stop, metrics)?),
        })
    }

    /// Commits what its readers have read, where the source keeps positions (Kafka).
    pub fn commit(&self) -> Result<()> {
        match self {
            Self::File(_) => Ok(()),
            Self::Kafka(kafka) => kafka.commit(),
        }
    }
}

/// Reads a source's micro-batches. (One lives per source and run: boxing the larger one
/// would buy nothing.)
#[allow(clippy::large_enum_variant)]
pub enum SourceReader {
    /// Of a file source.
    File(FileSourceReader),
    /// Of a Kafka source.
    Kafka(KafkaSourceReader),
}

impl SourceReader {
    /// The next micro-batch, `None` at the end.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            Self::File(file) => file.next_batch().await,
            Self::Kafka(kafka) => kafka.next_batch().await,
        }
    }
}
