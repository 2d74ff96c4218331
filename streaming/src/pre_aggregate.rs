//! `PreAggregateExec`: the first phase of a parallel job's window aggregate. Where a
//! `WindowAggregateExec`'s rows must cross an exchange to reach the instance of their key,
//! each instance first aggregates every micro-batch on its own, and only the partial
//! states cross (Flink's local-global aggregation); the aggregate after the exchange merges
//! them (`WindowAggregateConfig::merges`). It keeps nothing between batches, so it takes no
//! part in checkpoints.
//!
//! A partial row stands for rows that the window aggregate would have treated alike: rows
//! of one key in one tumbling window (a sliding window's rows would be merged pane by pane,
//! in another order than they came, which order-dependent aggregates such as ARRAY_AGG
//! would show), on the same side of its closing (its end plus allowed lateness). The
//! aggregate judges a row late by the row's watermark, which the exchange may only lower to
//! what the other senders hold (the same for a whole batch). So rows whose own watermarks
//! are on the same side of the closing are judged alike, and a partial row carries the
//! largest of them, which also keeps the watermark the batch passes on. Its rows' count rides
//! along, so that late partial rows count as the rows they hold.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateMode, aggregate_expressions};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
    apply_expression_roots,
};

use crate::driver::StreamNode;
use crate::event_time::{EVENT_TIME_COLUMN, WATERMARK_COLUMN};
use crate::operator::StreamOperator;
use crate::sliced_state::groups_accumulator;
use crate::window::WindowSpec;
use crate::window_state::{evaluate_all, evaluate_filters, millis};

/// The column of a partial row counting the rows it stands for (its last).
const PRE_AGGREGATED_ROWS: &str = "_pre_aggregated_rows";

/// What a pre-aggregation computes: the window aggregate's groups, aggregates and filters.
#[derive(Debug, Clone)]
pub(crate) struct PreAggregateConfig {
    pub window: WindowSpec,
    pub allowed_lateness: i64,
    /// The GROUP BY expressions and names, the two stamp columns among them when windowed.
    pub group_by: Vec<(Arc<dyn PhysicalExpr>, String)>,
    pub aggr_expr: Vec<Arc<AggregateFunctionExpr>>,
    pub filter_expr: Vec<Option<Arc<dyn PhysicalExpr>>>,
}

impl PreAggregateConfig {
    /// The size of its tumbling window, when windowed.
    fn size(&self) -> Option<i64> {
        match self.window {
            WindowSpec::Tumbling { size } => Some(size),
            WindowSpec::Sliding { .. } | WindowSpec::Session { .. } | WindowSpec::Global => None,
        }
    }

    /// The output: the group columns by name, each aggregate's state fields, the count.
    pub(crate) fn schema(&self, input: &Schema) -> Result<SchemaRef> {
        let mut fields = Vec::new();
        for (expr, name) in &self.group_by {
            fields.push(Field::new(name, expr.data_type(input)?, true));
        }
        for aggregate in &self.aggr_expr {
            fields.extend(aggregate.state_fields()?.iter().map(|f| f.as_ref().clone()));
        }
        fields.push(Field::new(PRE_AGGREGATED_ROWS, DataType::UInt64, false));
        Ok(Arc::new(Schema::new(fields)))
    }
}

/// The plan node around a `PreAggregator`.
#[derive(Debug)]
pub struct PreAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    config: PreAggregateConfig,
    node: StreamNode,
}

impl PreAggregateExec {
    pub(crate) fn try_new(
        input: Arc<dyn ExecutionPlan>,
        config: PreAggregateConfig,
    ) -> Result<Self> {
        let node = StreamNode::new(
            config.schema(&input.schema())?,
            input.properties().output_partitioning().partition_count(),
            input.properties().boundedness,
        );
        Ok(Self {
            input,
            config,
            node,
        })
    }
}

impl DisplayAs for PreAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<&str> = self
            .config
            .group_by
            .iter()
            .map(|(_, name)| name.as_str())
            .filter(|n| *n != EVENT_TIME_COLUMN && *n != WATERMARK_COLUMN)
            .collect();
        let aggregates: Vec<&str> = self.config.aggr_expr.iter().map(|a| a.name()).collect();
        write!(
            f,
            "PreAggregateExec: per micro-batch, window={}, gby=[{}], aggr=[{}]",
            self.config.window,
            keys.join(", "),
            aggregates.join(", ")
        )
    }
}

impl ExecutionPlan for PreAggregateExec {
    fn name(&self) -> &str {
        PreAggregator::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.node.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let group = self.config.group_by.iter().map(|(e, _)| e);
        let filters = self.config.filter_expr.iter().flatten();
        apply_expression_roots(group.chain(filters), f)
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
        let operator = PreAggregator::try_new(&self.config, &self.input.schema(), self.schema())?;
        self.node.run(operator, vec![input], partition, &context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.node.metrics())
    }
}

/// Where a group column of the output comes from.
#[derive(Debug, Clone, Copy)]
enum Output {
    Key(usize),
    Time,
    Mark,
}

/// Aggregates each micro-batch on its own into partial rows.
pub(crate) struct PreAggregator {
    /// The tumbling window's size, when windowed.
    size: Option<i64>,
    allowed_lateness: i64,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    stamp_exprs: Option<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)>,
    outputs: Vec<Output>,
    arg_exprs: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filter_exprs: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The groups of the batch at hand by key, when its rows are of one window and on one
    /// side of its closing (the common case, and the cheaper one); emptied by every batch,
    /// as are the accumulators.
    by_key: Box<dyn GroupValues>,
    /// The groups of the batch at hand by key, window and side of the closing, when windowed.
    by_key_window_side: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    schema: SchemaRef,
}

impl PreAggregator {
    pub(crate) fn try_new(
        config: &PreAggregateConfig,
        input: &Schema,
        schema: SchemaRef,
    ) -> Result<Self> {
        let size = config.size();
        let mut key_exprs = Vec::new();
        let mut key_fields = Vec::new();
        let mut outputs = Vec::new();
        let (mut time, mut mark) = (None, None);
        for (expr, name) in &config.group_by {
            match name.as_str() {
                EVENT_TIME_COLUMN if size.is_some() => {
                    time = Some(expr.clone());
                    outputs.push(Output::Time);
                }
                WATERMARK_COLUMN if size.is_some() => {
                    mark = Some(expr.clone());
                    outputs.push(Output::Mark);
                }
                _ => {
                    outputs.push(Output::Key(key_exprs.len()));
                    key_fields.push(Field::new(name, expr.data_type(input)?, true));
                    key_exprs.push(expr.clone());
                }
            }
        }
        let stamp_exprs = time.zip(mark);
        let groups_of = |fields: Vec<Field>| {
            new_group_values(Arc::new(Schema::new(fields)), &GroupOrdering::None)
        };
        let by_key = groups_of(key_fields.clone())?;
        let by_key_window_side = match stamp_exprs {
            Some(_) => {
                key_fields.push(Field::new("_window", DataType::Int64, false));
                key_fields.push(Field::new("_past_closing", DataType::Boolean, false));
                Some(groups_of(key_fields)?)
            }
            None => None,
        };
        Ok(Self {
            size,
            allowed_lateness: config.allowed_lateness,
            key_exprs,
            stamp_exprs,
            outputs,
            arg_exprs: aggregate_expressions(&config.aggr_expr, &AggregateMode::Single, 0)?,
            filter_exprs: config.filter_expr.clone(),
            by_key,
            by_key_window_side,
            accumulators: config
                .aggr_expr
                .iter()
                .map(groups_accumulator)
                .collect::<Result<_>>()?,
            schema,
        })
    }

    /// Whether watermark `mark` has reached the closing of the window starting at `start`
    /// of `size`: its end plus allowed lateness.
    fn past_closing(&self, start: i64, size: i64, mark: i64) -> bool {
        mark >= start
            .saturating_add(size)
            .saturating_add(self.allowed_lateness)
    }
}

impl StreamOperator for PreAggregator {
    const NAME: &'static str = "PreAggregateExec";

    fn process_batch(&mut self, _input: usize, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(vec![]);
        }
        let keys = evaluate_all(&self.key_exprs, &batch)?;
        let mut group_of_row = Vec::with_capacity(rows);
        // Per row its watermark, window, and side of the window's closing.
        let stamps = match (&self.stamp_exprs, self.size) {
            (Some((time, mark)), Some(size)) => {
                let times = millis(&time.evaluate(&batch)?.into_array(rows)?)?;
                let marks = millis(&mark.evaluate(&batch)?.into_array(rows)?)?;
                let starts: Vec<i64> = times.iter().map(|t| t.div_euclid(size) * size).collect();
                let past: Vec<bool> = starts
                    .iter()
                    .zip(&marks)
                    .map(|(&start, &mark)| self.past_closing(start, size, mark))
                    .collect();
                Some((marks, starts, past))
            }
            _ => None,
        };
        // The window of every row, when they share one and a side of its closing.
        let one_window = stamps.as_ref().and_then(|(_, starts, past)| {
            let first = (starts[0], past[0]);
            let same = starts.iter().zip(past).all(|(&s, &p)| (s, p) == first);
            same.then_some(first.0)
        });
        let (groups, marks) = match (stamps, self.by_key_window_side.as_mut()) {
            (Some((marks, starts, past)), Some(by_key_window_side)) if one_window.is_none() => {
                let mut keys = keys;
                keys.push(Arc::new(Int64Array::from(starts)));
                keys.push(Arc::new(BooleanArray::from(past)));
                by_key_window_side.intern(&keys, &mut group_of_row)?;
                (by_key_window_side, Some(marks))
            }
            (stamps, _) => {
                self.by_key.intern(&keys, &mut group_of_row)?;
                (&mut self.by_key, stamps.map(|(marks, _, _)| marks))
            }
        };
        let total = groups.len();
        let filters = evaluate_filters(&self.filter_exprs, &batch)?;
        for (i, accumulator) in self.accumulators.iter_mut().enumerate() {
            let args = evaluate_all(&self.arg_exprs[i], &batch)?;
            accumulator.update_batch(&args, &group_of_row, filters[i].as_ref(), total)?;
        }
        let mut counts = vec![0u64; total];
        let mut latest_marks = vec![i64::MIN; total];
        for (row, &group) in group_of_row.iter().enumerate() {
            counts[group] += 1;
            if let Some(marks) = &marks {
                latest_marks[group] = latest_marks[group].max(marks[row]);
            }
        }
        let group_columns = groups.emit(EmitTo::All)?;
        // Ready for the next batch, as DataFusion's own aggregation readies them.
        groups.clear_shrink(rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (output, field) in self.outputs.iter().zip(self.schema.fields()) {
            columns.push(match output {
                Output::Key(k) => group_columns[*k].clone(),
                // The window's start stands for its rows' times: it falls in the same window.
                Output::Time => {
                    let starts = match one_window {
                        Some(start) => Arc::new(Int64Array::from(vec![start; total])),
                        None => group_columns[self.key_exprs.len()].clone(),
                    };
                    cast(&starts, field.data_type())?
                }
                Output::Mark => {
                    let marks: ArrayRef =
                        Arc::new(Int64Array::from(std::mem::take(&mut latest_marks)));
                    cast(&marks, field.data_type())?
                }
            });
        }
        for accumulator in &mut self.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        columns.push(Arc::new(UInt64Array::from(counts)));
        // Groups in order of their first rows: an aggregate that depends on the order of its
        // rows (ARRAY_AGG, FIRST_VALUE) merges them in the order it would have read them.
        Ok(vec![RecordBatch::try_new(self.schema.clone(), columns)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregator(window: WindowSpec, allowed_lateness: i64) -> PreAggregator {
        let config = PreAggregateConfig {
            window,
            allowed_lateness,
            group_by: vec![],
            aggr_expr: vec![],
            filter_expr: vec![],
        };
        let schema = config.schema(&Schema::empty()).unwrap();
        PreAggregator::try_new(&config, &Schema::empty(), schema).unwrap()
    }

    /// A row is past its window's closing once its watermark reaches the window's end plus
    /// allowed lateness.
    #[test]
    fn rows_are_past_the_closing_from_the_windows_end_plus_allowed_lateness() {
        let tumbling = aggregator(WindowSpec::Tumbling { size: 60 }, 5);
        assert_eq!(tumbling.size, Some(60));
        let past: Vec<bool> = [0, 124, 125, 1000]
            .iter()
            .map(|&mark| tumbling.past_closing(60, 60, mark))
            .collect();
        assert_eq!(past, vec![false, false, true, true]);
        assert_eq!(
            aggregator(WindowSpec::Sliding { size: 10, slide: 4 }, 0).size,
            None
        );
    }
}
