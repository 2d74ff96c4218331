//! End-to-end tests of the Kafka connectors against a real broker on loopback.
//!
//! `scripts/test.sh` starts the broker (Apache Kafka, through `scripts/kafka.sh`) and says where it
//! is in `FERRIS_KAFKA_BOOTSTRAP`; the schema registry stand-in is
//! `tests/kafka/schema_registry.py`, run with `FERRIS_PYTHON`. Each test uses topics of its
//! own, so the tests can share the broker.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use serde_json::{Value, json};
use support::{Server, bootstrap, consume_all, http_get, produce, producer, project_root, topic};

const ROWS: usize = 2000;
const SYMBOLS: [&str; 5] = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG"];

/// One trade of the test data: event times rise, so each partition is in order.
struct Trade {
    symbol: &'static str,
    cents: i64,
    qty: i64,
    ts: i64,
}

fn trades() -> Vec<Trade> {
    (0..ROWS)
        .map(|i| Trade {
            symbol: SYMBOLS[i % SYMBOLS.len()],
            cents: 10_000 + ((i * 7919) % 5000) as i64,
            qty: 1 + (i % 13) as i64,
            ts: 1_700_000_000_000 + (i as i64) * 250,
        })
        .collect()
}

fn price(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn json_value(t: &Trade) -> Vec<u8> {
    format!(
        r#"{{"symbol":"{}","price":{},"qty":{},"ts":{}}}"#,
        t.symbol,
        price(t.cents),
        t.qty,
        t.ts
    )
    .into_bytes()
}

/// Avro binary of `{symbol: string, price: decimal(10,2) bytes, qty: long, ts: long}`,
/// written by hand so that the test does not share the engine's Avro library.
fn avro_value(t: &Trade) -> Vec<u8> {
    fn long(out: &mut Vec<u8>, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        long(out, b.len() as i64);
        out.extend_from_slice(b);
    }
    let mut out = Vec::new();
    bytes(&mut out, t.symbol.as_bytes());
    // Two's complement big-endian, shortest form.
    let full = t.cents.to_be_bytes();
    let skip = full
        .windows(2)
        .take_while(|w| (w[0] == 0 && w[1] < 0x80) || (w[0] == 0xff && w[1] >= 0x80))
        .count();
    bytes(&mut out, &full[skip..]);
    long(&mut out, t.qty);
    long(&mut out, t.ts);
    out
}

const AVRO_SCHEMA: &str = r#"{"type":"record","name":"Trade","namespace":"shop","fields":[
  {"name":"symbol","type":"string"},
  {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
  {"name":"qty","type":"long"},
  {"name":"ts","type":"long"}]}"#;

/// Protobuf encoding of `shop.Trade` (tests/kafka/trade.proto), by hand.
fn protobuf_value(t: &Trade) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn text(out: &mut Vec<u8>, field: u64, s: &str) {
        varint(out, field << 3 | 2);
        varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    text(&mut out, 1, t.symbol);
    text(&mut out, 2, &price(t.cents));
    varint(&mut out, 3 << 3);
    varint(&mut out, t.qty as u64);
    varint(&mut out, 4 << 3);
    varint(&mut out, t.ts as u64);
    out
}

fn produce_trades(topic: &str, encode: fn(&Trade) -> Vec<u8>, prefix: &[u8]) {
    produce(
        topic,
        trades().iter().map(|t| {
            let mut value = prefix.to_vec();
            value.extend(encode(t));
            (t.symbol.to_string(), value)
        }),
    );
}

fn ferris(dir: &Path, sql: &str) -> Output {
    std::fs::write(dir.join("job.sql"), sql).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ferris"))
        .args(["run", "job.sql"])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn run_ok(dir: &Path, sql: &str) -> String {
    let output = ferris(dir, sql);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{sql}\n{stderr}");
    stderr
}

/// The output rows, sorted, as text.
fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

const BARS_QUERY: &str = "SELECT symbol, _window_start, COUNT(*) AS trades, SUM(price * qty) AS notional \
    FROM trades GROUP BY symbol WINDOW TUMBLING(INTERVAL '1' MINUTE) EMIT FINAL";

/// The minute bars of the test trades, computed from a JSON lines file.
fn bars_from_file(dir: &Path) -> Vec<String> {
    let text: Vec<u8> = trades()
        .iter()
        .flat_map(|t| {
            let mut line = json_value(t);
            line.push(b'\n');
            line
        })
        .collect();
    std::fs::write(dir.join("trades.jsonl"), text).unwrap();
    run_ok(
        dir,
        &format!(
            "CREATE STREAM bars AS {BARS_QUERY} WITH (
               'trades.type' = 'file_source', 'trades.path' = 'trades.jsonl',
               'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT',
               'trades.event.time.field' = 'ts',
               'bars.type' = 'file_sink', 'bars.path' = 'file_bars.jsonl');"
        ),
    );
    let bars = sorted_lines(&dir.join("file_bars.jsonl"));
    assert!(bars.len() > 40, "{} bars", bars.len());
    bars
}

/// A bounded Kafka source `trades` with a consumer group of its own: a group resumes from
/// its committed offsets, so a second job of the same name would read nothing.
fn kafka_source(topic: &str, format_options: &str) -> String {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "'trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{}',
         'trades.topic' = '{topic}', 'trades.scan.bounded.mode' = 'latest-offset',
         'trades.group.id' = '{topic}-{run}', 'trades.event.time.field' = 'ts', {format_options}",
        bootstrap()
    )
}

/// A schema registry stand-in speaking the real HTTP API, stopped when dropped.
struct Registry {
    child: Child,
    url: String,
}

impl Registry {
    fn start() -> Self {
        let python = std::env::var("FERRIS_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(project_root().join("tests/kafka/schema_registry.py"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        Self {
            child,
            url: format!("http://{address}"),
        }
    }

    /// Registers `schema` for `subject` through the HTTP API, returning its id.
    fn register(&self, subject: &str, schema: &str) -> u32 {
        let body = json!({ "schema": schema }).to_string();
        let output = Command::new("curl")
            .args(["-sf", "-X", "POST", "-H", "Content-Type: application/json"])
            .args(["--data", &body])
            .arg(format!("{}/subjects/{subject}/versions", self.url))
            .output()
            .unwrap();
        assert!(output.status.success(), "registering {subject}");
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        answer["id"].as_u64().unwrap() as u32
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn json_avro_and_protobuf_topics_give_the_file_run_s_minute_bars() {
    let dir = tempfile::tempdir().unwrap();
    let expected = bars_from_file(dir.path());
    let registry = Registry::start();
    let proto = project_root().join("flight-server/tests/kafka/trade.proto");

    let json_topic = topic("trades_json", 4);
    produce_trades(&json_topic, json_value, &[]);
    let avro_topic = topic("trades_avro", 4);
    produce_trades(&avro_topic, avro_value, &[]);
    let registry_topic = topic("trades_registry", 4);
    let id = registry.register(&format!("{registry_topic}-value"), AVRO_SCHEMA);
    let mut prefix = vec![0];
    prefix.extend(id.to_be_bytes());
    produce_trades(&registry_topic, avro_value, &prefix);
    let proto_topic = topic("trades_protobuf", 4);
    produce_trades(&proto_topic, protobuf_value, &[]);

    let avro_schema = AVRO_SCHEMA.replace('\n', " ");
    let cases = [
        (
            "json",
            kafka_source(
                &json_topic,
                // Many micro-batches: the watermark must hold for the lagging partitions.
                "'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT',
                 'trades.batch.size' = '97'",
            ),
        ),
        (
            "avro",
            kafka_source(
                &avro_topic,
                &format!("'trades.format' = 'avro', 'trades.avro.schema' = '{avro_schema}'"),
            ),
        ),
        (
            "registry",
            kafka_source(
                &registry_topic,
                &format!(
                    "'trades.format' = 'avro', 'trades.schema.registry.url' = '{}'",
                    registry.url
                ),
            ),
        ),
        (
            "protobuf",
            kafka_source(
                &proto_topic,
                &format!(
                    "'trades.format' = 'protobuf', 'trades.protobuf.schema.file' = '{}',
                     'trades.protobuf.message' = 'shop.Trade'",
                    proto.display()
                ),
            ),
        ),
    ];
    for (name, source) in cases {
        // Protobuf carries the price as text: the query casts it back to an exact decimal.
        let query = if name == "protobuf" {
            BARS_QUERY.replace(
                "SUM(price * qty)",
                "SUM(CAST(price AS DECIMAL(10,2)) * qty)",
            )
        } else {
            BARS_QUERY.to_string()
        };
        let out = format!("{name}_bars.jsonl");
        run_ok(
            dir.path(),
            &format!(
                "CREATE STREAM bars AS {query} WITH ({source},
                 'bars.type' = 'file_sink', 'bars.path' = '{out}');"
            ),
        );
        assert_eq!(sorted_lines(&dir.path().join(&out)), expected, "{name}");
    }
}

/// A topic of six partitions whose messages are keyed otherwise than by the GROUP BY key
/// gives the same bars at parallelism 1, 2 and 4: the instances divide the partitions, and
/// each symbol's rows meet in one instance through an exchange.
#[test]
fn a_topic_not_keyed_by_the_group_gives_the_same_bars_at_any_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let expected = bars_from_file(dir.path());
    let input = topic("trades_unkeyed", 6);
    produce(
        &input,
        trades()
            .iter()
            .enumerate()
            .map(|(i, t)| (i.to_string(), json_value(t))),
    );
    for parallelism in [1, 2, 4] {
        let source = kafka_source(
            &input,
            "'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT',
             'trades.batch.size' = '97'",
        );
        let out = format!("bars_{parallelism}.jsonl");
        run_ok(
            dir.path(),
            &format!(
                "CREATE STREAM bars AS {BARS_QUERY} WITH ({source},
                 'parallelism' = '{parallelism}',
                 'bars.type' = 'file_sink', 'bars.path' = '{out}');"
            ),
        );
        assert_eq!(
            sorted_lines(&dir.path().join(&out)),
            expected,
            "parallelism {parallelism}"
        );
    }
}

#[test]
fn windowed_results_go_to_kafka_keyed_and_back_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let expected = bars_from_file(dir.path());
    let registry = Registry::start();
    let input = topic("sink_input", 4);
    produce_trades(&input, json_value, &[]);
    let source = || {
        kafka_source(
            &input,
            "'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT'",
        )
    };

    // JSON: the message values are the file run's lines, keyed by the GROUP BY columns.
    let bars_json = topic("bars_json", 2);
    run_ok(
        dir.path(),
        &format!(
            "CREATE STREAM bars AS {BARS_QUERY} WITH ({},
             'bars.type' = 'kafka_sink', 'bars.bootstrap.servers' = '{}',
             'bars.topic' = '{bars_json}');",
            source(),
            bootstrap()
        ),
    );
    let messages = consume_all(&bars_json);
    let mut values: Vec<String> = messages
        .iter()
        .map(|(_, v, _)| String::from_utf8(v.clone().unwrap()).unwrap())
        .collect();
    values.sort();
    assert_eq!(values, expected);
    for (key, value, _) in &messages {
        let key: Value = serde_json::from_str(key.as_deref().unwrap()).unwrap();
        let value: Value = serde_json::from_slice(value.as_deref().unwrap()).unwrap();
        assert_eq!(key["symbol"], value["symbol"]);
        assert_eq!(key["_window_start"], value["_window_start"]);
    }

    // Avro through the registry, then read back with the registry: the same bars again.
    let bars_avro = topic("bars_avro", 2);
    run_ok(
        dir.path(),
        &format!(
            "CREATE STREAM bars AS {BARS_QUERY} WITH ({},
             'bars.type' = 'kafka_sink', 'bars.bootstrap.servers' = '{}',
             'bars.topic' = '{bars_avro}', 'bars.format' = 'avro',
             'bars.schema.registry.url' = '{}');",
            source(),
            bootstrap(),
            registry.url
        ),
    );
    run_ok(
        dir.path(),
        &format!(
            "CREATE STREAM copy AS SELECT symbol, _window_start, trades, notional FROM bars WITH (
             'bars.type' = 'kafka_source', 'bars.bootstrap.servers' = '{}',
             'bars.topic' = '{bars_avro}', 'bars.scan.bounded.mode' = 'latest-offset',
             'bars.format' = 'avro', 'bars.schema.registry.url' = '{}',
             'copy.type' = 'file_sink', 'copy.path' = 'copy.jsonl');",
            bootstrap(),
            registry.url
        ),
    );
    assert_eq!(sorted_lines(&dir.path().join("copy.jsonl")), expected);
}

#[test]
fn malformed_messages_follow_on_error_and_reach_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let proto = project_root().join("flight-server/tests/kafka/trade.proto");
    let good = |encode: fn(&Trade) -> Vec<u8>| -> Vec<(String, Vec<u8>)> {
        trades()[..100]
            .iter()
            .map(|t| (t.symbol.to_string(), encode(t)))
            .collect()
    };
    let avro_schema = AVRO_SCHEMA.replace('\n', " ");
    let cases: [(&str, String, Vec<Vec<u8>>); 3] = [
        (
            "json",
            "'src.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT'".into(),
            vec![
                b"{\"symbol\":\"AAPL\",\"qty\":".to_vec(),
                b"{\"qty\":\"many\"}".to_vec(),
            ],
        ),
        (
            "avro",
            format!("'src.format' = 'avro', 'src.avro.schema' = '{avro_schema}'"),
            // A string longer than the message, and a record cut short.
            vec![vec![0x7e, b'A'], avro_value(&trades()[0])[..3].to_vec()],
        ),
        (
            "protobuf",
            format!(
                "'src.format' = 'protobuf', 'src.protobuf.schema.file' = '{}',
                 'src.protobuf.message' = 'shop.Trade'",
                proto.display()
            ),
            // A field of wire type 7 (none such), and a length beyond the message.
            vec![vec![0x0f, 0x01], vec![0x0a, 0x10, b'A']],
        ),
    ];
    for (name, format, bad) in cases {
        let encode = match name {
            "json" => json_value,
            "avro" => avro_value,
            _ => protobuf_value,
        };
        let input = topic(&format!("bad_{name}"), 1);
        let mut messages = good(encode);
        // The bad messages sit between good ones, at offsets 50 and 51.
        for (i, value) in bad.iter().enumerate() {
            messages.insert(50 + i, ("bad".to_string(), value.clone()));
        }
        produce(&input, messages);
        let source = format!(
            "'src.type' = 'kafka_source', 'src.bootstrap.servers' = '{}', 'src.topic' = '{input}',
             'src.scan.bounded.mode' = 'latest-offset', {format}",
            bootstrap()
        );

        // fail (the default): the error names the topic, partition and offset. The query
        // reads `qty`, whose bad value makes a JSON message malformed (a column it did not
        // read would not be decoded).
        let output = ferris(
            dir.path(),
            &format!(
                "CREATE STREAM out AS SELECT symbol, qty FROM src WITH ({source},
                 'out.type' = 'file_sink', 'out.path' = 'out.jsonl');"
            ),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "malformed message in topic '{input}' partition 0 at offset 50"
            )),
            "{name}: {stderr}"
        );

        // dead_letter: every good row comes through; the bad ones land in the topic.
        let dead = topic(&format!("dead_{name}"), 1);
        run_ok(
            dir.path(),
            &format!(
                "CREATE STREAM out AS SELECT symbol, qty FROM src WITH ({source},
                 'src.on.error' = 'dead_letter', 'src.dead_letter.topic' = '{dead}',
                 'out.type' = 'file_sink', 'out.path' = 'out.jsonl');"
            ),
        );
        assert_eq!(
            sorted_lines(&dir.path().join("out.jsonl")).len(),
            100,
            "{name}"
        );
        let letters = consume_all(&dead);
        assert_eq!(letters.len(), bad.len(), "{name}");
        for ((_, value, headers), (offset, sent)) in letters.iter().zip((50..).zip(&bad)) {
            assert_eq!(value.as_ref(), Some(sent), "{name}: the original bytes");
            assert_eq!(headers["ferris.source"], "src");
            assert_eq!(headers["ferris.origin"], format!("{input}/0@{offset}"));
            assert!(!headers["ferris.error"].is_empty(), "{name}: a reason");
        }
    }
}

/// Runs `ferris run` in the background, with its stderr collected line by line.
struct Running {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Running {
    fn start(dir: &Path, file: &str, sql: &str) -> Self {
        std::fs::write(dir.join(file), sql).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["run", file])
            .current_dir(dir)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, stderr) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stderr,
            lines: vec![],
        }
    }

    /// The partitions this process holds now, from its assignment lines.
    fn assigned(&mut self) -> Vec<u32> {
        self.lines.extend(self.stderr.try_iter());
        let mut held = vec![];
        for line in &self.lines {
            if let Some(list) = line.split("assigned partitions [").nth(1) {
                held = list
                    .trim_end_matches(']')
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse().unwrap())
                    .collect();
            }
            if line.contains("revoked partitions") {
                held.clear();
            }
        }
        held
    }

    fn interrupt_and_wait(mut self) -> String {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        self.lines.extend(self.stderr.iter());
        let log = self.lines.join("\n");
        assert!(exit.success(), "{log}");
        log
    }
}

#[test]
fn two_processes_in_one_consumer_group_split_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("grouped", 4);
    let group = format!("group-{input}");
    let job = |name: &str| {
        format!(
            "CREATE STREAM {name} AS SELECT symbol, qty, ts, _partition FROM trades WITH (
             'trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{}',
             'trades.topic' = '{input}', 'trades.group.id' = '{group}',
             'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT',
             'trades.kafka.session.timeout.ms' = '6000',
             'trades.kafka.heartbeat.interval.ms' = '500',
             '{name}.type' = 'file_sink', '{name}.path' = '{name}/',
             '{name}.rollover.interval' = '1s');",
            bootstrap()
        )
    };
    let mut first = Running::start(dir.path(), "first.sql", &job("first"));
    let mut second = Running::start(dir.path(), "second.sql", &job("second"));
    // Data goes in once the group has settled with both members holding partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (first.assigned(), second.assigned());
        if !a.is_empty() && !b.is_empty() && a.len() + b.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle: {a:?} {b:?}\n{}\n{}",
            first.lines.join("\n"),
            second.lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    produce_trades(&input, json_value, &[]);
    // Every row is out once the part files hold them all.
    let rows = |name: &str| -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(dir.path().join(name)) else {
            return vec![];
        };
        entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect()
    };
    // Part files commit every second: wait until they hold every row, then stop both.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows("first").len() + rows("second").len() < ROWS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_log = first.interrupt_and_wait();
    let second_log = second.interrupt_and_wait();
    let (a, b) = (rows("first"), rows("second"));
    assert!(!a.is_empty() && !b.is_empty(), "both processes took part");
    let mut seen: Vec<(i64, String)> = a
        .iter()
        .chain(&b)
        .map(|r| {
            (
                r["ts"].as_i64().unwrap(),
                r["symbol"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut sent: Vec<(i64, String)> = trades()
        .iter()
        .map(|t| (t.ts, t.symbol.to_string()))
        .collect();
    sent.sort();
    assert_eq!(seen.len(), ROWS, "{first_log}\n{second_log}");
    assert_eq!(seen, sent, "every row exactly once");
    // No partition was read by both.
    let partitions = |rows: &[Value]| -> std::collections::BTreeSet<i64> {
        rows.iter()
            .map(|r| r["_partition"].as_i64().unwrap())
            .collect()
    };
    assert!(partitions(&a).is_disjoint(&partitions(&b)));
}

/// Batches that close on their linger time while messages wait in the queue lose none of
/// them (a message taken off the queue as the linger ran out was once dropped, and the next
/// one's offset moved past it).
#[test]
fn batches_closed_by_their_linger_time_lose_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("lingering", 3);
    const MESSAGES: usize = 200_000;
    produce(
        &input,
        (0..MESSAGES).map(|n| {
            (
                format!("k{}", n % 97),
                format!(r#"{{"n":{n}}}"#).into_bytes(),
            )
        }),
    );
    let output = ferris(
        dir.path(),
        &format!(
            "SELECT COUNT(*) AS messages, COUNT(DISTINCT n) AS distinct_n, SUM(n) AS total
             FROM src WITH (
             'src.type' = 'kafka_source', 'src.bootstrap.servers' = '{}', 'src.topic' = '{input}',
             'src.schema' = 'n BIGINT', 'src.scan.bounded.mode' = 'latest-offset',
             'src.batch.size' = '50000', 'src.batch.linger.ms' = '1')",
            bootstrap()
        ),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The one row of the table, between its header and its border.
    let row: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("messages"))
        .flat_map(|l| l.split('|').map(str::trim).filter(|c| !c.is_empty()))
        .collect();
    let total = MESSAGES * (MESSAGES - 1) / 2;
    assert_eq!(
        row,
        [
            MESSAGES.to_string(),
            MESSAGES.to_string(),
            total.to_string()
        ],
        "{stdout}"
    );
}

#[test]
fn a_group_reset_to_latest_reads_only_what_is_written_after_it_joined() {
    let dir = tempfile::tempdir().unwrap();
    // One partition: with several, one could be positioned before the other.
    let input = topic("reset_latest", 1);
    let message = |n: usize| (format!("k{n}"), format!(r#"{{"n":{n}}}"#).into_bytes());
    produce(&input, (0..50).map(message));
    let mut job = Running::start(
        dir.path(),
        "job.sql",
        &format!(
            "CREATE STREAM newer AS SELECT n FROM src WITH (
             'src.type' = 'kafka_source', 'src.bootstrap.servers' = '{}', 'src.topic' = '{input}',
             'src.schema' = 'n BIGINT', 'src.auto.offset.reset' = 'latest',
             'newer.type' = 'file_sink', 'newer.path' = 'newer/', 'newer.rollover.interval' = '1s');",
            bootstrap()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while job.assigned().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no assignment: {}",
            job.lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The reset to the end happens at the first fetch after the assignment: probes go in
    // until one comes out, so the consumer is positioned before the real messages.
    let out = dir.path().join("newer");
    let numbers = || -> Vec<i64> {
        let lines = if out.exists() {
            support::sorted_part_lines(&out)
        } else {
            vec![]
        };
        let mut numbers: Vec<i64> = lines
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["n"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        numbers.sort();
        numbers
    };
    for probe in 1000.. {
        produce(&input, [message(probe)]);
        if !numbers().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no probe came out: {}",
            job.lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    produce(&input, (50..80).map(message));
    let wanted: Vec<i64> = (50..80).collect();
    let older = |n: &i64| *n < 1000;
    while numbers().into_iter().filter(older).count() < wanted.len() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "{:?}",
            numbers()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = job.interrupt_and_wait();
    let read: Vec<i64> = numbers().into_iter().filter(older).collect();
    assert_eq!(read, wanted, "{log}");
}

#[test]
fn retractions_become_tombstones_and_headers_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    // A keyed table whose key stops matching its HAVING: its row is withdrawn.
    std::fs::write(dir.path().join("t.csv"), "symbol,qty\nA,3\nB,1\nA,4\n").unwrap();
    let totals = topic("totals", 1);
    run_ok(
        dir.path(),
        &format!(
            "CREATE TABLE small AS SELECT symbol, SUM(qty) AS total FROM t GROUP BY symbol
             HAVING SUM(qty) < 5 EMIT CHANGES WITH (
             't.type' = 'file_source', 't.path' = 't.csv', 't.batch.size' = '1',
             'small.type' = 'kafka_sink', 'small.bootstrap.servers' = '{}',
             'small.topic' = '{totals}');",
            bootstrap()
        ),
    );
    let messages: Vec<(String, Option<Value>)> = consume_all(&totals)
        .into_iter()
        .map(|(k, v, _)| (k.unwrap(), v.map(|v| serde_json::from_slice(&v).unwrap())))
        .collect();
    let last = |key: &str| {
        messages
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(
        last("A"),
        None,
        "A's total went past 5: a tombstone\n{messages:?}"
    );
    assert_eq!(last("B").unwrap()["total"], 1);
    assert!(messages.iter().any(|(k, v)| k == "A" && v.is_some()));

    // Headers read from one topic are written to the next.
    let input = topic("with_headers", 1);
    let producer = producer();
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "trace",
        value: Some("abc"),
    });
    producer
        .send(
            BaseRecord::to(&input)
                .key("k")
                .payload(r#"{"symbol":"A"}"#)
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let output = topic("headers_out", 1);
    run_ok(
        dir.path(),
        &format!(
            "CREATE STREAM copied AS SELECT symbol, _headers FROM src WITH (
             'src.type' = 'kafka_source', 'src.bootstrap.servers' = '{0}', 'src.topic' = '{input}',
             'src.scan.bounded.mode' = 'latest-offset',
             'copied.type' = 'kafka_sink', 'copied.bootstrap.servers' = '{0}',
             'copied.topic' = '{output}');",
            bootstrap()
        ),
    );
    let copied = consume_all(&output);
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].2["trace"], "abc");
    assert_eq!(copied[0].1.as_deref(), Some(&br#"{"symbol":"A"}"#[..]));
}

#[test]
fn show_topics_and_topic_details_describe_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("described", 2);
    produce(
        &input,
        ["a", "b", "c"].map(|k| (k.to_string(), br#"{"x":1}"#.to_vec())),
    );
    let sql = format!(
        "CREATE STREAM described_copy AS SELECT x FROM src WITH (
         'src.type' = 'kafka_source', 'src.bootstrap.servers' = '{}', 'src.topic' = '{input}',
         'src.scan.bounded.mode' = 'latest-offset',
         'described_copy.type' = 'file_sink', 'described_copy.path' = 'copy.jsonl');
         SHOW TOPICS LIKE '{input}';
         SHOW TOPIC DETAILS '{input}';",
        bootstrap()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_ferris"))
        .args(["run", "-e", &sql])
        .env("FERRIS_KAFKA_BOOTSTRAP", bootstrap())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("| {input} | 2          |")),
        "{stdout}"
    );
    // The details table: a row per partition, then a row per group and partition.
    let header = stdout.lines().find(|l| l.contains("high_offset")).unwrap();
    let columns: Vec<&str> = header.split('|').map(str::trim).collect();
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| *l != header)
        .filter(|l| l.starts_with("| ") && *l != header)
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    let sum = |column: &str, group: &str| -> i64 {
        let at = columns.iter().position(|c| *c == column).unwrap();
        let group_at = columns.iter().position(|c| *c == "consumer_group").unwrap();
        rows.iter()
            .filter(|r| r[group_at] == group)
            .map(|r| r[at].parse::<i64>().unwrap())
            .sum()
    };
    // The broker's high offsets count the three messages, over both partitions.
    assert_eq!(sum("low_offset", ""), 0, "{stdout}");
    assert_eq!(sum("high_offset", ""), 3, "{stdout}");
    // The job committed its group's offsets: all three messages read, none lagging.
    assert_eq!(
        sum("committed_offset", "ferris-described_copy"),
        3,
        "{stdout}"
    );
    assert_eq!(sum("lag", "ferris-described_copy"), 0, "{stdout}");

    let missing = ferris(dir.path(), "SHOW TOPIC DETAILS 'no_such_topic_here'");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("'no_such_topic_here' does not exist")
    );
}

#[test]
fn metrics_show_each_partition_s_lag_and_each_operator_s_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("lagged", 2);
    let server = Server::spawn(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = server.http.clone().unwrap();
    server.sql(&format!(
        "CREATE STREAM lagged AS SELECT symbol, qty FROM trades WHERE qty > 0 WITH (
           'trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{}',
           'trades.topic' = '{input}', 'trades.group.id' = '{input}-lag',
           'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT',
           'trades.kafka.session.timeout.ms' = '6000',
           'lagged.type' = 'file_sink', 'lagged.path' = 'lagged/')",
        bootstrap()
    ));
    produce_trades(&input, json_value, b"");
    // Once every message is read, both partitions are 0 behind, and every row went
    // through the source and the filter.
    let source_out = format!("{ROWS}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = http_get(&http, "/metrics").1;
        let lag = |p: i32| {
            format!(
                "ferris_job_consumer_lag{{job=\"lagged\",source=\"trades\",partition=\"{p}\"}} 0"
            )
        };
        let caught_up = metrics.contains(&lag(0)) && metrics.contains(&lag(1));
        let operator_in = metrics.lines().any(|line| {
            line.starts_with("ferris_operator_records_in_total{job=\"lagged\"")
                && line.contains("operator=\"FilterExec\"")
                && line.ends_with(&format!(" {source_out}"))
        });
        if caught_up && operator_in {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // The source node gave out what the source read; none was malformed.
    assert!(
        metrics.lines().any(|line| line
            .starts_with("ferris_operator_records_out_total{job=\"lagged\"")
            && line.contains("operator=\"StreamingTableExec\"")
            && line.ends_with(&format!(" {source_out}"))),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferris_operator_errors_total{job=\"lagged\""),
        "{metrics}"
    );
    let status = server.sql("SHOW JOB STATUS 'lagged'");
    assert!(status.contains("trades[0]=0, trades[1]=0"), "{status}");
    assert!(status.contains("FilterExec in=2000"), "{status}");
    let jobs = server.sql("SHOW JOBS");
    assert!(jobs.contains("trades[0]=0, trades[1]=0"), "{jobs}");
    // Paused, the job reads nothing while the topic grows: its lag is what was added.
    let total_lag = || {
        http_get(&http, "/metrics")
            .1
            .lines()
            .filter(|line| line.starts_with("ferris_job_consumer_lag{job=\"lagged\""))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum::<i64>()
    };
    let wait_for_lag = |lag: i64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while total_lag() != lag {
            assert!(Instant::now() < deadline, "lag {} not {lag}", total_lag());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    server.sql("PAUSE JOB lagged");
    // Its reader ends the batch it waits for within an idle turn (200 ms), then holds.
    std::thread::sleep(Duration::from_secs(1));
    produce_trades(&input, json_value, b"");
    wait_for_lag(ROWS as i64);
    server.sql("RESUME JOB lagged");
    wait_for_lag(0);
}

/// `CREATE STREAM name AS` the minute bars of the Kafka topic `input` of JSON trades (event
/// time `ts`), with `options` more, into the folder `name/`.
fn bars_job(name: &str, input: &str, options: &str) -> String {
    format!(
        "CREATE STREAM {name} AS {BARS_QUERY} WITH (
           'trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{}',
           'trades.topic' = '{input}', 'trades.group.id' = '{input}-{name}',
           'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT',
           'trades.event.time.field' = 'ts', {options},
           '{name}.type' = 'file_sink', '{name}.path' = '{name}/')",
        bootstrap()
    )
}

/// The value of the Prometheus series `series` (its family and labels) in `metrics`.
fn metric(metrics: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| value.parse::<f64>().unwrap())
}

/// A job of two instances reports each: what its partitions gave it, its lag, its windows'
/// state and watermark, and its tasks' time, in `/metrics` and `SHOW JOB STATUS`.
#[test]
fn metrics_show_each_instance_of_a_parallel_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("instances", 4);
    let server = Server::spawn(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = server.http.clone().unwrap();
    server.sql(&bars_job(
        "split_bars",
        &input,
        "'trades.kafka.session.timeout.ms' = '6000',
         'trades.watermark.idle.timeout' = '200ms', 'parallelism' = '2'",
    ));
    produce_trades(&input, json_value, b"");
    let sample = |metrics: &str, family: &str, instance: usize| {
        let labels = format!("{{job=\"split_bars\",job_instance=\"{instance}\"}}");
        metric(metrics, &format!("{family}{labels}"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = http_get(&http, "/metrics").1;
        let read: Vec<f64> = (0..2)
            .filter_map(|i| sample(&metrics, "ferris_instance_records_in_total", i))
            .collect();
        // An instance has a watermark once each of its partitions gave a row or went idle
        // (200 ms after its reader started): maybe only after every row was read.
        let stamped = (0..2)
            .all(|i| sample(&metrics, "ferris_instance_watermark_delay_seconds", i).is_some());
        if read.iter().sum::<f64>() == ROWS as f64 && stamped {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Each instance reads two of the four partitions, holds windows of the symbols hashed
    // to it, and computed; neither has a third sibling.
    for i in 0..2 {
        let value = |family| {
            sample(&metrics, family, i).unwrap_or_else(|| panic!("{family}[{i}]: {metrics}"))
        };
        assert!(value("ferris_instance_records_in_total") > 0.0, "{metrics}");
        assert_eq!(value("ferris_instance_consumer_lag"), 0.0, "{metrics}");
        assert!(value("ferris_instance_state_bytes_peak") > 0.0, "{metrics}");
        assert!(
            value("ferris_instance_busy_seconds_total") > 0.0,
            "{metrics}"
        );
        assert!(
            value("ferris_instance_watermark_delay_seconds") > 0.0,
            "{metrics}"
        );
        value("ferris_instance_late_records_total");
    }
    assert_eq!(
        sample(&metrics, "ferris_instance_records_in_total", 2),
        None
    );
    let status = server.sql("SHOW JOB STATUS 'split_bars'");
    let number_after = |text: &str, key: &str| -> u64 {
        let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key}: {status}")) + key.len()..];
        let digits: String = rest
            .trim_start_matches([' ', '|'])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap_or_else(|_| panic!("{key}: {status}"))
    };
    let mut late = 0;
    for i in 0..2 {
        let row = status
            .lines()
            .find(|line| line.contains(&format!("| instance_{i} ")))
            .unwrap_or_else(|| panic!("instance_{i}: {status}"));
        assert!(row.contains("lag=0 "), "{status}");
        assert!(!row.contains("records_in=0 "), "{status}");
        late += number_after(row, "late_records=");
    }
    // The instances' late records are the job's.
    assert_eq!(late, number_after(&status, "| late_records "), "{status}");
    assert!(!status.contains("instance_2"), "{status}");
}

/// A backlog found after every partition was silent past the idle timeout (the source waited
/// for its consumer group, as after a member was killed; or was paused) comes in on time: a
/// partition short of its end offset is behind, not idle, and the watermark waits for it.
#[test]
fn a_backlog_found_after_a_long_silence_is_not_late() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("backlog", 2);
    // The same event times in both partitions, there before the job starts.
    let producer = producer();
    for (i, trade) in trades().iter().enumerate() {
        let value = json_value(trade);
        let partition = (i % 2) as i32;
        producer
            .send(
                BaseRecord::<str, [u8]>::to(&input)
                    .partition(partition)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let server = Server::spawn(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = server.http.clone().unwrap();
    // Idle after 1 ms: the wait for the group's assignment is far longer. Batches of 10 from
    // one partition at a time.
    server.sql(&bars_job(
        "backlog_bars",
        &input,
        "'trades.watermark.max_out_of_orderness' = '1s',
         'trades.watermark.idle.timeout' = '1ms', 'trades.batch.size' = '10'",
    ));
    let sample =
        |metrics: &str, family: &str| metric(metrics, &format!("{family}{{job=\"backlog_bars\"}}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let metrics = http_get(&http, "/metrics").1;
        if sample(&metrics, "ferris_job_records_in_total") == Some(ROWS as f64) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        sample(&metrics, "ferris_job_late_records_total"),
        Some(0.0),
        "{metrics}"
    );
}

/// `ROW_NUMBER() ... = 1` over a topic where orders are sent again: a table the server keeps,
/// one row per order id, the earliest by its time (a resend with an earlier time replaces it),
/// whichever of the job's two instances holds the order id.
#[test]
fn resent_orders_are_deduplicated_into_a_table_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("resent_orders", 3);
    let mut messages = Vec::new();
    let mut first = std::collections::BTreeMap::new();
    for i in 0..300_i64 {
        let id = format!("o{i:03}");
        let ts = 1_700_000_000_000 + i * 100;
        messages.push((id.clone(), i, ts));
        first.insert(id.clone(), (i, ts));
        // Every third order is resent later; every ninth with an earlier time, which wins.
        if i % 3 == 0 {
            let earlier = i % 9 == 0;
            let resent = if earlier { ts - 50 } else { ts + 5000 };
            messages.push((id.clone(), i + 1000, resent));
            if earlier {
                first.insert(id, (i + 1000, resent));
            }
        }
    }
    // Resends come after the first sends of every order.
    messages.sort_by_key(|(_, qty, _)| *qty >= 1000);
    produce(
        &input,
        messages.iter().map(|(id, qty, ts)| {
            let value = json!({ "order_id": id, "qty": qty, "ts": ts });
            (id.clone(), value.to_string().into_bytes())
        }),
    );
    let server = Server::spawn(dir.path(), &[]);
    server.sql(&format!(
        "CREATE TABLE first_orders AS
         SELECT order_id, qty, ts FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY ts) AS rn FROM orders
         ) WHERE rn = 1
         WITH ('orders.type' = 'kafka_source', 'orders.bootstrap.servers' = '{}',
               'orders.topic' = '{input}', 'orders.group.id' = '{input}-first',
               'orders.schema' = 'order_id VARCHAR, qty BIGINT, ts BIGINT',
               'orders.batch.size' = '7', 'parallelism' = '2')",
        bootstrap()
    ));
    let expected: Vec<Vec<String>> = first
        .iter()
        .map(|(id, (qty, ts))| vec![id.clone(), qty.to_string(), ts.to_string()])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let table = server.sql("SELECT order_id, qty, ts FROM first_orders ORDER BY order_id");
        let rows: Vec<Vec<String>> = table
            .lines()
            .filter(|line| line.starts_with("| o") && !line.starts_with("| order_id"))
            .map(|line| {
                line.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect();
        if rows == expected {
            break;
        }
        assert!(Instant::now() < deadline, "{table}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_topic_joined_to_a_table_writes_each_batch_s_rows_at_once_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let input = topic("enrich", 1);
    // Every symbol but GOOG has a sector.
    std::fs::write(
        dir.path().join("instruments.csv"),
        "symbol,sector\nAAPL,tech\nMSFT,tech\nNVDA,chips\nAMZN,retail\n",
    )
    .unwrap();
    let server = Server::spawn(dir.path(), &["--state-dir", "state"]);
    server.sql(&format!(
        "CREATE STREAM enriched AS
         SELECT t.symbol, i.sector, t.qty FROM trades t JOIN instruments i ON t.symbol = i.symbol
         WITH ('trades.type' = 'kafka_source', 'trades.bootstrap.servers' = '{}',
           'trades.topic' = '{input}', 'trades.group.id' = '{input}-enrich',
           'trades.kafka.session.timeout.ms' = '6000',
           'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT',
           'instruments.type' = 'file_source', 'instruments.path' = 'instruments.csv',
           'enriched.type' = 'file_sink', 'enriched.path' = 'enriched/',
           'checkpoint.interval' = '100ms', 'processing.guarantee' = 'exactly_once')",
        bootstrap()
    ));
    produce_trades(&input, json_value, b"");
    // Far fewer rows than a batch: they still come out, committed at the next checkpoints.
    let out = dir.path().join("enriched");
    let expected = ROWS / SYMBOLS.len() * 4;
    let lines = support::wait_for_part_lines(&out, expected);
    assert_eq!(lines.len(), expected);
    assert!(lines.iter().all(|l| !l.contains("GOOG")));
    assert!(
        lines.iter().any(|l| l.contains(r#""sector":"chips""#)),
        "{}",
        lines[0]
    );
    let status = server.sql("SHOW JOB STATUS 'enriched'");
    assert!(status.contains("LookupJoinExec"), "{status}");
    let checkpoint = status
        .lines()
        .find(|l| l.contains("| last_checkpoint "))
        .unwrap_or_default()
        .to_string();
    assert!(checkpoint.chars().any(|c| c.is_ascii_digit()), "{status}");
}

/// The options of a Kafka source `name` reading `topic` with columns `schema`.
fn kafka_source_options(name: &str, topic: &str, schema: &str) -> String {
    format!(
        "'{name}.type' = 'kafka_source', '{name}.bootstrap.servers' = '{}',
         '{name}.topic' = '{topic}', '{name}.schema' = '{schema}'",
        bootstrap()
    )
}

#[test]
fn an_interval_join_lets_rows_go_on_a_topic_of_one_partition_only() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |partitions: u32| {
        let (orders, payments) = (topic("iv_orders", partitions), topic("iv_payments", 1));
        let source = |name: &str, topic: &str, schema: &str| {
            let options = kafka_source_options(name, topic, schema);
            format!("{options}, '{name}.event.time.field' = 'ts'")
        };
        let output = ferris(
            dir.path(),
            &format!(
                "EXPLAIN SELECT o.id, p.paid FROM orders o JOIN payments p
                   ON o.id = p.order_id AND p.ts BETWEEN o.ts AND o.ts + INTERVAL '2' SECOND
                 WITH ({}, {})",
                source("orders", &orders, "id BIGINT, ts TIMESTAMP"),
                source(
                    "payments",
                    &payments,
                    "order_id BIGINT, ts TIMESTAMP, paid BIGINT"
                ),
            ),
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let one = plan(1);
    assert!(one.contains("keeps rows while right.ts - left.ts"), "{one}");
    // Partitions read side by side share no order: a lagging one's rows are not late.
    let two = plan(2);
    assert!(two.contains("StreamJoinExec"), "{two}");
    assert!(!two.contains("keeps rows while"), "{two}");
}

#[test]
fn two_topics_joined_write_each_pair_once_and_keep_their_rows_across_a_kill_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let (trades, sectors) = (topic("joined_trades", 3), topic("joined_sectors", 3));
    let source = |name: &str, topic: &str, schema: &str| {
        let options = kafka_source_options(name, topic, schema);
        format!(
            "{options}, '{name}.group.id' = '{topic}-join', '{name}.kafka.session.timeout.ms' = '6000'"
        )
    };
    let job = format!(
        "CREATE STREAM enriched AS
         SELECT t.symbol, s.sector, t.qty FROM trades t JOIN sectors s ON t.symbol = s.symbol
         WITH ({}, {},
           'enriched.type' = 'file_sink', 'enriched.path' = 'enriched/',
           'checkpoint.interval' = '100ms', 'processing.guarantee' = 'exactly_once')",
        source(
            "trades",
            &trades,
            "symbol VARCHAR, price DECIMAL(10,2), qty BIGINT, ts BIGINT"
        ),
        source("sectors", &sectors, "symbol VARCHAR, sector VARCHAR"),
    );
    let out = dir.path().join("enriched");
    let per_round = ROWS / SYMBOLS.len() * 4;
    {
        let server = Server::spawn(dir.path(), &["--state-dir", "state"]);
        server.sql(&job);
        // Trades first: each sector that comes later joins with the trades kept so far.
        produce_trades(&trades, json_value, b"");
        produce(
            &sectors,
            [
                ("AAPL", "tech"),
                ("MSFT", "tech"),
                ("NVDA", "chips"),
                ("AMZN", "retail"),
            ]
            .map(|(symbol, sector)| {
                let value = format!(r#"{{"symbol":"{symbol}","sector":"{sector}"}}"#);
                (symbol.to_string(), value.into_bytes())
            }),
        );
        support::wait_for_part_lines(&out, per_round);
        let status = server.sql("SHOW JOB STATUS 'enriched'");
        assert!(status.contains("StreamJoinExec"), "{status}");
        // Dropped: killed with SIGKILL. Its output is committed, so is a checkpoint with it.
    }
    // Started again, the job resumes from that checkpoint: the sectors are not read again,
    // the join's state has them. Rescaled to three instances, each takes the kept rows of
    // its key groups, and new trades join with them.
    let server = Server::spawn(dir.path(), &["--state-dir", "state"]);
    let altered = server.sql("ALTER JOB enriched SET PARALLELISM 3");
    assert!(altered.contains("RUNNING"), "{altered}");
    let status = server.sql("SHOW JOB STATUS 'enriched'");
    assert!(status.contains("instance_2"), "{status}");
    produce_trades(&trades, json_value, b"");
    let lines = support::wait_for_part_lines(&out, 2 * per_round);
    // Written once each: nothing doubled by the restart (give doubles time to show).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(support::sorted_part_lines(&out), lines);
    assert_eq!(lines.len(), 2 * per_round);
    assert!(lines.iter().all(|l| !l.contains("GOOG")));
    drop(server);
}

/// A LEFT interval join of two topics: each order with its payments within 2 s, and each order
/// without one once the payments' watermark says none can come, with `paid` null. Killed with
/// SIGKILL halfway and started again from its checkpoint: every row once, no order that was
/// paid written as unpaid (which rows were joined is in the checkpoint).
#[test]
fn a_left_interval_join_writes_unpaid_orders_once_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (orders, payments) = (topic("lj_orders", 1), topic("lj_payments", 1));
    let at = |ms: i64| {
        let time = chrono::DateTime::from_timestamp_millis(1_772_443_800_000 + ms).unwrap();
        time.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
    };
    // Order i at i s; paid 900 ms later per i % 4 (after 2.7 s: too late), unless i % 3 == 0.
    let order = |i: i64| (i.to_string(), json!({ "id": i, "ts": at(i * 1000) }));
    let payment = |i: i64| {
        let paid = json!({ "order_id": i, "ts": at(i * 1000 + (i % 4) * 900), "paid": 100 + i });
        (i.to_string(), paid)
    };
    // Each topic in time order: nothing late.
    let send = |topic: &str, mut rows: Vec<(String, Value)>| {
        rows.sort_by_key(|(_, v)| v["ts"].as_str().unwrap().to_string());
        produce(
            topic,
            rows.into_iter()
                .map(|(k, v)| (k, v.to_string().into_bytes())),
        );
    };
    let expected: Vec<(i64, Option<i64>)> = (0..40)
        .map(|i| (i, (i % 3 != 0 && i % 4 != 3).then_some(100 + i)))
        .collect();
    let source = |name: &str, topic: &str, schema: &str| {
        let options = kafka_source_options(name, topic, schema);
        format!(
            "{options}, '{name}.group.id' = '{topic}-left', '{name}.event.time.field' = 'ts',
             '{name}.kafka.session.timeout.ms' = '6000'"
        )
    };
    let job = format!(
        "CREATE STREAM paid_or_not AS
         SELECT o.id, p.paid FROM orders o LEFT JOIN payments p
           ON o.id = p.order_id AND p.ts BETWEEN o.ts AND o.ts + INTERVAL '2' SECOND
         WITH ({}, {},
           'paid_or_not.type' = 'file_sink', 'paid_or_not.path' = 'out/',
           'checkpoint.interval' = '100ms', 'processing.guarantee' = 'exactly_once')",
        source("orders", &orders, "id BIGINT, ts TIMESTAMP"),
        source(
            "payments",
            &payments,
            "order_id BIGINT, ts TIMESTAMP, paid BIGINT"
        ),
    );
    let out = dir.path().join("out");
    let written = || -> Vec<(i64, Option<i64>)> {
        let mut rows: Vec<(i64, Option<i64>)> = support::sorted_part_lines(&out)
            .iter()
            .map(|line| {
                let row: Value = serde_json::from_str(line).unwrap();
                (row["id"].as_i64().unwrap(), row["paid"].as_i64())
            })
            .collect();
        rows.sort();
        rows
    };
    let paid = |i: &i64| i % 3 != 0;
    // Payments before 20 s go in the first run, the rest in the second: in time order.
    let early = |p: &(String, Value)| p.1["ts"].as_str().unwrap() < at(20_000).as_str();
    {
        let server = Server::spawn(dir.path(), &["--state-dir", "state"]);
        server.sql(&job);
        send(&orders, (0..20).map(order).collect());
        send(
            &payments,
            (0..40).filter(paid).map(payment).filter(early).collect(),
        );
        // The payments' watermark is past 14.7 s: orders up to 12 s are decided.
        support::wait_for_part_lines(&out, 10);
        let status = server.sql("SHOW JOB STATUS 'paid_or_not'");
        assert!(status.contains("StreamJoinExec"), "{status}");
        // Dropped: killed with SIGKILL.
    }
    let server = Server::spawn(dir.path(), &["--state-dir", "state"]);
    send(&orders, (20..40).map(order).collect());
    let late = |p: &(String, Value)| !early(p);
    send(
        &payments,
        (0..40).filter(paid).map(payment).filter(late).collect(),
    );
    // An order and its payment far later move both watermarks past every order above.
    send(&orders, vec![order(1000)]);
    send(&payments, vec![payment(1000)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while written().len() < expected.len() + 1 {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            written(),
            server.sql("SHOW JOB STATUS 'paid_or_not'")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing more, nothing twice (give doubles time to show).
    std::thread::sleep(Duration::from_secs(1));
    let rows = written();
    let without_closer: Vec<_> = rows.iter().filter(|(i, _)| *i != 1000).cloned().collect();
    assert_eq!(without_closer, expected, "{rows:?}");
    drop(server);
}
