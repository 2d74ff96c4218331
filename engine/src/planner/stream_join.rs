//! A [`StreamJoinExec`] for each inner join of two unbounded streams, its rows kept in
//! checkpoints. Its sides' event times (of the sources that declare one) bound it in time,
//! so that it lets rows go. An outer join of two streams stays DataFusion's.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::SymmetricHashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::streaming::StreamingTableExec;
use ferris_streaming::{SideTime, StreamJoinExec};

use crate::planner::properties::passes_columns_on;

/// Turns symmetric hash joins of two streams into stream joins.
#[derive(Debug)]
pub struct StreamJoin {
    /// The event times of the sources that declare one, by the schema they are read with.
    pub times: Vec<(SchemaRef, SideTime)>,
}

impl StreamJoin {
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
            None => passes_columns_on(node).then_some(time),
        }
    }
}

impl PhysicalOptimizerRule for StreamJoin {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan
            .transform_up(|node| {
                let join = node
                    .downcast_ref::<SymmetricHashJoinExec>()
                    .and_then(|join| {
                        let sides = [self.side_time(join.left()), self.side_time(join.right())];
                        StreamJoinExec::from_symmetric_hash_join(join, sides)
                    });
                Ok(match join {
                    Some(join) => Transformed::yes(Arc::new(join) as Arc<dyn ExecutionPlan>),
                    None => Transformed::no(node),
                })
            })?
            .data)
    }

    fn name(&self) -> &str {
        "stream_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
