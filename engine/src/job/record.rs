//! A running continuous query: its task, its counters, its summary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use ferris_connectors::{SourceMetrics, StopSignal};
use ferris_streaming::busy::{BusyTime, Timed};

use crate::error::Result;

/// Whether a job's result is an append-only stream or a keyed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `CREATE STREAM`: every result row is appended.
    Stream,
    /// `CREATE TABLE`: result rows are upserts by key.
    Table,
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stream => "STREAM",
            Self::Table => "TABLE",
        })
    }
}

/// Counters of one job, shared with its sources (through the task's session config) and sink.
#[derive(Debug, Default)]
pub struct JobMetrics {
    sources: Mutex<Vec<SourceReader>>,
    records_out: AtomicU64,
    last_checkpoint: Mutex<Option<CheckpointInfo>>,
    checkpoints: AtomicU64,
    /// Time spent checkpointing, in µs.
    checkpoint_micros: AtomicU64,
    /// Time the sources waited for checkpoints, in µs.
    checkpoint_held_micros: AtomicU64,
    /// Why the job is starting again, while it is.
    retrying: Mutex<Option<String>>,
    /// Time its tasks spent being polled (computing): its own, and its exchanges' senders.
    pub(crate) busy: Arc<BusyTime>,
    /// How many instances it runs as.
    parallelism: usize,
}

/// The last checkpoint a job completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its epoch.
    pub epoch: u64,
    /// When it completed.
    pub at: std::time::SystemTime,
    /// From asking for it to its output committed.
    pub duration: Duration,
    /// How long the sources waited: from asking for it to their going on (the cut and the
    /// sink's prepare; the write too when the sink commits a Kafka transaction).
    pub held: Duration,
    /// Bytes of operator state it holds.
    pub state_bytes: u64,
}

/// One reader of a job's source (a restarted job has read its sources more than once).
#[derive(Debug)]
struct SourceReader {
    name: String,
    /// The instance of the job that reads it (its share's index; 0 when it is not split).
    instance: usize,
    /// The schema the source's plan node reads it with (the very `Arc`).
    schema: SchemaRef,
    metrics: Arc<SourceMetrics>,
}

impl JobMetrics {
    /// Counters of a job of `parallelism` instances.
    pub(crate) fn new(parallelism: usize) -> Self {
        Self {
            parallelism: parallelism.max(1),
            ..Self::default()
        }
    }

    /// Counters for one more reader of the job's source `name`, read by the job's instance
    /// `instance`, which yields `schema`.
    pub fn register_source(
        &self,
        name: &str,
        instance: usize,
        schema: &SchemaRef,
    ) -> Arc<SourceMetrics> {
        let metrics = Arc::new(SourceMetrics::default());
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SourceReader {
                name: name.to_string(),
                instance,
                schema: schema.clone(),
                metrics: metrics.clone(),
            });
        metrics
    }

    /// Per source (its shares together), the records its readers gave and those they set
    /// aside as malformed.
    pub fn read_per_source(&self) -> BTreeMap<String, (u64, u64)> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut read = BTreeMap::new();
        for source in sources.iter() {
            let name = crate::source::source_of(&source.name).to_string();
            let (records, bad): &mut (u64, u64) = read.entry(name).or_default();
            *records += source.metrics.records_in();
            *bad += source.metrics.bad_records();
        }
        read
    }

    /// Per source and partition read (Kafka), how many messages its reader is behind.
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources
            .iter()
            .flat_map(|source| {
                source
                    .metrics
                    .lag()
                    .into_iter()
                    .map(move |(partition, lag)| (source.name.clone(), partition, lag))
            })
            .collect()
    }

    /// Each node of `plan` (the job's) with its counters, in pre-order.
    pub fn operators(&self, plan: &Arc<dyn ExecutionPlan>) -> Vec<OperatorCounters> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut operators = Vec::new();
        operator_counters(plan, &sources, &mut operators);
        operators
    }

    /// Each instance of the job (one for a job of parallelism 1) with its counters: what its
    /// shares of the sources read and lag, and what its partition of each parallel operator
    /// holds. What runs above the instances (the merge, the sink) is no instance's.
    pub fn instances(&self, plan: &Arc<dyn ExecutionPlan>) -> Vec<InstanceCounters> {
        let count = self.parallelism.max(1);
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        (0..count)
            .map(|instance| {
                let readers = || sources.iter().filter(move |s| s.instance == instance);
                let gauge = |name| instance_metric(plan, count, instance, name);
                InstanceCounters {
                    instance,
                    records_in: readers().map(|s| s.metrics.records_in()).sum(),
                    lag: readers()
                        .flat_map(|s| s.metrics.lag())
                        .map(|(_, lag)| lag)
                        .sum(),
                    watermark_ms: gauge("watermark_ms").into_iter().max().unwrap_or(0),
                    late_records: gauge("late_records").into_iter().sum(),
                    state_bytes: gauge("state_bytes").into_iter().sum(),
                    peak_state_bytes: gauge("peak_state_bytes").into_iter().sum(),
                    busy: match count {
                        1 => self.busy.total(),
                        _ => self.busy.of_instance(instance),
                    },
                }
            })
            .collect()
    }

    /// Records a completed checkpoint.
    pub fn checkpointed(&self, checkpoint: CheckpointInfo) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_micros
            .fetch_add(checkpoint.duration.as_micros() as u64, Ordering::Relaxed);
        self.checkpoint_held_micros
            .fetch_add(checkpoint.held.as_micros() as u64, Ordering::Relaxed);
        *self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(checkpoint);
    }

    /// The last checkpoint completed, if any.
    pub fn last_checkpoint(&self) -> Option<CheckpointInfo> {
        *self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Says why the job is starting again (or, with `None`, that it runs).
    pub fn set_retrying(&self, reason: Option<String>) {
        *self.retrying.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// Why the job is starting again or waiting for a source's system, while it is.
    pub fn retrying(&self) -> Option<String> {
        let own = self
            .retrying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        own.or_else(|| {
            let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            sources.iter().find_map(|s| s.metrics.unavailable())
        })
    }

    /// Time spent checkpointing so far, from each cut to its output committed.
    pub fn checkpoint_time(&self) -> Duration {
        Duration::from_micros(self.checkpoint_micros.load(Ordering::Relaxed))
    }

    /// Time the sources waited for checkpoints so far.
    pub fn checkpoint_held_time(&self) -> Duration {
        Duration::from_micros(self.checkpoint_held_micros.load(Ordering::Relaxed))
    }

    /// Checkpoints completed by this run.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Time its tasks spent computing so far.
    pub fn busy_time(&self) -> Duration {
        self.busy.total()
    }

    /// Counts rows written by the sink.
    pub fn add_records_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters now; of its plan's instance `instance` alone, where the others run in
    /// other processes.
    pub fn snapshot(
        &self,
        elapsed: Duration,
        plan: &Arc<dyn ExecutionPlan>,
        instance: Option<usize>,
    ) -> JobProgress {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        JobProgress {
            records_in: sources.iter().map(|s| s.metrics.records_in()).sum(),
            bad_records: sources.iter().map(|s| s.metrics.bad_records()).sum(),
            late_records: metric(plan, "late_records", |a, b| a + b, instance),
            peak_state_bytes: metric(plan, "peak_state_bytes", |a, b| a + b, instance),
            // Of the last windows (a stacked window's is the lower one's or behind it).
            watermark_ms: metric(plan, "watermark_ms", u64::max, instance),
            records_out: self.records_out.load(Ordering::Relaxed),
            elapsed,
        }
    }
}

/// One node of a job's plan and what went through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCounters {
    /// Its place in the plan, in pre-order (0 is the root).
    pub node: usize,
    /// What it is (`WindowAggregateExec`, `StreamingTableExec`, ...).
    pub operator: String,
    /// Rows its inputs gave it (none for a source, or while an input does not count).
    pub records_in: Option<u64>,
    /// Rows it gave on (none when the node does not count them).
    pub records_out: Option<u64>,
    /// Records it could not use: malformed ones (a source) or late ones (windows).
    pub errors: u64,
}

/// Adds `plan`'s node and then its children's to `out`; returns the node's rows out.
fn operator_counters(
    plan: &Arc<dyn ExecutionPlan>,
    sources: &[SourceReader],
    out: &mut Vec<OperatorCounters>,
) -> Option<u64> {
    let metrics = plan.metrics();
    let count = |name: &str| {
        metrics
            .as_ref()
            .and_then(|m| m.sum_by_name(name))
            .map(|v| v.as_usize() as u64)
    };
    // A source node counts nothing itself: its readers do (matched by their schema).
    let readers: Vec<&SourceReader> = plan
        .downcast_ref::<StreamingTableExec>()
        .map(|exec| {
            sources
                .iter()
                .filter(|s| Arc::ptr_eq(&s.schema, exec.partition_schema()))
                .collect()
        })
        .unwrap_or_default();
    let index = out.len();
    out.push(OperatorCounters {
        node: index,
        operator: plan.name().to_string(),
        records_in: None,
        records_out: metrics
            .as_ref()
            .and_then(|m| m.output_rows())
            .map(|n| n as u64)
            .or_else(|| {
                (!readers.is_empty()).then(|| readers.iter().map(|s| s.metrics.records_in()).sum())
            }),
        errors: count("late_records").unwrap_or(0)
            + readers.iter().map(|s| s.metrics.bad_records()).sum::<u64>(),
    });
    let inputs: Option<u64> = plan
        .children()
        .into_iter()
        .map(|child| operator_counters(child, sources, out))
        .sum();
    if !plan.children().is_empty() {
        out[index].records_in = inputs;
    }
    out[index].records_out
}

/// One instance of a job and what went through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCounters {
    /// Which instance, from 0.
    pub instance: usize,
    /// Valid records its shares of the sources read.
    pub records_in: u64,
    /// Messages its Kafka partitions have after its position in them.
    pub lag: i64,
    /// Its windows' watermark (epoch ms; 0 before there is one).
    pub watermark_ms: u64,
    /// Records its operators found late (after their windows closed).
    pub late_records: u64,
    /// Bytes of keyed state its operators hold now.
    pub state_bytes: u64,
    /// The most bytes of keyed state its operators held at once.
    pub peak_state_bytes: u64,
    /// Time its tasks spent computing (for a job of parallelism 1, the job's).
    pub busy: Duration,
}

/// The values of the metric `name` that nodes of `plan` running as `count` instances keep
/// for `instance`.
fn instance_metric(
    plan: &Arc<dyn ExecutionPlan>,
    count: usize,
    instance: usize,
    name: &str,
) -> Vec<u64> {
    let mut values = Vec::new();
    let mut nodes = vec![plan];
    while let Some(node) = nodes.pop() {
        if node.output_partitioning().partition_count() == count
            && let Some(metrics) = node.metrics()
        {
            values.extend(
                metrics
                    .iter()
                    .filter(|m| m.value().name() == name && m.partition() == Some(instance))
                    .map(|m| m.value().as_usize() as u64),
            );
        }
        nodes.extend(node.children());
    }
    values
}

/// How far a job has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    /// Valid records read from all sources.
    pub records_in: u64,
    /// Result rows written.
    pub records_out: u64,
    /// Malformed records skipped or dead-lettered.
    pub bad_records: u64,
    /// Records that arrived after their windows closed.
    pub late_records: u64,
    /// The most bytes of keyed state the job's operators held at once.
    pub peak_state_bytes: u64,
    /// The windows' watermark (epoch ms; 0 before there is one).
    pub watermark_ms: u64,
    /// Time since the job started.
    pub elapsed: Duration,
}

impl JobProgress {
    /// Records read per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records_in as f64 / secs
        } else {
            0.0
        }
    }
}

impl std::fmt::Display for JobProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in, {} out, {} bad, {} late, {:.2}s ({:.0} records/s)",
            self.records_in,
            self.records_out,
            self.bad_records,
            self.late_records,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

/// How a job's run ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Its sources ended (or were stopped and drained) and its sink committed.
    Finished,
    /// Stopped at a checkpoint, to be resumed from it.
    Stopped,
}

/// Whether a job runs, ended, or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Reading and writing.
    Running,
    /// Its sources ended (or were stopped) and its sink committed.
    Finished,
    /// Stopped at a checkpoint; a restart resumes it.
    Stopped,
    /// Its sources are held back (`PAUSE JOB`); it keeps its state.
    Paused,
    /// It waits for an external system (this reason): a source's broker out of reach, or a
    /// failure it starts again from its last checkpoint after.
    Retrying(String),
    /// It stopped with this error.
    Failed(String),
}

impl JobStatus {
    /// The status word SHOW JOBS prints.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Stopped => "STOPPED",
            Self::Paused => "PAUSED",
            Self::Retrying(_) => "RETRYING",
            Self::Failed(_) => "FAILED",
        }
    }
}

/// What a running job can be told: stop, pause. Shared by its loop and its sources (through
/// the task's session config).
#[derive(Debug)]
pub struct JobControl {
    stop: StopSignal,
    drain: StopSignal,
    paused: AtomicBool,
}

impl Default for JobControl {
    fn default() -> Self {
        Self {
            stop: StopSignal::new(),
            drain: StopSignal::new(),
            paused: AtomicBool::new(false),
        }
    }
}

impl JobControl {
    /// Asks the job to stop (at a checkpoint, or once its windows flushed).
    pub fn request_stop(&self) {
        self.stop.stop();
    }

    /// Fires when a stop is asked for.
    pub fn stop_requested(&self) -> &StopSignal {
        &self.stop
    }

    /// Asks a checkpointing job to stop with a drain, before it goes on at another
    /// parallelism: its sources end where they are, what is in flight between its instances
    /// is taken in, and its last checkpoint keeps its operators' state, nothing flushed.
    pub fn request_drain(&self) {
        self.drain.stop();
    }

    /// Fires when a drain is asked for.
    pub fn drain_requested(&self) -> &StopSignal {
        &self.drain
    }

    /// Holds the job's sources back, or lets them go on.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    /// Whether the sources are held back.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}

/// What a session keeps of each job it started, for `SHOW JOBS`: it outlives the job.
#[derive(Debug)]
pub struct JobRecord {
    /// The job's (and its sink's) name.
    pub name: String,
    /// Stream or table.
    pub kind: JobKind,
    /// The statement that created it (`START JOB` runs it again).
    pub statement: String,
    /// Where its checkpoints are, when it takes them.
    pub checkpoint_dir: Option<String>,
    /// The one instance of the job this run is, the others running elsewhere; `None`: all.
    pub instance: Option<usize>,
    /// Stop and pause.
    pub control: Arc<JobControl>,
    /// Cancels its task (`STOP JOB ... FORCE`).
    abort: Mutex<Option<tokio::task::AbortHandle>>,
    /// When it started (wall clock).
    pub started_at: std::time::SystemTime,
    started: Instant,
    plan: Arc<dyn ExecutionPlan>,
    metrics: Arc<JobMetrics>,
    /// Set once, when the job ends, with how long it ran.
    outcome: Mutex<Option<(JobStatus, Duration)>>,
}

impl JobRecord {
    /// The job's counters and checkpoints.
    pub fn metrics(&self) -> &Arc<JobMetrics> {
        &self.metrics
    }

    /// The counters now (or when it ended).
    pub fn progress(&self) -> JobProgress {
        let ran = match &*self.outcome.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((_, ran)) => *ran,
            None => self.started.elapsed(),
        };
        self.metrics.snapshot(ran, &self.plan, self.instance)
    }

    /// Each node of its plan with what went through it, root first.
    pub fn operators(&self) -> Vec<OperatorCounters> {
        self.metrics.operators(&self.plan)
    }

    /// Each instance of the job with its counters.
    pub fn instances(&self) -> Vec<InstanceCounters> {
        self.metrics.instances(&self.plan)
    }

    /// Whether it runs, ended or failed.
    pub fn status(&self) -> JobStatus {
        let ended = self
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(status, _)| status.clone());
        match ended {
            Some(status) => status,
            None => match self.metrics.retrying() {
                Some(reason) => JobStatus::Retrying(reason),
                None if self.control.is_paused() => JobStatus::Paused,
                None => JobStatus::Running,
            },
        }
    }

    /// Whether it has not ended (running or paused).
    pub fn is_running(&self) -> bool {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Ends the job at once: nothing more is read or written; what it committed stays.
    /// Returns once its task is gone.
    pub async fn force_stop(&self) {
        self.end(JobStatus::Stopped);
        let abort = self.abort.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(abort) = abort {
            abort.abort();
            while !abort.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// What `SHOW JOBS` shows of it, as run on `node`.
    pub fn summary(&self, node: &str) -> crate::cluster::JobSummary {
        let progress = self.progress();
        let status = self.status();
        let checkpoint = self.metrics.last_checkpoint();
        let millis = |time: std::time::SystemTime| {
            time.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        crate::cluster::JobSummary {
            name: self.name.clone(),
            node: node.to_string(),
            kind: match self.kind {
                JobKind::Stream => "stream",
                JobKind::Table => "table",
            }
            .to_string(),
            status: status.as_str().to_string(),
            started_ms: millis(self.started_at),
            records_in: progress.records_in,
            records_out: progress.records_out,
            records_per_second: (progress.rate() * 10.0).round() / 10.0,
            bad_records: progress.bad_records,
            late_records: progress.late_records,
            running_seconds: progress.elapsed.as_secs_f64(),
            cpu_seconds: self.metrics.busy_time().as_secs_f64(),
            watermark_ms: progress.watermark_ms,
            lag: self
                .metrics
                .lag()
                .iter()
                .map(|(source, partition, lag)| format!("{source}[{partition}]={lag}"))
                .collect::<Vec<_>>()
                .join(", "),
            last_checkpoint: checkpoint.map(|c| c.epoch),
            last_checkpoint_ms: checkpoint.map(|c| millis(c.at)),
            last_checkpoint_duration_ms: checkpoint.map(|c| c.duration.as_millis() as u64),
            last_checkpoint_pause_ms: checkpoint.map(|c| c.held.as_millis() as u64),
            state_bytes: checkpoint.map_or(progress.peak_state_bytes, |c| c.state_bytes),
            peak_state_bytes: progress.peak_state_bytes,
            last_error: match status {
                JobStatus::Failed(e) | JobStatus::Retrying(e) => Some(e),
                _ => None,
            },
        }
    }

    fn end(&self, status: JobStatus) {
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        outcome.get_or_insert((status, self.started.elapsed()));
    }
}

/// A job started by `CREATE STREAM` / `CREATE TABLE`.
#[derive(Debug)]
pub struct RunningJob {
    /// The job's (and its sink's) name.
    pub name: String,
    /// Stream or table.
    pub kind: JobKind,
    /// Whether every source ends by itself (none is watching).
    pub bounded: bool,
    record: Arc<JobRecord>,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// What a job is, before it runs.
pub(crate) struct JobSpec {
    pub name: String,
    pub kind: JobKind,
    pub statement: String,
    pub checkpoint_dir: Option<String>,
    pub instance: Option<usize>,
    pub control: Arc<JobControl>,
    pub bounded: bool,
    pub plan: Arc<dyn ExecutionPlan>,
    pub metrics: Arc<JobMetrics>,
}

impl RunningJob {
    /// Spawns `work` as the job; its outcome is kept in the job's record.
    pub(crate) fn spawn(
        spec: JobSpec,
        work: impl std::future::Future<Output = Result<JobEnd>> + Send + 'static,
    ) -> Self {
        let JobSpec {
            name,
            kind,
            statement,
            checkpoint_dir,
            instance,
            control,
            bounded,
            plan,
            metrics,
        } = spec;
        let record = Arc::new(JobRecord {
            name: name.clone(),
            kind,
            statement,
            checkpoint_dir,
            instance,
            control,
            abort: Mutex::default(),
            started_at: std::time::SystemTime::now(),
            started: Instant::now(),
            plan,
            metrics,
            outcome: Mutex::default(),
        });
        let outcome = record.clone();
        let work = Timed::new(work, record.metrics.busy.clone());
        // Every line the job logs carries its name.
        let span = tracing::info_span!("job", job = %name);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let result = work.await;
                let status = match &result {
                    Ok(JobEnd::Finished) => JobStatus::Finished,
                    Ok(JobEnd::Stopped) => JobStatus::Stopped,
                    Err(e) => JobStatus::Failed(e.to_string()),
                };
                outcome.end(status);
                result.map(|_| ())
            },
            span,
        ));
        *record.abort.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        Self {
            name,
            kind,
            bounded,
            record,
            task,
        }
    }

    /// What the session keeps of this job.
    pub fn record(&self) -> Arc<JobRecord> {
        self.record.clone()
    }

    /// The counters now.
    pub fn progress(&self) -> JobProgress {
        self.record.progress()
    }

    /// Whether the job has ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the job to end (its sources ended or were stopped, its sink committed).
    pub async fn wait(self) -> Result<JobProgress> {
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            // `STOP JOB ... FORCE`: the record says so already.
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => {
                let message = format!("job '{}' crashed: {e}", self.name);
                self.record.end(JobStatus::Failed(message.clone()));
                Err(crate::error::EngineError::Internal(message))
            }
        };
        outcome.map(|()| self.record.progress())
    }
}

/// A metric over every operator of the plan, combined with `combine`: over the operators'
/// instance `instance` alone, where the others run in other processes.
fn metric(
    plan: &Arc<dyn ExecutionPlan>,
    name: &str,
    combine: fn(u64, u64) -> u64,
    instance: Option<usize>,
) -> u64 {
    let own = match plan.metrics() {
        // The instances of a parallel operator: a watermark is the least of theirs (one
        // without a watermark yet holds it at 0), a count is their sum.
        Some(metrics) if name == "watermark_ms" => metrics
            .iter()
            .filter(|m| m.value().name() == name)
            .filter(|m| instance.is_none_or(|i| m.partition() == Some(i)))
            .map(|m| m.value().as_usize() as u64)
            .min()
            .unwrap_or(0),
        Some(metrics) => metrics.sum_by_name(name).map_or(0, |v| v.as_usize() as u64),
        None => 0,
    };
    plan.children()
        .into_iter()
        .map(|child| metric(child, name, combine, instance))
        .fold(own, combine)
}
