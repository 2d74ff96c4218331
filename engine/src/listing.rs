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
use crate::error::{EngineError, Result};
use crate::job::{JobRecord, JobStatus};

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

/// `SHOW FUNCTIONS`: every function DataFusion has registered, with its kind.
pub(crate) fn show_functions(state: &SessionState, pattern: Option<&str>) -> Result<RecordBatch> {
    let mut functions: Vec<(String, &str)> = state
        .scalar_functions()
        .keys()
        .map(|name| (name.clone(), "scalar"))
        .chain(
            state
                .aggregate_functions()
                .keys()
                .map(|n| (n.clone(), "aggregate")),
        )
        .chain(
            state
                .window_functions()
                .keys()
                .map(|n| (n.clone(), "window")),
        )
        .collect();
    functions.sort();
    functions.dedup();
    filter_like(
        batch(vec![
            ("name", strings(functions.iter().map(|(n, _)| n.as_str()))),
            ("kind", strings(functions.iter().map(|(_, k)| *k))),
        ])?,
        pattern,
    )
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
/// counter.
pub(crate) fn show_job_status(
    jobs: &[std::sync::Arc<JobRecord>],
    name: &str,
) -> Result<RecordBatch> {
    // The latest job of that name: a name can be reused once its job has ended.
    let job = jobs.iter().rev().find(|j| j.name == name).ok_or_else(|| {
        EngineError::Catalog(format!("SHOW JOB STATUS '{name}': no job of that name"))
    })?;
    let progress = job.progress();
    let status = job.status();
    let checkpoint = job.metrics().last_checkpoint();
    let started = arrow::util::display::array_value_to_string(
        &TimestampMillisecondArray::from(vec![millis_since_epoch(job.started_at)]),
        0,
    )?;
    let properties: Vec<(&str, String)> = vec![
        ("name", job.name.clone()),
        ("status", status.as_str().to_string()),
        ("node", node()),
        ("started", started),
        (
            "running_seconds",
            format!("{:.1}", progress.elapsed.as_secs_f64()),
        ),
        ("records_in", progress.records_in.to_string()),
        ("records_out", progress.records_out.to_string()),
        ("records_per_second", format!("{:.1}", progress.rate())),
        ("bad_records", progress.bad_records.to_string()),
        ("late_records", progress.late_records.to_string()),
        ("peak_state_bytes", progress.peak_state_bytes.to_string()),
        ("watermark", timestamp_text(progress.watermark_ms)?),
        (
            "last_checkpoint",
            checkpoint.map_or(String::new(), |c| c.epoch.to_string()),
        ),
        (
            "last_checkpoint_at",
            match checkpoint {
                Some(c) => timestamp_text(millis_since_epoch(c.at) as u64)?,
                None => String::new(),
            },
        ),
        (
            "last_checkpoint_ms",
            checkpoint.map_or(String::new(), |c| c.duration.as_millis().to_string()),
        ),
        (
            "last_checkpoint_pause_ms",
            checkpoint.map_or(String::new(), |c| c.held.as_millis().to_string()),
        ),
        ("lag", lag_text(job)),
        (
            "last_error",
            match status {
                JobStatus::Failed(e) | JobStatus::Retrying(e) => e,
                _ => String::new(),
            },
        ),
    ];
    let mut properties: Vec<(String, String)> = properties
        .into_iter()
        .map(|(p, v)| (p.to_string(), v))
        .collect();
    // Then what went through each node of its plan, root first.
    let count = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    for op in job.operators() {
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
    batch(vec![
        (
            "property",
            strings(properties.iter().map(|(p, _)| p.as_str())),
        ),
        ("value", strings(properties.iter().map(|(_, v)| v.as_str()))),
    ])
}

/// Each partition's lag as `source[partition]=messages`, comma-separated.
fn lag_text(job: &JobRecord) -> String {
    job.metrics()
        .lag()
        .iter()
        .map(|(source, partition, lag)| format!("{source}[{partition}]={lag}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The machine's name, where jobs run (one process for now).
fn node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn millis_since_epoch(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `SHOW JOBS`: every job the session started, with its status, counters and last error.
pub(crate) fn show_jobs(
    jobs: &[std::sync::Arc<JobRecord>],
    pattern: Option<&str>,
) -> Result<RecordBatch> {
    let statuses: Vec<JobStatus> = jobs.iter().map(|j| j.status()).collect();
    let progress: Vec<_> = jobs.iter().map(|j| j.progress()).collect();
    let checkpoints: Vec<_> = jobs.iter().map(|j| j.metrics().last_checkpoint()).collect();
    let lags: Vec<String> = jobs.iter().map(|j| lag_text(j)).collect();
    let started = jobs.iter().map(|j| millis_since_epoch(j.started_at));
    let node = node();
    let errors = statuses.iter().map(|s| match s {
        JobStatus::Failed(e) | JobStatus::Retrying(e) => Some(e.as_str()),
        _ => None,
    });
    filter_like(
        batch(vec![
            ("name", strings(jobs.iter().map(|j| j.name.as_str()))),
            ("node", strings(jobs.iter().map(|_| node.as_str()))),
            (
                "kind",
                strings(jobs.iter().map(|j| match j.kind {
                    crate::job::JobKind::Stream => "stream",
                    crate::job::JobKind::Table => "table",
                })),
            ),
            ("status", strings(statuses.iter().map(JobStatus::as_str))),
            (
                "started",
                Arc::new(TimestampMillisecondArray::from_iter_values(started)) as ArrayRef,
            ),
            (
                "records_in",
                Arc::new(UInt64Array::from_iter_values(
                    progress.iter().map(|p| p.records_in),
                )),
            ),
            (
                "records_out",
                Arc::new(UInt64Array::from_iter_values(
                    progress.iter().map(|p| p.records_out),
                )),
            ),
            (
                "records_per_second",
                Arc::new(Float64Array::from_iter_values(
                    progress.iter().map(|p| (p.rate() * 10.0).round() / 10.0),
                )),
            ),
            (
                "watermark",
                Arc::new(TimestampMillisecondArray::from_iter(
                    progress
                        .iter()
                        .map(|p| (p.watermark_ms > 0).then_some(p.watermark_ms as i64)),
                )) as ArrayRef,
            ),
            ("lag", strings(lags.iter().map(String::as_str))),
            (
                "last_checkpoint",
                Arc::new(UInt64Array::from_iter(
                    checkpoints.iter().map(|c| c.map(|c| c.epoch)),
                )),
            ),
            (
                "last_checkpoint_at",
                Arc::new(TimestampMillisecondArray::from_iter(
                    checkpoints
                        .iter()
                        .map(|c| c.map(|c| millis_since_epoch(c.at))),
                )),
            ),
            (
                "last_error",
                Arc::new(StringArray::from_iter(errors)) as ArrayRef,
            ),
        ])?,
        pattern,
    )
}
