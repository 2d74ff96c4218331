//! A node's own share of the cluster's jobs: every job of the catalog declared (so that any
//! statement sent here can name it), the units assigned here (jobs, or instances of jobs
//! whose instances run apart) started, those moved away, stopped or dropped stopped, and
//! what they do reported.
//!
//! A unit runs on one node at most: a node starts it only once it holds its
//! `running/<unit>` key, which lives under its lease, and lets go of it once it ended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use ferris_engine::Session;
use ferris_engine::cluster::JobSummary;
use ferris_engine::job::{InstanceToRun, JobRecord};

use crate::error::ClusterError;
use crate::etcd::{Keys, Snapshot};
use crate::unit::units;

/// How long a job that could not start (or be declared) waits before it is tried again.
const RETRY_START: Duration = Duration::from_secs(5);
/// How long the agent waits for the session (a statement may hold it) before it leaves
/// declaring and starting to its next round.
const SESSION_WAIT: Duration = Duration::from_millis(200);

/// The jobs this node started, shared with the fence that stops them when the lease is lost.
pub(crate) type LocalRecords = Arc<Mutex<Vec<Arc<JobRecord>>>>;

struct LocalJob {
    record: Arc<JobRecord>,
    /// The statement it was started from: when the catalog's changes (`ALTER JOB`), it
    /// stops at a checkpoint and starts again here from the new one.
    sql: String,
    /// The catalog's generation it was started for.
    generation: u64,
    /// A stop was asked for.
    stopping: bool,
    /// It stops because it left this node (moved, dropped, the lease lost): once ended, it
    /// is forgotten here, so that it can start here again if it comes back.
    leaving: bool,
    /// This node holds its `running/<name>` key.
    holds: bool,
    /// It was asked to drain (before its job's parallelism changes).
    draining: bool,
}

/// A job that would not start, and when it was tried.
struct FailedStart {
    generation: u64,
    at: Instant,
    summary: JobSummary,
}

pub(crate) struct Agent {
    node: String,
    session: Arc<tokio::sync::Mutex<Session>>,
    /// Each job declared here, with the statement it was declared from.
    declared: BTreeMap<String, String>,
    /// Jobs whose declaration failed, and when it was last tried.
    undeclared: BTreeMap<String, Instant>,
    /// Each function of the catalog created here, with the statement it was created from.
    functions: BTreeMap<String, String>,
    /// Functions that would not be created here, the statement tried, and when.
    uncreated: BTreeMap<String, (String, Instant)>,
    /// The units started here, by key.
    local: BTreeMap<String, LocalJob>,
    /// The units that would not start here, by key.
    failed: BTreeMap<String, FailedStart>,
    records: LocalRecords,
    keys: Keys,
}

impl Agent {
    pub(crate) fn new(
        node: String,
        session: Arc<tokio::sync::Mutex<Session>>,
        records: LocalRecords,
        keys: Keys,
    ) -> Self {
        Self {
            keys,
            node,
            session,
            declared: BTreeMap::new(),
            undeclared: BTreeMap::new(),
            functions: BTreeMap::new(),
            uncreated: BTreeMap::new(),
            local: BTreeMap::new(),
            failed: BTreeMap::new(),
            records,
        }
    }

    /// Creates the catalog's functions this node does not have as they are (oldest first:
    /// one may call an older one), and forgets those dropped.
    async fn create_functions(&mut self, session: &mut Session, snapshot: &Snapshot) {
        for (name, sql) in &snapshot.functions {
            let tried_lately = self
                .uncreated
                .get(name)
                .is_some_and(|(tried, at)| tried == sql && at.elapsed() < RETRY_START);
            if self.functions.get(name) == Some(sql) || tried_lately {
                continue;
            }
            match session.declare_kept(name, sql).await {
                Ok(()) => {
                    self.uncreated.remove(name);
                    self.functions.insert(name.clone(), sql.clone());
                }
                Err(e) => {
                    if self
                        .uncreated
                        .get(name)
                        .is_none_or(|(tried, _)| tried != sql)
                    {
                        tracing::error!(function = %name, "cannot be created on this node (tried again every {}s): {e}", RETRY_START.as_secs());
                    }
                    self.uncreated
                        .insert(name.clone(), (sql.clone(), Instant::now()));
                }
            }
        }
        let kept = |name: &String| snapshot.functions.iter().any(|(n, _)| n == name);
        let dropped: Vec<String> = self
            .functions
            .keys()
            .filter(|n| !kept(n))
            .cloned()
            .collect();
        for name in dropped {
            session.forget_function(&name);
            self.functions.remove(&name);
        }
        self.uncreated.retain(|name, _| kept(name));
    }

    fn assigned_here(&self, snapshot: &Snapshot, key: &str) -> bool {
        snapshot
            .assignments
            .get(key)
            .is_some_and(|a| a.node == self.node)
    }

    /// Brings this node's jobs in line with `snapshot`.
    pub(crate) async fn reconcile(
        &mut self,
        snapshot: &Snapshot,
        client: &mut Client,
        lease: i64,
    ) -> Result<(), ClusterError> {
        self.stop_what_left(snapshot).await;
        self.let_go_of_ended(snapshot, client).await?;
        let Ok(mut session) =
            tokio::time::timeout(SESSION_WAIT, self.session.clone().lock_owned()).await
        else {
            return Ok(());
        };
        // The jobs declared or started below may call them.
        self.create_functions(&mut session, snapshot).await;
        for job in &snapshot.jobs {
            if self.declared.get(&job.name) == Some(&job.sql)
                || self
                    .undeclared
                    .get(&job.name)
                    .is_some_and(|at| at.elapsed() < RETRY_START)
            {
                continue;
            }
            match session.declare_kept(&job.name, &job.sql).await {
                Ok(()) => {
                    self.undeclared.remove(&job.name);
                    self.declared.insert(job.name.clone(), job.sql.clone());
                }
                Err(e) => {
                    if !self.undeclared.contains_key(&job.name) {
                        tracing::error!(job = %job.name, "cannot be declared on this node (tried again every {}s): {e}", RETRY_START.as_secs());
                    }
                    self.undeclared.insert(job.name.clone(), Instant::now());
                }
            }
        }
        let dropped: Vec<String> = self
            .declared
            .keys()
            .filter(|name| snapshot.job(name).is_none())
            .cloned()
            .collect();
        for name in dropped {
            if let Err(e) = session.forget(&name) {
                tracing::warn!(job = %name, "dropped, but not forgotten here: {e}");
            }
            self.declared.remove(&name);
        }
        self.failed.retain(|key, _| snapshot.unit(key).is_some());
        self.undeclared
            .retain(|name, _| snapshot.job(name).is_some());
        for unit in units(&snapshot.jobs) {
            let (job, key) = (unit.job, unit.key());
            if job.stopped || !self.assigned_here(snapshot, &key) {
                continue;
            }
            // Not again: one that holds its key, or that ended by itself as the catalog has it
            // (one this node stopped for a change of the catalog starts again).
            if let Some(local) = self.local.get(&key)
                && (local.holds
                    || (!local.stopping
                        && local.generation == job.generation
                        && local.sql == job.sql))
            {
                continue;
            }
            if let Some(failed) = self.failed.get(&key)
                && failed.generation == job.generation
                && failed.at.elapsed() < RETRY_START
            {
                continue;
            }
            // The node it ran on has not let go of it yet.
            if snapshot.running.get(&key).is_some_and(|n| *n != self.node) {
                continue;
            }
            if !self.take(client, &job.name, &key, lease).await? {
                continue;
            }
            let instance = unit.instance.map(|index| InstanceToRun {
                index,
                era: job.era,
            });
            match session.start_kept(&job.name, &job.sql, instance).await {
                Ok(Some(started)) => {
                    let record = started.record();
                    record.control.set_paused(job.paused);
                    tracing::info!(job = %key, "started on this node");
                    self.records
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(record.clone());
                    self.failed.remove(&key);
                    self.local.insert(
                        key,
                        LocalJob {
                            record,
                            sql: job.sql.clone(),
                            generation: job.generation,
                            stopping: false,
                            leaving: false,
                            holds: true,
                            draining: false,
                        },
                    );
                }
                outcome => {
                    let error = match outcome {
                        Err(e) => e.to_string(),
                        _ => "its statement starts no job".to_string(),
                    };
                    tracing::error!(job = %key, "cannot start: {error}");
                    self.release(client, &key).await?;
                    // Its run before (of another statement, say) is over: the failure is what
                    // is reported, and a change of the catalog tries again.
                    self.local.remove(&key);
                    self.failed.insert(
                        key,
                        FailedStart {
                            generation: job.generation,
                            at: Instant::now(),
                            summary: JobSummary {
                                name: job.name.clone(),
                                node: self.node.clone(),
                                kind: job.kind.clone(),
                                status: "FAILED".into(),
                                last_error: Some(error),
                                ..JobSummary::default()
                            },
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Stops the jobs dropped (at once), stopped, or assigned elsewhere (at a checkpoint,
    /// so that their next node resumes from it), and applies pauses.
    async fn stop_what_left(&mut self, snapshot: &Snapshot) {
        for (name, local) in &mut self.local {
            if !local.record.is_running() {
                continue;
            }
            let assigned_here = snapshot
                .assignments
                .get(name)
                .is_some_and(|a| a.node == self.node);
            match snapshot.unit(name).map(|u| u.job) {
                // The drain called off (START JOB): stopped at a checkpoint, it starts here
                // again, its sources where they ended.
                Some(job) if local.draining && !job.stopped => {
                    tracing::info!(job = %name, "stopping at a checkpoint: its drain was called off");
                    local.record.control.request_stop();
                    local.draining = false;
                }
                // Started again here once stopped (`leaving` stays false).
                Some(job) if assigned_here && !job.stopped && job.sql != local.sql => {
                    stop_at_checkpoint(name, local, "its statement changed (ALTER JOB)");
                }
                Some(job) if assigned_here && !job.stopped => {
                    local.record.control.set_paused(job.paused);
                    // A START of the running job is no reason to start it again later.
                    local.generation = job.generation;
                }
                Some(job) if job.stopped && job.draining && !job.force => {
                    if !local.draining {
                        tracing::info!(job = %name, "draining: its parallelism changes");
                        local.record.control.request_drain();
                        local.stopping = true;
                        local.draining = true;
                    }
                }
                Some(job) if !job.force => {
                    local.leaving = !job.stopped;
                    let why = match job.stopped {
                        true => "stopped",
                        false => "assigned to another node",
                    };
                    stop_at_checkpoint(name, local, why);
                }
                job => {
                    tracing::info!(job = %name, "stopping at once: dropped or stopped by force");
                    local.record.force_stop().await;
                    local.stopping = true;
                    local.leaving = job.is_none() || !assigned_here;
                }
            }
        }
    }

    /// Lets go of the jobs that ended here, so that another node may run them, and forgets
    /// those that left or were dropped (a job created again under the name starts afresh).
    async fn let_go_of_ended(
        &mut self,
        snapshot: &Snapshot,
        client: &mut Client,
    ) -> Result<(), ClusterError> {
        let ended: Vec<String> = self
            .local
            .iter()
            .filter(|(_, l)| l.holds && !l.record.is_running())
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            self.release(client, &name).await?;
            if let Some(local) = self.local.get_mut(&name) {
                local.holds = false;
                tracing::info!(job = %name, "ended here: {}", local.record.status().as_str());
            }
        }
        // A key this node took without a job behind it (a reply lost after the take, a
        // release that failed) would keep the job from every node.
        let orphans: Vec<String> = snapshot
            .running
            .iter()
            .filter(|(name, node)| {
                **node == self.node && !self.local.get(*name).is_some_and(|l| l.holds)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in orphans {
            self.release(client, &name).await?;
        }
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.is_running());
        self.local.retain(|name, local| {
            local.holds
                || local.record.is_running()
                || (!local.leaving && snapshot.unit(name).is_some())
        });
        Ok(())
    }

    /// Takes the unit `key` of the job `name` for this node; whether it got it.
    async fn take(
        &self,
        client: &mut Client,
        name: &str,
        key: &str,
        lease: i64,
    ) -> Result<bool, ClusterError> {
        let running = self.keys.key("running", key);
        // Not if it was dropped since the snapshot: a DROP deletes its checkpoints next.
        let txn = Txn::new()
            .when([
                Compare::create_revision(running.as_str(), CompareOp::Equal, 0),
                Compare::version(self.keys.key("jobs", name), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(
                running.as_str(),
                self.node.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        Ok(client.txn(txn).await?.succeeded())
    }

    /// Lets go of the unit `key`, if this node holds it.
    async fn release(&self, client: &mut Client, key: &str) -> Result<(), ClusterError> {
        let running = self.keys.key("running", key);
        let txn = Txn::new()
            .when([Compare::value(
                running.as_str(),
                CompareOp::Equal,
                self.node.as_str(),
            )])
            .and_then([TxnOp::delete(running.as_str(), None)]);
        client.txn(txn).await?;
        Ok(())
    }

    /// The lease is gone, and every running key with it; the fence has stopped the jobs.
    pub(crate) fn lease_lost(&mut self) {
        // Fenced, they start again where they are assigned once the node is back.
        self.local.clear();
    }

    /// Whether a job still runs here.
    pub(crate) fn runs_jobs(&self) -> bool {
        self.local.values().any(|l| l.record.is_running())
    }

    /// Asks every job running here to stop at a checkpoint.
    pub(crate) fn stop_all(&mut self) {
        for local in self.local.values_mut() {
            if local.record.is_running() {
                local.record.control.request_stop();
                local.stopping = true;
            }
        }
    }

    /// What this node reports of its units, by key: those assigned here or still running
    /// here.
    pub(crate) fn summaries(&self, snapshot: &Snapshot) -> Vec<(String, JobSummary)> {
        let mut summaries: Vec<(String, JobSummary)> = self
            .local
            .iter()
            .filter(|(key, local)| {
                local.record.is_running()
                    || (self.assigned_here(snapshot, key) && snapshot.unit(key).is_some())
            })
            .map(|(key, local)| (key.clone(), local.record.summary(&self.node)))
            .collect();
        // One report per unit: one tried here since its failed start reports itself.
        summaries.extend(
            self.failed
                .iter()
                .filter(|(key, _)| {
                    self.assigned_here(snapshot, key) && !self.local.contains_key(*key)
                })
                .map(|(key, f)| (key.clone(), f.summary.clone())),
        );
        summaries
    }
}

/// Asks `local` to stop at its next checkpoint, once, saying why.
fn stop_at_checkpoint(name: &str, local: &mut LocalJob, why: &str) {
    if !local.stopping {
        tracing::info!(job = %name, "stopping at a checkpoint: {why}");
        local.record.control.request_stop();
        local.stopping = true;
    }
}
