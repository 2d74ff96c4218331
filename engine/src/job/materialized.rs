//! A job's output, readable by name: the current state of a `CREATE TABLE`, kept in memory as
//! its job writes it, so that `SELECT ... FROM table` (a pull query) reads it as it is now;
//! and the rows of a `CREATE STREAM` as they are written, so that `SELECT ... FROM stream` (a
//! push query) follows them.
//!
//! A table's output is a changelog when it carries `_op`: a `-D` row removes its key, a `-U`
//! row is the first half of an update whose `+U` follows. Rows are kept by key, in key order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
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
    /// The table's name, for errors.
    name: String,
    /// The job's columns without `_op`.
    schema: SchemaRef,
    /// Where those columns are in the job's output.
    columns: Vec<usize>,
    /// Where the key columns are in the job's output.
    key: Vec<usize>,
    /// Where `_op` is, for a changelog.
    op: Option<usize>,
    /// The job's `'state.memory.limit'`: the rows may take no more.
    limit: Option<usize>,
    converter: Mutex<RowConverter>,
    rows: Mutex<Rows>,
}

/// The rows by key, and what they take.
#[derive(Debug, Default)]
struct Rows {
    by_key: BTreeMap<OwnedRow, Vec<ScalarValue>>,
    bytes: usize,
}

impl Rows {
    fn insert(&mut self, key: OwnedRow, values: Vec<ScalarValue>) {
        self.bytes += row_bytes(&key, &values);
        if let Some(old) = self.by_key.insert(key.clone(), values) {
            self.bytes -= row_bytes(&key, &old);
        }
    }

    fn remove(&mut self, key: &OwnedRow) {
        if let Some(old) = self.by_key.remove(key) {
            self.bytes -= row_bytes(key, &old);
        }
    }
}

/// What a row takes in memory: its key's bytes and its values'.
fn row_bytes(key: &OwnedRow, values: &[ScalarValue]) -> usize {
    key.row().data().len() + values.iter().map(ScalarValue::size).sum::<usize>()
}

impl MaterializedTable {
    /// The table `name`, of a job whose output has `schema` and is keyed by the columns
    /// `key`, its rows taking `limit` bytes at most.
    pub fn try_new(
        name: &str,
        schema: &SchemaRef,
        key: &[String],
        limit: Option<usize>,
    ) -> Result<Self> {
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
            name: name.to_string(),
            schema: Arc::new(Schema::new(fields)),
            columns,
            key,
            op,
            limit,
            converter: Mutex::new(RowConverter::new(sort_fields)?),
            rows: Mutex::default(),
        })
    }

    /// Applies a batch of the job's output: an error once the rows take more than the
    /// job's `'state.memory.limit'`.
    pub fn apply(&self, batch: &RecordBatch) -> Result<()> {
        let keys: Vec<_> = self.key.iter().map(|&k| batch.column(k).clone()).collect();
        let keys = self.convert_keys(keys, batch.num_rows())?;
        let changes = row_changes(batch, self.op);
        let mut rows = lock(&self.rows);
        for (i, change) in changes.into_iter().enumerate() {
            match change {
                RowChange::Delete => rows.remove(&keys.row(i).owned()),
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
        match self.limit {
            Some(limit) if rows.bytes > limit => Err(EngineError::Catalog(format!(
                "table '{}' holds {} rows in {} bytes, over its job's 'state.memory.limit' of {limit} bytes: raise the limit, or give the table a sink and read it there",
                self.name,
                rows.by_key.len(),
                rows.bytes
            ))),
            _ => Ok(()),
        }
    }

    /// The key rows of `keys` (the key columns of `count` rows).
    fn convert_keys(&self, mut keys: Vec<ArrayRef>, count: usize) -> Result<arrow::row::Rows> {
        if keys.is_empty() {
            keys.push(new_null_array(&DataType::Null, count));
        }
        Ok(lock(&self.converter).convert_columns(&keys)?)
    }

    /// Replaces the rows with those of `snapshot` (a [`MaterializedTable::snapshot`] taken
    /// at a checkpoint), or with none.
    pub fn restore(&self, snapshot: Option<&RecordBatch>) -> Result<()> {
        let mut restored = Rows::default();
        if let Some(snapshot) = snapshot {
            // The key's place among the columns kept (the output's without `_op`).
            let keys = self
                .key
                .iter()
                .map(|k| {
                    let at = self.columns.iter().position(|c| c == k).expect("kept");
                    snapshot.column(at).clone()
                })
                .collect();
            let keys = self.convert_keys(keys, snapshot.num_rows())?;
            for i in 0..snapshot.num_rows() {
                let values = snapshot
                    .columns()
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, i))
                    .collect::<datafusion::common::Result<Vec<_>>>()?;
                restored.insert(keys.row(i).owned(), values);
            }
        }
        *lock(&self.rows) = restored;
        Ok(())
    }

    /// The rows now, in key order.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let rows = lock(&self.rows);
        if rows.by_key.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        let columns = (0..self.columns.len())
            .map(|c| ScalarValue::iter_to_array(rows.by_key.values().map(|row| row[c].clone())))
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    fn totals(symbols: &[&str], trades: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("trades", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(symbols.to_vec())),
                Arc::new(Int64Array::from(trades.to_vec())),
            ],
        )
        .unwrap()
    }

    /// A snapshot restored into a table of the same job gives the same rows, replacing
    /// what the table held; nothing restored empties it.
    #[test]
    fn a_snapshot_restores_the_rows_it_was_taken_of() {
        let batch = totals(&["B", "A"], &[2, 1]);
        let table =
            MaterializedTable::try_new("t", &batch.schema(), &["symbol".into()], None).unwrap();
        table.apply(&batch).unwrap();
        let snapshot = table.snapshot().unwrap();
        let again =
            MaterializedTable::try_new("t", &batch.schema(), &["symbol".into()], None).unwrap();
        again.apply(&totals(&["C"], &[9])).unwrap();
        again.restore(Some(&snapshot)).unwrap();
        assert_eq!(again.snapshot().unwrap(), snapshot);
        again.apply(&totals(&["A"], &[5])).unwrap();
        let rows = again.snapshot().unwrap();
        assert_eq!(
            rows.column(1).as_ref(),
            &Int64Array::from(vec![5, 2]) as &dyn arrow::array::Array
        );
        again.restore(None).unwrap();
        assert_eq!(again.snapshot().unwrap().num_rows(), 0);
    }

    /// Rows beyond the job's memory limit fail the job, naming the table and the limit;
    /// an update in place takes no more.
    #[test]
    fn rows_beyond_the_memory_limit_are_an_error_naming_the_table() {
        let schema = totals(&[], &[]).schema();
        let table =
            MaterializedTable::try_new("totals", &schema, &["symbol".into()], Some(200)).unwrap();
        table.apply(&totals(&["A"], &[1])).unwrap();
        table.apply(&totals(&["A"], &[2])).unwrap();
        let many: Vec<String> = (0..20).map(|i| format!("S{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let error = table
            .apply(&totals(&many, &[1; 20]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("table 'totals' holds 21 rows")
                && error.contains("'state.memory.limit' of 200 bytes"),
            "{error}"
        );
    }
}
