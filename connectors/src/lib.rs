//! FerrisStreams connectors: where records come from and where results go.
//!
//! A source turns external data into Arrow [`RecordBatch`](arrow::record_batch::RecordBatch)
//! micro-batches; a sink writes batches out. This crate knows nothing of SQL or plans: the
//! engine hands each connector its `WITH (...)` options ([`options`]), and the connector
//! type named by `'<name>.type'` ([`registry`]) reads its own.
//!
//! Every source implements [`SourceConnector`] (and its readers [`SourceReader`]), every sink
//! [`SinkConfig`] (and the writer it opens, [`Sink`]): the engine asks them what they can do
//! (parts with watermarks of their own, transactions, positions kept) and never which
//! connector they are.
//!
//! Kafka topics are read and written through librdkafka ([`kafka`]); message values are
//! decoded and encoded by a [`MessageFormat`] (JSON, CSV, Avro, Protobuf, raw bytes).
//!
//! Files are read through [`object_store`] (local paths, `file://` URLs), split into records,
//! and decoded by arrow's own CSV / JSON decoders a batch at a time. A malformed record is
//! handled by the source's [`OnError`] policy and never takes the valid records around it down.

pub mod changelog;
mod dead_letter;
mod declaration;
mod error;
mod exchange_transport;
pub mod file;
pub mod kafka;
mod message;
mod metrics;
pub mod options;
mod position;
mod prepared_output;
mod records;
pub mod registry;
mod sink;
mod source;
mod sql_position;
mod stop;
mod text_timestamps;

pub use dead_letter::{BadRecord, DeadLetterWriter};
pub use declaration::{ColumnParser, Declaration, DeclaredSource};
pub use error::{ConnectorError, Result};
pub use exchange_transport::{ExchangeMessage, ExchangeTransport, ReceivedMessage};
pub use file::{CsvOptions, FileFormat, FileSink, FileSinkConfig, FileSource, FileSourceConfig};
pub use message::{AvroFormat, MessageFormat, ProtobufFormat, SchemaRegistry};
pub use metrics::SourceMetrics;
pub use position::{CommittedPosition, PartPosition, SourcePosition};
pub use prepared_output::PreparedOutput;
pub use records::OnError;
pub use sink::{Sink, SinkConfig};
pub use source::{DividedShare, Partitions, Share, SourceConnector, SourceReader};
pub use stop::StopSignal;
