//! A new job from a statement: submitted to the cluster when the session is in one (checked
//! and entered in this node's catalog as any job is, then kept in the cluster's shared
//! catalog, whose leader picks the node that runs it), else started here and kept under the
//! state dir for a restart.

use crate::cluster::ClusterJob;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::job::JobKind;
use crate::job::manifest::now_ms;
use crate::job::start::NewJob;
use crate::job::stored::StoredJob;
use crate::listing;
use crate::statements::StatementOutput;
use crate::statements::parser::with_option;

impl Engine {
    /// Runs `job` where it belongs; a one-shot job (every source ends by itself) is kept for
    /// a restart only when `keep_bounded` says so.
    pub(crate) async fn launch_job(
        &mut self,
        job: NewJob<'_>,
        keep_bounded: bool,
    ) -> Result<StatementOutput> {
        if self.submit_job(&job).await? {
            return StatementOutput::rows(listing::job_reply(job.name, "SUBMITTED")?);
        }
        let (name, sql) = (job.name.to_string(), job.statement.to_string());
        let started = self.start_job(job).await?;
        if let Some(stored) = self.stored_jobs()
            && (keep_bounded || !started.bounded)
        {
            stored.save(StoredJob {
                name,
                sql,
                stopped: false,
            })?;
        }
        Ok(StatementOutput::Job(started))
    }

    /// Submits `job` to the cluster, if the session is in one; `false` when it is not, or
    /// when every source of an insert ends by itself (a one-shot insert runs here).
    async fn submit_job(&mut self, job: &NewJob<'_>) -> Result<bool> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(false);
        };
        let name = job.name;
        if cluster.job(name).await?.is_some() {
            return Err(EngineError::Sql {
                message: format!(
                    "a job '{name}' exists in the cluster already (SHOW JOBS lists it; DROP it to create it anew)"
                ),
                position: job.query.position,
            });
        }
        let declared = self.declare_job(job).await?;
        if job.into.is_some() && declared.bounded() {
            return Ok(false);
        }
        // Each node starting an instance must see as many as the others: the parallelism
        // this node resolved ('auto', the server's default) goes into the statement.
        let instances = declared.instances_apart();
        let sql = match instances {
            0 => job.statement.to_string(),
            n => with_option(job.statement, "parallelism", &n.to_string())
                .map_err(|e| EngineError::Internal(format!("job '{name}': its statement: {e}")))?,
        };
        cluster
            .submit(ClusterJob {
                name: name.to_string(),
                kind: match job.kind {
                    JobKind::Stream => "stream",
                    JobKind::Table => "table",
                }
                .to_string(),
                sql,
                checkpoint_dir: declared.checkpoint_dir(),
                stopped: false,
                force: false,
                paused: false,
                generation: 0,
                created_ms: now_ms(),
                instances,
                era: 0,
                draining: false,
            })
            .await?;
        Ok(true)
    }
}
