//! Properties of windowed aggregation over random inputs and random micro-batch sizes:
//! EMIT FINAL output does not depend on batching and equals DataFusion's batch GROUP BY over
//! the same rows; the last EMIT CHANGES row of each group equals it too.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::util::display::array_value_to_string;
use datafusion::physical_plan::common::collect;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use ferris_engine::{Session, StatementOutput};
use proptest::prelude::*;

/// Rows as text lines `k|window start|count|sum`, in output order.
async fn run(sql: &str) -> Vec<String> {
    let mut session = Session::new();
    let statements = session.parse(sql).unwrap();
    let StatementOutput::Rows(rows) = session.execute(&statements[0]).await.unwrap() else {
        panic!("a query returns rows")
    };
    lines(&collect(rows).await.unwrap())
}

fn lines(batches: &[arrow::record_batch::RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, row).unwrap())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

fn query(path: &str, batch_size: usize, bound_ms: u64, emit: &str) -> String {
    format!(
        "SELECT k, _window_start AS ws, COUNT(*) AS n, SUM(v) AS total, SUM(CAST(price AS DECIMAL(12,2))) AS money
         FROM t GROUP BY k WINDOW TUMBLING(10s) EMIT {emit}
         WITH ('t.type' = 'file_source', 't.path' = '{path}', 't.format' = 'csv',
               't.batch.size' = '{batch_size}', 't.event.time.field' = 'ts',
               't.watermark.max_out_of_orderness' = '{bound_ms}ms')"
    )
}

async fn batch_group_by(path: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    ctx.register_csv("t", path, CsvReadOptions::new())
        .await
        .unwrap();
    let df = ctx
        .sql(
            "SELECT k, date_bin(INTERVAL '10 seconds', to_timestamp_millis(ts)) AS ws, COUNT(*) AS n, SUM(v) AS total,
                    SUM(CAST(price AS DECIMAL(12,2))) AS money
             FROM t GROUP BY 1, 2",
        )
        .await
        .unwrap();
    lines(&df.collect().await.unwrap())
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_batch_group_by_whatever_the_batching(
        rows in prop::collection::vec((0u8..4, 0u64..3_000, -50i64..50, 0u32..100_000), 1..300),
        batch_size in 1usize..40,
    ) {
        // Event times advance ~400ms a row with up to 3s of disorder; a 3s bound means
        // nothing is late, so every row must be counted exactly once.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let mut csv = String::from("k,ts,v,price\n");
        for (i, (k, jitter, v, cents)) in rows.iter().enumerate() {
            let ts = 1_772_443_800_000u64 + i as u64 * 400 + jitter;
            writeln!(csv, "{},{ts},{v},{}.{:02}", (b'a' + k) as char, cents / 100, cents % 100).unwrap();
        }
        std::fs::write(&path, csv).unwrap();
        let path = path.to_str().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let small = run(&query(path, batch_size, 3_000, "FINAL")).await;
            let whole = run(&query(path, 8192, 3_000, "FINAL")).await;
            prop_assert_eq!(&small, &whole, "EMIT FINAL output depends on the batch size");
            prop_assert_eq!(sorted(whole.clone()), sorted(batch_group_by(path).await));
            let changes = run(&query(path, batch_size, 3_000, "CHANGES")).await;
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            for row in changes {
                // The changelog's last column is `_op`.
                let (row, op) = row.rsplit_once('|').unwrap();
                let key = row.split('|').take(2).collect::<Vec<_>>().join("|");
                if op == "-D" {
                    last.remove(&key);
                } else {
                    last.insert(key, row.to_string());
                }
            }
            prop_assert_eq!(sorted(last.into_values().collect()), sorted(whole));
            Ok(())
        })?;
    }
}
