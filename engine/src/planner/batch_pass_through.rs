//! Lets every micro-batch through as soon as it is filtered: DataFusion's `FilterExec`
//! otherwise holds small results back until a full batch has gathered, which on a watched
//! source may be never.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;

/// Sets every filter's target batch size to one row.
#[derive(Debug)]
pub struct BatchPassThrough;

impl PhysicalOptimizerRule for BatchPassThrough {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan
            .transform_up(|node| match node.downcast_ref::<FilterExec>() {
                // A target of one row passes every non-empty batch through whole.
                Some(filter) if filter.batch_size() != 1 => Ok(Transformed::yes(Arc::new(
                    filter.with_batch_size(1)?,
                )
                    as Arc<dyn ExecutionPlan>)),
                _ => Ok(Transformed::no(node)),
            })?
            .data)
    }

    fn name(&self) -> &str {
        "batch_pass_through"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
