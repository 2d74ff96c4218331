//! What `START`, `STOP`, `PAUSE` and `RESUME JOB` ask of a job, wherever it runs.

/// What a job command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobCommand {
    /// Starts a stopped or failed job again, from its last checkpoint.
    Start,
    /// Stops a job: at a checkpoint if it takes them (a start resumes it), else after its
    /// sources end and its windows flush.
    Stop,
    /// Stops a job at once: no checkpoint, no flush; its output stays as last committed.
    StopForce,
    /// Holds a job's sources back; it keeps its state.
    Pause,
    /// Lets a paused job's sources go on.
    Resume,
}

impl JobCommand {
    /// The job's status once the command has acted.
    pub fn status(self) -> &'static str {
        match self {
            Self::Start | Self::Resume => "RUNNING",
            Self::Stop => "STOPPING",
            Self::StopForce => "STOPPED",
            Self::Pause => "PAUSED",
        }
    }
}
