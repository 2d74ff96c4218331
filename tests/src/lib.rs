//! The conformance runner: a streaming SQL job, its input files and its expected result.
//!
//! A case is a folder (format in `shared/conformance/README.md`): `query.sql` with `{in:NAME}`
//! and `{out}` placeholders, input files, `expected.jsonl` and `meta.json`. [`run_case`] runs
//! `ferris run` on it in a scratch folder and compares the sink's output by the case's mode.
//! [`run_query_restored`] replays a case through a checkpoint: killed after its second one,
//! run again from it. Cases listed in an expected-failures file are reported as such, and reported loudly when
//! they start passing. In `changes` mode a retraction (`_op` of `-D`, `-U`, `delete`,
//! `retract`) is not compared as a row: it withdraws its key's earlier row.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use serde_json::value::RawValue;

/// One case folder.
#[derive(Debug, Clone)]
pub struct Case {
    /// The folder's name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
}

/// How a case's output is compared (`meta.json`).
#[derive(Debug, Clone)]
pub struct Meta {
    /// `final`, `rows` or `changes`.
    pub mode: String,
    /// The columns that identify a row.
    pub key: Vec<String>,
    /// Relative tolerance for floats.
    pub float_tol: Option<f64>,
    /// Columns that never decrease from one update of a key to the next (`changes`).
    pub monotonic: Vec<String>,
}

/// A field of an output row: its parsed value and its exact text (for decimals).
#[derive(Debug, Clone)]
struct Field {
    value: Value,
    raw: String,
}

type Row = HashMap<String, Field>;

/// What happened to a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Pass,
    /// It failed, and was not expected to.
    Fail(String),
    /// It failed, as the expected-failures list says it would.
    ExpectedFailure(String),
    /// It passed although the expected-failures list says it fails: update the list.
    UnexpectedPass,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => write!(f, "ok"),
            Self::Fail(why) => write!(f, "FAILED: {why}"),
            Self::ExpectedFailure(reason) => write!(f, "expected failure ({reason})"),
            Self::UnexpectedPass => {
                write!(f, "UNEXPECTED PASS: remove it from the expected failures")
            }
        }
    }
}

/// The case folders under `root`, by name.
pub fn load_cases(root: &Path) -> Result<Vec<Case>, String> {
    let entries = std::fs::read_dir(root)
        .map_err(|e| format!("cannot read conformance folder {}: {e}", root.display()))?;
    let mut cases: Vec<Case> = entries
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let name = dir.file_name()?.to_string_lossy().to_string();
            dir.join("query.sql")
                .is_file()
                .then_some(Case { name, dir })
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// `name: reason` lines (and `#` comments) of an expected-failures file; none if it is absent.
pub fn load_expected_failures(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| match l.split_once(':') {
            Some((name, reason)) => (name.trim().to_string(), reason.trim().to_string()),
            None => (l.trim().to_string(), String::new()),
        })
        .collect()
}

/// Runs a case with `ferris` and judges it against the expected-failures list.
pub fn judge(ferris: &Path, case: &Case, expected_failures: &BTreeMap<String, String>) -> Outcome {
    let result = run_case(ferris, case, &[]);
    match (result, expected_failures.get(&case.name)) {
        (Ok(()), None) => Outcome::Pass,
        (Ok(()), Some(_)) => Outcome::UnexpectedPass,
        (Err(why), None) => Outcome::Fail(why),
        (Err(_), Some(reason)) => Outcome::ExpectedFailure(reason.clone()),
    }
}

/// The names the case's query declares as `file_source`s.
pub fn source_names(case: &Case) -> Result<Vec<String>, String> {
    let sql = std::fs::read_to_string(case.dir.join("query.sql")).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for (at, _) in sql.match_indices(".type'") {
        let start = sql[..at].rfind('\'').map_or(0, |i| i + 1);
        let rest = sql[at + ".type'".len()..]
            .trim_start()
            .trim_start_matches('=')
            .trim_start();
        if rest.starts_with("'file_source'") {
            names.push(sql[start..at].to_string());
        }
    }
    Ok(names)
}

/// The case's comparison mode (`final`, `rows`, `changes`).
pub fn mode(case: &Case) -> Result<String, String> {
    read_meta(&case.dir).map(|m| m.mode)
}

/// Runs the case's query in a scratch folder and compares its output. `extra_options` are
/// added to the query's `WITH` clause (e.g. a source's batch size).
pub fn run_case(
    ferris: &Path,
    case: &Case,
    extra_options: &[(String, String)],
) -> Result<(), String> {
    let output = run_query(ferris, case, extra_options)?;
    check_output(case, &output)
}

/// Compares a run's output with the case's expected rows, by the case's mode.
pub fn check_output(case: &Case, output: &str) -> Result<(), String> {
    let meta = read_meta(&case.dir)?;
    let expected = read_rows(&case.dir.join("expected.jsonl"))?;
    compare(&meta, &expected, output)
}

/// Runs the case's query and returns the raw text of its output files, in name order.
pub fn run_query(
    ferris: &Path,
    case: &Case,
    extra_options: &[(String, String)],
) -> Result<String, String> {
    let scratch = Scratch::new(case, extra_options)?;
    scratch.run_to_end(ferris, &[])?;
    read_output(&scratch.out)
}

/// How a run through a checkpoint and a restore went.
#[derive(Debug)]
pub struct Restored {
    /// The raw text of the output files, in name order.
    pub output: String,
    /// Whether the second run resumed from a checkpoint of the first (a job that ended
    /// before its second checkpoint, or takes none, ran whole the second time).
    pub resumed: bool,
}

/// Runs the case's query with a state dir, kills it (SIGKILL) once its second checkpoint is
/// complete, then runs it again to its end from that checkpoint. `extra_options` as for
/// [`run_query`]; `'checkpoint.interval'` among them makes checkpoints frequent.
pub fn run_query_restored(
    ferris: &Path,
    case: &Case,
    extra_options: &[(String, String)],
) -> Result<Restored, String> {
    run_query_restored_with(ferris, case, extra_options, extra_options)
}

/// [`run_query_restored`], the second run with `after` for its options instead of `before`
/// (another `'parallelism'`: a job restored at another parallelism).
pub fn run_query_restored_with(
    ferris: &Path,
    case: &Case,
    before: &[(String, String)],
    after: &[(String, String)],
) -> Result<Restored, String> {
    let scratch = Scratch::new(case, before)?;
    let state = ["--state-dir", "state"];
    let mut first = scratch
        .command(ferris, &state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ferris.display()))?;
    let second_checkpoint = scratch
        .dir
        .path()
        .join("state")
        .join(job_name(&scratch.query)?)
        .join("chk-0000000002/_manifest.json");
    loop {
        if first.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if second_checkpoint.exists() {
            first.kill().map_err(|e| e.to_string())?;
            first.wait().map_err(|e| e.to_string())?;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    scratch.write_query(case, after)?;
    let second = scratch.run_to_end(ferris, &state)?;
    Ok(Restored {
        output: read_output(&scratch.out)?,
        resumed: String::from_utf8_lossy(&second.stderr).contains("resumes from checkpoint"),
    })
}

/// The name of the job a query file creates (`CREATE STREAM|TABLE name`).
fn job_name(query: &Path) -> Result<String, String> {
    let sql = std::fs::read_to_string(query).map_err(|e| e.to_string())?;
    let words: Vec<&str> = sql.split_whitespace().collect();
    words
        .windows(3)
        .find(|w| {
            w[0].eq_ignore_ascii_case("CREATE")
                && (w[1].eq_ignore_ascii_case("STREAM") || w[1].eq_ignore_ascii_case("TABLE"))
        })
        .map(|w| w[2].to_string())
        .ok_or_else(|| "the query creates no stream or table".to_string())
}

/// A case's query written into a scratch folder, its placeholders filled.
struct Scratch {
    dir: tempfile::TempDir,
    query: PathBuf,
    out: PathBuf,
}

impl Scratch {
    fn new(case: &Case, extra_options: &[(String, String)]) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let scratch = Self {
            query: dir.path().join("query.sql"),
            out: dir.path().join("out.jsonl"),
            dir,
        };
        scratch.write_query(case, extra_options)?;
        Ok(scratch)
    }

    /// Writes the case's query, its placeholders filled and `extra_options` added.
    fn write_query(&self, case: &Case, extra_options: &[(String, String)]) -> Result<(), String> {
        let mut sql =
            std::fs::read_to_string(case.dir.join("query.sql")).map_err(|e| e.to_string())?;
        while let Some(start) = sql.find("{in:") {
            let end = start + sql[start..].find('}').ok_or("unclosed {in: placeholder")?;
            let file = case.dir.join(&sql[start + 4..end]);
            sql.replace_range(start..=end, &file.display().to_string());
        }
        sql = sql.replace("{out}", &self.out.display().to_string());
        for (key, value) in extra_options {
            // An option the query sets already takes the new value (an option may not repeat).
            let set = format!("'{key}' = '");
            if let Some(start) = sql.find(&set).map(|at| at + set.len()) {
                let end = start + sql[start..].find('\'').ok_or("an unclosed option value")?;
                sql.replace_range(start..end, value);
                continue;
            }
            let at = sql
                .rfind("WITH (")
                .ok_or("the query has no WITH clause to add options to")?;
            sql.insert_str(at + "WITH (".len(), &format!("'{key}' = '{value}', "));
        }
        std::fs::write(&self.query, sql).map_err(|e| e.to_string())
    }

    /// `ferris run ARGS query.sql`, in the scratch folder.
    fn command(&self, ferris: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(ferris);
        command
            .arg("run")
            .args(args)
            .arg(&self.query)
            .current_dir(self.dir.path());
        command
    }

    /// `ferris run ARGS query.sql` to its end; an error unless it succeeds.
    fn run_to_end(&self, ferris: &Path, args: &[&str]) -> Result<std::process::Output, String> {
        let run = self
            .command(ferris, args)
            .output()
            .map_err(|e| format!("cannot start {}: {e}", ferris.display()))?;
        if !run.status.success() {
            return Err(format!(
                "ferris run exited with {}: {}",
                run.status,
                String::from_utf8_lossy(&run.stderr).trim()
            ));
        }
        Ok(run)
    }
}

fn read_meta(dir: &Path) -> Result<Meta, String> {
    let text =
        std::fs::read_to_string(dir.join("meta.json")).map_err(|e| format!("meta.json: {e}"))?;
    let meta: Value = serde_json::from_str(&text).map_err(|e| format!("meta.json: {e}"))?;
    let strings = |key: &str| -> Vec<String> {
        meta[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_lowercase))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Meta {
        mode: meta["mode"]
            .as_str()
            .ok_or("meta.json: no mode")?
            .to_string(),
        key: strings("key"),
        float_tol: meta["float_tol"].as_f64(),
        monotonic: strings("monotonic"),
    })
}

/// The text of a sink's output: the file, or every file of the folder in name order.
fn read_output(path: &Path) -> Result<String, String> {
    if path.is_file() {
        return std::fs::read_to_string(path).map_err(|e| e.to_string());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("no output at {}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut text = String::new();
    for file in files {
        text.push_str(&std::fs::read_to_string(&file).map_err(|e| e.to_string())?);
    }
    Ok(text)
}

fn read_rows(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_rows(&text)
}

/// JSON lines into rows with lower-cased column names.
fn parse_rows(text: &str) -> Result<Vec<Row>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(line)
                .map_err(|e| format!("output line {}: {e}: {line}", i + 1))?;
            fields
                .into_iter()
                .map(|(name, raw)| {
                    let value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                    Ok((
                        name.to_lowercase(),
                        Field {
                            value,
                            raw: raw.get().to_string(),
                        },
                    ))
                })
                .collect()
        })
        .collect()
}

/// Compares output rows with expected rows by the case's mode.
fn compare(meta: &Meta, expected: &[Row], output: &str) -> Result<(), String> {
    let actual = parse_rows(output)?;
    let key_of = |row: &Row, reference: Option<&Row>| -> Result<String, String> {
        meta.key
            .iter()
            .map(|k| {
                let field = row
                    .get(k)
                    .ok_or_else(|| format!("a row has no key column '{k}'"))?;
                // With no row expected, any row is unexpected: its key is shown as it is.
                let kind = reference.map_or(&Value::Null, |reference| &reference[k].value);
                Ok(canonical(kind, field))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(|parts| parts.join("|"))
    };
    let reference = expected.first();
    let mut wanted: HashMap<String, &Row> = HashMap::new();
    for row in expected {
        wanted.insert(key_of(row, reference)?, row);
    }
    let mut got: HashMap<String, &Row> = HashMap::new();
    match meta.mode.as_str() {
        "final" | "rows" => {
            for row in &actual {
                if got.insert(key_of(row, reference)?, row).is_some() {
                    return Err(format!(
                        "key {} appears twice in the output",
                        key_of(row, reference)?
                    ));
                }
            }
        }
        "changes" => {
            for row in &actual {
                let retraction = row
                    .get("_op")
                    .and_then(|f| f.value.as_str())
                    .is_some_and(|op| {
                        matches!(
                            op.to_lowercase().as_str(),
                            "-d" | "-u" | "delete" | "retract"
                        )
                    });
                let key = key_of(row, reference)?;
                if retraction {
                    // The key's earlier row no longer holds (e.g. a session merged away).
                    got.remove(&key);
                    continue;
                }
                if let Some(previous) = got.get(&key) {
                    for column in &meta.monotonic {
                        let before = previous.get(column).and_then(|f| f.value.as_f64());
                        let after = row.get(column).and_then(|f| f.value.as_f64());
                        if let (Some(before), Some(after)) = (before, after)
                            && after < before
                        {
                            return Err(format!(
                                "'{column}' of key {key} went down from {before} to {after}"
                            ));
                        }
                    }
                }
                got.insert(key, row);
            }
        }
        other => return Err(format!("unknown mode '{other}'")),
    }
    let mut problems = Vec::new();
    for (key, expected_row) in &wanted {
        match got.get(key) {
            None => problems.push(format!("missing row {key}")),
            Some(actual_row) => {
                for (column, expected_field) in expected_row.iter() {
                    let Some(actual_field) = actual_row.get(column) else {
                        problems.push(format!("row {key} has no column '{column}'"));
                        continue;
                    };
                    if !equal(&expected_field.value, actual_field, meta.float_tol) {
                        problems.push(format!(
                            "row {key}: '{column}' is {}, expected {}",
                            actual_field.raw, expected_field.raw
                        ));
                    }
                }
            }
        }
    }
    for key in got.keys().filter(|k| !wanted.contains_key(*k)) {
        problems.push(format!("unexpected row {key}"));
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    let shown = problems.len().min(10);
    Err(format!(
        "{} differences ({} rows expected, {} written), first {shown}:\n  {}",
        problems.len(),
        expected.len(),
        actual.len(),
        problems[..shown].join("\n  ")
    ))
}

/// A key part: the actual value normalised as the expected value's kind says.
fn canonical(reference: &Value, field: &Field) -> String {
    // An expected row's own value is in the tagged form.
    match kind(&field.value) {
        Kind::Timestamp(ms) => return format!("ts:{ms}"),
        Kind::Decimal(dec) => {
            return normalise_decimal(dec).map_or_else(|| dec.to_string(), |d| format!("dec:{d}"));
        }
        _ => {}
    }
    match kind(reference) {
        Kind::Timestamp(_) => timestamp_candidates(&field.value)
            .first()
            .map_or_else(|| field.raw.clone(), |ms| format!("ts:{ms}")),
        Kind::Decimal(_) => decimal_text(&field.value, &field.raw)
            .map_or_else(|| field.raw.clone(), |d| format!("dec:{d}")),
        Kind::Float(_) | Kind::Other => match &field.value {
            Value::Number(n) => n
                .as_f64()
                .map_or_else(|| field.raw.clone(), |f| format!("{f}")),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

enum Kind<'a> {
    Timestamp(i64),
    Decimal(&'a str),
    Float(f64),
    Other,
}

fn kind(expected: &Value) -> Kind<'_> {
    if let Some(ms) = expected.get("ts_ms").and_then(Value::as_i64) {
        return Kind::Timestamp(ms);
    }
    if let Some(dec) = expected.get("dec").and_then(Value::as_str) {
        return Kind::Decimal(dec);
    }
    match expected {
        Value::Number(n) if n.is_f64() => Kind::Float(n.as_f64().unwrap_or(f64::NAN)),
        _ => Kind::Other,
    }
}

fn equal(expected: &Value, actual: &Field, float_tol: Option<f64>) -> bool {
    match kind(expected) {
        Kind::Timestamp(ms) => {
            // An integer's unit is not known: it may be seconds, ms, µs or ns.
            timestamp_candidates(&actual.value).contains(&ms)
        }
        Kind::Decimal(dec) => decimal_text(&actual.value, &actual.raw)
            .is_some_and(|text| normalise_decimal(dec) == Some(text)),
        Kind::Float(want) => actual.value.as_f64().is_some_and(|got| {
            let tol = float_tol.unwrap_or(0.0);
            got == want || (got - want).abs() <= tol * want.abs().max(got.abs())
        }),
        Kind::Other => match (expected, &actual.value) {
            (Value::Number(want), Value::Number(got)) => want.as_f64() == got.as_f64(),
            (want, got) => want == got,
        },
    }
}

/// The epoch milliseconds an output value may stand for.
fn timestamp_candidates(value: &Value) -> Vec<i64> {
    match value {
        Value::String(text) => parse_timestamp(text).into_iter().collect(),
        Value::Number(n) => match n.as_i64() {
            Some(v) => vec![v.saturating_mul(1000), v, v / 1000, v / 1_000_000],
            None => vec![],
        },
        _ => vec![],
    }
}

fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    let normal = text.replace(' ', "T");
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(&normal, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// The exact decimal an output value (a JSON number's text, or a string) holds.
fn decimal_text(value: &Value, raw: &str) -> Option<String> {
    match value {
        Value::String(s) => normalise_decimal(s),
        Value::Number(_) => normalise_decimal(raw),
        _ => None,
    }
}

/// `-0012.3400` -> `-12.34`; `5.` -> `5`; rejects exponents and other text.
fn normalise_decimal(text: &str) -> Option<String> {
    let text = text.trim();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    Some(if body == "0" {
        body
    } else {
        format!("{sign}{body}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mode: &str, key: &[&str]) -> Meta {
        Meta {
            mode: mode.into(),
            key: key.iter().map(|k| k.to_string()).collect(),
            float_tol: Some(1e-9),
            monotonic: vec!["n".into()],
        }
    }

    #[test]
    fn values_compare_by_the_readme_rules() {
        let expected = parse_rows(
            "{\"K\": \"a\", \"ts\": {\"ts_ms\": 1772443800000}, \"d\": {\"dec\": \"12.3400\"}, \"f\": 0.1, \"n\": 2}\n",
        )
        .unwrap();
        for good in [
            "{\"k\":\"a\",\"ts\":\"2026-03-02T09:30:00\",\"d\":12.34,\"f\":0.1000000000001,\"n\":2.0,\"extra\":1}",
            "{\"k\":\"a\",\"ts\":\"2026-03-02 09:30:00.000Z\",\"d\":\"12.340\",\"f\":0.1,\"n\":2}",
            "{\"k\":\"a\",\"ts\":1772443800,\"d\":12.3400,\"f\":0.1,\"n\":2}",
            "{\"k\":\"a\",\"ts\":1772443800000000000,\"d\":12.34,\"f\":0.1,\"n\":2}",
        ] {
            compare(&meta("final", &["k"]), &expected, good)
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "{\"k\":\"a\",\"ts\":\"2026-03-02T09:30:01\",\"d\":12.34,\"f\":0.1,\"n\":2}",
            "{\"k\":\"a\",\"ts\":1772443800000,\"d\":12.3400001,\"f\":0.1,\"n\":2}",
            "{\"k\":\"a\",\"ts\":1772443800000,\"d\":12.34,\"f\":0.11,\"n\":2}",
            "{\"k\":\"a\",\"ts\":1772443800000,\"d\":12.34,\"f\":0.1,\"n\":3}",
            "{\"k\":\"a\",\"ts\":1772443800000,\"d\":12.34,\"f\":0.1}",
            "{\"k\":\"b\",\"ts\":1772443800000,\"d\":12.34,\"f\":0.1,\"n\":2}",
            "{\"k\":\"a\",\"ts\":1772443800000,\"d\":12.34,\"f\":0.1,\"n\":2}\n{\"k\":\"a\",\"ts\":1772443800000,\"d\":12.34,\"f\":0.1,\"n\":2}",
        ] {
            assert!(
                compare(&meta("final", &["k"]), &expected, bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn changes_take_the_last_row_per_key_retractions_withdraw_and_monotonic_columns_hold() {
        let expected = parse_rows("{\"k\": \"a\", \"n\": 3}\n").unwrap();
        let good = "{\"k\":\"a\",\"n\":1}\n{\"k\":\"a\",\"n\":3}\n{\"k\":\"b\",\"n\":9}\n{\"k\":\"b\",\"n\":9,\"_op\":\"-D\"}";
        compare(&meta("changes", &["k"]), &expected, good).unwrap();
        let retracted = "{\"k\":\"a\",\"n\":3}\n{\"k\":\"a\",\"n\":3,\"_op\":\"-D\"}";
        assert!(compare(&meta("changes", &["k"]), &expected, retracted).is_err());
        let not_monotonic = "{\"k\":\"a\",\"n\":4}\n{\"k\":\"a\",\"n\":3}";
        assert!(compare(&meta("changes", &["k"]), &expected, not_monotonic).is_err());
    }

    #[test]
    fn decimals_normalise() {
        assert_eq!(normalise_decimal("-0012.3400").as_deref(), Some("-12.34"));
        assert_eq!(normalise_decimal("5.").as_deref(), Some("5"));
        assert_eq!(normalise_decimal("-0.000").as_deref(), Some("0"));
        assert_eq!(normalise_decimal("1e5"), None);
    }

    #[test]
    fn expected_failures_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        std::fs::write(
            &path,
            "# comment\nsession_gap: windows come later\n\nother\n",
        )
        .unwrap();
        let list = load_expected_failures(&path);
        assert_eq!(
            list.get("session_gap").map(String::as_str),
            Some("windows come later")
        );
        assert_eq!(list.get("other").map(String::as_str), Some(""));
    }
}
