//! A running continuous query: its task, its counters, its summary.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::physical_plan::ExecutionPlan;
use ferris_connectors::SourceMetrics;

use crate::error::Result;
use crate::statement::JobKind;

/// Counters of one job, shared with its sources (through the task's session config) and sink.
#[derive(Debug, Default)]
pub struct JobMetrics {
    sources: Mutex<Vec<Arc<SourceMetrics>>>,
    records_out: AtomicU64,
}

impl JobMetrics {
    /// Counters for one more source reader of the job.
    pub fn register_source(&self) -> Arc<SourceMetrics> {
        let metrics = Arc::new(SourceMetrics::default());
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(metrics.clone());
        metrics
    }

    /// Counts rows written by the sink.
    pub fn add_records_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self, elapsed: Duration, plan: &Arc<dyn ExecutionPlan>) -> JobProgress {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        JobProgress {
            records_in: sources.iter().map(|s| s.records_in()).sum(),
            bad_records: sources.iter().map(|s| s.bad_records()).sum(),
            late_records: metric_sum(plan, "late_records"),
            peak_state_bytes: metric_sum(plan, "peak_state_bytes"),
            records_out: self.records_out.load(Ordering::Relaxed),
            elapsed,
        }
    }
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

/// A job started by `CREATE STREAM` / `CREATE TABLE`.
#[derive(Debug)]
pub struct RunningJob {
    /// The job's (and its sink's) name.
    pub name: String,
    /// Stream or table.
    pub kind: JobKind,
    /// Whether every source ends by itself (none is watching).
    pub bounded: bool,
    plan: Arc<dyn ExecutionPlan>,
    metrics: Arc<JobMetrics>,
    started: Instant,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl RunningJob {
    pub(crate) fn new(
        name: String,
        kind: JobKind,
        bounded: bool,
        plan: Arc<dyn ExecutionPlan>,
        metrics: Arc<JobMetrics>,
        task: tokio::task::JoinHandle<Result<()>>,
    ) -> Self {
        Self {
            name,
            kind,
            bounded,
            plan,
            metrics,
            started: Instant::now(),
            task,
        }
    }

    /// The counters now.
    pub fn progress(&self) -> JobProgress {
        self.metrics.snapshot(self.started.elapsed(), &self.plan)
    }

    /// Whether the job has ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the job to end (its sources ended or were stopped, its sink committed).
    pub async fn wait(self) -> Result<JobProgress> {
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(crate::error::EngineError::Internal(format!(
                "job '{}' crashed: {e}",
                self.name
            ))),
        };
        outcome.map(|()| self.metrics.snapshot(self.started.elapsed(), &self.plan))
    }
}

/// A metric summed over every operator of the plan.
fn metric_sum(plan: &Arc<dyn ExecutionPlan>, name: &str) -> u64 {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name(name))
        .map_or(0, |v| v.as_usize() as u64);
    own + plan
        .children()
        .into_iter()
        .map(|child| metric_sum(child, name))
        .sum::<u64>()
}
