//! Submitting a job to a cluster: checked and entered in this node's catalog as any job is,
//! then kept in the cluster's shared catalog, whose leader picks the node that runs it.

use datafusion::common::ScalarValue;

use crate::cluster::ClusterJob;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::job::JobKind;
use crate::job::manifest::now_ms;
use crate::job::start::InsertTarget;
use crate::statements::streaming_query::StreamingQuery;

impl Engine {
    /// Submits the job `name` to the cluster, if the session is in one; `false` when it is
    /// not, or when every source of the job ends by itself (a one-shot insert): the job runs
    /// here then.
    pub(crate) async fn submit_job(
        &mut self,
        kind: JobKind,
        name: &str,
        query: &StreamingQuery,
        statement: &str,
        into: Option<&InsertTarget>,
        parameters: &[ScalarValue],
    ) -> Result<bool> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(false);
        };
        if cluster.job(name).await?.is_some() {
            return Err(EngineError::Sql {
                message: format!(
                    "a job '{name}' exists in the cluster already (SHOW JOBS lists it; DROP it to create it anew)"
                ),
                position: query.position,
            });
        }
        let declared = self
            .declare_job(kind, name, query, into, parameters)
            .await?;
        if into.is_some() && declared.bounded() {
            return Ok(false);
        }
        cluster
            .submit(ClusterJob {
                name: name.to_string(),
                kind: match kind {
                    JobKind::Stream => "stream",
                    JobKind::Table => "table",
                }
                .to_string(),
                sql: statement.to_string(),
                checkpoint_dir: declared.checkpoint_dir(),
                stopped: false,
                force: false,
                paused: false,
                generation: 0,
                created_ms: now_ms(),
            })
            .await?;
        Ok(true)
    }
}
