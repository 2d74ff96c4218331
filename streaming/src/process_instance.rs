//! Which instance of a job this process runs, when the job's instances run in several
//! processes ([`ProcessInstance`]).
//!
//! Every process plans the same parallel plan. Where it runs instance `i` of `n`, it reads
//! only the source shares of that instance; each exchange's senders write every row to its
//! output's partition of the transport (`ferris_connectors::ExchangeTransport`), and the
//! exchange's output `i` reads its partition from the transport, as a source does: its
//! position (an offset) is in the process's own checkpoints, so that each process
//! checkpoints alone. Only the exchange in front of the sink stays in the process: each
//! instance writes its own rows to the sink.

use std::sync::Arc;

use datafusion::execution::TaskContext;
use ferris_connectors::ExchangeTransport;

/// This process runs instance `index` of a job's `count` instances; the others run in
/// other processes, reached through `transport`. In a task's config when so.
#[derive(Debug, Clone)]
pub struct ProcessInstance {
    pub index: usize,
    pub count: usize,
    pub transport: Arc<dyn ExchangeTransport>,
}

impl ProcessInstance {
    /// The one instance this process runs, if the job running `context` runs in several.
    pub fn of(context: &TaskContext) -> Option<Arc<Self>> {
        context.session_config().get_extension::<Self>()
    }

    /// Whether partition `partition` of a plan node is this process's to run: the
    /// instance it belongs to (partitions beyond the instances, none in a parallel plan,
    /// fold back).
    pub fn runs(&self, partition: usize) -> bool {
        partition % self.count == self.index
    }
}
