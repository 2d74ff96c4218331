//! Jobs that survive crashes: `ferris run --state-dir` is killed with SIGKILL at random
//! moments and restarted, and its output must equal an uncrashed run's, row for row.
//!
//! The Kafka tests need the broker `scripts/test.sh` starts (`FERRIS_KAFKA_BOOTSTRAP`).

mod support;

use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use support::{
    KilledRuns, assert_all_committed, assert_same_lines, bootstrap, consume_all, crash_seed,
    http_request, produce, run_killing, sorted_part_lines, topic,
};

const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "ORCL",
];

/// Trades as JSON lines: event times rise with some disorder, prices exact to the cent.
fn trades(rows: usize) -> Vec<(String, String)> {
    let mut t: i64 = 1_767_225_600_000;
    (0..rows)
        .map(|i| {
            t += ((i * 7919) % 41) as i64;
            let symbol = SYMBOLS[(i * 31 + i / 7) % SYMBOLS.len()];
            let jitter = ((i * 104_729) % 500) as i64;
            let cents = 1000 + (i * 6007) % 98_000;
            let line = format!(
                r#"{{"ts":{},"symbol":"{symbol}","price":"{}.{:02}","qty":{}}}"#,
                t - jitter,
                cents / 100,
                cents % 100,
                1 + i % 499
            );
            (symbol.to_string(), line)
        })
        .collect()
}

/// Ten-second bars per symbol, with exact notional: the query every crash test runs.
fn bars_job(source: &str, sink: &str) -> String {
    format!(
        "CREATE STREAM bars AS
         SELECT symbol, _window_start AS window_start, COUNT(*) AS trades,
                SUM(CAST(price AS DECIMAL(18,2)) * qty) AS notional
         FROM trades GROUP BY symbol
         WINDOW TUMBLING(INTERVAL '10' SECOND) EMIT FINAL
         WITH ({source},
           'trades.batch.size' = '20',
           'trades.schema' = 'ts BIGINT, symbol VARCHAR, price VARCHAR, qty BIGINT',
           'trades.event.time.field' = 'ts',
           'trades.watermark.max_out_of_orderness' = '1s',
           {sink},
           'checkpoint.interval' = '100ms');"
    )
}

/// The bars `bars_job` must write for `trades(rows)`, computed here from the trades, so that
/// a wrong reference run cannot pass for a right one. No trade is late: each is at most
/// 0.5 s behind the latest before it, within the job's 1 s bound.
fn expected_bars(rows: usize) -> Vec<String> {
    let mut bars: std::collections::BTreeMap<(String, i64), (u64, i128)> = Default::default();
    for (symbol, line) in trades(rows) {
        let trade: serde_json::Value = serde_json::from_str(&line).unwrap();
        let cents: i128 = trade["price"]
            .as_str()
            .unwrap()
            .replace('.', "")
            .parse()
            .unwrap();
        let ts = trade["ts"].as_i64().unwrap();
        let bar = bars
            .entry((symbol, ts.div_euclid(10_000) * 10_000))
            .or_default();
        bar.0 += 1;
        bar.1 += cents * i128::from(trade["qty"].as_i64().unwrap());
    }
    let mut lines: Vec<String> = bars
        .into_iter()
        .map(|((symbol, start), (count, notional))| {
            let start = chrono::DateTime::from_timestamp_millis(start).unwrap();
            format!(
                r#"{{"symbol":"{symbol}","window_start":"{}","trades":{count},"notional":{}.{:02}}}"#,
                start.format("%Y-%m-%dT%H:%M:%S"),
                notional / 100,
                notional % 100
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Runs `sql` once, to its end, never killed: the reference output.
fn run_uncrashed(dir: &Path, sql: &str) {
    std::fs::write(dir.join("job.sql"), sql).unwrap();
    support::ferris_ok(dir, &["run", "--state-dir", "reference-state", "job.sql"]);
}

/// Runs `sql` in `dir` with `env`, killing it `kills` times after a random wait in `delay`
/// (ms), the last run stopped once `until` holds if given; checks that it was killed and
/// resumed.
fn run_crashing(
    dir: &Path,
    sql: &str,
    kills: usize,
    delay: std::ops::Range<u64>,
    env: &[(String, String)],
    until: Option<&dyn Fn() -> bool>,
) -> KilledRuns {
    std::fs::write(dir.join("job.sql"), sql).unwrap();
    let runs = run_killing(dir, kills, delay, crash_seed(), env, until);
    let stderr = String::from_utf8_lossy(&runs.last.stderr);
    assert!(runs.last.status.success(), "{stderr}");
    assert!(
        runs.kills >= 2,
        "killed only {} times: {stderr}",
        runs.kills
    );
    assert!(runs.resumed, "no run resumed from a checkpoint: {stderr}");
    runs
}

#[test]
fn file_to_file_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = trades(300_000).into_iter().map(|(_, l)| l).collect();
    std::fs::write(dir.path().join("trades.jsonl"), lines.join("\n")).unwrap();
    let source = "'trades.type' = 'file_source', 'trades.path' = 'trades.jsonl'";
    let sink = |folder: &str| format!("'bars.type' = 'file_sink', 'bars.path' = '{folder}/'");
    run_uncrashed(dir.path(), &bars_job(source, &sink("expected")));
    run_crashing(
        dir.path(),
        &bars_job(source, &sink("out")),
        4,
        150..500,
        &[],
        None,
    );
    let expected = sorted_part_lines(&dir.path().join("expected"));
    assert_same_lines(&expected, &expected_bars(300_000));
    assert_same_lines(&sorted_part_lines(&dir.path().join("out")), &expected);
    assert_all_committed(&dir.path().join("out"));
}

#[test]
fn an_interval_join_of_two_streams_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // Order i at i * 10 ms; its payment up to 3 s later, so payments come out of order by
    // up to their watermark's 3 s. Payments within 2 s join. Some orders are paid twice,
    // some never, some payments are for no order. Both files are watched: two streams.
    let orders = 150_000;
    let time = |ms: usize| {
        let (s, ms) = (ms / 1000, ms % 1000);
        format!(
            "2026-03-02T{:02}:{:02}:{:02}.{ms:03}",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    };
    let mut order_lines = String::new();
    let (mut payment_lines, mut expected) = (String::new(), Vec::new());
    for id in 0..orders {
        let amount = 100 + id % 997;
        let ts = id * 10;
        order_lines += &format!(
            "{{\"id\":{id},\"ts\":\"{}\",\"amount\":{amount}}}\n",
            time(ts)
        );
        let delay = (id * 7919) % 3000;
        let paid = match id % 7 {
            0 => vec![(1, delay), (2, delay + 1)],
            3 => vec![],
            _ => vec![(1, delay)],
        };
        for (part, delay) in paid {
            let paid = amount / part;
            payment_lines += &format!(
                "{{\"order_id\":{id},\"ts\":\"{}\",\"paid\":{paid}}}\n",
                time(ts + delay)
            );
            if delay <= 2000 {
                expected.push(format!(
                    "{{\"id\":{id},\"amount\":{amount},\"paid\":{paid}}}"
                ));
            }
        }
        if id % 11 == 0 {
            payment_lines += &format!(
                "{{\"order_id\":{},\"ts\":\"{}\",\"paid\":1}}\n",
                orders + id,
                time(ts)
            );
        }
    }
    expected.sort();
    std::fs::write(dir.path().join("orders.jsonl"), order_lines).unwrap();
    std::fs::write(dir.path().join("payments.jsonl"), payment_lines).unwrap();
    let job = "CREATE STREAM paid AS
         SELECT o.id, o.amount, p.paid FROM orders o JOIN payments p
           ON o.id = p.order_id AND p.ts BETWEEN o.ts AND o.ts + INTERVAL '2' SECOND
         WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
           'orders.watch' = 'true', 'orders.batch.size' = '50',
           'orders.schema' = 'id BIGINT, ts TIMESTAMP, amount BIGINT',
           'orders.event.time.field' = 'ts',
           'payments.type' = 'file_source', 'payments.path' = 'payments.jsonl',
           'payments.watch' = 'true', 'payments.batch.size' = '50',
           'payments.schema' = 'order_id BIGINT, ts TIMESTAMP, paid BIGINT',
           'payments.event.time.field' = 'ts',
           'payments.watermark.max_out_of_orderness' = '3s',
           'paid.type' = 'file_sink', 'paid.path' = 'out/',
           'checkpoint.interval' = '100ms');";
    let out = dir.path().join("out");
    let all_written = || out.exists() && sorted_part_lines(&out).len() >= expected.len();
    let runs = run_crashing(dir.path(), job, 4, 150..500, &[], Some(&all_written));
    assert_same_lines(&sorted_part_lines(&out), &expected);
    assert_all_committed(&out);
    // Every payment came within its watermark's 3 s: none was dropped as late.
    let stderr = String::from_utf8_lossy(&runs.last.stderr);
    assert!(stderr.contains("0 late"), "{stderr}");
}

/// The rows a changelog's lines leave: each `+U` adds its row, each `-D` takes one back
/// (which must have been written); sorted, without `_op`.
fn applied_changes(lines: &[String]) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for line in lines {
        let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
        let op = row.as_object_mut().unwrap().remove("_op").unwrap();
        let row = row.to_string();
        match op.as_str() {
            Some("-D") => {
                let at = rows.iter().position(|r| *r == row);
                rows.remove(at.unwrap_or_else(|| panic!("{row} taken back, never written")));
            }
            _ => rows.push(row),
        }
    }
    rows.sort();
    rows
}

/// A LEFT JOIN of two streams without time bounds writes a changelog: an order without a
/// payment at once, taken back when its first payment comes. Killed and restored from its
/// checkpoints, what its changes leave is the join's result, each change written once.
#[test]
fn an_outer_join_without_time_bounds_writes_its_changelog_exactly_once_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let orders = 20_000;
    let (mut order_lines, mut payment_lines) = (String::new(), String::new());
    let mut expected = Vec::new();
    for id in 0..orders {
        let amount = 100 + id % 997;
        order_lines += &format!("{{\"id\":{id},\"amount\":{amount}}}\n");
        let payments: Vec<usize> = match id % 3 {
            0 => vec![],
            1 => vec![amount],
            _ => vec![amount / 2, amount - amount / 2],
        };
        for paid in &payments {
            payment_lines += &format!("{{\"order_id\":{id},\"paid\":{paid}}}\n");
            expected
                .push(serde_json::json!({"id": id, "amount": amount, "paid": paid}).to_string());
        }
        if payments.is_empty() {
            expected
                .push(serde_json::json!({"id": id, "amount": amount, "paid": null}).to_string());
        }
        if id % 13 == 0 {
            payment_lines += &format!("{{\"order_id\":{},\"paid\":1}}\n", orders + id);
        }
    }
    expected.sort();
    std::fs::write(dir.path().join("orders.jsonl"), order_lines).unwrap();
    std::fs::write(dir.path().join("payments.jsonl"), payment_lines).unwrap();
    let job = "CREATE STREAM settled AS
         SELECT o.id, o.amount, p.paid FROM orders o LEFT JOIN payments p ON o.id = p.order_id
         WITH ('orders.type' = 'file_source', 'orders.path' = 'orders.jsonl',
           'orders.watch' = 'true', 'orders.batch.size' = '50',
           'orders.schema' = 'id BIGINT, amount BIGINT',
           'payments.type' = 'file_source', 'payments.path' = 'payments.jsonl',
           'payments.watch' = 'true', 'payments.batch.size' = '50',
           'payments.schema' = 'order_id BIGINT, paid BIGINT',
           'settled.type' = 'file_sink', 'settled.path' = 'out/',
           'checkpoint.interval' = '100ms');";
    let out = dir.path().join("out");
    let all_written = || {
        out.exists()
            && std::panic::catch_unwind(|| applied_changes(&sorted_part_lines(&out)))
                .is_ok_and(|rows| rows.len() >= expected.len())
    };
    run_crashing(dir.path(), job, 4, 150..500, &[], Some(&all_written));
    let lines = sorted_part_lines(&out);
    assert!(
        lines.iter().any(|l| l.contains("\"-D\"")),
        "rows were taken back"
    );
    assert_same_lines(&applied_changes(&lines), &expected);
    assert_all_committed(&out);
}

#[test]
fn checkpoints_in_s3_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3StandIn::start();
    let lines: Vec<String> = trades(400_000).into_iter().map(|(_, l)| l).collect();
    std::fs::write(dir.path().join("trades.jsonl"), lines.join("\n")).unwrap();
    let source = "'trades.type' = 'file_source', 'trades.path' = 'trades.jsonl'";
    let expected = "'bars.type' = 'file_sink', 'bars.path' = 'expected/'";
    run_uncrashed(dir.path(), &bars_job(source, expected));
    let sink = "'bars.type' = 'file_sink', 'bars.path' = 'out/',
                'checkpoint.dir' = 's3://ferris/checkpoints/bars'";
    run_crashing(
        dir.path(),
        &bars_job(source, sink),
        2,
        150..500,
        &s3.env(),
        None,
    );
    let expected = sorted_part_lines(&dir.path().join("expected"));
    assert_same_lines(&expected, &expected_bars(400_000));
    assert_same_lines(&sorted_part_lines(&dir.path().join("out")), &expected);
    assert_all_committed(&dir.path().join("out"));
    // The checkpoints went to the bucket, none to the state folder.
    let listing = s3.list("checkpoints/bars/");
    assert!(listing.contains("/_manifest.json</Key>"), "{listing}");
    assert!(!dir.path().join("state/bars").exists());
}

/// A bounded Kafka source reading `topic` in a consumer group of its own.
fn kafka_source(topic: &str, group: &str) -> String {
    format!(
        "'trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{}',
         'trades.topic' = '{topic}', 'trades.group.id' = '{group}',
         'trades.scan.bounded.mode' = 'latest-offset'",
        bootstrap()
    )
}

fn kafka_input(name: &str, rows: usize) -> String {
    // One partition: windows close as it is read, so every killed run has written output.
    let input = topic(name, 1);
    produce(
        &input,
        trades(rows).into_iter().map(|(k, v)| (k, v.into_bytes())),
    );
    input
}

#[test]
fn kafka_to_file_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = kafka_input("crash_file", 200_000);
    let sink = |folder: &str| format!("'bars.type' = 'file_sink', 'bars.path' = '{folder}/'");
    let reference = bars_job(&kafka_source(&input, "reference"), &sink("expected"));
    run_uncrashed(dir.path(), &reference);
    let crashing = bars_job(&kafka_source(&input, "crashing"), &sink("out"));
    run_crashing(dir.path(), &crashing, 4, 100..400, &[], None);
    let expected = sorted_part_lines(&dir.path().join("expected"));
    assert_same_lines(&expected, &expected_bars(200_000));
    assert_same_lines(&sorted_part_lines(&dir.path().join("out")), &expected);
    assert_all_committed(&dir.path().join("out"));
}

#[test]
fn kafka_to_kafka_commits_each_checkpoint_in_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    // Enough rows that a run outlives the kills, which wait for the first transactions.
    let input = kafka_input("crash_kafka", 250_000);
    let sink = |topic: &str| {
        format!(
            "'bars.type' = 'kafka_sink', 'bars.bootstrap.servers' = '{}', 'bars.topic' = '{topic}'",
            bootstrap()
        )
    };
    let (expected_topic, out_topic) = (topic("crash_expected", 1), topic("crash_out", 1));
    let reference = bars_job(&kafka_source(&input, "reference"), &sink(&expected_topic));
    run_uncrashed(dir.path(), &reference);
    let crashing = bars_job(&kafka_source(&input, "crashing"), &sink(&out_topic));
    // The job waits on the broker more than it computes (about 0.2 s of CPU a second): kills
    // after little CPU time, or four times that in wall time, come before it ends.
    run_crashing(dir.path(), &crashing, 4, 150..500, &[], None);
    let expected = committed_lines(&expected_topic);
    assert_same_lines(&expected, &expected_bars(250_000));
    let out = committed_lines(&out_topic);
    // A read_committed reader sees exactly the uncrashed run's bars: the crashed runs'
    // aborted transactions are hidden, and no checkpoint's output was committed twice.
    assert_same_lines(&out, &expected);
    // The job's consumer group committed its offsets inside the transactions: all read.
    assert_eq!(committed_offset(&input, "crashing").0, Some(250_000));
}

/// Writes `trades(rows)` to `topic` keyed by their number, not by symbol: a parallel job's
/// rows cross an exchange.
fn produce_unkeyed(topic: &str, rows: usize) {
    produce(
        topic,
        trades(rows)
            .into_iter()
            .enumerate()
            .map(|(i, (_, v))| (i.to_string(), v.into_bytes())),
    );
}

/// The values of `topic`'s committed messages, sorted.
fn committed_lines(topic: &str) -> Vec<String> {
    let mut lines: Vec<String> = consume_all(topic)
        .into_iter()
        .filter_map(|(_, v, _)| Some(String::from_utf8(v?).unwrap()))
        .collect();
    lines.sort();
    lines
}

/// A child process killed when dropped.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A job of three instances reading a topic of six partitions whose messages are not keyed
/// by its GROUP BY key (so every instance's rows cross an exchange), writing to Kafka in
/// transactions: killed four times, it writes exactly the bars of an uncrashed run.
#[test]
fn a_parallel_kafka_to_kafka_job_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 150_000;
    let input = topic("crash_parallel", 6);
    produce_unkeyed(&input, rows);
    let sink = |topic: &str| {
        format!(
            "'bars.type' = 'kafka_sink', 'bars.bootstrap.servers' = '{}', 'bars.topic' = '{topic}',
             'parallelism' = '3'",
            bootstrap()
        )
    };
    let out_topic = topic("crash_parallel_out", 1);
    let crashing = bars_job(&kafka_source(&input, "parallel"), &sink(&out_topic));
    run_crashing(dir.path(), &crashing, 4, 150..500, &[], None);
    assert_same_lines(&committed_lines(&out_topic), &expected_bars(rows));
    let committed: i64 = (0..6)
        .map(|p| committed_offset_of(&input, "parallel", p).0.unwrap_or(0))
        .sum();
    assert_eq!(
        committed, rows as i64,
        "offsets committed over the partitions"
    );
}

/// A job of two instances run in two processes (`ferris run --instance 0` and `1`), reading
/// a topic of six partitions not keyed by its GROUP BY key, so that each symbol's rows cross
/// between the processes through the job's repartition topic: instance 1 is killed four
/// times and started again while instance 0 runs on, and their transactions hold exactly the
/// bars of one uncrashed instance.
#[test]
fn instances_in_two_processes_meet_through_kafka_and_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 60_000;
    let input = topic("crash_instances", 6);
    produce_unkeyed(&input, rows);
    let out_topic = topic("crash_instances_out", 1);
    // The job's name names its repartition topic: one of its own, as its state is.
    let job = out_topic.replace("_out", "_job");
    let sink = format!(
        "'bars.type' = 'kafka_sink', 'bars.bootstrap.servers' = '{}', 'bars.topic' = '{out_topic}',
         'parallelism' = '2'",
        bootstrap()
    );
    let sql = bars_job(&kafka_source(&input, &job), &sink)
        .replace("CREATE STREAM bars", &format!("CREATE STREAM {job}"))
        .replace("'bars.", &format!("'{job}."));
    std::fs::write(dir.path().join("job.sql"), &sql).unwrap();
    let log = dir.path().join("instance-0.log");
    // Killed if the test fails first: it must not run on (and spin) after the test.
    let steady = std::cell::RefCell::new(KilledOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["run", "--instance", "0", "--state-dir", "state", "job.sql"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    let one = [("FERRIS_INSTANCE".to_string(), "1".to_string())];
    // Instance 1's last run waits for instance 0's rows for ever: stopped if instance 0
    // failed, for the failure to show.
    let steady_failed = || {
        let status = steady.borrow_mut().0.try_wait().unwrap();
        status.is_some_and(|status| !status.success())
    };
    run_crashing(dir.path(), &sql, 4, 150..500, &one, Some(&steady_failed));
    assert!(
        steady.borrow_mut().0.wait().unwrap().success(),
        "instance 0: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_same_lines(&committed_lines(&out_topic), &expected_bars(rows));
    let committed: i64 = (0..6)
        .map(|p| committed_offset_of(&input, &job, p).0.unwrap_or(0))
        .sum();
    assert_eq!(
        committed, rows as i64,
        "offsets committed by both instances"
    );
}

/// A window over a window's rows in two processes: each reads its share of a topic of six
/// partitions not keyed by symbol, its 10-second bars cross to the other process by symbol
/// through one repartition topic, and the inner windows' announced watermarks through
/// the next, with the bars, to the minute windows; together they write the minutes one
/// instance would.
#[test]
fn a_window_over_a_window_s_rows_runs_in_two_processes_through_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 20_000;
    let input = topic("nested_instances", 6);
    produce_unkeyed(&input, rows);
    let out_topic = topic("nested_instances_out", 1);
    let job = out_topic.replace("_out", "_job");
    let sql = format!(
        "CREATE STREAM {job} AS
         SELECT symbol, _window_start AS minute, COUNT(*) AS bars, MAX(trades) AS busiest
         FROM (SELECT symbol, COUNT(*) AS trades FROM trades GROUP BY symbol
               WINDOW TUMBLING(INTERVAL '10' SECOND))
         GROUP BY symbol WINDOW TUMBLING(INTERVAL '1' MINUTE)
         WITH ({},
           'trades.schema' = 'ts BIGINT, symbol VARCHAR, price VARCHAR, qty BIGINT',
           'trades.event.time.field' = 'ts',
           'trades.watermark.max_out_of_orderness' = '1s',
           '{job}.type' = 'kafka_sink', '{job}.bootstrap.servers' = '{}',
           '{job}.topic' = '{out_topic}',
           'parallelism' = '2', 'checkpoint.interval' = '100ms');",
        kafka_source(&input, &job),
        bootstrap()
    );
    std::fs::write(dir.path().join("job.sql"), &sql).unwrap();
    let instances: Vec<KilledOnDrop> = (0..2)
        .map(|i| {
            let log = std::fs::File::create(dir.path().join(format!("instance-{i}.log"))).unwrap();
            KilledOnDrop(
                std::process::Command::new(env!("CARGO_BIN_EXE_ferris"))
                    .args(["run", "--instance", &i.to_string(), "--state-dir", "state"])
                    .arg("job.sql")
                    .current_dir(dir.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for (i, mut instance) in instances.into_iter().enumerate() {
        assert!(
            instance.0.wait().unwrap().success(),
            "instance {i}: {}",
            std::fs::read_to_string(dir.path().join(format!("instance-{i}.log")))
                .unwrap_or_default()
        );
    }
    // No trade is late (within the 1 s bound): every 10-second bar, in the minute it ends in.
    let mut bars: std::collections::BTreeMap<(String, i64), u64> = Default::default();
    for (symbol, line) in trades(rows) {
        let trade: serde_json::Value = serde_json::from_str(&line).unwrap();
        let ts = trade["ts"].as_i64().unwrap();
        *bars
            .entry((symbol, ts.div_euclid(10_000) * 10_000))
            .or_default() += 1;
    }
    let mut minutes: std::collections::BTreeMap<(String, i64), (u64, u64)> = Default::default();
    for ((symbol, start), trades) in bars {
        let minute = minutes
            .entry((symbol, start.div_euclid(60_000) * 60_000))
            .or_default();
        minute.0 += 1;
        minute.1 = minute.1.max(trades);
    }
    let mut expected: Vec<String> = minutes
        .into_iter()
        .map(|((symbol, minute), (bars, busiest))| {
            let minute = chrono::DateTime::from_timestamp_millis(minute).unwrap();
            format!(
                r#"{{"symbol":"{symbol}","minute":"{}","bars":{bars},"busiest":{busiest}}}"#,
                minute.format("%Y-%m-%dT%H:%M:%S")
            )
        })
        .collect();
    expected.sort();
    assert_same_lines(&committed_lines(&out_topic), &expected);
}

/// A job rescaled while it runs: killed at parallelism 1 after a checkpoint, started again
/// at 3 from it (its keyed window state divided by key among three instances, the topic's
/// offsets among three shares), killed again, and run to its end at 2: its transactions
/// hold exactly the bars of the whole input.
#[test]
fn a_job_rescaled_from_one_to_three_to_two_instances_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 150_000;
    let input = topic("rescaled", 6);
    produce_unkeyed(&input, rows);
    let out_topic = topic("rescaled_out", 1);
    let job = |parallelism: usize| {
        let sink = format!(
            "'bars.type' = 'kafka_sink', 'bars.bootstrap.servers' = '{}', 'bars.topic' = '{out_topic}',
             'parallelism' = '{parallelism}'",
            bootstrap()
        );
        bars_job(&kafka_source(&input, "rescaled"), &sink)
    };
    let start = |parallelism: usize| {
        std::fs::write(dir.path().join("job.sql"), job(parallelism)).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["run", "--state-dir", "state", "job.sql"])
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The checkpoint the last transaction committed with the offsets (a checkpoint whose
    // manifest is written but whose transaction is not is not resumed from); none while
    // they cannot be read (a transaction of a killed run still open).
    let committed_checkpoint =
        || try_committed_offset_of(&input, "rescaled", 0).map(|(_, metadata)| metadata);
    let mut logs = Vec::new();
    for parallelism in [1, 3] {
        let mut child = start(parallelism);
        // Past a checkpoint of this run, and some way into the input.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let before = loop {
            if let Some(before) = committed_checkpoint() {
                break before;
            }
            assert!(std::time::Instant::now() < deadline, "no committed offsets");
            std::thread::sleep(Duration::from_millis(20));
        };
        support::wait_for_cpu_time(&child, Duration::from_millis(300));
        while committed_checkpoint().is_none_or(|now| now == before)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run at parallelism {parallelism} ended before it was killed"
        );
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        logs.push(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let last = start(2).wait_with_output().unwrap();
    let last_log = String::from_utf8_lossy(&last.stderr).into_owned();
    assert!(last.status.success(), "{last_log}");
    assert!(logs[1].contains("parallelism 1)"), "{}", logs[1]);
    assert!(last_log.contains("parallelism 3)"), "{last_log}");
    assert_same_lines(&committed_lines(&out_topic), &expected_bars(rows));
}

/// The offset the group `group` committed on partition 0 of `topic`, and its metadata.
fn committed_offset(topic: &str, group: &str) -> (Option<i64>, String) {
    committed_offset_of(topic, group, 0)
}

/// The offset the group `group` committed on partition `partition` of `topic`, and its
/// metadata.
fn committed_offset_of(topic: &str, group: &str, partition: i32) -> (Option<i64>, String) {
    try_committed_offset_of(topic, group, partition)
        .unwrap_or_else(|| panic!("reading the offsets {group} committed on {topic}"))
}

/// [`committed_offset_of`], or `None` when they cannot be read (yet).
fn try_committed_offset_of(
    topic: &str,
    group: &str,
    partition: i32,
) -> Option<(Option<i64>, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .ok()?;
    let mut wanted = rdkafka::TopicPartitionList::new();
    wanted.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .ok()?;
    let partition = &committed.elements()[0];
    let offset = match partition.offset() {
        rdkafka::Offset::Offset(n) => Some(n),
        _ => None,
    };
    Some((offset, partition.metadata().to_string()))
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An S3 stand-in (moto's server) on a free port, with one bucket `ferris`.
struct S3StandIn {
    server: std::process::Child,
    port: u16,
}

impl S3StandIn {
    fn start() -> Self {
        let python = std::env::var("FERRIS_PYTHON").expect(
            "FERRIS_PYTHON: the venv's python, with moto (bash scripts/test.sh sets it up)",
        );
        let port = free_port();
        let server = std::process::Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The bucket, once the stand-in answers.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let address = format!("127.0.0.1:{port}");
        // Refused until the stand-in listens.
        while !http_request(&address, "PUT", "/ferris")
            .unwrap_or_default()
            .starts_with("HTTP/1.1 200")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the S3 stand-in never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { server, port }
    }

    /// The environment that points AWS clients at it.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    }

    /// The keys in the bucket under `prefix`, as the listing's XML.
    fn list(&self, prefix: &str) -> String {
        let address = format!("127.0.0.1:{}", self.port);
        http_request(&address, "GET", &format!("/ferris?prefix={prefix}")).unwrap()
    }
}

impl Drop for S3StandIn {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A broker of this test's own, keeping its messages on disk so that they outlive a stop;
/// stopped and started through the project's script.
struct PersistentBroker {
    dir: std::path::PathBuf,
    port: u16,
}

impl PersistentBroker {
    fn start(dir: &Path) -> Self {
        let broker = Self {
            dir: dir.join("broker"),
            port: free_port(),
        };
        broker.script(&["start"]);
        broker
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn script(&self, args: &[&str]) {
        let output = std::process::Command::new("bash")
            .arg(support::project_root().join("scripts/kafka.sh"))
            .args(args)
            .env("FERRIS_KAFKA_DIR", &self.dir)
            .env("FERRIS_KAFKA_PORT", self.port.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kafka.sh {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PersistentBroker {
    fn drop(&mut self) {
        self.script(&["stop"]);
    }
}

#[test]
fn a_job_rides_out_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = PersistentBroker::start(dir.path());
    let input = "restart_trades";
    support::create_topic(&broker.bootstrap(), input, 1);
    let rows = trades(40_000);
    let produce_to = |rows: &[(String, String)]| {
        let producer: ThreadedProducer<_> = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .create()
            .unwrap();
        for (key, value) in rows {
            producer
                .send(BaseRecord::to(input).key(key).payload(value))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    };
    produce_to(&rows[..20_000]);
    let source = format!(
        "'trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{}',
         'trades.topic' = '{input}', 'trades.group.id' = 'restart',
         'trades.kafka.session.timeout.ms' = '6000'",
        broker.bootstrap()
    );
    let sink = "'bars.type' = 'file_sink', 'bars.path' = 'out/'";
    std::fs::write(dir.path().join("job.sql"), bars_job(&source, sink)).unwrap();
    let log = dir.path().join("job.log");
    // Killed if the test fails first.
    let mut job = KilledOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["run", "--state-dir", "state", "job.sql"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let out = dir.path().join("out");
    // Under the suite's load the group's rejoin after the restart has taken over a minute
    // (seen twice, the partitions revoked and not yet assigned again at 60 s).
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(150);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "waited too long for {what}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the first bars", &|| {
        out.exists() && !sorted_part_lines(&out).is_empty()
    });
    // The broker goes away for a while, then comes back with its messages.
    broker.script(&["stop"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        job.0.try_wait().unwrap().is_none(),
        "the job ended while the broker was away"
    );
    broker.script(&["start"]);
    let mut rest = rows[20_000..].to_vec();
    // Trades far ahead close every window of the others (a partition's watermark is the one
    // before its latest row, so two).
    for ts in [1_800_000_000_000_i64, 1_800_000_000_001] {
        let trade = format!(r#"{{"ts":{ts},"symbol":"AAPL","price":"1.00","qty":1}}"#);
        rest.push(("AAPL".into(), trade));
    }
    produce_to(&rest);

    // The same bars from the same rows, read once from a file.
    let reference = dir.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    let lines: Vec<String> = rows.iter().map(|(_, l)| l.clone()).collect();
    std::fs::write(reference.join("trades.jsonl"), lines.join("\n")).unwrap();
    let file_source = "'trades.type' = 'file_source', 'trades.path' = 'trades.jsonl'";
    let expected_sink = "'bars.type' = 'file_sink', 'bars.path' = 'expected/'";
    run_uncrashed(&reference, &bars_job(file_source, expected_sink));
    let expected = sorted_part_lines(&reference.join("expected"));
    wait_for("every bar", &|| {
        sorted_part_lines(&out).len() >= expected.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    job.0.kill().unwrap();
    job.0.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("waiting"),
        "the source never waited: {stderr}"
    );
    assert!(
        stderr.contains("reading again"),
        "the source never read again: {stderr}"
    );
    eprintln!("{stderr}");
    assert_same_lines(&sorted_part_lines(&out), &expected);
}

#[test]
fn a_kafka_transaction_names_its_checkpoint_with_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let input = kafka_input("named_offsets", 5_000);
    let sink = format!(
        "'bars.type' = 'kafka_sink', 'bars.bootstrap.servers' = '{}', 'bars.topic' = '{}'",
        bootstrap(),
        topic("named_out", 1)
    );
    run_uncrashed(dir.path(), &bars_job(&kafka_source(&input, "named"), &sink));
    // The last checkpoint, taken as the input ended, may be at the offsets of the one before:
    // only the name committed with them tells a restart whether its transaction committed.
    let state = dir.path().join("reference-state/bars");
    let last = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("chk-")?.parse::<u64>().ok()
        })
        .max()
        .unwrap();
    let manifest = std::fs::read(state.join(format!("chk-{last:010}/_manifest.json"))).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["finished"], true);
    assert_eq!(
        committed_offset(&input, "named").1,
        format!("ferris checkpoint {last}")
    );
}
