//! A plain query (`SELECT`, `WITH`, `VALUES`): its rows go to the caller, for as long as
//! its sources last.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::statements::clauses::query_from;
use crate::statements::kind::{Execution, Explained, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens};
use crate::statements::streaming_query::StreamingQuery;

/// A query whose rows go to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The query.
    pub query: StreamingQuery,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["SELECT", "WITH", "VALUES", "("],
    synopsis: "SELECT",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    Ok(Box::new(Query {
        query: query_from(statement, 0)?,
    }))
}

impl StatementKind for Query {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let prepared = run
                .engine
                .prepare(&self.query, None, None, run.parameters, None)
                .await?;
            Ok(StatementOutput::Rows(run.engine.run_plan(&prepared, None)?))
        }
        .boxed()
    }

    fn explained(&self) -> Option<Explained<'_>> {
        Some(Explained {
            query: &self.query,
            job: None,
        })
    }
}
