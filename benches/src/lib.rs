//! What the benchmarks share: generated input files, CPU time and peak memory readings,
//! running a job through the engine, and the trades CSV as DataFusion's baseline reads it.
//!
//! Run with `cargo bench -p ferris-benches`; `FERRIS_BENCH_ROWS` scales the inputs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use ferris_engine::{JobProgress, Session, StatementOutput};

/// Rows to generate: `FERRIS_BENCH_ROWS`, or `default`.
pub fn rows(default: usize) -> usize {
    std::env::var("FERRIS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A folder for generated inputs, kept between runs (under the target dir).
pub fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A trades CSV (`ts,symbol,price,qty`) of `rows` rows over `keys` symbols (in turn), one
/// trade every millisecond, generated once and reused.
pub fn trades_csv(rows: usize, keys: usize) -> PathBuf {
    generated(&format!("trades-{rows}-{keys}.csv"), |out| {
        write_trades(out, rows, keys)
    })
}

/// The input file `name` in [`data_dir`], written by `write` unless it is there already
/// (written to the side first, so that an interrupted run leaves none half written).
pub fn generated(
    name: &str,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>),
) -> PathBuf {
    let path = data_dir().join(name);
    if path.exists() {
        return path;
    }
    let partial = path.with_extension("partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).unwrap());
    write(&mut out);
    out.flush().unwrap();
    drop(out);
    std::fs::rename(&partial, &path).unwrap();
    path
}

fn write_trades(out: &mut std::io::BufWriter<std::fs::File>, rows: usize, keys: usize) {
    writeln!(out, "ts,symbol,price,qty").unwrap();
    let start = 1_772_443_800_000i64; // 2026-03-02 09:30 UTC
    let mut line = String::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..rows {
        // xorshift: cheap, deterministic.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let ms = start + i as i64;
        let (secs, millis) = (ms / 1000, ms % 1000);
        let time =
            datafusion::common::arrow::temporal_conversions::timestamp_s_to_datetime(secs).unwrap();
        line.clear();
        write!(
            line,
            "{}.{millis:03},S{:07},{}.{:04},{}",
            time.format("%Y-%m-%d %H:%M:%S"),
            i % keys,
            100 + seed % 900,
            seed % 10_000,
            1 + seed % 500
        )
        .unwrap();
        writeln!(out, "{line}").unwrap();
    }
}

/// Resets the process's peak resident set size (Linux), so the next reading covers only
/// what follows.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set size in bytes since the last reset (Linux `VmHWM`).
pub fn peak_rss() -> u64 {
    status_kib("VmHWM:") * 1024
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the command name, in
    // clock ticks (100 a second on Linux).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// Rows read.
    pub rows: u64,
    /// Wall time.
    pub wall: Duration,
    /// CPU time.
    pub cpu: Duration,
    /// Peak RSS during the run, bytes.
    pub peak_rss: u64,
}

impl Measurement {
    /// Rows per second of CPU time: what one core does.
    pub fn rows_per_core_second(&self) -> f64 {
        self.rows as f64 / self.cpu.as_secs_f64().max(1e-9)
    }

    /// Prints one line.
    pub fn print(&self, what: &str) {
        println!(
            "{what}: {} rows in {:.2}s wall, {:.2}s CPU = {:.0} rows/s per core, peak RSS {:.1} MiB",
            self.rows,
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.rows_per_core_second(),
            self.peak_rss as f64 / (1024.0 * 1024.0)
        );
    }
}

/// Measures `work`, which returns the rows it read.
pub fn measure(work: impl FnOnce() -> u64) -> Measurement {
    reset_peak_rss();
    let (wall, cpu) = (Instant::now(), cpu_time());
    let rows = work();
    Measurement {
        rows,
        wall: wall.elapsed(),
        cpu: cpu_time() - cpu,
        peak_rss: peak_rss(),
    }
}

/// Runs the statements of `sql` through the engine; returns the last job's progress.
pub fn run_job(runtime: &tokio::runtime::Runtime, sql: &str) -> JobProgress {
    run_job_in(runtime, Session::new(), sql)
}

/// [`run_job`] in `session` (one set up otherwise than by default).
pub fn run_job_in(
    runtime: &tokio::runtime::Runtime,
    mut session: Session,
    sql: &str,
) -> JobProgress {
    runtime.block_on(async {
        let mut last = None;
        for statement in session.parse(sql).unwrap() {
            if let StatementOutput::Job(job) = session.execute(&statement).await.unwrap() {
                last = Some(job.wait().await.unwrap());
            }
        }
        last.expect("the SQL starts a job")
    })
}

/// A single-threaded runtime: the numbers are per core.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A runtime of `threads` worker threads, for a run that uses that many cores.
pub fn runtime_with_threads(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

/// Creates `topic` with `partitions` partitions on the broker at `bootstrap`, through
/// `scripts/kafka.sh topic` (the broker `scripts/kafka.sh start` runs).
pub fn kafka_topic(topic: &str, bootstrap: &str, partitions: i32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = bootstrap.rsplit(':').next().unwrap();
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/kafka.sh"))
        .args(["topic", topic, &partitions.to_string()])
        .env("FERRIS_KAFKA_PORT", port)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "is the broker up? bash scripts/kafka.sh start"
    );
}

/// Produces `rows` JSON trades of about 80 bytes (`ts`, `symbol` of 1000, `price`, `qty`),
/// keyed by symbol, one millisecond apart.
pub fn produce_trades(topic: &str, bootstrap: &str, rows: usize) {
    use rdkafka::error::KafkaError;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()
        .unwrap();
    for i in 0..rows {
        let symbol = format!("S{:04}", i % 1000);
        let value = format!(
            r#"{{"ts":{},"symbol":"{symbol}","price":{}.{:04},"qty":{}}}"#,
            1_772_443_800_000i64 + i as i64,
            100 + i % 900,
            i % 10_000,
            1 + i % 500
        );
        let mut record = BaseRecord::to(topic).key(&symbol).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(_), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// DataFusion with the trades CSV at `path` (of [`trades_csv`]) as the table `trades`, on
/// `partitions` partitions (its default: one per core): the benchmarks' baseline.
pub async fn datafusion_trades(path: &str, partitions: Option<usize>) -> SessionContext {
    let mut config = SessionConfig::new();
    if let Some(partitions) = partitions {
        config = config.with_target_partitions(partitions);
    }
    let ctx = SessionContext::new_with_config(config);
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Decimal128(18, 4), true),
        Field::new("qty", DataType::Int64, true),
    ]);
    ctx.register_csv("trades", path, CsvReadOptions::new().schema(&schema))
        .await
        .unwrap();
    ctx
}

/// DataFusion running `query` over the trades CSV at `path` ([`datafusion_trades`]) on one
/// partition, its results collected in one batch: the single-core baseline of a query over
/// `rows` rows.
pub fn datafusion_one_partition(path: &str, query: &str, rows: usize) -> Measurement {
    measure(|| {
        runtime().block_on(async {
            let ctx = datafusion_trades(path, Some(1)).await;
            let batches = ctx.sql(query).await.unwrap().collect().await.unwrap();
            assert!(!batches.is_empty());
        });
        rows as u64
    })
}
