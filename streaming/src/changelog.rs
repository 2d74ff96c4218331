//! What the operators that write a changelog (`EMIT CHANGES`: a keyed table, a Top-N) share:
//! the [`OP_COLUMN`] on their rows, and on every projection above them.

use std::sync::Arc;

use arrow::array::StringArray;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use ferris_connectors::changelog::OP_COLUMN;

/// `schema` with an [`OP_COLUMN`] after its columns.
pub(crate) fn with_op_column(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The batch with an [`OP_COLUMN`] of `ops`.
pub(crate) fn with_ops(batch: RecordBatch, ops: Vec<&str>) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(ops)));
    Ok(RecordBatch::try_new(
        with_op_column(&batch.schema()),
        columns,
    )?)
}

/// `plan` with every projection above a changelog's operator carrying its `_op` column on
/// (a filter's own projection too: DataFusion folds a projection into the filter below it).
pub(crate) fn carry_op_column(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            if let Some(filter) = node.downcast_ref::<FilterExec>()
                && let Some(projection) = filter.projection()
                && let Ok(op) = filter.input().schema().index_of(OP_COLUMN)
                && !projection.contains(&op)
            {
                let mut columns: Vec<usize> = projection.iter().copied().collect();
                columns.push(op);
                // Its projection replaced (`None` first: a projection applies over the last).
                let with_op = FilterExecBuilder::from(filter)
                    .apply_projection(None)?
                    .apply_projection(Some(columns))?
                    .build()?;
                return Ok(Transformed::yes(Arc::new(with_op) as Arc<dyn ExecutionPlan>));
            }
            let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
                return Ok(Transformed::no(node));
            };
            let input = projection.input();
            let (Ok(op), Err(_)) = (
                input.schema().index_of(OP_COLUMN),
                projection.schema().index_of(OP_COLUMN),
            ) else {
                return Ok(Transformed::no(node));
            };
            let mut exprs: Vec<ProjectionExpr> = projection.expr().to_vec();
            exprs.push(ProjectionExpr::new(
                Arc::new(Column::new(OP_COLUMN, op)),
                OP_COLUMN.to_string(),
            ));
            let with_op = ProjectionExec::try_new(exprs, input.clone())?;
            Ok(Transformed::yes(Arc::new(with_op) as Arc<dyn ExecutionPlan>))
        })?
        .data)
}
