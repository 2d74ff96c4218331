//! The `ferris` command: `run` a SQL file (or `-e` text), `explain` it, or serve Flight SQL.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use ferris_engine::statements::explain::explain as explain_statement;
use ferris_engine::{EngineError, RunningJob, Session, Statement, StatementOutput};
use futures::StreamExt;

const USAGE: &str = "\
ferris: a streaming SQL engine

Usage:
  ferris run [--state-dir DIR] FILE.sql
                             run every statement of the file; with a state dir, jobs
                             checkpoint there and resume from it when run again
  ferris run [--state-dir DIR] -e \"SQL\"
                             run the statements given as text
  ferris run --instance I [--state-dir DIR] FILE.sql
                             run only instance I (from 0) of each parallel job; the
                             job's other instances run in other processes, each given
                             its own I, and meet through Kafka (docs/parallelism.md);
                             also from FERRIS_INSTANCE
  ferris explain FILE.sql    print the plan of every query of the file
  ferris deploy FILE.sql --server HOST:PORT [--token TOKEN] [--tls] [--tls-ca FILE]
                             check the file's statements, then run them one by one on a
                             running server (its jobs start there)
  ferris server [--flight HOST:PORT] [--http HOST:PORT] [--auth-token TOKEN] [--kafka HOST:PORT]
                [--tls-cert FILE --tls-key FILE] [--state-dir DIR]
                [--cluster etcd://HOST:PORT[,HOST:PORT][/NAME] [--node-id ID] [--advertise HOST:PORT]
                 [--slots N] [--lease-ttl SECONDS]]
                [--config FILE.yaml [--profile NAME]]
                             serve Arrow Flight SQL (default 127.0.0.1:50051), and
                             /health, /ready, /metrics and a JSON API (/api/v1/,
                             docs/openapi.yaml) over HTTP; also from FERRIS_FLIGHT,
                             FERRIS_HTTP, FERRIS_AUTH_TOKEN, FERRIS_KAFKA_BOOTSTRAP (the
                             cluster SHOW TOPICS describes), FERRIS_TLS_CERT, FERRIS_TLS_KEY,
                             FERRIS_STATE_DIR (checkpoints and the jobs started again
                             after a restart); the same settings, and defaults for every
                             job's WITH, from a YAML file (FERRIS_CONFIG, FERRIS_PROFILE):
                             docs/operations.md. With --cluster (FERRIS_CLUSTER,
                             FERRIS_NODE_ID, ...) the server is a node of a cluster
                             coordinated by etcd: docs/cluster.md
  ferris --help | --version

Every command takes --log-format text|json (or FERRIS_LOG_FORMAT): log lines (warnings,
restores, retries) as text or as JSON objects, each with the job's name.

Jobs whose sources all end (files not watched) finish by themselves; with a watched
source, Ctrl-C stops every source, flushes every window and commits every sink. With a
state dir, Ctrl-C stops each job at a checkpoint instead, windows open, to resume them.";

/// How often the progress line is redrawn, and a streaming query's rows are printed.
const REFRESH: Duration = Duration::from_millis(500);

/// Runs the command line `args` (without the program name).
pub fn main(mut args: Vec<String>) -> ExitCode {
    let log_format =
        take_option(&mut args, "--log-format").or_else(|| std::env::var("FERRIS_LOG_FORMAT").ok());
    let instance = take_option(&mut args, "--instance")
        .or_else(|| std::env::var("FERRIS_INSTANCE").ok())
        .map(|i| i.parse::<usize>());
    let instance = match instance {
        None => None,
        Some(Ok(index)) => Some(index),
        Some(Err(_)) => {
            eprintln!("ferris: error: --instance takes an instance's number, from 0");
            return ExitCode::from(2);
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The server may take its log format from its config file.
    if args.first() == Some(&"server") {
        return server(&args[1..], log_format);
    }
    if let Err(e) = init_logs(log_format.as_deref()) {
        eprintln!("ferris: error: {e}");
        return ExitCode::from(2);
    }
    let (command, input, state_dir) = match args.as_slice() {
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["--version" | "-V"] => {
            println!("ferris {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [command @ ("run" | "explain"), rest @ ..] => {
            let (state_dir, rest) = match rest {
                ["--state-dir", dir, rest @ ..] => (Some(dir.to_string()), rest),
                rest => (std::env::var("FERRIS_STATE_DIR").ok(), rest),
            };
            let input = match rest {
                ["-e", sql] => Input::Text(sql.to_string()),
                [file] if !file.starts_with('-') => Input::File(file.to_string()),
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            };
            (*command, input, state_dir)
        }
        ["deploy", file, options @ ..] => return deploy(file, options),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    crate::block_on("ferris", async {
        let sql = input.read()?;
        let mut session = Session::new();
        if let Some(dir) = &state_dir {
            session.set_state_dir(dir);
        }
        if let Some(index) = instance {
            session.set_process_instance(index);
        }
        watch_ctrl_c(&session);
        let statements = session.parse(&sql).map_err(|e| input.describe(e))?;
        if command == "explain" {
            explain(&mut session, &statements).await
        } else {
            run(&mut session, &statements).await
        }
        .map_err(|e| input.describe(e))
    })
}

enum Input {
    File(String),
    Text(String),
}

/// Takes `--name VALUE` out of `args`, wherever it is.
fn take_option(args: &mut Vec<String>, name: &str) -> Option<String> {
    let at = args.iter().position(|a| a == name)?;
    if at + 1 >= args.len() {
        return None;
    }
    let value = args.remove(at + 1);
    args.remove(at);
    Some(value)
}

/// Logs (warnings, restores, retries) go to stderr through `tracing`, at INFO and above,
/// as `text` (the default: `LEVEL job{job=name}: message`, for people) or `json` (an
/// object per line, with a timestamp, for log collectors); each line a job logs carries its
/// name. (Results, summaries and prompts are printed, not logged.)
fn init_logs(format: Option<&str>) -> Result<(), String> {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false);
    let installed = match format.unwrap_or("text") {
        "text" => logs
            .without_time()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        "json" => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        other => return Err(format!("--log-format '{other}': text or json")),
    };
    // Already installed (a test calling `main` twice): keep that one.
    let _ = installed;
    Ok(())
}

impl Input {
    fn read(&self) -> Result<String, String> {
        match self {
            Self::File(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))
            }
            Self::Text(sql) => Ok(sql.clone()),
        }
    }

    /// The error, with SQL positions given as `file:line:column`.
    fn describe(&self, error: EngineError) -> String {
        let name = match self {
            Self::File(path) => path.as_str(),
            Self::Text(_) => "<-e>",
        };
        match error {
            EngineError::Sql { message, position }
            | EngineError::Option {
                message,
                position: Some(position),
            } => format!("{name}:{position}: {message}"),
            other => other.to_string(),
        }
    }
}

/// The first Ctrl-C stops sources cleanly; a second one exits at once.
fn watch_ctrl_c(session: &Session) {
    let stop = session.stop_signal();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nferris: stopping (Ctrl-C again to exit at once)");
            stop.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

async fn run(session: &mut Session, statements: &[Statement]) -> Result<(), EngineError> {
    let mut watching = Vec::new();
    for statement in statements {
        match session.execute(statement).await? {
            StatementOutput::Rows(rows) => print_rows(rows).await?,
            // A bounded job finishes before the next statement, which may read its output.
            StatementOutput::Job(job) if job.bounded => finish(job).await?,
            StatementOutput::Job(job) => {
                eprintln!("ferris: job {} running; Ctrl-C to stop", job.name);
                watching.push(job);
            }
        }
    }
    for job in watching {
        finish(job).await?;
    }
    Ok(())
}

async fn explain(session: &mut Session, statements: &[Statement]) -> Result<(), EngineError> {
    for statement in statements {
        let Some(explain) = explain_statement(statement) else {
            continue;
        };
        println!("-- statement at line {}", statement.position.line);
        if !statement.hints.is_empty() {
            println!("-- hints: {}", statement.hints);
        }
        if let StatementOutput::Rows(rows) = session.execute(&explain).await? {
            print_rows(rows).await?;
        }
    }
    Ok(())
}

/// Prints rows as tables: all at once for a finite result, every refresh for a live one.
async fn print_rows(
    mut rows: datafusion::physical_plan::SendableRecordBatchStream,
) -> Result<(), EngineError> {
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut total = 0;
    loop {
        match tokio::time::timeout(REFRESH, rows.next()).await {
            Ok(Some(batch)) => {
                let batch = batch?;
                total += batch.num_rows();
                pending.push(batch);
            }
            Ok(None) => break,
            Err(_) if pending.is_empty() => {}
            Err(_) => print_batches(&std::mem::take(&mut pending))?,
        }
    }
    if !pending.is_empty() || total == 0 {
        print_batches(&pending)?;
    }
    println!("({total} rows)");
    Ok(())
}

fn print_batches(batches: &[RecordBatch]) -> Result<(), EngineError> {
    let table = pretty_format_batches(batches).map_err(datafusion::error::DataFusionError::from)?;
    println!("{table}");
    Ok(())
}

/// Waits for a job, with a progress line while stderr is a terminal and a summary after.
async fn finish(job: RunningJob) -> Result<(), EngineError> {
    let name = job.name.clone();
    let interactive = std::io::stderr().is_terminal();
    while interactive && !job.is_finished() {
        eprint!("\r\x1b[2K{name}: {}", job.progress());
        tokio::time::sleep(REFRESH).await;
    }
    if interactive {
        eprint!("\r\x1b[2K");
    }
    let summary = job.wait().await?;
    eprintln!("{name}: {summary}");
    Ok(())
}

/// `ferris deploy FILE --server HOST:PORT ...`: the file's statements, checked here, run on
/// the server one at a time; a job that exists, created from the same statement, is left as
/// it is (deploying a file again is a no-op), one created from another is an error.
fn deploy(file: &str, options: &[&str]) -> ExitCode {
    let input = Input::File(file.to_string());
    let statements = input
        .read()
        .and_then(|sql| Session::new().parse(&sql).map_err(|e| input.describe(e)));
    let statements = match statements {
        Ok(statements) => statements,
        Err(e) => {
            eprintln!("ferris deploy: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut args = Vec::new();
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match (*option, rest.clone().next()) {
            ("--server", Some(server)) => {
                rest.next();
                let Some((host, port)) = server.rsplit_once(':') else {
                    eprintln!("ferris deploy: --server '{server}': expected HOST:PORT");
                    return ExitCode::from(2);
                };
                args.extend(["--host".to_string(), host.to_string()]);
                args.extend(["--port".to_string(), port.to_string()]);
            }
            (other, _) => args.push(other.to_string()),
        }
    }
    let statements = statements
        .into_iter()
        .map(|s| crate::client::DeployStatement {
            job: s.kind.explained().and_then(|e| e.job).map(str::to_string),
            sql: s.text,
        })
        .collect();
    crate::client::deploy(statements, &args)
}

/// Ctrl-C, or SIGTERM (how Kubernetes and systemd stop a process).
async fn stop_requested() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async {
            match &mut terminate {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        } => {}
    }
}

/// The node settings of `ferris server --cluster etcd://...`.
fn cluster_config(
    url: &str,
    state_dir: Option<&str>,
    setting: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<ferris_cluster::ClusterConfig, String> {
    let (endpoints, name) = ferris_cluster::parse_cluster_url(url).map_err(|e| e.to_string())?;
    let state_dir = state_dir.ok_or(
        "--cluster needs --state-dir: a folder every node reads, or s3://..., where jobs keep the checkpoints they move between nodes with",
    )?;
    let node_id = setting("node_id", "FERRIS_NODE_ID").unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    });
    let number = |key: &str, variable: &str, flag: &str| -> Result<Option<u64>, String> {
        setting(key, variable)
            .map(|text| {
                text.trim_end_matches('s')
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("{flag} '{text}': expected a whole number above 0"))
            })
            .transpose()
    };
    let slots = number("slots", "FERRIS_SLOTS", "--slots")?
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    let lease_ttl = number("lease_ttl", "FERRIS_LEASE_TTL", "--lease-ttl")?.unwrap_or(5);
    Ok(ferris_cluster::ClusterConfig {
        endpoints,
        node_id,
        advertise: setting("advertise", "FERRIS_ADVERTISE").unwrap_or_default(),
        http: None,
        slots,
        lease_ttl: std::time::Duration::from_secs(lease_ttl),
        state_dir: state_dir.to_string(),
        name,
    })
}

/// `ferris server`: Flight SQL until Ctrl-C or SIGTERM.
fn server(options: &[&str], log_format: Option<String>) -> ExitCode {
    // A flag wins over its variable, which wins over the config file.
    let mut flags: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    let (mut config, mut profile) = (
        std::env::var("FERRIS_CONFIG").ok(),
        std::env::var("FERRIS_PROFILE").ok(),
    );
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = rest.next().map(|v| v.to_string());
        let key = match *option {
            "--flight" => "flight",
            "--auth-token" => "auth_token",
            "--kafka" => "kafka",
            "--http" => "http",
            "--tls-cert" => "tls_cert",
            "--tls-key" => "tls_key",
            "--state-dir" => "state_dir",
            "--cluster" => "cluster",
            "--node-id" => "node_id",
            "--advertise" => "advertise",
            "--slots" => "slots",
            "--lease-ttl" => "lease_ttl",
            "--config" => "config",
            "--profile" => "profile",
            _ => "",
        };
        match (key, value) {
            ("config", Some(value)) => config = Some(value),
            ("profile", Some(value)) => profile = Some(value),
            ("", _) | (_, None) => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            (key, Some(value)) => {
                flags.insert(key, value);
            }
        }
    }
    let file = match (&config, &profile) {
        (Some(path), profile) => match crate::config::ServerFile::load(path, profile.as_deref()) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("ferris: error: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(_)) => {
            eprintln!("ferris: error: --profile needs --config FILE");
            return ExitCode::from(2);
        }
        (None, None) => crate::config::ServerFile::default(),
    };
    let setting = |key: &str, variable: &str| {
        flags
            .get(key)
            .cloned()
            .or_else(|| std::env::var(variable).ok())
            .or_else(|| file.server.get(key).cloned())
    };
    let flight = setting("flight", "FERRIS_FLIGHT").unwrap_or_else(|| "127.0.0.1:50051".into());
    let token = setting("auth_token", "FERRIS_AUTH_TOKEN");
    let kafka = flags
        .get("kafka")
        .cloned()
        .or_else(|| file.server.get("kafka").cloned());
    let http = setting("http", "FERRIS_HTTP");
    let tls_cert = setting("tls_cert", "FERRIS_TLS_CERT");
    let tls_key = setting("tls_key", "FERRIS_TLS_KEY");
    let state_dir = setting("state_dir", "FERRIS_STATE_DIR");
    let log_format = log_format.or_else(|| file.server.get("log_format").cloned());
    if let Err(e) = init_logs(log_format.as_deref()) {
        eprintln!("ferris: error: {e}");
        return ExitCode::from(2);
    }
    let flight = match flight.parse() {
        Ok(address) => address,
        Err(e) => {
            eprintln!(
                "ferris: error: --flight '{flight}': {e} (expected HOST:PORT, such as 127.0.0.1:50051)"
            );
            return ExitCode::from(2);
        }
    };
    if token.is_none() {
        eprintln!("ferris: warning: no --auth-token: anyone who can reach the server can use it");
    }
    let http = match http.map(|h| h.parse().map_err(|e| (h, e))).transpose() {
        Ok(address) => address,
        Err((text, e)) => {
            eprintln!(
                "ferris: error: --http '{text}': {e} (expected HOST:PORT, such as 127.0.0.1:9090)"
            );
            return ExitCode::from(2);
        }
    };
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some((cert.into(), key.into())),
        (None, None) => None,
        _ => {
            eprintln!("ferris: error: --tls-cert and --tls-key go together");
            return ExitCode::from(2);
        }
    };
    let cluster = match setting("cluster", "FERRIS_CLUSTER") {
        Some(url) => match cluster_config(&url, state_dir.as_deref(), &setting) {
            Ok(cluster) => Some(cluster),
            Err(e) => {
                eprintln!("ferris: error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let config = crate::server::ServerConfig {
        flight,
        tls,
        http,
        kafka,
        auth_token: token,
        state_dir: state_dir.map(Into::into),
        job_defaults: file.jobs,
        cluster,
    };
    crate::block_on("ferris", async {
        crate::server::serve(
            config,
            |flight, http| {
                eprintln!("ferris: Flight SQL listening on {flight}");
                if let Some(http) = http {
                    eprintln!("ferris: HTTP (/health, /ready, /metrics) listening on {http}");
                }
            },
            async {
                stop_requested().await;
                eprintln!("ferris: stopping the server");
            },
        )
        .await
        .map_err(|e| e.to_string())
    })
}
