//! Scaling of a parallel job: a Kafka topic of 8 partitions of JSON trades through a tumbling
//! GROUP BY per symbol into a file, at 1, 2 and 4 instances. Each run is a process of its own
//! (this benchmark started again as a worker) held by a cgroup CPU quota to one fixed share of
//! a core per instance (`FERRIS_SCALING_SHARE`, default 0.3), so that the runs compare on a
//! machine whose cores they share with the broker: 4 instances take 1.2 cores and leave the
//! rest to Kafka. The instances of a run are tasks of its process (a job's instances are not
//! yet spread over processes). Prints each run's records/s, per instance, and its
//! efficiency T(n) / (n x T(1)).
//!
//! Needs a writable cgroup CPU controller (v1 at `/sys/fs/cgroup/cpu`, or v2) and the broker
//! of `bash scripts/kafka.sh start` at `FERRIS_KAFKA_BOOTSTRAP`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use ferris_benches::{
    cpu_time, data_dir, kafka_topic, produce_trades, rows, run_job, runtime_with_threads,
};

const PARTITIONS: i32 = 8;
const WORKER: &str = "FERRIS_SCALING_WORKER";
const PERIOD_US: u64 = 100_000;

fn main() {
    if let Ok(instances) = std::env::var(WORKER) {
        return worker(instances.parse().unwrap());
    }
    let rows = rows(2_000_000);
    let share: f64 = std::env::var("FERRIS_SCALING_SHARE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3);
    let bootstrap =
        std::env::var("FERRIS_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = format!("bench_scaling_{}", std::process::id());
    kafka_topic(&topic, &bootstrap, PARTITIONS);
    produce_trades(&topic, &bootstrap, rows);
    println!("{rows} messages in {PARTITIONS} partitions; {share} of a core per instance");

    let mut single = None;
    for instances in [1, 2, 4] {
        let quota = (share * instances as f64 * PERIOD_US as f64) as u64;
        let run = run_worker(instances, quota, &topic, &bootstrap);
        assert_eq!(run.records as usize, rows, "{instances} instances");
        let throughput = run.records as f64 / run.wall;
        let single = *single.get_or_insert(throughput);
        println!(
            "parallelism {instances}: {:.0} records/s in {:.2}s wall, {:.2}s CPU ({:.2} cores of {:.2} allowed), {:.0} records/s per instance, efficiency {:.2}",
            throughput,
            run.wall,
            run.cpu,
            run.cpu / run.wall,
            share * instances as f64,
            throughput / instances as f64,
            throughput / (instances as f64 * single)
        );
    }
}

/// What a worker measured.
struct Run {
    records: u64,
    wall: f64,
    cpu: f64,
}

/// Runs a worker of `instances` instances in a cgroup of its own with `quota` µs of CPU per
/// 100 ms.
fn run_worker(instances: usize, quota: u64, topic: &str, bootstrap: &str) -> Run {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(WORKER, instances.to_string())
        .env("FERRIS_SCALING_TOPIC", topic)
        .env("FERRIS_KAFKA_BOOTSTRAP", bootstrap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let group = CpuGroup::create(
        &format!("ferris-scaling-{}-{instances}", std::process::id()),
        quota,
    );
    group.add(child.id());
    // The worker starts once it is in its group.
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(child.wait().unwrap().success(), "worker of {instances}");
    let numbers: Vec<f64> = line
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    Run {
        records: numbers[0] as u64,
        wall: numbers[1],
        cpu: numbers[2],
    }
}

/// A worker: waits for its parent's word, runs the job, prints `records wall cpu`.
fn worker(instances: usize) {
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let topic = std::env::var("FERRIS_SCALING_TOPIC").unwrap();
    let bootstrap = std::env::var("FERRIS_KAFKA_BOOTSTRAP").unwrap();
    let out = data_dir().join(format!("out/scaling-{instances}.jsonl"));
    let sql = format!(
        "CREATE STREAM bars AS
         SELECT symbol, _window_start, COUNT(*) AS trades, SUM(price * qty) AS notional
         FROM trades GROUP BY symbol WINDOW TUMBLING(1m) EMIT FINAL
         WITH ('trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{bootstrap}',
               'trades.topic' = '{topic}', 'trades.group.id' = '{topic}-{instances}',
               'trades.scan.bounded.mode' = 'latest-offset', 'trades.batch.size' = '8192',
               'trades.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
               'trades.event.time.field' = 'ts', 'parallelism' = '{instances}',
               'bars.type' = 'file_sink', 'bars.path' = '{}')",
        out.display()
    );
    let runtime = runtime_with_threads(instances);
    let (wall, cpu) = (Instant::now(), cpu_time());
    let progress = run_job(&runtime, &sql);
    println!(
        "{} {} {}",
        progress.records_in,
        wall.elapsed().as_secs_f64(),
        (cpu_time() - cpu).as_secs_f64()
    );
}

/// A cgroup holding processes to a CPU quota, removed when dropped.
struct CpuGroup {
    dir: PathBuf,
    /// The file a process id is written to, to move it in.
    procs: PathBuf,
}

impl CpuGroup {
    fn create(name: &str, quota: u64) -> Self {
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        let (dir, limits) = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            let limits = vec![
                (dir.join("cpu.cfs_period_us"), PERIOD_US.to_string()),
                (dir.join("cpu.cfs_quota_us"), quota.to_string()),
            ];
            (dir, limits)
        } else {
            let dir = PathBuf::from("/sys/fs/cgroup").join(name);
            let limits = vec![(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))];
            (dir, limits)
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the cgroup {} ({e}): this benchmark needs a writable cgroup CPU controller",
                dir.display()
            )
        });
        for (file, value) in limits {
            std::fs::write(&file, value)
                .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        }
        Self {
            procs: dir.join("cgroup.procs"),
            dir,
        }
    }

    fn add(&self, pid: u32) {
        std::fs::write(&self.procs, pid.to_string())
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.procs.display()));
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
