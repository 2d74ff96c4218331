//! What the engine asks of a sink, whatever its connector: a [`SinkConfig`] describes the
//! output and settles what a job leaves to it; the [`Sink`] it opens writes a job's batches
//! and takes part in its checkpoints.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::exchange_transport::ExchangeTransport;
use crate::position::SourcePosition;
use crate::prepared_output::PreparedOutput;
use crate::source::SourceConnector;

/// A sink's settings, from its options: what a job opens to write.
pub trait SinkConfig: fmt::Debug + Send + Sync {
    /// The connector type's name (`'<name>.type'`).
    fn connector(&self) -> &'static str;

    /// Where it writes: a path, or `kafka://servers/topic`.
    fn location(&self) -> String;

    /// The name of its record format.
    fn format(&self) -> String;

    /// A copy of the settings.
    fn clone_box(&self) -> Box<dyn SinkConfig>;

    /// The same output, written by one more job: `INSERT INTO target`, the job `job`. An
    /// error says why the output takes no other writer.
    fn for_insert(&self, target: &str, job: &str) -> Result<Box<dyn SinkConfig>>;

    /// Takes what its options left to the job: the result's `key` columns, and the columns
    /// that may time each record (`times`, best first: the window end, the sources' event
    /// times). A Kafka sink's messages are keyed and timed by them.
    fn settle(&mut self, _schema: &SchemaRef, _key: &[String], _times: &[String]) {}

    /// For a job `job` that checkpoints: writes in transactions that commit the sources'
    /// positions with the output (exactly once) where the sink can and the job's
    /// `'processing.guarantee'` (`exactly_once`; `None`: the best the sink allows) wants
    /// it. Returns whether it does; an error says why exactly once cannot be had.
    fn use_transactions(
        &mut self,
        _job: &str,
        _sources: &[&dyn SourceConnector],
        _exactly_once: Option<bool>,
    ) -> Result<bool> {
        Ok(false)
    }

    /// Whether the sinks it opens carry a job's exchanges between processes
    /// ([`Sink::exchange_transport`]), so that the job's instances can run apart.
    fn carries_exchanges(&self) -> bool {
        false
    }

    /// Deletes what carried job `job`'s exchanges between processes (its repartition
    /// topics, of every era), with the rest of its state when it is dropped, or once its
    /// instances drained before a change of parallelism; returns what it deleted.
    fn delete_exchanges(&self, _job: &str) -> Result<Vec<String>> {
        Ok(vec![])
    }

    /// Opens the sink for rows of `schema`.
    fn open(&self, schema: SchemaRef) -> Result<Box<dyn Sink>>;

    /// Opens the sink of a job that checkpoints, continuing from its part of the checkpoint
    /// restored (`None` on a first start).
    fn recover(
        &self,
        schema: SchemaRef,
        _checkpoint: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Sink>> {
        self.open(schema)
    }

    /// Finishes the commit of a job's last checkpoint, taken as it ended (a crash may have
    /// come between the checkpoint and its commit).
    fn complete(&self, _checkpoint: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

impl Clone for Box<dyn SinkConfig> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// An open sink.
pub trait Sink: Send {
    /// Writes a batch.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Makes what was written durable, if the sink can now; true when everything written so
    /// far is.
    fn flush(&mut self) -> Result<bool>;

    /// How often [`Sink::roll_if_due`] must be called, if it must.
    fn rollover(&self) -> Option<Duration> {
        None
    }

    /// Commits what is due on a timer (a folder sink's part file); true when everything
    /// written so far became durable.
    fn roll_if_due(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// Phase one of a checkpoint: everything written so far is finished, not yet visible
    /// where the sink can hold it back, and durable once [`PreparedOutput::make_durable`]
    /// has run.
    fn prepare_checkpoint(&mut self) -> Result<PreparedOutput>;

    /// Phase two, once the checkpoint is written: what phase one held back becomes visible.
    /// A sink that commits the sources' positions ([`Sink::commits_positions`]) commits
    /// `positions`, the sources' at the cut, each with `metadata` naming the checkpoint.
    fn commit_checkpoint(
        &mut self,
        positions: &[(&dyn SourceConnector, SourcePosition)],
        metadata: &str,
    ) -> Result<()>;

    /// Whether its checkpoints commit the sources' positions themselves (in a transaction).
    fn commits_positions(&self) -> bool {
        false
    }

    /// The transport for the exchanges of job `job` when its instances run in several
    /// processes, writing through this sink (in its transactions), if it can carry them: a
    /// Kafka sink's producer can. The instances of each `era` (each parallelism the job
    /// was changed to) meet in exchanges of their own.
    fn exchange_transport(&self, _job: &str, _era: u64) -> Option<Arc<dyn ExchangeTransport>> {
        None
    }

    /// Makes everything durable and ends the sink; returns the rows written.
    fn close(self: Box<Self>) -> Result<u64>;
}
