//! The error type of streaming operators.

use std::fmt;

/// What can go wrong inside a streaming operator.
#[derive(Debug)]
pub enum StreamingError {
    /// A record has no usable event time.
    EventTime(String),
    /// Operator state outgrew the job's `'state.memory.limit'`.
    StateMemoryExceeded {
        /// The operator.
        operator: String,
        /// What it needed, in bytes.
        needed: usize,
        /// DataFusion's description of the limit.
        detail: String,
    },
    /// A snapshot does not fit the operator it is restored into.
    Snapshot(String),
}

impl fmt::Display for StreamingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventTime(message) => write!(f, "{message}"),
            Self::StateMemoryExceeded {
                operator,
                needed,
                detail,
            } => write!(
                f,
                "{operator} needs {needed} bytes of state, over the job's 'state.memory.limit' ({detail})"
            ),
            Self::Snapshot(message) => write!(f, "cannot restore snapshot: {message}"),
        }
    }
}

impl std::error::Error for StreamingError {}

impl From<StreamingError> for datafusion::error::DataFusionError {
    fn from(e: StreamingError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(e))
    }
}
