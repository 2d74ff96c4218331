//! The cost of calling a function written in SQL (`CREATE FUNCTION`): the windowed
//! aggregation of `windowed_aggregation` summing `notional(price, qty)`, against the same
//! job with the expression `price * qty` written out (the baseline), both on one core, in
//! one process. The optimizer puts the function's body in place of each call, so the two
//! should cost the same; the difference per row is printed. Then a function written in Python
//! (pyarrow, `FERRIS_PYTHON`) against the same expression on `DOUBLE`s: what crossing to its
//! worker process and back costs per row; and an aggregate function written in Python
//! (`CREATE AGGREGATE FUNCTION`, each window's values of a symbol in one call) against the
//! built-in `SUM` it stands for.

use ferris_benches::{Measurement, data_dir, measure, rows, run_job, runtime, trades_csv};

fn main() {
    let rows = rows(10_000_000);
    let path = trades_csv(rows, 1000).display().to_string();
    let function =
        "CREATE FUNCTION notional(p DECIMAL(18,4), q BIGINT) RETURNS DECIMAL(38,4) AS 'p * q';";
    // Alternately, twice each: the first run of a process is the noisiest.
    let mut written_out = Vec::new();
    let mut called = Vec::new();
    for _ in 0..2 {
        written_out.push(job(&path, "", "SUM(price * qty)", rows));
        called.push(job(&path, function, "SUM(notional(price, qty))", rows));
    }
    let best = |runs: &[Measurement]| {
        *runs
            .iter()
            .min_by(|a, b| a.cpu.cmp(&b.cpu))
            .expect("two runs")
    };
    let (baseline, udf) = (best(&written_out), best(&called));
    baseline.print("expression written out (baseline)");
    udf.print("SQL function notional(price, qty)  ");
    let per_row = (udf.cpu.as_secs_f64() - baseline.cpu.as_secs_f64()) / rows as f64;
    println!(
        "the function call costs {:.1} ns of CPU per row ({:.3}x the baseline's rows/s per core)",
        per_row * 1e9,
        udf.rows_per_core_second() / baseline.rows_per_core_second()
    );
    if std::env::var("FERRIS_PYTHON").is_err() {
        println!("FERRIS_PYTHON is not set: the Python function is not measured");
        return;
    }
    let python = "CREATE FUNCTION notional(p DOUBLE, q BIGINT) RETURNS DOUBLE LANGUAGE python AS '
import pyarrow.compute as pc
def notional(p, q):
    return pc.multiply(p, q)
';";
    let doubles = job(&path, "", "SUM(CAST(price AS DOUBLE) * qty)", rows);
    // The worker's CPU is another process's: wall time is what the job waits.
    let called = job(
        &path,
        python,
        "SUM(notional(CAST(price AS DOUBLE), qty))",
        rows,
    );
    doubles.print("expression on DOUBLE (baseline)   ");
    called.print("Python function (engine's CPU)     ");
    println!(
        "the Python call costs {:.1} ns of wall time per row ({:.3}x the baseline's wall time)",
        (called.wall.as_secs_f64() - doubles.wall.as_secs_f64()) / rows as f64 * 1e9,
        called.wall.as_secs_f64() / doubles.wall.as_secs_f64()
    );
    let aggregate = "CREATE AGGREGATE FUNCTION total(x DOUBLE) RETURNS DOUBLE LANGUAGE python AS '
import pyarrow.compute as pc
def total(x):
    return pc.sum(x).as_py()
';";
    let summed = job(&path, aggregate, "total(CAST(price AS DOUBLE) * qty)", rows);
    summed.print("Python aggregate (engine's CPU)    ");
    println!(
        "the Python aggregate costs {:.1} ns of wall time per row ({:.3}x the baseline's wall time)",
        (summed.wall.as_secs_f64() - doubles.wall.as_secs_f64()) / rows as f64 * 1e9,
        summed.wall.as_secs_f64() / doubles.wall.as_secs_f64()
    );
}

/// The windowed job whose `notional` column is `aggregate`, after the statements `prelude`.
fn job(path: &str, prelude: &str, aggregate: &str, rows: usize) -> Measurement {
    let out = data_dir().join("out").join("sql_function.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    measure(|| {
        let sql = format!(
            "{prelude}
             CREATE STREAM bars AS
             SELECT symbol, _window_start, {aggregate} AS notional
             FROM trades GROUP BY symbol WINDOW TUMBLING(1m)
             WITH ('trades.type' = 'file_source', 'trades.path' = '{path}', 'trades.format' = 'csv',
                   'trades.schema' = 'ts TIMESTAMP, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
                   'trades.event.time.field' = 'ts', 'trades.watermark.max_out_of_orderness' = '5s',
                   'bars.type' = 'file_sink', 'bars.path' = '{}')",
            out.display()
        );
        let progress = run_job(&runtime(), &sql);
        assert_eq!(progress.records_in as usize, rows);
        progress.records_in
    })
}
