//! What happens to records that arrive after their windows closed.

use std::fmt;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::error::Result;

/// Receives late records (the window operator's input columns) for a dead-letter destination.
pub trait LateRecordSink: fmt::Debug + Send + Sync {
    /// Writes the late rows of one micro-batch.
    fn write(&self, late: &RecordBatch) -> Result<()>;
}

/// The job's `'late.data.strategy'`.
#[derive(Debug, Clone, Default)]
pub enum LateDataPolicy {
    /// Count and drop them (the default).
    #[default]
    Drop,
    /// Count them and hand them to a sink.
    DeadLetter(Arc<dyn LateRecordSink>),
    /// Keep windows open this long (ms) past their end: a record arriving meanwhile updates
    /// its window and a corrected row is emitted. Later records are dropped.
    AllowedLateness(i64),
}

impl LateDataPolicy {
    /// How long (ms) windows stay open past their end.
    pub fn allowed_lateness(&self) -> i64 {
        match self {
            Self::AllowedLateness(ms) => *ms,
            _ => 0,
        }
    }
}

impl fmt::Display for LateDataPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Drop => f.write_str("drop"),
            Self::DeadLetter(_) => f.write_str("dead_letter"),
            Self::AllowedLateness(ms) => write!(f, "allowed_lateness({ms}ms)"),
        }
    }
}
