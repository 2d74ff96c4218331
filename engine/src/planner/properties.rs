//! What a physical plan is, asked of its operators' types: whether it holds state, whether
//! a checkpoint can cover it, whether it aggregates over windows.

use std::sync::Arc;

use datafusion::common::tree_node::TreeNode;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PiecewiseMergeJoinExec, SortMergeJoinExec,
    SymmetricHashJoinExec,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::streaming::StreamingTableExec;
use ferris_streaming::{StreamJoinExec, TopNExec, WindowAggregateExec};

fn is<T: ExecutionPlan>(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<T>().is_some()
}

fn any_node(plan: &Arc<dyn ExecutionPlan>, test: impl Fn(&Arc<dyn ExecutionPlan>) -> bool) -> bool {
    plan.exists(|node| Ok(test(node))).unwrap_or(false)
}

/// Whether every operator of the plan passes rows on as they come, holding nothing back.
pub fn is_stateless(plan: &Arc<dyn ExecutionPlan>) -> bool {
    !any_node(plan, |node| {
        !(is::<ProjectionExec>(node)
            || is::<FilterExec>(node)
            || is::<StreamingTableExec>(node)
            || is::<CooperativeExec>(node))
    })
}

/// Whether the plan has one of DataFusion's joins, whose state a checkpoint cannot hold
/// (ours, the lookup join and the stream join, checkpoint).
pub fn has_unsnapshotted_join(plan: &Arc<dyn ExecutionPlan>) -> bool {
    any_node(plan, |node| {
        is::<HashJoinExec>(node)
            || is::<SymmetricHashJoinExec>(node)
            || is::<NestedLoopJoinExec>(node)
            || is::<CrossJoinExec>(node)
            || is::<SortMergeJoinExec>(node)
            || is::<PiecewiseMergeJoinExec>(node)
    })
}

/// Whether an operator of the plan lets its state expire (`'state.ttl'`): a table's
/// aggregate by keys, a join of two streams without time bounds, a Top-N.
pub fn lets_state_expire(plan: &Arc<dyn ExecutionPlan>) -> bool {
    any_node(plan, |node| {
        node.downcast_ref::<WindowAggregateExec>().is_some_and(|a| {
            a.config().state_ttl.is_some() && !a.config().group_by.expr().is_empty()
        }) || node
            .downcast_ref::<StreamJoinExec>()
            .is_some_and(|j| j.state_ttl().is_some())
            || node
                .downcast_ref::<TopNExec>()
                .is_some_and(|t| t.config().state_ttl.is_some())
    })
}

/// Whether the plan has one of DataFusion's aggregates (one our rules did not replace) over
/// input that does not end (not, say, a table joined to the stream).
pub fn has_unbounded_aggregate(plan: &Arc<dyn ExecutionPlan>) -> bool {
    any_node(plan, |node| {
        is::<AggregateExec>(node) && node.properties().boundedness.is_unbounded()
    })
}

/// How many of our window aggregates over windows (not one global window) the plan has.
pub fn count_windowed_aggregates(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut count = 0;
    let _ = plan.apply(|node| {
        if node
            .downcast_ref::<WindowAggregateExec>()
            .is_some_and(|w| w.config().window.is_windowed())
        {
            count += 1;
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    count
}

/// Whether the plan aggregates over windows (not one global window).
pub fn is_windowed(plan: &Arc<dyn ExecutionPlan>) -> bool {
    any_node(plan, |node| {
        node.downcast_ref::<WindowAggregateExec>()
            .is_some_and(|w| w.config().window.is_windowed())
    })
}
