//! What the leader places on a node: a job whole, or each instance of a job whose instances
//! run apart ([`ClusterJob::instances`]), as Flink places each parallel subtask in a slot of
//! its own. A unit's key names its `assignments/`, `running/` and `status/` keys: the job's
//! name, or `<name>#<i>` for its instance `i`.

use ferris_engine::cluster::ClusterJob;

/// A job whole, or one of its instances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unit<'a> {
    pub job: &'a ClusterJob,
    /// Which instance, for a job whose instances run apart.
    pub instance: Option<usize>,
}

impl Unit<'_> {
    /// The name of its keys.
    pub(crate) fn key(&self) -> String {
        match self.instance {
            Some(i) => format!("{}#{i}", self.job.name),
            None => self.job.name.clone(),
        }
    }
}

/// The units of `job`: itself, or each of its instances.
pub(crate) fn units_of(job: &ClusterJob) -> Vec<Unit<'_>> {
    match job.instances {
        0 => vec![Unit {
            job,
            instance: None,
        }],
        count => (0..count)
            .map(|i| Unit {
                job,
                instance: Some(i),
            })
            .collect(),
    }
}

/// The units of `jobs`, the oldest job's first.
pub(crate) fn units(jobs: &[ClusterJob]) -> impl Iterator<Item = Unit<'_>> {
    jobs.iter().flat_map(units_of)
}
