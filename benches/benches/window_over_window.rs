//! Aggregates over a window's rows, over a generated 10M-row CSV of 1000 symbols, on one
//! core: ferris's minute bars made from 10-second bars (a window over a window's rows)
//! against the minute bars made from the trades at once (the window alone), and against
//! DataFusion's batch GROUP BY of the same two levels (`date_bin` twice); then ferris's
//! window Top-N (the three symbols of most notional per minute) against DataFusion ranking
//! the same minute bars in one batch.

use ferris_benches::{
    Measurement, data_dir, datafusion_one_partition, measure, rows, run_job, runtime, trades_csv,
};

const SOURCE: &str = "'trades.type' = 'file_source', 'trades.format' = 'csv',
    'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
    'trades.event.time.field' = 'ts', 'trades.watermark.max_out_of_orderness' = '5s'";

/// Minute bars from 10-second bars.
const BARS_OF_BARS: &str = "SELECT symbol, _window_start AS minute, COUNT(*) AS bars,
    MAX(trades) AS busiest_bar, SUM(notional) AS notional
    FROM (SELECT symbol, COUNT(*) AS trades, SUM(price * qty) AS notional
          FROM trades GROUP BY symbol WINDOW TUMBLING(10s))
    GROUP BY symbol WINDOW TUMBLING(1m)";
/// Minute bars from the trades.
const BARS: &str = "SELECT symbol, _window_start AS minute, COUNT(*) AS trades,
    SUM(price * qty) AS notional FROM trades GROUP BY symbol WINDOW TUMBLING(1m)";
/// The three symbols of most notional per minute.
const TOP_3: &str = "SELECT minute, rn, symbol, notional FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY minute ORDER BY notional DESC) AS rn
    FROM (SELECT symbol, _window_start AS minute, SUM(price * qty) AS notional
          FROM trades GROUP BY symbol WINDOW TUMBLING(1m))) WHERE rn <= 3";

const DATAFUSION_BARS_OF_BARS: &str = "SELECT symbol, date_bin(INTERVAL '1 minute', bar) AS minute,
    COUNT(*) AS bars, MAX(trades) AS busiest_bar, SUM(notional) AS notional
    FROM (SELECT symbol, date_bin(INTERVAL '10 seconds', ts) AS bar, COUNT(*) AS trades,
          SUM(price * qty) AS notional FROM trades GROUP BY 1, 2)
    GROUP BY 1, 2";
const DATAFUSION_TOP_3: &str = "SELECT minute, rn, symbol, notional FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY minute ORDER BY notional DESC) AS rn
    FROM (SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS minute,
          SUM(price * qty) AS notional FROM trades GROUP BY 1, 2)) WHERE rn <= 3";

fn main() {
    let rows = rows(10_000_000);
    let path = trades_csv(rows, 1000).display().to_string();
    let nested = ferris(&path, BARS_OF_BARS, rows);
    nested.print("ferris     minute bars of 10 s bars, 1 thread");
    let alone = ferris(&path, BARS, rows);
    alone.print("ferris     minute bars (the window alone), 1 thread");
    let theirs = datafusion_one_partition(&path, DATAFUSION_BARS_OF_BARS, rows);
    theirs.print("datafusion minute bars of 10 s bars, one batch, 1 partition");
    compare("bars of bars against the window alone", &nested, &alone);
    compare("bars of bars against DataFusion", &nested, &theirs);

    let top = ferris(&path, TOP_3, rows);
    top.print("ferris     top 3 per minute, 1 thread");
    let theirs = datafusion_one_partition(&path, DATAFUSION_TOP_3, rows);
    theirs.print("datafusion top 3 per minute, one batch, 1 partition");
    compare("window Top-N against the window alone", &top, &alone);
    compare("window Top-N against DataFusion", &top, &theirs);
}

fn compare(what: &str, ours: &Measurement, baseline: &Measurement) {
    println!(
        "{what}: {:.2}x the rows/s per core, {:.2}x the wall time, {:.2}x the peak RSS",
        ours.rows_per_core_second() / baseline.rows_per_core_second(),
        ours.wall.as_secs_f64() / baseline.wall.as_secs_f64(),
        ours.peak_rss as f64 / baseline.peak_rss as f64
    );
}

fn ferris(path: &str, query: &str, rows: usize) -> Measurement {
    let out = data_dir().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let out = out.join("window_over_window.jsonl");
    let _ = std::fs::remove_file(&out);
    measure(|| {
        let sql = format!(
            "CREATE STREAM bars AS {query}
             WITH ({SOURCE}, 'trades.path' = '{path}',
                   'bars.type' = 'file_sink', 'bars.path' = '{}')",
            out.display()
        );
        let progress = run_job(&runtime(), &sql);
        assert_eq!(progress.records_in as usize, rows);
        progress.records_in
    })
}
