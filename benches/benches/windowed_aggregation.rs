//! Windowed aggregation over a generated 10M-row CSV, against DataFusion's own batch GROUP BY
//! of the same rows (epoch-aligned minutes with `date_bin`): both on one core, then ferris
//! at `'parallelism' = '2'` (the file read in two byte ranges, the groups hashed over two
//! instances) against DataFusion at its default partitions, both on a runtime of two threads.

use ferris_benches::{
    Measurement, datafusion_trades, measure, rows, run_job, runtime, runtime_with_threads,
    trades_csv,
};

fn main() {
    let rows = rows(10_000_000);
    let path = trades_csv(rows, 1000).display().to_string();
    let out = tempfile_path("bars.jsonl");

    let one = ferris(&runtime(), &path, &out, rows, 1);
    one.print("ferris     parallelism 1, 1 thread ");
    let datafusion_one = datafusion(&runtime(), &path, rows, Some(1));
    datafusion_one.print("datafusion 1 partition, 1 thread   ");
    let two = ferris(&runtime_with_threads(2), &path, &out, rows, 2);
    two.print("ferris     parallelism 2, 2 threads");
    let datafusion_default = datafusion(&runtime_with_threads(2), &path, rows, None);
    datafusion_default.print("datafusion default partitions, 2 threads");

    println!(
        "one core: ferris does {:.2}x DataFusion's rows/s per core",
        one.rows_per_core_second() / datafusion_one.rows_per_core_second()
    );
    println!(
        "two threads: ferris takes {:.2}x DataFusion's wall time (goal: 1.2 or less) and does {:.2}x its rows/s per core (goal: 0.83 or more)",
        two.wall.as_secs_f64() / datafusion_default.wall.as_secs_f64(),
        two.rows_per_core_second() / datafusion_default.rows_per_core_second()
    );
    println!(
        "ferris parallelism 2 against 1: {:.2}x the wall-time throughput",
        one.wall.as_secs_f64() / two.wall.as_secs_f64()
    );
}

/// The windowed job over the CSV as `parallelism` instances.
fn ferris(
    runtime: &tokio::runtime::Runtime,
    path: &str,
    out: &str,
    rows: usize,
    parallelism: usize,
) -> Measurement {
    measure(|| {
        let sql = format!(
            "CREATE STREAM bars AS
             SELECT symbol, _window_start, COUNT(*) AS trades, SUM(price * qty) AS notional
             FROM trades GROUP BY symbol WINDOW TUMBLING(1m) EMIT FINAL
             WITH ('trades.type' = 'file_source', 'trades.path' = '{path}', 'trades.format' = 'csv',
                   'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
                   'trades.event.time.field' = 'ts', 'trades.watermark.max_out_of_orderness' = '5s',
                   'parallelism' = '{parallelism}',
                   'bars.type' = 'file_sink', 'bars.path' = '{out}')"
        );
        let progress = run_job(runtime, &sql);
        assert_eq!(progress.records_in as usize, rows);
        progress.records_in
    })
}

/// DataFusion's batch GROUP BY over the CSV, on `partitions` partitions (its default: one
/// per core).
fn datafusion(
    runtime: &tokio::runtime::Runtime,
    path: &str,
    rows: usize,
    partitions: Option<usize>,
) -> Measurement {
    measure(|| {
        runtime.block_on(async {
            let ctx = datafusion_trades(path, partitions).await;
            let batches = ctx
                .sql("SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS window_start, COUNT(*) AS trades, SUM(price * qty) AS notional FROM trades GROUP BY 1, 2")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert!(!batches.is_empty());
        });
        rows as u64
    })
}

fn tempfile_path(name: &str) -> String {
    let dir = ferris_benches::data_dir().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).display().to_string()
}
