//! Any source: one type for the engine to register, whatever the connector.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::file_source::{FileSource, FileSourceReader};
use crate::kafka::{GroupOffsets, KafkaSource, KafkaSourceReader};
use crate::metrics::SourceMetrics;
use crate::position::{CommittedPosition, SourcePosition};
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

    /// Where `INSERT INTO` this source writes: a Kafka source's topic, in its format (a file
    /// source is read only).
    pub fn writer(&self) -> Option<crate::kafka::KafkaSinkConfig> {
        match self {
            Self::File(_) => None,
            Self::Kafka(kafka) => {
                let config = kafka.config();
                Some(crate::kafka::KafkaSinkConfig {
                    name: config.name.clone(),
                    connection: config.connection.clone(),
                    topic: config.topic.clone(),
                    format: config.format.clone(),
                    key_fields: Some(vec![]),
                    timestamp_field: None,
                    transactional_id: None,
                })
            }
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

    /// A reader from `position` (a checkpoint's), else from its start (files) or its group's
    /// committed offsets (Kafka).
    pub fn reader(
        &self,
        position: Option<&SourcePosition>,
        stop: StopSignal,
        metrics: Arc<SourceMetrics>,
    ) -> Result<SourceReader> {
        Ok(match self {
            Self::File(file) => SourceReader::File(file.reader_from(
                position.unwrap_or(&SourcePosition::default()),
                stop,
                metrics,
            )),
            Self::Kafka(kafka) => SourceReader::Kafka(kafka.reader_from(position, stop, metrics)?),
        })
    }

    /// A checkpoint's position as offsets of the source's consumer group, each with
    /// `metadata`, to commit inside a transaction (Kafka sources that have joined their group).
    pub fn group_offsets(
        &self,
        position: &SourcePosition,
        metadata: &str,
    ) -> Result<Option<GroupOffsets>> {
        match self {
            Self::File(_) => Ok(None),
            Self::Kafka(kafka) => {
                let offsets = kafka.offsets(position)?;
                for mut partition in offsets.elements() {
                    partition.set_metadata(metadata);
                }
                Ok(kafka
                    .group_metadata()
                    .filter(|_| offsets.count() > 0)
                    .map(|group| GroupOffsets { offsets, group }))
            }
        }
    }

    /// What its consumer group has committed (Kafka), offsets and their metadata; `None`
    /// where the source keeps no positions (files).
    pub async fn committed_position(&self) -> Result<Option<CommittedPosition>> {
        match self {
            Self::File(_) => Ok(None),
            Self::Kafka(kafka) => kafka.committed_position().await.map(Some),
        }
    }

    /// Commits a checkpoint's position where the source keeps positions (Kafka), without
    /// waiting, so that lag shows and a run without the checkpoint starts there.
    pub fn commit_position(&self, position: &SourcePosition) -> Result<()> {
        match self {
            Self::File(_) => Ok(()),
            Self::Kafka(kafka) => kafka.commit_position(position),
        }
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
    /// Where the reader stands, after the last batch it returned.
    pub fn position(&self) -> SourcePosition {
        match self {
            Self::File(file) => file.position(),
            Self::Kafka(kafka) => kafka.position(),
        }
    }

    /// Updates the lag in the reader's metrics (a Kafka reader's, per partition) without
    /// reading: a paused job's lag grows while it waits.
    pub fn report_lag(&self) {
        if let Self::Kafka(kafka) = self {
            kafka.report_lag();
        }
    }

    /// The next micro-batch, `None` at the end; an empty one when nothing came for a while.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self {
            Self::File(file) => file.next_batch().await,
            Self::Kafka(kafka) => kafka.next_batch().await,
        }
    }
}
