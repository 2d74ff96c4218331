//! A job: a continuous query that runs until stopped, as one unit that can be started,
//! stopped and resumed from its checkpoints.
//!
//! [`start`] makes one from a prepared query, [`run`] is its loop, [`checkpoint`] keeps its
//! state, [`stored`] keeps its statement for a restart, [`submit`] runs a new one where it
//! belongs (here, or a cluster), [`materialized`] makes its output readable by name,
//! [`kept_output`] is the output of a job the server keeps without a sink, and [`record`] is
//! what the rest of the engine sees of it.

pub mod checkpoint;
pub mod command;
pub(crate) mod kept_output;
pub mod manifest;
pub mod materialized;
pub mod record;
pub(crate) mod run;
pub(crate) mod start;
pub mod stored;
pub(crate) mod submit;
mod table_key;
pub(crate) mod task;

pub use task::InstanceToRun;

pub use record::{
    CheckpointInfo, InstanceCounters, JobControl, JobEnd, JobKind, JobMetrics, JobProgress,
    JobRecord, JobStatus, OperatorCounters, RunningJob,
};
