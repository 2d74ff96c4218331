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
//! - `assignments/<name>`: the node the leader assigned the job to, and its moves;
//! - `running/<name>`: the node running the job, under that node's lease: one copy at most;
//! - `status/<name>`: what that node reports of the job, under its lease;
//! - `leader`: the leader's id, under its lease.

mod agent;
mod catalog;
mod config;
mod error;
mod etcd;
mod node;
mod placement;
pub mod resources;

pub use catalog::EtcdCatalog;
pub use config::{ClusterConfig, parse_cluster_url};
pub use error::ClusterError;
pub use node::Node;
