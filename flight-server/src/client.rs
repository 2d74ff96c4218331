//! `ferris-flight`: SQL against a running `ferris server` over Arrow Flight SQL, with results
//! as a table, CSV or JSON lines; without a statement, an interactive prompt.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use ferris_engine::statements::parser::with_option;
use futures::TryStreamExt;
use tonic::transport::Channel;

const USAGE: &str = "\
ferris-flight: SQL against a FerrisStreams Flight SQL server

Usage:
  ferris-flight [OPTIONS] -e \"SQL\"     run the statements given as text
  ferris-flight [OPTIONS] FILE.sql       run the statements of the file
  ferris-flight [OPTIONS]                an interactive prompt (statements end with ';')

Options:
  --host HOST            the server's host (default 127.0.0.1)
  --port PORT            the server's port (default 50051)
  --token TOKEN          the server's auth token (also FERRIS_AUTH_TOKEN)
  --tls                  connect over TLS, trusting the system's certificate authorities
  --tls-ca FILE          connect over TLS, trusting the authority in this PEM file
  --format FORMAT        table (default), csv or json (JSON lines)
  --follow               print rows as they arrive (for queries over watched sources)";

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Csv,
    Json,
}

struct Options {
    host: String,
    port: u16,
    token: Option<String>,
    /// TLS, with the PEM of the authority to trust (`None`: the system's).
    tls: Option<Option<String>>,
    format: Format,
    follow: bool,
    input: Option<Input>,
}

enum Input {
    Text(String),
    File(String),
    /// Statements sent one at a time, each reply printed (`ferris deploy`).
    Deploy(Vec<DeployStatement>),
}

/// A statement of a file `ferris deploy` sends.
pub struct DeployStatement {
    /// The job it creates, if it is a `CREATE STREAM|TABLE`: one that exists already is
    /// left alone if it was created from this same statement (at any parallelism), else an
    /// error.
    pub job: Option<String>,
    /// Its text.
    pub sql: String,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        host: "127.0.0.1".into(),
        port: 50051,
        token: std::env::var("FERRIS_AUTH_TOKEN").ok(),
        tls: None,
        format: Format::Table,
        follow: false,
        input: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--host" => options.host = value("--host")?,
            "--port" => {
                let port = value("--port")?;
                options.port = port
                    .parse()
                    .map_err(|_| format!("--port '{port}': not a port number"))?;
            }
            "--token" => options.token = Some(value("--token")?),
            "--tls" => {
                options.tls.get_or_insert(None);
            }
            "--tls-ca" => options.tls = Some(Some(value("--tls-ca")?)),
            "--format" => {
                options.format = match value("--format")?.as_str() {
                    "table" => Format::Table,
                    "csv" => Format::Csv,
                    "json" => Format::Json,
                    other => return Err(format!("--format '{other}': table, csv or json")),
                }
            }
            "--follow" => options.follow = true,
            "-e" => options.input = Some(Input::Text(value("-e")?)),
            file if !file.starts_with('-') && options.input.is_none() => {
                options.input = Some(Input::File(file.to_string()))
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(options)
}

/// Runs the command line `args` (without the program name).
pub fn main(args: Vec<String>) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ferris-flight: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    crate::block_on("ferris-flight", run(options))
}

async fn run(options: Options) -> Result<(), String> {
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let address = format!("{scheme}://{}:{}", options.host, options.port);
    let mut endpoint = Channel::from_shared(address.clone()).map_err(|e| e.to_string())?;
    if let Some(authority) = &options.tls {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(path) = authority {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach {address}: {e:?}"))?;
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(token) = &options.token {
        client.set_token(token.clone());
    }
    match &options.input {
        Some(Input::Text(sql)) => execute(&mut client, sql, &options).await,
        Some(Input::File(path)) => {
            let sql =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            execute(&mut client, &sql, &options).await
        }
        Some(Input::Deploy(statements)) => {
            for statement in statements {
                if let Some(job) = &statement.job
                    && let Some(kept) = kept_statement(&mut client, job).await?
                {
                    if same_statement(&kept, &statement.sql) {
                        println!("job {job} exists, created from this statement: left as it is");
                        continue;
                    }
                    return Err(format!(
                        "job '{job}' exists, created from another statement (SHOW CREATE JOB '{job}' shows it): DROP it first to create it from this one, or ALTER JOB {job} SET PARALLELISM n for another parallelism"
                    ));
                }
                execute(&mut client, &statement.sql, &options).await?;
            }
            Ok(())
        }
        None => prompt(&mut client, &options).await,
    }
}

/// The statement the job `job` was created from, if the server has such a job.
async fn kept_statement(
    client: &mut FlightSqlServiceClient<Channel>,
    job: &str,
) -> Result<Option<String>, String> {
    let sql = format!("SHOW CREATE JOB '{}'", job.replace('\'', "''"));
    let info = match client.execute(sql, None).await {
        Ok(info) => info,
        Err(e) if e.to_string().contains("no job of that name") => return Ok(None),
        Err(e) => return Err(format!("SHOW CREATE JOB '{job}': {e}")),
    };
    let mut statement = None;
    for_each_batch(client, info, |batch| {
        statement = statement.take().or_else(|| {
            batch
                .column_by_name("statement")
                .and_then(|c| c.as_string_opt::<i32>())
                .filter(|c| !c.is_empty())
                .map(|c| c.value(0).to_string())
        });
        Ok(())
    })
    .await?;
    statement
        .map(Some)
        .ok_or_else(|| format!("SHOW CREATE JOB '{job}' answered no statement"))
}

/// Hands each batch of the result that `info` describes to `take`, in order.
async fn for_each_batch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
    mut take: impl FnMut(RecordBatch) -> Result<(), String>,
) -> Result<(), String> {
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("the server sent no ticket")?;
        let mut batches = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        while let Some(batch) = batches.try_next().await.map_err(|e| e.to_string())? {
            take(batch)?;
        }
    }
    Ok(())
}

/// Whether two statements are the same but for the spaces around them, a final `;` and
/// their `'parallelism'`, which `ALTER JOB` changes in the kept one.
fn same_statement(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        let s = s.trim().trim_end_matches(';').trim_end();
        with_option(s, "parallelism", "any").unwrap_or_else(|_| s.to_string())
    };
    bare(a) == bare(b)
}

/// Sends `statements` (checked already) to the server given by `args` (`ferris-flight`'s
/// connection options), one at a time, printing each reply: `ferris deploy`.
pub fn deploy(statements: Vec<DeployStatement>, args: &[String]) -> ExitCode {
    let mut options = match parse(args) {
        Ok(options) if options.input.is_none() => options,
        Ok(_) => {
            eprintln!("ferris deploy: give the SQL file once");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ferris deploy: {e}");
            return ExitCode::from(2);
        }
    };
    options.input = Some(Input::Deploy(statements));
    crate::block_on("ferris deploy", run(options))
}

/// Where the prompt's lines come from: a line editor with history at a terminal, plain
/// standard input otherwise (a script piped in).
enum Lines {
    Editor {
        editor: Box<rustyline::DefaultEditor>,
        history: Option<std::path::PathBuf>,
    },
    Piped(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Lines {
    fn open() -> Self {
        if std::io::stdin().is_terminal()
            && let Ok(mut editor) = rustyline::DefaultEditor::new()
        {
            let history = std::env::var_os("HOME")
                .map(|home| std::path::Path::new(&home).join(".ferris_flight_history"));
            if let Some(path) = &history {
                // No history yet is fine.
                let _ = editor.load_history(path);
            }
            return Self::Editor {
                editor: Box::new(editor),
                history,
            };
        }
        Self::Piped(std::io::stdin().lock().lines())
    }

    /// The next line (`Ok(None)`: Ctrl-C at the prompt, which drops the statement being
    /// typed); `None` at the end of input.
    fn next(&mut self, continuing: bool) -> Option<Result<Option<String>, String>> {
        match self {
            Self::Editor { editor, .. } => {
                let prompt = if continuing { "     -> " } else { "ferris> " };
                match editor.readline(prompt) {
                    Ok(line) => Some(Ok(Some(line))),
                    Err(rustyline::error::ReadlineError::Interrupted) => Some(Ok(None)),
                    Err(rustyline::error::ReadlineError::Eof) => None,
                    Err(e) => Some(Err(e.to_string())),
                }
            }
            Self::Piped(lines) => lines
                .next()
                .map(|line| line.map(Some).map_err(|e| e.to_string())),
        }
    }

    fn remember(&mut self, statement: &str) {
        if let Self::Editor { editor, history } = self {
            let _ = editor.add_history_entry(statement.trim());
            if let Some(path) = history {
                let _ = editor.save_history(path);
            }
        }
    }
}

/// Reads statements (ending with `;`) and runs each; an error is shown and the prompt goes on.
async fn prompt(
    client: &mut FlightSqlServiceClient<Channel>,
    options: &Options,
) -> Result<(), String> {
    let mut lines = Lines::open();
    let mut statement = String::new();
    while let Some(line) = lines.next(!statement.is_empty()) {
        let Some(line) = line? else {
            statement.clear();
            continue;
        };
        statement.push_str(&line);
        statement.push('\n');
        if line.trim_end().ends_with(';') {
            let sql = std::mem::take(&mut statement);
            lines.remember(&sql);
            if let Err(e) = execute(client, &sql, options).await {
                eprintln!("error: {e}");
            }
        }
    }
    if !statement.trim().is_empty() {
        execute(client, &statement, options).await?;
    }
    Ok(())
}

async fn execute(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
    options: &Options,
) -> Result<(), String> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut printer = Printer::new(options.format);
    for_each_batch(client, info, |batch| printer.add(batch, options.follow)).await?;
    printer.finish()
}

/// Prints batches in one format; a table is printed at the end unless following.
struct Printer {
    format: Format,
    pending: Vec<RecordBatch>,
    rows: usize,
    header_done: bool,
}

impl Printer {
    fn new(format: Format) -> Self {
        Self {
            format,
            pending: vec![],
            rows: 0,
            header_done: false,
        }
    }

    fn add(&mut self, batch: RecordBatch, follow: bool) -> Result<(), String> {
        self.rows += batch.num_rows();
        self.pending.push(batch);
        if follow || self.format != Format::Table {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        let batches = std::mem::take(&mut self.pending);
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Table => {
                if !batches.is_empty() {
                    let table = pretty_format_batches(&batches).map_err(|e| e.to_string())?;
                    writeln!(out, "{table}").map_err(|e| e.to_string())?;
                }
            }
            Format::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(!self.header_done)
                    .build(&mut out);
                for batch in &batches {
                    writer.write(batch).map_err(|e| e.to_string())?;
                    self.header_done = true;
                }
            }
            Format::Json => {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut out);
                for batch in &batches {
                    writer.write(batch).map_err(|e| e.to_string())?;
                }
                writer.finish().map_err(|e| e.to_string())?;
            }
        }
        out.flush().map_err(|e| e.to_string())
    }

    fn finish(mut self) -> Result<(), String> {
        self.flush()?;
        if self.format == Format::Table {
            println!("({} rows)", self.rows);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::same_statement;

    #[test]
    fn a_kept_statement_is_the_same_at_any_parallelism_but_not_otherwise() {
        let file = "CREATE STREAM s AS SELECT a FROM t\n  WITH ('t.type' = 'kafka_source');\n";
        let altered = "CREATE STREAM s AS SELECT a FROM t\n  WITH ('parallelism' = '3', 't.type' = 'kafka_source')";
        assert!(same_statement(file, altered));
        assert!(same_statement(
            &file.replace("WITH (", "WITH ('parallelism' = '2', "),
            altered
        ));
        assert!(!same_statement(
            file,
            &altered.replace("SELECT a", "SELECT b")
        ));
        assert!(same_statement("SHOW JOBS", "SHOW JOBS;"));
    }
}
