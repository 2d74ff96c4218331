//! A session: statements in, rows and running jobs out.
//!
//! The session parses statements ([`crate::statements`]) and has each execute itself against
//! its [`Engine`]: the DataFusion context configured for streaming, the catalog of what its
//! statements declared, and its jobs.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use ferris_connectors::StopSignal;

use crate::catalog::Catalog;
use crate::cluster::ClusterCatalog;
use crate::engine::Engine;
use crate::error::Result;
use crate::job::InstanceToRun;
use crate::job::{JobRecord, RunningJob};
use crate::placeholders::parse_query;
use crate::statements::{Execution, Statement, StatementOutput, parse_statements};

/// Executes statements against one DataFusion context and catalog.
pub struct Session {
    engine: Engine,
    /// The one instance of every parallel job this process runs (`ferris run --instance`).
    process_instance: Option<InstanceToRun>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session with an empty catalog.
    pub fn new() -> Self {
        Self {
            engine: Engine::new(),
            process_instance: None,
        }
    }

    /// Options every job gets unless its `WITH` sets them (`'checkpoint.interval'`, ...); a
    /// default no job uses is no error.
    pub fn set_job_defaults(&mut self, defaults: Vec<(String, String)>) {
        self.engine.job_defaults = defaults;
    }

    /// This process runs instance `index` of every parallel job (`'parallelism'` above 1);
    /// the other instances run in other processes, each given its own index, and the
    /// exchanges between them go through Kafka (docs/parallelism.md).
    pub fn set_process_instance(&mut self, index: usize) {
        self.process_instance = Some(InstanceToRun { index, era: 0 });
    }

    /// A job declared without a sink is kept by this session, as a server keeps it: a
    /// table's rows answer pull queries, a stream's rows push queries.
    pub fn keep_outputs(&mut self) {
        self.engine.keeps_outputs = true;
    }

    /// Jobs keep their checkpoints under `dir` (a folder per job) and resume from them.
    pub fn set_state_dir(&mut self, dir: impl Into<PathBuf>) {
        self.engine.state_dir = Some(dir.into());
    }

    /// Starts again every job kept under the state dir, each from its last checkpoint (a
    /// finished one stays finished). A job that cannot start is reported and left out.
    pub async fn resume_jobs(&mut self) -> Result<Vec<RunningJob>> {
        let Some(stored) = self.engine.stored_jobs() else {
            return Ok(vec![]);
        };
        let mut started = Vec::new();
        let mut kept = stored.load()?;
        // Functions first: the jobs may call them.
        kept.sort_by_key(|k| {
            !k.name
                .starts_with(crate::statements::create_function::KEPT_AS)
        });
        for stored in kept {
            if stored.stopped {
                continue;
            }
            match self
                .start_kept(&stored.name, &stored.sql, self.process_instance)
                .await
            {
                Ok(Some(job)) => started.push(job),
                Ok(None) => {}
                Err(e) => tracing::error!(job = %stored.name, "cannot be resumed: {e}"),
            }
        }
        Ok(started)
    }

    /// Makes the session a node of `cluster`, called `node`: its jobs are the cluster's, and
    /// keep their checkpoints under the cluster's state dir.
    pub fn join_cluster(&mut self, cluster: Arc<dyn ClusterCatalog>, node: &str) {
        self.engine.state_dir = Some(PathBuf::from(cluster.state_dir()));
        self.engine.cluster = Some(cluster);
        self.engine.node = node.to_string();
    }

    /// Starts the kept job `name` (its statement `sql`) from its last checkpoint, all its
    /// instances or, given `instance`, that one alone (the others run elsewhere); `None`
    /// when the statement started no job.
    pub async fn start_kept(
        &mut self,
        name: &str,
        sql: &str,
        instance: Option<InstanceToRun>,
    ) -> Result<Option<RunningJob>> {
        let statement = self.kept_statement(name, sql)?;
        let mut run = self.execution(&statement, &[]);
        run.instance = instance;
        match statement.kind.execute_as(run, name).await? {
            StatementOutput::Job(job) => Ok(Some(job)),
            StatementOutput::Rows(_) => Ok(None),
        }
    }

    /// Enters the kept job `name`'s sources and output in the catalog without running it:
    /// a node of a cluster knows every job, whichever node runs it.
    pub async fn declare_kept(&mut self, name: &str, sql: &str) -> Result<()> {
        let statement = self.kept_statement(name, sql)?;
        let run = self.execution(&statement, &[]);
        statement.kind.declare_as(run, name).await
    }

    /// Forgets the output of the job `name`, dropped by another node of the cluster, and the
    /// runs of it this node had ended (else `SHOW JOBS` here would go on listing them).
    pub fn forget(&mut self, name: &str) -> Result<()> {
        self.engine
            .jobs
            .retain(|j| !j.name.eq_ignore_ascii_case(name) || j.is_running());
        self.engine.catalog.remove(name);
        self.engine.ctx.deregister_table(name)?;
        Ok(())
    }

    /// Forgets the function `name` a user wrote, dropped through another node of the
    /// cluster.
    pub fn forget_function(&mut self, name: &str) {
        crate::statements::create_function::forget(&self.engine, name);
    }

    fn kept_statement(&self, name: &str, sql: &str) -> Result<Statement> {
        let mut statements = self.parse(sql)?;
        match statements.len() {
            1 => Ok(statements.remove(0)),
            n => Err(crate::error::EngineError::Internal(format!(
                "job '{name}' kept {n} statements"
            ))),
        }
    }

    /// The signal that ends watching sources (and so every job) cleanly.
    pub fn stop_signal(&self) -> StopSignal {
        self.engine.stop.clone()
    }

    /// Points SHOW TOPICS at the Kafka cluster at `bootstrap_servers`.
    pub fn set_kafka(&mut self, bootstrap_servers: &str) {
        self.engine.kafka.bootstrap_servers = bootstrap_servers.to_string();
    }

    /// Every job the session started, running or not.
    pub fn jobs(&self) -> &[Arc<JobRecord>] {
        &self.engine.jobs
    }

    /// What the session's statements have declared.
    pub fn catalog(&self) -> &Catalog {
        &self.engine.catalog
    }

    /// The DataFusion context (for functions, plans and tests).
    pub fn context(&self) -> &SessionContext {
        &self.engine.ctx
    }

    /// Parses `sql` into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        parse_statements(sql)
    }

    /// Plans `sql` as DataFusion alone would (none of our statements or clauses), its `?`
    /// placeholders numbered: a client preparing a statement learns its columns and its
    /// parameters' types from this plan. It takes the session's state (`context().state()`), so that a server plans without
    /// holding the session.
    pub async fn plan_sql(state: &SessionState, sql: &str) -> Result<LogicalPlan> {
        Ok(state.statement_to_plan(parse_query(state, sql)?).await?)
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
        let run = self.execution(statement, parameters);
        statement.kind.execute(run).await
    }

    fn execution<'a>(
        &'a mut self,
        statement: &'a Statement,
        parameters: &'a [ScalarValue],
    ) -> Execution<'a> {
        Execution {
            engine: &mut self.engine,
            statement,
            parameters,
            parse: parse_statements,
            instance: self.process_instance,
        }
    }
}
