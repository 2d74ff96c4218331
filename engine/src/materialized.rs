//! The current state of a `CREATE TABLE`, kept in memory as its job writes it, so that a plain
//! `SELECT ... FROM table` (a pull query) reads the table as it is now.
//!
//! The job's output is a changelog when it carries `_op`: a `-D` row removes its key, a `-U`
//! row is the first half of an update whose `+U` follows. Rows are kept by key, in key order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use ferris_streaming::OP_COLUMN;

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
        // A changelog's `_op` is text; a column of that name and another type is data.
        let op = schema
            .index_of(OP_COLUMN)
            .ok()
            .filter(|&i| schema.field(i).data_type() == &arrow::datatypes::DataType::Utf8);
        let columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| Some(*i) != op)
            .collect();
        let key = key
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let sort_fields = key
            .iter()
            .map(|&k| SortField::new(schema.field(k).data_type().clone()))
            .collect();
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
        let keys: Vec<_> = self.key.iter().map(|&k| batch.column(k).clone()).collect();
        let keys = lock(&self.converter).convert_columns(&keys)?;
        let ops = self
            .op
            .map(|op| batch.column(op).as_string::<i32>().clone());
        let mut rows = lock(&self.rows);
        for i in 0..batch.num_rows() {
            match ops
                .as_ref()
                .filter(|ops| ops.is_valid(i))
                .map(|ops| ops.value(i))
            {
                Some("-D") => {
                    rows.remove(&keys.row(i).owned());
                }
                Some("-U") => {}
                _ => {
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
