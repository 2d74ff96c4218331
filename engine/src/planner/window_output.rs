//! Keeps filters on a window's bounds above its aggregate. DataFusion pushes a predicate on
//! GROUP BY columns below the aggregate; but a window's `_window_start` / `_window_end` mean
//! event time and watermark below it and the window's bounds above it, so `WHERE
//! window_start >= ...` over a windowed subquery (or `HAVING _window_start >= ...`) would
//! filter the source's rows by their event time, and cut windows in half. An analyzer rule,
//! [`WindowOutputRule`], puts a [`WindowOutput`] node over every aggregate grouped by both,
//! which lets no predicate on them through; [`WindowOutputPlanner`] plans it as its input.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchemaRef, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use ferris_streaming::{EVENT_TIME_COLUMN, WATERMARK_COLUMN};

/// The rows of a windowed aggregate, as they are; no predicate on its window's bounds goes
/// below it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Hash)]
pub struct WindowOutput {
    input: LogicalPlan,
}

impl UserDefinedLogicalNodeCore for WindowOutput {
    fn name(&self) -> &str {
        "WindowOutput"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        HashSet::from([EVENT_TIME_COLUMN.to_string(), WATERMARK_COLUMN.to_string()])
    }

    /// Each output column is its input's: what is not read above need not be computed.
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WindowOutput: filters on {EVENT_TIME_COLUMN}, {WATERMARK_COLUMN} stay above"
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        Ok(Self {
            input: inputs.swap_remove(0),
        })
    }
}

/// Puts a [`WindowOutput`] over every aggregate grouped by both stamp columns.
#[derive(Debug)]
pub struct WindowOutputRule;

impl AnalyzerRule for WindowOutputRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let grouped_by = |aggregate: &datafusion::logical_expr::Aggregate, name: &str| {
            aggregate.group_expr.iter().any(|e| match e {
                Expr::Column(column) => column.name == name,
                _ => false,
            })
        };
        Ok(plan
            .transform_up(|node| match &node {
                LogicalPlan::Aggregate(aggregate)
                    if grouped_by(aggregate, EVENT_TIME_COLUMN)
                        && grouped_by(aggregate, WATERMARK_COLUMN) =>
                {
                    Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                        node: Arc::new(WindowOutput { input: node }),
                    })))
                }
                _ => Ok(Transformed::no(node)),
            })?
            .data)
    }

    fn name(&self) -> &str {
        "window_output"
    }
}

/// Plans a [`WindowOutput`] as its input.
#[derive(Debug)]
pub struct WindowOutputPlanner;

#[async_trait]
impl ExtensionPlanner for WindowOutputPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(node
            .as_any()
            .downcast_ref::<WindowOutput>()
            .map(|_| physical_inputs[0].clone()))
    }
}

/// DataFusion's physical planner, with [`WindowOutputPlanner`].
#[derive(Debug)]
pub struct StreamingQueryPlanner;

#[async_trait]
impl QueryPlanner for StreamingQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(WindowOutputPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}
