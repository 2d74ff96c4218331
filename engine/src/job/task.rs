//! What a plan runs in: DataFusion's task context carrying a job's counters, checkpoint
//! barrier and control (its operators and sources find them there), the one instance it
//! runs when its instances run in several processes, and its memory limit.

use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use ferris_connectors::{Sink, SourceConnector};
use ferris_streaming::checkpoint::CheckpointBarrier;
use ferris_streaming::process_instance::ProcessInstance;

use crate::error::{EngineError, Result};
use crate::job::record::{JobControl, JobMetrics};

/// What a job's plan finds in its task's config: its counters, its checkpoint barrier, its
/// stop and pause, and the one instance it runs here when its instances run in several
/// processes.
pub(crate) struct JobRun {
    pub metrics: Arc<JobMetrics>,
    pub barrier: Option<Arc<CheckpointBarrier>>,
    pub control: Arc<JobControl>,
    pub process: Option<Arc<ProcessInstance>>,
}

/// Which instance of a parallel job a process runs, the others running in other processes
/// (`ferris run --instance I`, a cluster's node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceToRun {
    /// Its index.
    pub index: usize,
    /// How many times the job's parallelism has changed (`ALTER JOB ... SET PARALLELISM`).
    /// The instances of each era keep their checkpoints, and meet in exchange topics, of
    /// their own; the first checkpoint of an instance takes up the drained last ones of
    /// the era before.
    pub era: u64,
}

/// The instance of a parallel job this process runs, the others running in other
/// processes (`ferris run --instance I`).
#[derive(Debug, Clone)]
pub(crate) struct InstanceHere {
    pub(crate) index: usize,
    /// Its era ([`InstanceToRun::era`]).
    pub(crate) era: u64,
    /// How many instances the job runs as.
    pub(crate) count: usize,
    /// What this instance reads, by source name: each divided source's share of this
    /// instance, and the sources that do not divide in instance 0. Its checkpoints hold
    /// and commit their positions only.
    pub(crate) sources: Vec<(String, Arc<dyn SourceConnector>)>,
}

/// The instance of job `job` this process runs (`here`), its exchanges with the other
/// instances' processes riding in `sink`'s writes; `None` where one process runs them all.
pub(crate) fn process_instance(
    job: &str,
    here: Option<&InstanceHere>,
    sink: &dyn Sink,
) -> Result<Option<Arc<ProcessInstance>>> {
    let Some(here) = here else {
        return Ok(None);
    };
    let transport = sink.exchange_transport(job, here.era).ok_or_else(|| {
        EngineError::Catalog(format!(
            "job '{job}' runs instance {} of {} here, the others in other processes: its exchanges between them go through its Kafka sink's producer, and its sink is not a Kafka topic",
            here.index, here.count
        ))
    })?;
    Ok(Some(Arc::new(ProcessInstance {
        index: here.index,
        count: here.count,
        transport,
    })))
}

/// The context a plan runs in: the session's, with a job's counters, barrier and control
/// in its config, and its memory limit.
pub(crate) fn task_context(
    state: &datafusion::execution::SessionState,
    memory_limit: Option<usize>,
    job: Option<&JobRun>,
) -> Result<Arc<TaskContext>> {
    let mut config = state.config().clone();
    if let Some(job) = job {
        config = config
            .with_extension(job.metrics.clone())
            .with_extension(job.metrics.busy.clone())
            .with_extension(job.control.clone());
        if let Some(barrier) = &job.barrier {
            config = config.with_extension(barrier.clone());
        }
        if let Some(process) = &job.process {
            config = config.with_extension(process.clone());
        }
    }
    task_with_config(state, config, memory_limit)
}

/// The task context of `state` with `config`, its memory limited to `memory_limit` bytes.
pub(crate) fn task_with_config(
    state: &datafusion::execution::SessionState,
    config: datafusion::execution::context::SessionConfig,
    memory_limit: Option<usize>,
) -> Result<Arc<TaskContext>> {
    let mut task = TaskContext::from(state).with_session_config(config);
    if let Some(limit) = memory_limit {
        task = task.with_runtime(
            RuntimeEnvBuilder::new()
                .with_memory_limit(limit, 1.0)
                .build_arc()?,
        );
    }
    Ok(Arc::new(task))
}
