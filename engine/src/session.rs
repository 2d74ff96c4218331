//! A session: statements in, rows and running jobs out.
//!
//! The session owns a DataFusion [`SessionContext`] configured for streaming (one partition
//! per source so records stay in source order, no batch coalescing so results are not held
//! back) and the [`Catalog`] of what its statements declared.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    ExecutionPlan, SendableRecordBatchStream, displayable, execute_stream,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use ferris_connectors::kafka::KafkaConnection;
use ferris_connectors::{Sink, SinkConfig, Source, StopSignal};
use ferris_streaming::checkpoint::CheckpointBarrier;
use ferris_streaming::{
    EmitMode, LateDataPolicy, LookupJoinExec, SideTime, StreamJoinExec, WATERMARK_COLUMN,
    WatermarkSpec, WindowSpec,
};

use crate::catalog::{Catalog, CatalogEntry, EntryKind};
use crate::checkpoint::{CheckpointStore, Manifest};
use crate::error::{EngineError, Result};
use crate::job::{JobControl, JobEnd, JobMetrics, JobRecord, JobSpec, RunningJob};
use crate::late::LateRecordFile;
use crate::materialized::{LiveStream, MaterializedTable};
use crate::options::{OptionValue, Options};
use crate::placeholders::parse_query;
use crate::planner::{
    AggregateSettings, rewrite_query, streaming_joins, streaming_plan, time_source,
    without_batch_coalescing,
};
use crate::run::{CheckpointedJob, JobOutputs, Stops, run_at_least_once};
use crate::show;
use crate::sink::{resolve_file_sink, resolve_kafka_sink};
use crate::source::{
    DEFAULT_BOOTSTRAP_SERVERS, SourceDef, resolve_file_source, resolve_kafka_source,
};
use crate::statement::{
    JobCommand, JobKind, Position, Statement, StatementKind, StreamingQuery, parse_statements,
};
use crate::stored_jobs::{StoredJob, StoredJobs};

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
    /// The logical plan DataFusion made of the query (before optimization).
    logical: LogicalPlan,
    sources: Vec<SourceDef>,
    sink: Option<SinkConfig>,
    /// `'state.memory.limit'` in bytes.
    memory_limit: Option<usize>,
    /// A job's checkpoints, when it takes them.
    checkpoint: Option<CheckpointSettings>,
    /// Ends the sources (for a job: fired by its loop).
    source_stop: StopSignal,
}

/// What a job's plan finds in its task's config: its counters, its checkpoint barrier, its
/// stop and pause.
pub(crate) struct JobRun {
    pub metrics: Arc<JobMetrics>,
    pub barrier: Option<Arc<CheckpointBarrier>>,
    pub control: Arc<JobControl>,
}

/// Where and how often a job checkpoints.
#[derive(Debug, Clone)]
struct CheckpointSettings {
    /// A local folder or `s3://bucket/prefix`.
    dir: String,
    interval: Duration,
    /// `'processing.guarantee'` as written: exactly once (true), at least once (false), or
    /// the best the sink allows (none).
    exactly_once: Option<bool>,
}

/// The catalog of every stream, table and source: `ferris.public.name` is `name`.
pub const CATALOG: &str = "ferris";
/// The schema of every stream, table and source, in [`CATALOG`].
pub const SCHEMA: &str = "public";

/// Executes statements against one DataFusion context and catalog.
pub struct Session {
    ctx: SessionContext,
    catalog: Catalog,
    stop: StopSignal,
    /// Every job started, for SHOW JOBS.
    jobs: Vec<Arc<JobRecord>>,
    /// The Kafka cluster SHOW TOPICS describes.
    kafka: KafkaConnection,
    /// Where jobs keep their checkpoints (one folder per job); none: jobs do not checkpoint
    /// unless their `'checkpoint.dir'` says where.
    state_dir: Option<PathBuf>,
    /// Options every job gets unless its `WITH` sets them (the server config's `jobs`).
    job_defaults: Vec<(String, String)>,
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
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            // One partition per source: records stay in source order through every operator.
            .with_target_partitions(1)
            // A micro-batch goes on as soon as it is ready, however small.
            .with_coalesce_batches(false);
        let options = config.options_mut();
        options.sql_parser.collect_spans = true;
        // Our decoders and sinks speak plain Utf8.
        options.sql_parser.map_string_types_to_utf8view = false;
        options.execution.parquet.schema_force_view_types = false;
        // A source's scan takes no dynamic filter, and a join fixed by one cannot be turned
        // into a lookup join with the table on the build side.
        options.optimizer.enable_join_dynamic_filter_pushdown = false;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        // DataFusion rejects aggregates over unbounded input before we can swap in our
        // streaming ones; the check runs again on the finished plan (see `prepare`).
        let rules = state
            .physical_optimizers()
            .iter()
            .filter(|rule| rule.name() != SanityCheckPlan::new().name())
            .cloned()
            .collect();
        let state = SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rules(rules)
            .build();
        Self {
            ctx: SessionContext::new_with_state(state),
            catalog: Catalog::default(),
            stop: StopSignal::new(),
            jobs: Vec::new(),
            kafka: KafkaConnection {
                bootstrap_servers: std::env::var(KAFKA_ENV)
                    .unwrap_or_else(|_| DEFAULT_BOOTSTRAP_SERVERS.to_string()),
                properties: vec![],
            },
            state_dir: None,
            job_defaults: Vec::new(),
        }
    }

    /// Options every job gets unless its `WITH` sets them (`'checkpoint.interval'`, ...); a
    /// default no job uses is no error.
    pub fn set_job_defaults(&mut self, defaults: Vec<(String, String)>) {
        self.job_defaults = defaults;
    }

    /// Jobs keep their checkpoints under `dir` (a folder per job) and resume from them.
    pub fn set_state_dir(&mut self, dir: impl Into<PathBuf>) {
        self.state_dir = Some(dir.into());
    }

    /// Starts again every job kept under the state dir, each from its last checkpoint (a
    /// finished one stays finished). A job that cannot start is reported and left out.
    pub async fn resume_jobs(&mut self) -> Result<Vec<RunningJob>> {
        let Some(dir) = &self.state_dir else {
            return Ok(vec![]);
        };
        let mut started = Vec::new();
        for stored in StoredJobs::new(dir).load()? {
            if stored.stopped {
                continue;
            }
            let statements = match self.parse(&stored.sql) {
                Ok(statements) => statements,
                Err(e) => {
                    tracing::error!(job = %stored.name, "cannot be resumed: {e}");
                    continue;
                }
            };
            for statement in &statements {
                match self.start_again(statement, &stored.name).await {
                    Ok(StatementOutput::Job(job)) => started.push(job),
                    Ok(StatementOutput::Rows(_)) => {}
                    Err(e) => tracing::error!(job = %stored.name, "cannot be resumed: {e}"),
                }
            }
        }
        Ok(started)
    }

    /// The signal that ends watching sources (and so every job) cleanly.
    pub fn stop_signal(&self) -> StopSignal {
        self.stop.clone()
    }

    /// Points SHOW TOPICS at the Kafka cluster at `bootstrap_servers`.
    pub fn set_kafka(&mut self, bootstrap_servers: &str) {
        self.kafka.bootstrap_servers = bootstrap_servers.to_string();
    }

    /// Every job the session started, running or not.
    pub fn jobs(&self) -> &[Arc<JobRecord>] {
        &self.jobs
    }

    /// What the session's statements have declared.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The DataFusion context (for functions, plans and tests).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Parses `sql` into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        parse_statements(sql)
    }

    /// Plans `sql` as DataFusion alone would (none of our statements or clauses), its `?`
    /// placeholders numbered: a client preparing a statement learns its columns and its
    /// parameters' types from this plan.
    pub async fn plan_sql(&self, sql: &str) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        Ok(state.statement_to_plan(parse_query(&state, sql)?).await?)
    }

    /// Executes one statement.
    pub async fn execute(&mut self, statement: &Statement) -> Result<StatementOutput> {
        self.execute_with_parameters(statement, &[]).await
    }

    /// Executes one statement whose query has parameters (`?`, or `$1`, `$2`, ...):
    /// `parameters` are their values, in order.
    pub async fn execute_with_parameters(
        &mut self,
        statement: &Statement,
        parameters: &[ScalarValue],
    ) -> Result<StatementOutput> {
        match &statement.kind {
            StatementKind::CreateJob { kind, name, query } => {
                let job = self
                    .start_job(*kind, name, query, &statement.text, None, parameters)
                    .await?;
                // A server started on this state dir again starts the job again.
                if let Some(dir) = &self.state_dir {
                    StoredJobs::new(dir).save(StoredJob {
                        name: name.clone(),
                        sql: statement.text.clone(),
                        stopped: false,
                    })?;
                }
                Ok(StatementOutput::Job(job))
            }
            StatementKind::Insert { target, query } => {
                let job = self
                    .insert(target, query, &statement.text, parameters, None)
                    .await?;
                // A continuous insert starts again with the server; a one-shot one (values,
                // files read once) is done once.
                if let Some(dir) = &self.state_dir
                    && !job.bounded
                {
                    StoredJobs::new(dir).save(StoredJob {
                        name: job.name.clone(),
                        sql: statement.text.clone(),
                        stopped: false,
                    })?;
                }
                Ok(StatementOutput::Job(job))
            }
            StatementKind::JobCommand { command, name } => {
                self.job_command(*command, name, statement.position).await
            }
            StatementKind::Drop {
                kind,
                name,
                if_exists,
            } => {
                self.drop_job(*kind, name, *if_exists, statement.position)
                    .await
            }
            StatementKind::Query(query) => {
                let prepared = self.prepare(query, None, None, parameters).await?;
                Ok(StatementOutput::Rows(self.run_plan(&prepared, None)?))
            }
            StatementKind::Explain(inner) => self.explain(inner).await,
            StatementKind::ShowStreams { like } => rows(show::show_entries(
                &self.catalog,
                false,
                like.as_deref(),
                false,
            )?),
            StatementKind::ShowTables { like, schemas } => rows(show::show_entries(
                &self.catalog,
                true,
                like.as_deref(),
                *schemas,
            )?),
            StatementKind::ShowJobStatus { name } => rows(show::show_job_status(&self.jobs, name)?),
            StatementKind::ShowFunctions { like } => {
                rows(show::show_functions(&self.ctx.state(), like.as_deref())?)
            }
            StatementKind::Describe { name } => rows(show::describe(&self.catalog, name)?),
            StatementKind::ShowJobs { like } => rows(show::show_jobs(&self.jobs, like.as_deref())?),
            StatementKind::ShowTopics { like } => {
                let topics = self.kafka.topics().await?;
                rows(show::show_topics(&topics, like.as_deref())?)
            }
            StatementKind::ShowTopicDetails { topic } => {
                let details = self.kafka.topic_details(topic).await?;
                rows(show::show_topic_details(&details)?)
            }
        }
    }

    /// `INSERT INTO target <query>`: a job appending the query's rows where `target` is
    /// written (its sink, or its topic), named `insert_into_<target>` (`_2`, ... while that
    /// name is taken).
    async fn insert(
        &mut self,
        target: &str,
        query: &StreamingQuery,
        statement: &str,
        parameters: &[ScalarValue],
        name: Option<&str>,
    ) -> Result<RunningJob> {
        let error = |message: String| EngineError::Sql {
            message,
            position: query.position,
        };
        let entry = self.catalog.get(target).cloned().ok_or_else(|| {
            error(format!(
                "no stream '{target}' to insert into (SHOW STREAMS lists them)"
            ))
        })?;
        let Some(mut writer) = entry.writer.clone() else {
            return Err(error(format!(
                "'{target}' is a {} read from {}: nothing writes to it",
                entry.kind.as_str(),
                entry.location
            )));
        };
        // Each insert has a name of its own (its checkpoints are kept under it); a kept one
        // keeps its name when the server starts it again.
        let kept = self
            .stored_jobs()
            .map(|s| s.load())
            .transpose()?
            .unwrap_or_default();
        let taken = |name: &str| {
            self.jobs.iter().any(|j| j.name.eq_ignore_ascii_case(name))
                || kept.iter().any(|j| j.name.eq_ignore_ascii_case(name))
                || self.catalog.get(name).is_some()
        };
        let name = match name {
            Some(name) => name.to_string(),
            None => {
                let mut name = format!("insert_into_{target}");
                let mut n = 1;
                while taken(&name) {
                    n += 1;
                    name = format!("insert_into_{target}_{n}");
                }
                name
            }
        };
        if let SinkConfig::File(file) = &mut writer {
            if !file.is_folder() {
                return Err(error(format!(
                    "'{target}' is written to the single file {}, which only its own job writes; give it a folder (a path ending in '/') or a topic",
                    file.path.display()
                )));
            }
            // Its own part files, so that the writers' numbers never meet.
            file.part_prefix = format!("part-{name}");
        }
        let metadata: Vec<String> = ferris_connectors::kafka::metadata_fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let columns = entry
            .schema
            .fields()
            .iter()
            .filter(|f| entry.kind != EntryKind::Source || !metadata.contains(f.name()))
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let into = InsertTarget {
            target: target.to_string(),
            writer,
            columns,
        };
        self.start_job(
            JobKind::Stream,
            &name,
            query,
            statement,
            Some(into),
            parameters,
        )
        .await
    }

    /// Runs a kept job's statement again, under the job's name (and so from its checkpoints).
    async fn start_again(&mut self, statement: &Statement, name: &str) -> Result<StatementOutput> {
        match &statement.kind {
            StatementKind::Insert { target, query } => self
                .insert(target, query, &statement.text, &[], Some(name))
                .await
                .map(StatementOutput::Job),
            _ => self.execute(statement).await,
        }
    }

    /// The latest job called `name` (a name is reused once its job has ended).
    fn latest_job(&self, name: &str) -> Option<Arc<JobRecord>> {
        self.jobs
            .iter()
            .rev()
            .find(|j| j.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    fn stored_jobs(&self) -> Option<StoredJobs> {
        self.state_dir.as_deref().map(StoredJobs::new)
    }

    /// `START|STOP|PAUSE|RESUME JOB name`.
    async fn job_command(
        &mut self,
        command: JobCommand,
        name: &str,
        position: Position,
    ) -> Result<StatementOutput> {
        let job = self.latest_job(name);
        let error = |message: String| EngineError::Sql { message, position };
        if command == JobCommand::Start {
            if job.as_ref().is_some_and(|j| j.is_running()) {
                return Err(error(format!("job '{name}' is running already")));
            }
            let kept = self
                .stored_jobs()
                .map(|s| s.get(name))
                .transpose()?
                .flatten();
            let sql = match (&job, kept) {
                (Some(job), _) => job.statement.clone(),
                (None, Some(kept)) => kept.sql,
                (None, None) => {
                    return Err(error(format!("no job '{name}' (SHOW JOBS lists them)")));
                }
            };
            let statements = self.parse(&sql)?;
            let [statement] = statements.as_slice() else {
                return Err(EngineError::Internal(format!(
                    "job '{name}' kept {} statements",
                    statements.len()
                )));
            };
            return Box::pin(self.start_again(statement, name)).await;
        }
        let Some(job) = job.filter(|j| j.is_running()) else {
            return Err(error(format!(
                "job '{name}' is not running (SHOW JOBS lists the jobs)"
            )));
        };
        let status = match command {
            JobCommand::Stop | JobCommand::StopForce => {
                if let Some(stored) = self.stored_jobs() {
                    stored.set_stopped(name, true)?;
                }
                if command == JobCommand::StopForce {
                    job.force_stop().await;
                    "STOPPED"
                } else {
                    job.control.request_stop();
                    "STOPPING"
                }
            }
            JobCommand::Pause => {
                job.control.set_paused(true);
                "PAUSED"
            }
            JobCommand::Resume => {
                job.control.set_paused(false);
                "RUNNING"
            }
            JobCommand::Start => unreachable!("handled above"),
        };
        rows(show::job_reply(&job.name, status)?)
    }

    /// `DROP STREAM|TABLE name`: stops its job at once and forgets it, its checkpoints
    /// with it. Its output (files, topic) stays.
    async fn drop_job(
        &mut self,
        kind: JobKind,
        name: &str,
        if_exists: bool,
        position: Position,
    ) -> Result<StatementOutput> {
        let expected = match kind {
            JobKind::Stream => EntryKind::Stream,
            JobKind::Table => EntryKind::Table,
        };
        let found = self.catalog.get(name).map(|e| e.kind);
        match found {
            Some(found) if found == expected => {}
            Some(found) => {
                return Err(EngineError::Sql {
                    message: format!("'{name}' is a {}, not a {kind}", found.as_str()),
                    position,
                });
            }
            None if if_exists => return rows(show::job_reply(name, "NOT FOUND")?),
            None => {
                return Err(EngineError::Sql {
                    message: format!("no {kind} '{name}' (SHOW STREAMS / SHOW TABLES list them)"),
                    position,
                });
            }
        }
        let records: Vec<_> = self
            .jobs
            .iter()
            .filter(|j| j.name.eq_ignore_ascii_case(name))
            .cloned()
            .collect();
        for job in &records {
            if job.is_running() {
                job.force_stop().await;
            }
            if let Some(location) = &job.checkpoint_dir {
                CheckpointStore::delete(location).await?;
            }
        }
        self.jobs.retain(|j| !j.name.eq_ignore_ascii_case(name));
        self.catalog.remove(name);
        self.ctx.deregister_table(name)?;
        if let Some(stored) = self.stored_jobs() {
            stored.remove(name)?;
        }
        rows(show::job_reply(name, "DROPPED")?)
    }

    async fn explain(&mut self, inner: &Statement) -> Result<StatementOutput> {
        let (query, job) = match &inner.kind {
            StatementKind::CreateJob { name, query, .. } => (query, Some(name.as_str())),
            StatementKind::Query(query) => (query, None),
            _ => {
                return Err(EngineError::Sql {
                    message: "EXPLAIN takes a query or a CREATE STREAM / CREATE TABLE".into(),
                    position: inner.position,
                });
            }
        };
        let prepared = self.prepare(query, job, None, &[]).await?;
        self.explain_prepared(prepared)
    }

    /// DataFusion's optimized logical plan and the physical plan as it will run, with the
    /// streaming operators in it.
    fn explain_prepared(&self, prepared: PreparedQuery) -> Result<StatementOutput> {
        let logical = self.ctx.state().optimize(&prepared.logical)?;
        let physical = displayable(prepared.plan.as_ref()).indent(true).to_string();
        let batch = arrow::record_batch::RecordBatch::try_from_iter([
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
        ])?;
        rows(batch)
    }

    /// Resolves the query's sources and sink from its options and plans it.
    async fn prepare(
        &mut self,
        query: &StreamingQuery,
        job: Option<&str>,
        into: Option<&SinkConfig>,
        parameters: &[ScalarValue],
    ) -> Result<PreparedQuery> {
        let options = match job {
            Some(_) => {
                Options::with_defaults(query.options.clone(), &self.job_defaults, query.position)
            }
            None => Options::new(query.options.clone()),
        };
        let state = self.ctx.state();
        let (sources, sink) = resolve_connectors(&options, job, into, &state).await?;
        let late = late_policy(&options)?;
        let memory_limit = options
            .get("state.memory.limit")
            .map(|v| bytes(&v))
            .transpose()?;
        let checkpoint = match job {
            Some(job) => checkpoint_settings(&options, self.state_dir.as_deref(), job)?,
            None => None,
        };
        options.check_all_taken()?;
        // A job's sources end when its loop says (a checkpointing job's never do: it stops
        // at a checkpoint, windows open, to resume them); a query's on the session's stop.
        let source_stop = match job {
            Some(_) => StopSignal::new(),
            None => self.stop.clone(),
        };

        let mut parsed = parse_query(&state, &query.sql)?;
        let window = rewrite_query(&mut parsed, query.window.as_ref(), query.position)?;
        let stream_source = time_source(&parsed);
        let mut watermark = WatermarkSpec::default();
        // The event times of the sources that declare one, for joins bounded in time.
        let mut times = Vec::new();
        for source in &sources {
            let stamp = match &window {
                Some(window) if stream_source.as_deref() == Some(source.name.as_str()) => {
                    watermark = source.watermark_spec(window.time_column.as_deref())?;
                    Some(watermark.clone())
                }
                _ => None,
            };
            let schema = source.register(&self.ctx, &source_stop, stamp)?;
            // A join keeps one watermark per side: over a topic's partitions, read side by
            // side, a partition behind the others would have its rows taken for late.
            let one_order = match &source.source {
                Source::Kafka(kafka) => kafka.partitions().len() == 1,
                Source::File(_) => true,
            };
            if let Some(column) = &source.event_time.field
                && one_order
            {
                let time = SideTime {
                    column: column.clone(),
                    max_out_of_orderness: source.event_time.max_out_of_orderness,
                };
                times.push((schema, time));
            }
        }
        if window.is_some()
            && !sources
                .iter()
                .any(|s| Some(&s.name) == stream_source.as_ref())
        {
            return Err(EngineError::Sql {
                message: "a windowed query reads FROM a source declared in its own WITH clause"
                    .into(),
                position: query.position,
            });
        }
        let mut logical = state.statement_to_plan(parsed).await?;
        if !parameters.is_empty() {
            logical = logical.with_param_values(parameters.to_vec())?;
        }
        let mut plan = state.create_physical_plan(&logical).await?;
        let stream_schema = match &stream_source {
            Some(name) => self
                .ctx
                .table_provider(name.as_str())
                .await
                .ok()
                .map(|t| t.schema()),
            None => None,
        };
        plan = streaming_joins(plan, stream_schema.as_ref(), &times)?;
        let unbounded = sources.iter().any(|s| !s.source.is_bounded());
        let settings = match (&window, query.emit) {
            (Some(window), emit) => Some((window.spec, emit.unwrap_or(EmitMode::Final))),
            (None, Some(EmitMode::Changes)) => Some((WindowSpec::Global, EmitMode::Changes)),
            // A keyed result over unbounded input can only ever be a changelog.
            (None, None) if unbounded => Some((WindowSpec::Global, EmitMode::Changes)),
            (None, _) => None,
        };
        if let Some((window_spec, emit)) = settings {
            let settings = AggregateSettings {
                window: window_spec,
                emit,
                late,
                watermark,
            };
            let (streaming, found) =
                streaming_plan(plan, &settings).map_err(|e| planning_error(e, query))?;
            if window.is_some() && !found {
                return Err(EngineError::Sql {
                    message: "WINDOW needs an aggregate: GROUP BY keys with COUNT, SUM, ...".into(),
                    position: query.position,
                });
            }
            plan = streaming;
        } else if unbounded && has_aggregate(&plan) {
            return Err(EngineError::Sql {
                message: "EMIT FINAL on a watched source needs a WINDOW: without one, a group never closes".into(),
                position: query.position,
            });
        }
        let plan = without_batch_coalescing(plan)?;
        let plan = SanityCheckPlan::new()
            .optimize(plan, state.config_options())
            .map_err(|e| match planning_error(e, query) {
                // DataFusion's message ends in a dump of the whole plan: keep what precedes it.
                EngineError::Sql { message, position } => EngineError::Sql {
                    message: format!(
                        "{} (an operator that needs all of its input cannot run on a watched source)",
                        message.split(" {").next().unwrap_or_default()
                    ),
                    position,
                },
                other => other,
            })?;
        Ok(PreparedQuery {
            plan,
            logical,
            sources,
            sink,
            memory_limit,
            checkpoint,
            source_stop,
        })
    }

    /// Runs a plan, as a job's when `job` says.
    fn run_plan(
        &self,
        prepared: &PreparedQuery,
        job: Option<&JobRun>,
    ) -> Result<SendableRecordBatchStream> {
        let task = task_context(&self.ctx.state(), prepared.memory_limit, job)?;
        Ok(execute_stream(prepared.plan.clone(), task)?)
    }

    async fn start_job(
        &mut self,
        kind: JobKind,
        name: &str,
        query: &StreamingQuery,
        statement: &str,
        into: Option<InsertTarget>,
        parameters: &[ScalarValue],
    ) -> Result<RunningJob> {
        // Two jobs writing one sink under one name would interleave their output.
        if self
            .jobs
            .iter()
            .any(|job| job.name.eq_ignore_ascii_case(name) && job.is_running())
        {
            return Err(EngineError::Sql {
                message: format!(
                    "job '{name}' is running already; its name is taken until it ends"
                ),
                position: query.position,
            });
        }
        let inserting = into.is_some();
        let prepared = self
            .prepare(
                query,
                Some(name),
                into.as_ref().map(|i| &i.writer),
                parameters,
            )
            .await?;
        let mut sink_config = prepared
            .sink
            .clone()
            .expect("prepare requires a sink for a job");
        let schema = match &into {
            // An insert's rows take the target's column names.
            Some(into) => into.check(&prepared.plan.schema(), query.position)?,
            None => prepared.plan.schema(),
        };
        let key = match kind {
            JobKind::Stream if query.primary_key.is_empty() => {
                // A stream's messages are keyed by its GROUP BY columns, if it has them.
                table_key(name, query, &prepared.logical, &schema).unwrap_or_default()
            }
            JobKind::Stream => query.primary_key.clone(),
            JobKind::Table => table_key(name, query, &prepared.logical, &schema)?,
        };
        if let SinkConfig::Kafka(kafka) = &mut sink_config {
            kafka.key_fields.get_or_insert_with(|| key.clone());
            if kafka.timestamp_field.is_none() {
                kafka.timestamp_field = message_timestamp(&prepared, &schema);
            }
        }
        for source in &prepared.sources {
            self.catalog.insert(CatalogEntry {
                name: source.name.clone(),
                kind: EntryKind::Source,
                connector: source.source.connector().into(),
                location: source.source.location(),
                format: source.source.format(),
                windowed: false,
                key: vec![],
                schema: source.source.schema(),
                writer: source.source.writer().map(SinkConfig::Kafka),
            });
        }
        if !inserting {
            self.catalog.insert(CatalogEntry {
                name: name.to_string(),
                kind: match kind {
                    JobKind::Stream => EntryKind::Stream,
                    JobKind::Table => EntryKind::Table,
                },
                connector: sink_config.connector().into(),
                location: sink_config.location(),
                format: sink_config.format(),
                windowed: is_windowed(&prepared.plan),
                key,
                schema: schema.clone(),
                writer: Some(sink_config.clone()),
            });
        }
        let bounded = prepared.sources.iter().all(|s| s.source.is_bounded());
        let metrics = Arc::new(JobMetrics::default());
        let control = Arc::new(JobControl::default());
        let spec = |plan: Arc<dyn ExecutionPlan>, checkpoint_dir| JobSpec {
            name: name.to_string(),
            kind,
            statement: statement.to_string(),
            checkpoint_dir,
            control: control.clone(),
            bounded,
            plan,
            metrics: metrics.clone(),
        };
        let checkpoint_dir = prepared.checkpoint.as_ref().map(|c| c.dir.clone());
        let start = match prepared.checkpoint.clone() {
            Some(settings) => {
                self.checkpoint_start(name, &prepared, &settings, &mut sink_config)
                    .await?
            }
            None => None,
        };
        if let Some(CheckpointStart::Finished(manifest)) = &start {
            // The job ran to its end before: its output is complete; make sure it is visible.
            Sink::complete(sink_config, &manifest.sink)?;
            tracing::info!(
                job = %name,
                "finished in an earlier run (checkpoint {}); delete its state to run it again",
                manifest.epoch
            );
            let job = RunningJob::spawn(spec(prepared.plan.clone(), checkpoint_dir), async {
                Ok(JobEnd::Finished)
            });
            self.jobs.push(job.record());
            return Ok(job);
        }
        // The output is readable by name: a table's current state answers pull queries, a
        // stream's rows as written feed push queries. (Not an insert's: it has no name of
        // its own to read.)
        let (materialized, live) = match kind {
            _ if inserting => (None, None),
            JobKind::Table => {
                let key = self
                    .catalog
                    .get(name)
                    .map(|e| e.key.clone())
                    .unwrap_or_default();
                let table = Arc::new(MaterializedTable::try_new(&schema, &key)?);
                self.ctx.deregister_table(name)?;
                self.ctx.register_table(name, table.clone())?;
                (Some(table), None)
            }
            JobKind::Stream => {
                let live = Arc::new(LiveStream::new(name, schema.clone()));
                let table = StreamingTable::try_new(schema.clone(), vec![live.clone()])?
                    .with_infinite_table(true);
                self.ctx.deregister_table(name)?;
                self.ctx.register_table(name, Arc::new(table))?;
                (None, Some(live.writer()))
            }
        };
        let stops = Stops {
            session: self.stop.clone(),
            job: control.clone(),
        };
        let work: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JobEnd>> + Send>> =
            match start {
                Some(CheckpointStart::Run {
                    store,
                    transactional,
                }) => {
                    let job = CheckpointedJob {
                        state: self.ctx.state(),
                        plan: prepared.plan.clone(),
                        memory_limit: prepared.memory_limit,
                        sink: sink_config,
                        schema,
                        sources: prepared
                            .sources
                            .iter()
                            .map(|s| (s.name.clone(), s.source.clone()))
                            .collect(),
                        store,
                        interval: prepared
                            .checkpoint
                            .as_ref()
                            .map_or(DEFAULT_CHECKPOINT_INTERVAL, |c| c.interval),
                        transactional,
                        fingerprint: plan_fingerprint(&prepared.plan),
                        metrics: metrics.clone(),
                        control: control.clone(),
                        materialized,
                        live,
                        stops,
                    };
                    Box::pin(job.run())
                }
                _ => {
                    let run = JobRun {
                        metrics: metrics.clone(),
                        barrier: None,
                        control: control.clone(),
                    };
                    let stream = self.run_plan(&prepared, Some(&run))?;
                    let outputs = JobOutputs {
                        sink: Sink::try_new(sink_config, schema.clone())?,
                        materialized,
                        live,
                        metrics: metrics.clone(),
                        schema,
                    };
                    let sources = prepared.sources.iter().map(|s| s.source.clone()).collect();
                    let stateless = is_stateless(&prepared.plan);
                    let source_stop = prepared.source_stop.clone();
                    Box::pin(run_at_least_once(
                        stream,
                        outputs,
                        sources,
                        stateless,
                        stops,
                        source_stop,
                    ))
                }
            };
        let job = RunningJob::spawn(spec(prepared.plan.clone(), checkpoint_dir), work);
        self.jobs.push(job.record());
        Ok(job)
    }

    /// Settles a checkpointing job's guarantee and checks its last checkpoint: `None` when
    /// it cannot checkpoint (a join) and runs at least once instead.
    async fn checkpoint_start(
        &self,
        name: &str,
        prepared: &PreparedQuery,
        settings: &CheckpointSettings,
        sink_config: &mut SinkConfig,
    ) -> Result<Option<CheckpointStart>> {
        if has_join(&prepared.plan) {
            if settings.exactly_once == Some(true) {
                return Err(EngineError::Checkpoint(format!(
                    "job '{name}': checkpoints cover lookup joins and inner equi-joins of two streams, not this join, so it cannot run exactly once"
                )));
            }
            tracing::warn!(
                job = %name,
                "checkpoints cover lookup joins and inner equi-joins of two streams, not this join; it runs at least once, without them"
            );
            return Ok(None);
        }
        if let SinkConfig::Kafka(kafka) = sink_config {
            // A Kafka transaction can carry the offsets of Kafka sources only.
            let all_kafka = prepared
                .sources
                .iter()
                .all(|s| matches!(s.source, Source::Kafka(_)));
            match settings.exactly_once {
                Some(true) if !all_kafka => {
                    return Err(EngineError::Checkpoint(format!(
                        "job '{name}': exactly once into Kafka commits the sources' offsets in the sink's transaction, so every source must be a Kafka topic; use 'processing.guarantee' = 'at_least_once'"
                    )));
                }
                Some(false) => {}
                _ if all_kafka => {
                    kafka.transactional_id = Some(format!("ferris-{name}-{}", kafka.topic));
                }
                _ => {}
            }
        }
        let transactional =
            matches!(sink_config, SinkConfig::Kafka(k) if k.transactional_id.is_some());
        let store = CheckpointStore::open(&settings.dir)?;
        // The newest checkpoint tells at once whether the query changed or already ended.
        if let Some(newest) = store.manifests().await?.into_iter().next() {
            if newest.plan != plan_fingerprint(&prepared.plan) {
                return Err(EngineError::Checkpoint(format!(
                    "job '{name}' changed since checkpoint {} in {}: its state fits the old query only. Delete that folder to start over",
                    newest.epoch, settings.dir
                )));
            }
            if newest.finished && !transactional {
                return Ok(Some(CheckpointStart::Finished(newest)));
            }
        }
        Ok(Some(CheckpointStart::Run {
            store,
            transactional,
        }))
    }
}

/// Where an `INSERT INTO` job writes, and the columns it must give.
struct InsertTarget {
    target: String,
    writer: SinkConfig,
    columns: Vec<(String, arrow::datatypes::DataType)>,
}

impl InsertTarget {
    /// The rows must fit the target: as many columns, of the same types, in order. Returns
    /// the rows' schema under the target's column names.
    fn check(&self, schema: &SchemaRef, position: Position) -> Result<SchemaRef> {
        let got: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let fits = got.len() == self.columns.len()
            && got.iter().zip(&self.columns).all(|(a, b)| a.1 == b.1);
        if fits {
            let fields: Vec<_> = schema
                .fields()
                .iter()
                .zip(&self.columns)
                .map(|(f, (name, _))| f.as_ref().clone().with_name(name))
                .collect();
            return Ok(Arc::new(arrow::datatypes::Schema::new(fields)));
        }
        let list = |columns: &[(String, arrow::datatypes::DataType)]| {
            columns
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(EngineError::Sql {
            message: format!(
                "INSERT INTO {}: the query gives ({}), but {} has ({})",
                self.target,
                list(&got),
                self.target,
                list(&self.columns)
            ),
            position,
        })
    }
}

/// How a checkpointing job starts.
enum CheckpointStart {
    /// Running, from its last checkpoint if it has one.
    Run {
        store: CheckpointStore,
        /// Its sink commits in Kafka transactions.
        transactional: bool,
    },
    /// Not at all: its last run finished.
    Finished(Manifest),
}

/// What a checkpoint must match: the physical plan as it runs.
fn plan_fingerprint(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(true).to_string()
}

/// How often a job checkpoints unless `'checkpoint.interval'` says.
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// A job's checkpoint options: on with a state dir or `'checkpoint.dir'`.
fn checkpoint_settings(
    options: &Options,
    state_dir: Option<&std::path::Path>,
    job: &str,
) -> Result<Option<CheckpointSettings>> {
    let interval = options.get("checkpoint.interval");
    let guarantee = options.get("processing.guarantee");
    let dir = match options.get("checkpoint.dir") {
        Some(dir) => Some(dir.value.to_string()),
        None => state_dir.map(|d| d.join(job).display().to_string()),
    };
    let exactly_once = guarantee
        .map(|g| g.one_of(&["exactly_once", "at_least_once"]))
        .transpose()?
        .map(|g| g == "exactly_once");
    let Some(dir) = dir else {
        // A default interval or guarantee needs no place: it is for jobs that checkpoint.
        let written = |v: &OptionValue| !v.default;
        let asked = interval
            .filter(written)
            .or(guarantee.filter(|g| written(g) && exactly_once == Some(true)));
        if let Some(option) = asked {
            return Err(option.error(
                "checkpoints need a place: start with --state-dir, or add 'checkpoint.dir'",
            ));
        }
        return Ok(None);
    };
    let interval = interval
        .map(|v| {
            v.duration().and_then(|d| {
                if d.is_zero() {
                    Err(v.error("the interval must be above 0"))
                } else {
                    Ok(d)
                }
            })
        })
        .transpose()?
        .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL);
    Ok(Some(CheckpointSettings {
        dir,
        interval,
        exactly_once,
    }))
}

/// The environment variable naming the Kafka cluster SHOW TOPICS describes (else
/// `127.0.0.1:9092`).
pub const KAFKA_ENV: &str = "FERRIS_KAFKA_BOOTSTRAP";

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
            "CREATE TABLE {name} needs a key: GROUP BY columns, all selected (for a windowed table, with _window_start), or a select item marked PRIMARY KEY"
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
    // A window's end is no part of the key: a session's end moves as it grows, and a fixed
    // window's end follows from its start.
    let group_columns: Vec<_> = aggregate.schema.columns()[..aggregate.group_expr.len()]
        .iter()
        .filter(|c| c.name != WATERMARK_COLUMN)
        .cloned()
        .collect();
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

/// The sources and the sink named in the options. A job writes to the sink named like it; a
/// plain query has none.
async fn resolve_connectors(
    options: &Options,
    job: Option<&str>,
    into: Option<&SinkConfig>,
    state: &datafusion::execution::SessionState,
) -> Result<(Vec<SourceDef>, Option<SinkConfig>)> {
    let mut sources = Vec::new();
    let mut sink = into.cloned();
    for (name, connector) in options.typed_names() {
        let kind = connector.one_of(&["file_source", "file_sink", "kafka_source", "kafka_sink"])?;
        match kind.as_str() {
            "file_source" => {
                sources.push(resolve_file_source(&name, options, state).await?);
            }
            "kafka_source" => {
                // A job's consumer group is named after the job; a query's after its source.
                let group = job.unwrap_or(&name);
                sources.push(resolve_kafka_source(&name, options, state, group).await?);
            }
            _ if into.is_some() => {
                return Err(connector.error(format!(
                    "INSERT INTO writes to its target's sink; a sink named '{name}' is not used"
                )));
            }
            _ => {
                // Option names are case-insensitive; a quoted job name may not be.
                if !job.is_some_and(|job| job.eq_ignore_ascii_case(&name)) {
                    let why = match job {
                            Some(job) => format!("this job writes to the sink named like it, '{job}'"),
                            None => "a plain query returns its rows; use CREATE STREAM name AS ... to write them".into(),
                        };
                    return Err(
                        connector.error(format!("a sink named '{name}' is not used: {why}"))
                    );
                }
                sink = Some(match kind.as_str() {
                    "file_sink" => resolve_file_sink(&name, options)?,
                    _ => resolve_kafka_sink(&name, options).await?,
                });
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
    if let Some(field) = options.get("event.time.field")
        && !sources
            .iter()
            .any(|s| s.event_time.field.as_deref() == Some(field.value))
    {
        return Err(field.error("no source of this statement has that column"));
    }
    Ok((sources, sink))
}

/// The timestamp of a Kafka sink's messages: the window end of a windowed result, else the
/// time source's event time column or the Kafka timestamp, when the result has them.
fn message_timestamp(prepared: &PreparedQuery, schema: &SchemaRef) -> Option<String> {
    let event_time = prepared
        .sources
        .iter()
        .filter_map(|s| s.event_time.field.clone());
    std::iter::once(WATERMARK_COLUMN.to_string())
        .chain(event_time)
        .chain(std::iter::once("_timestamp".to_string()))
        .find(|column| {
            schema
                .field_with_name(column)
                .is_ok_and(|f| matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(_, _)))
        })
}

/// Whether every operator of the plan passes rows on as they come, holding nothing back.
fn is_stateless(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const STATELESS: [&str; 5] = [
        "ProjectionExec",
        "FilterExec",
        "StreamingTableExec",
        "CoalesceBatchesExec",
        "CooperativeExec",
    ];
    !plan
        .exists(|node| Ok(!STATELESS.contains(&node.name())))
        .unwrap_or(true)
}

/// Whether the plan has one of DataFusion's joins, whose state a checkpoint cannot hold
/// (ours, [`LookupJoinExec`] and [`StreamJoinExec`], checkpoint).
fn has_join(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| {
        Ok(node.name().contains("Join")
            && node.downcast_ref::<LookupJoinExec>().is_none()
            && node.downcast_ref::<StreamJoinExec>().is_none())
    })
    .unwrap_or(false)
}

fn has_aggregate(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| Ok(node.downcast_ref::<AggregateExec>().is_some()))
        .unwrap_or(false)
}

fn is_windowed(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| {
        Ok(node
            .downcast_ref::<ferris_streaming::WindowAggregateExec>()
            .is_some_and(|w| w.config().window.is_windowed()))
    })
    .unwrap_or(false)
}

/// `'late.data.strategy'` and its options.
fn late_policy(options: &Options) -> Result<LateDataPolicy> {
    let Some(strategy) = options.get("late.data.strategy") else {
        return Ok(LateDataPolicy::Drop);
    };
    Ok(
        match strategy
            .one_of(&["drop", "dead_letter", "allowed_lateness"])?
            .as_str()
        {
            "drop" => LateDataPolicy::Drop,
            "dead_letter" => {
                let path = options.required(
                    "late.data.dead_letter.path",
                    "where 'dead_letter' writes late records",
                )?;
                LateDataPolicy::DeadLetter(Arc::new(LateRecordFile::new(path.value)))
            }
            _ => {
                let lateness = options.required(
                    "late.data.allowed.lateness",
                    "how long windows accept late records",
                )?;
                LateDataPolicy::AllowedLateness(lateness.duration()?.as_millis() as i64)
            }
        },
    )
}

/// A byte size: `1048576`, `512KB`, `64MB`, `2GB` (powers of 1024).
fn bytes(value: &OptionValue) -> Result<usize> {
    let text = value.value.trim().to_ascii_uppercase();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let unit = match text[digits..].trim() {
        "" | "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        _ => 0,
    };
    match text[..digits].parse::<usize>() {
        Ok(n) if unit > 0 && n > 0 => Ok(n * unit),
        _ => Err(value.error("expected a size such as '64MB' or '2GB'")),
    }
}

/// A planning error of a streaming query, at the query's position, without DataFusion's
/// "Error during planning:" prefix.
fn planning_error(error: impl Into<EngineError>, query: &StreamingQuery) -> EngineError {
    let message = match error.into() {
        EngineError::DataFusion(error) => match error.find_root() {
            datafusion::error::DataFusionError::Plan(message) => message.clone(),
            other => other.to_string(),
        },
        other => return other,
    };
    EngineError::Sql {
        message,
        position: query.position,
    }
}

/// The context a plan runs in: the session's, with a job's counters, barrier and control
/// in its config, and its memory limit.
pub(crate) fn task_context(
    state: &datafusion::execution::SessionState,
    memory_limit: Option<usize>,
    job: Option<&JobRun>,
) -> Result<Arc<TaskContext>> {
    let mut config = state.config().clone();
    if let Some(job) = job {
        config = config
            .with_extension(job.metrics.clone())
            .with_extension(job.control.clone());
        if let Some(barrier) = &job.barrier {
            config = config.with_extension(barrier.clone());
        }
    }
    let mut task = TaskContext::from(state).with_session_config(config);
    if let Some(limit) = memory_limit {
        task = task.with_runtime(
            RuntimeEnvBuilder::new()
                .with_memory_limit(limit, 1.0)
                .build_arc()?,
        );
    }
    Ok(Arc::new(task))
}
