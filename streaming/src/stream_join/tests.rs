//! The stream join's unit tests: pairs as a hash join gives them, snapshots, time bounds.

use super::*;
use arrow::array::TimestampMillisecondArray;
use arrow::array::{Int32Array, Int64Array};
use arrow::datatypes::TimeUnit;
use arrow::util::display::array_value_to_string;
use arrow::util::pretty::pretty_format_batches;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::collect;
use datafusion::physical_plan::joins::utils::ColumnIndex;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, StreamJoinPartitionMode};
use futures::StreamExt;

use crate::test_util::{memory, quiet, sorted_rows};

/// Rows of (key, value) in batches; a `None` key is null.
fn batches(name: &str, rows: &[&[(Option<i32>, i64)]]) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, true),
        Field::new(name, DataType::Int64, false),
    ]));
    rows.iter()
        .map(|rows| {
            let keys = Int32Array::from_iter(rows.iter().map(|r| r.0));
            let values = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)]).unwrap()
        })
        .collect()
}

fn orders() -> Vec<RecordBatch> {
    batches(
        "amount",
        &[
            &[(Some(1), 10), (Some(2), 20), (None, 30)],
            &[(Some(3), 30), (Some(2), 25)],
            &[(Some(4), 40)],
        ],
    )
}

fn payments() -> Vec<RecordBatch> {
    batches(
        "paid",
        &[
            &[(Some(2), 20), (None, 5)],
            &[(Some(1), 10), (Some(2), 19), (Some(5), 50)],
            &[(Some(3), 31)],
        ],
    )
}

fn on() -> Vec<(PhysicalExprRef, PhysicalExprRef)> {
    vec![(
        Arc::new(Column::new("id", 0)) as PhysicalExprRef,
        Arc::new(Column::new("id", 0)) as PhysicalExprRef,
    )]
}

/// `amount <= paid`, over the left column 1 and the right column 1.
fn paid_enough() -> JoinFilter {
    amount_against_paid(Operator::LtEq)
}

/// `amount <op> paid`, over the left column 1 and the right column 1 (both nullable).
fn amount_against_paid(op: Operator) -> JoinFilter {
    let schema = Schema::new(vec![
        Field::new("amount", DataType::Int64, true),
        Field::new("paid", DataType::Int64, true),
    ]);
    let expression = BinaryExpr::new(
        Arc::new(Column::new("amount", 0)),
        op,
        Arc::new(Column::new("paid", 1)),
    );
    JoinFilter::new(
        Arc::new(expression),
        vec![
            ColumnIndex {
                index: 1,
                side: JoinSide::Left,
            },
            ColumnIndex {
                index: 1,
                side: JoinSide::Right,
            },
        ],
        Arc::new(schema),
    )
}

fn hash_join(filter: Option<JoinFilter>) -> HashJoinExec {
    HashJoinExec::try_new(
        memory(orders()),
        memory(payments()),
        on(),
        filter,
        &JoinType::Inner,
        None,
        PartitionMode::CollectLeft,
        NullEquality::NullEqualsNothing,
        false,
    )
    .unwrap()
}

#[tokio::test]
async fn joins_as_datafusion_s_hash_join_does() {
    for filter in [None, Some(paid_enough())] {
        let join = hash_join(filter.clone());
        let stream = StreamJoinExec::new(
            memory(orders()),
            memory(payments()),
            on(),
            filter.clone(),
            None,
            None,
            JoinType::Inner,
            join.schema(),
        );
        let expected = sorted_rows(Arc::new(join)).await;
        // Keys 1, 2 (twice by twice), 3: six pairs; the filter keeps three.
        let pairs = if filter.is_some() { 3 } else { 6 };
        assert_eq!(expected.lines().count(), pairs + 4, "{expected}");
        assert_eq!(sorted_rows(Arc::new(stream)).await, expected);
    }
}

/// The rows of `batches` as a table, its lines sorted (pairs come in any order).
fn sorted_lines(batches: &[RecordBatch]) -> Vec<String> {
    let table = pretty_format_batches(batches).unwrap().to_string();
    let mut lines: Vec<String> = table.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_restored_join_writes_each_pair_once() {
    let schema = hash_join(None).schema();
    let sides = || [orders()[0].schema(), payments()[0].schema()];
    let new_state = || JoinState::try_new(schema.clone(), on(), None, None, None, sides()).unwrap();
    let feed = |state: &mut JoinState, from: usize, to: usize| {
        let mut out = Vec::new();
        for i in from..to {
            out.extend(state.join(0, orders()[i].clone()).unwrap().0);
            out.extend(state.join(1, payments()[i].clone()).unwrap().0);
        }
        out
    };
    let mut whole = new_state();
    let expected = feed(&mut whole, 0, 3);
    let mut before = new_state();
    let mut written = feed(&mut before, 0, 2);
    let snapshot = before.snapshot().unwrap();
    let mut after = new_state();
    after.restore(&snapshot).unwrap();
    written.extend(feed(&mut after, 2, 3));
    assert_eq!(sorted_lines(&written), sorted_lines(&expected));
    let wrong = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)])),
        vec![Arc::new(Int32Array::from(vec![1]))],
    )
    .unwrap();
    assert!(new_state().restore(&wrong).is_err());
}

/// Run as two instances, snapshotted, and taken up by three (each from the old instances
/// whose key groups overlap its own), the join writes each pair once, as one instance does.
#[tokio::test]
async fn a_join_rescaled_from_two_to_three_instances_writes_each_pair_once() {
    let schema = hash_join(None).schema();
    let sides = || [orders()[0].schema(), payments()[0].schema()];
    let new_state = || JoinState::try_new(schema.clone(), on(), None, None, None, sides()).unwrap();
    // Batches `from..to` of both sides, each row given to the instance of `count` that
    // owns its key, as the exchanges before the join give them.
    let feed = |states: &mut [JoinState], from: usize, to: usize| {
        let mut out = Vec::new();
        for i in from..to {
            for (side, batch) in [(0, orders()[i].clone()), (1, payments()[i].clone())] {
                let routed = crate::key_groups::route(
                    &[batch.column(0).clone()],
                    batch.num_rows(),
                    states.len(),
                )
                .unwrap();
                for (state, rows) in states.iter_mut().zip(routed) {
                    let rows = arrow::compute::take_record_batch(&batch, &UInt32Array::from(rows))
                        .unwrap();
                    out.extend(state.join(side, rows).unwrap().0);
                }
            }
        }
        out
    };
    let expected = feed(&mut [new_state()], 0, 3);
    let mut two = [new_state(), new_state()];
    let mut written = feed(&mut two, 0, 2);
    let snapshots: Vec<RecordBatch> = two.iter_mut().map(|s| s.snapshot().unwrap()).collect();
    let mut three = [new_state(), new_state(), new_state()];
    for (index, state) in three.iter_mut().enumerate() {
        let instance = OperatorInstance { index, count: 3 };
        let overlapping: Vec<RecordBatch> = snapshots
            .iter()
            .enumerate()
            .filter(|(old, _)| {
                crate::key_groups::overlaps(
                    OperatorInstance {
                        index: *old,
                        count: 2,
                    },
                    instance,
                )
            })
            .map(|(_, snapshot)| snapshot.clone())
            .collect();
        state.restore_rescaled(&overlapping, instance).unwrap();
    }
    written.extend(feed(&mut three, 2, 3));
    assert_eq!(sorted_lines(&written), sorted_lines(&expected));
}

fn symmetric(join_type: JoinType) -> SymmetricHashJoinExec {
    SymmetricHashJoinExec::try_new(
        quiet(orders()[1].clone()),
        quiet(payments()[2].clone()),
        on(),
        None,
        &join_type,
        NullEquality::NullEqualsNothing,
        None,
        None,
        StreamJoinPartitionMode::SinglePartition,
    )
    .unwrap()
}

#[tokio::test]
async fn gives_pairs_on_while_both_streams_are_quiet() {
    let join =
        StreamJoinExec::from_symmetric_hash_join(&symmetric(JoinType::Inner), [None, None], None)
            .unwrap();
    let mut joined = join.execute(0, Arc::new(TaskContext::default())).unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), joined.next())
        .await
        .expect("the pair, while both streams are quiet")
        .unwrap()
        .unwrap();
    // Key 3: order 30 and payment 31.
    assert_eq!(first.num_rows(), 1);
}

/// Without time bounds an outer join writes a changelog: its schema ends in `_op`.
#[test]
fn takes_outer_joins_without_time_bounds_as_changelogs() {
    for join_type in [JoinType::Left, JoinType::Right, JoinType::Full] {
        let join =
            StreamJoinExec::from_symmetric_hash_join(&symmetric(join_type), [None, None], None)
                .unwrap();
        assert!(join.writes_changelog());
        assert_eq!(join.schema().fields().last().unwrap().name(), "_op");
    }
    let inner =
        StreamJoinExec::from_symmetric_hash_join(&symmetric(JoinType::Inner), [None, None], None)
            .unwrap();
    assert!(!inner.writes_changelog());
}

/// A pair whose condition is NULL (`amount >= paid`, `paid` NULL) is no match: the outer
/// row written without one stays (no `-D`), as DataFusion's outer joins leave it.
#[test]
fn a_null_condition_is_no_match_in_a_changelog() {
    let side = |name: &str, value: Option<i64>| {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new(name, DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![value])),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    };
    let (order, payment) = (side("amount", Some(10)), side("paid", None));
    let fields = [
        order.schema().fields().to_vec(),
        payment.schema().fields().to_vec(),
    ]
    .concat();
    let filter = amount_against_paid(Operator::GtEq);
    let sides = [order.schema(), payment.schema()];
    let mut state = JoinState::try_new(
        Arc::new(Schema::new(fields)),
        on(),
        Some(filter),
        None,
        None,
        sides,
    )
    .unwrap()
    .keeping_unmatched(JoinType::Left);
    let mut changes = state.join(0, order).unwrap().0;
    changes.extend(state.join(1, payment).unwrap().0);
    assert_eq!(applied(&changes).len(), 1, "the order, without a payment");
    assert_eq!(changes.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
}

/// Each row of `batch` as text, cell by cell, its first `width` columns.
fn row_texts(batch: &RecordBatch, width: usize) -> Vec<String> {
    (0..batch.num_rows())
        .map(|row| {
            let cells: Vec<String> = (0..width)
                .map(|c| array_value_to_string(batch.column(c), row).unwrap())
                .collect();
            cells.join(" | ")
        })
        .collect()
}

/// The rows a changelog leaves (`+U` adds a row, `-D` takes one back), without `_op`.
fn applied(changes: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for batch in changes {
        let width = batch.num_columns() - 1;
        let ops = batch.column(width).as_string::<i32>();
        for (row, line) in row_texts(batch, width).iter().enumerate() {
            match ops.value(row) {
                "-D" => {
                    let at = rows
                        .iter()
                        .position(|r| r == line)
                        .expect("a row written before");
                    rows.remove(at);
                }
                _ => rows.push(line.clone()),
            }
        }
    }
    rows.sort();
    rows
}

/// An outer join without time bounds writes each row without a match at once and takes it
/// back when its first match comes: what its changelog leaves is what DataFusion's hash join
/// gives, with and without a condition besides the keys, through a snapshot taken halfway,
/// and nothing more at the end.
#[tokio::test]
async fn outer_joins_without_bounds_take_back_rows_that_find_a_match() {
    for join_type in [JoinType::Left, JoinType::Right, JoinType::Full] {
        for filter in [None, Some(paid_enough())] {
            let hash = HashJoinExec::try_new(
                memory(orders()),
                memory(payments()),
                on(),
                filter.clone(),
                &join_type,
                None,
                PartitionMode::CollectLeft,
                NullEquality::NullEqualsNothing,
                false,
            )
            .unwrap();
            let schema = hash.schema();
            let collected = collect(Arc::new(hash), Arc::new(TaskContext::default()))
                .await
                .unwrap();
            let mut expected: Vec<String> = collected
                .iter()
                .flat_map(|b| row_texts(b, b.num_columns()))
                .collect();
            expected.sort();
            let sides = [orders()[0].schema(), payments()[0].schema()];
            let new_state = || {
                JoinState::try_new(
                    schema.clone(),
                    on(),
                    filter.clone(),
                    None,
                    None,
                    sides.clone(),
                )
                .unwrap()
                .keeping_unmatched(join_type)
            };
            for restore_at in [None, Some(1)] {
                let mut state = new_state();
                let mut changes = Vec::new();
                for i in 0..3 {
                    if Some(i) == restore_at {
                        let snapshot = state.snapshot().unwrap();
                        state = new_state();
                        state.restore(&snapshot).unwrap();
                    }
                    // The outer side's rows come first, so that later ones match them.
                    let mut round = [(0, orders()[i].clone()), (1, payments()[i].clone())];
                    if join_type == JoinType::Right {
                        round.reverse();
                    }
                    for (side, batch) in round {
                        changes.extend(state.join(side, batch).unwrap().0);
                    }
                }
                assert!(state.finish().unwrap().is_empty());
                let taken_back = changes
                    .iter()
                    .map(|b| {
                        let ops = b.column(b.num_columns() - 1).as_string::<i32>();
                        ops.iter().filter(|op| *op == Some("-D")).count()
                    })
                    .sum::<usize>();
                assert!(
                    taken_back > 0,
                    "{join_type}: a row without a match taken back"
                );
                assert_eq!(
                    applied(&changes),
                    expected,
                    "{join_type}, {filter:?}, restored at {restore_at:?}"
                );
            }
        }
    }
}

/// `(id, ts ms)` rows as a batch of `id INT, ts TIMESTAMP(ms)`.
fn timed(rows: impl IntoIterator<Item = (i32, i64)>) -> RecordBatch {
    let (ids, times): (Vec<i32>, Vec<i64>) = rows.into_iter().unzip();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int32Array::from(ids)),
            Arc::new(TimestampMillisecondArray::from(times)),
        ],
    )
    .unwrap()
}

/// `right.ts >= left.ts AND right.ts <= left.ts + upper`.
fn within(upper: ScalarValue) -> JoinFilter {
    let time = DataType::Timestamp(TimeUnit::Millisecond, None);
    let schema = Schema::new(vec![
        Field::new("ts", time.clone(), true),
        Field::new("ts", time, true),
    ]);
    let (left, right) = (
        Arc::new(Column::new("ts", 0)) as PhysicalExprRef,
        Arc::new(Column::new("ts", 1)) as PhysicalExprRef,
    );
    let latest = BinaryExpr::new(left.clone(), Operator::Plus, Arc::new(Literal::new(upper)));
    let expression = BinaryExpr::new(
        Arc::new(BinaryExpr::new(right.clone(), Operator::GtEq, left)),
        Operator::And,
        Arc::new(BinaryExpr::new(right, Operator::LtEq, Arc::new(latest))),
    );
    let column = |side| ColumnIndex { index: 1, side };
    JoinFilter::new(
        Arc::new(expression),
        vec![column(JoinSide::Left), column(JoinSide::Right)],
        Arc::new(schema),
    )
}

fn event_time(slack_ms: u64) -> SideTime {
    SideTime {
        column: "ts".into(),
        max_out_of_orderness: std::time::Duration::from_millis(slack_ms),
    }
}

#[test]
fn reads_time_bounds_from_the_condition() {
    let schema = timed([]).schema();
    let hour = ScalarValue::new_interval_mdn(0, 0, 3_600_000_000_000);
    let time = event_time(5);
    let bounds = TimeBounds::of(&within(hour), [&schema, &schema], [&time, &time]).unwrap();
    assert_eq!((bounds.lower, bounds.upper), (Some(0), Some(3_600_000)));
    assert_eq!(bounds.slack, [5, 5]);
    // Months have no fixed length: no upper bound from them.
    let month = ScalarValue::new_interval_mdn(1, 0, 0);
    let bounds = TimeBounds::of(&within(month), [&schema, &schema], [&time, &time]).unwrap();
    assert_eq!((bounds.lower, bounds.upper), (Some(0), None));
    // Only a timestamp column declared as a side's event time counts.
    let id = SideTime {
        column: "id".into(),
        ..time.clone()
    };
    let day = ScalarValue::new_interval_mdn(0, 1, 0);
    assert!(TimeBounds::of(&within(day), [&schema, &schema], [&id, &time]).is_none());
}

#[test]
fn lets_rows_go_once_they_cannot_match_and_drops_late_ones() {
    let schema = timed([]).schema();
    let filter = within(ScalarValue::DurationMillisecond(Some(2000)));
    let time = event_time(0);
    let bounds = TimeBounds::of(&filter, [&schema, &schema], [&time, &time]);
    let join_schema = Arc::new(Schema::new(
        [schema.fields().to_vec(), schema.fields().to_vec()].concat(),
    ));
    let new_state = || {
        let sides = [schema.clone(), schema.clone()];
        JoinState::try_new(
            join_schema.clone(),
            on(),
            Some(filter.clone()),
            bounds,
            None,
            sides,
        )
        .unwrap()
    };
    let (mut state, mut pairs) = (new_state(), 0);
    // Order i at i s, paid at i s + 500 ms; one batch of ten from each side in turn.
    for k in 0..10 {
        let ids = k * 10..k * 10 + 10;
        let orders = timed(ids.clone().map(|i| (i, i64::from(i) * 1000)));
        let payments = timed(ids.map(|i| (i, i64::from(i) * 1000 + 500)));
        for (side, batch) in [(0, orders), (1, payments)] {
            pairs += state
                .join(side, batch)
                .unwrap()
                .0
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>();
        }
    }
    assert_eq!(pairs, 100);
    // The payments' watermark (99.5 s) leaves only orders from 97.5 s on within reach.
    assert_eq!(
        state.sides[0].kept().count(),
        1,
        "{:?}",
        state.sides[0].kept().count()
    );
    let snapshot = state.snapshot().unwrap();
    let mut restored = new_state();
    restored.restore(&snapshot).unwrap();
    for state in [&mut state, &mut restored] {
        // A payment from before the watermark is late: dropped, not joined.
        let late = timed([(99, 98_000), (99, 99_600)]);
        let (joined, late) = state.join(1, late).unwrap();
        assert_eq!(joined.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        assert_eq!(late, 1);
    }
}

/// A join without time bounds keeps a row its time to live: a payment for an order older
/// than that finds nothing; a snapshot keeps when each row came.
#[tokio::test]
async fn rows_of_a_join_without_bounds_expire_after_their_time_to_live() {
    let schema = hash_join(None).schema();
    let sides = || [orders()[0].schema(), payments()[0].schema()];
    let ttl = Some(Duration::from_millis(300));
    let new_state = || JoinState::try_new(schema.clone(), on(), None, None, ttl, sides()).unwrap();
    let mut state = new_state();
    state.join(0, orders()[0].clone()).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    state.join(0, orders()[1].clone()).unwrap();
    let snapshot = state.snapshot().unwrap();
    let mut restored = new_state();
    restored.restore(&snapshot).unwrap();
    restored
        .on_tick(chrono::Utc::now().timestamp_millis())
        .unwrap();
    // The first batch of orders went; the second stays and joins.
    let mut joined = Vec::new();
    for payments in payments() {
        joined.extend(restored.join(1, payments).unwrap().0);
    }
    let mut kept = new_state();
    kept.join(0, orders()[1].clone()).unwrap();
    let mut expected = Vec::new();
    for payments in payments() {
        expected.extend(kept.join(1, payments).unwrap().0);
    }
    assert!(!expected.is_empty());
    assert_eq!(sorted_lines(&joined), sorted_lines(&expected));
}

/// Orders at i s and payments (most within 2 s of theirs, some later, some without an order),
/// each side in time order, in batches of five.
fn timed_orders_and_payments() -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let orders: Vec<(i32, i64)> = (0..40).map(|i| (i, i64::from(i) * 1000)).collect();
    let mut payments: Vec<(i32, i64)> = (0..40)
        .filter(|i| i % 3 != 0)
        .map(|i| (i, i64::from(i) * 1000 + i64::from(i % 4) * 900))
        .chain((100..106).map(|i| (i, i64::from(i - 70) * 1000)))
        .collect();
    payments.sort_by_key(|p| p.1);
    let batches = |rows: Vec<(i32, i64)>| -> Vec<RecordBatch> {
        rows.chunks(5).map(|c| timed(c.to_vec())).collect()
    };
    (batches(orders), batches(payments))
}

/// An outer interval join's rows: each pair, and each row of an outer side that found none
/// (once no match can come, or at the end), as DataFusion's hash join gives them; the same
/// through a snapshot taken halfway.
#[tokio::test]
async fn outer_interval_joins_write_rows_without_a_match_once() {
    let (orders, payments) = timed_orders_and_payments();
    let filter = within(ScalarValue::DurationMillisecond(Some(2000)));
    let schema = timed([]).schema();
    let time = event_time(0);
    let bounds = TimeBounds::of(&filter, [&schema, &schema], [&time, &time]);
    for join_type in [JoinType::Left, JoinType::Right, JoinType::Full] {
        let hash = HashJoinExec::try_new(
            memory(orders.clone()),
            memory(payments.clone()),
            on(),
            Some(filter.clone()),
            &join_type,
            None,
            PartitionMode::CollectLeft,
            NullEquality::NullEqualsNothing,
            false,
        )
        .unwrap();
        let join_schema = hash.schema();
        let expected = sorted_lines(
            &collect(Arc::new(hash), Arc::new(TaskContext::default()))
                .await
                .unwrap(),
        );
        let new_state = || {
            JoinState::try_new(
                join_schema.clone(),
                on(),
                Some(filter.clone()),
                bounds,
                None,
                [schema.clone(), schema.clone()],
            )
            .unwrap()
            .keeping_unmatched(join_type)
        };
        for restore_at in [None, Some(4)] {
            let (mut state, mut written, mut before_end) = (new_state(), Vec::new(), 0);
            for (k, (order, payment)) in orders.iter().zip(&payments).enumerate() {
                if Some(k) == restore_at {
                    let snapshot = state.snapshot().unwrap();
                    state = new_state();
                    state.restore(&snapshot).unwrap();
                }
                for (side, batch) in [(0, order), (1, payment)] {
                    let (out, late) = state.join(side, batch.clone()).unwrap();
                    assert_eq!(late, 0);
                    written.extend(out);
                }
            }
            for (side, rest) in [(0, &orders), (1, &payments)] {
                let fed = orders.len().min(payments.len());
                for batch in &rest[fed..] {
                    written.extend(state.join(side, batch.clone()).unwrap().0);
                }
            }
            let padded = |b: &RecordBatch| b.column(0).null_count() + b.column(2).null_count();
            before_end += written.iter().map(padded).sum::<usize>();
            written.extend(state.finish().unwrap());
            // The snapshot taken at the end knows those rows were written.
            let mut again = new_state();
            again.restore(&state.snapshot().unwrap()).unwrap();
            assert!(again.finish().unwrap().is_empty(), "{join_type}");
            assert_eq!(
                sorted_lines(&written),
                expected,
                "{join_type}, restored at {restore_at:?}"
            );
            // Most rows without a match went out as their time passed, not at the end.
            assert!(before_end > 0, "{join_type}");
        }
    }
}
