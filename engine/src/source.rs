//! Sources named in `WITH`: opened by their connectors, given event time, and registered as
//! DataFusion tables.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use ferris_connectors::options::Options;
use ferris_connectors::registry::OpenSource;
use ferris_connectors::{
    ColumnParser, Declaration, DeclaredSource, DividedShare, Share, SinkConfig, SourceConnector,
    SourcePosition, SourceReader, StopSignal,
};
use ferris_streaming::checkpoint::{CheckpointBarrier, SourceBarrier};
use ferris_streaming::event_time::stamped_schema;
use ferris_streaming::process_instance::ProcessInstance;
use ferris_streaming::{EventTimeStamper, LookupTableRead, WatermarkSpec};
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};

use crate::error::{EngineError, Result};
use crate::job::{JobControl, JobMetrics};

/// How a source's records are stamped with event time and watermarks.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTimeSpec {
    /// The column holding event time (a timestamp, an ISO-8601 string, or epoch ms); `None`:
    /// the window names it, or the source runs on processing time.
    pub field: Option<String>,
    /// A chrono format for string event times that are not ISO-8601.
    pub format: Option<String>,
    /// How far behind the largest event time seen the watermark stays.
    pub max_out_of_orderness: Duration,
    /// After this long without records, a source no longer holds the watermark back.
    pub idle_timeout: Option<Duration>,
}

/// A source of a job: its connector and how its time is read.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// The name the query uses.
    pub name: String,
    /// The connector.
    pub source: Arc<dyn SourceConnector>,
    /// Where `INSERT INTO` it writes, if it takes rows.
    pub writer: Option<Box<dyn SinkConfig>>,
    /// Event time and watermarks.
    pub event_time: EventTimeSpec,
}

impl SourceDef {
    /// Registers the source under its name, as a table DataFusion reads as a stream
    /// (bounded unless it is watching), replacing a source of the same name. With `stamp`,
    /// its rows carry event time and watermark for a windowed query. Returns the scan its
    /// plans read, whose schema their scans share.
    pub fn register(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        stop: &StopSignal,
        stamp: Option<WatermarkSpec>,
    ) -> Result<SourceScan> {
        let schema = match &stamp {
            Some(_) => stamped_schema(&self.source.schema()),
            None => self.source.schema(),
        };
        let partition = Arc::new(SourcePartition {
            name: self.name.clone(),
            share: None,
            schema: schema.clone(),
            source: self.source.clone(),
            stop: stop.clone(),
            stamp,
            decoded: Arc::default(),
        });
        let scan = SourceScan(partition);
        scan.register_table(ctx)?;
        Ok(scan)
    }

    /// How this source's rows are stamped for a window whose time column is `time_column`
    /// (else the source's event time field; else processing time).
    pub fn watermark_spec(&self, time_column: Option<&str>) -> Result<WatermarkSpec> {
        let spec = &self.event_time;
        let field = time_column.or(spec.field.as_deref());
        if let Some(field) = field
            && self.source.schema().field_with_name(field).is_err()
        {
            return Err(EngineError::Catalog(format!(
                "the window's time column '{field}' is not a column of source '{}' (it has {})",
                self.name,
                column_list(&self.source.schema())
            )));
        }
        // Parts read side by side each keep a watermark; the source's is their minimum.
        let partitions = self.source.partitions();
        let partition_field = partitions.as_ref().map(|p| p.column.to_string());
        Ok(WatermarkSpec {
            field: field.map(str::to_string),
            format: spec.format.clone(),
            max_out_of_orderness: spec.max_out_of_orderness,
            partition_field,
            partitions: partitions.map(|p| p.ids).unwrap_or_default(),
            idle_timeout: spec.idle_timeout,
        })
    }
}

/// What a plan's scan of a registered source reads: the whole source, which a parallel
/// job divides into shares.
#[derive(Debug, Clone)]
pub struct SourceScan(Arc<SourcePartition>);

impl SourceScan {
    /// The schema the source is read with.
    pub fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The columns of the source (by index in its own schema) that `plan`'s scans of it
    /// read, with those its event time is read from; `None`: all of them, or the plan does
    /// not read it.
    pub fn columns_read_by(&self, plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<usize>> {
        let source = self.0.source.schema();
        let width = source.fields().len();
        let mut read = BTreeSet::new();
        let mut scanned = false;
        let mut whole = false;
        let _ = plan.apply(|node| {
            if let Some(scan) = node.downcast_ref::<StreamingTableExec>()
                && Arc::ptr_eq(scan.partition_schema(), &self.0.schema)
            {
                scanned = true;
                match scan.projection() {
                    Some(projection) => read.extend(projection.iter().filter(|&&c| c < width)),
                    None => whole = true,
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if let Some(stamp) = &self.0.stamp {
            let fields = [&stamp.field, &stamp.partition_field];
            read.extend(
                fields
                    .into_iter()
                    .flatten()
                    .filter_map(|name| source.index_of(name).ok()),
            );
        }
        // A column that cannot be null is always decoded (left out, it would be null), and
        // at least one column is, to carry the batch's rows (`COUNT(*)`).
        let required = source.fields().iter().enumerate();
        read.extend(required.filter(|(_, f)| !f.is_nullable()).map(|(i, _)| i));
        if read.is_empty() {
            read.insert(0);
        }
        (scanned && !whole && read.len() < width).then(|| read.into_iter().collect())
    }

    /// Has every reader of the plan's scans of the source (its shares' too) decode
    /// `columns` only: set once the plan is made, before it runs. The source's table is
    /// registered again with a partition of its own, so that a later statement reading it
    /// (a source declared before) decodes what it reads, not what this plan chose.
    pub fn decode_only(
        &self,
        columns: Vec<usize>,
        ctx: &datafusion::prelude::SessionContext,
    ) -> Result<()> {
        let _ = self.0.decoded.set(columns);
        let fresh = SourcePartition {
            decoded: Arc::default(),
            ..self.0.as_ref().clone()
        };
        SourceScan(Arc::new(fresh)).register_table(ctx)
    }

    /// Registers the source's table, read through this scan's partition (replacing a table
    /// of the same name).
    fn register_table(&self, ctx: &datafusion::prelude::SessionContext) -> Result<()> {
        let table = StreamingTable::try_new(self.0.schema.clone(), vec![self.0.clone()])?
            .with_infinite_table(!self.0.source.is_bounded());
        ctx.deregister_table(self.0.name.as_str())?;
        ctx.register_table(self.0.name.as_str(), Arc::new(table))?;
        Ok(())
    }

    /// The columns every reader decodes, if not all.
    pub fn decoded(&self) -> Option<&[usize]> {
        self.0.decoded.get().map(Vec::as_slice)
    }

    /// The source's connector.
    pub fn source(&self) -> &Arc<dyn SourceConnector> {
        &self.0.source
    }

    /// Whether a scan's partition is this source's.
    pub fn reads(&self, partition: &Arc<dyn PartitionStream>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(partition), Arc::as_ptr(&self.0))
    }

    /// The source divided into at most `count` shares, one partition each, if its
    /// connector divides it. `padded`: exactly `count` partitions, partition `i` being share
    /// `i` (one the connector left out reads nothing), as where instances run in several
    /// processes, each reading the partitions of its own instance.
    pub async fn divide(&self, count: usize, padded: bool) -> Result<Option<Divided>> {
        let Some(shares) = self.0.source.split(count).await? else {
            return Ok(None);
        };
        let stream = |(share, source): &DividedShare| {
            // Its watermark waits for its own parts only.
            let stamp = self.0.stamp.clone().map(|stamp| WatermarkSpec {
                partitions: source.partitions().map(|p| p.ids).unwrap_or_default(),
                ..stamp
            });
            Arc::new(SourcePartition {
                share: Some(*share),
                source: source.clone(),
                stamp,
                ..self.0.as_ref().clone()
            }) as Arc<dyn PartitionStream>
        };
        let streams = if padded {
            (0..count)
                .map(
                    |index| match shares.iter().find(|(s, _)| s.index == index) {
                        Some(share) => stream(share),
                        None => Arc::new(LeftOutShare(self.0.schema.clone())),
                    },
                )
                .collect()
        } else {
            shares.iter().map(stream).collect()
        };
        Ok(Some(Divided { streams, shares }))
    }
}

/// A source divided for a parallel job.
pub struct Divided {
    /// One partition of the plan's scan per share.
    pub streams: Vec<Arc<dyn PartitionStream>>,
    /// The shares, each with the source that reads it.
    pub shares: Vec<DividedShare>,
}

/// A share the source's connector left out (it would read nothing), as a partition.
#[derive(Debug)]
struct LeftOutShare(SchemaRef);

impl PartitionStream for LeftOutShare {
    fn schema(&self) -> &SchemaRef {
        &self.0
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        no_rows(&self.0)
    }
}

/// A partition's stream that ends at once.
fn no_rows(schema: &SchemaRef) -> SendableRecordBatchStream {
    Box::pin(RecordBatchStreamAdapter::new(
        schema.clone(),
        futures::stream::empty(),
    ))
}

/// One source (or a share of it) as a DataFusion partition: each execution reads it from
/// where it starts (the beginning of its files, its consumer group's committed offsets).
#[derive(Debug, Clone)]
struct SourcePartition {
    name: String,
    /// The share it reads, in a parallel job.
    share: Option<Share>,
    schema: SchemaRef,
    source: Arc<dyn SourceConnector>,
    stop: StopSignal,
    stamp: Option<WatermarkSpec>,
    /// The columns its readers decode, once the plan says (shared by the source's shares);
    /// unset: all of them.
    decoded: Arc<OnceLock<Vec<usize>>>,
}

impl PartitionStream for SourcePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // Where the job's instances run in several processes, a share is read by its own
        // instance's process only (a lookup table, by every instance).
        let config = ctx.session_config();
        if let Some(process) = ProcessInstance::of(&ctx)
            && config.get_extension::<LookupTableRead>().is_none()
            && !process.runs(self.share.map_or(0, |share| share.index))
        {
            return no_rows(&self.schema);
        }
        // Count into the job's metrics when the task has them (every job's task does).
        // Each share is its own source to the checkpoints and the metrics.
        let instance = match self.share {
            Some(share) => format!("{}[{}]", self.name, share.index),
            None => self.name.clone(),
        };
        debug_assert_eq!(source_of(&instance), self.name);
        let metrics = ctx
            .session_config()
            .get_extension::<JobMetrics>()
            .map(|job| {
                let index = self.share.map_or(0, |share| share.index);
                job.register_source(&instance, index, &self.schema)
            })
            .unwrap_or_default();
        // A job that checkpoints cuts its sources at its barrier, and may restore them; a
        // lookup table is read whole on every start instead.
        let barrier = config
            .get_extension::<CheckpointBarrier>()
            .filter(|_| config.get_extension::<LookupTableRead>().is_none())
            .map(|barrier| barrier.register_source_share(&instance, &self.name));
        let control = ctx.session_config().get_extension::<JobControl>();
        let (name, source, stop, stamp, decoded) = (
            self.name.clone(),
            self.source.clone(),
            self.stop.clone(),
            self.stamp.clone(),
            self.decoded.get().cloned(),
        );
        let start = async move {
            let reading = Reading {
                stop,
                stamp,
                decoded,
            };
            let mut run = SourceRun::start(&name, &source, reading, barrier, metrics)?;
            run.control = control;
            Ok::<_, DataFusionError>(run)
        };
        let batches = futures::stream::once(start)
            .map_ok(|run| {
                futures::stream::try_unfold(run, |mut run| async move {
                    Ok(run.next().await?.map(|batch| (batch, run)))
                })
            })
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

/// How often a paused job's sources look whether they may go on.
const PAUSE_POLL: Duration = Duration::from_millis(50);

/// How a source is read: until what stop, stamped how, decoding which columns.
struct Reading {
    stop: StopSignal,
    stamp: Option<WatermarkSpec>,
    /// `None`: all of them.
    decoded: Option<Vec<usize>>,
}

/// One execution of a source: its reader, its stamper, its side of the job's barrier.
struct SourceRun {
    reader: Box<dyn SourceReader>,
    /// Its batches of some columns as batches of all of the source's, when it decodes
    /// fewer.
    widened: Option<Widening>,
    stamper: Option<EventTimeStamper>,
    barrier: Option<SourceBarrier>,
    /// The job's pause switch.
    control: Option<Arc<JobControl>>,
}

impl SourceRun {
    fn start(
        name: &str,
        source: &Arc<dyn SourceConnector>,
        reading: Reading,
        mut barrier: Option<SourceBarrier>,
        metrics: Arc<ferris_connectors::SourceMetrics>,
    ) -> Result<Self, DataFusionError> {
        let restored = barrier.as_mut().and_then(|b| b.take_restored());
        let position = restored
            .as_ref()
            .map(SourcePosition::from_batch)
            .transpose()
            .map_err(external)?;
        let Reading {
            stop,
            stamp,
            decoded,
        } = reading;
        let mut stamper = stamp
            .map(|spec| EventTimeStamper::try_new(name, source.schema(), spec))
            .transpose()?;
        if let (Some(stamper), Some(restored)) = (stamper.as_mut(), &restored) {
            stamper.restore(restored.schema().metadata())?;
        }
        let reader = source
            .reader(position.as_ref(), decoded.as_deref(), stop, metrics)
            .map_err(external)?;
        let widened = decoded.map(|columns| Widening::new(source.schema(), columns));
        Ok(Self {
            reader,
            widened,
            stamper,
            barrier,
            control: None,
        })
    }

    /// The next batch with rows, stamped; cuts for a checkpoint first when one is due.
    async fn next(&mut self) -> Result<Option<RecordBatch>, DataFusionError> {
        loop {
            if let Some(barrier) = &self.barrier
                && let Some(epoch) = barrier.cut_due()
            {
                barrier.cut(epoch, self.position());
                barrier.released(epoch).await;
                continue;
            }
            if self.control.as_ref().is_some_and(|c| c.is_paused()) {
                // Paused: look again soon (checkpoints still cut meanwhile).
                self.reader.report_lag();
                tokio::time::sleep(PAUSE_POLL).await;
                continue;
            }
            match self.reader.next_batch().await.map_err(external)? {
                None => {
                    if let Some(barrier) = &self.barrier {
                        barrier.end(self.position());
                    }
                    return Ok(None);
                }
                // Nothing came for a while: the loop's turn to cut.
                Some(batch) if batch.num_rows() == 0 => continue,
                Some(batch) => {
                    let batch = match &mut self.widened {
                        Some(widening) => widening.widen(&batch)?,
                        None => batch,
                    };
                    return Ok(Some(match self.stamper.as_mut() {
                        Some(stamper) => {
                            stamper.hold_for_backlog(&self.reader.backlogged());
                            stamper.stamp(&batch)?
                        }
                        None => batch,
                    }));
                }
            }
        }
    }

    /// The reader's position, with the stamper's state in its metadata.
    fn position(&self) -> RecordBatch {
        let batch = self.reader.position().to_batch();
        match &self.stamper {
            Some(stamper) => {
                let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
                    batch.schema().fields().clone(),
                    stamper.snapshot(),
                ));
                batch.with_schema(schema).expect("only metadata changed")
            }
            None => batch,
        }
    }
}

/// Batches of the `columns` of `schema` a reader decoded, as batches of all of `schema`'s
/// columns, the others (all nullable) null; the plan's scan drops them at once.
struct Widening {
    schema: SchemaRef,
    columns: Vec<usize>,
    /// A null array per column of `schema`, for a batch of this many rows at most: sliced,
    /// not made again for every batch.
    nulls: Vec<ArrayRef>,
    rows: usize,
}

impl Widening {
    fn new(schema: SchemaRef, columns: Vec<usize>) -> Self {
        Self {
            schema,
            columns,
            nulls: Vec::new(),
            rows: 0,
        }
    }

    fn widen(&mut self, batch: &RecordBatch) -> Result<RecordBatch, DataFusionError> {
        let rows = batch.num_rows();
        if rows > self.rows {
            self.nulls = self
                .schema
                .fields()
                .iter()
                .map(|field| new_null_array(field.data_type(), rows))
                .collect();
            self.rows = rows;
        }
        let mut decoded = self.columns.iter().zip(batch.columns()).peekable();
        let all = (0..self.schema.fields().len())
            .map(|i| match decoded.next_if(|(c, _)| **c == i) {
                Some((_, column)) => column.clone(),
                None => self.nulls[i].slice(0, rows),
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            all,
            &options,
        )?)
    }
}

fn external(e: ferris_connectors::ConnectorError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The source whose position or metrics go by `instance`: the name of a source, or of one
/// of its shares (`name[i]`, see [`SourceScan::divide`]).
pub(crate) fn source_of(instance: &str) -> &str {
    instance
        .strip_suffix(']')
        .and_then(|rest| rest.rsplit_once('['))
        .filter(|(_, index)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
        .map_or(instance, |(name, _)| name)
}

/// Reads `'<name>.schema'` column lists with DataFusion's SQL types.
pub(crate) struct SqlColumns<'a>(pub(crate) &'a SessionState);

impl ColumnParser for SqlColumns<'_> {
    fn parse<'a>(&'a self, list: &'a str) -> BoxFuture<'a, Result<SchemaRef, String>> {
        async move {
            let sql = format!(
                "CREATE EXTERNAL TABLE schema_of_option ({list}) STORED AS CSV LOCATION 'unused'"
            );
            let not_columns = |e: DataFusionError| format!("not a column list: {}", e.find_root());
            let statement = self
                .0
                .sql_to_statement(&sql, &Dialect::Generic)
                .map_err(not_columns)?;
            let plan = self
                .0
                .statement_to_plan(statement)
                .await
                .map_err(not_columns)?;
            match plan {
                LogicalPlan::Ddl(DdlStatement::CreateExternalTable(table)) => {
                    Ok(Arc::new(table.schema.as_arrow().clone()))
                }
                _ => Err("not a column list".to_string()),
            }
        }
        .boxed()
    }
}

/// The source `declared`, opened by its connector type's `open`, with its event time.
pub(crate) async fn resolve_source(
    declared: &Declaration<'_>,
    open: OpenSource,
) -> Result<SourceDef> {
    let (name, options) = (declared.name, declared.options);
    // The engine's own options of the source first: they need no connection.
    let mut event_time = resolve_event_time(name, options)?;
    let DeclaredSource { source, writer } = open(declared).await?;
    if event_time.field.is_none() {
        event_time.field = source.event_time_column().map(str::to_string);
    }
    event_time.idle_timeout = event_time.idle_timeout.or(source.idle_timeout());
    let per_source = options.get(&format!("{name}.event.time.field")).is_some();
    if let Some(field) = &event_time.field
        && source.schema().field_with_name(field).is_err()
    {
        if per_source {
            return Err(EngineError::option(
                format!(
                    "'{name}.event.time.field' = '{field}': source '{name}' has no such column (it has {})",
                    column_list(&source.schema())
                ),
                None,
            ));
        }
        // The job-wide event time field applies to the sources that have that column.
        event_time.field = None;
    }
    Ok(SourceDef {
        name: name.to_string(),
        source,
        writer,
        event_time,
    })
}

fn column_list(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Event time from `'<name>.event.time.field'` (or the job-wide `'event.time.field'`) and
/// its watermark options; the source's connector may add defaults once it is open.
fn resolve_event_time(name: &str, options: &Options) -> Result<EventTimeSpec> {
    // A per-source option wins over the job-wide one of the same suffix.
    let take = |suffix: &str| {
        options
            .get(&format!("{name}.{suffix}"))
            .or_else(|| options.get(suffix))
    };
    let field = take("event.time.field");
    let format = take("event.time.format").map(|v| v.value.to_string());
    let strategy = take("watermark.strategy")
        .map(|v| v.one_of(&["bounded_out_of_orderness", "ascending"]))
        .transpose()?;
    let bound = take("watermark.max_out_of_orderness");
    let idle_timeout = take("watermark.idle.timeout")
        .map(|v| v.duration())
        .transpose()?;
    let max_out_of_orderness = match (strategy.as_deref(), bound) {
        (Some("ascending"), Some(bound)) => {
            return Err(bound
                .error("an 'ascending' watermark has no out-of-orderness")
                .into());
        }
        (Some("ascending"), None) | (_, None) => Duration::ZERO,
        (_, Some(bound)) => bound.duration()?,
    };
    Ok(EventTimeSpec {
        field: field.map(|f| f.value.to_string()),
        format,
        max_out_of_orderness,
        idle_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::source_of;

    #[test]
    fn a_share_s_name_leads_back_to_its_source() {
        assert_eq!(source_of("trades[3]"), "trades");
        assert_eq!(source_of("trades"), "trades");
        assert_eq!(source_of("odd[name]"), "odd[name]");
        assert_eq!(source_of("odd[]"), "odd[]");
        assert_eq!(source_of("a[1][2]"), "a[1]");
    }
}
