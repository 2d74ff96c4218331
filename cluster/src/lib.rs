//! FerrisStreams control plane: several `ferris server`s acting as one cluster, coordinated
//! through etcd.
//!
//! Each server is a [`Node`]: it registers under an etcd lease (its heartbeat), keeps every
//! job of the shared catalog declared, runs the jobs assigned to it and reports them. One
//! node, the leader (the holder of a key under its lease), assigns jobs to nodes
//! ([`placement`]). The data plane stays Kafka and the checkpoint store: a job moves by
//! stopping at a checkpoint on one node and starting from it on another.
//!
//! etcd keys, under `/ferris/`:
//! - `nodes/<id>`: each node's [`NodeSummary`](ferris_engine::cluster::NodeSummary), under
//!   its lease;
//! - `jobs/<name>`: the catalog, a [`ClusterJob`](ferris_engine::cluster::ClusterJob) each;
//! - `assignments/<unit>`: the node the leader assigned the job (or, for a job whose
//!   instances run apart, its instance: `<name>#<i>`) to, and its moves;
//! - `running/<unit>`: the node running it, under that node's lease: one copy at most;
//! - `status/<unit>`: what that node reports of it, under its lease;
//! - `leader`: the leader's id, under its lease.

mod agent;
mod catalog;
mod config;
mod error;
mod etcd;
mod node;
mod placement;
pub mod resources;
mod unit;

pub use catalog::EtcdCatalog;
pub use config::{ClusterConfig, parse_cluster_url};
pub use error::ClusterError;
pub use node::Node;
