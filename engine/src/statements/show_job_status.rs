//! `SHOW JOB STATUS 'name'`: one job's status and every counter, a row per property.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::Result;
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
        async move { StatementOutput::rows(listing::show_job_status(&run.engine.jobs, &self.name)?) }
            .boxed()
    }
}
