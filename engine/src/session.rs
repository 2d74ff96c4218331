//! A session: statements in, rows and running jobs out.
//!
//! The session owns a DataFusion [`SessionContext`] configured for streaming (one partition
//! per source so records stay in source order, no batch coalescing so results are not held
//! back) and the [`Catalog`] of what its statements declared.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use ferris_connectors::{FileSink, FileSinkConfig, StopSignal};
use futures::StreamExt;

use crate::catalog::{Catalog, CatalogEntry, EntryKind};
use crate::error::{EngineError, Result};
use crate::job::{JobMetrics, RunningJob};
use crate::options::Options;
use crate::show;
use crate::sink::resolve_file_sink;
use crate::source::{SourceDef, resolve_file_source};
use crate::statement::{JobKind, Statement, StatementKind, StreamingQuery, parse_statements};

/// What a statement produced.
pub enum StatementOutput {
    /// Rows for the caller (queries, SHOW, DESCRIBE, EXPLAIN); unbounded for a query over a
    /// watched source.
    Rows(SendableRecordBatchStream),
    /// A job that is now running.
    Job(RunningJob),
}

/// A query made ready to run: its physical plan, sources and sink.
struct PreparedQuery {
    plan: Arc<dyn ExecutionPlan>,
    dataframe: DataFrame,
    sources: Vec<SourceDef>,
    sink: Option<FileSinkConfig>,
}

/// Executes statements against one DataFusion context and catalog.
pub struct Session {
    ctx: SessionContext,
    catalog: Catalog,
    stop: StopSignal,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session with an empty catalog.
    pub fn new() -> Self {
        let mut config = SessionConfig::new()
            // One partition per source: records stay in source order through every operator.
            .with_target_partitions(1)
            // A micro-batch goes on as soon as it is ready, however small.
            .with_coalesce_batches(false);
        let options = config.options_mut();
        options.sql_parser.collect_spans = true;
        // Our decoders and sinks speak plain Utf8.
        options.sql_parser.map_string_types_to_utf8view = false;
        options.execution.parquet.schema_force_view_types = false;
        Self {
            ctx: SessionContext::new_with_config(config),
            catalog: Catalog::default(),
            stop: StopSignal::new(),
        }
    }

    /// The signal that ends watching sources (and so every job) cleanly.
    pub fn stop_signal(&self) -> StopSignal {
        self.stop.clone()
    }

    /// The DataFusion context (for functions, plans and tests).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Parses `sql` into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        parse_statements(sql)
    }

    /// Executes one statement.
    pub async fn execute(&mut self, statement: &Statement) -> Result<StatementOutput> {
        match &statement.kind {
            StatementKind::CreateJob { kind, name, query } => self
                .start_job(*kind, name, query)
                .await
                .map(StatementOutput::Job),
            StatementKind::Query(query) => {
                let prepared = self.prepare(query, None).await?;
                Ok(StatementOutput::Rows(
                    self.run_plan(prepared.plan, Arc::default())?,
                ))
            }
            StatementKind::Explain(inner) => self.explain(inner).await,
            StatementKind::ShowStreams { like } => {
                rows(show::show_entries(&self.catalog, false, like.as_deref())?)
            }
            StatementKind::ShowTables { like } => {
                rows(show::show_entries(&self.catalog, true, like.as_deref())?)
            }
            StatementKind::ShowFunctions { like } => {
                rows(show::show_functions(&self.ctx.state(), like.as_deref())?)
            }
            StatementKind::Describe { name } => rows(show::describe(&self.catalog, name)?),
        }
    }

    async fn explain(&mut self, inner: &Statement) -> Result<StatementOutput> {
        let query = match &inner.kind {
            StatementKind::CreateJob { name, query, .. } => {
                let prepared = self.prepare(query, Some(name)).await?;
                return self.explain_prepared(prepared).await;
            }
            StatementKind::Query(query) => query,
            _ => {
                return Err(EngineError::Sql {
                    message: "EXPLAIN takes a query or a CREATE STREAM / CREATE TABLE".into(),
                    position: inner.position,
                });
            }
        };
        let prepared = self.prepare(query, None).await?;
        self.explain_prepared(prepared).await
    }

    async fn explain_prepared(&self, prepared: PreparedQuery) -> Result<StatementOutput> {
        let explained = prepared.dataframe.explain(false, false)?;
        Ok(StatementOutput::Rows(explained.execute_stream().await?))
    }

    /// Resolves the query's sources and sink from its options and plans it.
    async fn prepare(
        &mut self,
        query: &StreamingQuery,
        job: Option<&str>,
    ) -> Result<PreparedQuery> {
        let options = Options::new(query.options.clone());
        let state = self.ctx.state();
        let mut sources = Vec::new();
        let mut sink = None;
        for (name, connector) in options.typed_names() {
            match connector.one_of(&["file_source", "file_sink"])?.as_str() {
                "file_source" => {
                    sources.push(resolve_file_source(&name, &options, &state).await?);
                }
                _ => {
                    if job != Some(name.as_str()) {
                        let why = match job {
                            Some(job) => format!("this job writes to the sink named like it, '{job}'"),
                            None => "a plain query returns its rows; use CREATE STREAM name AS ... to write them".into(),
                        };
                        return Err(
                            connector.error(format!("a sink named '{name}' is not used: {why}"))
                        );
                    }
                    sink = Some(resolve_file_sink(&name, &options)?);
                }
            }
        }
        if let (Some(job), None) = (job, &sink) {
            return Err(EngineError::option(
                format!(
                    "'{job}' has no sink: add '{job}.type' = 'file_sink' and '{job}.path' = '...' to WITH"
                ),
                None,
            ));
        }
        options.check_all_taken()?;
        for source in &sources {
            source.register(&self.ctx, &self.stop)?;
        }
        let dataframe = self.ctx.sql(&query.sql).await?;
        let plan = dataframe.clone().create_physical_plan().await?;
        Ok(PreparedQuery {
            plan,
            dataframe,
            sources,
            sink,
        })
    }

    /// Runs a plan with its own job counters.
    fn run_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        metrics: Arc<JobMetrics>,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.ctx.state();
        let config = state.config().clone().with_extension(metrics);
        let task = TaskContext::from(&state).with_session_config(config);
        Ok(execute_stream(plan, Arc::new(task))?)
    }

    async fn start_job(
        &mut self,
        kind: JobKind,
        name: &str,
        query: &StreamingQuery,
    ) -> Result<RunningJob> {
        let prepared = self.prepare(query, Some(name)).await?;
        let sink_config = prepared.sink.expect("prepare requires a sink for a job");
        let schema = prepared.plan.schema();
        let key = match kind {
            JobKind::Stream => query.primary_key.clone(),
            JobKind::Table => table_key(name, query, prepared.dataframe.logical_plan(), &schema)?,
        };
        for source in &prepared.sources {
            self.catalog.insert(CatalogEntry {
                name: source.name.clone(),
                kind: EntryKind::Source,
                connector: "file_source".into(),
                location: source.source.config().location.display().to_string(),
                format: source.source.config().format.to_string(),
                windowed: false,
                key: vec![],
                schema: source.source.schema(),
            });
        }
        self.catalog.insert(CatalogEntry {
            name: name.to_string(),
            kind: match kind {
                JobKind::Stream => EntryKind::Stream,
                JobKind::Table => EntryKind::Table,
            },
            connector: "file_sink".into(),
            location: sink_config.path.display().to_string(),
            format: sink_config.format.to_string(),
            windowed: query.window.is_some(),
            key,
            schema: schema.clone(),
        });
        let bounded = prepared.sources.iter().all(|s| s.source.is_bounded());
        let metrics = Arc::new(JobMetrics::default());
        let mut stream = self.run_plan(prepared.plan, metrics.clone())?;
        let mut sink = FileSink::try_new(sink_config, schema)?;
        let job_metrics = metrics.clone();
        let task = tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                sink.write(&batch)?;
                job_metrics.add_records_out(batch.num_rows());
            }
            sink.close()?;
            Ok(())
        });
        Ok(RunningJob::new(
            name.to_string(),
            kind,
            bounded,
            metrics,
            task,
        ))
    }
}

fn rows(batch: arrow::record_batch::RecordBatch) -> Result<StatementOutput> {
    let schema = batch.schema();
    Ok(StatementOutput::Rows(Box::pin(MemoryStream::try_new(
        vec![batch],
        schema,
        None,
    )?)))
}

/// The key of a `CREATE TABLE`: the select items marked `PRIMARY KEY`, or else the selected
/// GROUP BY columns, which must then all be selected.
fn table_key(
    name: &str,
    query: &StreamingQuery,
    plan: &LogicalPlan,
    schema: &SchemaRef,
) -> Result<Vec<String>> {
    let missing_key = || EngineError::Sql {
        message: format!(
            "CREATE TABLE {name} needs a key: GROUP BY columns (all selected), or a select item marked PRIMARY KEY"
        ),
        position: query.position,
    };
    if !query.primary_key.is_empty() {
        for key in &query.primary_key {
            if schema.field_with_name(key).is_err() {
                return Err(EngineError::Sql {
                    message: format!("PRIMARY KEY column '{key}' is not a result column of {name}"),
                    position: query.position,
                });
            }
        }
        return Ok(query.primary_key.clone());
    }
    let mut node = plan;
    while let LogicalPlan::Sort(_) | LogicalPlan::Limit(_) = node {
        node = node.inputs()[0];
    }
    let LogicalPlan::Projection(projection) = node else {
        return Err(missing_key());
    };
    let mut input = projection.input.as_ref();
    while let LogicalPlan::Filter(filter) = input {
        input = filter.input.as_ref();
    }
    let LogicalPlan::Aggregate(aggregate) = input else {
        return Err(missing_key());
    };
    let group_columns = &aggregate.schema.columns()[..aggregate.group_expr.len()];
    let key: Vec<String> = projection
        .expr
        .iter()
        .zip(projection.schema.fields())
        .filter_map(|(expr, field)| match expr.clone().unalias() {
            Expr::Column(column) if group_columns.contains(&column) => Some(field.name().clone()),
            _ => None,
        })
        .collect();
    if key.is_empty() || key.len() < group_columns.len() {
        return Err(missing_key());
    }
    Ok(key)
}
