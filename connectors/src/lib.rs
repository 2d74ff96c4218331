//! FerrisStreams connectors: where records come from and where results go.
//!
//! A source turns external data into Arrow [`RecordBatch`](arrow::record_batch::RecordBatch)
//! micro-batches; a sink writes batches out. This crate knows nothing of SQL or plans: the
//! engine resolves `WITH (...)` options into the configs defined here.
//!
//! Kafka topics are read and written through librdkafka ([`kafka`]); message values are
//! decoded and encoded by a [`MessageFormat`] (JSON, CSV, Avro, Protobuf, raw bytes).
//!
//! Files are read through [`object_store`] (local paths, `file://` URLs), split into records,
//! and decoded by arrow's own CSV / JSON decoders a batch at a time. A malformed record is
//! handled by the source's [`OnError`] policy and never takes the valid records around it down.

pub mod changelog;
mod dead_letter;
mod error;
mod file_sink;
mod file_source;
mod format;
pub mod kafka;
mod location;
mod message;
mod metrics;
mod parquet_reader;
mod position;
mod prepared_output;
mod records;
mod sink;
mod source;
mod stop;

pub use dead_letter::{BadRecord, DeadLetterWriter};
pub use error::{ConnectorError, Result};
pub use file_sink::{FileSink, FileSinkConfig};
pub use file_source::{FileSource, FileSourceConfig, FileSourceReader};
pub use format::{CsvOptions, FileFormat};
pub use location::Location;
pub use message::{AvroFormat, MessageFormat, ProtobufFormat, SchemaRegistry};
pub use metrics::SourceMetrics;
pub use position::{CommittedPosition, PartPosition, SourcePosition};
pub use prepared_output::PreparedOutput;
pub use records::OnError;
pub use sink::{Sink, SinkConfig};
pub use source::{Source, SourceReader};
pub use stop::StopSignal;
