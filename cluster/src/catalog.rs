//! The shared catalog of a cluster's jobs in etcd: what a statement sent to any node changes,
//! and what `SHOW JOBS` and `SHOW NODES` read.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use ferris_engine::Result;
use ferris_engine::cluster::{ClusterCatalog, ClusterJob, JobSummary, NodeSummary, Placement};
use ferris_engine::job::command::JobCommand;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::ClusterError;
use crate::etcd::{Keys, Snapshot, encode};

/// How long `DROP` waits for the job's node to stop it.
const DROP_WAIT: Duration = Duration::from_secs(30);

/// The catalog of the cluster whose etcd `client` talks to.
#[derive(Clone)]
pub struct EtcdCatalog {
    client: Client,
    state_dir: String,
    keys: Keys,
}

impl EtcdCatalog {
    pub(crate) fn new(client: Client, state_dir: String, keys: Keys) -> Self {
        Self {
            client,
            state_dir,
            keys,
        }
    }

    async fn snapshot(&self) -> Result<Snapshot, ClusterError> {
        self.keys.snapshot(&mut self.client.clone()).await
    }

    /// Changes the job `name` with `change`, unless another change came first (then again).
    /// The job `name` and the revision it was last changed at.
    async fn read_job(&self, name: &str) -> Result<Option<(ClusterJob, i64)>, ClusterError> {
        let response = self
            .client
            .clone()
            .get(self.keys.key("jobs", name), None)
            .await?;
        response
            .kvs()
            .first()
            .map(|kv| {
                Ok((
                    decode_job(self.keys.key("jobs", name), kv.value())?,
                    kv.mod_revision(),
                ))
            })
            .transpose()
    }

    /// Changes the job `name` with `change`, unless another change came first (then again).
    async fn update(
        &self,
        name: &str,
        change: impl Fn(&mut ClusterJob),
    ) -> Result<bool, ClusterError> {
        let key = self.keys.key("jobs", name);
        let mut client = self.client.clone();
        loop {
            let Some((mut job, revision)) = self.read_job(name).await? else {
                return Ok(false);
            };
            change(&mut job);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::put(key.as_str(), encode(&job), None)]);
            if client.txn(txn).await?.succeeded() {
                return Ok(true);
            }
        }
    }
}

/// `job` as `START JOB` leaves it: to run (again, if it ended), unpaused.
fn start(job: &mut ClusterJob) {
    job.stopped = false;
    job.force = false;
    job.paused = false;
    job.generation += 1;
}

/// The job kept at `key`.
fn decode_job(key: String, value: &[u8]) -> Result<ClusterJob, ClusterError> {
    serde_json::from_slice(value).map_err(|e| ClusterError::Corrupt {
        key,
        message: e.to_string(),
    })
}

impl ClusterCatalog for EtcdCatalog {
    fn state_dir(&self) -> &str {
        &self.state_dir
    }

    fn submit(&self, job: ClusterJob) -> BoxFuture<'_, Result<()>> {
        async move {
            let key = self.keys.key("jobs", &job.name);
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), encode(&job), None)]);
            let created = self
                .client
                .clone()
                .txn(txn)
                .await
                .map_err(ClusterError::from)?
                .succeeded();
            if !created {
                return Err(ClusterError::Etcd(format!(
                    "a job '{}' exists in the cluster already (another node created it meanwhile)",
                    job.name
                ))
                .into());
            }
            Ok(())
        }
        .boxed()
    }

    fn job(&self, name: &str) -> BoxFuture<'_, Result<Option<ClusterJob>>> {
        let name = name.to_string();
        async move { Ok(self.read_job(&name).await?.map(|(job, _)| job)) }.boxed()
    }

    fn jobs(&self) -> BoxFuture<'_, Result<Vec<ClusterJob>>> {
        async move { Ok(self.snapshot().await?.jobs) }.boxed()
    }

    fn command(&self, name: &str, command: JobCommand) -> BoxFuture<'_, Result<bool>> {
        let name = name.to_string();
        async move {
            Ok(self
                .update(&name, |job| match command {
                    JobCommand::Start => start(job),
                    JobCommand::Stop => job.stopped = true,
                    JobCommand::StopForce => {
                        job.stopped = true;
                        job.force = true;
                    }
                    JobCommand::Pause => job.paused = true,
                    JobCommand::Resume => job.paused = false,
                })
                .await?)
        }
        .boxed()
    }

    fn restate(&self, name: &str, sql: String) -> BoxFuture<'_, Result<bool>> {
        let name = name.to_string();
        async move {
            Ok(self
                .update(&name, |job| {
                    job.sql.clone_from(&sql);
                    // A stopped job starts at once, as on a lone server.
                    if job.stopped {
                        start(job);
                    }
                })
                .await?)
        }
        .boxed()
    }

    fn remove(&self, name: &str) -> BoxFuture<'_, Result<Option<ClusterJob>>> {
        let name = name.to_string();
        async move {
            let mut client = self.client.clone();
            let deleted = client
                .delete(self.keys.key("jobs", &name), Some(DeleteOptions::new().with_prev_key()))
                .await
                .map_err(ClusterError::from)?;
            let Some(kept) = deleted.prev_kvs().first() else {
                return Ok(None);
            };
            let job = decode_job(self.keys.key("jobs", &name), kept.value())?;
            // Its node stops it at once when it sees it gone, and lets go of it.
            let running = self.keys.key("running", &name);
            let waited = std::time::Instant::now();
            while client
                .get(running.as_str(), None)
                .await
                .map_err(ClusterError::from)?
                .count()
                > 0
            {
                if waited.elapsed() > DROP_WAIT {
                    return Err(ClusterError::Etcd(format!(
                        "job '{name}' is dropped, but its node has not let go of it after {}s; its checkpoints stay",
                        DROP_WAIT.as_secs()
                    ))
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for folder in ["status", "assignments"] {
                client
                    .delete(self.keys.key(folder, &name), None)
                    .await
                    .map_err(ClusterError::from)?;
            }
            Ok(Some(job))
        }
        .boxed()
    }

    fn summaries(&self) -> BoxFuture<'_, Result<Vec<JobSummary>>> {
        async move {
            let snapshot = self.snapshot().await?;
            Ok(snapshot
                .jobs
                .iter()
                .map(|job| summary(&snapshot, job))
                .collect())
        }
        .boxed()
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeSummary>>> {
        async move {
            let snapshot = self.snapshot().await?;
            Ok(snapshot
                .nodes
                .into_values()
                .map(|mut node| {
                    node.leader = snapshot.leader.as_deref() == Some(node.id.as_str());
                    node
                })
                .collect())
        }
        .boxed()
    }

    fn placements(&self, name: &str) -> BoxFuture<'_, Result<Vec<Placement>>> {
        let name = name.to_string();
        async move {
            Ok(self
                .snapshot()
                .await?
                .assignments
                .remove(&name)
                .map(|a| a.history)
                .unwrap_or_default())
        }
        .boxed()
    }
}

/// What `SHOW JOBS` shows of `job`: its node's report while that node is the one assigned
/// (or running it); else what the keys say: starting or stopping on the node that holds it
/// (its first or last report not in yet), stopped, or waiting for a node.
fn summary(snapshot: &Snapshot, job: &ClusterJob) -> JobSummary {
    let assigned = snapshot.assignments.get(&job.name).map(|a| a.node.as_str());
    let running = snapshot.running.get(&job.name).map(String::as_str);
    match snapshot.statuses.get(&job.name) {
        Some(status)
            if Some(status.node.as_str()) == assigned || Some(status.node.as_str()) == running =>
        {
            status.clone()
        }
        _ => JobSummary {
            name: job.name.clone(),
            node: running.or(assigned).unwrap_or_default().to_string(),
            kind: job.kind.clone(),
            status: match (running, job.stopped) {
                (Some(_), true) => "STOPPING",
                (Some(_), false) => "STARTING",
                (None, true) => "STOPPED",
                (None, false) => "PENDING",
            }
            .to_string(),
            ..JobSummary::default()
        },
    }
}
