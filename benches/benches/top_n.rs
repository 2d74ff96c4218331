//! Top-N per key over a generated 10M-row CSV (the three largest trades of each of 1000
//! symbols, `ROW_NUMBER() ... <= 3`): ferris's changelog, kept up to date row by row, against
//! DataFusion ranking the same rows in one batch (sort, window function, filter). Both on one
//! core. Then the same for deduplication (the first trade of each symbol by time, N = 1).

use ferris_benches::{
    Measurement, data_dir, datafusion_one_partition, measure, rows, run_job, runtime, trades_csv,
};

const TOP_3: &str = "SELECT symbol, rn, qty, ts FROM (
    SELECT symbol, qty, ts, ROW_NUMBER() OVER (PARTITION BY symbol ORDER BY qty DESC) AS rn
    FROM trades) WHERE rn <= 3";
const FIRST: &str = "SELECT symbol, qty, ts FROM (
    SELECT symbol, qty, ts, ROW_NUMBER() OVER (PARTITION BY symbol ORDER BY ts) AS rn
    FROM trades) WHERE rn = 1";

fn main() {
    let rows = rows(10_000_000);
    let path = trades_csv(rows, 1000).display().to_string();
    let workloads = [("top 3 per key", TOP_3), ("dedup (first per key)", FIRST)];
    // Ours first: memory DataFusion's sort took stays resident, and would be counted as ours.
    let ours: Vec<Measurement> = workloads
        .iter()
        .map(|(_, query)| ferris(&path, query, rows))
        .collect();
    for ((what, query), ours) in workloads.iter().zip(ours) {
        ours.print(&format!("ferris     {what}, changelog, 1 thread"));
        let theirs = datafusion_one_partition(&path, query, rows);
        theirs.print(&format!("datafusion {what}, one batch, 1 partition"));
        println!(
            "{what}: ferris does {:.2}x DataFusion's rows/s per core, in {:.2}x its wall time, with {:.2}x its peak RSS",
            ours.rows_per_core_second() / theirs.rows_per_core_second(),
            ours.wall.as_secs_f64() / theirs.wall.as_secs_f64(),
            ours.peak_rss as f64 / theirs.peak_rss as f64
        );
    }
}

fn ferris(path: &str, query: &str, rows: usize) -> Measurement {
    let out = data_dir().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let out = out.join("top_n.jsonl");
    let _ = std::fs::remove_file(&out);
    measure(|| {
        let sql = format!(
            "CREATE TABLE ranked AS {query} EMIT CHANGES
             WITH ('trades.type' = 'file_source', 'trades.path' = '{path}', 'trades.format' = 'csv',
                   'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
                   'ranked.type' = 'file_sink', 'ranked.path' = '{}')",
            out.display()
        );
        let progress = run_job(&runtime(), &sql);
        assert_eq!(progress.records_in as usize, rows);
        progress.records_in
    })
}
