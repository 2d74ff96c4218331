//! The cluster's keys in etcd and one consistent read of all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use ferris_engine::cluster::{ClusterJob, JobSummary, NodeSummary, Placement};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::unit::{Unit, units};

/// A cluster's keys in etcd: under `/ferris/`, or `/ferris-NAME/` for the cluster `NAME`, so
/// that clusters of other names share an etcd and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of the cluster called `name` (`None`: the unnamed one).
    pub(crate) fn of(name: Option<&str>) -> Self {
        Self {
            prefix: match name {
                Some(name) => format!("/ferris-{name}/"),
                None => "/ferris/".to_string(),
            },
        }
    }

    /// The key of `name` in the folder `folder` (`nodes`, `jobs`, ...).
    pub(crate) fn key(&self, folder: &str, name: &str) -> String {
        format!("{}{folder}/{name}", self.prefix)
    }

    /// The key the leader holds.
    pub(crate) fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// Reads every key of the cluster at once.
    pub(crate) async fn snapshot(&self, client: &mut Client) -> Result<Snapshot, ClusterError> {
        let response = client
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut snapshot = Snapshot::default();
        let mut jobs = Vec::new();
        let mut functions = Vec::new();
        for kv in response.kvs() {
            // A value no node of this version reads (another program's, a newer node's) is
            // left out, not a reason to stop reading the cluster.
            if let Err(e) = read_key(&self.prefix, kv, &mut snapshot, &mut jobs, &mut functions) {
                tracing::warn!("{e}: left out");
            }
        }
        jobs.sort_by_key(|(revision, _)| *revision);
        snapshot.jobs = jobs.into_iter().map(|(_, job)| job).collect();
        functions.sort_by_key(|(revision, _)| *revision);
        snapshot.functions = functions.into_iter().map(|(_, f)| f).collect();
        Ok(snapshot)
    }
}

/// Where the leader put a job, and where it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Assignment {
    /// The node that is to run it.
    pub node: String,
    /// Its moves, oldest first (the last few).
    pub history: Vec<Placement>,
}

/// Everything of a cluster at one revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Live nodes, by id.
    pub nodes: BTreeMap<String, NodeSummary>,
    /// The catalog, oldest job first.
    pub jobs: Vec<ClusterJob>,
    /// The functions users wrote, oldest first (one may call an older one): name and
    /// statement.
    pub functions: Vec<(String, String)>,
    /// Where the leader put each unit (a job, or an instance run apart), by its key.
    pub assignments: BTreeMap<String, Assignment>,
    /// Which node runs each unit now.
    pub running: BTreeMap<String, String>,
    /// What the running (or last) node reports of each unit.
    pub statuses: BTreeMap<String, JobSummary>,
    /// The leader's id.
    pub leader: Option<String>,
}

impl Snapshot {
    /// The job `name` of the catalog.
    pub(crate) fn job(&self, name: &str) -> Option<&ClusterJob> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The unit whose key is `key`, of a job of the catalog.
    pub(crate) fn unit(&self, key: &str) -> Option<Unit<'_>> {
        units(&self.jobs).find(|u| u.key() == key)
    }
}

/// A client of the etcd at `endpoints`, checked to answer.
pub(crate) async fn connect(endpoints: &[String]) -> Result<Client, ClusterError> {
    let unreachable = |message: String| ClusterError::Unreachable {
        endpoints: endpoints.to_vec(),
        message,
    };
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3))
        // A dead connection (a cut network) is noticed within seconds.
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    let mut client = Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    client
        .status()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(client)
}

fn read_key(
    prefix: &str,
    kv: &etcd_client::KeyValue,
    snapshot: &mut Snapshot,
    jobs: &mut Vec<(i64, ClusterJob)>,
    functions: &mut Vec<(i64, (String, String))>,
) -> Result<(), ClusterError> {
    let key = kv.key_str().map_err(|e| corrupt("(not UTF-8)", e))?;
    let value = kv.value_str().map_err(|e| corrupt(key, e))?;
    let Some(rest) = key.strip_prefix(prefix) else {
        return Ok(());
    };
    if rest == "leader" {
        snapshot.leader = Some(value.to_string());
        return Ok(());
    }
    let Some((folder, name)) = rest.split_once('/') else {
        return Ok(());
    };
    let name = name.to_string();
    match folder {
        "nodes" => {
            let node: NodeSummary = decode(key, value)?;
            if node.id != name {
                return Err(corrupt(
                    key,
                    format!("a node that calls itself '{}'", node.id),
                ));
            }
            snapshot.nodes.insert(name, node);
        }
        "jobs" => jobs.push((kv.create_revision(), decode::<ClusterJob>(key, value)?)),
        "assignments" => {
            snapshot.assignments.insert(name, decode(key, value)?);
        }
        "running" => {
            snapshot.running.insert(name, value.to_string());
        }
        "functions" => functions.push((kv.create_revision(), (name, value.to_string()))),
        "status" => {
            snapshot.statuses.insert(name, decode(key, value)?);
        }
        _ => {}
    }
    Ok(())
}

/// The JSON of a value we write.
pub(crate) fn encode(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("cluster records serialize")
}

fn decode<T: DeserializeOwned>(key: &str, value: &str) -> Result<T, ClusterError> {
    serde_json::from_str(value).map_err(|e| corrupt(key, e))
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    }
}
