//! The error type of every connector.

use std::fmt;

use crate::sql_position::Position;

/// Result of a connector operation.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// What can go wrong reading or writing external data.
#[derive(Debug)]
pub enum ConnectorError {
    /// A record could not be decoded and the source's policy is `fail`.
    MalformedRecord {
        /// The file (URL) the record came from.
        file: String,
        /// The 1-based line the record starts on.
        line: u64,
        /// Why it could not be decoded.
        reason: String,
    },
    /// A Kafka message could not be decoded and the source's policy is `fail`.
    MalformedMessage {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The message's offset.
        offset: i64,
        /// Why it could not be decoded.
        reason: String,
    },
    /// A `WITH` option is missing, unknown, or has a value we cannot use.
    Option {
        /// What is wrong, naming the option.
        message: String,
        /// Where the option is, when it was written at all.
        position: Option<Position>,
    },
    /// A connector's settings do not work together, or do not fit what it finds.
    Config(String),
    /// The storage layer (local disk, object store) failed.
    Storage {
        /// What we were doing, including the path.
        context: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An external system (a Kafka broker) is out of reach for now: trying again later may
    /// succeed.
    Unavailable {
        /// What we were doing, including where.
        context: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Arrow failed outside of decoding a single record (schema inference, writing).
    Arrow {
        /// What we were doing, including the path.
        context: String,
        /// The underlying error.
        source: arrow::error::ArrowError,
    },
}

impl ConnectorError {
    /// A storage error with the given context.
    pub fn storage(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Storage {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// An option error at the option's position (if written).
    pub fn option(message: impl Into<String>, position: Option<Position>) -> Self {
        Self::Option {
            message: message.into(),
            position,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// An arrow error with the given context.
    pub fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Self::Arrow {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedRecord { file, line, reason } => {
                write!(f, "malformed record at {file}:{line}: {reason}")
            }
            Self::MalformedMessage {
                topic,
                partition,
                offset,
                reason,
            } => write!(
                f,
                "malformed message in topic '{topic}' partition {partition} at offset {offset}: {reason}"
            ),
            Self::Option {
                message,
                position: Some(position),
            } => write!(f, "option error at {position}: {message}"),
            Self::Option {
                message,
                position: None,
            } => write!(f, "option error: {message}"),
            Self::Config(msg) => write!(f, "{msg}"),
            Self::Storage { context, source } => write!(f, "{context}: {source}"),
            Self::Unavailable { context, source } => {
                write!(
                    f,
                    "{context}: {source} (unavailable; trying again may succeed)"
                )
            }
            Self::Arrow { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for ConnectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Storage { source, .. } | Self::Unavailable { source, .. } => {
                Some(source.as_ref())
            }
            Self::Arrow { source, .. } => Some(source),
            _ => None,
        }
    }
}
