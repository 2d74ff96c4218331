//! The Arrow Flight SQL JDBC driver against `ferris server`: the Java checks of
//! `tests/jdbc/` (connecting with a token, a user and password, over TLS; metadata; typed
//! values; prepared statements; jobs), run with the classpath in `FERRIS_JDBC_CLASSPATH`
//! (`bash scripts/test.sh` builds them with Maven and sets it).

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Server;

const TOKEN: &str = "s3cret";
/// How long the Java checks may take, JVM start included.
const JAVA_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn the_jdbc_driver_connects_reads_metadata_queries_and_starts_jobs() {
    let classpath = std::env::var("FERRIS_JDBC_CLASSPATH").expect(
        "FERRIS_JDBC_CLASSPATH: the Java checks and the Flight SQL JDBC driver \
         (mvn -q -f tests/jdbc/pom.xml package, then target/jdbc/classes and the line of \
         target/jdbc/classpath.txt; bash scripts/test.sh does both)",
    );
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed_certificate(dir.path());
    let plain = Server::spawn(dir.path(), &["--auth-token", TOKEN]);
    let tls = Server::spawn(
        dir.path(),
        &[
            "--auth-token",
            TOKEN,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = |server: &Server| server.address.rsplit(':').next().unwrap().to_string();
    let mut java = Command::new("java")
        // Arrow's memory needs java.nio opened to it (the driver's documented flag).
        .arg("--add-opens=java.base/java.nio=ALL-UNNAMED")
        .args(["-cp", &classpath, "ferris.jdbc.JdbcChecks"])
        .args(["--port", &port(&plain), "--tls-port", &port(&tls)])
        .args(["--token", TOKEN, "--ca", cert.to_str().unwrap()])
        .args(["--dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running java (a JDK 17 on the PATH)");
    let stdout = drain(java.stdout.take().unwrap());
    let stderr = drain(java.stderr.take().unwrap());
    let deadline = Instant::now() + JAVA_TIMEOUT;
    let status = loop {
        if let Some(status) = java.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            java.kill().unwrap();
            java.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    println!("{stdout}");
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!("the JDBC checks failed ({status}):\n{stdout}\n{stderr}"),
        None => panic!("the JDBC checks took over {JAVA_TIMEOUT:?}:\n{stdout}\n{stderr}"),
    }
}

/// Reads `pipe` to its end on a thread of its own, so that a full pipe never blocks the writer.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).unwrap();
        text
    })
}
