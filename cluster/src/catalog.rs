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
use crate::unit::{Unit, units_of};

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

    /// Changes the job `name` with `change`, unless another change came first (then again);
    /// whether it changed it (`change` returns false to leave the job as it is).
    async fn update(
        &self,
        name: &str,
        change: impl Fn(&mut ClusterJob) -> bool,
    ) -> Result<bool, ClusterError> {
        let key = self.keys.key("jobs", name);
        let mut client = self.client.clone();
        loop {
            let Some((mut job, revision)) = self.read_job(name).await? else {
                return Ok(false);
            };
            if !change(&mut job) {
                return Ok(false);
            }
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
    job.draining = false;
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

    fn put_function(&self, name: &str, sql: &str) -> BoxFuture<'_, Result<()>> {
        let (key, sql) = (self.keys.key("functions", name), sql.to_string());
        async move {
            self.client
                .clone()
                .put(key, sql, None)
                .await
                .map_err(ClusterError::from)?;
            Ok(())
        }
        .boxed()
    }

    fn remove_function(&self, name: &str) -> BoxFuture<'_, Result<bool>> {
        let key = self.keys.key("functions", name);
        async move {
            let deleted = self
                .client
                .clone()
                .delete(key, None)
                .await
                .map_err(ClusterError::from)?;
            Ok(deleted.deleted() > 0)
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
                .update(&name, |job| {
                    match command {
                        JobCommand::Start => start(job),
                        JobCommand::Stop => job.stopped = true,
                        // Also a drain's: its instances stop where they are.
                        JobCommand::StopForce => {
                            job.stopped = true;
                            job.force = true;
                            job.draining = false;
                        }
                        JobCommand::Pause => job.paused = true,
                        JobCommand::Resume => job.paused = false,
                    }
                    true
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
                    true
                })
                .await?)
        }
        .boxed()
    }

    fn drain(&self, name: &str) -> BoxFuture<'_, Result<bool>> {
        let name = name.to_string();
        async move {
            Ok(self
                .update(&name, |job| {
                    // Not a job stopped meanwhile: a user's stop stays one.
                    if job.stopped {
                        return false;
                    }
                    job.stopped = true;
                    job.draining = true;
                    true
                })
                .await?)
        }
        .boxed()
    }

    fn rescale(
        &self,
        name: &str,
        sql: String,
        instances: usize,
        drained: u64,
    ) -> BoxFuture<'_, Result<bool>> {
        let name = name.to_string();
        async move {
            Ok(self
                .update(&name, |job| {
                    // Still the drained era, not started again meanwhile.
                    if !(job.stopped && job.draining && job.era == drained) {
                        return false;
                    }
                    job.sql.clone_from(&sql);
                    job.instances = instances;
                    job.era += 1;
                    start(job);
                    true
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
            let keys: Vec<String> = units_of(&job).iter().map(Unit::key).collect();
            // Its nodes stop it at once when they see it gone, and let go of it.
            let waited = std::time::Instant::now();
            for key in &keys {
                let running = self.keys.key("running", key);
                while client
                    .get(running.as_str(), None)
                    .await
                    .map_err(ClusterError::from)?
                    .count()
                    > 0
                {
                    if waited.elapsed() > DROP_WAIT {
                        return Err(ClusterError::Etcd(format!(
                            "job '{name}' is dropped, but its node has not let go of {key} after {}s; its checkpoints stay",
                            DROP_WAIT.as_secs()
                        ))
                        .into());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            for key in &keys {
                for folder in ["status", "assignments"] {
                    client
                        .delete(self.keys.key(folder, key), None)
                        .await
                        .map_err(ClusterError::from)?;
                }
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
            let mut snapshot = self.snapshot().await?;
            let Some(job) = snapshot.job(&name).cloned() else {
                return Ok(vec![]);
            };
            let mut placements = Vec::new();
            for unit in units_of(&job) {
                let Some(assignment) = snapshot.assignments.remove(&unit.key()) else {
                    continue;
                };
                placements.extend(assignment.history.into_iter().map(|mut p| {
                    if let Some(i) = unit.instance {
                        p.why = format!("instance {i}: {}", p.why);
                    }
                    p
                }));
            }
            placements.sort_by_key(|p| p.at_ms);
            Ok(placements)
        }
        .boxed()
    }
}

/// What `SHOW JOBS` shows of `job`: what its unit shows, or its instances' put together.
fn summary(snapshot: &Snapshot, job: &ClusterJob) -> JobSummary {
    let units: Vec<JobSummary> = units_of(job)
        .iter()
        .map(|unit| unit_summary(snapshot, unit))
        .collect();
    match <[JobSummary; 1]>::try_from(units) {
        Ok([one]) => one,
        Err(instances) => together(instances),
    }
}

/// A job whose instances run apart, from its instances' reports: on the nodes they run on,
/// with their counts added up, the least advanced status, watermark and checkpoint, and the
/// first error. (Each instance counts from its own start: one moved counts afresh.)
fn together(instances: Vec<JobSummary>) -> JobSummary {
    // Ordered as a job's life goes: the earliest stands for the job.
    const ORDER: [&str; 9] = [
        "FAILED", "RETRYING", "PENDING", "STARTING", "STOPPING", "PAUSED", "RUNNING", "STOPPED",
        "FINISHED",
    ];
    let rank = |s: &JobSummary| ORDER.iter().position(|o| *o == s.status).unwrap_or(0);
    let mut job = instances
        .iter()
        .min_by_key(|s| rank(s))
        .cloned()
        .unwrap_or_default();
    let mut nodes: Vec<&str> = Vec::new();
    for s in &instances {
        if !s.node.is_empty() && !nodes.contains(&s.node.as_str()) {
            nodes.push(&s.node);
        }
    }
    job.node = nodes.join(",");
    job.started_ms = instances.iter().map(|s| s.started_ms).max().unwrap_or(0);
    job.records_in = instances.iter().map(|s| s.records_in).sum();
    job.records_out = instances.iter().map(|s| s.records_out).sum();
    job.records_per_second = instances.iter().map(|s| s.records_per_second).sum();
    job.bad_records = instances.iter().map(|s| s.bad_records).sum();
    job.late_records = instances.iter().map(|s| s.late_records).sum();
    job.cpu_seconds = instances.iter().map(|s| s.cpu_seconds).sum();
    job.running_seconds = instances
        .iter()
        .map(|s| s.running_seconds)
        .fold(0.0, f64::max);
    job.watermark_ms = instances.iter().map(|s| s.watermark_ms).min().unwrap_or(0);
    job.lag = instances
        .iter()
        .map(|s| s.lag.as_str())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    // The instance furthest behind in checkpoints (one without any first) stands for them.
    if let Some(behind) = instances.iter().min_by_key(|s| s.last_checkpoint) {
        job.last_checkpoint = behind.last_checkpoint;
        job.last_checkpoint_ms = behind.last_checkpoint_ms;
        job.last_checkpoint_duration_ms = behind.last_checkpoint_duration_ms;
        job.last_checkpoint_pause_ms = behind.last_checkpoint_pause_ms;
    }
    job.state_bytes = instances.iter().map(|s| s.state_bytes).sum();
    job.peak_state_bytes = instances.iter().map(|s| s.peak_state_bytes).sum();
    job.last_error = instances
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.last_error.as_ref().map(|e| format!("instance {i}: {e}")));
    job
}

/// What `SHOW JOBS` shows of `unit`: its node's report while that node is the one assigned
/// (or running it); else what the keys say: starting or stopping on the node that holds it
/// (its first or last report not in yet), stopped, or waiting for a node.
fn unit_summary(snapshot: &Snapshot, unit: &Unit) -> JobSummary {
    let (job, key) = (unit.job, unit.key());
    let assigned = snapshot.assignments.get(&key).map(|a| a.node.as_str());
    let running = snapshot.running.get(&key).map(String::as_str);
    match snapshot.statuses.get(&key) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(node: &str, status: &str, records_in: u64, watermark_ms: u64) -> JobSummary {
        JobSummary {
            name: "p".into(),
            node: node.into(),
            status: status.into(),
            records_in,
            watermark_ms,
            last_checkpoint: Some(records_in),
            ..JobSummary::default()
        }
    }

    #[test]
    fn instances_run_apart_show_as_one_job_on_their_nodes() {
        let job = together(vec![
            instance("n1", "RUNNING", 10, 5_000),
            instance("n2", "RUNNING", 7, 4_000),
        ]);
        assert_eq!(job.node, "n1,n2");
        assert_eq!(job.status, "RUNNING");
        assert_eq!(job.records_in, 17);
        assert_eq!(job.watermark_ms, 4_000);
        assert_eq!(job.last_checkpoint, Some(7));

        // One still starting holds the job at STARTING; two on one node name it once.
        let mut failed = instance("n1", "FAILED", 1, 0);
        failed.last_error = Some("broken".into());
        let job = together(vec![instance("n1", "RUNNING", 3, 1), failed]);
        assert_eq!(job.node, "n1");
        assert_eq!(job.status, "FAILED");
        assert_eq!(job.last_error.as_deref(), Some("instance 1: broken"));
    }
}
