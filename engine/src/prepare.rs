//! Making a query ready to run: its `WITH` options resolved into sources, a sink, a state
//! memory limit and checkpoint settings; its SQL planned by DataFusion; the plan rewritten
//! by our streaming rules and checked.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
use datafusion::physical_plan::{
    ExecutionPlan, SendableRecordBatchStream, displayable, execute_stream,
};
use ferris_connectors::options::{OptionValue, Options};
use ferris_connectors::registry::{self, ConnectorKind};
use ferris_connectors::{Declaration, SinkConfig, SourceConnector, StopSignal};
use ferris_streaming::{
    AggregateSettings, EmitMode, LateDataPolicy, SideTime, WatermarkSpec, WindowSpec,
};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::job::JobMetrics;
use crate::job::checkpoint::era_folder;
use crate::job::kept_output::KeptOutput;
use crate::job::task::{InstanceHere, InstanceToRun, JobRun, task_context, task_with_config};
use crate::late::LateRecordFile;
use crate::placeholders::parse_query;
use crate::planner::parallelize::Parallelize;
use crate::planner::window_clause::{QueryWindows, plan_windows};
use crate::planner::{StreamingQueryPlan, properties, streaming_rules};
use crate::source::{SourceDef, SourceScan, SqlColumns, resolve_source};
use crate::statements::streaming_query::StreamingQuery;

/// A query made ready to run: its physical plan, sources and sink.
pub(crate) struct PreparedQuery {
    pub(crate) plan: Arc<dyn ExecutionPlan>,
    /// The plan of one instance, as checkpoints record it.
    pub(crate) fingerprint: String,
    /// How many instances `plan` runs as.
    pub(crate) parallelism: usize,
    /// The logical plan DataFusion made of the query (before optimization).
    pub(crate) logical: LogicalPlan,
    pub(crate) sources: Vec<SourceDef>,
    /// What the plan's scans read of each source (the columns its readers decode).
    pub(crate) scanned: Vec<SourceScan>,
    pub(crate) sink: Option<Box<dyn SinkConfig>>,
    /// `'state.memory.limit'` in bytes.
    pub(crate) memory_limit: Option<usize>,
    /// A job's checkpoints, when it takes them.
    pub(crate) checkpoint: Option<CheckpointSettings>,
    /// Ends the sources (for a job: fired by its loop).
    pub(crate) source_stop: StopSignal,
    /// The instance this process runs, when the job's instances run in several.
    pub(crate) instance: Option<InstanceHere>,
    /// Whether each instance reads a share of some source (instance 0 reads those that do
    /// not divide): one that reads none cannot run apart.
    pub(crate) every_instance_reads: bool,
}

impl PreparedQuery {
    /// The sources this process reads, by name: all of them, or its instance's shares.
    pub(crate) fn sources_here(&self) -> Vec<(String, Arc<dyn SourceConnector>)> {
        match &self.instance {
            Some(here) => here.sources.clone(),
            None => self
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.source.clone()))
                .collect(),
        }
    }
}

/// Where and how often a job checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointSettings {
    /// A local folder or `s3://bucket/prefix`.
    pub(crate) dir: String,
    /// For an instance of a job whose parallelism has changed: the folder of the instances
    /// of the era before, whose drained last checkpoints it takes up when it has none.
    pub(crate) previous_era: Option<String>,
    pub(crate) interval: Duration,
    /// `'processing.guarantee'` as written: exactly once (true), at least once (false), or
    /// the best the sink allows (none).
    pub(crate) exactly_once: Option<bool>,
}

impl Engine {
    /// Where the job `job`, declared without a sink, writes: a server keeps its output; a
    /// job of `ferris run` needs a sink, and so does one of a cluster, whose other nodes
    /// read a job's output from its sink.
    fn output_without_sink(&self, job: &str) -> Result<Box<dyn SinkConfig>> {
        let why = match (self.keeps_outputs, &self.cluster) {
            (true, None) => return Ok(Box::new(KeptOutput)),
            (true, Some(_)) => " (in a cluster, the other nodes read a job's output from its sink)",
            (false, _) => "",
        };
        Err(EngineError::option(
            format!(
                "'{job}' has no sink{why}: add '{job}.type' = 'file_sink' and '{job}.path' = '...' to WITH"
            ),
            None,
        ))
    }

    /// Resolves the query's sources and sink from its options and plans it.
    pub(crate) async fn prepare(
        &mut self,
        query: &StreamingQuery,
        job: Option<&str>,
        into: Option<&dyn SinkConfig>,
        parameters: &[ScalarValue],
        instance: Option<InstanceToRun>,
    ) -> Result<PreparedQuery> {
        let options = match job {
            Some(_) => {
                Options::with_defaults(query.options.clone(), &self.job_defaults, query.position)
            }
            None => Options::new(query.options.clone()),
        };
        let state = self.ctx.state();
        let (sources, mut sink) = resolve_connectors(&options, job, into, &state).await?;
        if let (Some(job), None) = (job, &sink) {
            sink = Some(self.output_without_sink(job)?);
        }
        let late = late_policy(&options)?;
        let parallelism = parallelism(&options)?;
        // Where instances run in several processes, each reads its own instance's shares.
        let mut instance = match (instance, job) {
            (Some(InstanceToRun { index, .. }), Some(job)) if index >= parallelism => {
                return Err(EngineError::Sql {
                    message: format!(
                        "instance {index} of job '{job}' is to run here, and the job runs as {parallelism} (instances 0 to {})",
                        parallelism - 1
                    ),
                    position: query.position,
                });
            }
            (Some(InstanceToRun { index, era }), Some(_)) if parallelism > 1 => {
                Some(InstanceHere {
                    index,
                    era,
                    count: parallelism,
                    sources: Vec::new(),
                })
            }
            _ => None,
        };
        // Checked against the plan below: only a table's keys and a join's rows expire.
        let state_ttl = options.get("state.ttl");
        // Off: the sources decode every column (to compare, `benches/projection_pushdown.rs`).
        let projection_pushdown = options
            .get("projection.pushdown")
            .map(|v| v.boolean())
            .transpose()?
            .unwrap_or(true);
        let memory_limit = options
            .get("state.memory.limit")
            .map(|v| bytes(&v))
            .transpose()?;
        let mut checkpoint = match job {
            Some(job) => checkpoint_settings(&options, self.state_dir.as_deref(), job)?,
            None => None,
        };
        // Each instance checkpoints alone; its positions in the exchanges' topics live only
        // in its checkpoints.
        match (checkpoint.as_mut(), &instance, job) {
            (Some(settings), Some(here), _) => {
                settings.previous_era = here
                    .era
                    .checked_sub(1)
                    .map(|era| era_folder(&settings.dir, era));
                settings.dir = format!(
                    "{}/instance-{}",
                    era_folder(&settings.dir, here.era),
                    here.index
                );
            }
            (None, Some(here), Some(job)) => {
                return Err(EngineError::Sql {
                    message: format!(
                        "job '{job}' runs instance {} of {} here, the others in other processes, and the instances keep their places in the topics between them in their checkpoints: start with --state-dir, or add 'checkpoint.dir'",
                        here.index, here.count
                    ),
                    position: query.position,
                });
            }
            _ => {}
        }
        options.check_all_taken()?;
        // A job's sources end when its loop says (a checkpointing job's never do: it stops
        // at a checkpoint, windows open, to resume them); a query's on the session's stop.
        let source_stop = match job {
            Some(_) => StopSignal::new(),
            None => self.stop.clone(),
        };

        let mut parsed = parse_query(&state, &query.sql)?;
        let QueryWindows {
            windows,
            sources: streams,
        } = plan_windows(&mut parsed, &query.windows, query.position)?;
        // The sources' rows are stamped for the innermost window; the others read the rows
        // of the window below them.
        let window = windows.last();
        let stream_source = streams.first().cloned();
        // The window's watermark: its streams' (all of them, for a UNION ALL).
        let mut watermark: Option<WatermarkSpec> = None;
        // The event times of the sources that declare one, for joins bounded in time.
        let mut times = Vec::new();
        let mut scans = Vec::new();
        let mut readers = vec![false; parallelism];
        for source in &sources {
            let stamp = match &window {
                Some(window) if streams.contains(&source.name) => {
                    let spec = source.watermark_spec(window.time_column.as_deref())?;
                    watermark = Some(match watermark {
                        None => spec.clone(),
                        Some(earlier) => joined_watermark(earlier, &spec).ok_or_else(|| {
                            EngineError::Sql {
                                message: format!(
                                    "the streams a window reads must all have event time or all go by processing time: '{}' differs from '{}'",
                                    source.name, streams[0]
                                ),
                                position: query.position,
                            }
                        })?,
                    });
                    Some(spec)
                }
                _ => None,
            };
            let scan = source.register(&self.ctx, &source_stop, stamp)?;
            let schema = scan.schema();
            let divided = match parallelism {
                1 => None,
                n => scan.divide(n, instance.is_some()).await?,
            };
            match &divided {
                Some(divided) => {
                    for (share, _) in &divided.shares {
                        if let Some(reads) = readers.get_mut(share.index) {
                            *reads = true;
                        }
                    }
                }
                None => readers[0] = true,
            }
            if let Some(here) = instance.as_mut() {
                let read_here = match &divided {
                    Some(divided) => divided
                        .shares
                        .iter()
                        .find(|(share, _)| share.index == here.index)
                        .map(|(_, share)| share.clone()),
                    None => (here.index == 0).then(|| source.source.clone()),
                };
                here.sources
                    .extend(read_here.map(|share| (source.name.clone(), share)));
            }
            scans.push((scan, divided.map(|d| d.streams).unwrap_or_default()));
            // A join keeps one watermark per side: over parts read side by side (a topic's
            // partitions), a part behind the others would have its rows taken for late.
            let one_order = source.source.partitions().is_none_or(|p| p.ids.len() == 1);
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
        // An instance's checkpoint is found again by its shares' committed offsets: one
        // without a share could not tell a checkpoint whose transaction never committed.
        if let (Some(here), Some(job)) = (&instance, job)
            && here.sources.is_empty()
        {
            return Err(EngineError::Sql {
                message: format!(
                    "job '{job}' runs instance {} of {} here, and that instance has no share of its sources to read (a topic of fewer partitions than instances?): run it as at most as many instances as its sources divide into",
                    here.index, here.count
                ),
                position: query.position,
            });
        }
        if window.is_some()
            && (streams.is_empty()
                || !streams
                    .iter()
                    .all(|name| sources.iter().any(|s| &s.name == name)))
        {
            return Err(EngineError::Sql {
                message: "a windowed query reads FROM a source declared in its own WITH clause"
                    .into(),
                position: query.position,
            });
        }
        // DataFusion's planning errors without a place in the SQL (an aggregate in WHERE,
        // nested aggregates) are placed at the query.
        let mut logical = state
            .statement_to_plan(parsed)
            .await
            .map_err(|e| planning_error(e, query))?;
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
        let unbounded = sources.iter().any(|s| !s.source.is_bounded());
        let watermark = watermark.unwrap_or_default();
        let idle_timeout = watermark.idle_timeout;
        // A table's keys and a join's rows without time bounds expire; nothing else.
        let ttl = state_ttl.as_ref().map(|v| v.duration()).transpose()?;
        // An aggregate by keys (without a window, or over a window's rows) over unbounded
        // input can only ever be a changelog.
        let keyed_changes = match query.emit {
            Some(emit) => emit == EmitMode::Changes,
            None => unbounded,
        };
        let keyed = keyed_changes.then(|| AggregateSettings {
            window: WindowSpec::Global,
            emit: EmitMode::Changes,
            late: LateDataPolicy::Drop,
            watermark: watermark.clone(),
            state_ttl: ttl,
        });
        // The innermost window reads the sources' rows; each other one the next one's.
        let innermost = windows.len().saturating_sub(1);
        let windows: Vec<AggregateSettings> = windows
            .iter()
            .enumerate()
            .map(|(level, window)| AggregateSettings {
                window: window.spec,
                emit: match level {
                    0 => query.emit.unwrap_or(EmitMode::Final),
                    _ => EmitMode::Final,
                },
                late: match level == innermost {
                    true => late.clone(),
                    false => LateDataPolicy::Drop,
                },
                watermark: watermark.clone(),
                state_ttl: None,
            })
            .collect();
        let window_count = windows.len();
        let rules = streaming_rules(StreamingQueryPlan {
            windows,
            keyed,
            stream: stream_schema,
            times,
            state_ttl: ttl,
        });
        for rule in rules {
            plan = rule
                .optimize(plan, state.config_options())
                .map_err(|e| planning_error(e, query))?;
        }
        if let Some(option) = state_ttl.filter(|_| !properties::lets_state_expire(&plan)) {
            return Err(option
                .error("'state.ttl' is how long a table's key (a GROUP BY without a window, a Top-N's key) or a row of a join of two streams without time bounds is kept; this query keeps neither (a window's keys go when it closes, an interval join's rows when they can no longer match)")
                .into());
        }
        // The plan of one instance is what checkpoints fit: state taken at one parallelism
        // restores at another.
        let fingerprint = displayable(plan.as_ref()).indent(true).to_string();
        let scanned: Vec<SourceScan> = scans.iter().map(|(scan, _)| scan.clone()).collect();
        if projection_pushdown {
            for scan in &scanned {
                if let Some(columns) = scan.columns_read_by(&plan) {
                    scan.decode_only(columns, &self.ctx)?;
                }
            }
        }
        let parallelize = Parallelize {
            instances: parallelism,
            pre_aggregate: instance.is_some(),
            sources: scans,
            idle_timeout,
        };
        plan = parallelize
            .optimize(plan, state.config_options())
            .map_err(|e| planning_error(e, query))?;
        if properties::count_windowed_aggregates(&plan) < window_count {
            return Err(EngineError::Sql {
                message: "WINDOW needs an aggregate: GROUP BY keys with COUNT, SUM, ...".into(),
                position: query.position,
            });
        }
        // An aggregate left to DataFusion (`EMIT FINAL` without a window, or over a
        // window's rows) would wait for the end of a source that has none.
        if properties::has_unbounded_aggregate(&plan) {
            return Err(EngineError::Sql {
                message: "EMIT FINAL on a watched source needs a WINDOW: without one, a group never closes".into(),
                position: query.position,
            });
        }
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
            fingerprint,
            parallelism,
            logical,
            sources,
            scanned,
            sink,
            memory_limit,
            checkpoint,
            source_stop,
            instance,
            every_instance_reads: readers.iter().all(|r| *r),
        })
    }

    /// Runs a plan, as a job's when `job` says.
    pub(crate) fn run_plan(
        &self,
        prepared: &PreparedQuery,
        job: Option<&JobRun>,
    ) -> Result<SendableRecordBatchStream> {
        let task = task_context(&self.ctx.state(), prepared.memory_limit, job)?;
        Ok(execute_stream(prepared.plan.clone(), task)?)
    }

    /// Runs the plan outside a job, its sources counting what they read into `metrics`
    /// (EXPLAIN ANALYZE).
    pub(crate) fn run_plan_counting(
        &self,
        prepared: &PreparedQuery,
        metrics: Arc<JobMetrics>,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.ctx.state();
        let config = state.config().clone().with_extension(metrics);
        let task = task_with_config(&state, config, prepared.memory_limit)?;
        Ok(execute_stream(prepared.plan.clone(), task)?)
    }
}

/// The watermark of a window over two streams, `earlier`'s and `spec`'s: `None` if one has
/// event time and the other goes by the clock (a window cannot close on both). The stream
/// that goes idle first lets the others' watermark on.
fn joined_watermark(earlier: WatermarkSpec, spec: &WatermarkSpec) -> Option<WatermarkSpec> {
    if earlier.field.is_some() != spec.field.is_some() {
        return None;
    }
    let idle_timeout = match (earlier.idle_timeout, spec.idle_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Some(WatermarkSpec {
        idle_timeout,
        ..earlier
    })
}

/// How many instances a query runs as: `'parallelism'` = N, or `auto` (one per core);
/// else 1.
fn parallelism(options: &Options) -> Result<usize> {
    let Some(option) = options.get("parallelism") else {
        return Ok(1);
    };
    if option.value.eq_ignore_ascii_case("auto") {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Ok(cores.min(MAX_PARALLELISM));
    }
    match option.value.parse::<usize>() {
        Ok(n) if (1..=MAX_PARALLELISM).contains(&n) => Ok(n),
        _ => Err(option
            .error(format!(
                "parallelism is a whole number from 1 to {MAX_PARALLELISM}, or 'auto' (one instance per core)"
            ))
            .into()),
    }
}

/// The most instances a query may run as: one per key group.
pub(crate) const MAX_PARALLELISM: usize = ferris_streaming::key_groups::KEY_GROUPS;

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
            return Err(option
                .error("checkpoints need a place: start with --state-dir, or add 'checkpoint.dir'")
                .into());
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
        previous_era: None,
        interval,
        exactly_once,
    }))
}

/// The sources and the sink named in the options. A job writes to the sink named like it; a
/// plain query has none.
async fn resolve_connectors(
    options: &Options,
    job: Option<&str>,
    into: Option<&dyn SinkConfig>,
    state: &datafusion::execution::SessionState,
) -> Result<(Vec<SourceDef>, Option<Box<dyn SinkConfig>>)> {
    let mut sources = Vec::new();
    let mut sink = into.map(SinkConfig::clone_box);
    let columns = SqlColumns(state);
    for (name, connector) in options.typed_names() {
        let kind = connector.one_of(&registry::connector_names())?;
        let declared = Declaration {
            name: &name,
            options,
            columns: &columns,
            job,
        };
        match registry::connector(&kind).expect("one of the names") {
            ConnectorKind::Source(open) => sources.push(resolve_source(&declared, open).await?),
            ConnectorKind::Sink(_) if into.is_some() => {
                return Err(connector
                    .error(format!(
                        "INSERT INTO writes to its target's sink; a sink named '{name}' is not used"
                    ))
                    .into());
            }
            ConnectorKind::Sink(declare) => {
                // Option names are case-insensitive; a quoted job name may not be.
                if !job.is_some_and(|job| job.eq_ignore_ascii_case(&name)) {
                    let why = match job {
                        Some(job) => format!("this job writes to the sink named like it, '{job}'"),
                        None => "a plain query returns its rows; use CREATE STREAM name AS ... to write them".into(),
                    };
                    return Err(connector
                        .error(format!("a sink named '{name}' is not used: {why}"))
                        .into());
                }
                sink = Some(declare(&declared).await?);
            }
        }
    }
    if let Some(field) = options.get("event.time.field")
        && !sources
            .iter()
            .any(|s| s.event_time.field.as_deref() == Some(field.value))
    {
        return Err(field
            .error("no source of this statement has that column")
            .into());
    }
    Ok((sources, sink))
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
        _ => Err(value
            .error("expected a size such as '64MB' or '2GB'")
            .into()),
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
