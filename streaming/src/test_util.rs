//! What the operators' unit tests share: inputs that end, inputs that go quiet, and a plan's
//! rows in an order that does not depend on batching.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, collect};
use futures::StreamExt;

/// A bounded input of `batches`, in one partition.
pub fn memory(batches: Vec<RecordBatch>) -> Arc<dyn ExecutionPlan> {
    let schema = batches[0].schema();
    MemorySourceConfig::try_new_exec(&[batches], schema, None).unwrap()
}

/// One batch, then nothing more for as long as anyone waits: a quiet stream.
#[derive(Debug)]
struct QuietStream(RecordBatch);

impl PartitionStream for QuietStream {
    fn schema(&self) -> &SchemaRef {
        self.0.schema_ref()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batch = self.0.clone();
        let stream = futures::stream::once(async { Ok(batch) }).chain(futures::stream::pending());
        Box::pin(RecordBatchStreamAdapter::new(self.0.schema(), stream))
    }
}

/// An unbounded input that gives `batch` and then goes quiet.
pub fn quiet(batch: RecordBatch) -> Arc<dyn ExecutionPlan> {
    let scan = StreamingTableExec::try_new(
        batch.schema(),
        vec![Arc::new(QuietStream(batch.clone()))],
        None,
        [],
        true,
        None,
    )
    .unwrap();
    Arc::new(scan)
}

/// The rows of `plan`, sorted, as a table.
pub async fn sorted_rows(plan: Arc<dyn ExecutionPlan>) -> String {
    let batches = collect(plan, Arc::new(TaskContext::default()))
        .await
        .unwrap();
    let table = pretty_format_batches(&batches).unwrap().to_string();
    let mut lines: Vec<&str> = table.lines().collect();
    lines.sort();
    lines.join("\n")
}

/// `first`, then `then` again and again, one every `every`: an input that never rests.
#[derive(Debug)]
struct BusyStream {
    first: RecordBatch,
    then: RecordBatch,
    every: std::time::Duration,
}

impl PartitionStream for BusyStream {
    fn schema(&self) -> &SchemaRef {
        self.first.schema_ref()
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (then, every) = (self.then.clone(), self.every);
        let again = futures::stream::unfold((), move |()| {
            let then = then.clone();
            async move {
                tokio::time::sleep(every).await;
                Some((Ok(then), ()))
            }
        });
        let stream =
            futures::stream::once(futures::future::ready(Ok(self.first.clone()))).chain(again);
        Box::pin(RecordBatchStreamAdapter::new(self.first.schema(), stream))
    }
}

/// An unbounded input that gives `first`, then `then` every `every`, for ever.
pub fn busy(
    first: RecordBatch,
    then: RecordBatch,
    every: std::time::Duration,
) -> Arc<dyn ExecutionPlan> {
    let schema = first.schema();
    let scan = StreamingTableExec::try_new(
        schema,
        vec![Arc::new(BusyStream { first, then, every })],
        None,
        [],
        true,
        None,
    )
    .unwrap();
    Arc::new(scan)
}
