//! The window aggregate's unit tests: windows, sessions, lateness, snapshots, the memory limit.

use super::*;
use arrow::array::{Int64Array, StringArray};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

use crate::event_time::stamp_type;
use crate::late::LateRecordSink;
use crate::pre_aggregate::PreAggregator;

/// Rows of (key, event time ms, value), stamped with a watermark bound of `bound` ms.
fn stamped(rows: &[(&str, i64, i64)], bound: i64) -> RecordBatch {
    let mut max = i64::MIN;
    let marks: Vec<i64> = rows
        .iter()
        .map(|r| {
            let w = max.saturating_sub(bound);
            max = max.max(r.1);
            w
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
        Field::new(EVENT_TIME_COLUMN, stamp_type(), false),
        Field::new(WATERMARK_COLUMN, stamp_type(), false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(TimestampMillisecondArray::from(marks)),
        ],
    )
    .unwrap()
}

/// A config from DataFusion's own plan of a GROUP BY over stamped rows.
async fn config(
    window: WindowSpec,
    emit: EmitMode,
    late: LateDataPolicy,
    bound: i64,
) -> WindowAggregateConfig {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let batch = stamped(&[], bound);
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let group = if window.is_windowed() {
        "k, _window_start, _window_end"
    } else {
        "k"
    };
    let plan = ctx
        .sql(&format!(
            "SELECT {group}, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY {group}"
        ))
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let mut node = plan;
    loop {
        if let Some(aggregate) =
            node.downcast_ref::<datafusion::physical_plan::aggregates::AggregateExec>()
        {
            return WindowAggregateConfig {
                window,
                emit,
                late,
                watermark: WatermarkSpec {
                    field: Some("ts".into()),
                    format: None,
                    max_out_of_orderness: std::time::Duration::from_millis(bound as u64),
                    ..Default::default()
                },
                group_by: aggregate.group_expr().clone(),
                aggr_expr: aggregate.aggr_expr().to_vec(),
                filter_expr: aggregate.filter_expr().to_vec(),
                output_schema: aggregate.schema(),
                changelog: false,
                having: None,
                merges: false,
                state_ttl: None,
                over_window: false,
                announces_watermark: false,
            };
        }
        node = node.children()[0].clone();
    }
}

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// Runs rows through in batches of `size`, optionally snapshotting and restoring into a
/// fresh aggregator after `restart_after` batches.
fn run(
    config: &WindowAggregateConfig,
    rows: &RecordBatch,
    size: usize,
    restart_after: Option<usize>,
) -> (Vec<RecordBatch>, usize) {
    let mut aggregator = WindowAggregator::try_new(config.clone()).unwrap();
    let mut out = Vec::new();
    let mut offset = 0;
    let mut batches = 0;
    while offset < rows.num_rows() {
        let len = size.min(rows.num_rows() - offset);
        out.extend(aggregator.process(&rows.slice(offset, len)).unwrap());
        offset += len;
        batches += 1;
        if restart_after == Some(batches) {
            let snapshot = aggregator.snapshot().unwrap();
            aggregator = WindowAggregator::try_new(config.clone()).unwrap();
            aggregator.restore(&snapshot).unwrap();
        }
    }
    out.extend(aggregator.finish().unwrap());
    (out, aggregator.late_records())
}

fn trades() -> RecordBatch {
    stamped(
        &[
            ("a", 1_000, 1),
            ("b", 2_500, 2),
            ("a", 9_000, 3),
            ("a", 11_000, 4),
            ("b", 7_000, 5), // W = 9s: [0, 10s) is still open
            ("a", 25_000, 6),
            ("b", 3_000, 7), // W = 23s: [0, 10s) is final, so late
            ("b", 31_000, 8),
        ],
        2_000,
    )
}

#[tokio::test]
async fn tumbling_final_emits_closed_windows_and_drops_late_rows() {
    let config = config(
        WindowSpec::Tumbling { size: 10_000 },
        EmitMode::Final,
        LateDataPolicy::Drop,
        2_000,
    )
    .await;
    let (out, late) = run(&config, &trades(), 8, None);
    assert_eq!(late, 1);
    let expected = "\
+---+---------------------+---------------------+-----------------+----------+
| k | _window_start       | _window_end         | count(Int64(1)) | sum(t.v) |
+---+---------------------+---------------------+-----------------+----------+
| a | 1970-01-01T00:00:00 | 1970-01-01T00:00:10 | 2               | 4        |
| b | 1970-01-01T00:00:00 | 1970-01-01T00:00:10 | 2               | 7        |
| a | 1970-01-01T00:00:10 | 1970-01-01T00:00:20 | 1               | 4        |
| a | 1970-01-01T00:00:20 | 1970-01-01T00:00:30 | 1               | 6        |
| b | 1970-01-01T00:00:30 | 1970-01-01T00:00:40 | 1               | 8        |
+---+---------------------+---------------------+-----------------+----------+";
    assert_eq!(text(&out), expected);
    for size in [1, 3] {
        assert_eq!(
            text(&run(&config, &trades(), size, None).0),
            expected,
            "batch size {size}"
        );
    }
}

#[tokio::test]
async fn snapshot_and_restore_continue_every_window_kind_exactly() {
    let kinds = [
        (WindowSpec::Tumbling { size: 10_000 }, EmitMode::Final),
        (
            WindowSpec::Sliding {
                size: 10_000,
                slide: 5_000,
            },
            EmitMode::Final,
        ),
        (WindowSpec::Session { gap: 4_000 }, EmitMode::Final),
        (WindowSpec::Tumbling { size: 10_000 }, EmitMode::Changes),
        (WindowSpec::Global, EmitMode::Changes),
    ];
    for (window, emit) in kinds {
        let config = config(window, emit, LateDataPolicy::Drop, 2_000).await;
        let whole = run(&config, &trades(), 2, None);
        for restart in 1..4 {
            let restored = run(&config, &trades(), 2, Some(restart));
            assert_eq!(
                text(&restored.0),
                text(&whole.0),
                "{window} {emit} restored after {restart} batches"
            );
            assert_eq!(restored.1, whole.1);
        }
    }
}

#[tokio::test]
async fn sessions_merge_when_an_event_bridges_them() {
    let config = config(
        WindowSpec::Session { gap: 4_000 },
        EmitMode::Final,
        LateDataPolicy::Drop,
        10_000,
    )
    .await;
    let rows = stamped(
        &[
            ("a", 1_000, 1),
            ("a", 8_000, 2),
            ("a", 4_500, 3),
            ("a", 30_000, 4),
        ],
        10_000,
    );
    let (out, _) = run(&config, &rows, 1, None);
    let expected = "\
+---+---------------------+---------------------+-----------------+----------+
| k | _window_start       | _window_end         | count(Int64(1)) | sum(t.v) |
+---+---------------------+---------------------+-----------------+----------+
| a | 1970-01-01T00:00:01 | 1970-01-01T00:00:12 | 3               | 6        |
| a | 1970-01-01T00:00:30 | 1970-01-01T00:00:34 | 1               | 4        |
+---+---------------------+---------------------+-----------------+----------+";
    assert_eq!(text(&out), expected);
}

#[tokio::test]
async fn session_changes_retract_the_row_of_a_session_merged_away() {
    let mut config = config(
        WindowSpec::Session { gap: 4_000 },
        EmitMode::Changes,
        LateDataPolicy::Drop,
        10_000,
    )
    .await;
    config.output_schema = WindowAggregateConfig::output_schema_for(&config.output_schema, true);
    config.changelog = true;
    let rows = stamped(&[("a", 1_000, 1), ("a", 8_000, 2), ("a", 4_500, 3)], 10_000);
    let (out, _) = run(&config, &rows, 1, None);
    let lines: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.contains("| a "))
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        lines,
        [
            "a 1970-01-01T00:00:01 1970-01-01T00:00:05 1 1 +U",
            "a 1970-01-01T00:00:08 1970-01-01T00:00:12 1 2 +U",
            "a 1970-01-01T00:00:08 1970-01-01T00:00:12 1 2 -D",
            "a 1970-01-01T00:00:01 1970-01-01T00:00:12 3 6 +U",
        ]
    );
}

#[tokio::test]
async fn allowed_lateness_emits_a_corrected_row() {
    let config = config(
        WindowSpec::Tumbling { size: 10_000 },
        EmitMode::Final,
        LateDataPolicy::AllowedLateness(5_000),
        0,
    )
    .await;
    let rows = stamped(
        &[
            ("a", 1_000, 1),
            ("a", 11_000, 2),
            ("a", 2_000, 3),
            ("a", 16_000, 4),
            ("a", 3_000, 5),
        ],
        0,
    );
    let (out, late) = run(&config, &rows, 1, None);
    assert_eq!(
        late, 1,
        "the record after W passed end + lateness is dropped"
    );
    let totals: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.contains("| a "))
        .map(|l| l.split('|').nth(5).unwrap().trim().to_string())
        .collect();
    // [0,10s): final 1, corrected to 4; [10s,20s): final 6.
    assert_eq!(totals, ["1", "4", "6"]);
}

#[derive(Debug, Default)]
struct Collect(std::sync::Mutex<Vec<RecordBatch>>);

impl LateRecordSink for Collect {
    fn write(&self, late: &RecordBatch) -> Result<()> {
        self.0.lock().unwrap().push(late.clone());
        Ok(())
    }
}

#[tokio::test]
async fn dead_lettered_late_rows_keep_their_columns() {
    let sink = Arc::new(Collect::default());
    let config = config(
        WindowSpec::Tumbling { size: 10_000 },
        EmitMode::Final,
        LateDataPolicy::DeadLetter(sink.clone()),
        2_000,
    )
    .await;
    run(&config, &trades(), 3, None);
    let late = sink.0.lock().unwrap();
    assert_eq!(late.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert!(
        text(&late).contains("| b | 7 | 1970-01-01T00:00:03"),
        "{}",
        text(&late)
    );
}

#[tokio::test]
async fn state_over_the_memory_limit_is_a_clear_error() {
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let config = config(
        WindowSpec::Global,
        EmitMode::Changes,
        LateDataPolicy::Drop,
        0,
    )
    .await;
    let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
    let rows: Vec<(&str, i64, i64)> = keys.iter().map(|k| (k.as_str(), 0, 1)).collect();
    let batch = stamped(&rows, 0);
    let input = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
        &[vec![batch.clone()]],
        batch.schema(),
        None,
    )
    .unwrap();
    let exec = WindowAggregateExec::try_new(input, config).unwrap();
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(64 * 1024, 1.0)
        .build_arc()
        .unwrap();
    let ctx = Arc::new(TaskContext::default().with_runtime(runtime));
    let mut stream = exec.execute(0, ctx).unwrap();
    let err = stream.next().await.unwrap().unwrap_err().to_string();
    assert!(err.contains("over the job's 'state.memory.limit'"), "{err}");
}

/// Rows in arrival order, out of order by up to 3 s and now and then 10 s late, of keys a
/// to c, one every 100 ms (a fixed pseudo-random sequence).
fn disordered(count: usize) -> Vec<(&'static str, i64, i64)> {
    let mut seed: u64 = 42;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    (0..count)
        .map(|i| {
            let key = ["a", "b", "c"][next(3) as usize];
            let delay = if next(10) == 0 {
                10_000
            } else {
                next(3_000) as i64
            };
            (key, i as i64 * 100 - delay, i as i64)
        })
        .collect()
}

/// Pre-aggregating each micro-batch and merging the partial states gives the rows and the
/// late count that aggregating the rows gives, whatever the micro-batch: the partial rows'
/// lateness bands keep apart rows of a group that a watermark inside the batch judges
/// otherwise.
#[tokio::test]
async fn two_phases_give_what_one_gives() {
    let rows = stamped(&disordered(600), 2_000);
    let kinds = [
        (
            WindowSpec::Tumbling { size: 1_000 },
            EmitMode::Final,
            LateDataPolicy::Drop,
        ),
        (
            WindowSpec::Tumbling { size: 3_000 },
            EmitMode::Final,
            LateDataPolicy::AllowedLateness(1_500),
        ),
        (
            WindowSpec::Tumbling { size: 2_000 },
            EmitMode::Changes,
            LateDataPolicy::AllowedLateness(500),
        ),
        (WindowSpec::Global, EmitMode::Changes, LateDataPolicy::Drop),
    ];
    let sorted = |batches: &[RecordBatch]| {
        let text = text(batches);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        lines.join("\n")
    };
    for (window, emit, late) in kinds {
        let config = config(window, emit, late, 2_000).await;
        let (partial, merging) = config.two_phases().unwrap();
        for size in [1, 7, 64, 600] {
            // Rows merged from several senders: only their watermarks move the operator on.
            let mut one = WindowAggregator::try_new(config.clone()).unwrap();
            one.watermark_from_rows = true;
            let schema = partial.schema(&rows.schema()).unwrap();
            let mut pre = PreAggregator::try_new(&partial, &rows.schema(), schema).unwrap();
            let mut two = WindowAggregator::try_new(merging.clone()).unwrap();
            two.watermark_from_rows = true;
            let (mut by_one, mut by_two) = (Vec::new(), Vec::new());
            let mut offset = 0;
            while offset < rows.num_rows() {
                let batch = rows.slice(offset, size.min(rows.num_rows() - offset));
                by_one.extend(one.process(&batch).unwrap());
                for partial in pre.process_batch(0, batch).unwrap() {
                    by_two.extend(two.process(&partial).unwrap());
                }
                offset += size;
            }
            by_one.extend(one.finish().unwrap());
            by_two.extend(two.finish().unwrap());
            let case = format!("{window} {emit} in batches of {size}");
            assert!(
                one.late_records() > 0 || window == WindowSpec::Global,
                "{case}"
            );
            assert_eq!(one.late_records(), two.late_records(), "{case}");
            assert_eq!(sorted(&by_one), sorted(&by_two), "{case}");
        }
    }
}

/// A keyed table's changelog (a GROUP BY without a window), its keys expiring after `ttl`.
async fn table_config(ttl: Duration) -> WindowAggregateConfig {
    let mut config = config(
        WindowSpec::Global,
        EmitMode::Changes,
        LateDataPolicy::Drop,
        2_000,
    )
    .await;
    config.changelog = true;
    config.output_schema = WindowAggregateConfig::output_schema_for(&config.output_schema, true);
    config.state_ttl = Some(ttl);
    config
}

/// A keyed table's key not updated for its time to live goes: the changelog retracts its
/// row, and it starts afresh when it comes again. A snapshot keeps when each key was last
/// updated.
#[tokio::test]
async fn a_table_s_keys_expire_after_their_time_to_live() {
    let config = table_config(Duration::from_millis(300)).await;
    let mut aggregator = WindowAggregator::try_new(config.clone()).unwrap();
    aggregator
        .process(&stamped(&[("b", 1_000, 2)], 2_000))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    aggregator
        .process(&stamped(&[("a", 2_000, 5)], 2_000))
        .unwrap();
    let snapshot = aggregator.snapshot().unwrap();
    let mut restored = WindowAggregator::try_new(config.clone()).unwrap();
    restored.restore(&snapshot).unwrap();
    let expired = restored
        .on_tick(chrono::Utc::now().timestamp_millis())
        .unwrap();
    // The table as printed, its cells' padding left out.
    let squeezed = |batches: &[RecordBatch]| {
        text(batches)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let expired = squeezed(&expired);
    assert!(expired.contains("| b | 1 | 2 | -D |"), "{expired}");
    assert!(!expired.contains("| a "), "{expired}");
    let again = restored
        .process(&stamped(&[("b", 3_000, 7), ("a", 3_000, 1)], 2_000))
        .unwrap();
    let again = squeezed(&again);
    assert!(again.contains("| b | 1 | 7 | +U |"), "{again}");
    assert!(again.contains("| a | 2 | 6 | +U |"), "{again}");
}

/// Keys expire on time while rows keep coming, faster than the expiry looks: a busy
/// input does not put the operator's clock off.
#[tokio::test]
async fn a_table_s_keys_expire_while_other_keys_keep_coming() {
    // Looked at every 12.5 ms; a row of `a` every 5 ms.
    let config = table_config(Duration::from_millis(50)).await;
    let input = crate::test_util::busy(
        stamped(&[("b", 1_000, 1)], 2_000),
        stamped(&[("a", 1_000, 1)], 2_000),
        Duration::from_millis(5),
    );
    let exec = WindowAggregateExec::try_new(input, config).unwrap();
    let mut rows = exec.execute(0, Arc::new(TaskContext::default())).unwrap();
    let retracted = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(batch) = rows.next().await {
            if text(&[batch.unwrap()]).contains("| b | 1               | 1        | -D  |") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        retracted,
        Ok(true),
        "b's row is retracted while a's keep coming"
    );
}

/// Rows of an inner window aggregate: (key, value, window start, window end) in ms.
fn inner_windows(rows: &[(&str, i64, i64, i64)]) -> RecordBatch {
    let schema = stamped(&[], 0).schema();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.3),
            )),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn a_window_over_a_windows_rows_closes_when_the_inner_watermark_passes_its_end() {
    let mut config = config(
        WindowSpec::Tumbling { size: 20 },
        EmitMode::Final,
        LateDataPolicy::Drop,
        0,
    )
    .await;
    config.over_window = true;
    let mut aggregator = WindowAggregator::try_new(config).unwrap();
    // Each result's rows, spaces collapsed.
    let rows = |batches: Vec<RecordBatch>| -> Vec<String> {
        let text = text(&batches);
        text.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| k "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let schema = inner_windows(&[]).schema();
    // Inner windows of 10 ms, as the inner operator writes them: the windows a watermark
    // closed (their ends in any order), then that watermark.
    let mut closed = |inner, watermark| {
        let mut out = aggregator.process(&inner_windows(inner)).unwrap();
        out.extend(
            aggregator
                .process(&watermark_batch(&schema, watermark))
                .unwrap(),
        );
        rows(out)
    };
    assert!(closed(&[("a", 1, 0, 10), ("b", 2, 0, 10)], 10).is_empty());
    // The inner watermark reaches 20, the end of [0, 20).
    assert_eq!(
        closed(&[("a", 3, 10, 20)], 20),
        [
            "| a | 1970-01-01T00:00:00 | 1970-01-01T00:00:00.020 | 2 | 4 |",
            "| b | 1970-01-01T00:00:00 | 1970-01-01T00:00:00.020 | 1 | 2 |"
        ]
    );
    assert_eq!(
        closed(&[("b", 7, 30, 40), ("a", 5, 20, 30)], 40),
        [
            "| a | 1970-01-01T00:00:00.020 | 1970-01-01T00:00:00.040 | 1 | 5 |",
            "| b | 1970-01-01T00:00:00.020 | 1970-01-01T00:00:00.040 | 1 | 7 |"
        ]
    );
    assert!(rows(aggregator.finish().unwrap()).is_empty());
    assert_eq!(aggregator.late_records(), 0);
}

#[tokio::test]
async fn an_inner_window_announces_its_watermark_and_the_outer_closes_on_it() {
    let mut inner = config(
        WindowSpec::Tumbling { size: 10 },
        EmitMode::Final,
        LateDataPolicy::Drop,
        0,
    )
    .await;
    inner.announces_watermark = true;
    let mut inner = WindowAggregator::try_new(inner).unwrap();
    // W moves to 12: the window [0, 10) closes, then W is written.
    let out = inner
        .process(&stamped(&[("a", 5, 1), ("a", 12, 2)], 0))
        .unwrap();
    let counts: Vec<(usize, Option<i64>)> = out
        .iter()
        .map(|b| (b.num_rows(), watermark_of(b)))
        .collect();
    assert_eq!(counts, [(1, None), (0, Some(12))]);
    // W moves on without closing a window: W alone.
    let out = inner.process(&stamped(&[("a", 13, 3)], 0)).unwrap();
    let counts: Vec<(usize, Option<i64>)> = out
        .iter()
        .map(|b| (b.num_rows(), watermark_of(b)))
        .collect();
    assert_eq!(counts, [(0, Some(13))]);

    let mut outer = config(
        WindowSpec::Tumbling { size: 20 },
        EmitMode::Final,
        LateDataPolicy::Drop,
        0,
    )
    .await;
    outer.over_window = true;
    let mut outer = WindowAggregator::try_new(outer).unwrap();
    assert!(
        outer
            .process(&inner_windows(&[("a", 1, 0, 10)]))
            .unwrap()
            .is_empty()
    );
    // No inner window ends at 20, but the inner watermark passes it: [0, 20) closes.
    let announced = watermark_batch(&inner_windows(&[]).schema(), 25);
    let closed = outer.process(&announced).unwrap();
    assert_eq!(closed.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}
