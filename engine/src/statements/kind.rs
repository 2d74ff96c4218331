//! What every statement kind is: a parsed statement that executes itself against the
//! [`Engine`], and what executing it produces.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use futures::future::BoxFuture;

use crate::engine::Engine;
use crate::error::Result;
use crate::job::RunningJob;
use crate::position::Position;
use crate::statements::hints::Hints;
use crate::statements::streaming_query::StreamingQuery;

/// One statement of a file.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Where it starts.
    pub position: Position,
    /// Its text as written (without the `;`), to keep in a server's catalog.
    pub text: String,
    /// What it is, parsed.
    pub kind: Arc<dyn StatementKind>,
    /// The `-- @ferris:` hints before it (for deployments; they change nothing in how it
    /// runs).
    pub hints: Hints,
}

/// What a statement produced.
pub enum StatementOutput {
    /// Rows for the caller (queries, SHOW, DESCRIBE, EXPLAIN); unbounded for a query over a
    /// watched source.
    Rows(SendableRecordBatchStream),
    /// A job that is now running.
    Job(RunningJob),
}

impl StatementOutput {
    /// Rows of one batch.
    pub(crate) fn rows(batch: RecordBatch) -> Result<Self> {
        let schema = batch.schema();
        Ok(Self::Rows(Box::pin(MemoryStream::try_new(
            vec![batch],
            schema,
            None,
        )?)))
    }
}

/// Everything a statement executes with.
pub struct Execution<'a> {
    /// What statements act on.
    pub engine: &'a mut Engine,
    /// The statement as written.
    pub statement: &'a Statement,
    /// The values of its `?` (or `$1`, ...) parameters, in order.
    pub parameters: &'a [ScalarValue],
    /// Reads a job's kept SQL (`START JOB` runs it again).
    pub parse: fn(&str) -> Result<Vec<Statement>>,
    /// The one instance of a parallel job that a job started here runs, the others running
    /// in other processes (`ferris run --instance`, a cluster's node); `None`: all of them.
    pub instance: Option<crate::job::InstanceToRun>,
}

/// A query EXPLAIN can show: the query and the job it would start.
pub struct Explained<'a> {
    /// The query.
    pub query: &'a StreamingQuery,
    /// The job's name, for a `CREATE STREAM|TABLE`.
    pub job: Option<&'a str>,
}

/// A kind of statement: what it read from its tokens, and how it executes.
pub trait StatementKind: fmt::Debug + Send + Sync + Any {
    /// Executes the statement.
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>>;

    /// Executes the statement again for the kept job `name`, as a restarted server or
    /// `START JOB` does: under that name, and so from its checkpoints.
    fn execute_as<'a>(
        &'a self,
        run: Execution<'a>,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<StatementOutput>> {
        self.execute(run)
    }

    /// Enters the kept job `name`'s sources and output in the catalog without running it,
    /// as a node of a cluster does for the jobs other nodes run.
    fn declare_as<'a>(&'a self, run: Execution<'a>, name: &'a str) -> BoxFuture<'a, Result<()>> {
        let error = crate::error::EngineError::Internal(format!(
            "job '{name}' is kept as a statement that starts no job: {}",
            run.statement.text
        ));
        Box::pin(async move { Err(error) })
    }

    /// The query EXPLAIN shows for this statement, if it plans one.
    fn explained(&self) -> Option<Explained<'_>> {
        None
    }
}

impl dyn StatementKind {
    /// The statement as its concrete kind, if it is one.
    pub fn downcast_ref<T: StatementKind>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref()
    }
}
