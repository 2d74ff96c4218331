//! The task context a part of a plan runs under, when it differs from its parent's: the
//! pipelines below an exchange (their exchange level), a lookup join's table read.

use std::sync::Arc;

use datafusion::execution::TaskContext;

/// `context` with `extension` in its config, for the part of a plan that runs under it.
pub(crate) fn context_with<T: Send + Sync + 'static>(
    context: &TaskContext,
    extension: Arc<T>,
) -> Arc<TaskContext> {
    Arc::new(TaskContext::new(
        context.task_id(),
        context.session_id(),
        context.session_config().clone().with_extension(extension),
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        context.runtime_env(),
    ))
}
