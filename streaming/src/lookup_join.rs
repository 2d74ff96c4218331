//! `LookupJoinExec`: a stream joined to a bounded table, each stream batch as it comes.
//!
//! It takes the place of DataFusion's `HashJoinExec` where one side is the stream and the
//! other a table that ends (a file of reference data); its planner rule, [`LookupJoinRule`],
//! puts it there. DataFusion's join gathers its output
//! until a whole batch (8192 rows) is full, which on a stream that pauses may be never; and
//! it keeps its table privately. This one reads the table whole when it starts, indexes it
//! by the join keys, and gives each stream batch's matches on at once. Its only state is the
//! table, which it reads again on every start, so a checkpoint needs nothing of it: the
//! table's sources run outside the checkpoint barrier ([`LookupTableRead`]).

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatchOptions;
use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinType, NullEquality};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::joins::PartitionMode;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
    apply_expression_roots, collect,
};

use crate::driver::StreamNode;
use crate::join_keys::{BatchKeys, JoinKeys, KeyIndex};
use crate::operator::StreamOperator;
use crate::task_context::context_with;

/// Marks a task context in which sources are read as a lookup table: whole, from their
/// start, on every run, and never cut by a checkpoint.
#[derive(Debug, Default)]
pub struct LookupTableRead;

/// The plan node: `table` (bounded, read whole) joined with `stream` on `on`.
#[derive(Debug)]
pub struct LookupJoinExec {
    stream: Arc<dyn ExecutionPlan>,
    /// The table side and how rows are joined, shared with the running streams.
    joiner: Arc<Joiner>,
    node: StreamNode,
}

impl LookupJoinExec {
    /// Which of its inputs is the stream (the other is the table).
    pub const STREAM_INPUT: usize = 1;

    /// The lookup join doing what `join` does, when it can: an equi-join without an extra
    /// filter, whose build (left) side is bounded, keeping matched stream (right) rows
    /// (`INNER`) or every stream row (`RIGHT`), where null keys match nothing.
    pub fn from_hash_join(join: &HashJoinExec) -> Option<Self> {
        let keep_unmatched = match join.join_type() {
            JoinType::Inner => false,
            JoinType::Right => true,
            _ => return None,
        };
        let usable = join.filter().is_none()
            && join.null_equality() == NullEquality::NullEqualsNothing
            && !join.null_aware
            && !join.left().properties().boundedness.is_unbounded();
        if !usable {
            return None;
        }
        let join_schema = join.join_schema().clone();
        let projection: Option<Vec<usize>> = join.projection.as_ref().map(|p| p.to_vec());
        let schema = match &projection {
            Some(columns) => Arc::new(join_schema.project(columns).ok()?),
            None => join_schema.clone(),
        };
        let joiner = Joiner {
            keys: JoinKeys::try_new(join.on().to_vec(), &join.left().schema()).ok()?,
            table_plan: join.left().clone(),
            keep_unmatched,
            join_schema,
            projection,
            schema,
        };
        Some(Self::new(join.right().clone(), joiner))
    }

    fn new(stream: Arc<dyn ExecutionPlan>, joiner: Joiner) -> Self {
        let node = StreamNode::new(
            joiner.schema.clone(),
            stream.properties().output_partitioning().partition_count(),
            stream.properties().boundedness,
        );
        Self {
            stream,
            joiner: Arc::new(joiner),
            node,
        }
    }
}

impl DisplayAs for LookupJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let joiner = &self.joiner;
        let on: Vec<String> = joiner
            .keys
            .on()
            .iter()
            .map(|(table, stream)| format!("({table}, {stream})"))
            .collect();
        // Not "Right": the user wrote the stream on the left of a LEFT JOIN.
        write!(
            f,
            "LookupJoinExec: keeps={}, on=[{}]",
            if joiner.keep_unmatched {
                "every stream row"
            } else {
                "matched stream rows"
            },
            on.join(", ")
        )?;
        if let Some(projection) = &joiner.projection {
            let names: Vec<&str> = projection
                .iter()
                .map(|&i| joiner.join_schema.field(i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LookupJoinExec {
    fn name(&self) -> &str {
        LookupRun::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.node.properties()
    }

    /// The table, then the stream ([`LookupJoinExec::STREAM_INPUT`]).
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.joiner.table_plan, &self.stream]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false, true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let keys = self
            .joiner
            .keys
            .on()
            .iter()
            .flat_map(|(table, stream)| [table, stream]);
        apply_expression_roots(keys, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let stream = children.swap_remove(1);
        let table_plan = children.swap_remove(0);
        let joiner = Joiner {
            keys: JoinKeys::try_new(self.joiner.keys.on().to_vec(), &table_plan.schema())?,
            table_plan,
            keep_unmatched: self.joiner.keep_unmatched,
            join_schema: self.joiner.join_schema.clone(),
            projection: self.joiner.projection.clone(),
            schema: self.joiner.schema.clone(),
        };
        Ok(Arc::new(Self::new(stream, joiner)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let table_context = context_with(&context, Arc::new(LookupTableRead));
        let stream = self.stream.execute(partition, context.clone())?;
        let run = LookupRun {
            joiner: self.joiner.clone(),
            table_context,
            table: None,
        };
        self.node.run(run, vec![stream], partition, &context)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.node.metrics())
    }
}

/// What joining needs, without the plan node.
#[derive(Debug)]
struct Joiner {
    table_plan: Arc<dyn ExecutionPlan>,
    /// The table's (left) and stream's (right) keys.
    keys: JoinKeys,
    keep_unmatched: bool,
    join_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
}

/// The table, read whole and indexed by its join keys.
struct IndexedTable {
    rows: RecordBatch,
    keys: BatchKeys,
    index: KeyIndex,
}

/// A running lookup join: the table is read when it starts, in a task context of its own.
struct LookupRun {
    joiner: Arc<Joiner>,
    table_context: Arc<TaskContext>,
    table: Option<IndexedTable>,
}

impl StreamOperator for LookupRun {
    const NAME: &'static str = "LookupJoinExec";

    async fn start(&mut self) -> Result<()> {
        let batches = collect(self.joiner.table_plan.clone(), self.table_context.clone()).await?;
        self.table = Some(self.joiner.index(batches)?);
        Ok(())
    }

    fn process_batch(&mut self, _input: usize, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let table = self
            .table
            .as_ref()
            .expect("the table is read before the first batch");
        Ok(vec![self.joiner.join(table, &batch)?])
    }
}

impl Joiner {
    fn index(&self, batches: Vec<RecordBatch>) -> Result<IndexedTable> {
        let rows = concat_batches(&self.table_plan.schema(), &batches)?;
        let keys = self.keys.of(0, &rows)?;
        let mut index = KeyIndex::default();
        for (row, hash) in self.keys.hashes(&keys).into_iter().enumerate() {
            if let Some(hash) = hash {
                index.insert(hash, 0, row);
            }
        }
        Ok(IndexedTable { rows, keys, index })
    }

    /// One stream batch joined with the table.
    fn join(&self, table: &IndexedTable, batch: &RecordBatch) -> Result<RecordBatch> {
        let keys = self.keys.of(1, batch)?;
        let mut table_rows: Vec<Option<u32>> = Vec::new();
        let mut stream_rows: Vec<u32> = Vec::new();
        let mut found = Vec::new();
        for (row, hash) in self.keys.hashes(&keys).into_iter().enumerate() {
            let matched = hash.map_or(0, |hash| {
                let key = keys.rows.row(row);
                table
                    .index
                    .matches(hash, key, |_| Some(&table.keys.rows), &mut found)
            });
            if matched > 0 {
                stream_rows.extend(std::iter::repeat_n(row as u32, matched));
                table_rows.extend(found.drain(..).map(|(_, row)| Some(row as u32)));
            } else if self.keep_unmatched {
                table_rows.push(None);
                stream_rows.push(row as u32);
            }
        }
        let table_rows = UInt32Array::from(table_rows);
        let stream_rows = UInt32Array::from(stream_rows);
        let mut columns = Vec::with_capacity(self.join_schema.fields().len());
        for column in table.rows.columns() {
            columns.push(take(column, &table_rows, None)?);
        }
        for column in batch.columns() {
            columns.push(take(column, &stream_rows, None)?);
        }
        let columns = match &self.projection {
            Some(projection) => projection.iter().map(|&i| columns[i].clone()).collect(),
            None => columns,
        };
        // A projection may keep no column (`COUNT(*)`): the row count says how many rows.
        let options = RecordBatchOptions::new().with_row_count(Some(stream_rows.len()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

// The planner rule that puts the operator in place of DataFusion's hash join of the stream
// with a bounded table. When both sides end (files), DataFusion may have built its hash table
// from the stream: the join is then swapped first, so that the table is the side read whole.
// Joins it cannot take (an extra filter, a join type that keeps unmatched table rows) stay.

/// Turns hash joins of the stream with a table into lookup joins.
#[derive(Debug)]
pub struct LookupJoinRule {
    /// The schema the query's stream (its first FROM item) is read with.
    pub stream: Option<SchemaRef>,
}

impl LookupJoinRule {
    /// Whether `side` reads the stream.
    fn reads_stream(&self, side: &Arc<dyn ExecutionPlan>) -> bool {
        self.stream.as_ref().is_some_and(|schema| {
            side.exists(|node| {
                Ok(node
                    .downcast_ref::<StreamingTableExec>()
                    .is_some_and(|scan| Arc::ptr_eq(scan.partition_schema(), schema)))
            })
            .unwrap_or(false)
        })
    }
}

/// `node` as a lookup join if it is a hash join one can take; `then` says where the traversal
/// goes next (bottom-up, on to the parents: a join of the stream with two tables is two lookup
/// joins).
fn lookup(
    node: Arc<dyn ExecutionPlan>,
    then: TreeNodeRecursion,
) -> Transformed<Arc<dyn ExecutionPlan>> {
    match node
        .downcast_ref::<HashJoinExec>()
        .and_then(LookupJoinExec::from_hash_join)
    {
        Some(join) => Transformed::new(Arc::new(join), true, then),
        None => Transformed::no(node),
    }
}

impl PhysicalOptimizerRule for LookupJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan
            .transform_up(|node| {
                let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                    return Ok(Transformed::no(node));
                };
                if *join.partition_mode() != PartitionMode::CollectLeft {
                    return Ok(Transformed::no(node));
                }
                if !self.reads_stream(join.left()) || self.reads_stream(join.right()) {
                    return Ok(lookup(node, TreeNodeRecursion::Continue));
                }
                // The stream was taken for the table: swap (under a projection that puts the
                // columns back in order), then look up.
                let Ok(swapped) = join.swap_inputs(PartitionMode::CollectLeft) else {
                    return Ok(Transformed::no(node));
                };
                // Top-down, the swapped join first, and not into what it became.
                let swapped = swapped.transform_down(|n| Ok(lookup(n, TreeNodeRecursion::Jump)))?;
                Ok(if swapped.transformed {
                    Transformed::yes(swapped.data)
                } else {
                    Transformed::no(node)
                })
            })?
            .data)
    }

    fn name(&self) -> &str {
        "lookup_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::PhysicalExprRef;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::joins::PartitionMode;
    use futures::StreamExt;

    use crate::test_util::{memory, quiet, sorted_rows};

    fn table() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("symbol", DataType::Int32, true),
            Field::new("sector", DataType::Utf8, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(vec![Some(1), Some(2), Some(2), None])),
                Arc::new(StringArray::from(vec![
                    "tech",
                    "energy",
                    "utilities",
                    "none",
                ])),
            ],
        )
        .unwrap()
    }

    fn trades() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("symbol", DataType::Int32, true),
            Field::new("qty", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(vec![
                    Some(2),
                    Some(3),
                    None,
                    Some(1),
                    Some(2),
                ])),
                Arc::new(Int64Array::from(vec![10, 20, 30, 40, 50])),
            ],
        )
        .unwrap()
    }

    fn hash_join(
        stream: Arc<dyn ExecutionPlan>,
        join_type: JoinType,
        projection: Option<Vec<usize>>,
    ) -> HashJoinExec {
        let on = vec![(
            Arc::new(Column::new("symbol", 0)) as PhysicalExprRef,
            Arc::new(Column::new("symbol", 0)) as PhysicalExprRef,
        )];
        HashJoinExec::try_new(
            memory(vec![table()]),
            stream,
            on,
            None,
            &join_type,
            projection,
            PartitionMode::CollectLeft,
            NullEquality::NullEqualsNothing,
            false,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn joins_as_datafusion_s_hash_join_does() {
        for (join_type, projection) in [
            (JoinType::Inner, None),
            (JoinType::Right, None),
            (JoinType::Inner, Some(vec![1, 3])),
            // No column at all: only the number of rows is left.
            (JoinType::Inner, Some(vec![])),
        ] {
            let join = hash_join(memory(vec![trades()]), join_type, projection.clone());
            let lookup = LookupJoinExec::from_hash_join(&join).unwrap();
            let expected = sorted_rows(Arc::new(join)).await;
            let got = Arc::new(lookup);
            let rows: usize = collect(got.clone(), Arc::new(TaskContext::default()))
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            // Null keys match nothing; symbol 2 is in the table twice, 3 not at all.
            let matched = if join_type == JoinType::Right { 7 } else { 5 };
            assert_eq!(rows, matched, "{join_type} {projection:?}");
            assert_eq!(
                sorted_rows(got).await,
                expected,
                "{join_type} {projection:?}"
            );
        }
    }

    #[test]
    fn takes_only_what_it_can_do_batch_by_batch() {
        let left = hash_join(memory(vec![trades()]), JoinType::Left, None);
        assert!(LookupJoinExec::from_hash_join(&left).is_none());
        let full = hash_join(memory(vec![trades()]), JoinType::Full, None);
        assert!(LookupJoinExec::from_hash_join(&full).is_none());
    }

    #[tokio::test]
    async fn gives_a_batch_s_matches_on_before_the_stream_goes_on() {
        let join = hash_join(quiet(trades()), JoinType::Inner, None);
        let lookup = LookupJoinExec::from_hash_join(&join).unwrap();
        let mut joined = lookup.execute(0, Arc::new(TaskContext::default())).unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), joined.next())
            .await
            .expect("the first batch's matches, while the stream is quiet")
            .unwrap()
            .unwrap();
        assert_eq!(first.num_rows(), 5);
    }
}
