//! `EXPLAIN <statement>`: DataFusion's optimized logical plan and the physical plan as it
//! will run, with the streaming operators in it; nothing runs.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::displayable;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{EngineError, Result};
use crate::statements::kind::{Execution, Statement, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, error_at};

/// `EXPLAIN <statement>`.
#[derive(Debug, Clone)]
pub struct Explain {
    /// The statement explained.
    pub inner: Box<Statement>,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["EXPLAIN"],
    synopsis: "EXPLAIN",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let Some(inner_start) = statement.sig.get(1) else {
        return Err(error_at(
            statement.sig[0],
            "expected a statement after EXPLAIN",
        ));
    };
    let inner = statement.statement_from(1)?;
    if inner.kind.downcast_ref::<Explain>().is_some() {
        return Err(error_at(inner_start, "EXPLAIN EXPLAIN is not a statement"));
    }
    Ok(Box::new(Explain {
        inner: Box::new(inner),
    }))
}

/// `EXPLAIN statement`, if the statement plans a query (a `CREATE STREAM|TABLE` or a query).
pub fn explain(statement: &Statement) -> Option<Statement> {
    statement.kind.explained()?;
    Some(Statement {
        position: statement.position,
        text: format!("EXPLAIN {}", statement.text),
        kind: Arc::new(Explain {
            inner: Box::new(statement.clone()),
        }),
        hints: statement.hints.clone(),
    })
}

impl StatementKind for Explain {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let Some(explained) = self.inner.kind.explained() else {
                return Err(EngineError::Sql {
                    message: "EXPLAIN takes a query or a CREATE STREAM / CREATE TABLE".into(),
                    position: self.inner.position,
                });
            };
            let prepared = run
                .engine
                .prepare(explained.query, explained.job, None, &[], run.instance)
                .await?;
            let logical = run.engine.ctx.state().optimize(&prepared.logical)?;
            let physical = displayable(prepared.plan.as_ref()).indent(true).to_string();
            StatementOutput::rows(RecordBatch::try_from_iter([
                (
                    "plan_type",
                    Arc::new(StringArray::from(vec!["logical_plan", "physical_plan"])) as ArrayRef,
                ),
                (
                    "plan",
                    Arc::new(StringArray::from(vec![
                        logical.display_indent().to_string(),
                        physical,
                    ])) as ArrayRef,
                ),
            ])?)
        }
        .boxed()
    }
}
