//! A job's output, readable by name: the current state of a `CREATE TABLE`, kept in memory as
//! its job writes it, so that `SELECT ... FROM table` (a pull query) reads it as it is now;
//! and the rows of a `CREATE STREAM` as they are written, so that `SELECT ... FROM stream` (a
//! push query) follows them.
//!
//! A table's output is a changelog when it carries `_op`: a `-D` row removes its key, a `-U`
//! row is the first half of an update whose `+U` follows. Rows are kept by key, in key order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use ferris_connectors::changelog::{RowChange, op_column, row_changes};

use crate::error::{EngineError, Result};

/// A table's rows by key, updated from its job's output batches.
#[derive(Debug)]
pub struct MaterializedTable {
    /// The job's columns without `_op`.
    schema: SchemaRef,
    /// Where those columns are in the job's output.
    columns: Vec<usize>,
    /// Where the key columns are in the job's output.
    key: Vec<usize>,
    /// Where `_op` is, for a changelog.
    op: Option<usize>,
    converter: Mutex<RowConverter>,
    rows: Mutex<BTreeMap<OwnedRow, Vec<ScalarValue>>>,
}

impl MaterializedTable {
    /// A table for a job whose output has `schema` and is keyed by the columns `key`.
    pub fn try_new(schema: &SchemaRef, key: &[String]) -> Result<Self> {
        let op = op_column(schema);
        let columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| Some(*i) != op)
            .collect();
        let key = key
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut sort_fields: Vec<_> = key
            .iter()
            .map(|&k| SortField::new(schema.field(k).data_type().clone()))
            .collect();
        // A table without a key (an aggregate without GROUP BY) has one row: every row's
        // key is the same null (rows of no columns would not say how many there are).
        if sort_fields.is_empty() {
            sort_fields.push(SortField::new(DataType::Null));
        }
        // Every column nullable: a key's row may have come from any update.
        let fields: Vec<_> = columns
            .iter()
            .map(|&c| schema.field(c).clone().with_nullable(true))
            .collect();
        Ok(Self {
            schema: Arc::new(Schema::new(fields)),
            columns,
            key,
            op,
            converter: Mutex::new(RowConverter::new(sort_fields)?),
            rows: Mutex::default(),
        })
    }

    /// Applies a batch of the job's output.
    pub fn apply(&self, batch: &RecordBatch) -> Result<()> {
        let mut keys: Vec<_> = self.key.iter().map(|&k| batch.column(k).clone()).collect();
        if keys.is_empty() {
            keys.push(new_null_array(&DataType::Null, batch.num_rows()));
        }
        let keys = lock(&self.converter).convert_columns(&keys)?;
        let changes = row_changes(batch, self.op);
        let mut rows = lock(&self.rows);
        for (i, change) in changes.into_iter().enumerate() {
            match change {
                RowChange::Delete => {
                    rows.remove(&keys.row(i).owned());
                }
                RowChange::Retract => {}
                RowChange::Upsert => {
                    let values = self
                        .columns
                        .iter()
                        .map(|&c| ScalarValue::try_from_array(batch.column(c), i))
                        .collect::<datafusion::common::Result<Vec<_>>>()?;
                    rows.insert(keys.row(i).owned(), values);
                }
            }
        }
        Ok(())
    }

    /// The rows now, in key order.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let rows = lock(&self.rows);
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let columns = (0..self.columns.len())
            .map(|c| ScalarValue::iter_to_array(rows.values().map(|row| row[c].clone())))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| EngineError::Internal(format!("reading a table's state: {e}")))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait::async_trait]
impl TableProvider for MaterializedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let batch = self
            .snapshot()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// How many batches a push query may fall behind before it is ended: a slow client never
/// holds its job back.
const LIVE_BACKLOG: usize = 1024;

/// A stream's rows as its job writes them, to every push query reading it at the time.
#[derive(Debug)]
pub struct LiveStream {
    name: String,
    schema: SchemaRef,
    /// `None` once the job has ended: readers then end too.
    sender: Mutex<Option<tokio::sync::broadcast::Sender<RecordBatch>>>,
}

impl LiveStream {
    /// A stream of the job `name`, whose output has `schema`.
    pub fn new(name: &str, schema: SchemaRef) -> Self {
        let (sender, _) = tokio::sync::broadcast::channel(LIVE_BACKLOG);
        Self {
            name: name.to_string(),
            schema,
            sender: Mutex::new(Some(sender)),
        }
    }

    /// The job's end of the stream; readers finish when it is dropped, however the job ends.
    pub fn writer(self: &Arc<Self>) -> LiveStreamWriter {
        LiveStreamWriter(self.clone())
    }
}

/// Where a job hands its stream's batches to the push queries reading it.
#[derive(Debug, Clone)]
pub struct LiveStreamWriter(Arc<LiveStream>);

impl LiveStreamWriter {
    /// Hands a batch the job wrote to every reader.
    pub fn publish(&self, batch: &RecordBatch) {
        if let Some(sender) = lock(&self.0.sender).as_ref() {
            // No reader is no error.
            let _ = sender.send(batch.clone());
        }
    }
}

impl Drop for LiveStreamWriter {
    fn drop(&mut self) {
        lock(&self.0.sender).take();
    }
}

impl PartitionStream for LiveStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let receiver = lock(&self.sender).as_ref().map(|s| s.subscribe());
        let name = self.name.clone();
        let batches = futures::stream::unfold(receiver, move |receiver| {
            let name = name.clone();
            async move {
                let mut receiver = receiver?;
                match receiver.recv().await {
                    Ok(batch) => Some((Ok(batch), Some(receiver))),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => Some((
                        Err(DataFusionError::Execution(format!(
                            "this query over stream '{name}' fell {missed} batches behind and was ended (its job goes on)"
                        ))),
                        None,
                    )),
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}
