//! The changelog format (an `EMIT CHANGES` result): the column that says what each row does
//! to its key, written by the window operator and read by sinks and materialized tables.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};

/// The column that marks a changelog's rows: `+U` (insert or update), `-U` (the retraction
/// half of an update, whose `+U` follows) or `-D` (delete).
pub const OP_COLUMN: &str = "_op";
/// An insert or update: the row becomes its key's.
pub const UPSERT: &str = "+U";
/// The retraction half of an update, whose [`UPSERT`] follows.
pub const RETRACT: &str = "-U";
/// A delete: the key has no row any more.
pub const DELETE: &str = "-D";

/// What one row does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowChange {
    /// Sets the key's row.
    Upsert,
    /// Removes the key.
    Delete,
    /// The first half of an update: the `+U` that follows replaces the row, so nothing to do.
    Retract,
}

/// Where a schema's changelog column is. A column of that name that is not text is data.
pub fn op_column(schema: &Schema) -> Option<usize> {
    schema
        .index_of(OP_COLUMN)
        .ok()
        .filter(|&i| schema.field(i).data_type() == &DataType::Utf8)
}

/// The change each row of `batch` makes; without a changelog column, every row is an upsert.
pub fn row_changes(batch: &RecordBatch, op: Option<usize>) -> Vec<RowChange> {
    let Some(op) = op else {
        return vec![RowChange::Upsert; batch.num_rows()];
    };
    batch
        .column(op)
        .as_string::<i32>()
        .iter()
        .map(|op| match op {
            Some(DELETE) => RowChange::Delete,
            Some(RETRACT) => RowChange::Retract,
            _ => RowChange::Upsert,
        })
        .collect()
}
