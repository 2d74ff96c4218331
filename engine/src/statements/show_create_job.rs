//! `SHOW CREATE JOB 'name'`: the statement a job was created from, as kept (by the cluster's
//! catalog, or under the server's state dir), `ALTER JOB`'s changes included: what
//! `ferris deploy` compares a file's statement with before it creates the job again.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{EngineError, Result};
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, quoted_name};

/// `SHOW CREATE JOB 'name'`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowCreateJob {
    /// The job.
    pub name: String,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["SHOW CREATE JOB"],
    synopsis: "SHOW",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let name = quoted_name(&sig[3..], sig[2], "the job's name")?;
    Ok(Box::new(ShowCreateJob { name }))
}

impl StatementKind for ShowCreateJob {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let engine = run.engine;
            let name = &self.name;
            let kept = match &engine.cluster {
                Some(cluster) => cluster.job(name).await?.map(|job| job.sql),
                None => match engine.latest_job(name) {
                    Some(job) => Some(job.statement.clone()),
                    None => engine
                        .stored_jobs()
                        .map(|stored| stored.get(name))
                        .transpose()?
                        .flatten()
                        .map(|job| job.sql),
                },
            };
            let sql = kept.ok_or_else(|| {
                EngineError::Catalog(format!("SHOW CREATE JOB '{name}': no job of that name"))
            })?;
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("job", Arc::new(StringArray::from(vec![name.as_str()]))),
                ("statement", Arc::new(StringArray::from(vec![sql]))),
            ];
            StatementOutput::rows(RecordBatch::try_from_iter(columns)?)
        }
        .boxed()
    }
}
