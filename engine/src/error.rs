//! The error type of the engine.

use std::fmt;

use datafusion::error::DataFusionError;
use ferris_connectors::ConnectorError;

use crate::position::Position;

/// Result of an engine operation.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What can go wrong between a statement's text and its last result row.
#[derive(Debug)]
pub enum EngineError {
    /// The SQL is malformed or names something that does not exist, at a known position.
    Sql {
        /// What is wrong.
        message: String,
        /// Where.
        position: Position,
    },
    /// A `WITH` option is missing, unknown, or has a value we cannot use.
    Option {
        /// What is wrong, naming the option.
        message: String,
        /// Where the option is, when it was written at all.
        position: Option<Position>,
    },
    /// A stream, table or source name is unknown, or already taken.
    Catalog(String),
    /// DataFusion failed to plan or run a query.
    DataFusion(DataFusionError),
    /// A source or sink failed.
    Connector(ConnectorError),
    /// A checkpoint cannot be written, read, or restored into this job.
    Checkpoint(String),
    /// The cluster's shared catalog (etcd) cannot be reached, or refused a change.
    Cluster(String),
    /// Something that should not happen did (a panicked task): a bug to report.
    Internal(String),
}

impl EngineError {
    /// Whether trying again later may succeed: an external system (a Kafka broker) was
    /// out of reach.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connector(e) => e.is_transient(),
            Self::DataFusion(e) => match e.find_root() {
                DataFusionError::External(e) => e
                    .downcast_ref::<ConnectorError>()
                    .is_some_and(ConnectorError::is_transient),
                _ => false,
            },
            _ => false,
        }
    }

    /// An option error at the option's position (if written).
    pub fn option(message: impl Into<String>, position: Option<Position>) -> Self {
        Self::Option {
            message: message.into(),
            position,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sql { message, position } => write!(f, "SQL error at {position}: {message}"),
            // Worded as the connectors word their own.
            Self::Option { message, position } => fmt::Display::fmt(
                &ConnectorError::Option {
                    message: message.clone(),
                    position: *position,
                },
                f,
            ),
            Self::Catalog(message) => write!(f, "{message}"),
            Self::DataFusion(e) => write!(f, "{}", describe_datafusion(e)),
            Self::Connector(e) => write!(f, "{e}"),
            Self::Checkpoint(message) => write!(f, "checkpoint: {message}"),
            Self::Cluster(message) => write!(f, "cluster: {message}"),
            Self::Internal(message) => write!(f, "internal error (please report): {message}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<ConnectorError> for EngineError {
    /// A connector's option error is the statement's, like the engine's own.
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::Option { message, position } => Self::Option { message, position },
            other => Self::Connector(other),
        }
    }
}

impl From<arrow::error::ArrowError> for EngineError {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::DataFusion(e.into())
    }
}

impl From<DataFusionError> for EngineError {
    /// Unwraps what DataFusion wraps: a connector error raised inside a plan comes back as
    /// itself, and an error with a position in the SQL becomes [`EngineError::Sql`].
    fn from(e: DataFusionError) -> Self {
        if let Some(diagnostic) = e.diagnostic()
            && let Some(span) = diagnostic.span
        {
            return Self::Sql {
                message: diagnostic.message.clone(),
                position: Position {
                    line: span.start.line,
                    column: span.start.column,
                },
            };
        }
        match e {
            DataFusionError::External(inner) => match inner.downcast::<ConnectorError>() {
                Ok(connector) => Self::from(*connector),
                Err(other) => Self::DataFusion(DataFusionError::External(other)),
            },
            DataFusionError::Context(context, inner) => match Self::from(*inner) {
                Self::DataFusion(inner) => {
                    Self::DataFusion(DataFusionError::Context(context, Box::new(inner)))
                }
                unwrapped => unwrapped,
            },
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Self::from(inner),
                Err(shared) => Self::DataFusion(DataFusionError::Shared(shared)),
            },
            other => Self::DataFusion(other),
        }
    }
}

/// DataFusion's message without its internal "Error during planning:" style prefixes where
/// the root cause says it better.
fn describe_datafusion(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::External(inner) => inner.to_string(),
        DataFusionError::SQL(parser, _) => format!("SQL error: {parser}"),
        root => root.to_string(),
    }
}
