//! `EXPLAIN <statement>`: DataFusion's optimized logical plan and the physical plan as it
//! will run, with the streaming operators in it; nothing runs.
//!
//! `EXPLAIN ANALYZE <statement>`: the statement's query runs to its end (its sources must
//! end), its rows counted and dropped (a `CREATE`'s sink is not written), and the physical
//! plan comes back with what each operator did: rows out, compute time, late rows, peak
//! state.
//!
//! Both add a `sources` row: what each source's decoders decode (the columns the plan
//! reads), and for `EXPLAIN ANALYZE` the records they gave and set aside.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::displayable;
use datafusion::sql::sqlparser::keywords::Keyword;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};

use crate::error::{EngineError, Result};
use crate::job::JobMetrics;
use crate::prepare::PreparedQuery;
use crate::source::SourceScan;
use crate::statements::kind::{Execution, Statement, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, error_at, keyword};

/// `EXPLAIN [ANALYZE] <statement>`.
#[derive(Debug, Clone)]
pub struct Explain {
    /// The statement explained.
    pub inner: Box<Statement>,
    /// Whether it runs first (`EXPLAIN ANALYZE`).
    pub analyze: bool,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["EXPLAIN"],
    synopsis: "EXPLAIN",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let analyze = keyword(statement.sig.get(1), Keyword::ANALYZE);
    let first = if analyze { 2 } else { 1 };
    let Some(inner_start) = statement.sig.get(first) else {
        return Err(error_at(
            statement.sig[first - 1],
            format!(
                "expected a statement after {}",
                if analyze {
                    "EXPLAIN ANALYZE"
                } else {
                    "EXPLAIN"
                }
            ),
        ));
    };
    let inner = statement.statement_from(first)?;
    if inner.kind.downcast_ref::<Explain>().is_some() {
        return Err(error_at(inner_start, "EXPLAIN EXPLAIN is not a statement"));
    }
    Ok(Box::new(Explain {
        inner: Box::new(inner),
        analyze,
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
            analyze: false,
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
            if self.analyze {
                return analyze(&run, &prepared, self.inner.position).await;
            }
            let logical = run.engine.ctx.state().optimize(&prepared.logical)?;
            let physical = displayable(prepared.plan.as_ref()).indent(true).to_string();
            plans(&[
                ("logical_plan", logical.display_indent().to_string()),
                ("physical_plan", physical),
                ("sources", sources(&prepared.scanned, None)),
            ])
        }
        .boxed()
    }
}

/// Runs the prepared query to its end, dropping its rows; its plan with what each operator
/// did, and a summary.
async fn analyze(
    run: &Execution<'_>,
    prepared: &PreparedQuery,
    position: crate::position::Position,
) -> Result<StatementOutput> {
    if prepared.plan.properties().boundedness.is_unbounded() {
        return Err(EngineError::Sql {
            message: "EXPLAIN ANALYZE runs the query to its end, and one of its sources does \
                      not end (a watched folder, or a Kafka topic without \
                      'scan.bounded.mode' = 'latest-offset')"
                .into(),
            position,
        });
    }
    let started = Instant::now();
    let metrics = Arc::new(JobMetrics::new(prepared.parallelism));
    let rows = run
        .engine
        .run_plan_counting(prepared, metrics.clone())?
        .try_fold(
            0usize,
            |rows, batch| async move { Ok(rows + batch.num_rows()) },
        )
        .await?;
    let analyzed = DisplayableExecutionPlan::with_metrics(prepared.plan.as_ref())
        .indent(true)
        .to_string();
    let read = metrics.read_per_source();
    plans(&[
        ("plan_with_metrics", analyzed),
        ("sources", sources(&prepared.scanned, Some(&read))),
        (
            "summary",
            format!(
                "{rows} rows in {:.3} s (compute times are summed over an operator's instances)",
                started.elapsed().as_secs_f64()
            ),
        ),
    ])
}

/// A line per source: where it reads, which columns its decoders decode (a plan's filters
/// run after them), and with `read`, the records they gave and set aside.
fn sources(scanned: &[SourceScan], read: Option<&BTreeMap<String, (u64, u64)>>) -> String {
    let lines: Vec<String> = scanned
        .iter()
        .map(|scan| {
            let source = scan.source();
            let schema = source.schema();
            let width = schema.fields().len();
            let decodes = match scan.decoded() {
                Some(columns) => {
                    let names: Vec<&str> = columns
                        .iter()
                        .map(|&c| schema.field(c).name().as_str())
                        .collect();
                    let verb = match source.skips_unread_columns() {
                        true => "decodes",
                        false => "decodes whole records, keeps",
                    };
                    format!(
                        "{verb} [{}] ({} of {width} columns)",
                        names.join(", "),
                        columns.len()
                    )
                }
                None => format!("decodes all {width} columns"),
            };
            let counted = match read.and_then(|read| read.get(scan.name())) {
                Some((records, bad)) => format!(", read {records} records ({bad} malformed)"),
                None if read.is_some() => ", read 0 records".to_string(),
                None => String::new(),
            };
            format!(
                "{}: {} {} at {}, {decodes}; filters run after decoding{counted}",
                scan.name(),
                source.connector(),
                source.format(),
                source.location()
            )
        })
        .collect();
    lines.join("\n")
}

/// Rows of `plan_type` and `plan`, as DataFusion's EXPLAIN gives them.
fn plans(rows: &[(&str, String)]) -> Result<StatementOutput> {
    let (types, plans): (Vec<&str>, Vec<&str>) = rows
        .iter()
        .map(|(kind, plan)| (*kind, plan.as_str()))
        .unzip();
    StatementOutput::rows(RecordBatch::try_from_iter([
        ("plan_type", Arc::new(StringArray::from(types)) as ArrayRef),
        ("plan", Arc::new(StringArray::from(plans)) as ArrayRef),
    ])?)
}
