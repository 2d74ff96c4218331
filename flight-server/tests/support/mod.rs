//! What the end-to-end tests share: the broker's topics, producing and consuming, and
//! running `ferris` while killing it.
#![allow(dead_code)] // each test binary uses its own share of it

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

pub fn bootstrap() -> String {
    std::env::var("FERRIS_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A topic of this test run, created on the broker with `partitions` partitions.
pub fn topic(name: &str, partitions: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let topic = format!("{name}_{}_{nanos}", std::process::id());
    create_topic(&bootstrap(), &topic, partitions);
    topic
}

/// Creates `topic` on the broker at `bootstrap` through Kafka's admin API, and waits until
/// the broker has leaders for its partitions.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: u32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .unwrap_or_else(|e| {
            panic!("creating topic {topic} (is the broker up? bash scripts/kafka.sh start): {e}")
        });
    for result in results {
        if let Err((name, code)) = result {
            panic!("creating topic {name}: {code}");
        }
    }
    // Metadata lags creation by a moment: wait until every partition has a leader.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .is_ok_and(|m| {
                m.topics().iter().any(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            });
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} has no leaders");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap()
}

/// Writes the values keyed by symbol (so each symbol stays in one partition, in order).
pub fn produce(topic: &str, values: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let producer = producer();
    for (key, value) in values {
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        // A full queue empties as the broker acknowledges: wait for room.
        while let Err((e, back)) = producer.send(record) {
            assert!(
                matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ),
                "producing to {topic}: {e}"
            );
            record = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Every message of `topic` now: (key, value, headers).
pub type Consumed = Vec<(Option<String>, Option<Vec<u8>>, BTreeMap<String, String>)>;

pub fn consume_all(topic: &str) -> Consumed {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("test-reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let partitions = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap()
        .topics()[0]
        .partitions()
        .len();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < partitions {
        assert!(Instant::now() < deadline, "reading {topic} took too long");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_string(), value.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    m.payload().map(<[u8]>::to_vec),
                    headers,
                ));
            }
        }
    }
    out
}

/// A run of `ferris run --state-dir state job.sql` in `dir` that was killed and restarted.
pub struct KilledRuns {
    /// How many times it was killed (fewer than asked when it finished sooner).
    pub kills: usize,
    /// What the last run printed: it ran to the end.
    pub last: Output,
    /// Whether any restart resumed from a checkpoint.
    pub resumed: bool,
}

/// Runs `ferris run --state-dir state job.sql` in `dir`, kills it with SIGKILL `kills`
/// times, each after a random delay in `delay` (ms of the run's CPU time, so that a busy
/// machine kills it after about as much work as an idle one; at most four times that in wall
/// time), restarting it each time, then lets the last run finish: by itself, or, given
/// `until`, stopped with Ctrl-C (SIGINT) once `until()` holds (a job on watched sources never
/// ends). When every kill came before the first checkpoint (a slow start), it kills up to
/// `kills` times more, each wait twice the one before, so that some run resumes. The delays
/// come from `seed`, printed so a failure can be replayed.
pub fn run_killing(
    dir: &Path,
    kills: usize,
    delay: std::ops::Range<u64>,
    seed: u64,
    env: &[(String, String)],
    until: Option<&dyn Fn() -> bool>,
) -> KilledRuns {
    eprintln!("killing with seed {seed}");
    let mut random = seed.max(1);
    let mut next_delay = || {
        // xorshift: reproducible without a dependency.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        delay.start + random % (delay.end - delay.start)
    };
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["run", "--state-dir", "state", "job.sql"])
            .current_dir(dir)
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut done: usize = 0;
    let mut resumed = false;
    loop {
        let mut child = start();
        let extra = done.saturating_sub(kills);
        if done < kills || (!resumed && extra < kills) {
            let stretch = 1 << (extra + usize::from(done >= kills));
            wait_for_cpu_time(&child, Duration::from_millis(next_delay() * stretch));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                let output = child.wait_with_output().unwrap();
                resumed |=
                    String::from_utf8_lossy(&output.stderr).contains("resumes from checkpoint");
                done += 1;
                continue;
            }
        }
        if let Some(until) = until {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !until()
                && child.try_wait().unwrap().is_none()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            // Ended on its own already: nothing to interrupt (its process id may be gone).
            if child.try_wait().unwrap().is_none() {
                interrupt(&child);
            }
        }
        let last = child.wait_with_output().unwrap();
        resumed |= String::from_utf8_lossy(&last.stderr).contains("resumes from checkpoint");
        return KilledRuns {
            kills: done,
            last,
            resumed,
        };
    }
}

/// Waits until `child` has used `cpu` of CPU time (user and system, all threads), or for
/// four times that in wall time while it waits on something else (a broker), or until it
/// ends; prints which.
pub fn wait_for_cpu_time(child: &Child, cpu: Duration) {
    let started = Instant::now();
    let stat = format!("/proc/{}/stat", child.id());
    let used = || -> Option<Duration> {
        let text = std::fs::read_to_string(&stat).ok()?;
        // Fields after the command's ")": the state is the 3rd field, utime the 14th, stime
        // the 15th, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        (fields[0] != "Z").then(|| Duration::from_millis(ticks * 10))
    };
    loop {
        let Some(used) = used() else {
            return; // it ended
        };
        if used >= cpu || started.elapsed() >= cpu * 4 {
            eprintln!(
                "killing after {} ms of CPU time, {} ms of wall time",
                used.as_millis(),
                started.elapsed().as_millis()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `child` Ctrl-C (SIGINT).
pub fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "could not interrupt process {}", child.id());
}

/// A seed for [`run_killing`]: `FERRIS_CRASH_SEED`, else the clock.
pub fn crash_seed() -> u64 {
    std::env::var("FERRIS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// The lines of every committed part file of a folder sink, sorted (in-progress parts are
/// hidden files).
pub fn sorted_part_lines(folder: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
            lines.extend(
                std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    lines
}

/// Waits (up to a minute) until the committed part files of `folder` hold `count` lines;
/// their lines, sorted.
pub fn wait_for_part_lines(folder: &Path, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lines = if folder.exists() {
            sorted_part_lines(folder)
        } else {
            Vec::new()
        };
        if lines.len() >= count {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {count} lines in {}",
            lines.len(),
            folder.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that two sorted lists of lines are equal; if not, fails with their lengths and a
/// few of the lines missing from `got` and of those it has too many of (not every line).
pub fn assert_same_lines(got: &[String], expected: &[String]) {
    if got == expected {
        return;
    }
    let mut counts: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for line in expected {
        *counts.entry(line).or_default() += 1;
    }
    for line in got {
        *counts.entry(line).or_default() -= 1;
    }
    let (mut missing, mut extra): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
    for (line, count) in counts {
        match count {
            1.. => missing.push(line),
            ..0 => extra.push(line),
            0 => {}
        }
    }
    missing.sort();
    extra.sort();
    panic!(
        "{} lines, {} expected; {} missing, e.g. {:?}; {} too many, e.g. {:?}",
        got.len(),
        expected.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
}

/// Checks that a finished folder sink left no in-progress part behind.
pub fn assert_all_committed(folder: &Path) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            !name.starts_with('.'),
            "{name}: an uncommitted part was left behind"
        );
    }
}

/// Runs `ferris ARGS` in `dir` to its end; fails the test, with its stderr, unless it
/// succeeds. Returns its stderr.
pub fn ferris_ok(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ferris"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "ferris {args:?}: {stderr}");
    stderr
}

/// `GET path` over HTTP/1.1: the status line and the body.
pub fn http_get(address: &str, path: &str) -> (String, String) {
    let response = http_request(address, "GET", path).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Sends `METHOD path` with no body to `address`; the whole response.
pub fn http_request(address: &str, method: &str, path: &str) -> std::io::Result<String> {
    http_send(address, method, path, &[], "")
}

/// Sends `METHOD path` with `headers` and `body` to `address`; the whole response.
pub fn http_send(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, written to `dir`: `server.pem`
/// (also the authority clients trust) and `server.key`.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A `ferris server` on a free port, killed when dropped.
pub struct Server {
    pub child: Child,
    /// Its Flight SQL address.
    pub address: String,
    /// Its HTTP endpoint, when started with one.
    pub http: Option<String>,
}

impl Server {
    /// `ferris server --flight 127.0.0.1:0 ARGS` in `dir`, once it listens.
    pub fn spawn(dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["server", "--flight", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut listening = |what: &str| {
            let mut line = String::new();
            while !line.contains(what) {
                line.clear();
                assert!(
                    stderr.read_line(&mut line).unwrap() > 0,
                    "the server stopped"
                );
            }
            line.trim().rsplit(' ').next().unwrap().to_string()
        };
        let address = listening("Flight SQL listening on");
        let http = args
            .contains(&"--http")
            .then(|| listening("HTTP (/health, /ready, /metrics) listening on"));
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Self {
            child,
            address,
            http,
        }
    }

    /// Runs `sql` through `ferris-flight`; its stdout, or the test fails with its stderr.
    pub fn sql(&self, sql: &str) -> String {
        let port = self.address.rsplit(':').next().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_ferris-flight"))
            .args(["--port", port, "-e", sql])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
