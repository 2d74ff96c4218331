//! A [`WindowAggregateExec`] in place of the query's top-most aggregate: its groups kept as
//! state, its rows emitted when windows close or (for a changelog) as groups change. A keyed
//! table's changelog takes the HAVING filter on it into the operator, and every projection
//! above carries its `_op` column through.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use ferris_connectors::changelog::OP_COLUMN;
use ferris_streaming::{
    EmitMode, GROUPING_SETS_UNSUPPORTED, LateDataPolicy, WatermarkSpec, WindowAggregateConfig,
    WindowAggregateExec, WindowSpec,
};

/// How the aggregate of a streaming query runs.
#[derive(Debug, Clone)]
pub struct AggregateSettings {
    /// The window (`Global` for a keyed table without one).
    pub window: WindowSpec,
    /// When rows are emitted.
    pub emit: EmitMode,
    /// What late rows get.
    pub late: LateDataPolicy,
    /// How the time source stamps its rows.
    pub watermark: WatermarkSpec,
}

/// Replaces the top-most aggregate with a window aggregate run as `settings` say.
#[derive(Debug)]
pub struct WindowAggregate {
    /// How the aggregate runs; none: the query's aggregate (if any) is left as it is.
    pub settings: Option<AggregateSettings>,
}

impl PhysicalOptimizerRule for WindowAggregate {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(settings) = &self.settings else {
            return Ok(plan);
        };
        // EMIT CHANGES output is a changelog: every row says whether it upserts or retracts.
        let changelog = settings.emit == EmitMode::Changes;
        // A keyed table evaluates HAVING itself, to retract a key that stops matching it. (A
        // window's rows are never retracted for HAVING: it stays a filter above the operator.)
        let absorb_having = changelog && settings.window == WindowSpec::Global;
        let mut replaced = false;
        let plan = plan
            .transform_down(|node| {
                if replaced {
                    return Ok(Transformed::no(node));
                }
                // A changelog evaluates HAVING itself, to retract rows that stop matching it.
                let having = node
                    .downcast_ref::<FilterExec>()
                    .filter(|f| absorb_having && f.projection().is_none())
                    .and_then(|f| {
                        let aggregate = f.input().downcast_ref::<AggregateExec>()?;
                        Some((f.predicate().clone(), aggregate))
                    });
                let (having, aggregate) = match having {
                    Some((predicate, aggregate)) => (Some(predicate), aggregate),
                    None => match node.downcast_ref::<AggregateExec>() {
                        Some(aggregate) => (None, aggregate),
                        None => return Ok(Transformed::no(node)),
                    },
                };
                // Grouping sets plan as a two-phase aggregate; a streaming one is single-phase
                // (and the operator itself rejects grouping sets planned in one phase).
                if !matches!(
                    aggregate.mode(),
                    AggregateMode::Single | AggregateMode::SinglePartitioned
                ) {
                    return Err(datafusion::error::DataFusionError::Plan(
                        GROUPING_SETS_UNSUPPORTED.into(),
                    ));
                }
                let config = WindowAggregateConfig {
                    window: settings.window,
                    emit: settings.emit,
                    late: settings.late.clone(),
                    watermark: settings.watermark.clone(),
                    group_by: aggregate.group_expr().clone(),
                    aggr_expr: aggregate.aggr_expr().to_vec(),
                    filter_expr: aggregate.filter_expr().to_vec(),
                    output_schema: WindowAggregateConfig::output_schema_for(
                        &aggregate.schema(),
                        changelog,
                    ),
                    changelog,
                    having,
                };
                replaced = true;
                let exec = WindowAggregateExec::try_new(aggregate.input().clone(), config)?;
                Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
            })?
            .data;
        if !changelog {
            return Ok(plan);
        }
        let plan = plan
            .transform_up(|node| {
                let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
                    return Ok(Transformed::no(node));
                };
                // Carry `_op` through every projection above the operator.
                let input = projection.input();
                let (Ok(op), Err(_)) = (
                    input.schema().index_of(OP_COLUMN),
                    projection.schema().index_of(OP_COLUMN),
                ) else {
                    return Ok(Transformed::no(node));
                };
                let mut exprs: Vec<ProjectionExpr> = projection.expr().to_vec();
                exprs.push(ProjectionExpr::new(
                    Arc::new(Column::new(OP_COLUMN, op)),
                    OP_COLUMN.to_string(),
                ));
                let with_op = ProjectionExec::try_new(exprs, input.clone())?;
                Ok(Transformed::yes(Arc::new(with_op) as Arc<dyn ExecutionPlan>))
            })?
            .data;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "window_aggregate"
    }

    fn schema_check(&self) -> bool {
        // A changelog's projections gain `_op`.
        false
    }
}
