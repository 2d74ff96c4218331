//! `TopNExec`: the first N rows of each key by an order, kept up to date as rows come:
//! `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) <= N` over a stream, written as a
//! changelog. With N = 1 and `ORDER BY` a time, it deduplicates (the first row of each key).
//!
//! DataFusion plans that query as a sort of the whole input, a window function and a filter:
//! nothing comes out before the input ends. Its planner rule, [`TopNRule`], puts this operator
//! in their place. It keeps, per key, the N rows ranked first so far (a row ranked below N can
//! never come back: rows only come, so ranks only fall), and after each micro-batch writes a
//! `+U` row for every (key, rank) whose row changed. The changelog's key is the `PARTITION
//! BY` columns and the rank; rows of equal order keep the rank they came in with.
//!
//! Over a window aggregate's final rows, partitioned by their window, it is a window Top-N
//! (Flink's): each window's first N are written once, as inserts, when the window closes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, InputDistributionRequirements,
    PlanProperties, SendableRecordBatchStream, apply_expression_roots,
};
use ferris_connectors::changelog::{DELETE, UPSERT};

use crate::changelog::{carry_op_column, with_op_column};
use crate::driver::StreamNode;
use crate::error::StreamingError;
use crate::event_time::{EVENT_TIME_COLUMN, WATERMARK_COLUMN};
use crate::exchange::watermark_of;
use crate::key_groups::{OperatorInstance, rows_of_instance};
use crate::operator::{OperatorState, StreamOperator, expired_before, expiry_tick};
use crate::window::WindowSpec;
use crate::window_aggregate::{WindowAggregateExec, announcing_window_rows, final_window_rows};
use crate::window_state::millis;

/// The snapshot's column after the kept rows: when each row's key was last updated.
const TOUCHED_COLUMN: &str = "_touched";

/// What ranks the rows: which rows compete, by what, and how many are kept.
#[derive(Debug, Clone)]
pub struct TopNConfig {
    /// The `PARTITION BY` expressions: each key ranks its own rows.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The `ORDER BY` of the ranking.
    pub order_by: Vec<PhysicalSortExpr>,
    /// N: how many rows of each key are kept.
    pub limit: usize,
    /// How long a key is kept without a row (`'state.ttl'`).
    pub state_ttl: Option<Duration>,
    /// Its rows are a window aggregate's final rows and `partition_by` holds their window:
    /// a key's first N are written once, as inserts without `_op`, when the window
    /// aggregate's watermark (announced in batches of no rows) passes the key's window end,
    /// and the key goes.
    pub per_window: Option<PartitionWindow>,
}

/// Where a window Top-N's key has its window's end.
#[derive(Debug, Clone)]
pub struct PartitionWindow {
    /// The `PARTITION BY` expression holding a bound of the window.
    pub bound: Arc<dyn PhysicalExpr>,
    /// How far past that bound the window ends: 0 for its end, its size for its start.
    pub end_after: i64,
}

/// The plan node.
#[derive(Debug)]
pub struct TopNExec {
    input: Arc<dyn ExecutionPlan>,
    config: TopNConfig,
    /// The input's columns, the rank (named as the window function's column) and, unless
    /// per window, `_op`.
    schema: SchemaRef,
    node: StreamNode,
}

impl TopNExec {
    /// Ranks `input`'s rows as `config` says; `rank` is the rank column's field.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, config: TopNConfig, rank: Field) -> Result<Self> {
        let mut fields: Vec<Field> = input
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(rank);
        let schema = Arc::new(Schema::new(fields));
        let schema = match config.per_window {
            Some(_) => schema,
            None => with_op_column(&schema),
        };
        let node = StreamNode::new(
            schema.clone(),
            input.properties().output_partitioning().partition_count(),
            input.properties().boundedness,
        );
        Ok(Self {
            input,
            config,
            schema,
            node,
        })
    }

    /// How it ranks.
    pub fn config(&self) -> &TopNConfig {
        &self.config
    }
}

impl DisplayAs for TopNExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let partition: Vec<String> = self
            .config
            .partition_by
            .iter()
            .map(|e| e.to_string())
            .collect();
        let order: Vec<String> = self.config.order_by.iter().map(|e| e.to_string()).collect();
        write!(
            f,
            "TopNExec: partition_by=[{}], order_by=[{}], limit={}, {}",
            partition.join(", "),
            order.join(", "),
            self.config.limit,
            match self.config.per_window {
                Some(_) => "per window",
                None => "changelog",
            }
        )?;
        if let Some(ttl) = self.config.state_ttl {
            write!(f, ", state_ttl={}s", ttl.as_secs_f64())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TopNExec {
    fn name(&self) -> &str {
        TopN::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.node.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// Each key's rows in one instance (all in one without `PARTITION BY`).
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let distribution = match self.config.partition_by.is_empty() {
            true => Distribution::SinglePartition,
            false => Distribution::KeyPartitioned(self.config.partition_by.clone()),
        };
        InputDistributionRequirements::new(vec![distribution])
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let order = self.config.order_by.iter().map(|e| &e.expr);
        apply_expression_roots(self.config.partition_by.iter().chain(order), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rank = self
            .schema
            .field(self.input.schema().fields().len())
            .clone();
        Ok(Arc::new(Self::try_new(
            children.swap_remove(0),
            self.config.clone(),
            rank,
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let run = TopN::try_new(
            self.config.clone(),
            self.input.schema(),
            self.schema.clone(),
        )?;
        self.node.run(run, vec![input], partition, &context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.node.metrics())
    }
}

/// One key's rows ranked first, best first, at most N.
#[derive(Debug, Default)]
struct Ranked {
    /// Each row's order key (bytes that compare as the `ORDER BY` does) and the row.
    rows: Vec<(Box<[u8]>, OwnedRow)>,
    /// When a row last came for the key (processing time, epoch ms), with a TTL.
    touched: i64,
    /// Per window: when the key's window ends (epoch ms).
    window_end: i64,
}

impl Ranked {
    /// Bytes of its rows and their order keys.
    fn size(&self) -> usize {
        self.rows
            .iter()
            .map(|(o, r)| o.len() + r.as_ref().len())
            .sum()
    }
}

/// A key whose first N changed, with its first N before.
type Changed = (Box<[u8]>, Vec<OwnedRow>);

/// A candidate with its order key.
type Ordered = (Box<[u8]>, Candidate);

/// A row among a key's first N while a batch is ranked.
enum Candidate {
    /// The row the key kept at this position before the batch.
    Kept(usize),
    /// A row of the batch, by its index.
    Batch(usize),
}

/// What `exprs` give of `batch`'s rows, as bytes that compare as `converter` orders them;
/// none without expressions (no `PARTITION BY`, no `ORDER BY`): every row is then the same.
fn converted(
    converter: &RowConverter,
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Option<Rows>> {
    if exprs.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        converter.convert_columns(&TopN::evaluate(exprs, batch)?)?,
    ))
}

/// Row `row`'s bytes, of [`converted`].
fn bytes_of(rows: &Option<Rows>, row: usize) -> &[u8] {
    rows.as_ref().map_or(&[], |rows| rows.row(row).data())
}

/// The running operator.
struct TopN {
    config: TopNConfig,
    input_schema: SchemaRef,
    schema: SchemaRef,
    keys: RowConverter,
    /// The `ORDER BY` expressions, and how their values compare.
    order_exprs: Vec<Arc<dyn PhysicalExpr>>,
    orders: RowConverter,
    rows: RowConverter,
    ranked: HashMap<Box<[u8]>, Ranked>,
    bytes: usize,
    /// Per window: the earliest end of a window kept (a watermark short of it closes
    /// nothing, and is answered without a look at the keys).
    earliest_end: i64,
}

impl TopN {
    fn try_new(config: TopNConfig, input_schema: SchemaRef, schema: SchemaRef) -> Result<Self> {
        let types = |exprs: &mut dyn Iterator<Item = &Arc<dyn PhysicalExpr>>| {
            exprs
                .map(|e| e.data_type(&input_schema))
                .collect::<Result<Vec<_>>>()
        };
        let keys = types(&mut config.partition_by.iter())?;
        let orders = types(&mut config.order_by.iter().map(|e| &e.expr))?;
        let order_fields = orders
            .into_iter()
            .zip(&config.order_by)
            .map(|(t, e)| SortField::new_with_options(t, e.options))
            .collect();
        let row_fields = input_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            keys: RowConverter::new(keys.into_iter().map(SortField::new).collect())?,
            order_exprs: config.order_by.iter().map(|e| e.expr.clone()).collect(),
            orders: RowConverter::new(order_fields)?,
            rows: RowConverter::new(row_fields)?,
            config,
            input_schema,
            schema,
            ranked: HashMap::new(),
            bytes: 0,
            earliest_end: i64::MAX,
        })
    }

    fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        exprs
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect()
    }

    /// Ranks the rows of `batch`; per key whose first N changed (in the order first
    /// changed), its first N before. Only the rows of the batch that end up kept are
    /// converted to rows: after a while, few are.
    fn rank(&mut self, batch: &RecordBatch, now: i64) -> Result<Vec<Changed>> {
        let limit = self.config.limit;
        let keys = converted(&self.keys, &self.config.partition_by, batch)?;
        let window_ends = match &self.config.per_window {
            Some(window) => {
                let bounds = window.bound.evaluate(batch)?.into_array(batch.num_rows())?;
                millis(&bounds)?
                    .into_iter()
                    .map(|bound| bound.saturating_add(window.end_after))
                    .collect()
            }
            None => vec![],
        };
        let orders = converted(&self.orders, &self.order_exprs, batch)?;
        // Per key the batch changes: its first N as they go, each a row it kept before (by
        // its position then) or a row of the batch.
        let mut working: Vec<(Box<[u8]>, Vec<Ordered>)> = Vec::new();
        let mut working_at: HashMap<Box<[u8]>, usize> = HashMap::new();
        for row in 0..batch.num_rows() {
            let key = bytes_of(&keys, row);
            let order = bytes_of(&orders, row);
            if !self.ranked.contains_key(key) {
                self.bytes += key.len() + std::mem::size_of::<Ranked>();
                let window_end = window_ends.get(row).copied().unwrap_or(i64::MAX);
                self.earliest_end = self.earliest_end.min(window_end);
                let ranked = Ranked {
                    window_end,
                    ..Ranked::default()
                };
                self.ranked.insert(key.into(), ranked);
            }
            let ranked = self.ranked.get_mut(key).expect("inserted above");
            ranked.touched = now;
            // After the rows of equal order: they came first. A row that would not be among
            // the first N kept before the batch is not among them now either.
            if ranked.rows.partition_point(|(o, _)| o.as_ref() <= order) >= limit {
                continue;
            }
            let list = match working_at.get(key) {
                Some(&at) => &mut working[at].1,
                None => {
                    working_at.insert(key.into(), working.len());
                    let kept = ranked.rows.iter().enumerate();
                    let list = kept
                        .map(|(i, (o, _))| (o.clone(), Candidate::Kept(i)))
                        .collect();
                    working.push((key.into(), list));
                    &mut working.last_mut().expect("pushed above").1
                }
            };
            let at = list.partition_point(|(o, _)| o.as_ref() <= order);
            if at < limit {
                list.insert(at, (order.into(), Candidate::Batch(row)));
                list.truncate(limit);
            }
        }
        // The batch's rows that stayed, converted at once, in the order they are met below.
        let stayed: Vec<u32> = working
            .iter()
            .flat_map(|(_, list)| list.iter())
            .filter_map(|(_, candidate)| match candidate {
                Candidate::Batch(row) => Some(*row as u32),
                Candidate::Kept(_) => None,
            })
            .collect();
        let stayed = take_record_batch(batch, &UInt32Array::from(stayed))?;
        let stayed = self.rows.convert_columns(stayed.columns())?;
        let mut next = stayed.iter();
        let mut changed = Vec::with_capacity(working.len());
        for (key, list) in working {
            let ranked = self.ranked.get_mut(&key).expect("ranked above");
            let old = ranked.size();
            let before: Vec<OwnedRow> = ranked.rows.drain(..).map(|(_, row)| row).collect();
            for (order, candidate) in list {
                let row = match candidate {
                    Candidate::Kept(i) => before[i].clone(),
                    Candidate::Batch(_) => next.next().expect("one per row that stayed").owned(),
                };
                ranked.rows.push((order, row));
            }
            self.bytes = self.bytes + ranked.size() - old;
            changed.push((key, before));
        }
        Ok(changed)
    }

    /// The rows `(row, rank, op)` as a batch of the output schema (`op` left out per
    /// window).
    fn output(&self, rows: Vec<(OwnedRow, u64, &'static str)>) -> Result<RecordBatch> {
        let mut columns = self
            .rows
            .convert_rows(rows.iter().map(|(r, _, _)| r.row()))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(_, rank, _)| *rank),
        )));
        if self.config.per_window.is_none() {
            columns.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, _, op)| *op),
            )));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Per window: the first N of each key whose window ends by `watermark`, in key order;
    /// those keys go.
    fn close_windows(&mut self, watermark: i64) -> Result<Vec<RecordBatch>> {
        if watermark < self.earliest_end {
            return Ok(vec![]);
        }
        let mut closed = Vec::new();
        let bytes = &mut self.bytes;
        let earliest = &mut self.earliest_end;
        *earliest = i64::MAX;
        self.ranked.retain(|key, ranked| {
            if ranked.window_end > watermark {
                *earliest = (*earliest).min(ranked.window_end);
                return true;
            }
            *bytes -= key.len() + std::mem::size_of::<Ranked>() + ranked.size();
            closed.push((key.clone(), std::mem::take(&mut ranked.rows)));
            false
        });
        closed.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let rows: Vec<_> = closed
            .into_iter()
            .flat_map(|(_, rows)| rows.into_iter().enumerate())
            .map(|(rank, (_, row))| (row, rank as u64 + 1, UPSERT))
            .collect();
        match rows.is_empty() {
            true => Ok(vec![]),
            false => Ok(vec![self.output(rows)?]),
        }
    }

    /// Puts the rows of a snapshot (each key's in rank order) back, writing nothing.
    fn restore_rows(&mut self, snapshot: &RecordBatch) -> Result<()> {
        let width = self.input_schema.fields().len();
        let (Some(touched), true) = (
            snapshot.columns().last(),
            snapshot.num_columns() == width + 1,
        ) else {
            return Err(StreamingError::Snapshot(format!(
                "a Top-N snapshot has the input's {width} columns and {TOUCHED_COLUMN}"
            ))
            .into());
        };
        let touched = touched
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| StreamingError::Snapshot(format!("{TOUCHED_COLUMN} is not Int64")))?
            .clone();
        let rows = RecordBatch::try_new(
            self.input_schema.clone(),
            snapshot.columns()[..width].to_vec(),
        )?;
        let keys = converted(&self.keys, &self.config.partition_by, &rows)?;
        self.rank(&rows, 0)?;
        for row in 0..rows.num_rows() {
            if let Some(ranked) = self.ranked.get_mut(bytes_of(&keys, row)) {
                ranked.touched = ranked.touched.max(touched.value(row));
            }
        }
        Ok(())
    }

    /// Lets the keys not updated since `before` go, retracting their rows.
    fn expire(&mut self, before: i64) -> Result<Vec<RecordBatch>> {
        let mut retracted = Vec::new();
        let bytes = &mut self.bytes;
        self.ranked.retain(|key, ranked| {
            if ranked.touched >= before {
                return true;
            }
            *bytes -= key.len() + std::mem::size_of::<Ranked>();
            for (rank, (order, row)) in ranked.rows.drain(..).enumerate() {
                *bytes -= order.len() + row.as_ref().len();
                retracted.push((row, rank as u64 + 1, DELETE));
            }
            false
        });
        match retracted.is_empty() {
            true => Ok(vec![]),
            false => Ok(vec![self.output(retracted)?]),
        }
    }
}

impl StreamOperator for TopN {
    const NAME: &'static str = "TopNExec";

    fn process_batch(&mut self, _input: usize, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        if self.config.per_window.is_some() {
            return match watermark_of(&batch) {
                Some(watermark) => self.close_windows(watermark),
                None => self.rank(&batch, 0).map(|_| vec![]),
            };
        }
        let now = match self.config.state_ttl {
            Some(_) => chrono::Utc::now().timestamp_millis(),
            None => 0,
        };
        let changed = self.rank(&batch, now)?;
        let mut upserts = Vec::new();
        for (key, before) in changed {
            let ranked = &self.ranked[&key];
            for (rank, (_, row)) in ranked.rows.iter().enumerate() {
                if before.get(rank) != Some(row) {
                    upserts.push((row.clone(), rank as u64 + 1, UPSERT));
                }
            }
        }
        match upserts.is_empty() {
            true => Ok(vec![]),
            false => Ok(vec![self.output(upserts)?]),
        }
    }

    fn tick_period(&self) -> Option<Duration> {
        self.config.state_ttl.map(expiry_tick)
    }

    fn on_tick(&mut self, now: i64) -> Result<Vec<RecordBatch>> {
        match self.config.state_ttl {
            Some(ttl) => self.expire(expired_before(now, ttl)),
            None => Ok(vec![]),
        }
    }

    /// Per window, every window left closes.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        match self.config.per_window {
            Some(_) => self.close_windows(i64::MAX),
            None => Ok(vec![]),
        }
    }

    fn state(&mut self) -> Option<&mut dyn OperatorState> {
        Some(self)
    }
}

impl OperatorState for TopN {
    /// Every key's rows in rank order, each with its key's last update.
    fn snapshot(&mut self) -> Result<RecordBatch> {
        let kept = self
            .ranked
            .values()
            .flat_map(|ranked| ranked.rows.iter().map(|(_, row)| (row, ranked.touched)));
        let (rows, touched): (Vec<_>, Vec<_>) = kept.unzip();
        let mut columns = self.rows.convert_rows(rows.into_iter().map(|r| r.row()))?;
        columns.push(Arc::new(Int64Array::from(touched)));
        let mut fields: Vec<Field> = self
            .input_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(TOUCHED_COLUMN, DataType::Int64, false));
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        self.restore_rows(snapshot)
    }

    fn size(&self) -> usize {
        self.bytes
    }

    fn late_records(&self) -> usize {
        0
    }

    fn restore_rescaled(
        &mut self,
        snapshots: &[RecordBatch],
        instance: OperatorInstance,
    ) -> Result<()> {
        let width = self.input_schema.fields().len();
        for snapshot in snapshots {
            let rows = RecordBatch::try_new(
                self.input_schema.clone(),
                snapshot.columns()[..width.min(snapshot.num_columns())].to_vec(),
            )?;
            let keys = Self::evaluate(&self.config.partition_by, &rows)?;
            let own = rows_of_instance(snapshot, &keys, instance)?;
            self.restore_rows(&own)?;
        }
        Ok(())
    }
}

// The planner rule: `FilterExec(rank <= N)` over a `BoundedWindowAggExec` of `ROW_NUMBER()`
// alone (with a projection between them or not) over the `SortExec` it needs, becomes a
// `TopNExec` over the sort's input, under the projections that were there, which carry `_op`.

/// Why a Top-N of a changelog's rows is refused.
pub(crate) const RANKED_CHANGELOG: &str = "ROW_NUMBER() over an aggregate's rows is not supported on a stream unless they are a window's final rows (EMIT FINAL, no allowed lateness): they change as it goes on, and a Top-N of them would have to take rows back";

/// Puts [`TopNExec`] in place of a ranking DataFusion would sort the whole input for.
#[derive(Debug)]
pub struct TopNRule {
    /// Whether the query writes a changelog (a stream, or `EMIT CHANGES`): a bounded query
    /// without `EMIT CHANGES` ranks as DataFusion does, once the input has ended.
    pub changelog: bool,
    /// How long a key is kept without a row (`'state.ttl'`).
    pub state_ttl: Option<Duration>,
}

impl PhysicalOptimizerRule for TopNRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.changelog {
            return Ok(plan);
        }
        let mut found = false;
        let plan = plan
            .transform_up(|node| {
                let Some(filter) = node.downcast_ref::<FilterExec>() else {
                    return Ok(Transformed::no(node));
                };
                match self.top_n(filter)? {
                    Some(top_n) => {
                        found |= writes_changelog(&top_n);
                        Ok(Transformed::yes(top_n))
                    }
                    None => Ok(Transformed::no(node)),
                }
            })?
            .data;
        if !found {
            return Ok(plan);
        }
        if !read_as_changelog(&plan) {
            return Err(DataFusionError::Plan(
                "a Top-N (ROW_NUMBER() ... <= N) on a stream is a changelog: a query can select its columns, but not aggregate, join or rank it again".into(),
            ));
        }
        carry_op_column(plan)
    }

    fn name(&self) -> &str {
        "top_n"
    }

    fn schema_check(&self) -> bool {
        // The projections above gain `_op`.
        false
    }
}

/// Whether `plan` holds a Top-N that writes a changelog (not one per window).
fn writes_changelog(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|n| {
        Ok(n.downcast_ref::<TopNExec>()
            .is_some_and(|t| t.config.per_window.is_none()))
    })
    .unwrap_or(false)
}

/// Whether every path from `plan`'s root to a Top-N's changelog goes through projections
/// only: what reads the changelog passes its rows (and `_op`) on as they are.
fn read_as_changelog(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.downcast_ref::<TopNExec>().is_some() || !writes_changelog(plan) {
        return true;
    }
    plan.downcast_ref::<ProjectionExec>().is_some()
        && plan.children().into_iter().all(read_as_changelog)
}

impl TopNRule {
    /// The Top-N `filter` stands for, if it is one.
    fn top_n(&self, filter: &FilterExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let (between, window) = match filter.input().downcast_ref::<ProjectionExec>() {
            Some(projection) => (Some(projection), projection.input()),
            None => (None, filter.input()),
        };
        let Some(window) = window.downcast_ref::<BoundedWindowAggExec>() else {
            return Ok(None);
        };
        // A LIMIT pushed into the filter would be lost.
        if filter.fetch().is_some() {
            return Ok(None);
        }
        let [expr] = window.window_expr() else {
            return Ok(None);
        };
        let is_row_number = expr
            .as_any()
            .downcast_ref::<StandardWindowExpr>()
            .and_then(|e| {
                e.get_standard_func_expr()
                    .as_any()
                    .downcast_ref::<WindowUDFExpr>()
            })
            .is_some_and(|e| e.fun().name() == "row_number");
        if !is_row_number {
            return Ok(None);
        }
        // The rank's column in the window's output, and in the filter's input.
        let rank = window.input().schema().fields().len();
        let rank_in_filter = match between {
            None => Some(rank),
            Some(projection) => projection.expr().iter().position(|e| {
                e.expr
                    .downcast_ref::<Column>()
                    .is_some_and(|c| c.index() == rank)
            }),
        };
        let Some(limit) = rank_in_filter.and_then(|c| rank_limit(filter.predicate(), c)) else {
            return Ok(None);
        };
        let input = without_sort(window.input())?;
        // An aggregate's rows change as the stream goes on (a GROUP BY without a window is a
        // changelog, a window with allowed lateness emits again): a Top-N of them would have
        // to take rows back. A window's final rows only come.
        let changing = input.exists(|n| {
            Ok(n.downcast_ref::<AggregateExec>().is_some()
                || n.downcast_ref::<WindowAggregateExec>()
                    .is_some_and(|w| !w.config().emits_each_window_once()))
        })?;
        if changing {
            return Err(DataFusionError::Plan(RANKED_CHANGELOG.into()));
        }
        let partition_by = expr.partition_by().to_vec();
        let per_window = partition_window(&input, &partition_by);
        // The window's watermark closes its keys: the window announces it, and the
        // projections and filters between pass it on.
        let input = match per_window {
            Some(_) => announcing_window_rows(&input)?.ok_or_else(|| {
                DataFusionError::Internal("a window Top-N's input is a window's rows".into())
            })?,
            None => input,
        };
        let config = TopNConfig {
            partition_by,
            order_by: expr.order_by().to_vec(),
            limit,
            state_ttl: self.state_ttl.filter(|_| per_window.is_none()),
            per_window,
        };
        let rank_field = window.schema().field(rank).clone();
        let mut plan: Arc<dyn ExecutionPlan> =
            Arc::new(TopNExec::try_new(input, config, rank_field)?);
        if let Some(projection) = between {
            plan = Arc::new(ProjectionExec::try_new(projection.expr().to_vec(), plan)?);
        }
        if let Some(columns) = filter.projection() {
            let schema = plan.schema();
            let exprs = columns.iter().map(|&i| {
                let field = schema.field(i);
                ProjectionExpr::new(Arc::new(Column::new(field.name(), i)), field.name().clone())
            });
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
        Ok(Some(plan))
    }
}

/// `plan` without the sort DataFusion put in for the ranking: right under it, or under the
/// projections it was pushed below.
fn without_sort(plan: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(sort) = plan.downcast_ref::<SortExec>() {
        return Ok(sort.input().clone());
    }
    match plan.downcast_ref::<ProjectionExec>() {
        Some(projection) => Ok(Arc::new(ProjectionExec::try_new(
            projection.expr().to_vec(),
            without_sort(projection.input())?,
        )?)),
        None => Ok(plan.clone()),
    }
}

/// Where `partition_by` holds the window of the window aggregate's final rows `input`
/// passes on, if it does: its end, or its start and the window's size (not for sessions,
/// whose size varies: two sessions may start together and end apart).
fn partition_window(
    input: &Arc<dyn ExecutionPlan>,
    partition_by: &[Arc<dyn PhysicalExpr>],
) -> Option<PartitionWindow> {
    let mut start = None;
    for expr in partition_by {
        let column = expr.downcast_ref::<Column>().map(Column::index);
        let Some((window, Some(column))) = final_window_rows(input, column) else {
            continue;
        };
        match window.schema().field(column).name().as_str() {
            WATERMARK_COLUMN => {
                return Some(PartitionWindow {
                    bound: expr.clone(),
                    end_after: 0,
                });
            }
            EVENT_TIME_COLUMN => {
                let size = match window.config().window {
                    WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => size,
                    WindowSpec::Session { .. } | WindowSpec::Global => continue,
                };
                start = Some(PartitionWindow {
                    bound: expr.clone(),
                    end_after: size,
                });
            }
            _ => {}
        }
    }
    start
}

/// N when `predicate` keeps exactly the rows whose rank (column `rank`) is at most N:
/// `rank <= N`, `rank < N + 1`, `rank = 1`, or the same with the sides swapped.
fn rank_limit(predicate: &Arc<dyn PhysicalExpr>, rank: usize) -> Option<usize> {
    let binary = predicate.downcast_ref::<BinaryExpr>()?;
    let is_rank = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| c.index() == rank)
    };
    let number = |e: &Arc<dyn PhysicalExpr>| -> Option<i128> {
        let value = e
            .downcast_ref::<Literal>()?
            .value()
            .cast_to(&DataType::Int64)
            .ok()?;
        match value {
            ScalarValue::Int64(Some(n)) => Some(i128::from(n)),
            _ => None,
        }
    };
    // As `rank op n`.
    let (op, n) = if is_rank(binary.left()) {
        (*binary.op(), number(binary.right())?)
    } else if is_rank(binary.right()) {
        (binary.op().swap()?, number(binary.left())?)
    } else {
        return None;
    };
    let limit = match op {
        Operator::LtEq => n,
        Operator::Lt => n - 1,
        Operator::Eq if n == 1 => 1,
        _ => return None,
    };
    usize::try_from(limit).ok().filter(|&l| l >= 1)
}

#[cfg(test)]
mod tests;
