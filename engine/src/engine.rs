//! What statements act on: the DataFusion context configured for streaming, the catalog of
//! what they declared, the jobs they started, and the places and defaults jobs use.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use ferris_connectors::StopSignal;
use ferris_connectors::kafka::{DEFAULT_BOOTSTRAP_SERVERS, KafkaConnection};

use crate::catalog::Catalog;
use crate::cluster::{ClusterCatalog, JobSummary};
use crate::error::{EngineError, Result};
use crate::job::record::JobRecord;
use crate::job::stored::StoredJobs;
use crate::planner::window_output::{StreamingQueryPlanner, WindowOutputRule};

/// The catalog of every stream, table and source: `ferris.public.name` is `name`.
pub const CATALOG: &str = "ferris";
/// The schema of every stream, table and source, in [`CATALOG`].
pub const SCHEMA: &str = "public";

/// The environment variable naming the Kafka cluster SHOW TOPICS describes (else
/// `127.0.0.1:9092`).
pub const KAFKA_ENV: &str = "FERRIS_KAFKA_BOOTSTRAP";

/// The state a session's statements read and change.
pub struct Engine {
    /// One partition per source, no batch coalescing (see [`Engine::new`]).
    pub(crate) ctx: SessionContext,
    /// What the statements declared.
    pub(crate) catalog: Catalog,
    /// Ends watching sources (and so every job) cleanly.
    pub(crate) stop: StopSignal,
    /// Every job started, for SHOW JOBS.
    pub(crate) jobs: Vec<Arc<JobRecord>>,
    /// The Kafka cluster SHOW TOPICS describes.
    pub(crate) kafka: KafkaConnection,
    /// Where jobs keep their checkpoints (one folder per job); none: jobs do not checkpoint
    /// unless their `'checkpoint.dir'` says where.
    pub(crate) state_dir: Option<PathBuf>,
    /// Options every job gets unless its `WITH` sets them (the server config's `jobs`).
    pub(crate) job_defaults: Vec<(String, String)>,
    /// The cluster whose shared catalog keeps the jobs, if the server is in one.
    pub(crate) cluster: Option<Arc<dyn ClusterCatalog>>,
    /// Where this session's jobs run: the node's id in a cluster, else the host's name.
    pub(crate) node: String,
    /// A job declared without a sink is kept here (`ferris server`): its table answers pull
    /// queries, its stream push queries. Else (`ferris run`) a job needs a sink.
    pub(crate) keeps_outputs: bool,
}

impl Engine {
    /// An engine with an empty catalog and no jobs.
    pub(crate) fn new() -> Self {
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
        // `COUNT(DISTINCT x)` alone stays one aggregate (DataFusion would group by x below
        // it): our streaming aggregate keeps distinct values itself. (A bounded query's
        // results are the same either way; only its speed may differ.)
        let logical_rules = state
            .optimizers()
            .iter()
            .filter(|rule| rule.name() != "single_distinct_aggregation_to_group_by")
            .cloned()
            .collect();
        let state = SessionStateBuilder::new_from_existing(state)
            .with_optimizer_rules(logical_rules)
            .with_physical_optimizer_rules(rules)
            .with_analyzer_rule(Arc::new(WindowOutputRule))
            .with_query_planner(Arc::new(StreamingQueryPlanner))
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
            cluster: None,
            node: host_name(),
            keeps_outputs: false,
        }
    }

    /// The latest job called `name` (a name is reused once its job has ended).
    pub(crate) fn latest_job(&self, name: &str) -> Option<Arc<JobRecord>> {
        self.jobs
            .iter()
            .rev()
            .find(|j| j.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// The cluster, for what only a cluster has (`SHOW NODES`).
    pub(crate) fn cluster(&self) -> Result<&Arc<dyn ClusterCatalog>> {
        self.cluster.as_ref().ok_or_else(|| {
            EngineError::Catalog(
                "this server is not in a cluster (start it with --cluster): it is its only node"
                    .into(),
            )
        })
    }

    /// Every job, as `SHOW JOBS` lists them: the cluster's, with those running here as they
    /// are now; or this session's.
    pub(crate) async fn job_summaries(&self) -> Result<Vec<JobSummary>> {
        let Some(cluster) = &self.cluster else {
            return Ok(self.jobs.iter().map(|j| j.summary(&self.node)).collect());
        };
        let mut jobs = cluster.summaries().await?;
        // Fresher from here where the whole job runs here (not one of its instances).
        for job in &mut jobs {
            if job.node == self.node
                && let Some(local) = self.latest_job(&job.name)
                && local.instance.is_none()
            {
                *job = local.summary(&self.node);
            }
        }
        // One-shot inserts run where they were sent, outside the cluster's catalog.
        for local in &self.jobs {
            if !jobs
                .iter()
                .any(|j| j.name.eq_ignore_ascii_case(&local.name))
            {
                jobs.push(local.summary(&self.node));
            }
        }
        Ok(jobs)
    }

    /// The ids of the nodes jobs can run on: the cluster's, or this one.
    pub(crate) async fn node_ids(&self) -> Result<Vec<String>> {
        Ok(match &self.cluster {
            Some(cluster) => cluster.nodes().await?.into_iter().map(|n| n.id).collect(),
            None => vec![self.node.clone()],
        })
    }

    /// The jobs kept under the state dir, if there is one (in a cluster, the cluster keeps
    /// them).
    pub(crate) fn stored_jobs(&self) -> Option<StoredJobs> {
        match self.cluster {
            Some(_) => None,
            None => self.state_dir.as_deref().map(StoredJobs::new),
        }
    }
}

/// The machine's name: where a server outside a cluster runs its jobs.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
