//! The output of a job that `ferris server` keeps itself, declared without a sink
//! ([`KeptOutput`]): a table's rows held by key and answered by pull queries, a stream's rows
//! handed to the push queries following it (`materialized.rs` does both, for every job). No
//! file or topic is written; a table's rows go into the job's checkpoints instead, so that
//! they come back with the job.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use ferris_connectors::{
    ConnectorError, PreparedOutput, Result, Sink, SinkConfig, SourceConnector, SourcePosition,
};

/// The connector name `SHOW TABLES` gives a job's output kept by the server.
pub(crate) const KEPT: &str = "kept";

/// A job's output with no sink: the server keeps it.
#[derive(Debug, Clone)]
pub(crate) struct KeptOutput;

impl SinkConfig for KeptOutput {
    fn connector(&self) -> &'static str {
        KEPT
    }

    fn location(&self) -> String {
        "server memory".into()
    }

    fn format(&self) -> String {
        "arrow".into()
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    fn for_insert(&self, target: &str, _job: &str) -> Result<Box<dyn SinkConfig>> {
        Err(ConnectorError::Config(format!(
            "'{target}' is kept by the server and has no sink for INSERT INTO to write to: give it a sink ('{target}.type' = 'file_sink' or 'kafka_sink') when you create it"
        )))
    }

    fn open(&self, _schema: SchemaRef) -> Result<Box<dyn Sink>> {
        Ok(Box::new(KeptSink { rows: 0 }))
    }
}

/// Counts the rows; the job's outputs (`JobOutputs`) keep them.
struct KeptSink {
    rows: u64,
}

impl Sink for KeptSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<bool> {
        Ok(true)
    }

    fn prepare_checkpoint(&mut self) -> Result<PreparedOutput> {
        Ok(PreparedOutput::durable(serde_json::Value::Null))
    }

    fn commit_checkpoint(
        &mut self,
        _positions: &[(&dyn SourceConnector, SourcePosition)],
        _metadata: &str,
    ) -> Result<()> {
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<u64> {
        Ok(self.rows)
    }
}
