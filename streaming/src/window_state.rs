//! What the window operator's state implementations share: rows to aggregate, rows to emit.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::StreamingError;
use crate::window::EmitMode;

/// The evaluated inputs of one micro-batch: group keys, aggregate arguments and filters.
#[derive(Debug, Clone)]
pub(crate) struct Evaluated {
    pub keys: Vec<ArrayRef>,
    pub args: Vec<Vec<ArrayRef>>,
    pub filters: Vec<Option<BooleanArray>>,
    /// The arguments are a pre-aggregation's partial states, to merge (no filters).
    pub states: bool,
}

impl Evaluated {
    /// The rows at `indices`.
    pub fn take(&self, indices: &UInt32Array) -> Result<Self> {
        let take_all = |arrays: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
            Ok(arrays
                .iter()
                .map(|a| take(a, indices, None))
                .collect::<Result<_, _>>()?)
        };
        Ok(Self {
            keys: take_all(&self.keys)?,
            args: self
                .args
                .iter()
                .map(|a| take_all(a))
                .collect::<Result<_>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| match f {
                    Some(f) => Ok(Some(
                        arrow::array::AsArray::as_boolean(&take(f, indices, None)?).clone(),
                    )),
                    None => Ok(None),
                })
                .collect::<Result<_>>()?,
            states: self.states,
        })
    }
}

/// Each of `exprs` evaluated over `batch`, as arrays.
pub(crate) fn evaluate_all(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| {
            e.evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
        })
        .collect()
}

/// The epoch milliseconds of a stamp column (event time or watermark).
pub(crate) fn millis(array: &ArrayRef) -> Result<Vec<i64>> {
    let values = cast(array, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    if values.null_count() > 0 {
        return Err(StreamingError::EventTime(
            "a row reached the window operator without event time".into(),
        )
        .into());
    }
    Ok(values.values().to_vec())
}

/// Each aggregate's `FILTER (WHERE ...)` evaluated over `batch`.
pub(crate) fn evaluate_filters(
    filters: &[Option<Arc<dyn PhysicalExpr>>],
    batch: &RecordBatch,
) -> Result<Vec<Option<BooleanArray>>> {
    filters
        .iter()
        .map(|f| match f {
            Some(f) => {
                let array = f.evaluate(batch)?.into_array(batch.num_rows())?;
                Ok(Some(arrow::array::AsArray::as_boolean(&array).clone()))
            }
            None => Ok(None),
        })
        .collect()
}

/// Result rows of one window (or, for sessions, of several, with per-row bounds).
#[derive(Debug)]
pub(crate) struct WindowRows {
    /// Window start per row.
    pub starts: Vec<i64>,
    /// Window end per row.
    pub ends: Vec<i64>,
    /// Per row: a retraction of a row emitted before (a changelog's `-D`).
    pub retract: Vec<bool>,
    /// Group key columns.
    pub keys: Vec<ArrayRef>,
    /// One column per aggregate.
    pub values: Vec<ArrayRef>,
}

/// The aggregate functions of the operator, shared by its state.
pub(crate) type Aggregates = Arc<[Arc<AggregateFunctionExpr>]>;

/// The schema of a state snapshot: `leading` bookkeeping columns, the group keys, then each
/// aggregate's intermediate state columns (named `<aggregate index>:<state field>`).
pub(crate) fn snapshot_schema(
    leading: Vec<Field>,
    key_schema: &SchemaRef,
    aggregates: &Aggregates,
) -> Result<SchemaRef> {
    let mut fields = leading;
    fields.extend(key_schema.fields().iter().map(|f| f.as_ref().clone()));
    for (i, aggregate) in aggregates.iter().enumerate() {
        for field in aggregate.state_fields()? {
            fields.push(Field::new(
                format!("{i}:{}", field.name()),
                field.data_type().clone(),
                true,
            ));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Keyed aggregate state per window.
pub(crate) trait WindowState: Send {
    /// Adds the non-late rows of a batch; `times` are event times and `watermarks` the
    /// watermark before each row. Returns the rows that were late.
    fn update(&mut self, input: &Evaluated, times: &[i64], watermarks: &[i64]) -> Result<Vec<u32>>;

    /// Rows to emit once the watermark is `watermark`: closed windows (`Final`) or changed
    /// groups (`Changes`), ordered by window end, start, then key. Drops windows that can no
    /// longer change.
    fn emit(&mut self, watermark: i64, mode: EmitMode) -> Result<Vec<WindowRows>>;

    /// Bytes held.
    fn size(&self) -> usize;

    /// The whole state as rows (window bounds, keys, aggregate states), leaving it intact.
    fn snapshot(&mut self) -> Result<RecordBatch>;

    /// Replaces the state with a snapshot's (or several put together, in order of their
    /// first column: window or session start).
    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()>;

    /// The columns of a snapshot holding each row's group key.
    fn key_columns(&self) -> std::ops::Range<usize>;

    /// Lets the keys of a keyed table (the global window) not updated since `before`
    /// (processing time, epoch ms) go, where keys expire (`'state.ttl'`): their last
    /// values, to retract. Windows' keys go with their windows.
    fn expire(&mut self, _before: i64) -> Result<Option<WindowRows>> {
        Ok(None)
    }
}
