//! What checkpoints cost: the same windowed aggregation over a generated CSV, without
//! checkpoints and with one every second (state and positions written to a local folder,
//! the sink committed in two phases), on one core. Prints events/s per core, peak memory,
//! and how many checkpoints were taken and how long the last one took.

use ferris_benches::{data_dir, measure, rows, runtime, trades_csv};
use ferris_engine::{Session, StatementOutput};

fn main() {
    let rows = rows(10_000_000);
    for keys in [1000, 100_000] {
        let path = trades_csv(rows, keys);
        let runtime = runtime();
        let mut per_core = Vec::new();
        for interval in [None, Some("1s"), Some("100ms")] {
            let out = data_dir().join("out").join(format!("checkpointed-{keys}"));
            let state = data_dir().join("out").join(format!("checkpoints-{keys}"));
            let _ = std::fs::remove_dir_all(&out);
            let _ = std::fs::remove_dir_all(&state);
            let checkpoints = match interval {
                Some(every) => format!(
                    ", 'checkpoint.dir' = '{}', 'checkpoint.interval' = '{every}'",
                    state.display()
                ),
                None => String::new(),
            };
            let sql = format!(
                "CREATE STREAM bars AS
                 SELECT symbol, _window_start, COUNT(*) AS trades, SUM(price * qty) AS notional
                 FROM trades GROUP BY symbol WINDOW TUMBLING(1m) EMIT FINAL
                 WITH ('trades.type' = 'file_source', 'trades.path' = '{}', 'trades.format' = 'csv',
                       'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
                       'trades.event.time.field' = 'ts', 'trades.watermark.max_out_of_orderness' = '5s',
                       'bars.type' = 'file_sink', 'bars.path' = '{}/'{checkpoints})",
                path.display(),
                out.display()
            );
            let mut taken = (
                0,
                std::time::Duration::ZERO,
                0,
                std::time::Duration::ZERO,
                std::time::Duration::ZERO,
            );
            let measured = measure(|| {
                runtime.block_on(async {
                    let mut session = Session::new();
                    let statements = session.parse(&sql).unwrap();
                    let StatementOutput::Job(job) = session.execute(&statements[0]).await.unwrap()
                    else {
                        panic!("the SQL starts a job")
                    };
                    let metrics = job.record().metrics().clone();
                    let progress = job.wait().await.unwrap();
                    assert_eq!(progress.records_in as usize, rows);
                    if let Some(last) = metrics.last_checkpoint() {
                        let peak = progress.peak_state_bytes;
                        taken = (
                            metrics.checkpoints(),
                            metrics.checkpoint_time(),
                            peak,
                            last.duration,
                            metrics.checkpoint_held_time(),
                        );
                    }
                    progress.records_in
                })
            });
            let what = match interval {
                Some(every) => format!("{keys:>6} keys, a checkpoint every {every}"),
                None => format!("{keys:>6} keys, no checkpoints"),
            };
            measured.print(&what);
            if interval.is_some() {
                println!(
                    "  {} checkpoints, {:.1} ms each on average, sources held {:.2} ms (the last, at the end, {:.1} ms); window state peaked at {} KiB",
                    taken.0,
                    taken.1.as_secs_f64() * 1000.0 / taken.0.max(1) as f64,
                    taken.4.as_secs_f64() * 1000.0 / taken.0.max(1) as f64,
                    taken.3.as_secs_f64() * 1000.0,
                    taken.2 / 1024
                );
            }
            per_core.push(measured.rows_per_core_second());
        }
        println!(
            "  events/s per core with checkpoints every 1s: {:.3}x, every 100ms: {:.3}x, of without",
            per_core[1] / per_core[0],
            per_core[2] / per_core[0]
        );
    }
}
