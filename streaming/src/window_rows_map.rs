//! `WindowRowsMapExec`: a projection or a filter between two window aggregates, in place of
//! DataFusion's. It maps each batch as theirs would, and passes on the batches of no rows
//! that carry the inner window's watermark ([`watermark_of`]), which theirs drop: the outer
//! window closes on that watermark even when no inner row comes, and an exchange between
//! the instances merges it.

use std::fmt;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
    apply_expression_roots,
};
use futures::{StreamExt, future};

use crate::driver::StreamNode;
use crate::exchange::{watermark_batch, watermark_of};

/// What is done to each batch.
#[derive(Debug, Clone)]
enum RowMap {
    /// A projection's expressions.
    Project(Vec<ProjectionExpr>),
    /// A filter's predicate, and the columns it keeps after it.
    Filter {
        predicate: Arc<dyn PhysicalExpr>,
        projection: Option<Vec<usize>>,
    },
}

/// The plan node.
#[derive(Debug)]
pub struct WindowRowsMapExec {
    input: Arc<dyn ExecutionPlan>,
    map: RowMap,
    node: StreamNode,
}

impl WindowRowsMapExec {
    /// The projection or filter `plan` is, over `input`, if it is one.
    pub fn of(plan: &Arc<dyn ExecutionPlan>, input: Arc<dyn ExecutionPlan>) -> Option<Self> {
        let map = if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
            RowMap::Project(projection.expr().to_vec())
        } else {
            // A LIMIT pushed into the filter is not ours to keep.
            let filter = plan
                .downcast_ref::<FilterExec>()
                .filter(|f| f.fetch().is_none())?;
            RowMap::Filter {
                predicate: filter.predicate().clone(),
                projection: filter.projection().as_ref().map(|p| p.to_vec()),
            }
        };
        Some(Self::new(input, map, plan.schema()))
    }

    fn new(input: Arc<dyn ExecutionPlan>, map: RowMap, schema: SchemaRef) -> Self {
        let node = StreamNode::new(
            schema,
            input.properties().output_partitioning().partition_count(),
            input.properties().boundedness,
        );
        Self { input, map, node }
    }

    /// Its input.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// Where column `column` of its output comes from in its input, if it is a column
    /// passed on as it is.
    pub fn input_column(&self, column: usize) -> Option<usize> {
        match &self.map {
            RowMap::Project(exprs) => {
                let expr = &exprs.get(column)?.expr;
                Some(
                    expr.downcast_ref::<datafusion::physical_expr::expressions::Column>()?
                        .index(),
                )
            }
            RowMap::Filter { projection, .. } => match projection {
                Some(columns) => columns.get(column).copied(),
                None => Some(column),
            },
        }
    }
}

impl RowMap {
    /// `batch` mapped, as a batch of `schema`.
    fn apply(&self, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        match self {
            RowMap::Project(exprs) => {
                let columns = exprs
                    .iter()
                    .map(|e| e.expr.evaluate(batch)?.into_array(rows))
                    .collect::<Result<Vec<_>>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(rows));
                Ok(RecordBatch::try_new_with_options(
                    schema.clone(),
                    columns,
                    &options,
                )?)
            }
            RowMap::Filter {
                predicate,
                projection,
            } => {
                let matches = predicate.evaluate(batch)?.into_array(rows)?;
                let matches = matches.as_boolean_opt().ok_or_else(|| {
                    DataFusionError::Internal("a filter's predicate is not boolean".into())
                })?;
                let kept = filter_record_batch(batch, matches)?;
                let rows = kept.num_rows();
                let kept = match projection {
                    Some(columns) => kept.project(columns)?,
                    None => kept,
                };
                let options = RecordBatchOptions::new().with_row_count(Some(rows));
                Ok(RecordBatch::try_new_with_options(
                    schema.clone(),
                    kept.columns().to_vec(),
                    &options,
                )?)
            }
        }
    }
}

impl DisplayAs for WindowRowsMapExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.map {
            RowMap::Project(exprs) => {
                let exprs: Vec<String> = exprs
                    .iter()
                    .map(|e| format!("{} as {}", e.expr, e.alias))
                    .collect();
                write!(f, "WindowRowsMapExec: expr=[{}]", exprs.join(", "))
            }
            RowMap::Filter {
                predicate,
                projection,
            } => {
                write!(f, "WindowRowsMapExec: filter={predicate}")?;
                if let Some(columns) = projection {
                    write!(f, ", projection={columns:?}")?;
                }
                Ok(())
            }
        }
    }
}

impl ExecutionPlan for WindowRowsMapExec {
    fn name(&self) -> &str {
        "WindowRowsMapExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.node.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.map {
            RowMap::Project(exprs) => apply_expression_roots(exprs.iter().map(|e| &e.expr), f),
            RowMap::Filter { predicate, .. } => {
                apply_expression_roots(std::iter::once(predicate), f)
            }
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.map.clone(),
            self.schema(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let map = self.map.clone();
        let out_schema = schema.clone();
        let mapped = input
            .map(move |batch| {
                let batch = batch?;
                match watermark_of(&batch) {
                    Some(watermark) => Ok(watermark_batch(&out_schema, watermark)),
                    None => map.apply(&batch, &out_schema),
                }
            })
            // As DataFusion's filter, nothing for a batch it keeps no row of.
            .filter(|batch| {
                future::ready(!matches!(
                    batch,
                    Ok(b) if b.num_rows() == 0 && watermark_of(b).is_none()
                ))
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, mapped)))
    }
}
