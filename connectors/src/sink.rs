//! Any sink: one type for a job to write to, whatever the connector.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::file_sink::{FileSink, FileSinkConfig};
use crate::kafka::{KafkaSink, KafkaSinkConfig};
use crate::prepared_output::PreparedOutput;

/// A sink's settings. (One lives per job: boxing the larger one would buy nothing.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum SinkConfig {
    /// A file or a folder of part files.
    File(FileSinkConfig),
    /// A Kafka topic.
    Kafka(KafkaSinkConfig),
}

impl SinkConfig {
    /// The connector's name in SQL (`'<name>.type'`).
    pub fn connector(&self) -> &'static str {
        match self {
            Self::File(_) => "file_sink",
            Self::Kafka(_) => "kafka_sink",
        }
    }

    /// Where it writes: a path, or `kafka://servers/topic`.
    pub fn location(&self) -> String {
        match self {
            Self::File(file) => file.path.display().to_string(),
            Self::Kafka(kafka) => format!(
                "kafka://{}/{}",
                kafka.connection.bootstrap_servers, kafka.topic
            ),
        }
    }

    /// The name of its record format.
    pub fn format(&self) -> String {
        match self {
            Self::File(file) => file.format.to_string(),
            Self::Kafka(kafka) => kafka.format.name().to_string(),
        }
    }
}

/// An open sink.
pub enum Sink {
    /// Files.
    File(FileSink),
    /// A Kafka topic.
    Kafka(KafkaSink),
}

impl Sink {
    /// Opens the sink for rows of `schema`.
    pub fn try_new(config: SinkConfig, schema: SchemaRef) -> Result<Self> {
        Ok(match config {
            SinkConfig::File(file) => Self::File(FileSink::try_new(file, schema)?),
            SinkConfig::Kafka(kafka) => Self::Kafka(KafkaSink::try_new(kafka, schema)?),
        })
    }

    /// Writes a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Self::File(file) => file.write(batch),
            Self::Kafka(kafka) => kafka.write(batch),
        }
    }

    /// Makes what was written durable, if the sink can now; true when everything written so
    /// far is (a file sink's rows are durable only when their file is committed).
    pub fn flush(&mut self) -> Result<bool> {
        match self {
            Self::File(_) => Ok(false),
            Self::Kafka(kafka) => kafka.flush().map(|()| true),
        }
    }

    /// How often [`Sink::roll_if_due`] must be called, if it must.
    pub fn rollover(&self) -> Option<Duration> {
        match self {
            Self::File(file) => file.rollover(),
            Self::Kafka(_) => None,
        }
    }

    /// Commits a folder sink's part file when it is due; true when everything written so
    /// far became durable.
    pub fn roll_if_due(&mut self) -> Result<bool> {
        match self {
            Self::File(file) => file.roll_if_due(),
            Self::Kafka(_) => Ok(false),
        }
    }

    /// Opens the sink of a job that checkpoints, continuing from its part of the checkpoint
    /// restored (`None` on a first start).
    pub fn recover(
        config: SinkConfig,
        schema: SchemaRef,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<Self> {
        Ok(match config {
            SinkConfig::File(file) => Self::File(FileSink::recover(file, schema, checkpoint)?),
            // A transactional producer aborts what its predecessor left open as it starts.
            SinkConfig::Kafka(kafka) => Self::Kafka(KafkaSink::try_new(kafka, schema)?),
        })
    }

    /// Finishes the commit of a job's last checkpoint, taken as it ended (a crash may have
    /// come between the checkpoint and its commit).
    pub fn complete(config: SinkConfig, checkpoint: &serde_json::Value) -> Result<()> {
        match config {
            SinkConfig::File(file) => FileSink::complete(&file, checkpoint),
            // Its transaction committed: the checkpoint was chosen by its offsets.
            SinkConfig::Kafka(_) => Ok(()),
        }
    }

    /// Phase one of a checkpoint: everything written so far is finished, not yet visible
    /// where the sink can hold it back, and durable once [`PreparedOutput::make_durable`]
    /// has run (a Kafka sink's is at once: flushed and acknowledged).
    pub fn prepare_checkpoint(&mut self) -> Result<PreparedOutput> {
        match self {
            Self::File(file) => file.prepare_checkpoint(),
            Self::Kafka(kafka) => kafka.flush().map(|()| PreparedOutput {
                part: serde_json::json!({}),
                unsynced: Vec::new(),
            }),
        }
    }

    /// Phase two, once the checkpoint is written: what phase one held back becomes visible.
    /// A Kafka transaction commits with `offsets`, the Kafka sources' positions at the cut.
    pub fn commit_checkpoint(&mut self, offsets: &[crate::kafka::GroupOffsets]) -> Result<()> {
        match self {
            Self::File(file) => file.commit_checkpoint(),
            Self::Kafka(kafka) if kafka.is_transactional() => kafka.commit_transaction(offsets),
            Self::Kafka(_) => Ok(()),
        }
    }

    /// Whether its checkpoint commits the sources' offsets itself (in a Kafka transaction).
    pub fn commits_offsets(&self) -> bool {
        matches!(self, Self::Kafka(kafka) if kafka.is_transactional())
    }

    /// Makes everything durable and ends the sink; returns the rows written.
    pub fn close(self) -> Result<u64> {
        match self {
            Self::File(file) => file.close(),
            Self::Kafka(mut kafka) => {
                if kafka.is_transactional() {
                    kafka.commit_transaction(&[])?;
                }
                kafka.flush()?;
                Ok(kafka.rows_written())
            }
        }
    }
}
