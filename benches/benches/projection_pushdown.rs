//! What decoding only the columns a query reads saves: a windowed count and sum per symbol
//! over trades of twelve columns, of which it reads three (`ts`, `symbol`, `qty`), as CSV and
//! as JSON lines, with projection pushdown (the default) against the same job with
//! `'projection.pushdown' = 'false'` (the baseline: every column decoded, then dropped), on
//! one core, in one process.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use ferris_benches::{Measurement, data_dir, generated, measure, rows, run_job, runtime};

/// The columns of the wide trades, in order.
const SCHEMA: &str = "ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT, \
    venue VARCHAR, trader VARCHAR, order_id BIGINT, side VARCHAR, fee DECIMAL(18,6), \
    currency VARCHAR, note VARCHAR, flags BIGINT";

fn main() {
    let rows = rows(2_000_000);
    for format in ["csv", "json"] {
        let path = wide_trades(rows, format).display().to_string();
        // Alternately, twice each: the first run of a process is the noisiest.
        let mut all = Vec::new();
        let mut read = Vec::new();
        for _ in 0..2 {
            all.push(job(&path, format, false, rows));
            read.push(job(&path, format, true, rows));
        }
        let best = |runs: &[Measurement]| {
            *runs
                .iter()
                .min_by(|a, b| a.cpu.cmp(&b.cpu))
                .expect("two runs")
        };
        let (baseline, pushed) = (best(&all), best(&read));
        baseline.print(&format!("{format}: every column decoded (baseline)"));
        pushed.print(&format!("{format}: 3 of 12 columns decoded      "));
        println!(
            "{format}: {:.3}x the baseline's rows/s per core, {:.0} ns less CPU per row",
            pushed.rows_per_core_second() / baseline.rows_per_core_second(),
            (baseline.cpu.as_secs_f64() - pushed.cpu.as_secs_f64()) / rows as f64 * 1e9
        );
    }
}

/// The windowed job over `path`, its source decoding only what it reads when `pushdown`.
fn job(path: &str, format: &str, pushdown: bool, rows: usize) -> Measurement {
    let out = data_dir().join("out").join("projection_pushdown.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    measure(|| {
        let sql = format!(
            "CREATE STREAM bars AS
             SELECT symbol, _window_start, COUNT(*) AS trades, SUM(qty) AS volume
             FROM trades GROUP BY symbol WINDOW TUMBLING(1m)
             WITH ('trades.type' = 'file_source', 'trades.path' = '{path}',
                   'trades.format' = '{format}', 'trades.schema' = '{SCHEMA}',
                   'trades.event.time.field' = 'ts',
                   'trades.watermark.max_out_of_orderness' = '5s',
                   'projection.pushdown' = '{pushdown}',
                   'bars.type' = 'file_sink', 'bars.path' = '{}')",
            out.display()
        );
        let progress = run_job(&runtime(), &sql);
        assert_eq!(progress.records_in as usize, rows);
        progress.records_in
    })
}

/// Trades of twelve columns over 1000 symbols, one every millisecond, as CSV (with a
/// header) or JSON lines; generated once and reused.
fn wide_trades(rows: usize, format: &str) -> PathBuf {
    generated(&format!("wide-trades-{rows}.{format}"), |out| {
        write_wide_trades(out, rows, format)
    })
}

fn write_wide_trades(out: &mut std::io::BufWriter<std::fs::File>, rows: usize, format: &str) {
    if format == "csv" {
        writeln!(
            out,
            "ts,symbol,price,qty,venue,trader,order_id,side,fee,currency,note,flags"
        )
        .unwrap();
    }
    let start = 1_772_443_800_000i64; // 2026-03-02 09:30 UTC
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut line = String::new();
    for i in 0..rows {
        // xorshift: cheap, deterministic.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let ms = start + i as i64;
        let time = datafusion::common::arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S%.3f");
        let symbol = format!("S{:07}", i % 1000);
        let price = format!("{}.{:04}", 100 + seed % 900, seed % 10_000);
        let qty = 1 + seed % 500;
        let venue = ["XNAS", "XNYS", "BATS", "IEXG"][(seed % 4) as usize];
        let trader = format!("T{:05}", seed % 20_000);
        let side = ["BUY", "SELL"][(seed % 2) as usize];
        let fee = format!("0.{:06}", seed % 1_000_000);
        let note = format!("order {i} routed by smart router");
        line.clear();
        match format {
            "csv" => write!(
                line,
                "{time},{symbol},{price},{qty},{venue},{trader},{i},{side},{fee},USD,{note},{}",
                seed % 8
            ),
            _ => write!(
                line,
                "{{\"ts\":\"{time}\",\"symbol\":\"{symbol}\",\"price\":{price},\"qty\":{qty},\
                 \"venue\":\"{venue}\",\"trader\":\"{trader}\",\"order_id\":{i},\"side\":\"{side}\",\
                 \"fee\":{fee},\"currency\":\"USD\",\"note\":\"{note}\",\"flags\":{}}}",
                seed % 8
            ),
        }
        .unwrap();
        writeln!(out, "{line}").unwrap();
    }
}
