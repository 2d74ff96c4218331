//! End-to-end tests of the Flight SQL server: `ferris server` started for real, driven by
//! arrow-rs's Flight SQL client, the `ferris-flight` CLI, and Python's pyarrow and ADBC
//! (`tests/flight/clients.py`, run with `FERRIS_PYTHON` from `scripts/test.sh`).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetTables, SqlInfo};
use futures::TryStreamExt;
use support::{Server, http_get, project_root, sorted_part_lines};
use tonic::transport::Channel;

const TOKEN: &str = "s3cret";

impl Server {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// A server with the test token and `options`.
    fn start_with(dir: &Path, options: &[&str]) -> Self {
        Self::spawn(dir, &[&["--auth-token", TOKEN], options].concat())
    }

    async fn client(&self, token: Option<&str>) -> FlightSqlServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FlightSqlServiceClient::new(channel);
        if let Some(token) = token {
            client.set_token(token.to_string());
        }
        client
    }
}

/// Every batch behind the first endpoint of `info`.
async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    client
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Runs `sql` every 50 ms until its rows, as a table, satisfy `done` (10 s at most).
async fn query_until(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let table = arrow::util::pretty::pretty_format_batches(&query(client, sql).await)
            .unwrap()
            .to_string();
        if done(&table) {
            return table;
        }
        assert!(Instant::now() < deadline, "{sql}:\n{table}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    fetch(client, info).await
}

fn trades_csv(dir: &Path) -> String {
    std::fs::write(
        dir.join("trades.csv"),
        "symbol,price,qty\nA,10.50,3\nB,20.25,4\nA,11.00,5\n",
    )
    .unwrap();
    "'trades.type' = 'file_source', 'trades.path' = 'trades.csv',
     'trades.schema' = 'symbol VARCHAR, price DECIMAL(10,2), qty BIGINT'"
        .to_string()
}

#[tokio::test]
async fn arrow_rs_client_queries_starts_jobs_and_reads_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let source = trades_csv(dir.path());
    let server = Server::start(dir.path());

    let mut anonymous = server.client(None).await;
    let refused = anonymous
        .execute("SELECT 1".into(), None)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("Bearer"), "{refused}");
    let mut wrong = server.client(Some("guess")).await;
    assert!(wrong.execute("SELECT 1".into(), None).await.is_err());

    let mut client = server.client(Some(TOKEN)).await;
    let batches = query(
        &mut client,
        &format!(
            "SELECT symbol, SUM(qty) AS qty, SUM(price * qty) AS notional FROM trades
             GROUP BY symbol ORDER BY symbol WITH ({source})"
        ),
    )
    .await;
    let table = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(table.contains("| A      | 8   | 86.50    |"), "{table}");
    assert!(table.contains("| B      | 4   | 81.00    |"), "{table}");

    // A job runs in the server and answers with its name.
    let reply = query(
        &mut client,
        &format!(
            "CREATE STREAM big AS SELECT symbol, qty FROM trades WHERE qty > 3 WITH ({source},
             'big.type' = 'file_sink', 'big.path' = 'big.jsonl')"
        ),
    )
    .await;
    assert_eq!(reply[0].column(0).as_string::<i32>().value(0), "big");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(dir.path().join("big.jsonl")).map_or(0, |t| t.lines().count()) < 2
    {
        assert!(Instant::now() < deadline, "the job wrote nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A table's current state answers a pull query from any client.
    query(
        &mut client,
        &format!(
            "CREATE TABLE totals AS SELECT symbol, SUM(qty) AS qty FROM trades GROUP BY symbol
             WITH ({source}, 'totals.type' = 'file_sink', 'totals.path' = 'totals.jsonl')"
        ),
    )
    .await;
    let state = query_until(
        &mut client,
        "SELECT symbol, qty FROM totals ORDER BY symbol",
        |t| t.contains("| B      | 4   |"),
    )
    .await;
    assert!(state.contains("| A      | 8   |"), "{state}");

    // Metadata: the job's stream and its source are tables of the catalog.
    let info = client
        .get_tables(CommandGetTables {
            include_schema: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await;
    let names: Vec<String> = tables
        .iter()
        .flat_map(|b| {
            let names = b.column_by_name("table_name").unwrap().as_string::<i32>();
            names
                .iter()
                .map(|n| n.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        names.contains(&"big".to_string()) && names.contains(&"trades".to_string()),
        "{names:?}"
    );

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap();
    let sql_info = fetch(&mut client, info).await;
    assert_eq!(sql_info[0].num_rows(), 1);

    let streams = query(&mut client, "SHOW STREAMS").await;
    let shown = arrow::util::pretty::pretty_format_batches(&streams)
        .unwrap()
        .to_string();
    assert!(shown.contains("big"), "{shown}");
    // The bounded job finishes (its file is complete): SHOW JOBS says so, with its counts.
    let big = |jobs: &str| {
        let line = jobs
            .lines()
            .find(|l| l.starts_with("| big "))
            .unwrap_or_default();
        line.to_string()
    };
    let jobs = query_until(&mut client, "SHOW JOBS", |jobs| {
        big(jobs).contains("| stream | FINISHED |")
    })
    .await;
    assert!(
        big(&jobs).contains("| 3          | 2           |"),
        "{jobs}"
    );

    // SQL errors come back with their position.
    let error = client
        .execute("SELECT nope FROM trades".into(), None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");

    // Prepared statement with a parameter.
    let mut prepared = client
        .prepare("SELECT CAST($1 AS BIGINT) + 1 AS answer".into(), None)
        .await
        .unwrap();
    let parameters = RecordBatch::try_from_iter([(
        "$1",
        std::sync::Arc::new(arrow::array::Int64Array::from(vec![41])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    prepared.set_parameters(parameters).unwrap();
    let info = prepared.execute().await.unwrap();
    let answer = fetch(&mut client, info).await;
    assert_eq!(answer[0].column(0).as_primitive::<Int64Type>().value(0), 42);
    prepared.close().await.unwrap();
}

#[tokio::test]
async fn a_query_over_a_watched_folder_streams_until_the_client_cancels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/1.csv"), "n\n1\n2\n").unwrap();
    let server = Server::start(dir.path());
    let mut client = server.client(Some(TOKEN)).await;
    let info = client
        .execute(
            "SELECT n * 10 AS tens FROM numbers WITH ('numbers.type' = 'file_source',
             'numbers.path' = 'in/', 'numbers.format' = 'csv', 'numbers.schema' = 'n BIGINT',
             'numbers.watch' = 'true', 'numbers.watch.interval' = '50ms')"
                .into(),
            None,
        )
        .await
        .unwrap();
    let mut rows = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let mut seen = vec![];
    let mut written = false;
    while seen.len() < 4 {
        let batch = tokio::time::timeout(Duration::from_secs(10), rows.try_next())
            .await
            .expect("rows keep coming")
            .unwrap()
            .expect("the query runs until cancelled");
        seen.extend(
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .copied(),
        );
        if seen.len() >= 2 && !written {
            // A file that lands while the query runs streams out too.
            std::fs::write(dir.path().join("in/2.csv"), "n\n3\n4\n").unwrap();
            written = true;
        }
    }
    assert_eq!(seen, vec![10, 20, 30, 40]);
    // CancelFlightInfo ends the stream, which would otherwise never end.
    let channel = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut flight = arrow_flight::FlightClient::new(channel);
    flight
        .add_header("authorization", &format!("Bearer {TOKEN}"))
        .unwrap();
    let cancelled = flight
        .cancel_flight_info(arrow_flight::CancelFlightInfoRequest::new(info))
        .await
        .unwrap();
    assert_eq!(cancelled.status(), arrow_flight::CancelStatus::Cancelled);
    let end = tokio::time::timeout(Duration::from_secs(10), rows.try_next())
        .await
        .expect("the cancelled stream ends");
    assert!(end.unwrap().is_none());
    // The server goes on serving.
    let one = query(&mut client, "SELECT 1 AS one").await;
    assert_eq!(one[0].num_rows(), 1);
}

#[test]
fn ferris_flight_cli_prints_tables_csv_and_refuses_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let source = trades_csv(dir.path());
    let server = Server::start(dir.path());
    let port = server.address.rsplit(':').next().unwrap().to_string();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ferris-flight"))
            .args(["--port", &port])
            .args(args)
            .output()
            .unwrap()
    };
    let sql = format!("SELECT symbol, qty FROM trades WHERE qty > 3 ORDER BY qty WITH ({source})");
    let table = cli(&["--token", TOKEN, "-e", &sql]);
    let out = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        out.contains("| B      | 4   |") && out.contains("(2 rows)"),
        "{out}"
    );

    let csv = cli(&["--token", TOKEN, "--format", "csv", "-e", &sql]);
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        "symbol,qty\nB,4\nA,5\n"
    );

    let refused = cli(&["-e", "SELECT 1"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Bearer"));

    // The prompt: statements end with ';', an error does not end the session.
    let mut prompt = Command::new(env!("CARGO_BIN_EXE_ferris-flight"))
        .args(["--port", &port, "--token", TOKEN, "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    prompt
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT nope;\nSELECT 1 + 1\n  AS two;\n")
        .unwrap();
    let output = prompt.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "two\n2\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope"));
}

#[test]
fn python_clients_pyarrow_and_adbc() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let python = std::env::var("FERRIS_PYTHON").expect(
        "FERRIS_PYTHON: a python with pyarrow and adbc-driver-flightsql (bash scripts/test.sh sets it up)",
    );
    let output = Command::new(python)
        .arg(project_root().join("tests/flight/clients.py"))
        .args([
            "--uri",
            &format!("grpc://{}", server.address),
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn ctrl_c_stops_the_server_s_jobs_and_commits_their_sinks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/1.csv"), "n\n1\n2\n3\n").unwrap();
    let mut server = Server::start(dir.path());
    let mut client = server.client(Some(TOKEN)).await;
    query(
        &mut client,
        "CREATE STREAM copied AS SELECT n FROM numbers WITH ('numbers.type' = 'file_source',
         'numbers.path' = 'in/', 'numbers.format' = 'csv', 'numbers.schema' = 'n BIGINT',
         'numbers.watch' = 'true', 'numbers.watch.interval' = '50ms',
         'copied.type' = 'file_sink', 'copied.path' = 'copied.jsonl')",
    )
    .await;
    // The job watches for ever; its single-file sink commits only when it stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!dir.path().join("copied.jsonl").exists());
    let status = Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let copied = std::fs::read_to_string(dir.path().join("copied.jsonl")).unwrap();
    assert_eq!(copied, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
}

/// Waits (10 s at most) until `/ready` answers 200: every kept job has been started again.
fn wait_ready(http: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(http, "/ready");
        if status == "HTTP/1.1 200 OK" {
            return;
        }
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks that `text` is Prometheus text exposition: every family has HELP and TYPE, and
/// every sample is `name{labels} number` of a declared family. Returns the samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut declared = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            declared.insert(name.to_string());
        } else if line.starts_with("# HELP ") {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                declared.contains(name),
                "sample of an undeclared family: {line}"
            );
            assert!(series.ends_with("\"}") || !series.contains('{'), "{line}");
            samples.push((series.to_string(), value));
        }
    }
    samples
}

/// Ten-second bars over the watched folder `inbox`, checkpointed every 100 ms.
const RESUMED_JOB: &str = "CREATE STREAM bars AS
    SELECT symbol, _window_start AS window_start, COUNT(*) AS trades,
           SUM(price * qty) AS notional
    FROM trades GROUP BY symbol WINDOW TUMBLING(INTERVAL '10' SECOND) EMIT FINAL
    WITH ('trades.type' = 'file_source', 'trades.path' = 'inbox', 'trades.format' = 'csv',
          'trades.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
          'trades.watch' = 'true', 'trades.watch.interval' = '20ms',
          'trades.event.time.field' = 'ts',
          'bars.type' = 'file_sink', 'bars.path' = 'out/',
          'checkpoint.interval' = '100ms')";

/// CSV trades at event times `from..to` seconds, one a second per symbol.
fn trades_between(from: i64, to: i64) -> String {
    let mut csv = String::from("ts,symbol,price,qty\n");
    for second in from..to {
        for (i, symbol) in ["A", "B", "C"].iter().enumerate() {
            let cents = 1000 + second * 7 + i as i64;
            csv.push_str(&format!(
                "{},{symbol},{}.{:02},{}\n",
                1_767_225_600_000 + second * 1000,
                cents / 100,
                cents % 100,
                1 + second % 5
            ));
        }
    }
    csv
}

#[tokio::test]
async fn a_killed_server_resumes_its_jobs_from_their_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("1.csv"), trades_between(0, 40)).unwrap();
    let options = ["--state-dir", "state", "--http", "127.0.0.1:0"];
    let mut server = Server::start_with(dir.path(), &options);
    wait_ready(server.http.as_ref().unwrap());
    let mut client = server.client(Some(TOKEN)).await;
    query(&mut client, RESUMED_JOB).await;
    // Read and checkpointed: 120 rows in, and a checkpoint after them.
    query_until(&mut client, "SHOW JOB STATUS 'bars'", |t| {
        property(t, "records_in") == Some("120")
            && property(t, "last_checkpoint").is_some_and(|v| !v.is_empty())
    })
    .await;
    let metrics = http_get(server.http.as_ref().unwrap(), "/metrics").1;
    let samples = parse_prometheus(&metrics);
    let checkpoints = samples
        .iter()
        .find(|(s, _)| s == "ferris_job_checkpoints_total{job=\"bars\"}")
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(checkpoints.1 >= 1.0, "{metrics}");
    assert!(
        metrics.contains("ferris_job_checkpoint_age_seconds{job=\"bars\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferris_job_watermark_delay_seconds{job=\"bars\"}"),
        "{metrics}"
    );
    // Killed with open windows, while more data arrives.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::fs::write(inbox.join("2.csv"), trades_between(40, 80)).unwrap();
    let server = Server::start_with(dir.path(), &options);
    wait_ready(server.http.as_ref().unwrap());
    let mut client = server.client(Some(TOKEN)).await;
    // Nobody created the job again: the server did, from where its checkpoint stood.
    query_until(&mut client, "SHOW JOBS", |t| {
        t.contains("bars") && t.contains("RUNNING")
    })
    .await;
    // A row far ahead closes every window of the 80 seconds.
    std::fs::write(inbox.join("3.csv"), trades_between(1000, 1001)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sorted_part_lines(&dir.path().join("out")).len() < 24 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            sorted_part_lines(&dir.path().join("out"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a doubled window the time to show, then compare with one uncrashed run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reference = dir.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    std::fs::write(reference.join("all.csv"), trades_between(0, 80)).unwrap();
    let sql = RESUMED_JOB
        .replace("'inbox'", "'reference'")
        .replace("'trades.watch' = 'true', ", "")
        .replace("'out/'", "'expected/'")
        .replace(",\n          'checkpoint.interval' = '100ms'", "");
    support::ferris_ok(dir.path(), &["run", "-e", &sql]);
    let expected = sorted_part_lines(&dir.path().join("expected"));
    assert_eq!(expected.len(), 24, "{expected:?}");
    assert_eq!(sorted_part_lines(&dir.path().join("out")), expected);
}

/// A table with no sink, kept by the server: a pull query reads it, SHOW TABLES says it is
/// kept, a restart brings its rows back from the checkpoint before any new row comes, and
/// its job goes on from there; INSERT INTO a stream with no sink says why it cannot.
#[tokio::test]
async fn a_table_kept_by_the_server_answers_pull_queries_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("1.csv"), trades_between(0, 4)).unwrap();
    let options = ["--state-dir", "state", "--http", "127.0.0.1:0"];
    let totals = "CREATE TABLE totals AS
        SELECT symbol, COUNT(*) AS trades, SUM(qty) AS volume FROM trades GROUP BY symbol
        WITH ('trades.type' = 'file_source', 'trades.path' = 'inbox', 'trades.format' = 'csv',
              'trades.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
              'trades.watch' = 'true', 'trades.watch.interval' = '20ms',
              'checkpoint.interval' = '100ms')";
    let rows = "SELECT symbol, trades, volume FROM totals ORDER BY symbol";
    // Seconds 0..4: quantities 1, 2, 3, 4 for each symbol.
    let after_first = |t: &str| {
        ["A", "B", "C"]
            .iter()
            .all(|s| t.contains(&format!("| {s}      | 4      | 10     |")))
    };
    let mut server = Server::start_with(dir.path(), &options);
    wait_ready(server.http.as_ref().unwrap());
    let mut client = server.client(Some(TOKEN)).await;
    query(&mut client, totals).await;
    query_until(&mut client, rows, after_first).await;
    query_until(&mut client, "SHOW JOB STATUS 'totals'", |t| {
        property(t, "last_checkpoint").is_some_and(|v| !v.is_empty())
    })
    .await;
    let tables = query_until(&mut client, "SHOW TABLES", |t| t.contains("totals")).await;
    let line = tables.lines().find(|l| l.contains("| totals")).unwrap();
    assert!(
        line.contains("| kept ") && line.contains("server memory"),
        "{tables}"
    );
    let insert = client
        .execute(
            "CREATE STREAM big AS SELECT symbol, qty FROM trades WHERE qty > 3 WITH (
             'trades.type' = 'file_source', 'trades.path' = 'inbox', 'trades.format' = 'csv',
             'trades.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT')"
                .into(),
            None,
        )
        .await;
    assert!(insert.is_ok(), "{insert:?}");
    let refused = client
        .execute(
            "INSERT INTO big SELECT 'Z' AS symbol, 9 AS qty".into(),
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("'big' is kept by the server"), "{refused}");

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = Server::start_with(dir.path(), &options);
    wait_ready(server.http.as_ref().unwrap());
    let mut client = server.client(Some(TOKEN)).await;
    // Back from the checkpoint, not from reading the file again.
    query_until(&mut client, rows, after_first).await;
    let status = query_until(&mut client, "SHOW JOB STATUS 'totals'", |t| {
        property(t, "status") == Some("RUNNING")
    })
    .await;
    assert_eq!(property(&status, "records_in"), Some("0"), "{status}");
    // Its job goes on where it stood: second 4 adds quantity 5 to each symbol, once.
    std::fs::write(inbox.join("2.csv"), trades_between(4, 5)).unwrap();
    query_until(&mut client, rows, |t| {
        ["A", "B", "C"]
            .iter()
            .all(|s| t.contains(&format!("| {s}      | 5      | 15     |")))
    })
    .await;
}

/// A kept table whose keys expire (`'state.ttl'`): a key not updated for its time to live
/// leaves the table, and counts afresh when it comes again.
#[tokio::test]
async fn a_table_s_keys_not_updated_for_their_time_to_live_leave_it() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let server = Server::start(dir.path());
    let mut client = server.client(Some(TOKEN)).await;
    query(
        &mut client,
        "CREATE TABLE recent AS SELECT symbol, COUNT(*) AS trades FROM trades GROUP BY symbol
         WITH ('trades.type' = 'file_source', 'trades.path' = 'inbox', 'trades.format' = 'csv',
               'trades.schema' = 'symbol VARCHAR, qty BIGINT',
               'trades.watch' = 'true', 'trades.watch.interval' = '20ms',
               'state.ttl' = '300ms')",
    )
    .await;
    let rows = "SELECT symbol, trades FROM recent ORDER BY symbol";
    std::fs::write(inbox.join("1.csv"), "symbol,qty\nA,1\nA,2\nB,3\n").unwrap();
    query_until(&mut client, rows, |t| {
        t.contains("| A      | 2      |") && t.contains("| B      | 1      |")
    })
    .await;
    // Neither updated since: both leave.
    query_until(&mut client, rows, |t| {
        !t.contains("| A ") && !t.contains("| B ")
    })
    .await;
    std::fs::write(inbox.join("2.csv"), "symbol,qty\nA,4\n").unwrap();
    let table = query_until(&mut client, rows, |t| t.contains("| A      | 1      |")).await;
    assert!(!table.contains("| B "), "{table}");
}

/// A property's value in a `SHOW JOB STATUS` table as printed.
fn property<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table.lines().find_map(|line| {
        let mut cells = line.split('|').map(str::trim).skip(1);
        (cells.next() == Some(name)).then(|| cells.next().unwrap_or_default())
    })
}

async fn job_property(
    client: &mut FlightSqlServiceClient<Channel>,
    name: &str,
    property: &str,
) -> String {
    let batches = query(client, &format!("SHOW JOB STATUS '{name}'")).await;
    let batch = &batches[0];
    let (properties, values) = (
        batch.column(0).as_string::<i32>(),
        batch.column(1).as_string::<i32>(),
    );
    (0..batch.num_rows())
        .find(|&i| properties.value(i) == property)
        .map(|i| values.value(i).to_string())
        .unwrap_or_else(|| panic!("no {property}"))
}

#[tokio::test]
async fn deploy_then_pause_resume_stop_start_and_drop_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("1.csv"), trades_between(0, 20)).unwrap();
    std::fs::write(
        dir.path().join("jobs.sql"),
        format!("{RESUMED_JOB};\nSHOW JOBS;"),
    )
    .unwrap();
    let server = Server::start_with(dir.path(), &["--state-dir", "state"]);
    let port = server.address.rsplit(':').next().unwrap();
    // A statement the server would refuse is caught before anything is sent.
    std::fs::write(dir.path().join("bad.sql"), "SHOW JOBS;\nSTOP bars;").unwrap();
    let deploy = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_ferris"))
            .args([
                "deploy",
                file,
                "--server",
                &format!("127.0.0.1:{port}"),
                "--token",
                TOKEN,
            ])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let refused = deploy("bad.sql");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("bad.sql:2:6: expected JOB after STOP"),
        "{stderr}"
    );
    let deployed = deploy("jobs.sql");
    let stdout = String::from_utf8_lossy(&deployed.stdout);
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert!(stdout.contains("| bars | RUNNING |"), "{stdout}");
    // Deployed again: the job, created from the same statement, is left as it is; another
    // statement for it is refused, naming it.
    let again = deploy("jobs.sql");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        stdout.contains("job bars exists, created from this statement: left as it is"),
        "{stdout}"
    );
    std::fs::write(
        dir.path().join("changed.sql"),
        RESUMED_JOB.replace("'10' SECOND", "'20' SECOND"),
    )
    .unwrap();
    let changed = deploy("changed.sql");
    let stderr = String::from_utf8_lossy(&changed.stderr);
    assert!(!changed.status.success());
    assert!(
        stderr.contains(
            "job 'bars' exists, created from another statement (SHOW CREATE JOB 'bars' shows it)"
        ),
        "{stderr}"
    );
    let mut client = server.client(Some(TOKEN)).await;
    let kept = arrow::util::pretty::pretty_format_batches(
        &query(&mut client, "SHOW CREATE JOB 'bars'").await,
    )
    .unwrap()
    .to_string();
    assert!(kept.contains("TUMBLING(INTERVAL '10' SECOND)"), "{kept}");
    let error = client
        .execute("SHOW CREATE JOB 'nope'".into(), None)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("SHOW CREATE JOB 'nope': no job of that name"),
        "{error}"
    );
    query_until(&mut client, "SHOW JOB STATUS 'bars'", |t| {
        property(t, "records_in") == Some("60")
    })
    .await;

    // Paused: new rows wait; resumed: they come.
    query(&mut client, "PAUSE JOB bars").await;
    query_until(&mut client, "SHOW JOBS", |t| t.contains("PAUSED")).await;
    std::fs::write(inbox.join("2.csv"), trades_between(20, 40)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job_property(&mut client, "bars", "records_in").await, "60");
    query(&mut client, "RESUME JOB bars").await;
    query_until(&mut client, "SHOW JOB STATUS 'bars'", |t| {
        property(t, "records_in") == Some("120")
    })
    .await;

    // Stopped at a checkpoint, then started again from it: nothing read twice.
    query(&mut client, "STOP JOB bars").await;
    query_until(&mut client, "SHOW JOBS", |t| t.contains("STOPPED")).await;
    std::fs::write(inbox.join("3.csv"), trades_between(40, 60)).unwrap();
    let started =
        arrow::util::pretty::pretty_format_batches(&query(&mut client, "START JOB bars").await)
            .unwrap()
            .to_string();
    assert!(started.contains("| bars | RUNNING |"), "{started}");
    query_until(&mut client, "SHOW JOB STATUS 'bars'", |t| {
        property(t, "records_in") == Some("60")
    })
    .await;
    let error = client
        .execute("START JOB bars".into(), None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("job 'bars' is running already"),
        "{error}"
    );
    query(&mut client, "STOP JOB bars FORCE").await;
    query_until(&mut client, "SHOW JOBS", |t| t.contains("STOPPED")).await;

    // Dropped: gone from the catalog, the kept jobs and the state dir.
    let error = client
        .execute("DROP TABLE bars".into(), None)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("'bars' is a stream, not a TABLE"),
        "{error}"
    );
    query(&mut client, "DROP STREAM bars").await;
    let streams = query_until(&mut client, "SHOW STREAMS", |_| true).await;
    assert!(!streams.contains("bars"), "{streams}");
    assert!(!dir.path().join("state/bars").exists());
    let kept = std::fs::read_to_string(dir.path().join("state/jobs.json")).unwrap();
    assert!(!kept.contains("bars"), "{kept}");
    query(&mut client, "DROP STREAM IF EXISTS bars").await;
}

/// A running job rescaled with `ALTER JOB`, from one instance to three and then to two,
/// each time from a checkpoint, writes the windows one instance writes of the same input.
#[tokio::test]
async fn alter_job_rescales_a_running_job_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    // A file share that gets no file stops holding the watermark back after 200 ms.
    let job = RESUMED_JOB.replace(
        "'trades.event.time.field' = 'ts',",
        "'trades.event.time.field' = 'ts', 'trades.watermark.idle.timeout' = '200ms',",
    );
    let server = Server::start_with(dir.path(), &["--state-dir", "state"]);
    let mut client = server.client(Some(TOKEN)).await;
    query(&mut client, &job).await;
    let files = [(0, 20), (20, 40), (40, 60)];
    let alters = [None, Some(3), Some(2)];
    for (i, ((from, to), alter)) in files.iter().zip(alters).enumerate() {
        if let Some(parallelism) = alter {
            let reply = arrow::util::pretty::pretty_format_batches(
                &query(
                    &mut client,
                    &format!("ALTER JOB bars SET PARALLELISM {parallelism}"),
                )
                .await,
            )
            .unwrap()
            .to_string();
            assert!(reply.contains("| bars | RUNNING |"), "{reply}");
        }
        std::fs::write(inbox.join(format!("{i}.csv")), trades_between(*from, *to)).unwrap();
        query_until(&mut client, "SHOW JOB STATUS 'bars'", |t| {
            property(t, "records_in") == Some("60")
        })
        .await;
    }
    let status = query_until(&mut client, "SHOW JOB STATUS 'bars'", |_| true).await;
    assert!(status.contains("ExchangeExec"), "{status}");
    // Windows up to 50 s are closed by the last file's watermark (59 s).
    let out = dir.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(30);
    while (!out.exists() || sorted_part_lines(&out).len() < 15) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    query(&mut client, "STOP JOB bars").await;
    query_until(&mut client, "SHOW JOBS", |t| t.contains("STOPPED")).await;
    let kept = std::fs::read_to_string(dir.path().join("state/jobs.json")).unwrap();
    assert!(kept.contains("'parallelism' = '2'"), "{kept}");

    // One instance over the same files, read once: every window, the last one too.
    std::fs::write(
        dir.path().join("reference.sql"),
        RESUMED_JOB
            .replace(
                "'trades.watch' = 'true', 'trades.watch.interval' = '20ms',",
                "",
            )
            .replace("'out/'", "'reference/'")
            .replace(",\n          'checkpoint.interval' = '100ms'", ""),
    )
    .unwrap();
    let reference = Command::new(env!("CARGO_BIN_EXE_ferris"))
        .args(["run", "reference.sql"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let closed: Vec<String> = sorted_part_lines(&dir.path().join("reference"))
        .into_iter()
        .filter(|line| !line.contains("\"window_start\":\"2026-01-01T00:00:50\""))
        .collect();
    assert_eq!(closed.len(), 15, "{closed:?}");
    assert_eq!(sorted_part_lines(&out), closed);
}

/// The status of the latest job called `name` in a `SHOW JOBS` table as printed (name,
/// node, kind, status, ...).
fn job_status<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table.lines().rev().find_map(|line| {
        let mut cells = line.split('|').map(str::trim).skip(1);
        (cells.next() == Some(name)).then(|| cells.nth(2).unwrap_or_default())
    })
}

/// Whether the server keeps `name` stopped across a restart (its `jobs.json` entry).
fn kept_stopped(state: &std::path::Path, name: &str) -> bool {
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("jobs.json")).unwrap()).unwrap();
    let job = kept
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["name"] == name)
        .unwrap_or_else(|| panic!("{name} not kept: {kept}"));
    job["stopped"].as_bool().unwrap_or(false)
}

#[tokio::test]
async fn a_started_insert_job_starts_again_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["inbox", "more"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        std::fs::write(dir.path().join(folder).join("1.csv"), trades_between(0, 5)).unwrap();
    }
    let source = |name: &str, folder: &str| {
        format!(
            "'{name}.type' = 'file_source', '{name}.path' = '{folder}', '{name}.format' = 'csv',
             '{name}.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
             '{name}.watch' = 'true', '{name}.watch.interval' = '20ms'"
        )
    };
    let server = Server::start_with(dir.path(), &["--state-dir", "state"]);
    let mut client = server.client(Some(TOKEN)).await;
    query(
        &mut client,
        &format!(
            "CREATE STREAM copies AS SELECT symbol, qty FROM trades
             WITH ({}, 'copies.type' = 'file_sink', 'copies.path' = 'out/',
                   'checkpoint.interval' = '100ms')",
            source("trades", "inbox")
        ),
    )
    .await;
    query(
        &mut client,
        &format!(
            "INSERT INTO copies SELECT symbol, qty FROM more WITH ({}, 'checkpoint.interval' = '100ms')",
            source("more", "more")
        ),
    )
    .await;
    let state = dir.path().join("state");
    query(&mut client, "STOP JOB insert_into_copies").await;
    query_until(&mut client, "SHOW JOBS", |t| {
        job_status(t, "insert_into_copies") == Some("STOPPED")
    })
    .await;
    assert!(kept_stopped(&state, "insert_into_copies"));
    query(&mut client, "START JOB insert_into_copies").await;
    query_until(&mut client, "SHOW JOBS", |t| {
        job_status(t, "insert_into_copies") == Some("RUNNING")
    })
    .await;
    assert!(!kept_stopped(&state, "insert_into_copies"));
    // The insert's start cleaned up its own unfinished parts only, not the stream job's.
    let jobs = query_until(&mut client, "SHOW JOBS", |_| true).await;
    assert_eq!(job_status(&jobs, "copies"), Some("RUNNING"), "{jobs}");
}

#[tokio::test]
async fn http_serves_health_and_every_job_s_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let source = trades_csv(dir.path());
    let server = Server::start_with(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = server.http.clone().unwrap();
    assert_eq!(http_get(&http, "/health").0, "HTTP/1.1 200 OK");
    wait_ready(&http);
    assert_eq!(http_get(&http, "/nope").0, "HTTP/1.1 404 Not Found");

    let mut client = server.client(Some(TOKEN)).await;
    query(
        &mut client,
        &format!(
            "CREATE STREAM copied AS SELECT symbol FROM trades WITH ({source},
             'copied.type' = 'file_sink', 'copied.path' = 'copied.jsonl')"
        ),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, metrics) = http_get(&http, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        if metrics.contains("ferris_job_running{job=\"copied\"} 0") {
            assert!(
                metrics.contains("# TYPE ferris_job_records_in_total counter"),
                "{metrics}"
            );
            assert!(
                metrics.contains("ferris_job_records_in_total{job=\"copied\"} 3"),
                "{metrics}"
            );
            assert!(
                metrics.contains("ferris_job_records_out_total{job=\"copied\"} 3"),
                "{metrics}"
            );
            // The process's own, per pod for an autoscaler.
            let process = |name: &str| {
                metrics
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{name} ")))
                    .and_then(|value| value.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("{name}: {metrics}"))
            };
            assert!(process("ferris_process_resident_memory_bytes") > 1e6);
            assert!(process("ferris_process_cpu_seconds_total") >= 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_push_query_follows_the_rows_a_stream_s_job_writes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let server = Server::start(dir.path());
    let mut client = server.client(Some(TOKEN)).await;
    query(
        &mut client,
        "CREATE STREAM doubled AS SELECT n * 2 AS twice FROM numbers WITH (
         'numbers.type' = 'file_source', 'numbers.path' = 'in/', 'numbers.format' = 'csv',
         'numbers.schema' = 'n BIGINT', 'numbers.watch' = 'true',
         'numbers.watch.interval' = '50ms')",
    )
    .await;
    // No sink: the server keeps the stream for push queries. One reads it by name, from now on, while the job writes it.
    let info = client
        .execute("SELECT twice + 1 AS odd FROM doubled".into(), None)
        .await
        .unwrap();
    let mut rows = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("in/1.csv"), "n\n1\n2\n").unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), rows.try_next())
        .await
        .expect("the stream's rows come through")
        .unwrap()
        .unwrap();
    assert_eq!(
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        vec![3, 5]
    );
    // The running job's name is taken.
    let taken = client
        .execute(
            "CREATE STREAM doubled AS SELECT 1 AS one WITH (
             'doubled.type' = 'file_sink', 'doubled.path' = 'again.jsonl')"
                .into(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        taken
            .to_string()
            .contains("job 'doubled' is running already"),
        "{taken}"
    );
}

#[tokio::test]
async fn tls_serves_flight_sql_to_clients_that_trust_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed_certificate(dir.path());
    let server = Server::start_with(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );

    let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(std::fs::read(&cert).unwrap()),
    );
    let channel = Channel::from_shared(format!("https://{}", server.address))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_token(TOKEN.to_string());
    let one = query(&mut client, "SELECT 1 AS one").await;
    assert_eq!(one[0].column(0).as_primitive::<Int64Type>().value(0), 1);

    // Plain text to a TLS port gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut client = FlightSqlServiceClient::new(channel);
        client.set_token(TOKEN.to_string());
        assert!(client.execute("SELECT 1".into(), None).await.is_err());
    }

    // ferris-flight with the authority's certificate.
    let port = server.address.rsplit(':').next().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_ferris-flight"))
        .args(["--port", &port, "--token", TOKEN, "--format", "csv"])
        .args(["--tls-ca", cert.to_str().unwrap(), "-e", "SELECT 2 AS two"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "two\n2\n");
}

#[tokio::test]
async fn a_config_file_and_its_profile_set_the_server_and_every_job_s_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("inbox")).unwrap();
    std::fs::write(dir.path().join("inbox/1.csv"), trades_between(0, 20)).unwrap();
    std::fs::write(
        dir.path().join("ferris.yaml"),
        "server:
  http: ${FERRIS_TEST_HTTP:127.0.0.1:0}
jobs:
  checkpoint.interval: 10m
profiles:
  fast:
    server: { state_dir: state }
    jobs: { checkpoint.interval: 50ms }
",
    )
    .unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            "--config",
            "ferris.yaml",
            "--profile",
            "fast",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let mut client = server.client(Some(TOKEN)).await;
    // The job's WITH says nothing of checkpoints: the profile's state dir and interval apply.
    let job = RESUMED_JOB.replace(",\n          'checkpoint.interval' = '100ms'", "");
    assert!(!job.contains("checkpoint.interval"));
    query(&mut client, &job).await;
    query_until(&mut client, "SHOW JOB STATUS 'bars'", |t| {
        property(t, "last_checkpoint").is_some_and(|v| !v.is_empty())
    })
    .await;
    assert!(dir.path().join("state/bars").is_dir());
    // A mistake in the file is named before the server starts.
    std::fs::write(dir.path().join("bad.yaml"), "server: { flihgt: x }").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferris"))
        .args(["server", "--config", "bad.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.yaml: unknown setting server.flihgt"),
        "{stderr}"
    );
}

/// `METHOD path` to the JSON API, with `token` and `body`: the status line, the
/// `Content-Type` and the body as JSON.
fn api(
    http: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (String, String, serde_json::Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| ("Authorization", b))
        .into_iter()
        .collect();
    let response = support::http_send(http, method, path, &headers, body).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    (head.lines().next().unwrap().to_string(), content_type, json)
}

/// Asks `GET path` of the API every 50 ms until its body satisfies `done` (10 s at most).
fn api_until(http: &str, path: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = api(http, "GET", path, Some(TOKEN), "");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        if done(&body) {
            return;
        }
        assert!(Instant::now() < deadline, "{path}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads from `stream` until what it has read contains `wanted` (10 s at most); all of it.
fn read_until(stream: &mut std::net::TcpStream, read: &mut String, wanted: &str) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 4096];
    while !read.contains(wanted) {
        assert!(Instant::now() < deadline, "no {wanted} in {read}");
        match stream.read(&mut buffer) {
            Ok(0) => panic!("the stream ended without {wanted}: {read}"),
            Ok(n) => read.push_str(&String::from_utf8_lossy(&buffer[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn the_query_route_streams_rows_as_server_sent_events_and_the_dashboard_is_served() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--http", "127.0.0.1:0", "--state-dir", "state"],
    );
    let http = server.http.clone().unwrap();
    wait_ready(&http);
    let bearer = format!("Bearer {TOKEN}");
    let authorized = [("Authorization", bearer.as_str())];

    // A bounded result: schema, rows (a decimal as its exact text), end.
    let response = support::http_send(
        &http,
        "POST",
        "/api/v1/query",
        &authorized,
        "SELECT 1 AS one, CAST('12345678901234.123456' AS DECIMAL(20,6)) AS money",
    )
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("content-type: text/event-stream"),
        "{response}"
    );
    for part in [
        "event: schema\ndata: [{\"name\":\"one\",\"type\":\"Int64\"},{\"name\":\"money\",\"type\":\"Decimal128(20, 6)\"}]",
        "event: rows\ndata: [{\"one\":1,\"money\":\"12345678901234.123456\"}]",
        "event: end\ndata: {\"rows\":1}",
    ] {
        assert!(response.contains(part), "no {part} in {response}");
    }
    // A statement that fails before its first row: 400 with the engine's message.
    let (status, _, bad) = api(&http, "POST", "/api/v1/query", Some(TOKEN), "SELEC 1");
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{bad}");
    assert!(bad["error"].as_str().unwrap().starts_with("1:1:"), "{bad}");
    let (status, _, _) = api(&http, "POST", "/api/v1/query", None, "SELECT 1");
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");

    // A push query over a stream the server keeps: rows come while its job writes them.
    let (status, _, created) = api(
        &http,
        "POST",
        "/api/v1/jobs",
        Some(TOKEN),
        "CREATE STREAM big AS SELECT symbol, qty FROM trades WHERE qty >= 100
         WITH ('trades.type' = 'file_source', 'trades.path' = 'inbox', 'trades.format' = 'csv',
               'trades.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
               'trades.watch' = 'true', 'trades.watch.interval' = '20ms')",
    );
    assert_eq!(status, "HTTP/1.1 201 Created", "{created}");
    let mut follow = std::net::TcpStream::connect(&http).unwrap();
    follow
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sql = "SELECT * FROM big";
    write!(
        follow,
        "POST /api/v1/query HTTP/1.1\r\nHost: {http}\r\nAuthorization: {bearer}\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .unwrap();
    let mut read = String::new();
    read_until(&mut follow, &mut read, "event: schema");
    std::fs::write(
        inbox.join("1.csv"),
        "ts,symbol,price,qty\n1000,AAPL,229.50,100\n2000,MSFT,415.10,5\n",
    )
    .unwrap();
    read_until(
        &mut follow,
        &mut read,
        "event: rows\ndata: [{\"symbol\":\"AAPL\",\"qty\":100}]",
    );
    std::fs::write(
        inbox.join("2.csv"),
        "ts,symbol,price,qty\n3000,NVDA,135.20,300\n",
    )
    .unwrap();
    read_until(&mut follow, &mut read, "{\"symbol\":\"NVDA\",\"qty\":300}");
    assert!(!read.contains("MSFT"), "{read}");
    assert!(!read.contains("event: end"), "a push query goes on: {read}");
    drop(follow);

    // Pause and resume, as the dashboard's buttons send them.
    for (command, status) in [("pause", "PAUSED"), ("resume", "RUNNING")] {
        let (answer, _, body) = api(
            &http,
            "POST",
            &format!("/api/v1/jobs/big/{command}"),
            Some(TOKEN),
            "",
        );
        assert_eq!(answer, "HTTP/1.1 200 OK", "{body}");
        api_until(&http, "/api/v1/jobs/big", |job| job["status"] == status);
    }

    // A web page of another origin may not call the API (a browser sends its Origin); the
    // dashboard's own calls come from the server's origin.
    for (origin, status) in [
        ("http://evil.example", "HTTP/1.1 403 Forbidden"),
        (&*format!("http://{http}"), "HTTP/1.1 200 OK"),
    ] {
        let response = support::http_send(
            &http,
            "GET",
            "/api/v1/jobs",
            &[("Authorization", &bearer), ("Origin", origin)],
            "",
        )
        .unwrap();
        assert!(response.starts_with(status), "{origin}: {response}");
    }

    // The page and its files need no token (what they show does), and only come from here.
    let page = support::http_request(&http, "GET", "/").unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("content-type: text/html"), "{page}");
    assert!(
        page.contains("content-security-policy: default-src 'self'"),
        "{page}"
    );
    assert!(page.contains("<script src=\"/ui/app.js\""), "{page}");
    for file in ["/ui/app.js", "/ui/style.css", "/ui/lightweight-charts.js"] {
        let (status, body) = http_get(&http, file);
        assert_eq!(status, "HTTP/1.1 200 OK", "{file}");
        assert!(body.len() > 1000, "{file}: {body}");
    }
    assert_eq!(http_get(&http, "/ui/nope.js").0, "HTTP/1.1 404 Not Found");
}

#[test]
fn the_json_api_creates_lists_stops_and_starts_jobs_behind_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("1.csv"), trades_between(0, 20)).unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--http", "127.0.0.1:0", "--state-dir", "state"],
    );
    let http = server.http.clone().unwrap();
    // Probes need no token; the API does.
    assert_eq!(http_get(&http, "/health").0, "HTTP/1.1 200 OK");
    wait_ready(&http);
    for token in [None, Some("guess")] {
        let (status, content_type, body) = api(&http, "GET", "/api/v1/jobs", token, "");
        assert_eq!(status, "HTTP/1.1 401 Unauthorized");
        assert_eq!(content_type, "application/json");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    }
    let call = |method: &str, path: &str, body: &str| api(&http, method, path, Some(TOKEN), body);

    let (status, content_type, created) = call("POST", "/api/v1/jobs", RESUMED_JOB);
    assert_eq!(status, "HTTP/1.1 201 Created", "{created}");
    assert_eq!(content_type, "application/json");
    assert_eq!(
        created,
        serde_json::json!([{ "job": "bars", "status": "RUNNING" }])
    );
    let (status, _, jobs) = call("GET", "/api/v1/jobs", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let bars = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["name"] == "bars")
        .unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(bars["status"], "RUNNING", "{jobs}");
    assert_eq!(bars["kind"], "stream", "{jobs}");
    api_until(&http, "/api/v1/jobs/bars", |job| {
        job["status"] == "RUNNING" && job["records_in"] == "60"
    });

    let (status, _, stopped) = call("POST", "/api/v1/jobs/bars/stop", "");
    assert_eq!(status, "HTTP/1.1 200 OK", "{stopped}");
    assert_eq!(
        stopped,
        serde_json::json!([{ "job": "bars", "status": "STOPPING" }])
    );
    api_until(&http, "/api/v1/jobs/bars", |job| job["status"] == "STOPPED");
    // A job that is there but cannot take the command is a bad request, not a missing job.
    let (status, _, again) = call("POST", "/api/v1/jobs/bars/stop", "");
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{again}");
    assert!(
        again["error"].as_str().unwrap().contains("is not running"),
        "{again}"
    );
    let (status, _, started) = call("POST", "/api/v1/jobs/bars/start", "");
    assert_eq!(status, "HTTP/1.1 200 OK", "{started}");
    assert_eq!(
        started,
        serde_json::json!([{ "job": "bars", "status": "RUNNING" }])
    );
    // The job started again is the one its name now stands for.
    api_until(&http, "/api/v1/jobs/bars", |job| job["status"] == "RUNNING");

    let (status, _, missing) = call("GET", "/api/v1/jobs/nope", "");
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{missing}");
    assert!(
        missing["error"].as_str().unwrap().contains("nope"),
        "{missing}"
    );
    let (status, _, missing) = call("POST", "/api/v1/jobs/nope/start", "");
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{missing}");
    // A name is an identifier: nothing else reaches the SQL.
    let (status, _, refused) = call("GET", "/api/v1/jobs/bars'%20OR%20'1", "");
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{refused}");

    let (status, _, nodes) = call("GET", "/api/v1/nodes", "");
    assert_eq!(status, "HTTP/1.1 409 Conflict", "{nodes}");
    assert!(
        nodes["error"]
            .as_str()
            .unwrap()
            .contains("not in a cluster"),
        "{nodes}"
    );

    // The engine's message, with the statement's position.
    let (status, _, bad) = call("POST", "/api/v1/jobs", "SHOW JOBS;\nSTOP bars");
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{bad}");
    assert_eq!(bad["error"], "2:6: expected JOB after STOP, found 'bars'");

    let (status, _, unknown) = call("GET", "/api/v1/streams", "");
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{unknown}");
    let response = support::http_send(
        &http,
        "DELETE",
        "/api/v1/jobs/bars",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 405 Method Not Allowed") && response.contains("allow: GET"),
        "{response}"
    );
}

/// A function written in SQL: called by a windowed job and a query, listed by SHOW FUNCTIONS
/// with its statement, kept by a server across a kill (the job calling it starts again), and
/// dropped for good.
#[test]
fn functions_are_kept_across_a_restart_and_called_inside_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(inbox.join("1.csv"), trades_between(0, 40)).unwrap();
    let options = ["--state-dir", "state"];
    let mut server = Server::spawn(dir.path(), &options);
    let created = server.sql(
        "CREATE FUNCTION notional(p DECIMAL(10,2), q BIGINT) RETURNS DECIMAL(38,2) AS 'p * q'",
    );
    assert!(created.contains("CREATED"), "{created}");
    let call = "SELECT notional(CAST(1.25 AS DECIMAL(10,2)), 3) AS n";
    assert!(server.sql(call).contains("| 3.75 |"));
    let created = server.sql(
        "CREATE AGGREGATE FUNCTION total(x BIGINT) RETURNS BIGINT LANGUAGE python
         AS 'def total(x): return sum(x.to_pylist())'",
    );
    assert!(created.contains("CREATED"), "{created}");
    let summed = "SELECT total(x) AS t FROM (VALUES (1), (2), (4)) AS v(x)";
    assert!(server.sql(summed).contains("| 7 |"));
    server.sql(
        "CREATE TABLE turnover AS
         SELECT symbol, _window_start AS minute, SUM(notional(price, qty)) AS notional
         FROM trades GROUP BY symbol WINDOW TUMBLING(1m)
         WITH ('trades.type' = 'file_source', 'trades.path' = 'inbox', 'trades.format' = 'csv',
               'trades.schema' = 'ts BIGINT, symbol VARCHAR, price DECIMAL(10,2), qty BIGINT',
               'trades.event.time.field' = 'ts', 'trades.watch' = 'true')",
    );
    let listed = server.sql("SHOW FUNCTIONS LIKE 'notional'");
    assert!(listed.contains("| sql "), "{listed}");
    assert!(listed.contains("AS 'p * q'"), "{listed}");
    // Killed: the function comes back before the job that calls it.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut server = Server::spawn(dir.path(), &options);
    assert!(server.sql(call).contains("| 3.75 |"));
    assert!(server.sql(summed).contains("| 7 |"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = server.sql("SHOW JOBS");
        if jobs.contains("turnover") && jobs.contains("RUNNING") {
            break;
        }
        assert!(Instant::now() < deadline, "{jobs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.sql("DROP FUNCTION notional").contains("DROPPED"));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = Server::spawn(dir.path(), &options);
    let port = server.address.rsplit(':').next().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_ferris-flight"))
        .args(["--port", port, "-e", call])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("notional"), "{stderr}");
}
