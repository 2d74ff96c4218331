//! Event time and watermarks, stamped on source rows.
//!
//! A source's rows get two extra columns: [`EVENT_TIME_COLUMN`], the row's event time, and
//! [`WATERMARK_COLUMN`], the watermark W left by the rows before it in source order
//! (W = largest event time so far − max out-of-orderness). Both travel through DataFusion's
//! stateless operators like any column; the window operator reads them to judge lateness and
//! to close windows, and then replaces them with the window's bounds, whose names they carry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::error::StreamingError;

/// Carries each row's event time until the window operator, then the window start.
pub const EVENT_TIME_COLUMN: &str = "_window_start";
/// Carries the watermark before each row until the window operator, then the window end.
pub const WATERMARK_COLUMN: &str = "_window_end";

/// Snapshot keys of [`EventTimeStamper`].
const STAMP_MAX: &str = "ferris.stamp.max_event_time";
const STAMP_WATERMARK: &str = "ferris.stamp.watermark";
const STAMP_PARTITIONS: &str = "ferris.stamp.partitions";

/// How a source's event time is read and its watermark derived. The default is processing
/// time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WatermarkSpec {
    /// The event-time column; `None` stamps rows with the time they are read (processing time).
    pub field: Option<String>,
    /// A chrono format for text event times that are not ISO-8601.
    pub format: Option<String>,
    /// How far the watermark stays behind the largest event time seen.
    pub max_out_of_orderness: Duration,
    /// A column naming the input partition of each row (a Kafka partition): each partition
    /// keeps its own watermark and the source's is their minimum.
    pub partition_field: Option<String>,
    /// The partitions expected: one not yet seen holds the watermark back (until it is
    /// idle), so that a partition read first cannot make the others late.
    pub partitions: Vec<i32>,
    /// A partition without rows for this long stops holding the source's watermark back.
    pub idle_timeout: Option<Duration>,
}

impl std::fmt::Display for WatermarkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(
                f,
                "event_time={field}, watermark=max-{}ms",
                self.max_out_of_orderness.as_millis()
            ),
            None => f.write_str("processing_time"),
        }
    }
}

/// The type of both stamped columns.
pub fn stamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// Adds the two stamp columns to a source schema.
pub fn stamped_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(EVENT_TIME_COLUMN, stamp_type(), false));
    fields.push(Field::new(WATERMARK_COLUMN, stamp_type(), false));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Stamps the batches of one source, in order.
#[derive(Debug)]
pub struct EventTimeStamper {
    spec: WatermarkSpec,
    source: String,
    schema: SchemaRef,
    field_index: Option<usize>,
    partition_index: Option<usize>,
    max_event_time: i64,
    /// Per input partition: the largest event time and when its last row came.
    partitions: Vec<(i64, PartitionClock)>,
    /// The watermark last stamped; it never goes back.
    watermark: i64,
}

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    max_event_time: i64,
    last_row: std::time::Instant,
}

impl PartitionClock {
    /// A partition nothing was read from yet, waited for from `now`.
    fn unseen(now: std::time::Instant) -> Self {
        Self {
            max_event_time: i64::MIN,
            last_row: now,
        }
    }
}

impl EventTimeStamper {
    /// A stamper for batches of `schema` from the source `source` (named in errors).
    pub fn try_new(
        source: &str,
        schema: SchemaRef,
        spec: WatermarkSpec,
    ) -> Result<Self, StreamingError> {
        let column = |field: &Option<String>, what: &str| {
            field
                .as_ref()
                .map(|field| {
                    schema.index_of(field).map_err(|_| {
                        StreamingError::EventTime(format!(
                            "source '{source}' has no {what} column '{field}'"
                        ))
                    })
                })
                .transpose()
        };
        let field_index = column(&spec.field, "event time")?;
        let partition_index = column(&spec.partition_field, "partition")?;
        Ok(Self {
            schema: stamped_schema(&schema),
            source: source.to_string(),
            field_index,
            partition_index,
            max_event_time: i64::MIN,
            partitions: spec
                .partitions
                .iter()
                .map(|&p| {
                    (
                        i64::from(p),
                        PartitionClock::unseen(std::time::Instant::now()),
                    )
                })
                .collect(),
            watermark: i64::MIN,
            spec,
        })
    }

    /// The schema of stamped batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// What the stamper remembers (largest event times, the watermark), as text to keep
    /// beside a source's checkpointed position.
    pub fn snapshot(&self) -> HashMap<String, String> {
        let partitions: Vec<String> = self
            .partitions
            .iter()
            .map(|(p, clock)| format!("{p}={}", clock.max_event_time))
            .collect();
        HashMap::from([
            (STAMP_MAX.to_string(), self.max_event_time.to_string()),
            (STAMP_WATERMARK.to_string(), self.watermark.to_string()),
            (STAMP_PARTITIONS.to_string(), partitions.join(",")),
        ])
    }

    /// The snapshots of several stampers (a source's shares at another parallelism) as
    /// one for each new share: every partition's largest event time (a share keeps those of
    /// its own partitions), and the least largest event time and watermark of them all. A
    /// share may now read parts that another had read less far: starting from the least
    /// progress, none of its records is taken for late that was not before. Empty where
    /// none has one.
    pub fn merge_snapshots(snapshots: &[HashMap<String, String>]) -> HashMap<String, String> {
        let least = |key: &'static str| {
            snapshots
                .iter()
                .filter_map(move |s| s.get(key)?.parse::<i64>().ok())
                .min()
        };
        let (Some(max), Some(watermark)) = (least(STAMP_MAX), least(STAMP_WATERMARK)) else {
            return HashMap::new();
        };
        let partitions: Vec<&str> = snapshots
            .iter()
            .filter_map(|s| s.get(STAMP_PARTITIONS))
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .collect();
        HashMap::from([
            (STAMP_MAX.to_string(), max.to_string()),
            (STAMP_WATERMARK.to_string(), watermark.to_string()),
            (STAMP_PARTITIONS.to_string(), partitions.join(",")),
        ])
    }

    /// Continues from a [`EventTimeStamper::snapshot`].
    pub fn restore(&mut self, state: &HashMap<String, String>) -> Result<(), StreamingError> {
        let bad = |key: &str| StreamingError::Snapshot(format!("no valid {key} in the snapshot"));
        let number = |key: &str| -> Result<i64, StreamingError> {
            state
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(key))
        };
        self.max_event_time = number(STAMP_MAX)?;
        self.watermark = number(STAMP_WATERMARK)?;
        let partitions = state
            .get(STAMP_PARTITIONS)
            .ok_or_else(|| bad(STAMP_PARTITIONS))?;
        let now = std::time::Instant::now();
        for entry in partitions.split(',').filter(|e| !e.is_empty()) {
            let (p, max) = entry
                .split_once('=')
                .and_then(|(p, m)| Some((p.parse::<i64>().ok()?, m.parse::<i64>().ok()?)))
                .ok_or_else(|| bad(STAMP_PARTITIONS))?;
            let clock = PartitionClock {
                max_event_time: max,
                last_row: now,
            };
            match self.partitions.iter_mut().find(|(q, _)| *q == p) {
                Some((_, existing)) => *existing = clock,
                // Another share's partition (a checkpoint of another parallelism) is not
                // this one's to wait for.
                None if self.spec.partitions.is_empty() => self.partitions.push((p, clock)),
                None => {}
            }
        }
        Ok(())
    }

    /// Keeps `partitions` from going idle: the source knows they hold records not read yet
    /// (a Kafka partition short of its end offset), so their silence was a wait (for a
    /// consumer group, a pause), not an end of data, and the watermark waits for them.
    pub fn hold_for_backlog(&mut self, partitions: &[i32]) {
        let now = std::time::Instant::now();
        for &partition in partitions {
            let partition = i64::from(partition);
            match self.partitions.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, clock)) => clock.last_row = now,
                None => self
                    .partitions
                    .push((partition, PartitionClock::unseen(now))),
            }
        }
    }

    /// The batch with its stamp columns added.
    pub fn stamp(&mut self, batch: &RecordBatch) -> Result<RecordBatch, StreamingError> {
        let times = match self.field_index {
            Some(i) => self.event_times(batch.column(i))?,
            None => {
                let now = chrono::Utc::now().timestamp_millis();
                vec![now; batch.num_rows()]
            }
        };
        let bound = self.spec.max_out_of_orderness.as_millis() as i64;
        let mut watermarks = Vec::with_capacity(times.len());
        match self.partition_index {
            None => {
                for &t in &times {
                    watermarks.push(self.max_event_time.saturating_sub(bound));
                    self.max_event_time = self.max_event_time.max(t);
                }
            }
            Some(i) => {
                let partitions = cast(batch.column(i), &DataType::Int64)
                    .map_err(|e| StreamingError::EventTime(e.to_string()))?;
                let partitions = partitions.as_primitive::<arrow::datatypes::Int64Type>();
                let now = std::time::Instant::now();
                let mut merged = self.merged_max(now);
                for (row, &t) in times.iter().enumerate() {
                    self.watermark = self.watermark.max(merged.saturating_sub(bound));
                    watermarks.push(self.watermark);
                    if self.advance(partitions.value(row), t, now, merged) {
                        merged = self.merged_max(now);
                    }
                }
            }
        }
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(TimestampMillisecondArray::from(times)) as ArrayRef);
        columns.push(Arc::new(TimestampMillisecondArray::from(watermarks)) as ArrayRef);
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| StreamingError::EventTime(e.to_string()))
    }

    /// Records a row of `partition` at event time `t`; true when the merged value (`merged`
    /// before this row) may have moved: the partition was new, idle, or the least one and grew.
    /// Otherwise the minimum over the partitions is untouched, and is not recomputed per row.
    fn advance(&mut self, partition: i64, t: i64, now: std::time::Instant, merged: i64) -> bool {
        let idle_timeout = self.spec.idle_timeout;
        match self.partitions.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, clock)) => {
                let was_idle =
                    idle_timeout.is_some_and(|idle| now.duration_since(clock.last_row) >= idle);
                let old = clock.max_event_time;
                clock.last_row = now;
                clock.max_event_time = old.max(t);
                was_idle || (t > old && old <= merged)
            }
            None => {
                self.partitions.push((
                    partition,
                    PartitionClock {
                        max_event_time: t,
                        last_row: now,
                    },
                ));
                true
            }
        }
    }

    /// The smallest largest-event-time over the partitions that are not idle (over all of
    /// them when every one is).
    fn merged_max(&self, now: std::time::Instant) -> i64 {
        let active = |clock: &&PartitionClock| {
            self.spec
                .idle_timeout
                .is_none_or(|idle| now.duration_since(clock.last_row) < idle)
        };
        let clocks = || self.partitions.iter().map(|(_, clock)| clock);
        clocks()
            .filter(active)
            .map(|c| c.max_event_time)
            .min()
            .or_else(|| clocks().map(|c| c.max_event_time).max())
            .unwrap_or(i64::MIN)
    }

    fn event_times(&self, column: &ArrayRef) -> Result<Vec<i64>, StreamingError> {
        let field = self.spec.field.as_deref().unwrap_or_default();
        let error = |what: String| {
            StreamingError::EventTime(format!(
                "source '{}', event time column '{field}': {what}",
                self.source
            ))
        };
        let millis = match (column.data_type(), &self.spec.format) {
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Some(format)) => {
                let text = cast(column, &DataType::Utf8).map_err(|e| error(e.to_string()))?;
                let text = text.as_string::<i32>();
                let mut out = Vec::with_capacity(text.len());
                for value in text.iter() {
                    let value =
                        value.ok_or_else(|| error("a record has no event time (null)".into()))?;
                    out.push(parse_with_format(value, format).ok_or_else(|| {
                        error(format!("'{value}' does not match the format '{format}'"))
                    })?);
                }
                return Ok(out);
            }
            (
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64,
                _,
            ) => cast(column, &DataType::Int64).map_err(|e| error(e.to_string()))?,
            _ => {
                let stamped = cast(column, &stamp_type())
                    .map_err(|e| error(format!("not a timestamp: {e}")))?;
                cast(&stamped, &DataType::Int64).map_err(|e| error(e.to_string()))?
            }
        };
        let millis = millis.as_primitive::<arrow::datatypes::Int64Type>();
        if millis.null_count() > 0 {
            let row = (0..millis.len()).find(|&i| millis.is_null(i)).unwrap_or(0);
            let original =
                arrow::util::display::array_value_to_string(column, row).unwrap_or_default();
            return Err(error(format!(
                "a record has no usable event time ('{original}')"
            )));
        }
        Ok(millis.values().to_vec())
    }
}

fn parse_with_format(value: &str, format: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_str(value, format) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(value, format)
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn stamp(column: ArrayRef, spec: WatermarkSpec, cuts: &[usize]) -> (Vec<i64>, Vec<i64>) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            column.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
        let mut stamper = EventTimeStamper::try_new("s", schema, spec).unwrap();
        let (mut times, mut marks) = (vec![], vec![]);
        let mut offset = 0;
        for &len in cuts {
            let out = stamper.stamp(&batch.slice(offset, len)).unwrap();
            let get = |name: &str| {
                let c = out.column_by_name(name).unwrap();
                cast(c, &DataType::Int64)
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            };
            times.extend(get(EVENT_TIME_COLUMN));
            marks.extend(get(WATERMARK_COLUMN));
            offset += len;
        }
        (times, marks)
    }

    fn spec(format: Option<&str>, bound_ms: u64) -> WatermarkSpec {
        WatermarkSpec {
            field: Some("ts".into()),
            format: format.map(str::to_string),
            max_out_of_orderness: Duration::from_millis(bound_ms),
            ..Default::default()
        }
    }

    #[test]
    fn partitions_keep_their_own_watermark_and_the_source_takes_the_least() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("p", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![100, 10, 200, 20, 300])),
                Arc::new(arrow::array::Int32Array::from(vec![0, 1, 0, 1, 0])),
            ],
        )
        .unwrap();
        let spec = WatermarkSpec {
            partition_field: Some("p".into()),
            partitions: vec![0, 1],
            ..spec(None, 0)
        };
        let mut stamper = EventTimeStamper::try_new("s", schema, spec).unwrap();
        let out = stamper.stamp(&batch).unwrap();
        let marks = out
            .column_by_name(WATERMARK_COLUMN)
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .values()
            .to_vec();
        // Partition 1 is awaited, then lags: the watermark follows it, not partition 0.
        assert_eq!(marks, vec![i64::MIN, i64::MIN, 10, 10, 20]);
    }

    #[test]
    fn a_partition_behind_is_waited_for_however_long_it_was_silent() {
        let spec = WatermarkSpec {
            partition_field: Some("p".into()),
            partitions: vec![0, 1],
            idle_timeout: Some(Duration::from_millis(10)),
            ..spec(None, 1000)
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("p", DataType::Int32, false),
        ]));
        let batch = |partition: i32, times: Vec<i64>| {
            let partitions = vec![partition; times.len()];
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(times)),
                    Arc::new(arrow::array::Int32Array::from(partitions)),
                ],
            )
            .unwrap()
        };
        let watermarks = |stamped: &RecordBatch| -> Vec<i64> {
            let column = cast(
                stamped.column_by_name(WATERMARK_COLUMN).unwrap(),
                &DataType::Int64,
            );
            let column = column.unwrap();
            column
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        };
        // Both partitions were silent past the idle timeout (the source waited for its group).
        for backlog in [vec![], vec![1]] {
            let mut stamper =
                EventTimeStamper::try_new("trades", schema.clone(), spec.clone()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            stamper.hold_for_backlog(&backlog);
            stamper
                .stamp(&batch(0, (0..=100_000).step_by(1000).collect()))
                .unwrap();
            let last = *watermarks(&stamper.stamp(&batch(1, vec![0])).unwrap())
                .last()
                .unwrap();
            match backlog.is_empty() {
                // Idle, partition 1 let partition 0 lead: its row comes in late.
                true => assert!(last > 90_000, "{last}"),
                false => assert!(last < 0, "{last}"),
            }
        }
    }

    #[test]
    fn watermark_before_each_row_does_not_depend_on_batching() {
        let column: ArrayRef = Arc::new(Int64Array::from(vec![1000, 5000, 3000, 9000]));
        let whole = stamp(column.clone(), spec(None, 1000), &[4]);
        let cut = stamp(column, spec(None, 1000), &[1, 2, 1]);
        assert_eq!(whole, cut);
        assert_eq!(whole.0, [1000, 5000, 3000, 9000]);
        assert_eq!(whole.1, [i64::MIN, 0, 4000, 4000]);
    }

    #[test]
    fn text_times_iso_or_formatted_and_bad_ones_named() {
        let iso: ArrayRef = Arc::new(StringArray::from(vec![
            "2026-03-02T09:30:00.123Z",
            "2026-03-02 09:30:01",
        ]));
        assert_eq!(
            stamp(iso, spec(None, 0), &[2]).0,
            [1772443800123, 1772443801000]
        );
        let custom: ArrayRef = Arc::new(StringArray::from(vec!["02/03/2026 09:30:00"]));
        assert_eq!(
            stamp(custom, spec(Some("%d/%m/%Y %H:%M:%S"), 0), &[1]).0,
            [1772443800000]
        );
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["yesterday"]))],
        )
        .unwrap();
        let err = EventTimeStamper::try_new("trades", schema, spec(None, 0))
            .unwrap()
            .stamp(&batch)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("source 'trades', event time column 'ts'"),
            "{err}"
        );
    }
}
