//! Sources named in `WITH`: resolved into connectors and registered as DataFusion tables.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use ferris_connectors::kafka::{
    DeadLetterTopic, KafkaConnection, KafkaSource, KafkaSourceConfig, OffsetReset,
    PARTITION_COLUMN, TIMESTAMP_COLUMN,
};
use ferris_connectors::{
    AvroFormat, CsvOptions, DeadLetterWriter, FileFormat, FileSource, FileSourceConfig, Location,
    MessageFormat, OnError, ProtobufFormat, SchemaRegistry, Source, SourcePosition, SourceReader,
    StopSignal,
};
use ferris_streaming::checkpoint::{CheckpointBarrier, SourceBarrier};
use ferris_streaming::event_time::stamped_schema;
use ferris_streaming::{EventTimeStamper, LookupTableRead, WatermarkSpec};
use futures::TryStreamExt;

use crate::error::{EngineError, Result};
use crate::job::{JobControl, JobMetrics};
use crate::options::{OptionValue, Options};

/// Rows per micro-batch unless `'<name>.batch.size'` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// How often a watching source looks for new data unless `'<name>.watch.interval'` says.
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a Kafka micro-batch waits to fill unless `'<name>.batch.linger.ms'` says.
const DEFAULT_LINGER: Duration = Duration::from_millis(100);
/// How long an unbounded Kafka source's partition may go without records before it no
/// longer holds the watermark back, unless `'<name>.watermark.idle.timeout'` says.
const DEFAULT_KAFKA_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The brokers unless `'<name>.bootstrap.servers'` says.
pub(crate) const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";

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
    pub source: Source,
    /// Event time and watermarks.
    pub event_time: EventTimeSpec,
}

impl SourceDef {
    /// Registers the source under its name, as a table DataFusion reads as a stream
    /// (bounded unless it is watching), replacing a source of the same name. With `stamp`,
    /// its rows carry event time and watermark for a windowed query. Returns the schema it
    /// is read with, which its scans in a plan share.
    pub fn register(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        stop: &StopSignal,
        stamp: Option<WatermarkSpec>,
    ) -> Result<SchemaRef> {
        let schema = match &stamp {
            Some(_) => stamped_schema(&self.source.schema()),
            None => self.source.schema(),
        };
        let partition = Arc::new(SourcePartition {
            name: self.name.clone(),
            schema: schema.clone(),
            source: self.source.clone(),
            stop: stop.clone(),
            stamp,
        });
        let table = StreamingTable::try_new(schema.clone(), vec![partition])?
            .with_infinite_table(!self.source.is_bounded());
        ctx.deregister_table(self.name.as_str())?;
        ctx.register_table(self.name.as_str(), Arc::new(table))?;
        Ok(schema)
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
        // A Kafka topic's partitions each keep a watermark; the source's is their minimum.
        let (partition_field, partition_count) = match &self.source {
            Source::Kafka(kafka) => (
                Some(PARTITION_COLUMN.to_string()),
                kafka.partitions().len() as u32,
            ),
            Source::File(_) => (None, 0),
        };
        Ok(WatermarkSpec {
            field: field.map(str::to_string),
            format: spec.format.clone(),
            max_out_of_orderness: spec.max_out_of_orderness,
            partition_field,
            partition_count,
            idle_timeout: spec.idle_timeout,
        })
    }
}

/// One source as a DataFusion partition: each execution reads it from the start (files) or
/// its committed offsets (Kafka).
#[derive(Debug)]
struct SourcePartition {
    name: String,
    schema: SchemaRef,
    source: Source,
    stop: StopSignal,
    stamp: Option<WatermarkSpec>,
}

impl PartitionStream for SourcePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // Count into the job's metrics when the task has them (every job's task does).
        let metrics = ctx
            .session_config()
            .get_extension::<JobMetrics>()
            .map(|job| job.register_source(&self.name, &self.schema))
            .unwrap_or_default();
        // A job that checkpoints cuts its sources at its barrier, and may restore them; a
        // lookup table is read whole on every start instead.
        let config = ctx.session_config();
        let barrier = config
            .get_extension::<CheckpointBarrier>()
            .filter(|_| config.get_extension::<LookupTableRead>().is_none())
            .map(|barrier| barrier.register_source(&self.name));
        let control = ctx.session_config().get_extension::<JobControl>();
        let (name, source, stop, stamp) = (
            self.name.clone(),
            self.source.clone(),
            self.stop.clone(),
            self.stamp.clone(),
        );
        let start = async move {
            let mut run = SourceRun::start(&name, &source, stop, stamp, barrier, metrics)?;
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

/// One execution of a source: its reader, its stamper, its side of the job's barrier.
struct SourceRun {
    reader: SourceReader,
    stamper: Option<EventTimeStamper>,
    barrier: Option<SourceBarrier>,
    /// The job's pause switch.
    control: Option<Arc<JobControl>>,
}

impl SourceRun {
    fn start(
        name: &str,
        source: &Source,
        stop: StopSignal,
        stamp: Option<WatermarkSpec>,
        mut barrier: Option<SourceBarrier>,
        metrics: Arc<ferris_connectors::SourceMetrics>,
    ) -> Result<Self, DataFusionError> {
        let restored = barrier.as_mut().and_then(|b| b.take_restored());
        let position = restored
            .as_ref()
            .map(SourcePosition::from_batch)
            .transpose()
            .map_err(external)?;
        let mut stamper = stamp
            .map(|spec| EventTimeStamper::try_new(name, source.schema(), spec))
            .transpose()?;
        if let (Some(stamper), Some(restored)) = (stamper.as_mut(), &restored) {
            stamper.restore(restored.schema().metadata())?;
        }
        let reader = source
            .reader(position.as_ref(), stop, metrics)
            .map_err(external)?;
        Ok(Self {
            reader,
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
                    return Ok(Some(match self.stamper.as_mut() {
                        Some(stamper) => stamper.stamp(&batch)?,
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

fn external(e: ferris_connectors::ConnectorError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The format named by `'<name>.format'`, or implied by the path's extension, or `default`.
pub(crate) fn resolve_format(
    name: &str,
    options: &Options,
    path: &str,
    default: Option<FileFormat>,
) -> Result<FileFormat> {
    let written = options.get(&format!("{name}.format"));
    let format = match written {
        Some(value) => value.one_of(&["csv", "json", "parquet"])?,
        None => {
            let extension = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            match extension.as_str() {
                "csv" | "tsv" => "csv".to_string(),
                "json" | "jsonl" | "ndjson" => "json".to_string(),
                "parquet" => "parquet".to_string(),
                _ => {
                    return default.ok_or_else(|| {
                        EngineError::option(
                            format!(
                                "missing option '{name}.format': 'csv', 'json' or 'parquet' (the path '{path}' does not say)"
                            ),
                            None,
                        )
                    });
                }
            }
        }
    };
    Ok(match format.as_str() {
        "csv" => {
            let mut csv = CsvOptions::default();
            if path.to_ascii_lowercase().ends_with(".tsv") {
                csv.delimiter = b'\t';
            }
            if let Some(value) = options.get(&format!("{name}.delimiter")) {
                csv.delimiter = delimiter(&value)?;
            }
            if let Some(value) = options.get(&format!("{name}.has_header")) {
                csv.has_header = value.boolean()?;
            }
            FileFormat::Csv(csv)
        }
        "json" => FileFormat::Json,
        _ => FileFormat::Parquet,
    })
}

fn delimiter(value: &OptionValue) -> Result<u8> {
    match value.value {
        "\\t" | "tab" => Ok(b'\t'),
        v if v.len() == 1 && v.is_ascii() => Ok(v.as_bytes()[0]),
        _ => Err(value.error("expected a single character (or 'tab')")),
    }
}

/// Parses `'ts TIMESTAMP, price DECIMAL(18,4), ...'` with DataFusion's SQL types.
pub(crate) async fn parse_schema(
    state: &SessionState,
    value: &OptionValue<'_>,
) -> Result<SchemaRef> {
    let sql = format!(
        "CREATE EXTERNAL TABLE schema_of_option ({}) STORED AS CSV LOCATION 'unused'",
        value.value
    );
    let not_columns =
        |e: DataFusionError| value.error(format!("not a column list: {}", e.find_root()));
    let statement = state
        .sql_to_statement(&sql, &Dialect::Generic)
        .map_err(not_columns)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(not_columns)?;
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(table)) => {
            Ok(Arc::new(table.schema.as_arrow().clone()))
        }
        _ => Err(value.error("not a column list")),
    }
}

/// The columns `'<name>.schema'` declares, if it is written.
async fn declared_schema(
    name: &str,
    options: &Options,
    state: &SessionState,
) -> Result<Option<SchemaRef>> {
    match options.get(&format!("{name}.schema")) {
        Some(value) => Ok(Some(parse_schema(state, &value).await?)),
        None => Ok(None),
    }
}

/// `'<name>.batch.size'`, or [`DEFAULT_BATCH_SIZE`].
fn batch_size(name: &str, options: &Options) -> Result<usize> {
    Ok(options
        .get(&format!("{name}.batch.size"))
        .map(|v| v.positive())
        .transpose()?
        .unwrap_or(DEFAULT_BATCH_SIZE))
}

/// Resolves the file source `name` from its options.
pub(crate) async fn resolve_file_source(
    name: &str,
    options: &Options,
    state: &SessionState,
) -> Result<SourceDef> {
    let key = |suffix: &str| format!("{name}.{suffix}");
    let path = options.required(&key("path"), "a file, folder or glob to read")?;
    let location = Location::parse(path.value).map_err(|e| path.error(e))?;
    let format = resolve_format(name, options, path.value, None)?;
    let schema = declared_schema(name, options, state).await?;
    let batch_size = batch_size(name, options)?;
    let watching = options
        .get(&key("watch"))
        .map(|v| v.boolean())
        .transpose()?
        .unwrap_or(false);
    let interval = options
        .get(&key("watch.interval"))
        .map(|v| v.duration())
        .transpose()?
        .unwrap_or(DEFAULT_WATCH_INTERVAL);
    let on_error = resolve_on_error(name, options, None)?;
    let event_time = resolve_event_time(name, options, None)?;
    let source = FileSource::try_new(FileSourceConfig {
        name: name.to_string(),
        location,
        format,
        schema,
        batch_size,
        watch: watching.then_some(interval),
        on_error,
    })
    .await?;
    source_def(name, options, Source::File(source), event_time)
}

/// The source with its event time checked against its columns.
fn source_def(
    name: &str,
    options: &Options,
    source: Source,
    event_time: EventTimeSpec,
) -> Result<SourceDef> {
    let per_source = options.get(&format!("{name}.event.time.field")).is_some();
    let mut event_time = event_time;
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

/// What a source does with a record it cannot decode: `'<name>.on.error'`, with a dead-letter
/// file (`'<name>.dead_letter.path'`) or, given a Kafka connection, topic
/// (`'<name>.dead_letter.topic'`).
fn resolve_on_error(
    name: &str,
    options: &Options,
    kafka: Option<&KafkaConnection>,
) -> Result<OnError> {
    let key = |suffix: &str| format!("{name}.{suffix}");
    let Some(value) = options.get(&key("on.error")) else {
        return Ok(OnError::Fail);
    };
    Ok(
        match value.one_of(&["fail", "skip", "dead_letter"])?.as_str() {
            "fail" => OnError::Fail,
            "skip" => OnError::Skip,
            _ => match (kafka, options.get(&key("dead_letter.topic"))) {
                (Some(connection), Some(topic)) => OnError::DeadLetterTopic(Arc::new(
                    DeadLetterTopic::new(connection.clone(), topic.value.to_string()),
                )),
                _ => {
                    let path = options.required(
                        &key("dead_letter.path"),
                        "where 'dead_letter' writes malformed records",
                    )?;
                    OnError::DeadLetter(Arc::new(DeadLetterWriter::new(path.value)))
                }
            },
        },
    )
}

/// The connection of the Kafka connector `name`: `'<name>.bootstrap.servers'` and every
/// `'<name>.kafka.<property>'`.
pub(crate) fn resolve_kafka_connection(name: &str, options: &Options) -> KafkaConnection {
    let bootstrap_servers = options
        .get(&format!("{name}.bootstrap.servers"))
        .map_or(DEFAULT_BOOTSTRAP_SERVERS, |v| v.value)
        .to_string();
    let properties = options
        .with_prefix(&format!("{name}.kafka."))
        .into_iter()
        .map(|(property, value)| (property, value.value.to_string()))
        .collect();
    KafkaConnection {
        bootstrap_servers,
        properties,
    }
}

/// The message format of the Kafka connector `name` (`'<name>.format'`, JSON by default).
pub(crate) async fn resolve_message_format(
    name: &str,
    options: &Options,
    topic: &str,
    source: bool,
) -> Result<MessageFormat> {
    let key = |suffix: &str| format!("{name}.{suffix}");
    let format = match options.get(&key("format")) {
        Some(value) => value.one_of(&["json", "csv", "avro", "protobuf", "raw"])?,
        None => "json".to_string(),
    };
    Ok(match format.as_str() {
        "json" => MessageFormat::Json,
        "csv" => MessageFormat::Csv {
            delimiter: match options.get(&key("delimiter")) {
                Some(value) => delimiter(&value)?,
                None => b',',
            },
        },
        "avro" => {
            let inline = options.get(&key("avro.schema"));
            let file = options.get(&key("avro.schema.file"));
            let json = match (inline, file) {
                (Some(_), Some(file)) => {
                    return Err(file.error(format!(
                        "give either '{}' or this, not both",
                        key("avro.schema")
                    )));
                }
                (Some(inline), None) => Some(inline.value.to_string()),
                (None, Some(file)) => Some(
                    tokio::fs::read_to_string(file.value)
                        .await
                        .map_err(|e| file.error(format!("cannot read it: {e}")))?,
                ),
                (None, None) => None,
            };
            let registry = options.get(&key("schema.registry.url"));
            let subject = options
                .get(&key("schema.registry.subject"))
                .map_or_else(|| format!("{topic}-value"), |v| v.value.to_string());
            let avro = match registry {
                Some(url) => {
                    let registry = SchemaRegistry::new(url.value);
                    let json = json.clone();
                    tokio::task::spawn_blocking(move || {
                        AvroFormat::confluent(registry, subject, json, source)
                    })
                    .await
                    .map_err(|e| EngineError::Internal(e.to_string()))?
                    .map_err(|e| url.error(e))?
                }
                None if source && json.is_none() => {
                    return Err(EngineError::option(
                        format!(
                            "an Avro source needs '{}', '{}' or '{}'",
                            key("avro.schema"),
                            key("avro.schema.file"),
                            key("schema.registry.url")
                        ),
                        None,
                    ));
                }
                None => AvroFormat::plain(json)?,
            };
            MessageFormat::Avro(avro)
        }
        "protobuf" => {
            let file = options.required(
                &key("protobuf.schema.file"),
                "the .proto file that defines the message",
            )?;
            let message = options.required(
                &key("protobuf.message"),
                "the full name of the message type, such as shop.Trade",
            )?;
            MessageFormat::Protobuf(
                ProtobufFormat::compile(std::path::Path::new(file.value), message.value)
                    .map_err(|e| file.error(e))?,
            )
        }
        _ => MessageFormat::Raw,
    })
}

/// Resolves the Kafka source `name` from its options.
pub(crate) async fn resolve_kafka_source(
    name: &str,
    options: &Options,
    state: &SessionState,
    group: &str,
) -> Result<SourceDef> {
    let key = |suffix: &str| format!("{name}.{suffix}");
    let topic = options.required(&key("topic"), "the topic to read")?;
    let connection = resolve_kafka_connection(name, options);
    let format = resolve_message_format(name, options, topic.value, true).await?;
    let schema = declared_schema(name, options, state).await?;
    let bounded = match options.get(&key("scan.bounded.mode")) {
        Some(value) => value.one_of(&["latest-offset", "unbounded"])? == "latest-offset",
        None => false,
    };
    let offset_reset = match options.get(&key("auto.offset.reset")) {
        Some(value) => match value.one_of(&["earliest", "latest"])?.as_str() {
            "latest" => OffsetReset::Latest,
            _ => OffsetReset::Earliest,
        },
        None => OffsetReset::Earliest,
    };
    let group_id = options
        .get(&key("group.id"))
        .map_or_else(|| format!("ferris-{group}"), |v| v.value.to_string());
    let batch_size = batch_size(name, options)?;
    let linger = options
        .get(&key("batch.linger.ms"))
        .map(|v| v.positive().map(|ms| Duration::from_millis(ms as u64)))
        .transpose()?
        .unwrap_or(DEFAULT_LINGER);
    let on_error = resolve_on_error(name, options, Some(&connection))?;
    let mut event_time = resolve_event_time(name, options, Some(TIMESTAMP_COLUMN))?;
    if !bounded {
        // Partitions held by other members of the group never reach this process: without
        // an idle timeout they would hold its watermark back for ever.
        event_time
            .idle_timeout
            .get_or_insert(DEFAULT_KAFKA_IDLE_TIMEOUT);
    }
    let source = KafkaSource::try_new(KafkaSourceConfig {
        name: name.to_string(),
        connection,
        topic: topic.value.to_string(),
        group_id,
        offset_reset,
        bounded,
        format,
        schema,
        batch_size,
        linger,
        on_error,
    })
    .await
    .map_err(|e| topic.error(e))?;
    source_def(name, options, Source::Kafka(source), event_time)
}

/// Event time from `'<name>.event.time.field'` (or the job-wide `'event.time.field'`, or
/// `default`) and its watermark options.
fn resolve_event_time(
    name: &str,
    options: &Options,
    default: Option<&str>,
) -> Result<EventTimeSpec> {
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
            return Err(bound.error("an 'ascending' watermark has no out-of-orderness"));
        }
        (Some("ascending"), None) | (_, None) => Duration::ZERO,
        (_, Some(bound)) => bound.duration()?,
    };
    Ok(EventTimeSpec {
        field: field.map(|f| f.value).or(default).map(str::to_string),
        format,
        max_out_of_orderness,
        idle_timeout,
    })
}
