//! `SHOW JOB STATUS 'name'`: one job's status and every counter, a row per property.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{EngineError, Result};
use crate::listing;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, quoted_name};

/// `SHOW JOB STATUS 'name'`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowJobStatus {
    /// The job.
    pub name: String,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["SHOW JOB STATUS"],
    synopsis: "SHOW",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let name = quoted_name(&sig[3..], sig[2], "the job's name")?;
    Ok(Box::new(ShowJobStatus { name }))
}

impl StatementKind for ShowJobStatus {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let engine = run.engine;
            let name = &self.name;
            // The latest job of that name: one started again is listed after the one before.
            let job = engine
                .job_summaries()
                .await?
                .into_iter()
                .rfind(|j| &j.name == name)
                .ok_or_else(|| {
                    EngineError::Catalog(format!("SHOW JOB STATUS '{name}': no job of that name"))
                })?;
            // The nodes of its plan, when it runs (or ran) here whole (not one instance).
            let (operators, instances) = match engine.latest_job(name) {
                Some(local) if job.node == engine.node && local.instance.is_none() => {
                    (local.operators(), local.instances())
                }
                _ => (vec![], vec![]),
            };
            let placements = match &engine.cluster {
                Some(cluster) => cluster.placements(name).await?,
                None => vec![],
            };
            StatementOutput::rows(listing::show_job_status(
                &job,
                &operators,
                &instances,
                &placements,
            )?)
        }
        .boxed()
    }
}
