//! Kubernetes deployments of FerrisStreams SQL files.
//!
//! The `-- @ferris:` hints before each job's statement say what kind of workload it is
//! (`ferris_engine::statements::Hints`). This crate groups the jobs of some SQL files by
//! workload ([`workloads`]), gives each group its Kubernetes objects ([`manifests`]: the SQL
//! in a ConfigMap, a StatefulSet of cluster nodes, a Service, a PodDisruptionBudget, the job
//! deployed once the nodes are up, or a CronJob for reports) and its autoscaler
//! ([`scaling`]), and writes the Prometheus Adapter rules that give the autoscalers ferris's
//! metrics per pod ([`adapter`]). The objects are Kubernetes' own API types (`k8s-openapi`,
//! Kubernetes 1.33 and later), written as YAML or sent to an API server by server-side apply
//! ([`apply`]); [`monitor`] shows a deployment as it runs.

use std::fmt;

pub mod adapter;
pub mod apply;
pub mod manifests;
pub mod monitor;
pub mod scaling;
pub mod workloads;

/// What goes wrong making a deployment.
#[derive(Debug)]
pub enum K8sError {
    /// A SQL file cannot be read, or a statement or hint in it is not valid (FILE:LINE:COLUMN).
    Sql(String),
    /// Two jobs of one workload ask for different pods (their hints, where).
    Conflict(String),
    /// An object could not be written out.
    Output(String),
    /// The Kubernetes API server could not be reached, or refused an object (its reason).
    Api(String),
}

impl fmt::Display for K8sError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sql(message)
            | Self::Conflict(message)
            | Self::Output(message)
            | Self::Api(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for K8sError {}

/// This crate's results.
pub type Result<T> = std::result::Result<T, K8sError>;
