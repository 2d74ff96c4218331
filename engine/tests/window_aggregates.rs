//! Every kind of DataFusion aggregate works in a window, and gives what DataFusion's batch
//! GROUP BY gives over the same rows.

use arrow::util::pretty::pretty_format_batches;
use datafusion::physical_plan::common::collect;
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use ferris_engine::{Session, StatementOutput};

const AGGREGATES: &str =
    "COUNT(*) AS n, COUNT(DISTINCT qty) AS distinct_qty, COUNT_DISTINCT(qty) AS distinct_alias,
    SUM(price) AS total, AVG(price) AS mean, MIN(price) AS low, MAX(price) AS high,
    MEDIAN(qty) AS median_qty, STDDEV(qty) AS sd, VAR(qty) AS var_qty,
    FIRST_VALUE(qty) AS first_qty, LAST_VALUE(qty) AS last_qty,
    STRING_AGG(note, ';') AS notes, LISTAGG(note) AS listed, ARRAY_AGG(qty) AS all_qty,
    APPROX_DISTINCT(qty) AS approx_distinct_qty, APPROX_PERCENTILE_CONT(qty, 0.5) AS approx_median,
    BOOL_AND(qty > 1) AS all_big, SUM(qty) FILTER (WHERE qty > 2) AS big_qty";

#[tokio::test]
async fn all_aggregates_match_datafusion_batch_group_by() {
    // A distinct count alone, too: DataFusion would plan it as a GROUP BY of the values.
    for aggregates in [AGGREGATES, "COUNT(DISTINCT qty) AS distinct_qty"] {
        aggregates_match_datafusion(aggregates).await;
    }
}

async fn aggregates_match_datafusion(aggregates: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let mut csv = String::from("ts,k,price,qty,note\n");
    for i in 0..400u64 {
        let ms = 1_772_443_800_000 + i * 137;
        csv.push_str(&format!(
            "{ms},{},{}.{:02},{},n{}\n",
            ["a", "b", "c"][(i % 3) as usize],
            i % 50,
            i % 100,
            i % 7,
            i % 11
        ));
    }
    std::fs::write(&path, csv).unwrap();
    let path = path.display();

    let mut session = Session::new();
    let sql = format!(
        "SELECT k, _window_start AS ws, {aggregates} FROM t GROUP BY k WINDOW TUMBLING(10s)
         WITH ('t.type' = 'file_source', 't.path' = '{path}', 't.batch.size' = '33',
               't.schema' = 'ts BIGINT, k VARCHAR, price DECIMAL(10,2), qty BIGINT, note VARCHAR',
               't.event.time.field' = 'ts')"
    );
    let statement = &session.parse(&sql).unwrap()[0];
    let StatementOutput::Rows(rows) = session.execute(statement).await.unwrap() else {
        panic!()
    };
    let streamed = collect(rows).await.unwrap();

    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    ctx.register_csv(
        "t",
        &path.to_string(),
        CsvReadOptions::new().schema(&arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("ts", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new("k", arrow::datatypes::DataType::Utf8, true),
            arrow::datatypes::Field::new(
                "price",
                arrow::datatypes::DataType::Decimal128(10, 2),
                true,
            ),
            arrow::datatypes::Field::new("qty", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new("note", arrow::datatypes::DataType::Utf8, true),
        ])),
    )
    .await
    .unwrap();
    let batch_sql = format!(
        "SELECT k, date_bin(INTERVAL '10 seconds', to_timestamp_millis(ts)) AS ws, {}
         FROM t GROUP BY 1, 2 ORDER BY 2, 1",
        aggregates
            .replace("COUNT_DISTINCT(qty)", "COUNT(DISTINCT qty)")
            .replace("LISTAGG(note)", "STRING_AGG(note, ',')")
    );
    let batch = ctx.sql(&batch_sql).await.unwrap().collect().await.unwrap();

    // Window by window, groups in key order: the same order both ways.
    let text =
        |b: &[arrow::record_batch::RecordBatch]| pretty_format_batches(b).unwrap().to_string();
    let (ours, theirs) = (text(&streamed), text(&batch));
    let strip_header = |t: &str| t.lines().skip(3).collect::<Vec<_>>().join("\n");
    assert_eq!(strip_header(&ours), strip_header(&theirs));
    assert_eq!(streamed.iter().map(|b| b.num_rows()).sum::<usize>(), 3 * 6);
}

/// What a window over a window's rows, or a window Top-N, cannot do is refused, at the
/// query or the clause.
#[tokio::test]
async fn windows_over_windows_refuse_what_they_cannot_run() {
    let inner = "SELECT k, COUNT(*) AS n FROM t GROUP BY k WINDOW TUMBLING(10s)";
    let with = "WITH ('t.type' = 'file_source', 't.path' = 'nowhere.csv', 't.schema' = 'ts BIGINT, k VARCHAR', 't.event.time.field' = 'ts'";
    let cases = [
        (
            format!(
                "SELECT k, MAX(n) FROM ({inner}) GROUP BY k WINDOW TUMBLING(1m) {with}, 'late.data.strategy' = 'allowed_lateness', 'late.data.allowed.lateness' = '5s')"
            ),
            "1:1: 'late.data.allowed.lateness' emits a window's rows again",
        ),
        (
            format!("SELECT k, MAX(n) FROM ({inner} EMIT FINAL) GROUP BY k {with})"),
            "1:87: EMIT is said once for the whole query",
        ),
        (
            format!(
                "SELECT k, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY n) AS rn FROM ({inner})) WHERE rn = 1 {with}, 'late.data.strategy' = 'allowed_lateness', 'late.data.allowed.lateness' = '5s')"
            ),
            "ROW_NUMBER() over an aggregate's rows is not supported on a stream unless they are a window's final rows",
        ),
    ];
    let mut session = Session::new();
    for (sql, expected) in cases {
        let error = match session.parse(&sql) {
            Ok(statements) => match session.execute(&statements[0]).await {
                Ok(_) => panic!("{sql}: ran"),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(error.contains(expected), "{sql}: {error}");
    }
}
