//! `CREATE STREAM|TABLE name AS <query>`: a continuous job writing to the sink `name`.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::job::JobKind;
use crate::job::start::NewJob;
use crate::statements::clauses::query_from;
use crate::statements::kind::{Execution, Explained, StatementKind, StatementOutput};
use crate::statements::parser::{
    StatementSyntax, StatementTokens, describe_token, error_at, identifier, keyword,
};
use crate::statements::streaming_query::StreamingQuery;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::TokenWithSpan;

/// `CREATE STREAM|TABLE name AS <query>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateJob {
    /// Stream (append) or table (keyed upserts).
    pub kind: JobKind,
    /// The job's and its sink's name.
    pub name: String,
    /// The query.
    pub query: StreamingQuery,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["CREATE STREAM", "CREATE TABLE"],
    synopsis: "CREATE STREAM, CREATE TABLE",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let kind = job_kind(sig[1]);
    let name = identifier(sig.get(2), "a name", sig[1])?;
    if !keyword(sig.get(3), Keyword::AS) {
        let at = sig.get(3).copied().unwrap_or(sig[2]);
        return Err(error_at(
            at,
            format!(
                "expected AS after CREATE {kind} {name}, found {}",
                describe_token(at)
            ),
        ));
    }
    if sig.len() < 5 {
        return Err(error_at(sig[3], "expected a query after AS"));
    }
    let query = query_from(statement, 4)?;
    Ok(Box::new(CreateJob { kind, name, query }))
}

impl CreateJob {
    fn job<'a>(
        &'a self,
        name: &'a str,
        statement: &'a str,
        parameters: &'a [datafusion::common::ScalarValue],
        instance: Option<crate::job::InstanceToRun>,
    ) -> NewJob<'a> {
        NewJob {
            kind: self.kind,
            name,
            query: &self.query,
            statement,
            into: None,
            parameters,
            instance,
        }
    }
}

/// `STREAM` or `TABLE`, the word after `CREATE` or `DROP`.
pub(crate) fn job_kind(word: &TokenWithSpan) -> JobKind {
    if keyword(Some(&word), Keyword::TABLE) {
        JobKind::Table
    } else {
        JobKind::Stream
    }
}

impl StatementKind for CreateJob {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        // A server started on its state dir again shows the job, even one that finished.
        let job = self.job(
            &self.name,
            &run.statement.text,
            run.parameters,
            run.instance,
        );
        async move { run.engine.launch_job(job, true).await }.boxed()
    }

    fn execute_as<'a>(
        &'a self,
        run: Execution<'a>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<StatementOutput>> {
        let job = self.job(name, &run.statement.text, &[], run.instance);
        async move { run.engine.start_job(job).await.map(StatementOutput::Job) }.boxed()
    }

    fn declare_as<'a>(&'a self, run: Execution<'a>, name: &'a str) -> BoxFuture<'a, Result<()>> {
        let job = self.job(name, &run.statement.text, &[], run.instance);
        async move { run.engine.declare_job(&job).await.map(drop) }.boxed()
    }

    fn explained(&self) -> Option<Explained<'_>> {
        Some(Explained {
            query: &self.query,
            job: Some(&self.name),
        })
    }
}
