//! A cluster of real `ferris server` processes on loopback, coordinated by a real etcd
//! (built by scripts/etcd.sh): nodes register, jobs spread, a node killed with SIGKILL or
//! cut off from etcd loses its jobs to the others with nothing lost and nothing twice, a
//! node that joins takes jobs over, one stopped with SIGTERM hands its jobs over first, and
//! the cluster rides out an etcd restart.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

/// How long a node stays registered without a heartbeat, in these tests.
const LEASE_TTL: &str = "3";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The etcd server binary: `FERRIS_ETCD` (scripts/test.sh sets it), else built once by
/// scripts/etcd.sh.
fn etcd_binary() -> PathBuf {
    if let Ok(path) = std::env::var("FERRIS_ETCD") {
        return path.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("bash")
        .arg(root.join("scripts/etcd.sh"))
        .arg("install")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/etcd.sh install: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().into()
}

/// A single-node etcd on free ports, its data in a folder of the test.
struct Etcd {
    child: Child,
    port: u16,
    peer: u16,
    data: PathBuf,
}

impl Etcd {
    fn start(dir: &Path) -> Self {
        let (port, peer) = (free_port(), free_port());
        let data = dir.join("etcd");
        let child = Self::spawn(&data, port, peer);
        Self {
            child,
            port,
            peer,
            data,
        }
    }

    fn spawn(data: &Path, port: u16, peer: u16) -> Child {
        let client = format!("http://127.0.0.1:{port}");
        let peers = format!("http://127.0.0.1:{peer}");
        let child = Command::new(etcd_binary())
            .args(["--name", "test", "--data-dir"])
            .arg(data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peers,
                "--initial-advertise-peer-urls",
                &peers,
            ])
            .args(["--initial-cluster", &format!("test={peers}")])
            .args(["--heartbeat-interval", "50", "--election-timeout", "250"])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("etcd answers", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        child
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }

    /// Kills it and starts it again on its data: a restart under a running cluster.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(&self.data, self.port, self.peer);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `ferris server` node, its log in `<id>.log` of the test's folder.
struct Node {
    id: String,
    child: Child,
    port: String,
    log: PathBuf,
}

impl Node {
    fn start(dir: &Path, id: &str, etcd: &str) -> Self {
        let log = dir.join(format!("{id}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["server", "--flight", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--cluster", etcd, "--node-id", id, "--state-dir", "state"])
            .args(["--slots", "4", "--lease-ttl", LEASE_TTL])
            .current_dir(dir)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut port = String::new();
        wait_until(&format!("{id} listens"), Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap();
            match text.lines().find(|l| l.contains("Flight SQL listening on")) {
                Some(line) => {
                    port = line.rsplit(':').next().unwrap().trim().to_string();
                    true
                }
                None => false,
            }
        });
        Self {
            id: id.to_string(),
            child,
            port,
            log,
        }
    }

    /// Runs `sql` on this node through `ferris-flight`: its table, or its error.
    fn sql(&self, sql: &str) -> Result<String, String> {
        let output = Command::new(env!("CARGO_BIN_EXE_ferris-flight"))
            .args(["--port", &self.port, "-e", sql])
            .output()
            .unwrap();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, as Kubernetes stops a pod; waits for the process to end.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The cells of a `ferris-flight` table, a map per row by column name.
fn rows(table: &str) -> Vec<BTreeMap<String, String>> {
    let lines: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
    let Some((header, body)) = lines.split_first() else {
        return vec![];
    };
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let names = cells(header);
    body.iter()
        .map(|line| names.iter().cloned().zip(cells(line)).collect())
        .collect()
}

/// Each job's node, if every job of a `SHOW JOBS` table runs.
fn running_nodes(table: &str) -> Option<BTreeMap<String, String>> {
    let jobs = rows(table);
    jobs.iter().all(|j| j["status"] == "RUNNING").then(|| {
        jobs.iter()
            .map(|j| (j["name"].clone(), j["node"].clone()))
            .collect()
    })
}

/// Waits (30 s at most) until every job runs and their nodes satisfy `done`; their nodes.
/// A timeout says what `SHOW JOBS` said last.
fn wait_for_placement(
    node: &Node,
    what: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = node.sql("SHOW JOBS");
        if let Some(placed) = listed.as_deref().ok().and_then(running_nodes)
            && done(&placed)
        {
            return placed;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; SHOW JOBS on {} said:\n{}",
            node.id,
            listed.unwrap_or_else(|e| e)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn jobs_per_node(placement: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in placement.values() {
        *counts.entry(node.clone()).or_default() += 1;
    }
    counts
}

/// The tests' jobs: `j1`, `j2`, ... each reading a watched folder `in/k/` into a folder
/// `out/jk/`, except one that reads a Kafka topic into another (exactly once, through
/// transactions) when `kafka` names the two.
struct Jobs {
    count: usize,
    /// The Kafka job's number and its input and output topics.
    kafka: Option<(usize, String, String)>,
}

impl Jobs {
    fn files(count: usize) -> Self {
        Self { count, kafka: None }
    }

    /// `count` jobs, the last one from Kafka to Kafka.
    fn with_kafka(count: usize) -> Self {
        let input = support::topic("cluster_in", 3);
        let output = support::topic("cluster_out", 1);
        Self {
            count,
            kafka: Some((count, input, output)),
        }
    }

    fn sql(&self, k: usize) -> String {
        match &self.kafka {
            // A dead node's consumer leaves the group after its session times out: 6s.
            Some((kafka, input, output)) if *kafka == k => format!(
                "CREATE STREAM j{k} AS SELECT id, symbol, price FROM src{k}
                 WITH ('src{k}.type' = 'kafka_source', 'src{k}.bootstrap.servers' = '{0}',
                       'src{k}.topic' = '{input}', 'src{k}.format' = 'json',
                       'src{k}.schema' = 'id BIGINT, symbol VARCHAR, price DECIMAL(12,2)',
                       'src{k}.kafka.session.timeout.ms' = '6000',
                       'src{k}.kafka.heartbeat.interval.ms' = '500',
                       'j{k}.type' = 'kafka_sink', 'j{k}.bootstrap.servers' = '{0}',
                       'j{k}.topic' = '{output}', 'checkpoint.interval' = '100ms')",
                support::bootstrap()
            ),
            _ => format!(
                "CREATE STREAM j{k} AS SELECT id, symbol, price FROM src{k}
                 WITH ('src{k}.type' = 'file_source', 'src{k}.path' = 'in/{k}/', 'src{k}.format' = 'csv',
                       'src{k}.schema' = 'id BIGINT, symbol VARCHAR, price DECIMAL(12,2)',
                       'src{k}.watch' = 'true', 'src{k}.watch.interval' = '20ms',
                       'j{k}.type' = 'file_sink', 'j{k}.path' = 'out/j{k}/',
                       'checkpoint.interval' = '100ms')"
            ),
        }
    }

    /// Writes batch `b` (ids `b*100 .. b*100+50`) into every job's input.
    fn write_batch(&self, dir: &Path, b: usize) {
        let ids = b * 100..b * 100 + 50;
        for k in 1..=self.count {
            if let Some((kafka, input, _)) = &self.kafka
                && *kafka == k
            {
                support::produce(
                    input,
                    ids.clone().map(|id| {
                        let row = format!(
                            r#"{{"id":{id},"symbol":"S{}","price":{id}.{:02}}}"#,
                            id % 7,
                            id % 100
                        );
                        (format!("S{}", id % 7), row.into_bytes())
                    }),
                );
                continue;
            }
            let folder = dir.join(format!("in/{k}"));
            std::fs::create_dir_all(&folder).unwrap();
            let mut csv = String::from("id,symbol,price\n");
            for id in ids.clone() {
                csv.push_str(&format!("{id},S{},{}.{:02}\n", id % 7, id, id % 100));
            }
            // Whole files only: written aside, then renamed in.
            let aside = dir.join(format!("in/.{k}-{b}.tmp"));
            std::fs::write(&aside, csv).unwrap();
            std::fs::rename(&aside, folder.join(format!("{b}.csv"))).unwrap();
        }
    }

    /// The ids in job `k`'s committed output (a folder's part files, or the messages a
    /// `read_committed` consumer sees), sorted, duplicates kept.
    fn output_ids(&self, dir: &Path, k: usize) -> Vec<u64> {
        let mut lines = Vec::new();
        match &self.kafka {
            Some((kafka, _, output)) if *kafka == k => {
                for (_, value, _) in support::consume_all(output) {
                    lines.push(String::from_utf8(value.unwrap()).unwrap());
                }
            }
            _ => {
                let Ok(entries) = std::fs::read_dir(dir.join(format!("out/j{k}"))) else {
                    return vec![];
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                        let text = std::fs::read_to_string(&path).unwrap();
                        lines.extend(text.lines().map(str::to_string));
                    }
                }
            }
        }
        let mut ids: Vec<u64> = lines
            .iter()
            .map(|line| {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                row["id"].as_u64().unwrap()
            })
            .collect();
        ids.sort();
        ids
    }

    /// Waits until every job wrote each row of batches `0..batches` exactly once.
    fn wait_for_exact_output(&self, dir: &Path, batches: usize) {
        let expected: Vec<u64> = (0..batches)
            .flat_map(|b| (b * 100..b * 100 + 50).map(|id| id as u64))
            .collect();
        for k in 1..=self.count {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ids = self.output_ids(dir, k);
                if ids.len() >= expected.len() {
                    assert_eq!(ids, expected, "job j{k}: every row once, none twice");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "job j{k}: {} of {} rows",
                    ids.len(),
                    expected.len()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn nodes_share_jobs_and_take_over_from_a_killed_a_joining_and_a_leaving_node() {
    let dir = tempfile::tempdir().unwrap().keep();
    eprintln!("DIR {}", dir.display());
    let dir = dir.as_path();
    let etcd = Etcd::start(dir);
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(dir, id, &etcd.url()))
        .collect();
    for node in &nodes {
        wait_until(
            "every node lists three nodes",
            Duration::from_secs(20),
            || {
                let listed: Vec<String> = rows(&node.sql("SHOW NODES").unwrap_or_default())
                    .into_iter()
                    .map(|n| n["id"].clone())
                    .collect();
                listed == ["n1", "n2", "n3"]
            },
        );
    }
    let leaders = rows(&nodes[1].sql("SHOW NODES").unwrap())
        .iter()
        .filter(|n| n["leader"] == "true")
        .count();
    assert_eq!(leaders, 1);

    // Six jobs deployed through one node spread two a node.
    let jobs = Jobs::with_kafka(6);
    let file = dir.join("jobs.sql");
    let statements: Vec<String> = (1..=jobs.count).map(|k| jobs.sql(k)).collect();
    std::fs::write(&file, statements.join(";\n") + ";\n").unwrap();
    let deployed = Command::new(env!("CARGO_BIN_EXE_ferris"))
        .args(["deploy", "jobs.sql", "--server"])
        .arg(format!("127.0.0.1:{}", nodes[0].port))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert!(String::from_utf8_lossy(&deployed.stdout).contains("SUBMITTED"));
    let mut placed = wait_for_placement(&nodes[2], "six jobs run, two a node", |p| {
        p.len() == jobs.count && jobs_per_node(p).values().all(|n| *n == 2)
    });
    // Every node answers SHOW alike.
    let streams = nodes[0].sql("SHOW STREAMS").unwrap();
    assert_eq!(nodes[1].sql("SHOW STREAMS").unwrap(), streams);
    assert!(streams.contains("| j6 "), "{streams}");
    jobs.write_batch(dir, 0);
    jobs.wait_for_exact_output(dir, 1);

    // kill -9 of a node (the one running the Kafka job, unless that is n1, which the test
    // asks): its jobs start on the others from their last checkpoints.
    let kafka_node = placed[&format!("j{}", jobs.count)].clone();
    let victim = nodes[1..]
        .iter()
        .position(|n| n.id == kafka_node)
        .map_or(1, |i| i + 1);
    let mut killed = nodes.remove(victim);
    let killed_id = killed.id.clone();
    jobs.write_batch(dir, 1);
    killed.kill();
    let crashed = Instant::now();
    placed = wait_for_placement(&nodes[0], "the killed node's jobs run elsewhere", |p| {
        p.len() == jobs.count && !p.values().any(|n| *n == killed_id)
    });
    eprintln!("failover: {:?}", crashed.elapsed());
    jobs.write_batch(dir, 2);
    jobs.wait_for_exact_output(dir, 3);
    let status = nodes[0]
        .sql(&format!(
            "SHOW JOB STATUS '{}'",
            placed
                .iter()
                .find(|(job, _)| {
                    let history = nodes[0].sql(&format!("SHOW JOB STATUS '{job}'")).unwrap();
                    history.contains(&format!("node {killed_id} left"))
                })
                .expect("a job says it moved because its node left")
                .0
        ))
        .unwrap();
    assert!(status.contains("placement_1"), "{status}");
    assert!(status.contains("cpu_seconds"), "{status}");

    // A fourth node joins: a job moves onto it (a checkpoint there, a restore here).
    nodes.push(Node::start(dir, "n4", &etcd.url()));
    let joined = Instant::now();
    wait_for_placement(&nodes[0], "a job runs on the new node", |p| {
        p.len() == jobs.count && p.values().any(|n| n == "n4")
    });
    eprintln!("rebalance onto a new node: {:?}", joined.elapsed());
    jobs.write_batch(dir, 3);
    jobs.wait_for_exact_output(dir, 4);

    // A node stopped with SIGTERM hands its jobs over before it goes.
    let mut leaving = nodes.remove(1);
    assert_ne!(leaving.id, "n4");
    jobs.write_batch(dir, 4);
    let status = leaving.terminate();
    assert!(status.success(), "{status:?}: {}", leaving.log());
    assert!(leaving.log().contains("draining"), "{}", leaving.log());
    let leaving_id = leaving.id.clone();
    placed = wait_for_placement(&nodes[0], "the jobs run on n1 and n4", |p| {
        p.len() == jobs.count && p.values().all(|n| n == "n1" || n == "n4")
    });
    let drained = placed.keys().any(|job| {
        let status = nodes[0].sql(&format!("SHOW JOB STATUS '{job}'")).unwrap();
        status.contains(&format!("node {leaving_id} is draining"))
    });
    assert!(drained, "a job moved because its node was draining");
    jobs.write_batch(dir, 5);
    jobs.wait_for_exact_output(dir, 6);

    let on_n4 = rows(&nodes[1].sql("SHOW JOBS ON NODE 'n4'").unwrap());
    assert!(!on_n4.is_empty() && on_n4.iter().all(|j| j["node"] == "n4"));
    let error = nodes[0].sql("SHOW JOBS ON NODE 'nope'").unwrap_err();
    assert!(
        error.contains("no node 'nope' (the nodes: n1, n4)"),
        "{error}"
    );
}

/// A TCP relay between one node and etcd that the test can cut: a network partition.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn to(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_cut, open) = (cut.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut open = open.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16384];
                        while let Ok(n @ 1..) = from.read(&mut buffer) {
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { port, cut, streams }
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn jobs_ride_out_an_etcd_restart_and_a_node_cut_off_from_etcd_stops_its_jobs_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut etcd = Etcd::start(dir);
    let relay = Relay::to(etcd.port);
    let n1 = Node::start(dir, "n1", &etcd.url());
    let n2 = Node::start(dir, "n2", &relay.url());
    let jobs = Jobs::files(2);
    for k in 1..=jobs.count {
        assert!(n1.sql(&jobs.sql(k)).unwrap().contains("SUBMITTED"));
    }
    let placed = wait_for_placement(&n1, "a job a node", |p| {
        p.len() == jobs.count && jobs_per_node(p).len() == 2
    });
    jobs.write_batch(dir, 0);
    jobs.wait_for_exact_output(dir, 1);

    // etcd restarts: the jobs go on where they are, and the cluster has a leader again.
    etcd.restart();
    jobs.write_batch(dir, 1);
    jobs.wait_for_exact_output(dir, 2);
    wait_until(
        "a leader after the restart",
        Duration::from_secs(30),
        || {
            rows(&n1.sql("SHOW NODES").unwrap_or_default())
                .iter()
                .any(|n| n["leader"] == "true")
        },
    );
    let now = wait_for_placement(&n1, "every job runs after the restart", |_| true);
    assert_eq!(now, placed, "nothing moved");

    // n2 is cut off from etcd: it stops its job itself, and n1 takes it over.
    relay.cut();
    wait_until("n2 fences its job", Duration::from_secs(30), || {
        n2.log().contains("this node lost its etcd lease")
    });
    wait_for_placement(&n1, "both jobs run on n1", |p| {
        p.len() == jobs.count && p.values().all(|n| n == "n1")
    });
    jobs.write_batch(dir, 2);
    jobs.wait_for_exact_output(dir, 3);

    // Reconnected, n2 registers again and takes a job back, which runs there.
    relay.heal();
    wait_for_placement(&n1, "a job runs on n2 again", |p| {
        p.len() == jobs.count && jobs_per_node(p).len() == 2
    });
    assert!(n2.log().contains("registered again"), "{}", n2.log());
    jobs.write_batch(dir, 3);
    jobs.wait_for_exact_output(dir, 4);
}

#[test]
fn a_node_without_etcd_or_a_state_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ferris = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args(["server", "--flight", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let closed = free_port();
    let url = format!("etcd://127.0.0.1:{closed}");
    let error = ferris(&["--cluster", &url, "--state-dir", "state"]);
    assert!(
        error.contains(&format!("cannot reach etcd at 127.0.0.1:{closed}")),
        "{error}"
    );
    let error = ferris(&["--cluster", &url]);
    assert!(error.contains("--cluster needs --state-dir"), "{error}");
    let error = ferris(&["--cluster", "http://127.0.0.1:2379", "--state-dir", "s"]);
    assert!(
        error.contains("expected etcd://HOST:PORT[,HOST:PORT...]"),
        "{error}"
    );
}

/// Two clusters named in the etcd URL (`etcd://.../NAME`) share the etcd and nothing else:
/// each lists its own nodes and jobs only, and places its jobs on its own nodes.
#[test]
fn named_clusters_share_an_etcd_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let etcd = Etcd::start(dir);
    let trading = Node::start(dir, "t1", &format!("{}/trading", etcd.url()));
    let analytics = Node::start(dir, "a1", &format!("{}/analytics", etcd.url()));
    let jobs = Jobs::files(1);
    assert!(trading.sql(&jobs.sql(1)).unwrap().contains("SUBMITTED"));
    wait_until("j1 runs in its cluster", Duration::from_secs(30), || {
        statuses(&trading).get("j1").map(String::as_str) == Some("RUNNING")
    });
    let nodes = |node: &Node| -> Vec<String> {
        rows(&node.sql("SHOW NODES").unwrap())
            .into_iter()
            .map(|n| n["id"].clone())
            .collect()
    };
    assert_eq!(nodes(&trading), ["t1"]);
    assert_eq!(nodes(&analytics), ["a1"]);
    assert!(statuses(&analytics).is_empty());
    // The same name is free in the other cluster.
    assert!(analytics.sql(&jobs.sql(1)).unwrap().contains("SUBMITTED"));
}

/// The status of each job, as `SHOW JOBS` on `node` says.
fn statuses(node: &Node) -> BTreeMap<String, String> {
    rows(&node.sql("SHOW JOBS").unwrap_or_default())
        .into_iter()
        .map(|j| (j["name"].clone(), j["status"].clone()))
        .collect()
}

#[test]
fn job_commands_and_drop_sent_to_any_node_act_where_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let etcd = Etcd::start(dir);
    let n1 = Node::start(dir, "n1", &etcd.url());
    let n2 = Node::start(dir, "n2", &etcd.url());
    let jobs = Jobs::files(1);
    assert!(n2.sql(&jobs.sql(1)).unwrap().contains("SUBMITTED"));
    let status_is = |node: &Node, status: &str| {
        wait_until(&format!("j1 is {status}"), Duration::from_secs(30), || {
            statuses(node).get("j1").map(String::as_str) == Some(status)
        })
    };
    status_is(&n1, "RUNNING");
    jobs.write_batch(dir, 0);
    jobs.wait_for_exact_output(dir, 1);
    let error = n1.sql(&jobs.sql(1)).unwrap_err();
    assert!(
        error.contains("a job 'j1' exists in the cluster already"),
        "{error}"
    );
    // Checkpoints only this node could read would keep the job from moving.
    let local = jobs.sql(1).replace("j1", "j9").replace(
        "'checkpoint.interval'",
        "'checkpoint.dir' = '/tmp/ferris-not-shared', 'checkpoint.interval'",
    );
    let error = n1.sql(&local).unwrap_err();
    assert!(
        error.contains("keeps its checkpoints where other nodes of the cluster cannot read them (/tmp/ferris-not-shared)"),
        "{error}"
    );
    // Output kept by one node's server would not be readable from the others.
    let unsunk = jobs
        .sql(1)
        .replace("j1", "j8")
        .replace("'j8.type' = 'file_sink', 'j8.path' = 'out/j8/',", "");
    let error = n1.sql(&unsunk).unwrap_err();
    assert!(
        error.contains(
            "'j8' has no sink (in a cluster, the other nodes read a job's output from its sink)"
        ),
        "{error}"
    );

    // Stopped at a checkpoint, through either node; started again, it goes on from there.
    assert!(n1.sql("STOP JOB j1").unwrap().contains("STOPPING"));
    status_is(&n2, "STOPPED");
    jobs.write_batch(dir, 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        jobs.output_ids(dir, 1).len(),
        50,
        "a stopped job reads nothing"
    );
    n2.sql("START JOB j1").unwrap();
    status_is(&n1, "RUNNING");
    jobs.wait_for_exact_output(dir, 2);
    n1.sql("PAUSE JOB j1").unwrap();
    status_is(&n2, "PAUSED");
    n2.sql("RESUME JOB j1").unwrap();
    status_is(&n1, "RUNNING");

    // At another parallelism, through either node: its node stops it at a checkpoint and
    // starts it again as two instances, going on from there.
    let altered = n2.sql("ALTER JOB j1 SET PARALLELISM 2").unwrap();
    assert!(altered.contains("RESTARTING"), "{altered}");
    wait_until("j1 runs as two instances", Duration::from_secs(30), || {
        [&n1, &n2].iter().any(|node| {
            let status = node.sql("SHOW JOB STATUS 'j1'").unwrap_or_default();
            status.contains("instance_1") && status.contains("RUNNING")
        })
    });
    jobs.write_batch(dir, 2);
    jobs.wait_for_exact_output(dir, 3);
    // A stopped job altered starts at the new parallelism, as on a lone server.
    n1.sql("STOP JOB j1").unwrap();
    status_is(&n2, "STOPPED");
    assert!(
        n1.sql("ALTER JOB j1 SET PARALLELISM 1")
            .unwrap()
            .contains("RESTARTING")
    );
    status_is(&n2, "RUNNING");
    jobs.write_batch(dir, 3);
    jobs.wait_for_exact_output(dir, 4);
    let error = n1.sql("ALTER JOB nope SET PARALLELISM 2").unwrap_err();
    assert!(error.contains("no job 'nope'"), "{error}");

    // Dropped: stopped where it runs, its checkpoints deleted, forgotten by every node.
    assert!(n1.sql("DROP STREAM j1").unwrap().contains("DROPPED"));
    assert!(!dir.join("state/j1").exists(), "its checkpoints are gone");
    for node in [&n1, &n2] {
        wait_until("every node forgets j1", Duration::from_secs(10), || {
            let streams = node.sql("SHOW STREAMS").unwrap();
            statuses(node).is_empty() && !streams.contains("| j1 ")
        });
    }
    // A job of that name again starts afresh.
    assert!(n1.sql(&jobs.sql(1)).unwrap().contains("SUBMITTED"));
    status_is(&n2, "RUNNING");
}

/// A function created through one node is every node's: a query sent to another calls it,
/// a node that joins later has it, a job placed on any node calls it, and DROP FUNCTION
/// through any node forgets it everywhere.
#[test]
fn functions_created_through_one_node_are_every_node_s() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let etcd = Etcd::start(dir);
    let n1 = Node::start(dir, "n1", &etcd.url());
    let n2 = Node::start(dir, "n2", &etcd.url());
    let created = n1
        .sql("CREATE FUNCTION doubled(x BIGINT) RETURNS BIGINT AS 'x * 2'")
        .unwrap();
    assert!(created.contains("CREATED"), "{created}");
    let created = n2
        .sql("CREATE AGGREGATE FUNCTION total(x BIGINT) RETURNS BIGINT LANGUAGE python AS 'def total(x): return sum(x.to_pylist())'")
        .unwrap();
    assert!(created.contains("CREATED"), "{created}");
    let n3 = Node::start(dir, "n3", &etcd.url());
    let call = "SELECT doubled(total(x)) AS t FROM (VALUES (1), (2), (4)) AS v(x)";
    for node in [&n1, &n2, &n3] {
        wait_until(
            "every node has both functions",
            Duration::from_secs(20),
            || node.sql(call).is_ok_and(|out| out.contains("| 14 |")),
        );
    }
    let jobs = Jobs::files(1);
    let job = jobs.sql(1).replace(
        "SELECT id, symbol, price",
        "SELECT id, symbol, price, doubled(id) AS twice",
    );
    assert!(n3.sql(&job).unwrap().contains("SUBMITTED"));
    jobs.write_batch(dir, 0);
    wait_until(
        "the job calls the function",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(dir.join("out/j1")).is_ok_and(|files| {
                files.flatten().any(|file| {
                    std::fs::read_to_string(file.path()).is_ok_and(|t| t.contains("\"twice\":98"))
                })
            })
        },
    );
    assert!(n3.sql("DROP FUNCTION total").unwrap().contains("DROPPED"));
    for node in [&n1, &n2, &n3] {
        wait_until("every node forgets total", Duration::from_secs(20), || {
            node.sql(call).is_err_and(|e| e.contains("total"))
        });
    }
}

/// A job of two instances whose Kafka input is not keyed by its GROUP BY key: the leader
/// places an instance on each node, their rows crossing between the nodes through the job's
/// repartition topic. When one node is killed with SIGKILL, its instance moves to the other,
/// resuming from its checkpoint, and the output topic holds each bar exactly once.
#[test]
fn a_parallel_job_runs_an_instance_on_each_node_and_one_moves_when_its_node_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let etcd = Etcd::start(dir);
    let n1 = Node::start(dir, "n1", &etcd.url());
    let mut n2 = Node::start(dir, "n2", &etcd.url());
    let input = support::topic("apart_in", 6);
    let output = support::topic("apart_out", 1);
    // The job's name names its repartition topic: one of this run's.
    let job = output.replace("apart_out", "apart");
    assert!(
        n1.sql(&bars_job(&job, &input, &output))
            .unwrap()
            .contains("SUBMITTED")
    );
    let on_both = wait_for_placement(&n1, "an instance runs on each node", |placed| {
        placed
            .get(&job)
            .is_some_and(|nodes| nodes == "n1,n2" || nodes == "n2,n1")
    });
    assert_eq!(on_both.len(), 1);

    const ROWS: i64 = 30_000;
    support::produce(&input, (0..ROWS / 2).map(trade));
    wait_until(
        "the first bars are written",
        Duration::from_secs(60),
        || !support::consume_all(&output).is_empty(),
    );
    n2.kill();
    support::produce(&input, (ROWS / 2..ROWS).map(trade));
    close_every_window(&input, ROWS);
    wait_for_placement(&n1, "both instances run on n1", |placed| {
        placed.get(&job).is_some_and(|nodes| nodes == "n1")
    });

    expect_bars_once(&output, ROWS, &n1);
    let status = n1.sql(&format!("SHOW JOB STATUS '{job}'")).unwrap();
    assert!(status.contains(": node n2 left"), "{status}");
    assert!(
        n1.log().contains("resumes from checkpoint"),
        "the moved instance resumed: {}",
        n1.log()
    );

    // Dropped, it takes its repartition topic along with its checkpoints.
    let repartition = format!("{job}-repartition-0");
    let topics = || -> Vec<String> {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", support::bootstrap())
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    };
    assert!(topics().contains(&repartition));
    assert!(
        n1.sql(&format!("DROP STREAM {job}"))
            .unwrap()
            .contains("DROPPED")
    );
    wait_until(
        "the repartition topic is gone",
        Duration::from_secs(30),
        || !topics().contains(&repartition),
    );
}

/// Bars per symbol over 10 s of the JSON trades in topic `input`, written to topic `output`
/// by job `job`: two instances apart, the input not keyed by the GROUP BY key.
fn bars_job(job: &str, input: &str, output: &str) -> String {
    format!(
        "CREATE STREAM {job} AS
         SELECT symbol, _window_start AS window_start, COUNT(*) AS trades, SUM(qty) AS qty
         FROM src GROUP BY symbol WINDOW TUMBLING(INTERVAL '10' SECOND) EMIT FINAL
         WITH ('src.type' = 'kafka_source', 'src.bootstrap.servers' = '{0}',
               'src.topic' = '{input}', 'src.format' = 'json',
               'src.schema' = 'ts BIGINT, symbol VARCHAR, qty BIGINT',
               'src.event.time.field' = 'ts', 'src.watermark.max_out_of_orderness' = '1s',
               '{job}.type' = 'kafka_sink', '{job}.bootstrap.servers' = '{0}',
               '{job}.topic' = '{output}',
               'parallelism' = '2', 'checkpoint.interval' = '100ms')",
        support::bootstrap()
    )
}

/// When trade `id` happened: 5 ms apart from `BASE_MS`.
const BASE_MS: i64 = 1_700_000_000_000;

/// Trade `id` for [`bars_job`], keyed by its number (spread over the topic's partitions).
fn trade(id: i64) -> (String, Vec<u8>) {
    let json = format!(
        r#"{{"ts":{},"symbol":"S{}","qty":{}}}"#,
        BASE_MS + id * 5,
        id % 7,
        id % 9 + 1
    );
    (id.to_string(), json.into_bytes())
}

/// A row an hour after trade `rows` in every partition of `input`: every window closes.
fn close_every_window(input: &str, rows: i64) {
    support::produce(
        input,
        (0..60).map(|k| {
            let json = format!(
                r#"{{"ts":{},"symbol":"close","qty":0}}"#,
                BASE_MS + rows * 5 + 3_600_000
            );
            (format!("close-{k}"), json.into_bytes())
        }),
    );
}

/// Waits until topic `output` holds the bars of trades `0..rows`, each once and nothing
/// else (90 s at most, then `node`'s log tells why).
fn expect_bars_once(output: &str, rows: i64, node: &Node) {
    let mut expected: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for id in 0..rows {
        let start = (BASE_MS + id * 5).div_euclid(10_000) * 10_000;
        let start = chrono::DateTime::from_timestamp_millis(start).unwrap();
        let bar = expected
            .entry((
                format!("S{}", id % 7),
                start.format("%Y-%m-%dT%H:%M:%S").to_string(),
            ))
            .or_default();
        bar.0 += 1;
        bar.1 += (id % 9 + 1) as u64;
    }
    let written = || -> Vec<((String, String), (u64, u64))> {
        let mut bars: Vec<_> = support::consume_all(output)
            .into_iter()
            .map(|(_, value, _)| {
                let bar: serde_json::Value = serde_json::from_slice(&value.unwrap()).unwrap();
                (
                    (
                        bar["symbol"].as_str().unwrap().to_string(),
                        bar["window_start"].as_str().unwrap().to_string(),
                    ),
                    (
                        bar["trades"].as_u64().unwrap(),
                        bar["qty"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        bars.sort();
        bars
    };
    let expected: Vec<_> = expected.into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let bars = written();
        if bars.len() >= expected.len() {
            assert_eq!(bars, expected, "every bar once, none twice");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} bars written, not {:?}; the node logged:\n{}",
            bars.len(),
            expected.len(),
            expected
                .iter()
                .filter(|bar| !bars.contains(bar))
                .collect::<Vec<_>>(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing more comes: no bar twice.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(written(), expected, "every bar once, none twice");
}

/// The same job, its instances apart on two nodes, changes its parallelism twice while
/// trades come: 2 -> 3 -> 2. Each change drains the instances (everything in flight
/// between them taken in, windows left open), and the next instances take up their key
/// groups and partitions: the output holds each bar once, as an unchanged run writes it.
#[test]
fn a_job_whose_instances_run_apart_changes_its_parallelism_while_it_runs_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let etcd = Etcd::start(dir);
    let n1 = Node::start(dir, "n1", &etcd.url());
    let n2 = Node::start(dir, "n2", &etcd.url());
    let input = support::topic("rescaled_in", 6);
    let output = support::topic("rescaled_out", 1);
    let job = output.replace("rescaled_out", "rescaled");
    assert!(
        n1.sql(&bars_job(&job, &input, &output))
            .unwrap()
            .contains("SUBMITTED")
    );
    let running = |count: usize| {
        wait_until(
            &format!("{count} instances run"),
            Duration::from_secs(60),
            // An apart job runs once each of its instances does.
            || statuses(&n1).get(&job).map(String::as_str) == Some("RUNNING"),
        )
    };
    const ROWS: i64 = 30_000;
    support::produce(&input, (0..ROWS / 3).map(trade));
    wait_until(
        "the first bars are written",
        Duration::from_secs(60),
        || !support::consume_all(&output).is_empty(),
    );
    for (parallelism, refused) in [
        (2, "runs as 2 instances already"),
        (1, "goes on at 2 or more"),
    ] {
        let error = n2
            .sql(&format!("ALTER JOB {job} SET PARALLELISM {parallelism}"))
            .unwrap_err();
        assert!(error.contains(refused), "{error}");
    }
    let altered = n2
        .sql(&format!("ALTER JOB {job} SET PARALLELISM 3"))
        .unwrap();
    assert!(altered.contains("RESTARTING"), "{altered}");
    support::produce(&input, (ROWS / 3..2 * ROWS / 3).map(trade));
    running(3);
    let altered = n1
        .sql(&format!("ALTER JOB {job} SET PARALLELISM 2"))
        .unwrap();
    assert!(altered.contains("RESTARTING"), "{altered}");
    support::produce(&input, (2 * ROWS / 3..ROWS).map(trade));
    close_every_window(&input, ROWS);
    expect_bars_once(&output, ROWS, &n1);
    let logs = format!("{}{}", n1.log(), n2.log());
    assert_eq!(
        logs.matches("takes up the drained checkpoints").count(),
        5,
        "three instances took up two, then two took up three: {logs}"
    );
    let create = n1.sql(&format!("SHOW CREATE JOB '{job}'")).unwrap();
    assert!(create.contains("'parallelism' = '2'"), "{create}");
}
