//! `WindowAggregateExec`: GROUP BY per event-time window, incrementally, over an unbounded
//! stream, with DataFusion's own aggregate functions.
//!
//! It takes the place of DataFusion's `AggregateExec` in a streaming plan; its planner rule,
//! [`WindowAggregateRule`], puts it there. The group columns
//! named [`EVENT_TIME_COLUMN`] and [`WATERMARK_COLUMN`] carry each row's event time and the
//! watermark before it (stamped at the source); the operator assigns rows to windows, drops
//! (or dead-letters) late rows, and emits a window's rows once the watermark passes its end
//! (`EMIT FINAL`) or the changed groups after every micro-batch (`EMIT CHANGES`), with the
//! window's start and end in those two columns.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, TimestampMillisecondArray, UInt8Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::{
    AggregateMode, PhysicalGroupBy, aggregate_expressions,
};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, InputDistributionRequirements,
    PlanProperties, SendableRecordBatchStream, apply_expression_roots,
};

use ferris_connectors::changelog::{DELETE, UPSERT};

use crate::changelog::{with_op_column, with_ops};
use crate::driver::StreamNode;
use crate::error::StreamingError;
use crate::event_time::{EVENT_TIME_COLUMN, WATERMARK_COLUMN, WatermarkSpec};
use crate::exchange::{ExchangeExec, watermark_batch, watermark_of};
use crate::key_groups::OperatorInstance;
use crate::key_groups::rows_of_instance;
use crate::late::LateDataPolicy;
use crate::operator::{OperatorState, StreamOperator, expired_before, expiry_tick};
use crate::pre_aggregate::{PreAggregateConfig, PreAggregateExec};
use crate::session_state::SessionState;
use crate::sliced_state::SlicedState;
use crate::window::{EmitMode, WindowSpec};
use crate::window_state::{
    Evaluated, WindowRows, WindowState, evaluate_all, evaluate_filters, millis,
};

/// Everything the operator needs: the window, emission and lateness settings, and the
/// grouping and aggregates of the `AggregateExec` it replaces.
#[derive(Debug, Clone)]
pub struct WindowAggregateConfig {
    /// The window shape.
    pub window: WindowSpec,
    /// When rows are emitted.
    pub emit: EmitMode,
    /// What late rows get.
    pub late: LateDataPolicy,
    /// How the source stamped event time and watermarks (the bound is needed here too).
    pub watermark: WatermarkSpec,
    /// The GROUP BY, including the two stamp columns when windowed.
    pub group_by: PhysicalGroupBy,
    /// The aggregates.
    pub aggr_expr: Vec<Arc<AggregateFunctionExpr>>,
    /// Per aggregate, its `FILTER (WHERE ...)`.
    pub filter_expr: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The output schema: group columns, then aggregates (the replaced `AggregateExec`'s),
    /// then, for a changelog, `_op`.
    pub output_schema: SchemaRef,
    /// A changelog (a keyed table's `EMIT CHANGES`): rows carry `_op`, and a group
    /// that stops matching `having` is retracted.
    pub changelog: bool,
    /// The HAVING predicate over group and aggregate columns, evaluated here so that a row
    /// that stops matching can be retracted.
    pub having: Option<Arc<dyn PhysicalExpr>>,
    /// Its input is a [`PreAggregateExec`]'s: per group of a micro-batch, the group columns,
    /// the aggregates' partial states and how many rows they hold, to merge.
    pub merges: bool,
    /// A keyed table's key not updated for this long (processing time) goes from the state
    /// (`'state.ttl'`), retracted from a changelog; `None`: keys stay as long as the job.
    pub state_ttl: Option<Duration>,
    /// Its rows are the final rows of a window aggregate below it (`EMIT FINAL`, no
    /// allowed lateness). A row's event time is then its window's end less 1 ms (Flink's
    /// `window_time`), from the end column ([`WATERMARK_COLUMN`]) the inner operator wrote.
    /// The inner operator writes all the windows a watermark closes together, then that
    /// watermark ([`WindowAggregateConfig::announces_watermark`]): every window it writes
    /// later ends after it, so no row is late. This operator's watermark moves on those
    /// announcements alone (over an exchange, the least of the inner instances').
    pub over_window: bool,
    /// Its rows feed an operator that closes windows on its watermark (a window aggregate
    /// over them, a window Top-N): after the rows a watermark makes ready, it writes a
    /// batch of no rows carrying that watermark ([`watermark_batch`]), so that the operator
    /// above closes them even when no row comes.
    pub announces_watermark: bool,
}

/// Why an aggregate with grouping sets cannot be a streaming one.
pub const GROUPING_SETS_UNSUPPORTED: &str =
    "GROUPING SETS, CUBE and ROLLUP are not supported in streaming aggregates";

impl WindowAggregateConfig {
    /// The output schema for an aggregate's schema: with `_op` for a changelog.
    pub fn output_schema_for(aggregate_schema: &SchemaRef, changelog: bool) -> SchemaRef {
        match changelog {
            true => with_op_column(aggregate_schema),
            false => aggregate_schema.clone(),
        }
    }
}

/// Where each group-by output column comes from.
#[derive(Debug, Clone, Copy)]
enum GroupColumn {
    Start,
    End,
    Key(usize),
}

/// The operator's logic, independent of streams: feed batches, get result batches.
pub(crate) struct WindowAggregator {
    config: Arc<WindowAggregateConfig>,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    stamp_exprs: Option<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)>,
    columns: Vec<GroupColumn>,
    arg_exprs: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// No GROUP BY keys: one constant key stands in, and is not output.
    constant_key: bool,
    state: Box<dyn WindowState>,
    watermark: i64,
    /// The watermark written last (see [`WindowAggregateConfig::announces_watermark`]).
    announced: i64,
    /// Only the watermarks stamped on the rows move the operator's on (not their times):
    /// its rows come from parts read side by side (a topic's partitions, a parallel job's
    /// shares), whose least watermark only the stamper or the exchange knows.
    watermark_from_rows: bool,
    late_records: usize,
    /// Changelog with HAVING: the keys whose latest row matched, so a retraction is due
    /// when one stops matching.
    visible: Option<(RowConverter, HashSet<OwnedRow>)>,
}

impl WindowAggregator {
    /// An aggregator with empty state.
    pub(crate) fn try_new(config: WindowAggregateConfig) -> Result<Self> {
        if !config.group_by.is_single() {
            return Err(DataFusionError::Plan(GROUPING_SETS_UNSUPPORTED.into()));
        }
        let mut key_exprs = Vec::new();
        let mut columns = Vec::new();
        let (mut time, mut mark) = (None, None);
        for (expr, name) in config.group_by.expr() {
            match name.as_str() {
                EVENT_TIME_COLUMN if config.window.is_windowed() => {
                    time = Some(expr.clone());
                    columns.push(GroupColumn::Start);
                }
                WATERMARK_COLUMN if config.window.is_windowed() => {
                    mark = Some(expr.clone());
                    columns.push(GroupColumn::End);
                }
                _ => {
                    columns.push(GroupColumn::Key(key_exprs.len()));
                    key_exprs.push(expr.clone());
                }
            }
        }
        let stamp_exprs = match (time, mark) {
            (Some(time), Some(mark)) => Some((time, mark)),
            (None, None) if !config.window.is_windowed() => None,
            _ => {
                return Err(DataFusionError::Plan(format!(
                    "a windowed aggregate groups by both {EVENT_TIME_COLUMN} and {WATERMARK_COLUMN}"
                )));
            }
        };
        let key_fields: Vec<Field> = columns
            .iter()
            .zip(config.output_schema.fields())
            .filter(|(c, _)| matches!(c, GroupColumn::Key(_)))
            .map(|(_, f)| f.as_ref().clone().with_nullable(true))
            .collect();
        let constant_key = key_fields.is_empty();
        let key_schema = Arc::new(Schema::new(if constant_key {
            vec![Field::new("_constant_key", DataType::UInt8, false)]
        } else {
            key_fields
        }));
        let aggregates: Arc<[Arc<AggregateFunctionExpr>]> = config.aggr_expr.clone().into();
        let allowed = config.late.allowed_lateness();
        let state: Box<dyn WindowState> = match config.window {
            WindowSpec::Session { gap } => {
                Box::new(SessionState::try_new(gap, allowed, aggregates, key_schema)?)
            }
            spec => Box::new(SlicedState::try_new(
                spec,
                allowed,
                aggregates,
                key_schema,
                config.state_ttl.is_some(),
            )?),
        };
        // Rows give the aggregates' arguments; a pre-aggregation's rows give their states,
        // after the group columns, as to DataFusion's final aggregate.
        let (mode, states_from) = match config.merges {
            true => (AggregateMode::Final, columns.len()),
            false => (AggregateMode::Single, 0),
        };
        let arg_exprs = aggregate_expressions(&config.aggr_expr, &mode, states_from)?;
        let visible = match (&config.having, config.changelog) {
            (Some(_), true) => {
                let group_fields = config.output_schema.fields().iter().take(columns.len());
                let sort_fields = group_fields
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect();
                Some((RowConverter::new(sort_fields)?, HashSet::new()))
            }
            _ => None,
        };
        Ok(Self {
            visible,
            watermark_from_rows: config.watermark.partition_field.is_some(),
            config: Arc::new(config),
            key_exprs,
            stamp_exprs,
            columns,
            arg_exprs,
            constant_key,
            state,
            watermark: i64::MIN,
            announced: i64::MIN,
            late_records: 0,
        })
    }

    /// Aggregates a micro-batch; returns the rows it makes ready.
    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        // An exchange's watermark without rows (a share moved on, ended or went idle).
        if let Some(watermark) = watermark_of(batch) {
            self.watermark = self.watermark.max(watermark);
            return self.emit();
        }
        let rows = batch.num_rows();
        let keys = if self.constant_key {
            vec![Arc::new(UInt8Array::from(vec![0; rows])) as ArrayRef]
        } else {
            evaluate_all(&self.key_exprs, batch)?
        };
        let args = self
            .arg_exprs
            .iter()
            .map(|exprs| evaluate_all(exprs, batch))
            .collect::<Result<_>>()?;
        let input = Evaluated {
            keys,
            args,
            filters: evaluate_filters(&self.config.filter_expr, batch)?,
            states: self.config.merges,
        };
        let (times, mut marks) = match &self.stamp_exprs {
            // An inner window's row: its end less 1 ms, under the watermark announced so far.
            Some((_, end)) if self.config.over_window => {
                let ends = millis(&end.evaluate(batch)?.into_array(rows)?)?;
                let times = ends.into_iter().map(|end| end - 1).collect();
                (times, vec![self.watermark; rows])
            }
            Some((time, mark)) => {
                let evaluate = |e: &Arc<dyn PhysicalExpr>| e.evaluate(batch)?.into_array(rows);
                (millis(&evaluate(time)?)?, millis(&evaluate(mark)?)?)
            }
            None => (vec![], vec![]),
        };
        // A row is judged against the watermark the operator has already acted on: on event
        // time that never exceeds the row's own (it is the same, or lower for rows a filter
        // dropped); on processing time the clock may have moved it on and closed the window.
        for mark in &mut marks {
            *mark = (*mark).max(self.watermark);
        }
        let late = self.state.update(&input, &times, &marks)?;
        if !late.is_empty() {
            self.late_records += match self.config.merges {
                // A pre-aggregation's row stands for the rows it counts (its last column).
                true => {
                    let counts = batch.column(batch.num_columns() - 1);
                    let counts = counts.as_primitive::<arrow::datatypes::UInt64Type>();
                    late.iter()
                        .map(|&r| counts.value(r as usize) as usize)
                        .sum()
                }
                false => late.len(),
            };
            if let LateDataPolicy::DeadLetter(sink) = &self.config.late {
                let indices = arrow::array::UInt32Array::from(late);
                sink.write(&arrow::compute::take_record_batch(batch, &indices)?)?;
            }
        }
        // W after the batch: the largest of the rows' W before them and times less the bound.
        // Over parts read side by side, the rows' W alone counts (one row behind, until the
        // next batch); over a window's rows, its announcements alone.
        let bound = self.config.watermark.max_out_of_orderness.as_millis() as i64;
        let latest = match self.watermark_from_rows || self.config.over_window {
            true => i64::MIN,
            false => times
                .iter()
                .max()
                .map_or(i64::MIN, |t| t.saturating_sub(bound)),
        };
        let marked = marks.iter().copied().max().unwrap_or(i64::MIN);
        self.watermark = self.watermark.max(latest).max(marked);
        self.emit()
    }

    /// Whether its windows go by processing time.
    fn on_processing_time(&self) -> bool {
        self.config.window.is_windowed()
            && self.config.watermark.field.is_none()
            && !self.config.over_window
    }

    /// Lets the keys not updated since `before` go; in a changelog, their rows are
    /// retracted (those HAVING showed).
    fn expire(&mut self, before: i64) -> Result<Vec<RecordBatch>> {
        let Some(rows) = self.state.expire(before)? else {
            return Ok(vec![]);
        };
        // A keyed table over streams is a changelog; over files it ends before a tick.
        if !self.config.changelog {
            return Ok(vec![]);
        }
        let batch = self.aggregate_batch(&rows)?;
        let shown: Vec<bool> = match self.visible.as_mut() {
            Some((converter, visible)) => converter
                .convert_columns(&batch.columns()[..self.columns.len()])?
                .iter()
                .map(|key| visible.remove(&key.owned()))
                .collect(),
            None => vec![true; batch.num_rows()],
        };
        let batch = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(shown))?;
        let deletes = vec![DELETE; batch.num_rows()];
        let batch = with_ops(batch, deletes)?.with_schema(self.config.output_schema.clone())?;
        Ok((batch.num_rows() > 0)
            .then_some(batch)
            .into_iter()
            .collect())
    }

    /// The rows the watermark makes ready, then, where the operator announces it, the
    /// watermark.
    fn emit(&mut self) -> Result<Vec<RecordBatch>> {
        let rows = self.state.emit(self.watermark, self.config.emit)?;
        let mut batches = Vec::with_capacity(rows.len());
        for rows in rows.into_iter().filter(|r| !r.starts.is_empty()) {
            let batch = self.output_batch(rows)?;
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
        }
        if self.config.announces_watermark && self.watermark > self.announced {
            self.announced = self.watermark;
            batches.push(watermark_batch(&self.config.output_schema, self.watermark));
        }
        Ok(batches)
    }

    /// The group and aggregate columns of `rows`, without `_op`.
    fn aggregate_batch(&self, rows: &WindowRows) -> Result<RecordBatch> {
        let schema = &self.config.output_schema;
        let stamp = |values: &[i64], field: &Field| -> Result<ArrayRef> {
            let array: ArrayRef = Arc::new(TimestampMillisecondArray::from(values.to_vec()));
            Ok(cast(&array, field.data_type())?)
        };
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (column, field) in self.columns.iter().zip(schema.fields()) {
            columns.push(match column {
                GroupColumn::Start => stamp(&rows.starts, field)?,
                GroupColumn::End => stamp(&rows.ends, field)?,
                GroupColumn::Key(k) => rows.keys[*k].clone(),
            });
        }
        columns.extend(rows.values.iter().cloned());
        let aggregate_fields = &schema.fields()[..columns.len()];
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(aggregate_fields.to_vec())),
            columns,
        )?)
    }

    fn output_batch(&mut self, rows: WindowRows) -> Result<RecordBatch> {
        let schema = self.config.output_schema.clone();
        let batch = self.aggregate_batch(&rows)?;
        let batch = match &self.config.having {
            Some(having) => self.apply_having(having.clone(), batch)?,
            None if self.config.changelog => {
                let ops = rows
                    .retract
                    .iter()
                    .map(|&r| if r { DELETE } else { UPSERT })
                    .collect();
                with_ops(batch, ops)?
            }
            None => batch,
        };
        Ok(batch.with_schema(schema)?)
    }

    /// Keeps the rows that match HAVING; in a changelog, a key whose earlier row matched and
    /// whose new one does not is retracted (`-D`).
    fn apply_having(
        &mut self,
        having: Arc<dyn PhysicalExpr>,
        batch: RecordBatch,
    ) -> Result<RecordBatch> {
        let matches = having.evaluate(&batch)?.into_array(batch.num_rows())?;
        let matches = matches.as_boolean();
        let Some((converter, visible)) = self.visible.as_mut() else {
            return Ok(arrow::compute::filter_record_batch(&batch, matches)?);
        };
        let group_columns = &batch.columns()[..self.columns.len()];
        let keys = converter.convert_columns(group_columns)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut ops = Vec::with_capacity(batch.num_rows());
        for (i, key) in keys.iter().enumerate() {
            if matches.is_valid(i) && matches.value(i) {
                visible.insert(key.owned());
                keep.push(true);
                ops.push(UPSERT);
            } else if visible.remove(&key.owned()) {
                keep.push(true);
                ops.push(DELETE);
            } else {
                keep.push(false);
            }
        }
        let batch = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))?;
        with_ops(batch, ops)
    }
}

/// How often processing-time windows look at the clock.
const PROCESSING_TIME_TICK: Duration = Duration::from_millis(200);

impl StreamOperator for WindowAggregator {
    const NAME: &'static str = "WindowAggregateExec";

    fn process_batch(&mut self, _input: usize, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        self.process(&batch)
    }

    /// On processing time, the clock closes windows too.
    /// A keyed table's keys expire (its window is global), or windows close on the clock.
    fn tick_period(&self) -> Option<Duration> {
        match self.config.state_ttl {
            Some(ttl) => Some(expiry_tick(ttl)),
            None => self.on_processing_time().then_some(PROCESSING_TIME_TICK),
        }
    }

    /// Windows that ended before `now` close even when no row arrives; a keyed table's keys
    /// not updated for their time to live go.
    fn on_tick(&mut self, now: i64) -> Result<Vec<RecordBatch>> {
        let mut ready = match self.config.state_ttl {
            Some(ttl) => self.expire(expired_before(now, ttl))?,
            None => vec![],
        };
        if self.on_processing_time() && now > self.watermark {
            self.watermark = now;
            ready.extend(self.emit()?);
        }
        Ok(ready)
    }

    /// The watermark goes to +∞ and every window is emitted.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.watermark = i64::MAX;
        self.emit()
    }

    fn state(&mut self) -> Option<&mut dyn OperatorState> {
        Some(self)
    }
}

impl OperatorState for WindowAggregator {
    /// The keyed state as one batch, with the watermark and the late records so far in its
    /// schema metadata.
    fn snapshot(&mut self) -> Result<RecordBatch> {
        let state = self.state.snapshot()?;
        let mut metadata = state.schema().metadata().clone();
        metadata.insert("ferris.watermark".into(), self.watermark.to_string());
        metadata.insert("ferris.late_records".into(), self.late_records.to_string());
        let schema = Arc::new(Schema::new_with_metadata(
            state.schema().fields().clone(),
            metadata,
        ));
        Ok(state.with_schema(schema)?)
    }

    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        let read = |key: &str| -> Result<i64> {
            snapshot
                .schema()
                .metadata()
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| StreamingError::Snapshot(format!("no {key} in the snapshot")).into())
        };
        self.watermark = read("ferris.watermark")?;
        self.late_records = read("ferris.late_records")? as usize;
        self.state.restore(snapshot)
    }

    fn size(&self) -> usize {
        self.state.size()
    }

    /// The rows of its key groups from each snapshot, in window order, with the furthest
    /// watermark any of them had reached (the late records counted so far start again). An
    /// aggregate without keys runs as one instance: it has no key groups to take up.
    fn restore_rescaled(
        &mut self,
        snapshots: &[RecordBatch],
        instance: OperatorInstance,
    ) -> Result<()> {
        if self.constant_key {
            return Err(StreamingError::Snapshot(
                "an aggregate without GROUP BY keys was checkpointed as more than one instance"
                    .into(),
            )
            .into());
        }
        let keys = self.state.key_columns();
        let parts = snapshots
            .iter()
            .map(|snapshot| {
                if keys.end > snapshot.num_columns() {
                    return Err(StreamingError::Snapshot(
                        "the window state's columns differ from this query's".into(),
                    )
                    .into());
                }
                rows_of_instance(snapshot, &snapshot.columns()[keys.clone()], instance)
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = parts.first() else {
            return Ok(());
        };
        let merged = arrow::compute::concat_batches(&first.schema(), &parts)?;
        let Some(starts) = merged
            .columns()
            .first()
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>())
        else {
            return Err(StreamingError::Snapshot(
                "the window state's columns differ from this query's".into(),
            )
            .into());
        };
        let mut order: Vec<u32> = (0..merged.num_rows() as u32).collect();
        order.sort_by_key(|&row| starts.value(row as usize));
        let merged =
            arrow::compute::take_record_batch(&merged, &arrow::array::UInt32Array::from(order))?;
        self.watermark = parts
            .iter()
            .filter_map(|p| p.schema().metadata().get("ferris.watermark")?.parse().ok())
            .max()
            .unwrap_or(i64::MIN);
        self.late_records = 0;
        self.state.restore(&merged)
    }

    fn late_records(&self) -> usize {
        self.late_records
    }

    /// `i64::MIN` before any row.
    fn watermark(&self) -> Option<i64> {
        Some(self.watermark)
    }
}

/// The plan node around a `WindowAggregator`.
#[derive(Debug)]
pub struct WindowAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    config: WindowAggregateConfig,
    /// Its input is an exchange merging the watermarks of a parallel job's shares.
    merged_watermarks: bool,
    node: StreamNode,
}

impl WindowAggregateExec {
    /// Replaces an aggregate over `input` with the configured windowed one.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, config: WindowAggregateConfig) -> Result<Self> {
        // Fail at planning, not at the first batch.
        WindowAggregator::try_new(config.clone())?;
        let node = StreamNode::new(
            config.output_schema.clone(),
            input.properties().output_partitioning().partition_count(),
            input.properties().boundedness,
        );
        let merged_watermarks = input
            .downcast_ref::<ExchangeExec>()
            .is_some_and(ExchangeExec::merges_watermarks);
        Ok(Self {
            input,
            config,
            merged_watermarks,
            node,
        })
    }

    /// Its input.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// How it runs.
    pub fn config(&self) -> &WindowAggregateConfig {
        &self.config
    }

    /// This aggregate over `input` in two phases, if it can be: a [`PreAggregateExec`] of
    /// each micro-batch over `input`, under the aggregate merging its partial states (for
    /// an exchange between the two). Not for sessions (which rows merge depends on every
    /// row before), nor sliding windows (see `pre_aggregate.rs`), nor on processing time,
    /// nor when late rows go to a dead letter (they are no longer rows after the first
    /// phase), nor without keys (nothing is exchanged), nor over an exchange (whose rows
    /// without data only move the watermark on).
    pub fn pre_aggregated(&self, input: Arc<dyn ExecutionPlan>) -> Result<Option<Arc<Self>>> {
        if input.exists(|node| Ok(node.downcast_ref::<ExchangeExec>().is_some()))? {
            return Ok(None);
        }
        let Some((partial, merging)) = self.config.two_phases() else {
            return Ok(None);
        };
        let partial = PreAggregateExec::try_new(input, partial)?;
        Ok(Some(Arc::new(Self::try_new(Arc::new(partial), merging)?)))
    }
}

impl WindowAggregateConfig {
    /// Whether it writes each window's rows once, final: a window (not a keyed table), not a
    /// changelog, without allowed lateness; what reads them closes windows on its watermark
    /// (see [`WindowAggregateConfig::over_window`]).
    pub fn emits_each_window_once(&self) -> bool {
        self.window.is_windowed() && !self.changelog && self.late.allowed_lateness() == 0
    }

    /// The two phases of this aggregate, where it can run in two (see
    /// [`WindowAggregateExec::pre_aggregated`]): the pre-aggregation's and the merging
    /// aggregate's.
    pub(crate) fn two_phases(&self) -> Option<(PreAggregateConfig, WindowAggregateConfig)> {
        let two_phase = !self.merges
            && !self.over_window
            && match self.window {
                WindowSpec::Tumbling { .. } => self.watermark.field.is_some(),
                WindowSpec::Global => true,
                WindowSpec::Sliding { .. } | WindowSpec::Session { .. } => false,
            }
            && !matches!(self.late, LateDataPolicy::DeadLetter(_))
            && self
                .group_by
                .expr()
                .iter()
                .any(|(_, name)| name != EVENT_TIME_COLUMN && name != WATERMARK_COLUMN);
        two_phase.then(|| {
            let partial = PreAggregateConfig {
                window: self.window,
                allowed_lateness: self.late.allowed_lateness(),
                group_by: self.group_by.expr().to_vec(),
                aggr_expr: self.aggr_expr.clone(),
                filter_expr: self.filter_expr.clone(),
            };
            let merging = WindowAggregateConfig {
                group_by: self.group_by.as_final(),
                filter_expr: vec![None; self.aggr_expr.len()],
                merges: true,
                ..self.clone()
            };
            (partial, merging)
        })
    }
}

impl DisplayAs for WindowAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let config = &self.config;
        let keys: Vec<&str> = config
            .group_by
            .expr()
            .iter()
            .map(|(_, name)| name.as_str())
            .filter(|n| {
                !config.window.is_windowed() || (*n != EVENT_TIME_COLUMN && *n != WATERMARK_COLUMN)
            })
            .collect();
        let aggregates: Vec<&str> = config.aggr_expr.iter().map(|a| a.name()).collect();
        write!(
            f,
            "WindowAggregateExec: window={}, emit={}",
            config.window, config.emit
        )?;
        match (config.window.is_windowed(), config.over_window) {
            (true, true) => write!(f, ", event_time=inner window end - 1ms")?,
            (true, false) => write!(f, ", late={}, {}", config.late, config.watermark)?,
            (false, _) => {}
        }
        write!(
            f,
            ", gby=[{}], aggr=[{}]",
            keys.join(", "),
            aggregates.join(", ")
        )?;
        if let Some(having) = &config.having {
            write!(f, ", having={having}")?;
        }
        if config.changelog {
            write!(f, ", changelog")?;
        }
        if config.merges {
            write!(f, ", merges partial states")?;
        }
        if let Some(ttl) = config.state_ttl {
            write!(f, ", state_ttl={ttl:?}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for WindowAggregateExec {
    fn name(&self) -> &str {
        WindowAggregator::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.node.properties()
    }

    /// Each key's rows in one instance: hashed on the GROUP BY keys (not on the window,
    /// whose column still holds event time), or all in one without keys.
    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let keys: Vec<Arc<dyn PhysicalExpr>> = self
            .config
            .group_by
            .expr()
            .iter()
            .filter(|(_, name)| name != EVENT_TIME_COLUMN && name != WATERMARK_COLUMN)
            .map(|(expr, _)| expr.clone())
            .collect();
        InputDistributionRequirements::new(vec![if keys.is_empty() {
            Distribution::SinglePartition
        } else {
            Distribution::KeyPartitioned(keys)
        }])
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let group = self.config.group_by.expr().iter().map(|(e, _)| e);
        let filters = self.config.filter_expr.iter().flatten();
        apply_expression_roots(group.chain(filters).chain(self.config.having.iter()), f)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::try_new(
            children.swap_remove(0),
            self.config.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let mut aggregator = WindowAggregator::try_new(self.config.clone())?;
        aggregator.watermark_from_rows |= self.merged_watermarks;
        self.node.run(aggregator, vec![input], partition, &context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.node.metrics())
    }
}

mod rule;
pub use rule::{AggregateSettings, WindowAggregateRule, announcing_window_rows, final_window_rows};

#[cfg(test)]
mod tests;
