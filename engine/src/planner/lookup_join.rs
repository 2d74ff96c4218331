//! A [`LookupJoinExec`] for each hash join of the stream with a bounded table (read again
//! on every start), so that joined rows go on batch by batch and a checkpoint covers them.
//!
//! When both sides end (files), DataFusion may have built its hash table from the stream:
//! the join is then swapped first, so that the table is the side read whole. Joins it
//! cannot take (an extra filter, a join type that keeps unmatched table rows) stay as they
//! are.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::streaming::StreamingTableExec;
use ferris_streaming::LookupJoinExec;

/// Turns hash joins of the stream with a table into lookup joins.
#[derive(Debug)]
pub struct LookupJoin {
    /// The schema the query's stream (its first FROM item) is read with.
    pub stream: Option<SchemaRef>,
}

impl LookupJoin {
    /// Whether `side` reads the stream.
    fn reads_stream(&self, side: &Arc<dyn ExecutionPlan>) -> bool {
        self.stream.as_ref().is_some_and(|schema| {
            side.exists(|node| {
                Ok(node
                    .downcast_ref::<StreamingTableExec>()
                    .is_some_and(|scan| Arc::ptr_eq(scan.partition_schema(), schema)))
            })
            .unwrap_or(false)
        })
    }
}

fn lookup(node: Arc<dyn ExecutionPlan>) -> Transformed<Arc<dyn ExecutionPlan>> {
    match node
        .downcast_ref::<HashJoinExec>()
        .and_then(LookupJoinExec::from_hash_join)
    {
        Some(join) => Transformed::new(Arc::new(join), true, TreeNodeRecursion::Jump),
        None => Transformed::no(node),
    }
}

impl PhysicalOptimizerRule for LookupJoin {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan
            .transform_up(|node| {
                let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                    return Ok(Transformed::no(node));
                };
                if *join.partition_mode() != PartitionMode::CollectLeft {
                    return Ok(Transformed::no(node));
                }
                if !self.reads_stream(join.left()) || self.reads_stream(join.right()) {
                    return Ok(lookup(node));
                }
                // The stream was taken for the table: swap (under a projection that puts the
                // columns back in order), then look up.
                let Ok(swapped) = join.swap_inputs(PartitionMode::CollectLeft) else {
                    return Ok(Transformed::no(node));
                };
                let swapped = swapped.transform_down(|n| Ok(lookup(n)))?;
                Ok(if swapped.transformed {
                    Transformed::yes(swapped.data)
                } else {
                    Transformed::no(node)
                })
            })?
            .data)
    }

    fn name(&self) -> &str {
        "lookup_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
