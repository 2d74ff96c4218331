//! `INSERT INTO name <query>`: a job appending the query's rows to the stream `name` (its
//! sink, or its topic for a Kafka source).

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::job::JobKind;
use crate::job::start::{InsertTarget, NewJob};
use crate::statements::clauses::query_from;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, error_at, identifier, keyword};
use crate::statements::streaming_query::StreamingQuery;

/// `INSERT INTO target <query>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// The stream written to.
    pub target: String,
    /// The query.
    pub query: StreamingQuery,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["INSERT INTO"],
    synopsis: "INSERT INTO",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let target = identifier(sig.get(2), "the stream to insert into", sig[1])?;
    let Some(query_start) = sig.get(3) else {
        return Err(error_at(
            sig[2],
            "expected a query (SELECT or VALUES) after the name",
        ));
    };
    if matches!(query_start.token, Token::LParen)
        && !sig.get(4).is_some_and(|t| {
            keyword(Some(t), Keyword::SELECT)
                || keyword(Some(t), Keyword::WITH)
                || keyword(Some(t), Keyword::VALUES)
        })
    {
        return Err(error_at(
            query_start,
            "INSERT INTO takes no column list: the query's columns must be the stream's, in order",
        ));
    }
    let query = query_from(statement, 3)?;
    Ok(Box::new(Insert { target, query }))
}

impl StatementKind for Insert {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let (name, into) = insert_target(run.engine, &self.target, &self.query, None).await?;
            // A continuous insert starts again with the server; a one-shot one (values,
            // files read once) is done once.
            let job = self.job(
                &name,
                into,
                &run.statement.text,
                run.parameters,
                run.instance,
            );
            run.engine.launch_job(job, false).await
        }
        .boxed()
    }

    fn execute_as<'a>(
        &'a self,
        run: Execution<'a>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let (name, into) =
                insert_target(run.engine, &self.target, &self.query, Some(name)).await?;
            let job = self.job(&name, into, &run.statement.text, &[], run.instance);
            run.engine.start_job(job).await.map(StatementOutput::Job)
        }
        .boxed()
    }

    fn declare_as<'a>(&'a self, run: Execution<'a>, name: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            let (name, into) =
                insert_target(run.engine, &self.target, &self.query, Some(name)).await?;
            let job = self.job(&name, into, &run.statement.text, &[], run.instance);
            run.engine.declare_job(&job).await.map(drop)
        }
        .boxed()
    }
}

impl Insert {
    fn job<'a>(
        &'a self,
        name: &'a str,
        into: InsertTarget,
        statement: &'a str,
        parameters: &'a [datafusion::common::ScalarValue],
        instance: Option<crate::job::InstanceToRun>,
    ) -> NewJob<'a> {
        NewJob {
            kind: JobKind::Stream,
            name,
            query: &self.query,
            statement,
            into: Some(into),
            parameters,
            instance,
        }
    }
}

/// Where `INSERT INTO target` writes, and the job's name: `name` for a kept job, else
/// `insert_into_<target>` (`_2`, ... while that name is taken).
async fn insert_target(
    engine: &mut Engine,
    target: &str,
    query: &StreamingQuery,
    name: Option<&str>,
) -> Result<(String, InsertTarget)> {
    let error = |message: String| EngineError::Sql {
        message,
        position: query.position,
    };
    let entry = engine.catalog.get(target).cloned().ok_or_else(|| {
        error(format!(
            "no stream '{target}' to insert into (SHOW STREAMS lists them)"
        ))
    })?;
    let Some(writer) = &entry.writer else {
        return Err(error(format!(
            "'{target}' is a {} read from {}: nothing writes to it",
            entry.kind.as_str(),
            entry.location
        )));
    };
    // Each insert has a name of its own (its checkpoints are kept under it); a kept one
    // keeps its name when the server starts it again.
    let name = match name {
        Some(name) => name.to_string(),
        None => {
            let kept: Vec<String> = match &engine.cluster {
                Some(cluster) => cluster.jobs().await?.into_iter().map(|j| j.name).collect(),
                None => engine
                    .stored_jobs()
                    .map(|s| s.load())
                    .transpose()?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|j| j.name)
                    .collect(),
            };
            let taken = |name: &str| {
                engine.latest_job(name).is_some()
                    || kept.iter().any(|j| j.eq_ignore_ascii_case(name))
                    || engine.catalog.get(name).is_some()
            };
            let mut name = format!("insert_into_{target}");
            let mut n = 1;
            while taken(&name) {
                n += 1;
                name = format!("insert_into_{target}_{n}");
            }
            name
        }
    };
    let writer = writer
        .for_insert(target, &name)
        .map_err(|e| error(e.to_string()))?;
    let columns = entry
        .schema
        .fields()
        .iter()
        .filter(|f| !entry.metadata_columns.contains(f.name()))
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let into = InsertTarget {
        target: target.to_string(),
        writer,
        columns,
    };
    Ok((name, into))
}
