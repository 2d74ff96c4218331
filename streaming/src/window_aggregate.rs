//! `WindowAggregateExec`: GROUP BY per event-time window, incrementally, over an unbounded
//! stream, with DataFusion's own aggregate functions.
//!
//! It takes the place of DataFusion's `AggregateExec` in a streaming plan. The group columns
//! named [`EVENT_TIME_COLUMN`] and [`WATERMARK_COLUMN`] carry each row's event time and the
//! watermark before it (stamped at the source); the operator assigns rows to windows, drops
//! (or dead-letters) late rows, and emits a window's rows once the watermark passes its end
//! (`EMIT FINAL`) or the changed groups after every micro-batch (`EMIT CHANGES`), with the
//! window's start and end in those two columns.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, TimestampMillisecondArray, UInt8Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::aggregates::{
    AggregateMode, PhysicalGroupBy, aggregate_expressions,
};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, Gauge, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, apply_expression_roots,
};
use futures::{FutureExt, StreamExt};

use crate::checkpoint::{CheckpointBarrier, OperatorBarrier, barrier_changed};
use crate::error::StreamingError;
use crate::event_time::{EVENT_TIME_COLUMN, WATERMARK_COLUMN, WatermarkSpec};
use crate::late::LateDataPolicy;
use crate::session_state::SessionState;
use crate::sliced_state::SlicedState;
use crate::state_memory::StateMemory;
use crate::window::WindowSpec;
use crate::window_state::{Evaluated, WindowRows, WindowState};

/// When results leave the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// After each micro-batch, the current row of every group it changed.
    Changes,
    /// Once per window and group, when the watermark passes the window's end.
    Final,
}

impl fmt::Display for EmitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Changes => "CHANGES",
            Self::Final => "FINAL",
        })
    }
}

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
    /// then, for a changelog, [`OP_COLUMN`].
    pub output_schema: SchemaRef,
    /// A changelog (a keyed table's `EMIT CHANGES`): rows carry [`OP_COLUMN`], and a group
    /// that stops matching `having` is retracted.
    pub changelog: bool,
    /// The HAVING predicate over group and aggregate columns, evaluated here so that a row
    /// that stops matching can be retracted.
    pub having: Option<Arc<dyn PhysicalExpr>>,
}

/// Why an aggregate with grouping sets cannot be a streaming one.
pub const GROUPING_SETS_UNSUPPORTED: &str =
    "GROUPING SETS, CUBE and ROLLUP are not supported in streaming aggregates";

/// The change a changelog row makes: `+U` (upsert) or `-D` (retraction of its key).
pub const OP_COLUMN: &str = "_op";

impl WindowAggregateConfig {
    /// The output schema for an aggregate's schema: with [`OP_COLUMN`] for a changelog.
    pub fn output_schema_for(aggregate_schema: &SchemaRef, changelog: bool) -> SchemaRef {
        if !changelog {
            return aggregate_schema.clone();
        }
        let mut fields: Vec<Field> = aggregate_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        Arc::new(Schema::new_with_metadata(
            fields,
            aggregate_schema.metadata().clone(),
        ))
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
pub struct WindowAggregator {
    config: Arc<WindowAggregateConfig>,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    stamp_exprs: Option<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)>,
    columns: Vec<GroupColumn>,
    arg_exprs: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// No GROUP BY keys: one constant key stands in, and is not output.
    constant_key: bool,
    state: Box<dyn WindowState>,
    watermark: i64,
    late_records: usize,
    /// Changelog with HAVING: the keys whose latest row matched, so a retraction is due
    /// when one stops matching.
    visible: Option<(RowConverter, HashSet<OwnedRow>)>,
}

impl WindowAggregator {
    /// An aggregator with empty state.
    pub fn try_new(config: WindowAggregateConfig) -> Result<Self> {
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
            spec => Box::new(SlicedState::try_new(spec, allowed, aggregates, key_schema)?),
        };
        let arg_exprs = aggregate_expressions(&config.aggr_expr, &AggregateMode::Single, 0)?;
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
            config: Arc::new(config),
            key_exprs,
            stamp_exprs,
            columns,
            arg_exprs,
            constant_key,
            state,
            watermark: i64::MIN,
            late_records: 0,
        })
    }

    /// Records dropped or dead-lettered for lateness so far.
    pub fn late_records(&self) -> usize {
        self.late_records
    }

    /// Bytes of keyed state held.
    pub fn state_size(&self) -> usize {
        self.state.size()
    }

    /// The watermark the operator has seen (epoch ms; `i64::MIN` before any row).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Aggregates a micro-batch; returns the rows it makes ready.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let rows = batch.num_rows();
        let evaluate =
            |e: &Arc<dyn PhysicalExpr>| e.evaluate(batch).and_then(|v| v.into_array(rows));
        let keys = if self.constant_key {
            vec![Arc::new(UInt8Array::from(vec![0; rows])) as ArrayRef]
        } else {
            self.key_exprs.iter().map(evaluate).collect::<Result<_>>()?
        };
        let args = self
            .arg_exprs
            .iter()
            .map(|exprs| exprs.iter().map(evaluate).collect::<Result<Vec<_>>>())
            .collect::<Result<_>>()?;
        let filters = self
            .config
            .filter_expr
            .iter()
            .map(|f| match f {
                Some(f) => Ok(Some(evaluate(f)?.as_boolean().clone())),
                None => Ok(None),
            })
            .collect::<Result<Vec<Option<BooleanArray>>>>()?;
        let input = Evaluated {
            keys,
            args,
            filters,
        };
        let (times, mut marks) = match &self.stamp_exprs {
            Some((time, mark)) => (millis(&evaluate(time)?)?, millis(&evaluate(mark)?)?),
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
            self.late_records += late.len();
            if let LateDataPolicy::DeadLetter(sink) = &self.config.late {
                let indices = arrow::array::UInt32Array::from(late);
                sink.write(&arrow::compute::take_record_batch(batch, &indices)?)?;
            }
        }
        // W after the batch: the largest of the rows' W before them and times less the bound.
        // A partitioned source's W is the least over its partitions, which only its stamper
        // knows: there the rows' W alone counts (one row behind, until the next batch).
        let bound = self.config.watermark.max_out_of_orderness.as_millis() as i64;
        let latest = match self.config.watermark.partition_field {
            Some(_) => i64::MIN,
            None => times
                .iter()
                .max()
                .map_or(i64::MIN, |t| t.saturating_sub(bound)),
        };
        let marked = marks.iter().copied().max().unwrap_or(i64::MIN);
        self.watermark = self.watermark.max(latest).max(marked);
        self.emit()
    }

    /// Processing time has reached `now` (epoch ms): windows that ended before it close even
    /// when no row arrives.
    pub fn advance_to(&mut self, now: i64) -> Result<Vec<RecordBatch>> {
        if now <= self.watermark {
            return Ok(vec![]);
        }
        self.watermark = now;
        self.emit()
    }

    /// The input has ended: the watermark goes to +∞ and every window is emitted.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.watermark = i64::MAX;
        self.emit()
    }

    fn emit(&mut self) -> Result<Vec<RecordBatch>> {
        let rows = self.state.emit(self.watermark, self.config.emit)?;
        let mut batches = Vec::with_capacity(rows.len());
        for rows in rows.into_iter().filter(|r| !r.starts.is_empty()) {
            let batch = self.output_batch(rows)?;
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    fn output_batch(&mut self, rows: WindowRows) -> Result<RecordBatch> {
        let schema = self.config.output_schema.clone();
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
        columns.extend(rows.values);
        let aggregate_fields = &schema.fields()[..columns.len()];
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(aggregate_fields.to_vec())), columns)?;
        let batch = match &self.config.having {
            Some(having) => self.apply_having(having.clone(), batch)?,
            None if self.config.changelog => {
                let ops = rows
                    .retract
                    .iter()
                    .map(|&r| if r { "-D" } else { "+U" })
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
                ops.push("+U");
            } else if visible.remove(&key.owned()) {
                keep.push(true);
                ops.push("-D");
            } else {
                keep.push(false);
            }
        }
        let batch = arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))?;
        with_ops(batch, ops)
    }

    /// The operator's state as one batch, with the watermark in its schema metadata.
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
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

    /// Replaces the state with a snapshot's.
    pub fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
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
}

/// The batch with an [`OP_COLUMN`] of `ops`.
fn with_ops(batch: RecordBatch, ops: Vec<&str>) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::StringArray::from(ops)));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn millis(array: &ArrayRef) -> Result<Vec<i64>> {
    let values = cast(array, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    if values.null_count() > 0 {
        return Err(StreamingError::EventTime(
            "a row reached the window operator without event time".into(),
        )
        .into());
    }
    Ok(values.values().to_vec())
}

/// How often processing-time windows look at the clock.
const PROCESSING_TIME_TICK: std::time::Duration = std::time::Duration::from_millis(200);

/// The plan node around a [`WindowAggregator`].
#[derive(Debug)]
pub struct WindowAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    config: WindowAggregateConfig,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl WindowAggregateExec {
    /// Replaces an aggregate over `input` with the configured windowed one.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, config: WindowAggregateConfig) -> Result<Self> {
        // Fail at planning, not at the first batch.
        WindowAggregator::try_new(config.clone())?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(config.output_schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            input.properties().boundedness,
        );
        Ok(Self {
            input,
            config,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WindowAggregateConfig {
        &self.config
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
        if config.window.is_windowed() {
            write!(f, ", late={}, {}", config.late, config.watermark)?;
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
        Ok(())
    }
}

impl ExecutionPlan for WindowAggregateExec {
    fn name(&self) -> &str {
        "WindowAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
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
        let memory = StateMemory::new("WindowAggregateExec", partition, &context, &self.metrics);
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let late = MetricBuilder::new(&self.metrics).counter("late_records", partition);
        let watermark = MetricBuilder::new(&self.metrics).gauge("watermark_ms", partition);
        let mut aggregator = WindowAggregator::try_new(self.config.clone())?;
        let barrier =
            CheckpointBarrier::register_task_operator(&context, |s| aggregator.restore(s))?;
        let state = StreamState {
            input,
            aggregator,
            pending: VecDeque::new(),
            memory,
            output_rows,
            late,
            watermark,
            clock: (self.config.window.is_windowed() && self.config.watermark.field.is_none())
                .then_some(PROCESSING_TIME_TICK),
            barrier,
            done: false,
        };
        let output = futures::stream::unfold(state, |mut state| async move {
            let next = state.next().await;
            next.map(|batch| (batch, state))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.config.output_schema.clone(),
            output,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

struct StreamState {
    input: SendableRecordBatchStream,
    aggregator: WindowAggregator,
    pending: VecDeque<RecordBatch>,
    memory: StateMemory,
    output_rows: Count,
    late: Count,
    /// The watermark (epoch ms), once there is one.
    watermark: Gauge,
    /// On processing time, how often the clock advances the watermark.
    clock: Option<std::time::Duration>,
    /// The job's checkpoint barrier.
    barrier: Option<OperatorBarrier>,
    done: bool,
}

/// What woke the operator.
enum Wake {
    Input(Option<Result<RecordBatch>>),
    /// Processing time moved on.
    Tick,
    /// The checkpoint barrier changed: a snapshot may be due.
    Barrier,
}

impl StreamState {
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                self.output_rows.add(batch.num_rows());
                return Some(Ok(batch));
            }
            if self.done {
                return None;
            }
            if let Some(barrier) = &self.barrier
                && let Some(epoch) = barrier.snapshot_due()
            {
                // Every source holds back: what the input still has ready was read before
                // the cut and belongs in the snapshot; once it has nothing, snapshot.
                match self.input.next().now_or_never() {
                    Some(next) => {
                        if let Err(e) = self.take(next) {
                            return Some(Err(e));
                        }
                    }
                    None => match self.aggregator.snapshot() {
                        Ok(snapshot) => barrier.snapshot(epoch, snapshot),
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    },
                }
                continue;
            }
            let period = self.clock;
            let barrier = self.barrier.as_mut();
            let input = &mut self.input;
            let wake = tokio::select! {
                biased;
                next = input.next() => Wake::Input(next),
                _ = barrier_changed(barrier) => Wake::Barrier,
                // On processing time, the clock closes windows too.
                _ = async {
                    match period {
                        Some(period) => tokio::time::sleep(period).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Tick,
            };
            let taken = match wake {
                Wake::Input(next) => self.take(next),
                Wake::Barrier => Ok(()),
                Wake::Tick => {
                    let now = chrono::Utc::now().timestamp_millis();
                    self.aggregator
                        .advance_to(now)
                        .map(|batches| self.pending.extend(batches))
                }
            };
            if let Err(e) = taken {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// Aggregates what the input gave (a batch, its end, or an error).
    fn take(&mut self, next: Option<Result<RecordBatch>>) -> Result<()> {
        let produced = match next {
            Some(Ok(batch)) => {
                let late_before = self.aggregator.late_records();
                let out = self.aggregator.process(&batch);
                self.late.add(self.aggregator.late_records() - late_before);
                out.and_then(|out| self.account().map(|()| out))
            }
            Some(Err(e)) => Err(e),
            None => {
                self.done = true;
                self.aggregator.finish()
            }
        };
        match produced {
            Ok(batches) => {
                self.pending.extend(batches);
                Ok(())
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn account(&mut self) -> Result<()> {
        let needed = self.aggregator.state_size();
        let watermark = self.aggregator.watermark();
        if watermark > 0 && watermark < i64::MAX {
            self.watermark.set(watermark as usize);
        }
        self.memory.resize(needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use crate::event_time::stamp_type;
    use crate::late::LateRecordSink;

    /// Rows of (key, event time ms, value), stamped with a watermark bound of `bound` ms.
    fn stamped(rows: &[(&str, i64, i64)], bound: i64) -> RecordBatch {
        let mut max = i64::MIN;
        let marks: Vec<i64> = rows
            .iter()
            .map(|r| {
                let w = max.saturating_sub(bound);
                max = max.max(r.1);
                w
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
            Field::new(EVENT_TIME_COLUMN, stamp_type(), false),
            Field::new(WATERMARK_COLUMN, stamp_type(), false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(TimestampMillisecondArray::from(marks)),
            ],
        )
        .unwrap()
    }

    /// A config from DataFusion's own plan of a GROUP BY over stamped rows.
    async fn config(
        window: WindowSpec,
        emit: EmitMode,
        late: LateDataPolicy,
        bound: i64,
    ) -> WindowAggregateConfig {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let batch = stamped(&[], bound);
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let group = if window.is_windowed() {
            "k, _window_start, _window_end"
        } else {
            "k"
        };
        let plan = ctx
            .sql(&format!(
                "SELECT {group}, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY {group}"
            ))
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let mut node = plan;
        loop {
            if let Some(aggregate) =
                node.downcast_ref::<datafusion::physical_plan::aggregates::AggregateExec>()
            {
                return WindowAggregateConfig {
                    window,
                    emit,
                    late,
                    watermark: WatermarkSpec {
                        field: Some("ts".into()),
                        format: None,
                        max_out_of_orderness: std::time::Duration::from_millis(bound as u64),
                        ..Default::default()
                    },
                    group_by: aggregate.group_expr().clone(),
                    aggr_expr: aggregate.aggr_expr().to_vec(),
                    filter_expr: aggregate.filter_expr().to_vec(),
                    output_schema: aggregate.schema(),
                    changelog: false,
                    having: None,
                };
            }
            node = node.children()[0].clone();
        }
    }

    fn text(batches: &[RecordBatch]) -> String {
        pretty_format_batches(batches).unwrap().to_string()
    }

    /// Runs rows through in batches of `size`, optionally snapshotting and restoring into a
    /// fresh aggregator after `restart_after` batches.
    fn run(
        config: &WindowAggregateConfig,
        rows: &RecordBatch,
        size: usize,
        restart_after: Option<usize>,
    ) -> (Vec<RecordBatch>, usize) {
        let mut aggregator = WindowAggregator::try_new(config.clone()).unwrap();
        let mut out = Vec::new();
        let mut offset = 0;
        let mut batches = 0;
        while offset < rows.num_rows() {
            let len = size.min(rows.num_rows() - offset);
            out.extend(aggregator.process(&rows.slice(offset, len)).unwrap());
            offset += len;
            batches += 1;
            if restart_after == Some(batches) {
                let snapshot = aggregator.snapshot().unwrap();
                aggregator = WindowAggregator::try_new(config.clone()).unwrap();
                aggregator.restore(&snapshot).unwrap();
            }
        }
        out.extend(aggregator.finish().unwrap());
        (out, aggregator.late_records())
    }

    fn trades() -> RecordBatch {
        stamped(
            &[
                ("a", 1_000, 1),
                ("b", 2_500, 2),
                ("a", 9_000, 3),
                ("a", 11_000, 4),
                ("b", 7_000, 5), // W = 9s: [0, 10s) is still open
                ("a", 25_000, 6),
                ("b", 3_000, 7), // W = 23s: [0, 10s) is final, so late
                ("b", 31_000, 8),
            ],
            2_000,
        )
    }

    #[tokio::test]
    async fn tumbling_final_emits_closed_windows_and_drops_late_rows() {
        let config = config(
            WindowSpec::Tumbling { size: 10_000 },
            EmitMode::Final,
            LateDataPolicy::Drop,
            2_000,
        )
        .await;
        let (out, late) = run(&config, &trades(), 8, None);
        assert_eq!(late, 1);
        let expected = "\
+---+---------------------+---------------------+-----------------+----------+
| k | _window_start       | _window_end         | count(Int64(1)) | sum(t.v) |
+---+---------------------+---------------------+-----------------+----------+
| a | 1970-01-01T00:00:00 | 1970-01-01T00:00:10 | 2               | 4        |
| b | 1970-01-01T00:00:00 | 1970-01-01T00:00:10 | 2               | 7        |
| a | 1970-01-01T00:00:10 | 1970-01-01T00:00:20 | 1               | 4        |
| a | 1970-01-01T00:00:20 | 1970-01-01T00:00:30 | 1               | 6        |
| b | 1970-01-01T00:00:30 | 1970-01-01T00:00:40 | 1               | 8        |
+---+---------------------+---------------------+-----------------+----------+";
        assert_eq!(text(&out), expected);
        for size in [1, 3] {
            assert_eq!(
                text(&run(&config, &trades(), size, None).0),
                expected,
                "batch size {size}"
            );
        }
    }

    #[tokio::test]
    async fn snapshot_and_restore_continue_every_window_kind_exactly() {
        let kinds = [
            (WindowSpec::Tumbling { size: 10_000 }, EmitMode::Final),
            (
                WindowSpec::Sliding {
                    size: 10_000,
                    slide: 5_000,
                },
                EmitMode::Final,
            ),
            (WindowSpec::Session { gap: 4_000 }, EmitMode::Final),
            (WindowSpec::Tumbling { size: 10_000 }, EmitMode::Changes),
            (WindowSpec::Global, EmitMode::Changes),
        ];
        for (window, emit) in kinds {
            let config = config(window, emit, LateDataPolicy::Drop, 2_000).await;
            let whole = run(&config, &trades(), 2, None);
            for restart in 1..4 {
                let restored = run(&config, &trades(), 2, Some(restart));
                assert_eq!(
                    text(&restored.0),
                    text(&whole.0),
                    "{window} {emit} restored after {restart} batches"
                );
                assert_eq!(restored.1, whole.1);
            }
        }
    }

    #[tokio::test]
    async fn sessions_merge_when_an_event_bridges_them() {
        let config = config(
            WindowSpec::Session { gap: 4_000 },
            EmitMode::Final,
            LateDataPolicy::Drop,
            10_000,
        )
        .await;
        let rows = stamped(
            &[
                ("a", 1_000, 1),
                ("a", 8_000, 2),
                ("a", 4_500, 3),
                ("a", 30_000, 4),
            ],
            10_000,
        );
        let (out, _) = run(&config, &rows, 1, None);
        let expected = "\
+---+---------------------+---------------------+-----------------+----------+
| k | _window_start       | _window_end         | count(Int64(1)) | sum(t.v) |
+---+---------------------+---------------------+-----------------+----------+
| a | 1970-01-01T00:00:01 | 1970-01-01T00:00:12 | 3               | 6        |
| a | 1970-01-01T00:00:30 | 1970-01-01T00:00:34 | 1               | 4        |
+---+---------------------+---------------------+-----------------+----------+";
        assert_eq!(text(&out), expected);
    }

    #[tokio::test]
    async fn session_changes_retract_the_row_of_a_session_merged_away() {
        let mut config = config(
            WindowSpec::Session { gap: 4_000 },
            EmitMode::Changes,
            LateDataPolicy::Drop,
            10_000,
        )
        .await;
        config.output_schema =
            WindowAggregateConfig::output_schema_for(&config.output_schema, true);
        config.changelog = true;
        let rows = stamped(&[("a", 1_000, 1), ("a", 8_000, 2), ("a", 4_500, 3)], 10_000);
        let (out, _) = run(&config, &rows, 1, None);
        let lines: Vec<String> = text(&out)
            .lines()
            .filter(|l| l.contains("| a "))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            lines,
            [
                "a 1970-01-01T00:00:01 1970-01-01T00:00:05 1 1 +U",
                "a 1970-01-01T00:00:08 1970-01-01T00:00:12 1 2 +U",
                "a 1970-01-01T00:00:08 1970-01-01T00:00:12 1 2 -D",
                "a 1970-01-01T00:00:01 1970-01-01T00:00:12 3 6 +U",
            ]
        );
    }

    #[tokio::test]
    async fn allowed_lateness_emits_a_corrected_row() {
        let config = config(
            WindowSpec::Tumbling { size: 10_000 },
            EmitMode::Final,
            LateDataPolicy::AllowedLateness(5_000),
            0,
        )
        .await;
        let rows = stamped(
            &[
                ("a", 1_000, 1),
                ("a", 11_000, 2),
                ("a", 2_000, 3),
                ("a", 16_000, 4),
                ("a", 3_000, 5),
            ],
            0,
        );
        let (out, late) = run(&config, &rows, 1, None);
        assert_eq!(
            late, 1,
            "the record after W passed end + lateness is dropped"
        );
        let totals: Vec<String> = text(&out)
            .lines()
            .filter(|l| l.contains("| a "))
            .map(|l| l.split('|').nth(5).unwrap().trim().to_string())
            .collect();
        // [0,10s): final 1, corrected to 4; [10s,20s): final 6.
        assert_eq!(totals, ["1", "4", "6"]);
    }

    #[derive(Debug, Default)]
    struct Collect(std::sync::Mutex<Vec<RecordBatch>>);

    impl LateRecordSink for Collect {
        fn write(&self, late: &RecordBatch) -> Result<()> {
            self.0.lock().unwrap().push(late.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn dead_lettered_late_rows_keep_their_columns() {
        let sink = Arc::new(Collect::default());
        let config = config(
            WindowSpec::Tumbling { size: 10_000 },
            EmitMode::Final,
            LateDataPolicy::DeadLetter(sink.clone()),
            2_000,
        )
        .await;
        run(&config, &trades(), 3, None);
        let late = sink.0.lock().unwrap();
        assert_eq!(late.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        assert!(
            text(&late).contains("| b | 7 | 1970-01-01T00:00:03"),
            "{}",
            text(&late)
        );
    }

    #[tokio::test]
    async fn state_over_the_memory_limit_is_a_clear_error() {
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        let config = config(
            WindowSpec::Global,
            EmitMode::Changes,
            LateDataPolicy::Drop,
            0,
        )
        .await;
        let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
        let rows: Vec<(&str, i64, i64)> = keys.iter().map(|k| (k.as_str(), 0, 1)).collect();
        let batch = stamped(&rows, 0);
        let input = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            &[vec![batch.clone()]],
            batch.schema(),
            None,
        )
        .unwrap();
        let exec = WindowAggregateExec::try_new(input, config).unwrap();
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(64 * 1024, 1.0)
            .build_arc()
            .unwrap();
        let ctx = Arc::new(TaskContext::default().with_runtime(runtime));
        let mut stream = exec.execute(0, ctx).unwrap();
        let err = stream.next().await.unwrap().unwrap_err().to_string();
        assert!(err.contains("over the job's 'state.memory.limit'"), "{err}");
    }
}
