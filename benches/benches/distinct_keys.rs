//! One window with 1M distinct keys open at once: how much keyed state that takes.

use ferris_benches::{data_dir, measure, rows, run_job, runtime, trades_csv};

fn main() {
    let keys = rows(1_000_000);
    // Every key once, all inside the first minute... and a few rows more: 2 per key.
    let path = trades_csv(keys * 2, keys);
    let out = data_dir().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let runtime = runtime();
    let mut state = 0;
    let run = measure(|| {
        let sql = format!(
            "CREATE STREAM per_key AS
             SELECT symbol, _window_start, COUNT(*) AS trades, SUM(qty) AS volume, MAX(price) AS high
             FROM trades GROUP BY symbol WINDOW TUMBLING(1h)
             WITH ('trades.type' = 'file_source', 'trades.path' = '{}',
                   'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
                   'trades.event.time.field' = 'ts',
                   'per_key.type' = 'file_sink', 'per_key.path' = '{}')",
            path.display(),
            out.join("per_key.jsonl").display()
        );
        let progress = run_job(&runtime, &sql);
        state = progress.peak_state_bytes;
        progress.records_in
    });
    run.print(&format!("ferris    {keys} distinct keys in one window"));
    println!(
        "peak keyed state: {:.1} MiB for {keys} keys = {:.0} bytes per key (goal: under 100 MB for 1M keys)",
        state as f64 / (1024.0 * 1024.0),
        state as f64 / keys as f64
    );
}
