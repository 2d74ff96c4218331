//! The planner rule that puts [`WindowAggregateExec`] in place of DataFusion's aggregates on a
//! query's stream: each window's (a window may aggregate the final rows of the window below
//! it), and a keyed table's (without a window, or over a window's rows). A keyed table's
//! changelog takes the HAVING filter on it into the operator, and every projection above
//! carries its `_op` column through.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::tree_node::TreeNode;
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};

use super::{GROUPING_SETS_UNSUPPORTED, WindowAggregateConfig, WindowAggregateExec};
use crate::changelog::carry_op_column;
use crate::event_time::WatermarkSpec;
use crate::late::LateDataPolicy;
use crate::lookup_join::LookupJoinExec;
use crate::top_n::RANKED_CHANGELOG;
use crate::window::{EmitMode, WindowSpec};
use crate::window_rows_map::WindowRowsMapExec;

/// How one aggregate of a streaming query runs.
#[derive(Debug, Clone)]
pub struct AggregateSettings {
    /// The window (`Global` for a keyed table).
    pub window: WindowSpec,
    /// When rows are emitted.
    pub emit: EmitMode,
    /// What late rows get.
    pub late: LateDataPolicy,
    /// How the time source stamps its rows.
    pub watermark: WatermarkSpec,
    /// How long a keyed table's key is kept without an update (`'state.ttl'`).
    pub state_ttl: Option<Duration>,
}

/// Replaces the aggregates on a query's stream, met from the top down through every input
/// of each operator but the table side of a lookup join: the last `windows.len()` of them
/// are the windows, outermost first; the first above them is `keyed`; any between are left
/// to DataFusion.
#[derive(Debug)]
pub struct WindowAggregateRule {
    /// Each window's settings, outermost first: the last aggregates the sources' rows, each
    /// other one the final rows of the window after it.
    pub windows: Vec<AggregateSettings>,
    /// How an aggregate by keys runs (the query's without a window, or one over the windows'
    /// rows); `None`: it is left to DataFusion.
    pub keyed: Option<AggregateSettings>,
}

/// Why a window whose rows are aggregated again cannot allow lateness.
const EMITTED_AGAIN: &str = "'late.data.allowed.lateness' emits a window's rows again as late records come, and an aggregate over them would count them twice: a window whose rows are aggregated again emits each window once";

impl PhysicalOptimizerRule for WindowAggregateRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let found = stream_aggregates(&plan);
        // Fewer aggregates than windows: refused once the plan is finished.
        let Some(above) = found.checked_sub(self.windows.len()) else {
            return Ok(plan);
        };
        let mut levels = VecDeque::with_capacity(found);
        if above > 0 {
            levels.push_back(self.keyed.clone());
            levels.extend(std::iter::repeat_n(None, above - 1));
        }
        for (level, window) in self.windows.iter().enumerate() {
            let mut settings = window.clone();
            // A window aggregated again gives its final rows.
            if level == 0 && above > 0 {
                settings.emit = EmitMode::Final;
            }
            levels.push_back(Some(settings));
        }
        let aggregated_again = above > 0 || self.windows.len() > 1;
        if aggregated_again
            && self
                .windows
                .last()
                .is_some_and(|w| w.late.allowed_lateness() > 0)
        {
            return Err(DataFusionError::Plan(EMITTED_AGAIN.into()));
        }
        let plan = replace(plan, &mut levels, false)?;
        let changelog = plan.exists(|node| {
            Ok(node
                .downcast_ref::<WindowAggregateExec>()
                .is_some_and(|w| w.config().changelog))
        })?;
        if !changelog {
            return Ok(plan);
        }
        carry_op_column(plan)
    }

    fn name(&self) -> &str {
        "window_aggregate"
    }

    fn schema_check(&self) -> bool {
        // A changelog's projections gain `_op`.
        false
    }
}

/// Whether `node` is an aggregate that computes its rows (not the partial phase of one).
fn aggregate(node: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    node.downcast_ref::<AggregateExec>()
        .filter(|a| *a.mode() != AggregateMode::Partial)
}

/// Which of `node`'s inputs the query's stream flows through: all, but a lookup join's
/// stream side only.
fn on_stream(node: &Arc<dyn ExecutionPlan>, input: usize) -> bool {
    node.downcast_ref::<LookupJoinExec>()
        .is_none_or(|_| input == LookupJoinExec::STREAM_INPUT)
}

/// How many aggregates the query's stream flows through.
fn stream_aggregates(node: &Arc<dyn ExecutionPlan>) -> usize {
    let own = usize::from(aggregate(node).is_some());
    let below: usize = node
        .children()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| on_stream(node, *i))
        .map(|(_, child)| stream_aggregates(child))
        .sum();
    own + below
}

/// `node` with the aggregates on its stream replaced as `levels` say, in the order
/// [`stream_aggregates`] counts them; `ranked`: a window function (a ranking) reads its rows.
fn replace(
    node: Arc<dyn ExecutionPlan>,
    levels: &mut VecDeque<Option<AggregateSettings>>,
    ranked: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    if levels.is_empty() {
        return Ok(node);
    }
    // A ranking of a changelog's rows would take its retractions for rows.
    if ranked
        && aggregate(&node).is_some()
        && levels
            .front()
            .and_then(Option::as_ref)
            .is_some_and(|s| s.emit == EmitMode::Changes)
    {
        return Err(DataFusionError::Plan(RANKED_CHANGELOG.into()));
    }
    // A keyed table evaluates HAVING itself, to retract a key that stops matching it. (A
    // window's rows are never retracted for HAVING: it stays a filter above the operator.)
    let keyed_changelog = levels
        .front()
        .and_then(Option::as_ref)
        .is_some_and(|s| s.emit == EmitMode::Changes && s.window == WindowSpec::Global);
    if let Some(filter) = node.downcast_ref::<FilterExec>()
        && keyed_changelog
        && filter.projection().is_none()
        && let Some(aggregate) = aggregate(filter.input())
    {
        let settings = levels.pop_front().flatten().expect("a keyed changelog's");
        let having = Some(filter.predicate().clone());
        return window_aggregate(aggregate, &settings, having, levels);
    }
    let own = aggregate(&node);
    if let Some(aggregate) = own
        && let Some(settings) = levels.pop_front().expect("not empty")
    {
        return window_aggregate(aggregate, &settings, None, levels);
    }
    let ranked = match own {
        Some(_) => false,
        None => ranked || node.downcast_ref::<BoundedWindowAggExec>().is_some(),
    };
    let mut children = Vec::new();
    for (i, child) in node.children().into_iter().enumerate() {
        children.push(match on_stream(&node, i) {
            true => replace(child.clone(), levels, ranked)?,
            false => child.clone(),
        });
    }
    replace_children_if_necessary(node, children)
}

/// The window aggregate in place of `aggregate`, run as `settings` say, over its input with
/// the aggregates below replaced as `levels` say.
fn window_aggregate(
    aggregate: &AggregateExec,
    settings: &AggregateSettings,
    having: Option<Arc<dyn PhysicalExpr>>,
    levels: &mut VecDeque<Option<AggregateSettings>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    // EMIT CHANGES output is a changelog: every row says whether it upserts or retracts.
    let changelog = settings.emit == EmitMode::Changes;
    let output_schema = WindowAggregateConfig::output_schema_for(&aggregate.schema(), changelog);
    let aggregate = single_phase(aggregate)?;
    // An input of several partitions (a UNION ALL) is merged in front of the operator by the
    // plan's parallelization, as any other distribution.
    let input = replace(aggregate.input().clone(), levels, false)?;
    // A window over a window's rows: the inner window announces its watermark, and the
    // projections and filters between pass it on.
    let over_window = settings.window.is_windowed() && windowed_below(&input);
    let input = match over_window {
        true => announcing_window_rows(&input)?.ok_or_else(|| {
            DataFusionError::Plan(
                "a window over a window's rows reads them through projections and filters only (not a join, a Top-N or another aggregate between them)".into(),
            )
        })?,
        false => input,
    };
    let config = WindowAggregateConfig {
        window: settings.window,
        emit: settings.emit,
        late: settings.late.clone(),
        watermark: settings.watermark.clone(),
        group_by: aggregate.group_expr().clone(),
        aggr_expr: aggregate.aggr_expr().to_vec(),
        filter_expr: aggregate.filter_expr().to_vec(),
        output_schema,
        changelog,
        having,
        merges: false,
        state_ttl: settings.state_ttl,
        over_window,
        announces_watermark: false,
    };
    Ok(Arc::new(WindowAggregateExec::try_new(input, config)?))
}

/// Whether the query's stream under `node` flows through a window aggregate over windows.
fn windowed_below(node: &Arc<dyn ExecutionPlan>) -> bool {
    let windowed = node
        .downcast_ref::<WindowAggregateExec>()
        .is_some_and(|w| w.config().window.is_windowed());
    windowed
        || node
            .children()
            .into_iter()
            .enumerate()
            .any(|(i, child)| on_stream(node, i) && windowed_below(child))
}

/// The one aggregate that computes `aggregate` from its input rows: itself, or the partial
/// aggregate under a final one. DataFusion plans an aggregate in two phases when its input
/// has several partitions (a UNION ALL) and for grouping sets; the streaming operator keeps
/// whole states, so it takes the partial phase's input and aggregates, and refuses grouping
/// sets (the operator itself rejects grouping sets planned in one phase).
fn single_phase(aggregate: &AggregateExec) -> Result<&AggregateExec> {
    if matches!(
        aggregate.mode(),
        AggregateMode::Single | AggregateMode::SinglePartitioned
    ) {
        return Ok(aggregate);
    }
    let mut input = aggregate.input();
    while input.downcast_ref::<CoalescePartitionsExec>().is_some()
        || input.downcast_ref::<RepartitionExec>().is_some()
    {
        input = input.children()[0];
    }
    match input.downcast_ref::<AggregateExec>() {
        Some(partial)
            if *partial.mode() == AggregateMode::Partial && partial.group_expr().is_single() =>
        {
            Ok(partial)
        }
        _ => Err(DataFusionError::Plan(GROUPING_SETS_UNSUPPORTED.into())),
    }
}

/// `plan`, projections and filters over a window aggregate's final rows, with the window
/// announcing its watermark ([`WindowAggregateConfig::announces_watermark`]) and
/// [`WindowRowsMapExec`]s in their place, which pass it on: for an operator over them that
/// needs it. `None` if `plan` is not that.
pub fn announcing_window_rows(
    plan: &Arc<dyn ExecutionPlan>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(window) = plan.downcast_ref::<WindowAggregateExec>() {
        if !window.config().emits_each_window_once() {
            return Ok(None);
        }
        let config = WindowAggregateConfig {
            announces_watermark: true,
            ..window.config().clone()
        };
        let exec = WindowAggregateExec::try_new(window.input().clone(), config)?;
        return Ok(Some(Arc::new(exec)));
    }
    let [child] = plan.children()[..] else {
        return Ok(None);
    };
    let Some(input) = announcing_window_rows(child)? else {
        return Ok(None);
    };
    Ok(match plan.downcast_ref::<CooperativeExec>() {
        Some(_) => Some(replace_children_if_necessary(plan.clone(), vec![input])?),
        None => WindowRowsMapExec::of(plan, input).map(|map| Arc::new(map) as _),
    })
}

/// The window aggregate whose final rows `plan` passes on, through projections and filters
/// alone (which pass its announced watermark on, as [`WindowRowsMapExec`]s), if it does and
/// it emits each window once;
/// with it, where column `column` of `plan` comes from in its output, if that is a column
/// passed on as it is.
pub fn final_window_rows(
    plan: &Arc<dyn ExecutionPlan>,
    column: Option<usize>,
) -> Option<(&WindowAggregateExec, Option<usize>)> {
    if let Some(window) = plan.downcast_ref::<WindowAggregateExec>() {
        return window
            .config()
            .emits_each_window_once()
            .then_some((window, column));
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let column = column.and_then(|c| {
            let expr = &projection.expr().get(c)?.expr;
            Some(expr.downcast_ref::<Column>()?.index())
        });
        return final_window_rows(projection.input(), column);
    }
    if let Some(filter) = plan
        .downcast_ref::<FilterExec>()
        .filter(|f| f.fetch().is_none())
    {
        let column = match filter.projection() {
            Some(columns) => column.and_then(|c| columns.get(c).copied()),
            None => column,
        };
        return final_window_rows(filter.input(), column);
    }
    if let Some(map) = plan.downcast_ref::<WindowRowsMapExec>() {
        return final_window_rows(map.input(), column.and_then(|c| map.input_column(c)));
    }
    if let Some(cooperative) = plan.downcast_ref::<CooperativeExec>() {
        return final_window_rows(cooperative.input(), column);
    }
    None
}
