//! Two streams joined on a key: `StreamJoinExec` against DataFusion's `SymmetricHashJoinExec`
//! on the same batches, one core. Every order is paid once, its payment arriving at a random
//! later point; every row of both sides stays in the join's state to the end.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{JoinType, NullEquality};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::joins::{StreamJoinPartitionMode, SymmetricHashJoinExec};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use ferris_benches::{measure, rows, runtime};
use ferris_streaming::StreamJoinExec;
use futures::StreamExt;

const BATCH: usize = 8192;

/// A stream of prepared batches, marked unbounded as a Kafka topic's would be.
#[derive(Debug)]
struct Batches(SchemaRef, Vec<RecordBatch>);

impl PartitionStream for Batches {
    fn schema(&self) -> &SchemaRef {
        &self.0
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = self.1.clone().into_iter().map(Ok);
        Box::pin(RecordBatchStreamAdapter::new(
            self.0.clone(),
            futures::stream::iter(batches),
        ))
    }
}

/// `(key, value)` rows in batches, as an unbounded scan.
fn side(key: &str, value: &str, rows: impl Iterator<Item = (i64, i64)>) -> Arc<dyn ExecutionPlan> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(key, DataType::Int64, false),
        Field::new(value, DataType::Int64, false),
    ]));
    let rows: Vec<(i64, i64)> = rows.collect();
    let batches = rows
        .chunks(BATCH)
        .map(|chunk| {
            let keys = Int64Array::from_iter_values(chunk.iter().map(|r| r.0));
            let values = Int64Array::from_iter_values(chunk.iter().map(|r| r.1));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)]).unwrap()
        })
        .collect();
    let scan = StreamingTableExec::try_new(
        schema.clone(),
        vec![Arc::new(Batches(schema, batches))],
        None,
        [],
        true,
        None,
    )
    .unwrap();
    Arc::new(scan)
}

fn main() {
    let orders = rows(2_000_000);
    // Payments in a scrambled order (a multiplicative permutation of the ids).
    let order_rows = (0..orders as i64).map(|id| (id, 100 + id % 997));
    let payment_rows = (0..orders as i64).map(|i| {
        let id = (i * 7919) % orders as i64;
        (id, 100 + id % 997)
    });
    let join = SymmetricHashJoinExec::try_new(
        side("id", "amount", order_rows),
        side("order_id", "paid", payment_rows),
        vec![(
            Arc::new(Column::new("id", 0)) as PhysicalExprRef,
            Arc::new(Column::new("order_id", 0)) as PhysicalExprRef,
        )],
        None,
        &JoinType::Inner,
        NullEquality::NullEqualsNothing,
        None,
        None,
        StreamJoinPartitionMode::SinglePartition,
    )
    .unwrap();
    let ours: Arc<dyn ExecutionPlan> = Arc::new(
        StreamJoinExec::from_symmetric_hash_join(&join, [None, None], None)
            .expect("an inner stream join"),
    );
    let theirs: Arc<dyn ExecutionPlan> = Arc::new(join);
    let runtime = runtime();
    for (name, plan) in [("ferris   ", ours), ("datafusion", theirs)] {
        let mut joined = 0;
        let run = measure(|| {
            runtime.block_on(async {
                let mut stream = execute_stream(plan, Arc::new(TaskContext::default())).unwrap();
                while let Some(batch) = stream.next().await {
                    joined += batch.unwrap().num_rows();
                }
            });
            2 * orders as u64
        });
        assert_eq!(joined, orders, "every order is paid once");
        run.print(&format!(
            "{name} {orders} orders joined with {orders} payments"
        ));
    }
}
