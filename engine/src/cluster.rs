//! What the engine asks of a cluster its server belongs to: a shared catalog of jobs and
//! what the nodes report of them.
//!
//! Without a cluster a session's jobs are its own: it starts them, keeps them under its state
//! dir and lists them. In a cluster, `CREATE`, `INSERT`, `DROP` and the job commands change
//! the shared catalog ([`ClusterCatalog`], implemented over etcd by `ferris-cluster`), the
//! cluster decides which node runs each job, and `SHOW JOBS` / `SHOW NODES` list what every
//! node reports.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::job::command::JobCommand;

/// A job as the cluster keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterJob {
    /// The job's name.
    pub name: String,
    /// `stream` or `table`.
    pub kind: String,
    /// Its `CREATE STREAM|TABLE` or `INSERT INTO` statement.
    pub sql: String,
    /// Where its checkpoints are (readable from every node), if it takes them.
    pub checkpoint_dir: Option<String>,
    /// Stopped by `STOP JOB`: no node runs it until `START JOB`.
    #[serde(default)]
    pub stopped: bool,
    /// Stopped at once (`STOP JOB ... FORCE`) rather than at a checkpoint.
    #[serde(default)]
    pub force: bool,
    /// Its sources held back (`PAUSE JOB`).
    #[serde(default)]
    pub paused: bool,
    /// Counts `START JOB`s: a node starts an ended job again when this grows.
    #[serde(default)]
    pub generation: u64,
    /// When it was created (epoch ms).
    #[serde(default)]
    pub created_ms: u64,
    /// How many instances run apart, each placed on a node by itself and exchanging rows
    /// with the others through Kafka; 0: the job runs whole on one node.
    #[serde(default)]
    pub instances: usize,
    /// How many times its parallelism changed while its instances ran apart: each era's
    /// instances keep checkpoints and exchange topics of their own (see `InstanceToRun`).
    #[serde(default)]
    pub era: u64,
    /// Its stop (`stopped`) is a drain, before its parallelism changes: its instances take
    /// in everything in flight between them, and keep their state in their last checkpoint.
    #[serde(default)]
    pub draining: bool,
}

/// What a node reports of a job it runs or ran (one row of `SHOW JOBS`). Fields a node of
/// another version leaves out take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSummary {
    /// The job's name.
    pub name: String,
    /// The node it runs on (empty while it waits for one).
    pub node: String,
    /// `stream` or `table`.
    pub kind: String,
    /// `RUNNING`, `STOPPED`, ... (`PENDING` while no node runs it).
    pub status: String,
    /// When it started (epoch ms; 0 if it has not).
    pub started_ms: u64,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Records read per second, over its run.
    pub records_per_second: f64,
    /// Malformed records its sources set aside.
    pub bad_records: u64,
    /// Records that came after their window closed.
    pub late_records: u64,
    /// How long it has run (seconds).
    pub running_seconds: f64,
    /// CPU time its task used (seconds): time spent computing, not waiting.
    pub cpu_seconds: f64,
    /// Its event-time watermark (epoch ms; 0 if none yet).
    pub watermark_ms: u64,
    /// Per source partition, how far its reader is behind (`source[p]=n, ...`).
    pub lag: String,
    /// The epoch of its last checkpoint.
    pub last_checkpoint: Option<u64>,
    /// When that checkpoint completed (epoch ms).
    pub last_checkpoint_ms: Option<u64>,
    /// How long that checkpoint took, from asking for it to its output committed (ms).
    pub last_checkpoint_duration_ms: Option<u64>,
    /// How long the sources waited for it (ms).
    pub last_checkpoint_pause_ms: Option<u64>,
    /// Bytes of operator state: in its last checkpoint, else at its peak so far.
    pub state_bytes: u64,
    /// The most bytes of operator state it has held.
    pub peak_state_bytes: u64,
    /// Why it failed or waits, if it does.
    pub last_error: Option<String>,
}

/// One node of a cluster, as it reports itself (one row of `SHOW NODES`). Fields a node of
/// another version leaves out take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeSummary {
    /// Its id (`--node-id`).
    pub id: String,
    /// Where its Flight SQL endpoint is reached (`--advertise`).
    pub address: String,
    /// Where its HTTP endpoint is, if it serves one.
    pub http: Option<String>,
    /// `UP`, or `DRAINING` while it hands its jobs over before leaving.
    pub status: String,
    /// Whether it places the cluster's jobs.
    pub leader: bool,
    /// CPU cores.
    pub cores: u64,
    /// Memory (bytes).
    pub memory_bytes: u64,
    /// How many jobs it runs at most.
    pub slots: u64,
    /// How many it runs now.
    pub jobs: u64,
    /// Records read per second by its jobs.
    pub records_per_second: f64,
    /// Bytes of operator state its jobs checkpointed last.
    pub state_bytes: u64,
    /// Its resident memory (bytes).
    pub rss_bytes: u64,
    /// CPU seconds the process used.
    pub cpu_seconds: f64,
    /// When it last reported (epoch ms).
    pub heartbeat_ms: u64,
}

/// One move of a job between nodes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// When it was decided (epoch ms).
    pub at_ms: u64,
    /// The node it left, if any.
    pub from: Option<String>,
    /// The node it went to.
    pub to: String,
    /// Why (`placed`, `node b left`, `rebalance`, ...).
    pub why: String,
}

/// The shared catalog of a cluster's jobs, and what its nodes report.
pub trait ClusterCatalog: Send + Sync {
    /// Where every job's checkpoints go: a folder every node reads, or an `s3://` URL.
    fn state_dir(&self) -> &str;

    /// Adds `job`; an error if a job of that name exists.
    fn submit(&self, job: ClusterJob) -> BoxFuture<'_, Result<()>>;

    /// The job `name`, if kept.
    fn job(&self, name: &str) -> BoxFuture<'_, Result<Option<ClusterJob>>>;

    /// Every job kept, oldest first.
    fn jobs(&self) -> BoxFuture<'_, Result<Vec<ClusterJob>>>;

    /// Keeps the function `name` made by `sql` (`CREATE [AGGREGATE] FUNCTION`): every node
    /// creates it before it declares or starts a job, replacing one of that name.
    fn put_function(&self, name: &str, sql: &str) -> BoxFuture<'_, Result<()>>;

    /// Forgets the function `name` (`DROP FUNCTION`); whether there was one.
    fn remove_function(&self, name: &str) -> BoxFuture<'_, Result<bool>>;

    /// Applies a job command to the job `name` (its node acts on it); whether it is kept.
    fn command(&self, name: &str, command: JobCommand) -> BoxFuture<'_, Result<bool>>;

    /// Replaces the job `name`'s statement (`ALTER JOB`): its node stops it at a checkpoint
    /// and starts it again from `sql`, resuming from that checkpoint (a stopped job starts);
    /// whether it is kept.
    fn restate(&self, name: &str, sql: String) -> BoxFuture<'_, Result<bool>>;

    /// Stops the running job `name`, whose instances run apart, with a drain before its
    /// parallelism changes (see `JobControl::request_drain`); false if it is gone or
    /// stopped. `START JOB` calls the drain off.
    fn drain(&self, name: &str) -> BoxFuture<'_, Result<bool>>;

    /// Starts the job `name`, drained in era `drained`, again from `sql` as `instances`
    /// instances apart, in the next era: they take up the drained checkpoints of the ones
    /// before. False if it is gone, or no longer drained in that era.
    fn rescale(
        &self,
        name: &str,
        sql: String,
        instances: usize,
        drained: u64,
    ) -> BoxFuture<'_, Result<bool>>;

    /// Forgets the job `name`, once no node runs it; what was kept.
    fn remove(&self, name: &str) -> BoxFuture<'_, Result<Option<ClusterJob>>>;

    /// Every kept job as its node reports it (`PENDING` without one).
    fn summaries(&self) -> BoxFuture<'_, Result<Vec<JobSummary>>>;

    /// Every live node.
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeSummary>>>;

    /// Where the job `name` ran, oldest move first.
    fn placements(&self, name: &str) -> BoxFuture<'_, Result<Vec<Placement>>>;
}
