//! `StreamJoinExec`: two unbounded streams joined on equal keys, batch by batch, with its
//! state in the job's checkpoints.
//!
//! It takes the place of DataFusion's `SymmetricHashJoinExec` for inner equi-joins of two
//! streams (two Kafka topics, two watched folders). Like it, it keeps every row either side
//! has given, indexed by the join keys: a batch from one side is joined with the rows the
//! other side gave before it, then kept for the other side's later rows, so each matching
//! pair is written once, as soon as its second row arrives. Unlike it, it hands those rows to
//! the job's checkpoints and takes them back on restore, so a job joining two streams runs
//! exactly once. Nothing is dropped from its state: it grows with its input, within the
//! job's `'state.memory.limit'`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, interleave, take};
use arrow::datatypes::Int64Type;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::row::Row;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinSide, JoinType, NullEquality};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::joins::SymmetricHashJoinExec;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, apply_expression_roots,
};
use futures::{FutureExt, StreamExt};

use crate::checkpoint::{CheckpointBarrier, OperatorBarrier, barrier_changed};
use crate::error::StreamingError;
use crate::join_keys::{BatchKeys, JoinKeys, KeyIndex};
use crate::join_time_bounds::{SideClock, SideTime, TimeBounds, latest_time};
use crate::state_memory::StateMemory;

/// The plan node: `left` joined with `right` where every pair of `on` is equal (and `filter`
/// holds); its rows are the left side's columns, then the right side's.
#[derive(Debug)]
pub struct StreamJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    /// What `filter` says of the sides' event times, when it lets rows go.
    bounds: Option<TimeBounds>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl StreamJoinExec {
    /// The stream join doing what `join` does, when it can: an inner join of two unbounded
    /// inputs of one partition each, on equal keys where null matches nothing. `times` are
    /// the sides' event times, where their sources declare them: when the join condition
    /// bounds one by the other, rows are let go once they can no longer match.
    pub fn from_symmetric_hash_join(
        join: &SymmetricHashJoinExec,
        times: [Option<&SideTime>; 2],
    ) -> Option<Self> {
        let single = |side: &Arc<dyn ExecutionPlan>| {
            side.properties().boundedness.is_unbounded()
                && side.properties().output_partitioning().partition_count() == 1
        };
        let usable = *join.join_type() == JoinType::Inner
            && join.null_equality() == NullEquality::NullEqualsNothing
            && single(join.left())
            && single(join.right());
        let bounds = match (join.filter(), times) {
            (Some(filter), [Some(left), Some(right)]) => TimeBounds::of(
                filter,
                [&join.left().schema(), &join.right().schema()],
                [left, right],
            ),
            _ => None,
        };
        usable.then(|| {
            Self::new(
                join.left().clone(),
                join.right().clone(),
                join.on().to_vec(),
                join.filter().cloned(),
                bounds,
                join.schema(),
            )
        })
    }

    fn new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        bounds: Option<TimeBounds>,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            left.properties().boundedness,
        );
        Self {
            left,
            right,
            on,
            filter,
            bounds,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for StreamJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self
            .on
            .iter()
            .map(|(left, right)| format!("({left}, {right})"))
            .collect();
        write!(f, "StreamJoinExec: on=[{}]", on.join(", "))?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={}", filter.expression())?;
        }
        if let Some(bounds) = &self.bounds {
            let column = |plan: &Arc<dyn ExecutionPlan>, side: usize| {
                plan.schema().field(bounds.columns[side]).name().clone()
            };
            let bound = |b: Option<i64>, open: &str| b.map_or(open.into(), |b| format!("{b}ms"));
            write!(
                f,
                ", keeps rows while right.{} - left.{} can be in [{}, {}]",
                column(&self.right, 1),
                column(&self.left, 0),
                bound(bounds.lower, "-inf"),
                bound(bounds.upper, "+inf")
            )?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StreamJoinExec {
    fn name(&self) -> &str {
        "StreamJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let keys = self.on.iter().flat_map(|(left, right)| [left, right]);
        let filter = self.filter.iter().map(|filter| filter.expression());
        apply_expression_roots(keys.chain(filter), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let right = children.swap_remove(1);
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            right,
            self.on.clone(),
            self.filter.clone(),
            self.bounds,
            self.schema(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // Inputs first: operators register with the barrier in the order the plan executes.
        let left = self.left.execute(partition, context.clone())?;
        let right = self.right.execute(partition, context.clone())?;
        let mut state = JoinState::try_new(
            self.schema(),
            self.on.clone(),
            self.filter.clone(),
            self.bounds,
            [self.left.schema(), self.right.schema()],
        )?;
        let barrier = CheckpointBarrier::register_task_operator(&context, |s| state.restore(s))?;
        let run = JoinRun {
            inputs: [Some(left), Some(right)],
            state,
            ready: None,
            memory: StateMemory::new("StreamJoinExec", partition, &context, &self.metrics),
            output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
            late: MetricBuilder::new(&self.metrics).counter("late_records", partition),
            barrier,
            done: false,
        };
        let output = futures::stream::unfold(run, |mut run| async move {
            let next = run.next().await;
            next.map(|batch| (batch, run))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            output,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One side's rows so far, indexed by their join keys (rows with a null key left out).
///
/// Batches let go (their rows can no longer match) leave their index entries behind until
/// they are the larger part, when the index is built again from the batches still kept.
#[derive(Debug)]
struct Kept {
    schema: SchemaRef,
    /// The batches in the order they came; `None` once let go.
    batches: Vec<Option<KeptBatch>>,
    index: KeyIndex,
    /// Index entries of batches let go.
    dropped_rows: usize,
    /// The earliest latest event time of a kept batch: nothing before it can be let go.
    earliest: i64,
    bytes: usize,
}

#[derive(Debug)]
struct KeptBatch {
    rows: RecordBatch,
    keys: BatchKeys,
    /// Its latest event time (ms), when the join lets rows go by event time.
    max_time: i64,
    bytes: usize,
}

impl Kept {
    fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            batches: Vec::new(),
            index: KeyIndex::default(),
            dropped_rows: 0,
            earliest: i64::MAX,
            bytes: 0,
        }
    }

    /// Adds to `found` the (batch, row) of every kept row whose key is `key`; how many.
    fn matches(&self, hash: u64, key: Row<'_>, found: &mut Vec<(usize, usize)>) -> usize {
        let keys_of = |batch: usize| self.batches[batch].as_ref().map(|b| &b.keys.rows);
        self.index.matches(hash, key, keys_of, found)
    }

    /// Keeps a batch, indexing its rows by `keys`, hashed to `hashes`.
    fn keep(&mut self, rows: RecordBatch, keys: BatchKeys, hashes: &[Option<u64>], max_time: i64) {
        for (row, hash) in hashes.iter().enumerate() {
            if let Some(hash) = *hash {
                self.index.insert(hash, self.batches.len(), row);
            }
        }
        let bytes =
            rows.get_array_memory_size() + keys.size() + rows.num_rows() * KeyIndex::ROW_SIZE;
        self.bytes += bytes;
        self.earliest = self.earliest.min(max_time);
        self.batches.push(Some(KeptBatch {
            rows,
            keys,
            max_time,
            bytes,
        }));
    }

    /// Lets go of every batch whose rows are all older than `limit` (ms).
    fn expire(&mut self, limit: i64, join_keys: &JoinKeys) {
        if limit <= self.earliest {
            return;
        }
        let (mut live_rows, mut earliest) = (0, i64::MAX);
        for slot in &mut self.batches {
            match slot {
                Some(batch) if batch.max_time < limit => {
                    self.bytes -= batch.bytes;
                    self.dropped_rows += batch.rows.num_rows();
                    *slot = None;
                }
                Some(batch) => {
                    live_rows += batch.rows.num_rows();
                    earliest = earliest.min(batch.max_time);
                }
                None => {}
            }
        }
        self.earliest = earliest;
        if self.dropped_rows > live_rows {
            // Build the index again from the batches still kept.
            let kept: Vec<KeptBatch> = self.batches.drain(..).flatten().collect();
            self.index.clear();
            self.dropped_rows = 0;
            self.bytes = 0;
            self.earliest = i64::MAX;
            for batch in kept {
                let hashes = join_keys.hashes(&batch.keys);
                self.keep(batch.rows, batch.keys, &hashes, batch.max_time);
            }
        }
    }

    /// The kept batches.
    fn kept(&self) -> impl Iterator<Item = &KeptBatch> {
        self.batches.iter().flatten()
    }
}

/// Both sides' rows and how to join them: everything a snapshot holds, and no more.
struct JoinState {
    schema: SchemaRef,
    keys: JoinKeys,
    filter: Option<JoinFilter>,
    sides: [Kept; 2],
    /// What the condition says of the sides' event times, and each side's watermark, when
    /// it lets rows go.
    time: Option<(TimeBounds, [SideClock; 2])>,
}

impl JoinState {
    fn try_new(
        schema: SchemaRef,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        bounds: Option<TimeBounds>,
        side_schemas: [SchemaRef; 2],
    ) -> Result<Self> {
        Ok(Self {
            schema,
            keys: JoinKeys::try_new(on, &side_schemas[0])?,
            filter,
            sides: side_schemas.map(Kept::new),
            time: bounds.map(|bounds| (bounds, bounds.slack.map(SideClock::new))),
        })
    }

    fn size(&self) -> usize {
        self.sides.iter().map(|side| side.bytes).sum()
    }

    /// Joins a batch of side `side` (0 left, 1 right) with the other side's rows so far,
    /// then keeps it: the joined rows, if any, and how many rows were dropped as late. With
    /// time bounds, its rows without an event time or late are dropped first, and the other
    /// side's rows that its watermark puts out of reach are let go after.
    fn join(&mut self, side: usize, batch: RecordBatch) -> Result<(Option<RecordBatch>, usize)> {
        let Some((bounds, clocks)) = &mut self.time else {
            return Ok((self.add(side, batch, i64::MIN, true)?, 0));
        };
        let bounds = *bounds;
        let column = batch.column(bounds.columns[side]);
        let (keep, max_time) = clocks[side].advance(column, bounds.watches(side))?;
        let watermark = clocks[side].watermark();
        let late = batch.num_rows() - keep.true_count();
        let batch = if late == 0 {
            batch
        } else {
            filter_record_batch(&batch, &keep)?
        };
        let joined = self.add(side, batch, max_time, true)?;
        let other = 1 - side;
        if let Some(limit) = bounds.expired_before(other, watermark) {
            self.sides[other].expire(limit, &self.keys);
        }
        Ok((joined, late))
    }

    /// Joins a batch of side `side` with the other side's rows so far (unless `probe` is
    /// false: a restored batch, whose pairs were written before the checkpoint), then keeps
    /// it, its latest event time being `max_time`.
    fn add(
        &mut self,
        side: usize,
        batch: RecordBatch,
        max_time: i64,
        probe: bool,
    ) -> Result<Option<RecordBatch>> {
        let keys = self.keys.of(side, &batch)?;
        let [left, right] = &mut self.sides;
        let (this, other) = if side == 0 {
            (left, right)
        } else {
            (right, left)
        };
        let hashes = self.keys.hashes(&keys);
        let mut rows: Vec<u32> = Vec::new();
        let mut found: Vec<(usize, usize)> = Vec::new();
        if probe {
            for (row, hash) in hashes.iter().enumerate() {
                if let Some(hash) = *hash {
                    let matched = other.matches(hash, keys.rows.row(row), &mut found);
                    rows.extend(std::iter::repeat_n(row as u32, matched));
                }
            }
        }
        this.keep(batch.clone(), keys, &hashes, max_time);
        if rows.is_empty() {
            return Ok(None);
        }
        let rows = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let this_columns = batch
            .columns()
            .iter()
            .map(|column| Ok(take(column, &rows, None)?))
            .collect::<Result<Vec<_>>>()?;
        // The batches matched, and the matches as positions in that list.
        let mut matched: Vec<&RecordBatch> = Vec::new();
        let mut slots: HashMap<usize, usize> = HashMap::new();
        let found: Vec<(usize, usize)> = found
            .into_iter()
            .map(|(batch, row)| {
                let slot = *slots.entry(batch).or_insert_with(|| {
                    let kept = other.batches[batch].as_ref();
                    matched.push(&kept.expect("a match is in a kept batch").rows);
                    matched.len() - 1
                });
                (slot, row)
            })
            .collect();
        let other_columns = (0..other.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    matched.iter().map(|b| b.column(c).as_ref()).collect();
                Ok(interleave(&arrays, &found)?)
            })
            .collect::<Result<Vec<_>>>()?;
        // Output rows are always left columns, then right ones.
        if side == 0 {
            columns.extend(this_columns);
            columns.extend(other_columns);
        } else {
            columns.extend(other_columns);
            columns.extend(this_columns);
        }
        let joined = RecordBatch::try_new(self.schema.clone(), columns)?;
        let joined = match &self.filter {
            Some(filter) => self.apply(filter, joined)?,
            None => joined,
        };
        Ok((joined.num_rows() > 0).then_some(joined))
    }

    /// The joined rows for which the join's extra condition holds.
    fn apply(&self, filter: &JoinFilter, joined: RecordBatch) -> Result<RecordBatch> {
        let left_width = self.sides[0].schema.fields().len();
        let columns = filter
            .column_indices()
            .iter()
            .map(|c| match c.side {
                JoinSide::Left => joined.column(c.index).clone(),
                _ => joined.column(left_width + c.index).clone(),
            })
            .collect();
        let intermediate = RecordBatch::try_new(filter.schema().clone(), columns)?;
        let holds = filter
            .expression()
            .evaluate(&intermediate)?
            .into_array(intermediate.num_rows())?;
        let holds = holds.as_any().downcast_ref().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(
                "a join condition that is not a boolean".into(),
            )
        })?;
        Ok(filter_record_batch(&joined, holds)?)
    }

    /// Both sides' rows as one batch: a row whose `left` and `right` cells each hold a
    /// side's rows as an Arrow IPC stream (the sides have different schemas), and each
    /// side's latest event time.
    fn snapshot(&self) -> Result<RecordBatch> {
        let mut cells = Vec::with_capacity(4);
        for side in &self.sides {
            let mut bytes = Vec::new();
            let mut writer = StreamWriter::try_new(&mut bytes, &side.schema)?;
            for batch in side.kept() {
                writer.write(&batch.rows)?;
            }
            writer.finish()?;
            drop(writer);
            cells.push(Arc::new(BinaryArray::from_vec(vec![&bytes])) as ArrayRef);
        }
        for side in 0..2 {
            let max_time = self
                .time
                .map_or(i64::MIN, |(_, clocks)| clocks[side].max_time);
            cells.push(Arc::new(Int64Array::from(vec![max_time])) as ArrayRef);
        }
        Ok(RecordBatch::try_new(snapshot_schema(), cells)?)
    }

    /// Takes back the rows of a snapshot; the state must be empty.
    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        let wrong = |what: &str| StreamingError::Snapshot(format!("a stream join's {what}"));
        if snapshot.schema() != snapshot_schema() || snapshot.num_rows() != 1 {
            return Err(wrong("snapshot has another shape").into());
        }
        for side in 0..2 {
            let cell = snapshot
                .column(side)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| wrong("snapshot has another shape"))?;
            let reader = StreamReader::try_new(cell.value(0), None)?;
            if reader.schema() != self.sides[side].schema {
                return Err(wrong("rows have other columns than its input").into());
            }
            for batch in reader {
                let batch = batch?;
                let max_time = match self.time {
                    Some((bounds, _)) => latest_time(batch.column(bounds.columns[side]))?,
                    None => i64::MIN,
                };
                self.add(side, batch, max_time, false)?;
            }
            if let Some((_, clocks)) = &mut self.time {
                let max_time = snapshot.column(2 + side).as_primitive::<Int64Type>();
                clocks[side].max_time = max_time.value(0);
            }
        }
        Ok(())
    }
}

fn snapshot_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("left", DataType::Binary, false),
        Field::new("right", DataType::Binary, false),
        Field::new("left_max_time", DataType::Int64, false),
        Field::new("right_max_time", DataType::Int64, false),
    ]))
}

/// A running join: its two inputs (`None` once ended), its state, its side of the barrier.
struct JoinRun {
    inputs: [Option<SendableRecordBatchStream>; 2],
    state: JoinState,
    ready: Option<RecordBatch>,
    memory: StateMemory,
    output_rows: Count,
    late: Count,
    barrier: Option<OperatorBarrier>,
    done: bool,
}

/// What woke the join.
enum Wake {
    Input(usize, Option<Result<RecordBatch>>),
    /// The checkpoint barrier changed: a snapshot may be due.
    Barrier,
}

impl JoinRun {
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(batch) = self.ready.take() {
                self.output_rows.add(batch.num_rows());
                return Some(Ok(batch));
            }
            if self.done || self.inputs.iter().all(Option::is_none) {
                return None;
            }
            if let Some(barrier) = &self.barrier
                && let Some(epoch) = barrier.snapshot_due()
            {
                // Every source holds back: what an input still has ready was read before the
                // cut and belongs in the snapshot; once neither has anything, snapshot.
                let ready = (0..2).find_map(|side| {
                    let input = self.inputs[side].as_mut()?;
                    input.next().now_or_never().map(|next| (side, next))
                });
                let taken = match ready {
                    Some((side, next)) => self.take(side, next),
                    None => self
                        .state
                        .snapshot()
                        .map(|snapshot| barrier.snapshot(epoch, snapshot)),
                };
                if let Err(e) = taken {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            let [left, right] = &mut self.inputs;
            let barrier = self.barrier.as_mut();
            let wake = tokio::select! {
                next = next_of(left) => Wake::Input(0, next),
                next = next_of(right) => Wake::Input(1, next),
                _ = barrier_changed(barrier) => Wake::Barrier,
            };
            if let Wake::Input(side, next) = wake
                && let Err(e) = self.take(side, next)
            {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// Joins what input `side` gave (a batch, its end, or an error).
    fn take(&mut self, side: usize, next: Option<Result<RecordBatch>>) -> Result<()> {
        match next {
            Some(batch) => {
                let (joined, late) = self.state.join(side, batch?)?;
                self.ready = joined;
                self.late.add(late);
                self.memory.resize(self.state.size())
            }
            None => {
                self.inputs[side] = None;
                Ok(())
            }
        }
    }
}

/// The next item of an input; never, for one that ended.
async fn next_of(input: &mut Option<SendableRecordBatchStream>) -> Option<Result<RecordBatch>> {
    match input {
        Some(input) => input.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::array::{Int32Array, Int64Array};
    use arrow::datatypes::TimeUnit;
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    use datafusion::physical_plan::joins::utils::ColumnIndex;
    use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, StreamJoinPartitionMode};

    use crate::test_util::{memory, quiet, sorted_rows};

    /// Rows of (key, value) in batches; a `None` key is null.
    fn batches(name: &str, rows: &[&[(Option<i32>, i64)]]) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new(name, DataType::Int64, false),
        ]));
        rows.iter()
            .map(|rows| {
                let keys = Int32Array::from_iter(rows.iter().map(|r| r.0));
                let values = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)])
                    .unwrap()
            })
            .collect()
    }

    fn orders() -> Vec<RecordBatch> {
        batches(
            "amount",
            &[
                &[(Some(1), 10), (Some(2), 20), (None, 30)],
                &[(Some(3), 30), (Some(2), 25)],
                &[(Some(4), 40)],
            ],
        )
    }

    fn payments() -> Vec<RecordBatch> {
        batches(
            "paid",
            &[
                &[(Some(2), 20), (None, 5)],
                &[(Some(1), 10), (Some(2), 19), (Some(5), 50)],
                &[(Some(3), 31)],
            ],
        )
    }

    fn on() -> Vec<(PhysicalExprRef, PhysicalExprRef)> {
        vec![(
            Arc::new(Column::new("id", 0)) as PhysicalExprRef,
            Arc::new(Column::new("id", 0)) as PhysicalExprRef,
        )]
    }

    /// `amount <= paid`, over the left column 1 and the right column 1.
    fn paid_enough() -> JoinFilter {
        let schema = Schema::new(vec![
            Field::new("amount", DataType::Int64, false),
            Field::new("paid", DataType::Int64, false),
        ]);
        let expression = BinaryExpr::new(
            Arc::new(Column::new("amount", 0)),
            Operator::LtEq,
            Arc::new(Column::new("paid", 1)),
        );
        JoinFilter::new(
            Arc::new(expression),
            vec![
                ColumnIndex {
                    index: 1,
                    side: JoinSide::Left,
                },
                ColumnIndex {
                    index: 1,
                    side: JoinSide::Right,
                },
            ],
            Arc::new(schema),
        )
    }

    fn hash_join(filter: Option<JoinFilter>) -> HashJoinExec {
        HashJoinExec::try_new(
            memory(orders()),
            memory(payments()),
            on(),
            filter,
            &JoinType::Inner,
            None,
            PartitionMode::CollectLeft,
            NullEquality::NullEqualsNothing,
            false,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn joins_as_datafusion_s_hash_join_does() {
        for filter in [None, Some(paid_enough())] {
            let join = hash_join(filter.clone());
            let stream = StreamJoinExec::new(
                memory(orders()),
                memory(payments()),
                on(),
                filter.clone(),
                None,
                join.schema(),
            );
            let expected = sorted_rows(Arc::new(join)).await;
            // Keys 1, 2 (twice by twice), 3: six pairs; the filter keeps three.
            let pairs = if filter.is_some() { 3 } else { 6 };
            assert_eq!(expected.lines().count(), pairs + 4, "{expected}");
            assert_eq!(sorted_rows(Arc::new(stream)).await, expected);
        }
    }

    #[tokio::test]
    async fn a_restored_join_writes_each_pair_once() {
        let schema = hash_join(None).schema();
        let sides = || [orders()[0].schema(), payments()[0].schema()];
        let new_state = || JoinState::try_new(schema.clone(), on(), None, None, sides()).unwrap();
        let feed = |state: &mut JoinState, from: usize, to: usize| {
            let mut out = Vec::new();
            for i in from..to {
                out.extend(state.join(0, orders()[i].clone()).unwrap().0);
                out.extend(state.join(1, payments()[i].clone()).unwrap().0);
            }
            out
        };
        let mut whole = new_state();
        let expected = feed(&mut whole, 0, 3);
        let mut before = new_state();
        let mut written = feed(&mut before, 0, 2);
        let snapshot = before.snapshot().unwrap();
        let mut after = new_state();
        after.restore(&snapshot).unwrap();
        written.extend(feed(&mut after, 2, 3));
        let text = |batches: &[RecordBatch]| {
            let table = pretty_format_batches(batches).unwrap().to_string();
            let mut lines: Vec<String> = table.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        assert_eq!(text(&written), text(&expected));
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)])),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        assert!(new_state().restore(&wrong).is_err());
    }

    fn symmetric(join_type: JoinType) -> SymmetricHashJoinExec {
        SymmetricHashJoinExec::try_new(
            quiet(orders()[1].clone()),
            quiet(payments()[2].clone()),
            on(),
            None,
            &join_type,
            NullEquality::NullEqualsNothing,
            None,
            None,
            StreamJoinPartitionMode::SinglePartition,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn gives_pairs_on_while_both_streams_are_quiet() {
        let join =
            StreamJoinExec::from_symmetric_hash_join(&symmetric(JoinType::Inner), [None, None])
                .unwrap();
        let mut joined = join.execute(0, Arc::new(TaskContext::default())).unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), joined.next())
            .await
            .expect("the pair, while both streams are quiet")
            .unwrap()
            .unwrap();
        // Key 3: order 30 and payment 31.
        assert_eq!(first.num_rows(), 1);
    }

    #[test]
    fn takes_inner_joins_only() {
        for join_type in [JoinType::Left, JoinType::Right, JoinType::Full] {
            assert!(
                StreamJoinExec::from_symmetric_hash_join(&symmetric(join_type), [None, None])
                    .is_none()
            );
        }
    }

    /// `(id, ts ms)` rows as a batch of `id INT, ts TIMESTAMP(ms)`.
    fn timed(rows: impl IntoIterator<Item = (i32, i64)>) -> RecordBatch {
        let (ids, times): (Vec<i32>, Vec<i64>) = rows.into_iter().unzip();
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(ids)),
                Arc::new(TimestampMillisecondArray::from(times)),
            ],
        )
        .unwrap()
    }

    /// `right.ts >= left.ts AND right.ts <= left.ts + upper`.
    fn within(upper: ScalarValue) -> JoinFilter {
        let time = DataType::Timestamp(TimeUnit::Millisecond, None);
        let schema = Schema::new(vec![
            Field::new("ts", time.clone(), true),
            Field::new("ts", time, true),
        ]);
        let (left, right) = (
            Arc::new(Column::new("ts", 0)) as PhysicalExprRef,
            Arc::new(Column::new("ts", 1)) as PhysicalExprRef,
        );
        let latest = BinaryExpr::new(left.clone(), Operator::Plus, Arc::new(Literal::new(upper)));
        let expression = BinaryExpr::new(
            Arc::new(BinaryExpr::new(right.clone(), Operator::GtEq, left)),
            Operator::And,
            Arc::new(BinaryExpr::new(right, Operator::LtEq, Arc::new(latest))),
        );
        let column = |side| ColumnIndex { index: 1, side };
        JoinFilter::new(
            Arc::new(expression),
            vec![column(JoinSide::Left), column(JoinSide::Right)],
            Arc::new(schema),
        )
    }

    fn event_time(slack_ms: u64) -> SideTime {
        SideTime {
            column: "ts".into(),
            max_out_of_orderness: std::time::Duration::from_millis(slack_ms),
        }
    }

    #[test]
    fn reads_time_bounds_from_the_condition() {
        let schema = timed([]).schema();
        let hour = ScalarValue::new_interval_mdn(0, 0, 3_600_000_000_000);
        let time = event_time(5);
        let bounds = TimeBounds::of(&within(hour), [&schema, &schema], [&time, &time]).unwrap();
        assert_eq!((bounds.lower, bounds.upper), (Some(0), Some(3_600_000)));
        assert_eq!(bounds.slack, [5, 5]);
        // Months have no fixed length: no upper bound from them.
        let month = ScalarValue::new_interval_mdn(1, 0, 0);
        let bounds = TimeBounds::of(&within(month), [&schema, &schema], [&time, &time]).unwrap();
        assert_eq!((bounds.lower, bounds.upper), (Some(0), None));
        // Only a timestamp column declared as a side's event time counts.
        let id = SideTime {
            column: "id".into(),
            ..time.clone()
        };
        let day = ScalarValue::new_interval_mdn(0, 1, 0);
        assert!(TimeBounds::of(&within(day), [&schema, &schema], [&id, &time]).is_none());
    }

    #[test]
    fn lets_rows_go_once_they_cannot_match_and_drops_late_ones() {
        let schema = timed([]).schema();
        let filter = within(ScalarValue::DurationMillisecond(Some(2000)));
        let time = event_time(0);
        let bounds = TimeBounds::of(&filter, [&schema, &schema], [&time, &time]);
        let join_schema = Arc::new(Schema::new(
            [schema.fields().to_vec(), schema.fields().to_vec()].concat(),
        ));
        let new_state = || {
            let sides = [schema.clone(), schema.clone()];
            JoinState::try_new(
                join_schema.clone(),
                on(),
                Some(filter.clone()),
                bounds,
                sides,
            )
            .unwrap()
        };
        let (mut state, mut pairs) = (new_state(), 0);
        // Order i at i s, paid at i s + 500 ms; one batch of ten from each side in turn.
        for k in 0..10 {
            let ids = k * 10..k * 10 + 10;
            let orders = timed(ids.clone().map(|i| (i, i64::from(i) * 1000)));
            let payments = timed(ids.map(|i| (i, i64::from(i) * 1000 + 500)));
            for (side, batch) in [(0, orders), (1, payments)] {
                pairs += state
                    .join(side, batch)
                    .unwrap()
                    .0
                    .map_or(0, |b| b.num_rows());
            }
        }
        assert_eq!(pairs, 100);
        // The payments' watermark (99.5 s) leaves only orders from 97.5 s on within reach.
        assert_eq!(
            state.sides[0].kept().count(),
            1,
            "{:?}",
            state.sides[0].kept().count()
        );
        let snapshot = state.snapshot().unwrap();
        let mut restored = new_state();
        restored.restore(&snapshot).unwrap();
        for state in [&mut state, &mut restored] {
            // A payment from before the watermark is late: dropped, not joined.
            let late = timed([(99, 98_000), (99, 99_600)]);
            let (joined, late) = state.join(1, late).unwrap();
            assert_eq!(joined.unwrap().num_rows(), 1);
            assert_eq!(late, 1);
        }
    }
}
