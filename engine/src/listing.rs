//! Results of SHOW and DESCRIBE, as record batches.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::comparison::like;
use arrow::datatypes::{Field, Schema};
use datafusion::execution::context::SessionState;
use ferris_connectors::kafka::{PartitionDetail, TopicSummary};

use crate::catalog::{Catalog, CatalogEntry, EntryKind};
use crate::cluster::{JobSummary, NodeSummary, Placement};
use crate::error::{EngineError, Result};
use crate::job::{InstanceCounters, OperatorCounters};
use crate::user_function;

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array)| {
                Field::new(*name, array.data_type().clone(), array.null_count() > 0)
            })
            .collect::<Vec<_>>(),
    );
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    Ok(RecordBatch::try_new(Arc::new(schema), arrays)?)
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// Keeps the rows whose first column matches the SQL `LIKE` pattern.
fn filter_like(batch: RecordBatch, pattern: Option<&str>) -> Result<RecordBatch> {
    let Some(pattern) = pattern else {
        return Ok(batch);
    };
    let names = batch.column(0);
    let pattern = StringArray::new_scalar(pattern);
    let mask = like(names, &pattern)?;
    Ok(filter_record_batch(&batch, &mask)?)
}

/// `SHOW STREAMS` (sources and streams) or `SHOW TABLES`.
pub(crate) fn show_entries(
    catalog: &Catalog,
    tables: bool,
    pattern: Option<&str>,
    schemas: bool,
) -> Result<RecordBatch> {
    let entries: Vec<&CatalogEntry> = catalog
        .entries()
        .filter(|e| (e.kind == EntryKind::Table) == tables)
        .collect();
    let keys: Vec<String> = entries.iter().map(|e| e.key.join(", ")).collect();
    let mut columns = vec![
        ("name", strings(entries.iter().map(|e| e.name.as_str()))),
        ("kind", strings(entries.iter().map(|e| e.kind.as_str()))),
    ];
    if tables {
        columns.push(("key", strings(keys.iter().map(String::as_str))));
    }
    columns.extend([
        (
            "connector",
            strings(entries.iter().map(|e| e.connector.as_str())),
        ),
        (
            "location",
            strings(entries.iter().map(|e| e.location.as_str())),
        ),
        ("format", strings(entries.iter().map(|e| e.format.as_str()))),
        (
            "windowed",
            Arc::new(BooleanArray::from_iter(
                entries.iter().map(|e| Some(e.windowed)),
            )) as ArrayRef,
        ),
    ]);
    if schemas {
        let described: Vec<String> = entries
            .iter()
            .map(|e| {
                e.schema
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        columns.push(("schema", strings(described.iter().map(String::as_str))));
    }
    filter_like(batch(columns)?, pattern)
}

/// The language and statement of a function a user wrote.
type Written = (&'static str, String);

/// `SHOW FUNCTIONS`: every function DataFusion has registered, with its kind.
pub(crate) fn show_functions(state: &SessionState, pattern: Option<&str>) -> Result<RecordBatch> {
    // Name, kind, and the language and statement of a function a user wrote.
    let mut functions: Vec<(String, &str, Option<Written>)> = state
        .scalar_functions()
        .iter()
        .map(|(name, f)| {
            let written = user_function::written(f).map(|(l, d)| (l, d.to_string()));
            (name.clone(), "scalar", written)
        })
        .chain(state.aggregate_functions().iter().map(|(name, f)| {
            let written = user_function::written_aggregate(f).map(|(l, d)| (l, d.to_string()));
            (name.clone(), "aggregate", written)
        }))
        .chain(
            state
                .window_functions()
                .keys()
                .map(|n| (n.clone(), "window", None)),
        )
        .collect();
    functions.sort();
    functions.dedup();
    let language = |written: &Option<Written>| written.as_ref().map_or("built-in", |w| w.0);
    filter_like(
        batch(vec![
            (
                "name",
                strings(functions.iter().map(|(n, _, _)| n.as_str())),
            ),
            ("kind", strings(functions.iter().map(|(_, k, _)| *k))),
            (
                "language",
                strings(functions.iter().map(|(_, _, w)| language(w))),
            ),
            (
                "definition",
                strings(
                    functions
                        .iter()
                        .map(|(_, _, w)| w.as_ref().map_or("", |w| w.1.as_str())),
                ),
            ),
        ])?,
        pattern,
    )
}

/// What `CREATE FUNCTION` and `DROP FUNCTION` did to the function `name`.
pub(crate) fn function_reply(name: &str, status: &str) -> Result<RecordBatch> {
    batch(vec![
        ("function", strings(std::iter::once(name))),
        ("status", strings(std::iter::once(status))),
    ])
}

/// `DESCRIBE name`: its columns, their types and nullability.
pub(crate) fn describe(catalog: &Catalog, name: &str) -> Result<RecordBatch> {
    let entry = catalog.get(name).ok_or_else(|| {
        EngineError::Catalog(format!(
            "DESCRIBE {name}: no stream, table or source of that name"
        ))
    })?;
    let fields = entry.schema.fields();
    let types: Vec<String> = fields.iter().map(|f| f.data_type().to_string()).collect();
    let key: Vec<bool> = fields
        .iter()
        .map(|f| entry.key.contains(f.name()))
        .collect();
    batch(vec![
        (
            "column_name",
            strings(fields.iter().map(|f| f.name().as_str())),
        ),
        ("data_type", strings(types.iter().map(String::as_str))),
        (
            "is_nullable",
            Arc::new(BooleanArray::from_iter(
                fields.iter().map(|f| Some(f.is_nullable())),
            )) as ArrayRef,
        ),
        ("is_key", Arc::new(BooleanArray::from(key)) as ArrayRef),
    ])
}

/// `SHOW TOPICS`: name, partitions and replicas of every topic.
pub(crate) fn show_topics(topics: &[TopicSummary], pattern: Option<&str>) -> Result<RecordBatch> {
    filter_like(
        batch(vec![
            ("topic", strings(topics.iter().map(|t| t.name.as_str()))),
            (
                "partitions",
                Arc::new(UInt64Array::from_iter_values(
                    topics.iter().map(|t| t.partitions as u64),
                )),
            ),
            (
                "replicas",
                Arc::new(UInt64Array::from_iter_values(
                    topics.iter().map(|t| t.replicas as u64),
                )),
            ),
        ])?,
        pattern,
    )
}

/// `SHOW TOPIC DETAILS`: a row per partition, then one per consumer group and partition with
/// the group's committed offset and lag.
pub(crate) fn show_topic_details(rows: &[PartitionDetail]) -> Result<RecordBatch> {
    let replicas: Vec<String> = rows
        .iter()
        .map(|r| {
            r.replicas
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    batch(vec![
        (
            "partition",
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.partition),
            )),
        ),
        (
            "leader",
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.leader))),
        ),
        ("replicas", strings(replicas.iter().map(String::as_str))),
        (
            "low_offset",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.low))),
        ),
        (
            "high_offset",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.high))),
        ),
        (
            "consumer_group",
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.group.as_deref()),
            )),
        ),
        (
            "committed_offset",
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.committed))),
        ),
        (
            "lag",
            Arc::new(Int64Array::from_iter(rows.iter().map(PartitionDetail::lag))),
        ),
    ])
}

/// What a job command did: the job and its status now.
pub(crate) fn job_reply(name: &str, status: &str) -> Result<RecordBatch> {
    batch(vec![
        ("job", strings(std::iter::once(name))),
        ("status", strings(std::iter::once(status))),
    ])
}

/// A time (epoch ms) as SHOW prints timestamps; empty for 0 (none yet).
fn timestamp_text(millis: u64) -> Result<String> {
    if millis == 0 {
        return Ok(String::new());
    }
    Ok(arrow::util::display::array_value_to_string(
        &TimestampMillisecondArray::from(vec![millis as i64]),
        0,
    )?)
}

/// `SHOW JOB STATUS 'name'`: one job, a row per property (`property`, `value`), with every
/// counter; the nodes of its plan when it runs here, and its moves between nodes in a
/// cluster.
pub(crate) fn show_job_status(
    job: &JobSummary,
    operators: &[OperatorCounters],
    instances: &[InstanceCounters],
    placements: &[Placement],
) -> Result<RecordBatch> {
    let optional = |n: Option<u64>| n.map_or(String::new(), |n| n.to_string());
    let properties: Vec<(&str, String)> = vec![
        ("name", job.name.clone()),
        ("status", job.status.clone()),
        ("node", job.node.clone()),
        ("started", timestamp_text(job.started_ms)?),
        ("running_seconds", format!("{:.1}", job.running_seconds)),
        ("cpu_seconds", format!("{:.3}", job.cpu_seconds)),
        ("records_in", job.records_in.to_string()),
        ("records_out", job.records_out.to_string()),
        (
            "records_per_second",
            format!("{:.1}", job.records_per_second),
        ),
        ("bad_records", job.bad_records.to_string()),
        ("late_records", job.late_records.to_string()),
        ("peak_state_bytes", job.peak_state_bytes.to_string()),
        ("state_bytes", job.state_bytes.to_string()),
        ("watermark", timestamp_text(job.watermark_ms)?),
        ("last_checkpoint", optional(job.last_checkpoint)),
        (
            "last_checkpoint_at",
            timestamp_text(job.last_checkpoint_ms.unwrap_or(0))?,
        ),
        (
            "last_checkpoint_ms",
            optional(job.last_checkpoint_duration_ms),
        ),
        (
            "last_checkpoint_pause_ms",
            optional(job.last_checkpoint_pause_ms),
        ),
        ("lag", job.lag.clone()),
        ("last_error", job.last_error.clone().unwrap_or_default()),
    ];
    let mut properties: Vec<(String, String)> = properties
        .into_iter()
        .map(|(p, v)| (p.to_string(), v))
        .collect();
    // Then what went through each node of its plan, root first.
    let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    for op in operators {
        properties.push((
            format!("operator_{}", op.node),
            format!(
                "{} in={} out={} errors={}",
                op.operator,
                count(op.records_in),
                count(op.records_out),
                op.errors
            ),
        ));
    }
    // Then each instance's share of the work.
    for i in instances {
        properties.push((
            format!("instance_{}", i.instance),
            format!(
                "records_in={} lag={} watermark={} late_records={} state_bytes={} peak_state_bytes={} cpu_seconds={:.3}",
                i.records_in,
                i.lag,
                timestamp_text(i.watermark_ms)?,
                i.late_records,
                i.state_bytes,
                i.peak_state_bytes,
                i.busy.as_secs_f64()
            ),
        ));
    }
    for (n, placement) in placements.iter().enumerate() {
        properties.push((
            format!("placement_{n}"),
            format!(
                "{} {} -> {}: {}",
                timestamp_text(placement.at_ms)?,
                placement.from.as_deref().unwrap_or("-"),
                placement.to,
                placement.why
            ),
        ));
    }
    batch(vec![
        (
            "property",
            strings(properties.iter().map(|(p, _)| p.as_str())),
        ),
        ("value", strings(properties.iter().map(|(_, v)| v.as_str()))),
    ])
}

fn timestamps(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter(
        values.map(|ms| (ms > 0).then_some(ms as i64)),
    ))
}

/// `SHOW JOBS`: every job, with its node, status, counters and last error.
pub(crate) fn show_jobs(jobs: &[JobSummary], pattern: Option<&str>) -> Result<RecordBatch> {
    filter_like(
        batch(vec![
            ("name", strings(jobs.iter().map(|j| j.name.as_str()))),
            ("node", strings(jobs.iter().map(|j| j.node.as_str()))),
            ("kind", strings(jobs.iter().map(|j| j.kind.as_str()))),
            ("status", strings(jobs.iter().map(|j| j.status.as_str()))),
            ("started", timestamps(jobs.iter().map(|j| j.started_ms))),
            (
                "records_in",
                Arc::new(UInt64Array::from_iter_values(
                    jobs.iter().map(|j| j.records_in),
                )),
            ),
            (
                "records_out",
                Arc::new(UInt64Array::from_iter_values(
                    jobs.iter().map(|j| j.records_out),
                )),
            ),
            (
                "records_per_second",
                Arc::new(Float64Array::from_iter_values(
                    jobs.iter().map(|j| j.records_per_second),
                )),
            ),
            ("watermark", timestamps(jobs.iter().map(|j| j.watermark_ms))),
            ("lag", strings(jobs.iter().map(|j| j.lag.as_str()))),
            (
                "last_checkpoint",
                Arc::new(UInt64Array::from_iter(
                    jobs.iter().map(|j| j.last_checkpoint),
                )),
            ),
            (
                "last_checkpoint_at",
                Arc::new(TimestampMillisecondArray::from_iter(
                    jobs.iter()
                        .map(|j| j.last_checkpoint_ms.map(|ms| ms as i64)),
                )),
            ),
            (
                "last_error",
                Arc::new(StringArray::from_iter(
                    jobs.iter().map(|j| j.last_error.as_deref()),
                )) as ArrayRef,
            ),
        ])?,
        pattern,
    )
}

/// `SHOW NODES`: every node of the cluster, its capacity, load and last heartbeat.
pub(crate) fn show_nodes(nodes: &[NodeSummary]) -> Result<RecordBatch> {
    let count = |f: fn(&NodeSummary) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(nodes.iter().map(f)))
    };
    batch(vec![
        ("id", strings(nodes.iter().map(|n| n.id.as_str()))),
        ("address", strings(nodes.iter().map(|n| n.address.as_str()))),
        ("status", strings(nodes.iter().map(|n| n.status.as_str()))),
        (
            "leader",
            Arc::new(BooleanArray::from_iter(
                nodes.iter().map(|n| Some(n.leader)),
            )),
        ),
        ("cores", count(|n| n.cores)),
        ("memory_bytes", count(|n| n.memory_bytes)),
        ("slots_used", count(|n| n.jobs.min(n.slots))),
        ("slots", count(|n| n.slots)),
        ("jobs", count(|n| n.jobs)),
        (
            "records_per_second",
            Arc::new(Float64Array::from_iter_values(
                nodes.iter().map(|n| n.records_per_second),
            )),
        ),
        ("state_bytes", count(|n| n.state_bytes)),
        ("rss_bytes", count(|n| n.rss_bytes)),
        (
            "last_heartbeat",
            timestamps(nodes.iter().map(|n| n.heartbeat_ms)),
        ),
    ])
}
