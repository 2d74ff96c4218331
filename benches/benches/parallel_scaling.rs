//! Scaling of a parallel job: a Kafka topic of 8 partitions of JSON trades through a tumbling
//! GROUP BY per symbol into a Kafka topic, at 1, 2 and 4 instances, two ways: the instances
//! as tasks of one process (in one cgroup of n shares of a core), and each instance in a
//! process of its own (`--instance i`, each in a cgroup of one share), its rows crossing to
//! the others through the job's repartition topic. A share is `FERRIS_SCALING_SHARE` of a
//! core (default 0.3), so that 4 instances take 1.2 cores and leave the rest to the broker.
//! Each process is this benchmark started again as a worker. Each configuration runs
//! `FERRIS_SCALING_ROUNDS` times (default 3, the rounds interleaved); prints each run's
//! records/s, then per configuration the median, per instance, and its efficiency
//! T(n) / (n x T(1)), T(1) being one instance in one process. By default that is about four
//! minutes; every run leaves its output topic (`bench_scaling_<pid>_out_...`) on the broker.
//! At least once, checkpointed only as the input ends (instances in several processes keep
//! their places in the exchanges' topics in checkpoints): no transactions.
//!
//! Needs a writable cgroup CPU controller (v1 at `/sys/fs/cgroup/cpu`, or v2) and the broker
//! of `bash scripts/kafka.sh start` at `FERRIS_KAFKA_BOOTSTRAP`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use ferris_benches::{
    cpu_time, data_dir, kafka_topic, peak_rss, produce_trades, rows, run_job_in,
    runtime_with_threads,
};
use ferris_engine::Session;

const PARTITIONS: i32 = 8;
/// Set in a worker: how many instances the job has.
const WORKER: &str = "FERRIS_SCALING_WORKER";
/// Set in a worker that runs one instance of them (in a process of its own).
const INSTANCE: &str = "FERRIS_SCALING_INSTANCE";
const PERIOD_US: u64 = 100_000;

fn main() {
    if let Ok(instances) = std::env::var(WORKER) {
        let instance = std::env::var(INSTANCE).ok().map(|i| i.parse().unwrap());
        return worker(instances.parse().unwrap(), instance);
    }
    let rows = rows(6_000_000);
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

    // The same binary's CPU time per record varies by up to 1.6x between runs here: each
    // configuration runs `rounds` times, the rounds interleaved, and the medians compare.
    let rounds: usize = std::env::var("FERRIS_SCALING_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let configurations = [(1, 1), (2, 1), (2, 2), (4, 1), (4, 4)];
    let mut throughputs = vec![Vec::new(); configurations.len()];
    for round in 0..rounds {
        for (c, &(instances, processes)) in configurations.iter().enumerate() {
            let run = run_workers(instances, processes, share, &topic, &bootstrap, round);
            assert_eq!(run.records as usize, rows, "{instances} instances");
            let throughput = run.records as f64 / run.wall;
            throughputs[c].push(throughput);
            println!(
                "round {round}, parallelism {instances} {}: {:.0} records/s in {:.2}s wall, {:.2}s CPU ({:.2} cores of {:.2} allowed), peak RSS {} MiB per process",
                how(processes),
                throughput,
                run.wall,
                run.cpu,
                run.cpu / run.wall,
                share * instances as f64,
                run.peak_rss_kib / 1024,
            );
        }
    }
    let medians: Vec<f64> = throughputs.iter_mut().map(|t| median(t)).collect();
    for (c, &(instances, processes)) in configurations.iter().enumerate() {
        println!(
            "parallelism {instances} {}: median of {rounds} rounds {:.0} records/s, {:.0} records/s per instance, efficiency {:.2}",
            how(processes),
            medians[c],
            medians[c] / instances as f64,
            medians[c] / (instances as f64 * medians[0])
        );
    }
}

fn how(processes: usize) -> String {
    if processes == 1 {
        "in one process".to_string()
    } else {
        format!("in {processes} processes")
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

/// What the workers of a run measured, together.
struct Run {
    records: u64,
    /// The slowest worker's.
    wall: f64,
    cpu: f64,
    /// The largest of the workers'.
    peak_rss_kib: u64,
}

/// Runs a job of `instances` instances in `processes` workers (1, or one per instance),
/// each in a cgroup of its own with its instances' shares of a core.
fn run_workers(
    instances: usize,
    processes: usize,
    share: f64,
    topic: &str,
    bootstrap: &str,
    round: usize,
) -> Run {
    let out = format!("{topic}_out_{instances}_{processes}_{round}");
    kafka_topic(&out, bootstrap, 1);
    let per_process = instances / processes;
    let quota = (share * per_process as f64 * PERIOD_US as f64) as u64;
    let mut workers: Vec<(Child, CpuGroup)> = (0..processes)
        .map(|process| {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .env(WORKER, instances.to_string())
                .env("FERRIS_SCALING_TOPIC", topic)
                .env("FERRIS_SCALING_OUT", &out)
                .env("FERRIS_KAFKA_BOOTSTRAP", bootstrap)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            if processes > 1 {
                command.env(INSTANCE, process.to_string());
            }
            let child = command.spawn().unwrap();
            let group = CpuGroup::create(
                &format!("ferris-scaling-{}-{out}-{process}", std::process::id()),
                quota,
            );
            group.add(child.id());
            (child, group)
        })
        .collect();
    // The workers start together, once each is in its group.
    for (child, _) in &mut workers {
        writeln!(child.stdin.take().unwrap(), "go").unwrap();
    }
    let mut run = Run {
        records: 0,
        wall: 0.0,
        cpu: 0.0,
        peak_rss_kib: 0,
    };
    for (mut child, _group) in workers {
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(child.wait().unwrap().success(), "a worker of {instances}");
        let numbers: Vec<f64> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        run.records += numbers[0] as u64;
        run.wall = run.wall.max(numbers[1]);
        run.cpu += numbers[2];
        run.peak_rss_kib = run.peak_rss_kib.max(numbers[3] as u64);
    }
    run
}

/// A worker: waits for its parent's word, runs the job (or its one instance `instance`),
/// prints `records wall cpu peak_rss_kib`.
fn worker(instances: usize, instance: Option<usize>) {
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let topic = std::env::var("FERRIS_SCALING_TOPIC").unwrap();
    let out = std::env::var("FERRIS_SCALING_OUT").unwrap();
    let bootstrap = std::env::var("FERRIS_KAFKA_BOOTSTRAP").unwrap();
    // The job's name names its repartition topics: one per run.
    let sql = format!(
        "CREATE STREAM {out} AS
         SELECT symbol, _window_start, COUNT(*) AS trades, SUM(price * qty) AS notional
         FROM trades GROUP BY symbol WINDOW TUMBLING(1m) EMIT FINAL
         WITH ('trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{bootstrap}',
               'trades.topic' = '{topic}', 'trades.group.id' = '{out}',
               'trades.scan.bounded.mode' = 'latest-offset', 'trades.batch.size' = '8192',
               'trades.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(18,4), qty BIGINT',
               'trades.event.time.field' = 'ts', 'parallelism' = '{instances}',
               '{out}.type' = 'kafka_sink', '{out}.bootstrap.servers' = '{bootstrap}',
               '{out}.topic' = '{out}', 'processing.guarantee' = 'at_least_once',
               'checkpoint.dir' = '{}', 'checkpoint.interval' = '1h')",
        data_dir().join(format!("state/{out}")).display()
    );
    let mut session = Session::new();
    if let Some(instance) = instance {
        session.set_process_instance(instance);
    }
    let runtime = runtime_with_threads(if instance.is_some() { 1 } else { instances });
    let (wall, cpu) = (Instant::now(), cpu_time());
    let progress = run_job_in(&runtime, session, &sql);
    println!(
        "{} {} {} {}",
        progress.records_in,
        wall.elapsed().as_secs_f64(),
        (cpu_time() - cpu).as_secs_f64(),
        peak_rss() / 1024
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
