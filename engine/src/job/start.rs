//! Starting a job: its query prepared, its sources and output entered in the catalog, its
//! last checkpoint checked, its output made readable by name, and its run loop spawned.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::ExecutionPlan;
use ferris_connectors::{SinkConfig, SourceConnector};
use ferris_streaming::WATERMARK_COLUMN;

use crate::catalog::{CatalogEntry, EntryKind};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::job::checkpoint::CheckpointStore;
use crate::job::manifest::Manifest;
use crate::job::materialized::{LiveStream, MaterializedTable};
use crate::job::record::{JobControl, JobEnd, JobKind, JobMetrics, JobSpec, RunningJob};
use crate::job::run::{CheckpointedJob, JobOutputs, Stops, run_at_least_once};
use crate::job::table_key::table_key;
use crate::job::task::{JobRun, process_instance};
use crate::planner::properties;
use crate::position::Position;
use crate::prepare::{CheckpointSettings, PreparedQuery};
use crate::statements::streaming_query::StreamingQuery;

impl Engine {
    /// Starts `job` here.
    pub(crate) async fn start_job(&mut self, job: NewJob<'_>) -> Result<RunningJob> {
        let name = job.name;
        // Two jobs writing one sink under one name would interleave their output (two
        // instances of one job, each run apart, write their own shares).
        if self.jobs.iter().any(|r| {
            r.name.eq_ignore_ascii_case(name)
                && r.is_running()
                && r.instance
                    .zip(job.instance)
                    .is_none_or(|(a, b)| a == b.index)
        }) {
            return Err(EngineError::Sql {
                message: format!(
                    "job '{name}' is running already; its name is taken until it ends"
                ),
                position: job.query.position,
            });
        }
        let Declared {
            prepared,
            mut sink_config,
            schema,
            key,
        } = self.declare_job(&job).await?;
        let NewJob {
            kind,
            statement,
            into,
            ..
        } = job;
        let inserting = into.is_some();
        let bounded = prepared.sources.iter().all(|s| s.source.is_bounded());
        let metrics = Arc::new(JobMetrics::new(prepared.parallelism));
        let control = Arc::new(JobControl::default());
        let spec = |plan: Arc<dyn ExecutionPlan>, checkpoint_dir| JobSpec {
            name: name.to_string(),
            kind,
            statement: statement.to_string(),
            checkpoint_dir,
            instance: prepared.instance.as_ref().map(|here| here.index),
            control: control.clone(),
            bounded,
            plan,
            metrics: metrics.clone(),
        };
        let checkpoint_dir = prepared.checkpoint.as_ref().map(|c| c.dir.clone());
        let start = match &prepared.checkpoint {
            Some(settings) => {
                self.checkpoint_start(name, &prepared, settings, sink_config.as_mut())
                    .await?
            }
            None => None,
        };
        // An instance run in a process of its own keeps its places in the exchanges' topics
        // in its checkpoints only.
        if start.is_none()
            && let Some(here) = &prepared.instance
        {
            return Err(EngineError::Checkpoint(format!(
                "job '{name}' runs instance {} of {} here, and cannot checkpoint (see the warning above): its instances cannot run in processes of their own",
                here.index, here.count
            )));
        }
        // The output is readable by name: a table's current state answers pull queries, a
        // stream's rows as written feed push queries. (Not an insert's: it has no name of
        // its own to read; nor an instance's, which writes a share of it, as a node that
        // does not run the job reads it.)
        let (materialized, live) = match kind {
            _ if inserting || prepared.instance.is_some() => (None, None),
            JobKind::Table => {
                let table = Arc::new(MaterializedTable::try_new(
                    name,
                    &schema,
                    &key,
                    prepared.memory_limit,
                )?);
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
        if let Some(CheckpointStart::Finished { manifest, store }) = &start {
            // The job ran to its end before: its output is complete; make sure it is visible.
            sink_config.complete(&manifest.sink)?;
            if let Some(table) = &materialized {
                table.restore(store.read_table(manifest).await?.as_ref())?;
            }
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
        let stops = Stops {
            session: self.stop.clone(),
            job: control.clone(),
            sources: prepared.source_stop.clone(),
        };
        let work: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JobEnd>> + Send>> =
            match start {
                Some(CheckpointStart::Run {
                    store,
                    transactional,
                    interval,
                }) => {
                    let job = CheckpointedJob {
                        name: name.to_string(),
                        state: self.ctx.state(),
                        plan: prepared.plan.clone(),
                        memory_limit: prepared.memory_limit,
                        previous_era: prepared
                            .checkpoint
                            .as_ref()
                            .and_then(|c| c.previous_era.clone()),
                        sink: sink_config,
                        schema,
                        sources: prepared.sources_here(),
                        instance: prepared.instance.clone(),
                        store,
                        interval,
                        transactional,
                        fingerprint: prepared.fingerprint.clone(),
                        parallelism: prepared.parallelism,
                        metrics: metrics.clone(),
                        control: control.clone(),
                        materialized,
                        live,
                        stops,
                    };
                    Box::pin(job.run())
                }
                _ => {
                    let sink = sink_config.open(schema.clone())?;
                    let run = JobRun {
                        metrics: metrics.clone(),
                        barrier: None,
                        control: control.clone(),
                        process: process_instance(name, prepared.instance.as_ref(), sink.as_ref())?,
                    };
                    let stream = self.run_plan(&prepared, Some(&run))?;
                    let outputs = JobOutputs {
                        sink,
                        materialized,
                        live,
                        metrics: metrics.clone(),
                        schema,
                    };
                    let sources = prepared
                        .sources_here()
                        .into_iter()
                        .map(|(_, source)| source)
                        .collect();
                    let stateless = properties::is_stateless(&prepared.plan);
                    Box::pin(run_at_least_once(
                        stream, outputs, sources, stateless, stops,
                    ))
                }
            };
        // However the job ends (done, failed, stopped by force), its sources let go of what
        // they hold for it.
        let sources = ReleasedAtEnd(prepared.sources.iter().map(|s| s.source.clone()).collect());
        let work = async move {
            let _sources = sources;
            work.await
        };
        let job = RunningJob::spawn(spec(prepared.plan.clone(), checkpoint_dir), work);
        self.jobs.push(job.record());
        Ok(job)
    }

    /// Prepares the job `name` and enters its sources and output in the catalog, as every
    /// node of a cluster does for every job, whichever node runs it.
    pub(crate) async fn declare_job(&mut self, job: &NewJob<'_>) -> Result<Declared> {
        let NewJob {
            kind,
            name,
            query,
            into,
            parameters,
            instance,
            ..
        } = job;
        let (kind, into) = (*kind, into.as_ref());
        let inserting = into.is_some();
        let prepared = self
            .prepare(
                query,
                Some(name),
                into.map(|i| i.writer.as_ref()),
                parameters,
                *instance,
            )
            .await?;
        if let Some(cluster) = &self.cluster {
            let shared = cluster.state_dir();
            // A folder of its own under the shared one (not the shared one itself: DROP
            // deletes it).
            let readable_elsewhere = prepared.checkpoint.as_ref().is_some_and(|c| {
                let dir = std::path::Path::new(&c.dir);
                c.dir.starts_with("s3://")
                    || (dir.starts_with(shared)
                        && dir != std::path::Path::new(shared)
                        && !dir
                            .components()
                            .any(|p| p == std::path::Component::ParentDir))
            });
            if !readable_elsewhere {
                return Err(EngineError::Sql {
                    message: format!(
                        "job '{name}' keeps its checkpoints where other nodes of the cluster cannot read them ({}): leave out 'checkpoint.dir', or point it under the cluster's state dir {shared} or at s3://",
                        prepared
                            .checkpoint
                            .as_ref()
                            .map_or("nowhere", |c| c.dir.as_str())
                    ),
                    position: query.position,
                });
            }
        }
        let mut sink_config = prepared
            .sink
            .clone()
            .expect("prepare requires a sink for a job");
        let schema = match into {
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
        sink_config.settle(&schema, &key, &time_columns(&prepared));
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
                writer: source.writer.clone(),
                metadata_columns: source.source.metadata_columns(),
            });
        }
        if !inserting {
            self.catalog.insert(CatalogEntry {
                name: name.to_string(),
                kind: kind.into(),
                connector: sink_config.connector().into(),
                location: sink_config.location(),
                format: sink_config.format(),
                windowed: properties::is_windowed(&prepared.plan),
                key: key.clone(),
                schema: schema.clone(),
                writer: Some(sink_config.clone()),
                metadata_columns: vec![],
            });
        }
        Ok(Declared {
            prepared,
            sink_config,
            schema,
            key,
        })
    }

    /// Settles a checkpointing job's guarantee and checks its last checkpoint: `None` when
    /// it cannot checkpoint (a join) and runs at least once instead.
    async fn checkpoint_start(
        &self,
        name: &str,
        prepared: &PreparedQuery,
        settings: &CheckpointSettings,
        sink_config: &mut dyn SinkConfig,
    ) -> Result<Option<CheckpointStart>> {
        if properties::has_unsnapshotted_join(&prepared.plan) {
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
        let sources: Vec<&dyn SourceConnector> =
            prepared.sources.iter().map(|s| s.source.as_ref()).collect();
        // Each instance of a job run in several processes writes in transactions of its own.
        let writer = match &prepared.instance {
            Some(here) => format!("{name}-instance-{}", here.index),
            None => name.to_string(),
        };
        let transactional = sink_config
            .use_transactions(&writer, &sources, settings.exactly_once)
            .map_err(|e| EngineError::Checkpoint(format!("job '{name}': {e}")))?;
        let store = CheckpointStore::open(&settings.dir)?;
        // The newest checkpoint tells at once whether the query changed or already ended.
        if let Some(newest) = store.manifests().await?.into_iter().next() {
            if newest.plan != prepared.fingerprint {
                return Err(EngineError::Checkpoint(format!(
                    "job '{name}' changed since checkpoint {} in {}: its state fits the old query only. Delete that folder to start over",
                    newest.epoch, settings.dir
                )));
            }
            if newest.finished && !transactional {
                return Ok(Some(CheckpointStart::Finished {
                    manifest: newest,
                    store,
                }));
            }
        }
        Ok(Some(CheckpointStart::Run {
            store,
            transactional,
            interval: settings.interval,
        }))
    }
}

/// A job a statement asks for, before it is declared, started or submitted.
pub(crate) struct NewJob<'a> {
    /// Stream or table.
    pub(crate) kind: JobKind,
    /// The job's name (an insert's, or its sink's).
    pub(crate) name: &'a str,
    /// Its query.
    pub(crate) query: &'a StreamingQuery,
    /// The statement's text, kept to start the job again.
    pub(crate) statement: &'a str,
    /// What an `INSERT INTO` job writes.
    pub(crate) into: Option<InsertTarget>,
    /// The values of the query's parameters.
    pub(crate) parameters: &'a [ScalarValue],
    /// The one instance to run here, the others running elsewhere; `None`: all of them.
    pub(crate) instance: Option<crate::job::InstanceToRun>,
}

/// Where an `INSERT INTO` job writes, and the columns it must give.
pub(crate) struct InsertTarget {
    /// The stream written to.
    pub(crate) target: String,
    /// Its sink.
    pub(crate) writer: Box<dyn SinkConfig>,
    /// Its columns, in order.
    pub(crate) columns: Vec<(String, arrow::datatypes::DataType)>,
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
        /// Its sink commits in transactions, with the sources' positions.
        transactional: bool,
        /// How often it checkpoints.
        interval: std::time::Duration,
    },
    /// Not at all: its last run finished.
    Finished {
        manifest: Manifest,
        /// Where the manifest is.
        store: CheckpointStore,
    },
}

/// The columns that may time each result row, best first: the window end of a windowed
/// result, then the sources' event time columns.
fn time_columns(prepared: &PreparedQuery) -> Vec<String> {
    let event_time = prepared
        .sources
        .iter()
        .filter_map(|s| s.event_time.field.clone());
    std::iter::once(WATERMARK_COLUMN.to_string())
        .chain(event_time)
        .collect()
}

/// A job prepared and entered in the catalog, before it runs.
pub(crate) struct Declared {
    prepared: PreparedQuery,
    sink_config: Box<dyn SinkConfig>,
    schema: SchemaRef,
    key: Vec<String>,
}

impl Declared {
    /// Whether every source of the job ends by itself.
    pub(crate) fn bounded(&self) -> bool {
        self.prepared.sources.iter().all(|s| s.source.is_bounded())
    }

    /// Where the job keeps its checkpoints, if it takes them.
    pub(crate) fn checkpoint_dir(&self) -> Option<String> {
        self.prepared.checkpoint.as_ref().map(|c| c.dir.clone())
    }

    /// How many instances of the job can run apart, each where a cluster places it: a
    /// parallel job on sources that do not end, whose sink carries its exchanges, that
    /// checkpoints, and each of whose instances reads a share of its sources. 0: it runs
    /// whole, its instances as tasks of one process.
    pub(crate) fn instances_apart(&self) -> usize {
        let prepared = &self.prepared;
        let apart = prepared.parallelism > 1
            && !self.bounded()
            && self.sink_config.carries_exchanges()
            && prepared.checkpoint.is_some()
            && !properties::has_unsnapshotted_join(&prepared.plan)
            && prepared.every_instance_reads;
        if apart { prepared.parallelism } else { 0 }
    }
}

/// A job's sources, released when the job's work ends or is dropped.
struct ReleasedAtEnd(Vec<Arc<dyn SourceConnector>>);

impl Drop for ReleasedAtEnd {
    fn drop(&mut self) {
        for source in &self.0 {
            source.release();
        }
    }
}
