//! `StreamJoinExec`: two unbounded streams joined on equal keys, batch by batch, with its
//! state in the job's checkpoints.
//!
//! It takes the place of DataFusion's `SymmetricHashJoinExec` for inner equi-joins of two
//! streams (two Kafka topics, two watched folders); its planner rule, [`StreamJoinRule`],
//! puts it there. Like it, it keeps every row either side
//! has given, indexed by the join keys: a batch from one side is joined with the rows the
//! other side gave before it, then kept for the other side's later rows, so each matching
//! pair is written once, as soon as its second row arrives. Unlike it, it hands those rows to
//! the job's checkpoints and takes them back on restore, so a job joining two streams runs
//! exactly once. Nothing is dropped from its state: it grows with its input, within the
//! job's `'state.memory.limit'`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, ListArray, RecordBatch,
    UInt32Array, new_null_array,
};
use arrow::compute::{filter_record_batch, interleave, take};
use arrow::datatypes::Int64Type;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::row::Row;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinSide, JoinType, NullEquality};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, PhysicalExprRef};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::SymmetricHashJoinExec;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, InputDistributionRequirements,
    PlanProperties, SendableRecordBatchStream, apply_expression_roots,
};

use crate::changelog::{carry_op_column, with_op_column, with_ops};
use crate::driver::StreamNode;
use crate::error::StreamingError;
use crate::join_keys::{BatchKeys, JoinKeys, KeyIndex};
use crate::join_time_bounds::{
    SideClock, SideTime, TimeBounds, earliest_time, event_millis, latest_time,
};
use crate::key_groups::OperatorInstance;
use crate::key_groups::rows_of_instance;
use crate::operator::{OperatorState, StreamOperator, expired_before, expiry_tick};
use ferris_connectors::changelog::{DELETE, UPSERT};

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
    /// Without bounds: how long a row is kept (processing time, `'state.ttl'`); `None`:
    /// as long as the job.
    state_ttl: Option<Duration>,
    /// Inner, or an outer join: with time bounds it writes a row no match can come for;
    /// without, it writes a changelog (see [`StreamJoinExec::writes_changelog`]).
    join_type: JoinType,
    node: StreamNode,
}

impl StreamJoinExec {
    /// The stream join doing what `join` does, when it can: a join of two unbounded inputs
    /// of one partition each, on equal keys where null matches nothing. `times` are the
    /// sides' event times, where their sources declare them: when the join condition bounds
    /// one by the other, rows are let go once they can no longer match, and an outer join
    /// (`LEFT`, `RIGHT`, `FULL`) writes an outer side's row without a match then, its other
    /// side's columns null. Without time bounds rows are kept `state_ttl` (processing time)
    /// at most, and an outer join writes a changelog: an outer side's row without a match at
    /// once, taken back (`-D`) when its first match comes.
    pub fn from_symmetric_hash_join(
        join: &SymmetricHashJoinExec,
        times: [Option<&SideTime>; 2],
        state_ttl: Option<Duration>,
    ) -> Option<Self> {
        let single = |side: &Arc<dyn ExecutionPlan>| {
            side.properties().boundedness.is_unbounded()
                && side.properties().output_partitioning().partition_count() == 1
        };
        let bounds = match (join.filter(), times) {
            (Some(filter), [Some(left), Some(right)]) => TimeBounds::of(
                filter,
                [&join.left().schema(), &join.right().schema()],
                [left, right],
            ),
            _ => None,
        };
        let join_type = *join.join_type();
        // An outer side's rows without a match are written when they are let go: its rows
        // must be (a LEFT join's need an upper bound on the right's time, a RIGHT join's a
        // lower one).
        let outer_sides_go = bounds.is_some_and(|b| match join_type {
            JoinType::Left => b.upper.is_some(),
            JoinType::Right => b.lower.is_some(),
            JoinType::Full => b.upper.is_some() && b.lower.is_some(),
            _ => false,
        });
        let outer = matches!(join_type, JoinType::Left | JoinType::Right | JoinType::Full);
        let usable =
            (join_type == JoinType::Inner || outer_sides_go || (outer && bounds.is_none()))
                && join.null_equality() == NullEquality::NullEqualsNothing
                && single(join.left())
                && single(join.right());
        let schema = match outer && bounds.is_none() {
            true => with_op_column(&join.schema()),
            false => join.schema(),
        };
        usable.then(|| {
            Self::new(
                join.left().clone(),
                join.right().clone(),
                join.on().to_vec(),
                join.filter().cloned(),
                bounds,
                state_ttl.filter(|_| bounds.is_none()),
                join_type,
                schema,
            )
        })
    }

    /// How long a row is kept, for a join without time bounds that lets rows go.
    pub fn state_ttl(&self) -> Option<Duration> {
        self.state_ttl
    }

    /// Whether it writes a changelog: an outer join without time bounds, whose rows without
    /// a match are written at once (`+U`) and taken back (`-D`) when their first match comes,
    /// as Flink's regular outer joins do.
    pub fn writes_changelog(&self) -> bool {
        self.bounds.is_none() && self.join_type != JoinType::Inner
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        bounds: Option<TimeBounds>,
        state_ttl: Option<Duration>,
        join_type: JoinType,
        schema: SchemaRef,
    ) -> Self {
        let node = StreamNode::new(
            schema,
            left.properties().output_partitioning().partition_count(),
            left.properties().boundedness,
        );
        Self {
            left,
            right,
            on,
            filter,
            bounds,
            state_ttl,
            join_type,
            node,
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
        write!(f, "StreamJoinExec: ")?;
        if self.join_type != JoinType::Inner {
            write!(f, "join_type={}, ", self.join_type)?;
        }
        write!(f, "on=[{}]", on.join(", "))?;
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
        if let Some(ttl) = self.state_ttl {
            write!(f, ", state_ttl={ttl:?}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StreamJoinExec {
    fn name(&self) -> &str {
        JoinState::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.node.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    /// Rows of equal keys in the same instance on both sides.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let (left, right) = self.on.iter().cloned().unzip();
        InputDistributionRequirements::co_partitioned(vec![
            Distribution::KeyPartitioned(left),
            Distribution::KeyPartitioned(right),
        ])
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
            self.state_ttl,
            self.join_type,
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
        // A changelog's rows are the join's, then their change.
        let schema = self.schema();
        let rows = match self.writes_changelog() {
            true => Arc::new(schema.project(&(0..schema.fields().len() - 1).collect::<Vec<_>>())?),
            false => schema,
        };
        let state = JoinState::try_new(
            rows,
            self.on.clone(),
            self.filter.clone(),
            self.bounds,
            self.state_ttl,
            [self.left.schema(), self.right.schema()],
        )?
        .keeping_unmatched(self.join_type);
        self.node.run(state, vec![left, right], partition, &context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.node.metrics())
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
    /// The column of the rows' event time, when the join lets rows go by it.
    time_column: Option<usize>,
    /// On a side that writes its rows without a match: the earliest event time of a kept
    /// row neither joined nor written yet.
    earliest_unmatched: i64,
    bytes: usize,
}

#[derive(Debug)]
struct KeptBatch {
    rows: RecordBatch,
    keys: BatchKeys,
    /// Its latest event time (ms), when the join lets rows go by event time.
    max_time: i64,
    /// Per row, whether it has been joined, on a side whose rows without a match are
    /// written (an outer join's).
    matched: Option<Vec<bool>>,
    /// No row before this event time is waiting to be written without a match.
    unmatched_from: i64,
    bytes: usize,
}

impl KeptBatch {
    /// Its rows before `limit` (their event time in `column`) never joined, if its side
    /// writes them; marked as written.
    fn take_unmatched_before(
        &mut self,
        limit: i64,
        column: Option<usize>,
    ) -> Result<Option<RecordBatch>> {
        let (Some(matched), Some(column)) = (&mut self.matched, column) else {
            return Ok(None);
        };
        let times = event_millis(self.rows.column(column))?;
        let times = times.as_primitive::<Int64Type>();
        let due = BooleanArray::from_iter(
            (0..matched.len()).map(|row| Some(!matched[row] && times.value(row) < limit)),
        );
        let mut from = i64::MAX;
        for (row, matched) in matched.iter_mut().enumerate() {
            *matched |= due.value(row);
            if !*matched {
                from = from.min(times.value(row));
            }
        }
        self.unmatched_from = from;
        let rows = filter_record_batch(&self.rows, &due)?;
        Ok((rows.num_rows() > 0).then_some(rows))
    }

    /// Its rows never joined, if its side writes them.
    fn unmatched(&self) -> Result<Option<RecordBatch>> {
        let Some(matched) = &self.matched else {
            return Ok(None);
        };
        let unmatched = BooleanArray::from_iter(matched.iter().map(|m| Some(!m)));
        let rows = filter_record_batch(&self.rows, &unmatched)?;
        Ok((rows.num_rows() > 0).then_some(rows))
    }
}

impl Kept {
    /// The columns of its rows at `places` (kept batch, row), in that order.
    fn columns_at(&self, places: &[(usize, usize)]) -> Result<Vec<ArrayRef>> {
        // The batches named, and the places as positions in that list.
        let mut batches: Vec<&RecordBatch> = Vec::new();
        let mut slots: HashMap<usize, usize> = HashMap::new();
        let slotted: Vec<(usize, usize)> = places
            .iter()
            .map(|&(batch, row)| {
                let slot = *slots.entry(batch).or_insert_with(|| {
                    let kept = self.batches[batch].as_ref();
                    batches.push(&kept.expect("a place in a kept batch").rows);
                    batches.len() - 1
                });
                (slot, row)
            })
            .collect();
        (0..self.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                Ok(interleave(&arrays, &slotted)?)
            })
            .collect()
    }

    fn new(schema: SchemaRef, time_column: Option<usize>) -> Self {
        Self {
            schema,
            batches: Vec::new(),
            index: KeyIndex::default(),
            dropped_rows: 0,
            earliest: i64::MAX,
            time_column,
            earliest_unmatched: i64::MAX,
            bytes: 0,
        }
    }

    /// Adds to `found` the (batch, row) of every kept row whose key is `key`; how many.
    fn matches(&self, hash: u64, key: Row<'_>, found: &mut Vec<(usize, usize)>) -> usize {
        let keys_of = |batch: usize| self.batches[batch].as_ref().map(|b| &b.keys.rows);
        self.index.matches(hash, key, keys_of, found)
    }

    /// Keeps a batch, indexing its rows by `keys`, hashed to `hashes`; `matched` says which
    /// rows were joined, on a side that writes the others.
    fn keep(
        &mut self,
        rows: RecordBatch,
        keys: BatchKeys,
        hashes: &[Option<u64>],
        max_time: i64,
        matched: Option<Vec<bool>>,
    ) {
        for (row, hash) in hashes.iter().enumerate() {
            if let Some(hash) = *hash {
                self.index.insert(hash, self.batches.len(), row);
            }
        }
        let bytes =
            rows.get_array_memory_size() + keys.size() + rows.num_rows() * KeyIndex::ROW_SIZE;
        self.bytes += bytes;
        self.earliest = self.earliest.min(max_time);
        // Its rows may go before the whole batch does, from its earliest one on.
        let unmatched_from = match (&matched, self.time_column) {
            (Some(_), Some(column)) => earliest_time(rows.column(column)),
            _ => i64::MAX,
        };
        self.earliest_unmatched = self.earliest_unmatched.min(unmatched_from);
        self.batches.push(Some(KeptBatch {
            rows,
            keys,
            max_time,
            matched,
            unmatched_from,
            bytes,
        }));
    }

    /// Lets go of every batch whose rows are all older than `limit` (ms); returns the rows
    /// older than `limit` never joined, on a side that writes them (of a batch kept on, they
    /// are marked as written).
    fn expire(&mut self, limit: i64, join_keys: &JoinKeys) -> Result<Vec<RecordBatch>> {
        let mut unmatched = Vec::new();
        if limit <= self.earliest.min(self.earliest_unmatched) {
            return Ok(unmatched);
        }
        let (mut live_rows, mut earliest) = (0, i64::MAX);
        let mut earliest_unmatched = i64::MAX;
        for slot in &mut self.batches {
            match slot {
                Some(batch) if batch.max_time < limit => {
                    unmatched.extend(batch.unmatched()?);
                    self.bytes -= batch.bytes;
                    self.dropped_rows += batch.rows.num_rows();
                    *slot = None;
                }
                Some(batch) => {
                    if batch.unmatched_from < limit {
                        unmatched.extend(batch.take_unmatched_before(limit, self.time_column)?);
                    }
                    earliest_unmatched = earliest_unmatched.min(batch.unmatched_from);
                    live_rows += batch.rows.num_rows();
                    earliest = earliest.min(batch.max_time);
                }
                None => {}
            }
        }
        self.earliest = earliest;
        self.earliest_unmatched = earliest_unmatched;
        if self.dropped_rows > live_rows {
            // Build the index again from the batches still kept.
            let kept: Vec<KeptBatch> = self.batches.drain(..).flatten().collect();
            self.index.clear();
            self.dropped_rows = 0;
            self.bytes = 0;
            self.earliest = i64::MAX;
            for batch in kept {
                let hashes = join_keys.hashes(&batch.keys);
                self.keep(
                    batch.rows,
                    batch.keys,
                    &hashes,
                    batch.max_time,
                    batch.matched,
                );
            }
            self.earliest_unmatched = earliest_unmatched;
        }
        Ok(unmatched)
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
    /// Rows dropped as late so far (not kept in snapshots).
    late_records: usize,
    /// Without time bounds, how long a row is kept: a kept batch's time is then when it
    /// came (processing time, epoch ms), and snapshots keep it.
    state_ttl: Option<Duration>,
    /// Per side, whether its rows without a match are written (an outer join's side), once
    /// none can come: when they are let go, or when the inputs end; in a changelog, at once.
    outer: [bool; 2],
    /// It writes a changelog (an outer join without time bounds): every row with its change.
    changelog: bool,
}

/// What [`JoinState::add`] made of a batch: its pairs, and in a changelog the other (outer)
/// side's rows it gave their first match (kept batch, row).
type Added = (Option<RecordBatch>, Vec<(usize, usize)>);

/// The column a snapshot's rows of an outer side carry after theirs: whether each was joined.
const MATCHED_COLUMN: &str = "_matched";

impl JoinState {
    /// The state of a join of type `join_type`: which sides write their rows without a match.
    fn keeping_unmatched(mut self, join_type: JoinType) -> Self {
        self.outer = match join_type {
            JoinType::Left => [true, false],
            JoinType::Right => [false, true],
            JoinType::Full => [true, true],
            _ => [false, false],
        };
        self.changelog = self.time.is_none() && self.outer.contains(&true);
        self
    }

    /// The columns a snapshot keeps of side `side`'s rows: its own, and whether each was
    /// joined on a side that writes the others.
    fn stored_schema(&self, side: usize) -> SchemaRef {
        let schema = &self.sides[side].schema;
        if !self.outer[side] {
            return schema.clone();
        }
        let mut fields = schema.fields().to_vec();
        fields.push(Arc::new(Field::new(
            MATCHED_COLUMN,
            DataType::Boolean,
            false,
        )));
        Arc::new(Schema::new(fields))
    }

    /// Rows of side `side` without a match, with the other side's columns null.
    fn padded(&self, side: usize, rows: RecordBatch) -> Result<RecordBatch> {
        let width = self.sides[0].schema.fields().len();
        let fields = self.schema.fields();
        let nulls = |range: std::ops::Range<usize>| -> Vec<ArrayRef> {
            range
                .map(|i| new_null_array(fields[i].data_type(), rows.num_rows()))
                .collect()
        };
        let columns = match side {
            0 => [rows.columns().to_vec(), nulls(width..fields.len())].concat(),
            _ => [nulls(0..width), rows.columns().to_vec()].concat(),
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
    fn try_new(
        schema: SchemaRef,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        bounds: Option<TimeBounds>,
        state_ttl: Option<Duration>,
        side_schemas: [SchemaRef; 2],
    ) -> Result<Self> {
        Ok(Self {
            schema,
            keys: JoinKeys::try_new(on, &side_schemas[0])?,
            filter,
            sides: {
                let [left, right] = side_schemas;
                let column = |side: usize| bounds.map(|b| b.columns[side]);
                [Kept::new(left, column(0)), Kept::new(right, column(1))]
            },
            time: bounds.map(|bounds| (bounds, bounds.slack.map(SideClock::new))),
            late_records: 0,
            state_ttl,
            outer: [false, false],
            changelog: false,
        })
    }

    /// The snapshot's shape: with each side's batches' arrival times where rows expire.
    fn snapshot_schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new("left", DataType::Binary, false),
            Field::new("right", DataType::Binary, false),
            Field::new("left_max_time", DataType::Int64, false),
            Field::new("right_max_time", DataType::Int64, false),
        ];
        if self.state_ttl.is_some() {
            for side in ["left", "right"] {
                let times = Field::new("item", DataType::Int64, true);
                let list = DataType::List(Arc::new(times));
                fields.push(Field::new(format!("{side}_arrived"), list, false));
            }
        }
        Arc::new(Schema::new(fields))
    }

    /// Keeps the rows of a snapshot that `own` lets through (given the side and a batch of
    /// its rows), without joining them; returns each side's latest event time in it.
    fn restore_rows(
        &mut self,
        snapshot: &RecordBatch,
        own: impl Fn(usize, RecordBatch) -> Result<RecordBatch>,
    ) -> Result<[i64; 2]> {
        let wrong = |what: &str| StreamingError::Snapshot(format!("a stream join's {what}"));
        if snapshot.schema().fields() != self.snapshot_schema().fields() || snapshot.num_rows() != 1
        {
            return Err(wrong("snapshot has another shape").into());
        }
        let mut clocks = [i64::MIN; 2];
        for (side, clock) in clocks.iter_mut().enumerate() {
            let cell = snapshot
                .column(side)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| wrong("snapshot has another shape"))?;
            let reader = StreamReader::try_new(cell.value(0), None)?;
            if reader.schema() != self.stored_schema(side) {
                return Err(wrong("rows have other columns than its input").into());
            }
            // Where rows expire, when each batch came.
            let arrived = match self.state_ttl {
                Some(_) => snapshot
                    .column(4 + side)
                    .as_list::<i32>()
                    .value(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec(),
                None => vec![],
            };
            let mut batches = 0;
            for batch in reader {
                let mut batch = own(side, batch?)?;
                let matched = match self.outer[side] {
                    true => {
                        let flags = batch.remove_column(batch.num_columns() - 1);
                        Some(flags.as_boolean().iter().map(|m| m == Some(true)).collect())
                    }
                    false => None,
                };
                let max_time = match self.time {
                    Some((bounds, _)) => latest_time(batch.column(bounds.columns[side]))?,
                    None => arrived.get(batches).copied().unwrap_or(i64::MIN),
                };
                self.add(side, batch, max_time, false)?;
                if let Some(kept) = self.sides[side].batches.last_mut().and_then(Option::as_mut) {
                    kept.matched = matched;
                }
                batches += 1;
            }
            if self.state_ttl.is_some() && arrived.len() != batches {
                return Err(wrong("arrival times do not fit its rows").into());
            }
            *clock = snapshot
                .column(2 + side)
                .as_primitive::<Int64Type>()
                .value(0);
        }
        Ok(clocks)
    }

    /// Joins a batch of side `side` (0 left, 1 right) with the other side's rows so far,
    /// then keeps it: the joined rows, if any, and how many rows were dropped as late. With
    /// time bounds, its rows without an event time or late are dropped first, and the other
    /// side's rows that its watermark puts out of reach are let go after.
    fn join(&mut self, side: usize, batch: RecordBatch) -> Result<(Vec<RecordBatch>, usize)> {
        let Some((bounds, clocks)) = &mut self.time else {
            // Without bounds a batch's time is when it came, for its rows to expire.
            let came = match self.state_ttl {
                Some(_) => chrono::Utc::now().timestamp_millis(),
                None => i64::MIN,
            };
            if self.changelog {
                return Ok((self.add_changes(side, batch, came)?, 0));
            }
            let (joined, _) = self.add(side, batch, came, true)?;
            return Ok((joined.into_iter().collect(), 0));
        };
        let bounds = *bounds;
        let column = batch.column(bounds.columns[side]);
        let (keep, max_time) = clocks[side].advance(column, bounds.watches(side))?;
        let late = batch.num_rows() - keep.true_count();
        let batch = if late == 0 {
            batch
        } else {
            filter_record_batch(&batch, &keep)?
        };
        let watermarks = [clocks[0].watermark(), clocks[1].watermark()];
        let mut out: Vec<RecordBatch> = self
            .add(side, batch, max_time, true)?
            .0
            .into_iter()
            .collect();
        // The other side's rows this watermark puts out of reach; and this side's rows the
        // other's watermark had already (they were joined with what is kept, and no more
        // can come for them: their side may be the one that goes on, the other quiet).
        for kept in [1 - side, side] {
            let Some(limit) = bounds.expired_before(kept, watermarks[1 - kept]) else {
                continue;
            };
            for rows in self.sides[kept].expire(limit, &self.keys)? {
                out.push(self.padded(kept, rows)?);
            }
        }
        Ok((out, late))
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
    ) -> Result<Added> {
        let keys = self.keys.of(side, &batch)?;
        let left_width = self.sides[0].schema.fields().len();
        let outer = self.outer;
        let [left, right] = &mut self.sides;
        let (this, other) = if side == 0 {
            (left, right)
        } else {
            (right, left)
        };
        let hashes = self.keys.hashes(&keys);
        let (changelog, mut first_matches) = (self.changelog, Vec::new());
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
        let kept_at = this.batches.len();
        let matched = outer[side].then(|| vec![false; batch.num_rows()]);
        this.keep(batch.clone(), keys, &hashes, max_time, matched);
        if rows.is_empty() {
            return Ok((None, first_matches));
        }
        let rows = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let this_columns = batch
            .columns()
            .iter()
            .map(|column| Ok(take(column, &rows, None)?))
            .collect::<Result<Vec<_>>>()?;
        let other_columns = other.columns_at(&found)?;
        // Output rows are always left columns, then right ones.
        if side == 0 {
            columns.extend(this_columns);
            columns.extend(other_columns);
        } else {
            columns.extend(other_columns);
            columns.extend(this_columns);
        }
        let joined = RecordBatch::try_new(self.schema.clone(), columns)?;
        let holds = match &self.filter {
            Some(filter) => Some(holds(filter, &joined, left_width)?),
            None => None,
        };
        // The rows of an outer side that found a match are never written alone.
        if outer[side] || outer[1 - side] {
            for (pair, (&row, &(batch, other_row))) in rows.values().iter().zip(&found).enumerate()
            {
                // A NULL condition is no match (as the filter of the pairs says).
                if holds
                    .as_ref()
                    .is_some_and(|h| !(h.is_valid(pair) && h.value(pair)))
                {
                    continue;
                }
                // Whether the row had no match before.
                let mark = |kept: Option<&mut KeptBatch>, row: usize| {
                    kept.and_then(|k| k.matched.as_mut())
                        .is_some_and(|matched| !std::mem::replace(&mut matched[row], true))
                };
                mark(this.batches[kept_at].as_mut(), row as usize);
                if mark(other.batches[batch].as_mut(), other_row) && changelog {
                    first_matches.push((batch, other_row));
                }
            }
        }
        let joined = match &holds {
            Some(holds) => filter_record_batch(&joined, holds)?,
            None => joined,
        };
        Ok(((joined.num_rows() > 0).then_some(joined), first_matches))
    }
}

impl JoinState {
    /// A changelog's [`JoinState::add`]: the rows of the other (outer) side that this batch
    /// gives their first match, taken back (`-D`, null-padded as they were written); the
    /// pairs (`+U`); and this batch's rows of an outer side that found no match (`+U`,
    /// null-padded).
    fn add_changes(
        &mut self,
        side: usize,
        batch: RecordBatch,
        came: i64,
    ) -> Result<Vec<RecordBatch>> {
        let other = 1 - side;
        let (joined, first_matches) = self.add(side, batch, came, true)?;
        let mut out = Vec::new();
        if !first_matches.is_empty() {
            let columns = self.sides[other].columns_at(&first_matches)?;
            let rows = RecordBatch::try_new(self.sides[other].schema.clone(), columns)?;
            let padded = self.padded(other, rows)?;
            let rows = padded.num_rows();
            out.push(with_ops(padded, vec![DELETE; rows])?);
        }
        if let Some(joined) = joined {
            let rows = joined.num_rows();
            out.push(with_ops(joined, vec![UPSERT; rows])?);
        }
        // This batch's rows without a match, on an outer side.
        let kept = self.sides[side].batches.last().and_then(Option::as_ref);
        if self.outer[side]
            && let Some(kept) = kept
            && let Some(rows) = kept.unmatched()?
        {
            let padded = self.padded(side, rows)?;
            let rows = padded.num_rows();
            out.push(with_ops(padded, vec![UPSERT; rows])?);
        }
        Ok(out)
    }
}

/// Per joined row, whether the join's extra condition holds.
fn holds(filter: &JoinFilter, joined: &RecordBatch, left_width: usize) -> Result<BooleanArray> {
    {
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
        let holds: &BooleanArray = holds.as_any().downcast_ref().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(
                "a join condition that is not a boolean".into(),
            )
        })?;
        Ok(holds.clone())
    }
}

impl StreamOperator for JoinState {
    const NAME: &'static str = "StreamJoinExec";

    fn process_batch(&mut self, input: usize, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let (joined, late) = self.join(input, batch)?;
        self.late_records += late;
        Ok(joined)
    }

    /// The inputs ended: no match can come for an outer side's rows still kept. They are
    /// marked as written, for the snapshot taken at the end.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        // A changelog wrote them when they came.
        if self.changelog {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        for side in 0..2 {
            let mut unmatched = Vec::new();
            for batch in self.sides[side].batches.iter_mut().flatten() {
                unmatched.extend(batch.unmatched()?);
                if let Some(matched) = &mut batch.matched {
                    matched.fill(true);
                }
            }
            for rows in unmatched {
                out.push(self.padded(side, rows)?);
            }
        }
        Ok(out)
    }

    fn tick_period(&self) -> Option<Duration> {
        self.state_ttl.map(expiry_tick)
    }

    /// Rows kept longer than their time to live go: nothing joins them any more.
    fn on_tick(&mut self, now: i64) -> Result<Vec<RecordBatch>> {
        if let Some(ttl) = self.state_ttl {
            let limit = expired_before(now, ttl);
            for side in &mut self.sides {
                // Rows that go by their time to live are not written: an inner join's never
                // are, and a changelog wrote an outer side's unmatched ones when they came.
                side.expire(limit, &self.keys)?;
            }
        }
        Ok(vec![])
    }

    fn state(&mut self) -> Option<&mut dyn OperatorState> {
        Some(self)
    }
}

impl OperatorState for JoinState {
    /// Both sides' rows as one batch: a row whose `left` and `right` cells each hold a
    /// side's rows as an Arrow IPC stream (the sides have different schemas), and each
    /// side's latest event time.
    fn snapshot(&mut self) -> Result<RecordBatch> {
        let mut cells = Vec::with_capacity(4);
        for (index, side) in self.sides.iter().enumerate() {
            let stored = self.stored_schema(index);
            let mut bytes = Vec::new();
            let mut writer = StreamWriter::try_new(&mut bytes, &stored)?;
            for batch in side.kept() {
                match &batch.matched {
                    Some(matched) => {
                        let mut columns = batch.rows.columns().to_vec();
                        columns.push(Arc::new(BooleanArray::from(matched.clone())));
                        writer.write(&RecordBatch::try_new(stored.clone(), columns)?)?;
                    }
                    None => writer.write(&batch.rows)?,
                }
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
        if self.state_ttl.is_some() {
            for side in &self.sides {
                let arrived = side.kept().map(|batch| Some(batch.max_time));
                let list = ListArray::from_iter_primitive::<Int64Type, _, _>([Some(arrived)]);
                cells.push(Arc::new(list) as ArrayRef);
            }
        }
        Ok(RecordBatch::try_new(self.snapshot_schema(), cells)?)
    }

    /// Takes back the rows of a snapshot; the state must be empty.
    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        let clocks = self.restore_rows(snapshot, |_, rows| Ok(rows))?;
        if let Some((_, own)) = &mut self.time {
            for side in 0..2 {
                own[side].max_time = clocks[side];
            }
        }
        Ok(())
    }

    /// The rows of its key groups from each snapshot. Each side's clock starts from the
    /// least of the old instances' (none if one had none), so that no row is taken for late that one
    /// of them would have joined.
    fn restore_rescaled(
        &mut self,
        snapshots: &[RecordBatch],
        instance: OperatorInstance,
    ) -> Result<()> {
        let on = self.keys.on().to_vec();
        // An old instance without a clock (it saw no row) makes the least one none.
        let mut least = [None::<i64>; 2];
        for snapshot in snapshots {
            let clocks = self.restore_rows(snapshot, |side, rows| {
                let keys = on
                    .iter()
                    .map(|pair| {
                        let key = if side == 0 { &pair.0 } else { &pair.1 };
                        key.evaluate(&rows)?.into_array(rows.num_rows())
                    })
                    .collect::<Result<Vec<_>>>()?;
                rows_of_instance(&rows, &keys, instance)
            })?;
            for side in 0..2 {
                least[side] = Some(least[side].map_or(clocks[side], |l| l.min(clocks[side])));
            }
        }
        if let Some((_, own)) = &mut self.time {
            for side in 0..2 {
                own[side].max_time = least[side].unwrap_or(i64::MIN);
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.sides.iter().map(|side| side.bytes).sum()
    }

    fn late_records(&self) -> usize {
        self.late_records
    }
}

// The planner rule that puts the operator in place of DataFusion's symmetric hash join of two
// unbounded streams (an outer join whose bounds cannot let its outer rows go stays
// DataFusion's); its sides' event
// times, of the sources that declare one, bound it in time.

/// Turns symmetric hash joins of two streams into stream joins.
#[derive(Debug)]
pub struct StreamJoinRule {
    /// The event times of the sources that declare one, by the schema they are read with.
    pub times: Vec<(SchemaRef, SideTime)>,
    /// How long a join without time bounds keeps a row (`'state.ttl'`).
    pub state_ttl: Option<Duration>,
}

impl StreamJoinRule {
    /// The event time of a join side that reads one source which declares it, when every
    /// node on the way passes that column on as it is.
    fn side_time(&self, node: &Arc<dyn ExecutionPlan>) -> Option<&SideTime> {
        if let Some(scan) = node.downcast_ref::<StreamingTableExec>() {
            let (_, time) = self
                .times
                .iter()
                .find(|(schema, _)| Arc::ptr_eq(scan.partition_schema(), schema))?;
            return scan.schema().column_with_name(&time.column).map(|_| time);
        }
        let [child] = node.children()[..] else {
            return None;
        };
        let time = self.side_time(child)?;
        match node.downcast_ref::<ProjectionExec>() {
            Some(projection) => projection
                .expr()
                .iter()
                .any(|e| {
                    e.alias == time.column
                        && e.expr
                            .downcast_ref::<Column>()
                            .is_some_and(|c| c.name() == time.column)
                })
                .then_some(time),
            // Nodes that pass their input's columns on unchanged (fewer rows, maybe).
            None => passes_rows_on(node).then_some(time),
        }
    }
}

/// Whether `node` is a stream join that writes a changelog.
fn writes_changelog(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<StreamJoinExec>()
        .is_some_and(StreamJoinExec::writes_changelog)
}

/// Whether `node` maps its input's rows one by one (or passes them on).
fn passes_rows_on(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<ProjectionExec>().is_some()
        || node.downcast_ref::<FilterExec>().is_some()
        || node.downcast_ref::<CooperativeExec>().is_some()
        || node.downcast_ref::<RepartitionExec>().is_some()
}

/// Whether a changelog join's rows reach `node` through nodes that pass rows on.
fn changelog_below(node: &Arc<dyn ExecutionPlan>) -> bool {
    writes_changelog(node)
        || (passes_rows_on(node) && node.children().into_iter().any(changelog_below))
}

impl PhysicalOptimizerRule for StreamJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = plan
            .transform_up(|node| {
                let join = node
                    .downcast_ref::<SymmetricHashJoinExec>()
                    .and_then(|join| {
                        let sides = [self.side_time(join.left()), self.side_time(join.right())];
                        StreamJoinExec::from_symmetric_hash_join(join, sides, self.state_ttl)
                    });
                Ok(match join {
                    Some(join) => Transformed::yes(Arc::new(join) as Arc<dyn ExecutionPlan>),
                    None => Transformed::no(node),
                })
            })?
            .data;
        if !plan.exists(|node| Ok(writes_changelog(node)))? {
            return Ok(plan);
        }
        // Only what maps rows one by one may follow a changelog: anything that holds rows
        // would have to take them back.
        plan.apply(|node| {
            if !passes_rows_on(node) && node.children().into_iter().any(changelog_below)
            {
                return Err(DataFusionError::Plan(format!(
                    "{} over an outer join of two streams without time bounds is not supported: the join writes a changelog (a row without a match is taken back when its match comes); only projections and filters may follow it",
                    node.name()
                )));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        carry_op_column(plan)
    }

    fn name(&self) -> &str {
        "stream_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
