use super::*;

use arrow::array::{AsArray, Int64Array, StringArray};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::test_util::memory;

/// Rows of (key, value, seq), in batches of `batch` rows. Values repeat: `seq` decides ties
/// where the query orders by it too.
fn batches(rows: usize, batch: usize) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, false),
        Field::new("seq", DataType::Int64, false),
    ]));
    let all: Vec<(Option<String>, i64, i64)> = (0..rows as i64)
        .map(|i| {
            // A NULL key is a key like any other.
            let key = (i % 7 != 3).then(|| format!("k{}", i % 5));
            (key, (i * 7919) % 101, i)
        })
        .collect();
    all.chunks(batch)
        .map(|chunk| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter(chunk.iter().map(|r| r.0.clone()))),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1))),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.2))),
                ],
            )
            .unwrap()
        })
        .collect()
}

/// DataFusion's plan of `sql` over `batches` as table `t`.
async fn plan(sql: &str, batches: Vec<RecordBatch>) -> Arc<dyn ExecutionPlan> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let table = MemTable::try_new(batches[0].schema(), vec![batches]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// Row `row` of `batch`'s first `width` columns, as text.
fn row_text(batch: &RecordBatch, row: usize, width: usize) -> String {
    (0..width)
        .map(|c| arrow::util::display::array_value_to_string(batch.column(c), row).unwrap())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The table a changelog leaves, by the columns `key` (upserts replace, `-D` deletes), as
/// sorted lines without `_op`.
fn applied(changes: &[RecordBatch], key: &[&str]) -> Vec<String> {
    let mut table = std::collections::BTreeMap::new();
    for batch in changes {
        let op = batch.num_columns() - 1;
        let ops = batch.column(op).as_string::<i32>();
        for row in 0..batch.num_rows() {
            let key_of: Vec<String> = key
                .iter()
                .map(|k| {
                    let column = batch.column_by_name(k).unwrap();
                    arrow::util::display::array_value_to_string(column, row).unwrap()
                })
                .collect();
            match ops.value(row) {
                UPSERT => table.insert(key_of, row_text(batch, row, op)),
                DELETE => table.remove(&key_of),
                other => panic!("{other}"),
            };
        }
    }
    let mut rows: Vec<String> = table.into_values().collect();
    rows.sort();
    rows
}

fn sorted_lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| row_text(b, r, b.num_columns())))
        .collect();
    rows.sort();
    rows
}

fn top_n_of(plan: &Arc<dyn ExecutionPlan>) -> Option<TopNConfig> {
    let mut found = None;
    plan.apply(|node| {
        if let Some(top_n) = node.downcast_ref::<TopNExec>() {
            found = Some(top_n.config().clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    found
}

#[tokio::test]
async fn its_changelog_ends_as_datafusion_s_ranking_of_the_whole_input() {
    let rule = TopNRule {
        changelog: true,
        state_ttl: None,
    };
    for (sql, key, limit) in [
        (
            "SELECT k, v, seq, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC, seq) AS rn FROM t) WHERE rn <= 3",
            vec!["k", "rn"],
            3,
        ),
        // Deduplication: the first row of each key; the rank is not selected.
        (
            "SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY seq) AS rn FROM t) WHERE rn = 1",
            vec!["k"],
            1,
        ),
        // No PARTITION BY: one ranking of every row; the limit written the other way round.
        (
            "SELECT v, seq, rn FROM (SELECT *, ROW_NUMBER() OVER (ORDER BY v, seq DESC) AS rn FROM t) WHERE 5 > rn",
            vec!["rn"],
            4,
        ),
    ] {
        for batch in [1, 7, 1000] {
            let batch_plan = plan(sql, batches(300, batch)).await;
            let expected = sorted_lines(
                &collect(batch_plan.clone(), Arc::new(TaskContext::default()))
                    .await
                    .unwrap(),
            );
            let streaming = rule
                .optimize(batch_plan, &ConfigOptions::default())
                .unwrap();
            let config = top_n_of(&streaming).unwrap_or_else(|| panic!("no Top-N: {sql}"));
            assert_eq!(config.limit, limit, "{sql}");
            let changes = collect(streaming, Arc::new(TaskContext::default()))
                .await
                .unwrap();
            assert_eq!(
                applied(&changes, &key),
                expected,
                "{sql}, batches of {batch}"
            );
        }
    }
}

#[tokio::test]
async fn rankings_it_cannot_keep_incrementally_stay_as_they_are() {
    let rule = TopNRule {
        changelog: true,
        state_ttl: None,
    };
    for sql in [
        // Rows ranked above N: every row's rank can change.
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v) AS rn FROM t) WHERE rn > 3",
        // Another function than ROW_NUMBER.
        "SELECT * FROM (SELECT *, RANK() OVER (PARTITION BY k ORDER BY v) AS rn FROM t) WHERE rn <= 3",
        // More to the filter than the rank.
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v) AS rn FROM t) WHERE rn <= 3 AND v > 10",
    ] {
        let streaming = rule
            .optimize(plan(sql, batches(10, 10)).await, &ConfigOptions::default())
            .unwrap();
        assert!(top_n_of(&streaming).is_none(), "{sql}");
    }
}

/// A Top-N of the first (key, value, seq) batches, run directly.
fn operator(ttl: Option<Duration>) -> TopN {
    let schema = batches(1, 1)[0].schema();
    let config = TopNConfig {
        partition_by: vec![Arc::new(Column::new("k", 0))],
        order_by: vec![PhysicalSortExpr::new(
            Arc::new(Column::new("v", 1)),
            arrow::compute::SortOptions {
                descending: true,
                nulls_first: true,
            },
        )],
        limit: 2,
        state_ttl: ttl,
        per_window: None,
    };
    let rank = Field::new("rn", DataType::UInt64, false);
    let exec = TopNExec::try_new(memory(batches(1, 1)), config.clone(), rank).unwrap();
    TopN::try_new(config, schema, exec.schema()).unwrap()
}

#[test]
fn a_restored_snapshot_goes_on_as_if_nothing_happened() {
    let input = batches(200, 9);
    let mut whole = operator(None);
    let mut expected = Vec::new();
    for (i, batch) in input.iter().enumerate() {
        let out = whole.process_batch(0, batch.clone()).unwrap();
        if i >= 10 {
            expected.extend(out);
        }
    }
    let mut first = operator(None);
    for batch in &input[..10] {
        first.process_batch(0, batch.clone()).unwrap();
    }
    let snapshot = first.snapshot().unwrap();
    let mut restored = operator(None);
    restored.restore(&snapshot).unwrap();
    assert_eq!(restored.size(), first.size());
    let mut got = Vec::new();
    for batch in &input[10..] {
        got.extend(restored.process_batch(0, batch.clone()).unwrap());
    }
    assert_eq!(
        pretty_format_batches(&got).unwrap().to_string(),
        pretty_format_batches(&expected).unwrap().to_string()
    );

    // Taken up by two instances, each keeps its own keys' rows, and together all of them.
    let mut rows = 0;
    for index in 0..2 {
        let mut share = operator(None);
        let instance = OperatorInstance { index, count: 2 };
        share
            .restore_rescaled(std::slice::from_ref(&snapshot), instance)
            .unwrap();
        let own = share.snapshot().unwrap();
        let keys = own.column(0).clone();
        let kept = rows_of_instance(&own, &[keys], instance).unwrap();
        assert_eq!(kept.num_rows(), own.num_rows());
        rows += own.num_rows();
    }
    assert_eq!(rows, snapshot.num_rows());
}

#[test]
fn a_key_not_updated_for_its_ttl_is_retracted() {
    let mut top_n = operator(Some(Duration::from_millis(1)));
    top_n.process_batch(0, batches(20, 20).remove(0)).unwrap();
    let kept = top_n.snapshot().unwrap().num_rows();
    assert!(kept > 0);
    let far = chrono::Utc::now().timestamp_millis() + 1000;
    let retracted = top_n.on_tick(far).unwrap();
    let ops: Vec<&str> = retracted
        .iter()
        .flat_map(|b| b.column(b.num_columns() - 1).as_string::<i32>().iter())
        .map(Option::unwrap)
        .collect();
    assert_eq!(ops.len(), kept);
    assert!(ops.iter().all(|op| *op == DELETE), "{ops:?}");
    assert_eq!(top_n.size(), 0);
    let ranks: Vec<u64> = retracted
        .iter()
        .flat_map(|b| {
            let rank = b
                .column(b.num_columns() - 2)
                .as_primitive::<arrow::datatypes::UInt64Type>();
            rank.values().to_vec()
        })
        .collect();
    assert!(ranks.iter().all(|r| (1..=2).contains(r)), "{ranks:?}");
}

#[tokio::test]
async fn without_order_by_any_row_of_a_key_is_its_first() {
    let rule = TopNRule {
        changelog: true,
        state_ttl: None,
    };
    let sql =
        "SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k) AS rn FROM t) WHERE rn = 1";
    let streaming = rule
        .optimize(plan(sql, batches(100, 7)).await, &ConfigOptions::default())
        .unwrap();
    assert!(top_n_of(&streaming).is_some());
    let changes = collect(streaming, Arc::new(TaskContext::default()))
        .await
        .unwrap();
    // Six keys (five and NULL), each written once: the first row of each stays first.
    assert_eq!(applied(&changes, &["k"]).len(), 6);
    let written: usize = changes.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(written, 6);
}

#[tokio::test]
async fn what_reads_its_changelog_may_only_select_from_it() {
    let rule = TopNRule {
        changelog: true,
        state_ttl: None,
    };
    let sql = "SELECT k, SUM(v) FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v) AS rn FROM t) WHERE rn <= 2 GROUP BY k";
    let refused = rule
        .optimize(plan(sql, batches(10, 10)).await, &ConfigOptions::default())
        .unwrap_err();
    assert!(refused.to_string().contains("is a changelog"), "{refused}");
}

/// Rows of (window start ms, key, value).
fn window_rows(rows: &[(i64, &str, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "w",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(arrow::array::TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

#[test]
fn per_window_a_window_s_first_n_are_written_once_when_its_watermark_passes() {
    let schema = window_rows(&[]).schema();
    // The two largest values of each 10 ms window (partitioned by its start).
    let config = TopNConfig {
        partition_by: vec![Arc::new(Column::new("w", 0))],
        order_by: vec![PhysicalSortExpr::new(
            Arc::new(Column::new("v", 2)),
            arrow::compute::SortOptions {
                descending: true,
                nulls_first: true,
            },
        )],
        limit: 2,
        state_ttl: None,
        per_window: Some(PartitionWindow {
            bound: Arc::new(Column::new("w", 0)),
            end_after: 10,
        }),
    };
    let rank = Field::new("rn", DataType::UInt64, false);
    let exec = TopNExec::try_new(memory(vec![window_rows(&[])]), config.clone(), rank).unwrap();
    assert!(
        exec.schema()
            .index_of(ferris_connectors::changelog::OP_COLUMN)
            .is_err()
    );
    let top = || TopN::try_new(config.clone(), schema.clone(), exec.schema()).unwrap();
    let text = |batches: &[RecordBatch]| -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| (0..b.num_rows()).map(move |r| row_text(b, r, 4)))
            .collect()
    };
    let mut ranked = top();
    // Rows of two windows, in two batches: nothing is written before a watermark.
    let first = window_rows(&[(0, "a", 5), (0, "b", 9), (10, "a", 1)]);
    let second = window_rows(&[(0, "c", 7), (10, "b", 3), (0, "d", 1)]);
    assert!(ranked.process_batch(0, first).unwrap().is_empty());
    assert!(ranked.process_batch(0, second.clone()).unwrap().is_empty());
    // A checkpoint here keeps both windows' first N.
    let snapshot = ranked.snapshot().unwrap();
    let announced = |w| crate::exchange::watermark_batch(&schema, w);
    let closed = text(&ranked.process_batch(0, announced(10)).unwrap());
    assert_eq!(
        closed,
        [
            "1970-01-01T00:00:00 | b | 9 | 1",
            "1970-01-01T00:00:00 | c | 7 | 2"
        ]
    );
    // Closed once: a later watermark writes the next window only.
    let rest = text(&ranked.process_batch(0, announced(25)).unwrap());
    assert_eq!(
        rest,
        [
            "1970-01-01T00:00:00.010 | b | 3 | 1",
            "1970-01-01T00:00:00.010 | a | 1 | 2"
        ]
    );
    assert_eq!(ranked.size(), 0);
    assert!(ranked.finish().unwrap().is_empty());
    // Restored from the checkpoint, the same windows close the same way.
    let mut restored = top();
    restored.restore(&snapshot).unwrap();
    assert_eq!(
        text(&restored.process_batch(0, announced(10)).unwrap()),
        closed
    );
    assert_eq!(text(&restored.finish().unwrap()), rest);
}
