//! How much memory an operator's state takes, held against the job's memory pool.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, Gauge, MetricBuilder};

use crate::error::StreamingError;

/// One running operator's state size: reserved in the task's memory pool (whose limit is
/// the job's `'state.memory.limit'`) and kept as its `state_bytes` (now) and
/// `peak_state_bytes` metrics.
#[derive(Debug)]
pub(crate) struct StateMemory {
    operator: &'static str,
    reservation: MemoryReservation,
    now: Gauge,
    peak: Gauge,
}

impl StateMemory {
    pub(crate) fn new(
        operator: &'static str,
        partition: usize,
        context: &Arc<TaskContext>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Self {
        Self {
            operator,
            reservation: MemoryConsumer::new(format!("{operator}[{partition}]"))
                .register(context.memory_pool()),
            now: MetricBuilder::new(metrics).gauge("state_bytes", partition),
            peak: MetricBuilder::new(metrics).gauge("peak_state_bytes", partition),
        }
    }

    /// The state now takes `needed` bytes: an error if the pool cannot give them.
    pub(crate) fn resize(&mut self, needed: usize) -> Result<()> {
        self.now.set(needed);
        self.peak.set_max(needed);
        self.reservation.try_resize(needed).map_err(|e| {
            StreamingError::StateMemoryExceeded {
                operator: self.operator.into(),
                needed,
                detail: e.to_string(),
            }
            .into()
        })
    }
}
