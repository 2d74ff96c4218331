//! The error type of the control plane.

use std::fmt;

/// What can go wrong between a node and etcd.
#[derive(Debug)]
pub enum ClusterError {
    /// `--cluster` is not `etcd://HOST:PORT[,HOST:PORT...][/NAME]`, or another setting is wrong.
    Config(String),
    /// No etcd endpoint answered.
    Unreachable {
        /// The endpoints tried.
        endpoints: Vec<String>,
        /// What the last try said.
        message: String,
    },
    /// A live node of the cluster has this id.
    Taken(String),
    /// etcd refused or failed a request.
    Etcd(String),
    /// A key holds what no node writes (another program's data under our prefix).
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(message) => write!(f, "{message}"),
            Self::Unreachable { endpoints, message } => {
                write!(f, "cannot reach etcd at {}: {message}", endpoints.join(","))
            }
            Self::Taken(id) => write!(
                f,
                "a node '{id}' is in the cluster already: give this one another --node-id"
            ),
            Self::Etcd(message) => write!(f, "etcd: {message}"),
            Self::Corrupt { key, message } => write!(f, "etcd key {key}: {message}"),
        }
    }
}

impl std::error::Error for ClusterError {}

impl From<etcd_client::Error> for ClusterError {
    fn from(e: etcd_client::Error) -> Self {
        Self::Etcd(e.to_string())
    }
}

impl From<ClusterError> for ferris_engine::EngineError {
    fn from(e: ClusterError) -> Self {
        Self::Cluster(e.to_string())
    }
}
