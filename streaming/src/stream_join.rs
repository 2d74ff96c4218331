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
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{filter_record_batch, interleave, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::row::{Row, RowConverter, Rows, SortField};
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
use foldhash::fast::RandomState;
use futures::{FutureExt, StreamExt};

use crate::checkpoint::{CheckpointBarrier, OperatorBarrier, barrier_changed};
use crate::error::StreamingError;
use crate::state_memory::StateMemory;

/// The plan node: `left` joined with `right` where every pair of `on` is equal (and `filter`
/// holds); its rows are the left side's columns, then the right side's.
#[derive(Debug)]
pub struct StreamJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl StreamJoinExec {
    /// The stream join doing what `join` does, when it can: an inner join of two unbounded
    /// inputs of one partition each, on equal keys where null matches nothing.
    pub fn from_symmetric_hash_join(join: &SymmetricHashJoinExec) -> Option<Self> {
        let single = |side: &Arc<dyn ExecutionPlan>| {
            side.properties().boundedness.is_unbounded()
                && side.properties().output_partitioning().partition_count() == 1
        };
        let usable = *join.join_type() == JoinType::Inner
            && join.null_equality() == NullEquality::NullEqualsNothing
            && single(join.left())
            && single(join.right());
        usable.then(|| {
            Self::new(
                join.left().clone(),
                join.right().clone(),
                join.on().to_vec(),
                join.filter().cloned(),
                join.schema(),
            )
        })
    }

    fn new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
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
            [self.left.schema(), self.right.schema()],
        )?;
        let barrier = CheckpointBarrier::register_task_operator(&context, |s| state.restore(s))?;
        let run = JoinRun {
            inputs: [Some(left), Some(right)],
            state,
            ready: None,
            memory: StateMemory::new("StreamJoinExec", partition, &context, &self.metrics),
            output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
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
/// The index allocates nothing per row: a key's hash leads to the newest row with that hash,
/// and each row to the one before it with the same hash.
#[derive(Debug)]
struct Kept {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// Each kept batch's keys in row format, to tell apart keys whose hashes are equal.
    keys: Vec<Rows>,
    /// Key hash to the newest indexed row with it (an index into `rows`).
    newest: HashMap<u64, u32, RandomState>,
    rows: Vec<IndexedRow>,
    bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct IndexedRow {
    batch: u32,
    row: u32,
    /// The row indexed before this one with the same hash, or `NONE`.
    previous: u32,
}

const NONE: u32 = u32::MAX;

impl Kept {
    fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            batches: Vec::new(),
            keys: Vec::new(),
            newest: HashMap::default(),
            rows: Vec::new(),
            bytes: 0,
        }
    }

    /// The (batch, row) of every kept row whose key is `key` (hashed to `hash`).
    fn matches(&self, hash: u64, key: Row<'_>, found: &mut Vec<(usize, usize)>) -> usize {
        let before = found.len();
        let mut at = self.newest.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            let kept = self.rows[at as usize];
            if self.keys[kept.batch as usize].row(kept.row as usize) == key {
                found.push((kept.batch as usize, kept.row as usize));
            }
            at = kept.previous;
        }
        found.len() - before
    }

    /// Indexes row `row` of the batch about to be kept.
    fn index(&mut self, hash: u64, row: usize) {
        let at = self.rows.len() as u32;
        let previous = self.newest.insert(hash, at).unwrap_or(NONE);
        self.rows.push(IndexedRow {
            batch: self.batches.len() as u32,
            row: row as u32,
            previous,
        });
    }

    fn keep(&mut self, batch: RecordBatch, keys: Rows) {
        self.bytes += batch.get_array_memory_size()
            + keys.size()
            + batch.num_rows() * (size_of::<IndexedRow>() + size_of::<(u64, u32)>());
        self.batches.push(batch);
        self.keys.push(keys);
    }
}

/// Both sides' rows and how to join them: everything a snapshot holds, and no more.
struct JoinState {
    schema: SchemaRef,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    /// Both sides' keys in one row format.
    keys: RowConverter,
    hasher: RandomState,
    sides: [Kept; 2],
}

impl JoinState {
    fn try_new(
        schema: SchemaRef,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        side_schemas: [SchemaRef; 2],
    ) -> Result<Self> {
        let key_types = on
            .iter()
            .map(|(left, _)| left.data_type(&side_schemas[0]))
            .collect::<Result<Vec<_>>>()?;
        let keys = RowConverter::new(key_types.into_iter().map(SortField::new).collect())?;
        let sides = side_schemas.map(Kept::new);
        Ok(Self {
            schema,
            on,
            filter,
            keys,
            hasher: RandomState::default(),
            sides,
        })
    }

    fn size(&self) -> usize {
        self.sides.iter().map(|side| side.bytes).sum()
    }

    /// Joins a batch of side `side` (0 left, 1 right) with the other side's rows so far,
    /// then keeps it; the joined rows, if any. With `probe` false it is only kept (a
    /// restored batch, whose pairs were written before the checkpoint).
    fn add(&mut self, side: usize, batch: RecordBatch, probe: bool) -> Result<Option<RecordBatch>> {
        // DataFusion's planner gives both sides' keys one type (casting where they differ).
        let keys = self
            .on
            .iter()
            .map(|(left, right)| {
                let expr = if side == 0 { left } else { right };
                expr.evaluate(&batch)?.into_array(batch.num_rows())
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let encoded = self.keys.convert_columns(&keys)?;
        let [left, right] = &mut self.sides;
        let (this, other) = if side == 0 {
            (left, right)
        } else {
            (right, left)
        };
        let mut rows: Vec<u32> = Vec::new();
        let mut found: Vec<(usize, usize)> = Vec::new();
        let nulls = NullBuffer::union_many(
            keys.iter()
                .map(|k| k.logical_nulls())
                .collect::<Vec<_>>()
                .iter()
                .map(Option::as_ref),
        );
        for (row, key) in encoded.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                continue;
            }
            let hash = self.hasher.hash_one(key.as_ref());
            if probe {
                let matched = other.matches(hash, key, &mut found);
                rows.extend(std::iter::repeat_n(row as u32, matched));
            }
            this.index(hash, row);
        }
        this.keep(batch.clone(), encoded);
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
        let other_columns = (0..other.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    other.batches.iter().map(|b| b.column(c).as_ref()).collect();
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
    /// side's rows as an Arrow IPC stream (the sides have different schemas).
    fn snapshot(&self) -> Result<RecordBatch> {
        let mut cells = Vec::with_capacity(2);
        for side in &self.sides {
            let mut bytes = Vec::new();
            let mut writer = StreamWriter::try_new(&mut bytes, &side.schema)?;
            for batch in &side.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            drop(writer);
            cells.push(Arc::new(BinaryArray::from_vec(vec![&bytes])) as ArrayRef);
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
                self.add(side, batch?, false)?;
            }
        }
        Ok(())
    }
}

fn snapshot_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("left", DataType::Binary, false),
        Field::new("right", DataType::Binary, false),
    ]))
}

/// A running join: its two inputs (`None` once ended), its state, its side of the barrier.
struct JoinRun {
    inputs: [Option<SendableRecordBatchStream>; 2],
    state: JoinState,
    ready: Option<RecordBatch>,
    memory: StateMemory,
    output_rows: Count,
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
                self.ready = self.state.add(side, batch?, true)?;
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
    use arrow::array::{Int32Array, Int64Array};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column};
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
        let new_state = || JoinState::try_new(schema.clone(), on(), None, sides()).unwrap();
        let feed = |state: &mut JoinState, from: usize, to: usize| {
            let mut out = Vec::new();
            for i in from..to {
                out.extend(state.add(0, orders()[i].clone(), true).unwrap());
                out.extend(state.add(1, payments()[i].clone(), true).unwrap());
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
        let join = StreamJoinExec::from_symmetric_hash_join(&symmetric(JoinType::Inner)).unwrap();
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
            assert!(StreamJoinExec::from_symmetric_hash_join(&symmetric(join_type)).is_none());
        }
    }
}
