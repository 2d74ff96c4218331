//! What a plan runs in: DataFusion's task context carrying a job's counters, checkpoint
//! barrier and control (its operators and sources find them there), and its memory limit.

use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use ferris_streaming::checkpoint::CheckpointBarrier;

use crate::error::Result;
use crate::job::record::{JobControl, JobMetrics};

/// What a job's plan finds in its task's config: its counters, its checkpoint barrier, its
/// stop and pause.
pub(crate) struct JobRun {
    pub metrics: Arc<JobMetrics>,
    pub barrier: Option<Arc<CheckpointBarrier>>,
    pub control: Arc<JobControl>,
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
    }
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
