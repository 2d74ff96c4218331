//! Deployment hints: `-- @ferris:name = value` comments right before a statement, saying
//! what kind of workload its job is and what it needs (`ferris-k8s-deploy` turns them into
//! Kubernetes objects; `ferris explain` shows them). They change nothing in how a statement
//! runs.
//!
//! ```sql
//! -- @ferris:workload = trading
//! -- @ferris:parallelism = 4
//! -- @ferris:replicas = 2..12
//! -- @ferris:resources = cpu 500m..2, memory 1Gi
//! CREATE STREAM risk AS ...
//! ```

use std::fmt;

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use crate::error::{EngineError, Result};
use crate::position::Position;
use crate::prepare::MAX_PARALLELISM;

/// What comes before a hint's name in its comment.
const PREFIX: &str = "@ferris:";

/// The hints a statement was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// What kind of workload its job is, which decides how it scales.
    pub workload: Option<Workload>,
    /// The instances its job runs as.
    pub parallelism: Option<usize>,
    /// The fewest and most pods that run it.
    pub replicas: Option<Replicas>,
    /// What each pod asks for and may use.
    pub resources: Option<Resources>,
    /// When a `reporting` job runs (cron: minute hour day-of-month month day-of-week).
    pub schedule: Option<String>,
}

/// A kind of workload, each with its own scaling policy (docs/kubernetes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Latency first: scales on consumer lag and CPU, up fast and down slowly.
    Trading,
    /// State heavy: scales on memory and state bytes, slowly both ways.
    Analytics,
    /// Bounded jobs run on a schedule, with no pod between runs.
    Reporting,
    /// Throughput first: scales on records per second per pod.
    Realtime,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Self::Trading,
        Self::Analytics,
        Self::Reporting,
        Self::Realtime,
    ];

    /// Its name in hints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trading => "trading",
            Self::Analytics => "analytics",
            Self::Reporting => "reporting",
            Self::Realtime => "realtime",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fewest and most pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    /// At least (0: none while idle).
    pub min: u32,
    /// At most.
    pub max: u32,
}

/// A pod's requests and limits, as Kubernetes quantities (`500m`, `2`, `1Gi`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU asked for, and at most.
    pub cpu: Option<Quantities>,
    /// Memory asked for, and at most.
    pub memory: Option<Quantities>,
}

/// A request and, when given, a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantities {
    /// Asked for.
    pub request: String,
    /// At most; `None`: no limit of its own.
    pub limit: Option<String>,
}

impl fmt::Display for Hints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(workload) = self.workload {
            parts.push(format!("workload = {workload}"));
        }
        if let Some(parallelism) = self.parallelism {
            parts.push(format!("parallelism = {parallelism}"));
        }
        if let Some(replicas) = self.replicas {
            parts.push(format!("replicas = {}..{}", replicas.min, replicas.max));
        }
        if let Some(resources) = &self.resources {
            let quantities = |name: &str, q: &Quantities| match &q.limit {
                Some(limit) => format!("{name} {}..{limit}", q.request),
                None => format!("{name} {}", q.request),
            };
            let listed: Vec<String> = [("cpu", &resources.cpu), ("memory", &resources.memory)]
                .into_iter()
                .filter_map(|(name, q)| q.as_ref().map(|q| quantities(name, q)))
                .collect();
            parts.push(format!("resources = {}", listed.join(", ")));
        }
        if let Some(schedule) = &self.schedule {
            parts.push(format!("schedule = {schedule}"));
        }
        f.write_str(&parts.join("; "))
    }
}

impl Hints {
    /// Whether none was given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The hints in the comments of `tokens` (one statement's, from after the `;` before
    /// it) before its first significant token; a hint after it is an error.
    pub(crate) fn read(tokens: &[TokenWithSpan]) -> Result<Self> {
        let mut hints = Self::default();
        let mut seen_statement = false;
        // Where the workload and the schedule were given, for what they say of each other.
        let (mut workload_at, mut schedule_at, mut replicas_at) = (None, None, None);
        for token in tokens {
            let comment = match &token.token {
                Token::Whitespace(Whitespace::SingleLineComment { comment, prefix }) => {
                    Some((comment, prefix.chars().count()))
                }
                Token::Whitespace(_) | Token::EOF => None,
                _ => {
                    seen_statement = true;
                    None
                }
            };
            let Some((comment, prefix)) = comment else {
                continue;
            };
            let text = comment.trim_end_matches(['\n', '\r']);
            let lead = text.len() - text.trim_start().len();
            let Some(hint) = text.trim_start().strip_prefix(PREFIX) else {
                continue;
            };
            // Columns of the comment's text: after the `--`, in characters.
            let start = token.span.start;
            let column_of =
                |byte: usize| start.column + (prefix + text[..byte].chars().count()) as u64;
            let name_at = lead + PREFIX.len();
            let error = |byte: usize, message: String| EngineError::Sql {
                message,
                position: Position {
                    line: start.line,
                    column: column_of(byte),
                },
            };
            if seen_statement {
                return Err(error(
                    lead,
                    "a @ferris: hint goes before the statement it is for, not inside it".into(),
                ));
            }
            let Some((name, value)) = hint.split_once('=') else {
                return Err(error(
                    name_at,
                    format!("expected @ferris:NAME = VALUE, found '{}'", text.trim()),
                ));
            };
            let value_at = name_at + name.len() + 1 + (value.len() - value.trim_start().len());
            let (name, value) = (name.trim(), value.trim());
            let bad = |message: String| error(value_at, format!("@ferris:{name}: {message}"));
            let value_position = Position {
                line: start.line,
                column: column_of(value_at),
            };
            let first = match name {
                "workload" => {
                    let workload = Workload::ALL
                        .into_iter()
                        .find(|w| w.as_str().eq_ignore_ascii_case(value))
                        .ok_or_else(|| {
                            bad(format!(
                                "'{value}' is not a workload: trading, analytics, reporting or realtime"
                            ))
                        })?;
                    workload_at = Some(value_position);
                    set_once(&mut hints.workload, workload)
                }
                "parallelism" => {
                    let parallelism = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PARALLELISM).contains(n))
                        .ok_or_else(|| {
                            bad(format!(
                                "'{value}' is not a whole number from 1 to {MAX_PARALLELISM}"
                            ))
                        })?;
                    set_once(&mut hints.parallelism, parallelism)
                }
                "replicas" => {
                    replicas_at = Some(value_position);
                    set_once(&mut hints.replicas, replicas(value).map_err(bad)?)
                }
                "resources" => set_once(&mut hints.resources, resources(value).map_err(bad)?),
                "schedule" => {
                    check_cron(value).map_err(bad)?;
                    schedule_at = Some(value_position);
                    set_once(&mut hints.schedule, value.to_string())
                }
                other => {
                    return Err(error(
                        name_at,
                        format!(
                            "unknown hint @ferris:{other}: expected workload, parallelism, replicas, resources or schedule"
                        ),
                    ));
                }
            };
            if !first {
                return Err(error(name_at, format!("@ferris:{name} is given twice")));
            }
        }
        let error = |position: Position, message: &str| EngineError::Sql {
            message: message.into(),
            position,
        };
        if let (Some(replicas), Some(at)) = (hints.replicas, replicas_at) {
            match hints.workload {
                Some(Workload::Trading) if replicas.min < 2 => {
                    return Err(error(
                        at,
                        "@ferris:replicas: a trading workload runs on 2 pods at least, so that losing one stops nothing",
                    ));
                }
                Some(Workload::Reporting) => {}
                _ if replicas.min == 0 => {
                    return Err(error(
                        at,
                        "@ferris:replicas: 0 pods at least is for @ferris:workload = reporting (its jobs run on a schedule); an always-on workload has 1 pod at least",
                    ));
                }
                _ => {}
            }
        }
        match (hints.workload, workload_at, schedule_at) {
            (Some(Workload::Reporting), Some(at), None) => Err(error(
                at,
                "@ferris:workload = reporting needs a @ferris:schedule (a cron expression) to run on",
            )),
            (workload, _, Some(at)) if workload != Some(Workload::Reporting) => Err(error(
                at,
                "@ferris:schedule is for @ferris:workload = reporting (bounded jobs run on a schedule)",
            )),
            _ => Ok(hints),
        }
    }
}

/// Sets `slot` to `value`; false if it was set already.
fn set_once<T>(slot: &mut Option<T>, value: T) -> bool {
    slot.replace(value).is_none()
}

/// The most pods a hint may ask for (Kubernetes counts replicas in an `int32`).
const MAX_REPLICAS: u32 = 10_000;

/// `N..M` or `N`.
fn replicas(value: &str) -> std::result::Result<Replicas, String> {
    let number = |text: &str| {
        text.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_REPLICAS)
            .ok_or_else(|| {
                format!(
                    "'{}' is not a whole number of pods up to {MAX_REPLICAS}",
                    text.trim()
                )
            })
    };
    let (min, max) = match value.split_once("..") {
        Some((min, max)) => (number(min)?, number(max)?),
        None => {
            let n = number(value)?;
            (n, n)
        }
    };
    if max == 0 || min > max {
        return Err(format!(
            "expected MIN..MAX pods with MIN <= MAX and MAX >= 1, found '{value}'"
        ));
    }
    Ok(Replicas { min, max })
}

/// `cpu REQUEST[..LIMIT], memory REQUEST[..LIMIT]` (either, or both).
fn resources(value: &str) -> std::result::Result<Resources, String> {
    let mut resources = Resources::default();
    for part in value.split(',') {
        let part = part.trim();
        let Some((kind, range)) = part.split_once(char::is_whitespace) else {
            return Err(format!(
                "expected 'cpu REQUEST[..LIMIT]' or 'memory REQUEST[..LIMIT]', found '{part}'"
            ));
        };
        let (request, limit) = match range.trim().split_once("..") {
            Some((request, limit)) => (request.trim(), Some(limit.trim())),
            None => (range.trim(), None),
        };
        let request_size = quantity(request)?;
        if let Some(limit) = limit
            && quantity(limit)? < request_size
        {
            return Err(format!(
                "{kind}: the limit {limit} is less than the request {request}"
            ));
        }
        let quantities = Quantities {
            request: request.to_string(),
            limit: limit.map(str::to_string),
        };
        let slot = match kind {
            "cpu" => &mut resources.cpu,
            "memory" => &mut resources.memory,
            other => return Err(format!("'{other}' is not a resource: cpu or memory")),
        };
        if slot.replace(quantities).is_some() {
            return Err(format!("{kind} is given twice"));
        }
    }
    Ok(resources)
}

/// The size of a Kubernetes quantity (`500m`, `2`, `1.5`, `1Gi`, `512Mi`, `1G`).
fn quantity(text: &str) -> std::result::Result<f64, String> {
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("", 1.0),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| Some((text.strip_suffix(suffix)?, *scale)))
        .unwrap_or((text, 1.0));
    let plain = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|b| *b == b'.').count() <= 1;
    match number.parse::<f64>() {
        Ok(n) if plain => Ok(n * scale),
        _ => Err(format!(
            "'{text}' is not a Kubernetes quantity (such as 500m, 2, 512Mi or 1Gi)"
        )),
    }
}

/// A cron expression of five fields, or a `@daily`-style shorthand.
fn check_cron(value: &str) -> std::result::Result<(), String> {
    const SHORTHANDS: [&str; 6] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@hourly",
    ];
    if SHORTHANDS.contains(&value) {
        return Ok(());
    }
    let fields: Vec<&str> = value.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "'{value}' is not a cron expression: five fields (minute hour day-of-month month day-of-week), such as '0 6 * * 1-5', or @hourly, @daily, @weekly, @monthly"
        ));
    }
    // Each field's name, range, and whether it takes names (JAN, MON).
    const FIELDS: [(&str, u32, u32, bool); 5] = [
        ("minute", 0, 59, false),
        ("hour", 0, 23, false),
        ("day of month", 1, 31, false),
        ("month", 1, 12, true),
        ("day of week", 0, 7, true),
    ];
    for (field, (name, low, high, names)) in fields.iter().zip(FIELDS) {
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            let value_ok = |v: &str| match v.parse::<u32>() {
                Ok(n) => (low..=high).contains(&n),
                Err(_) => names && v.len() == 3 && v.bytes().all(|b| b.is_ascii_alphabetic()),
            };
            let range_ok = range == "*"
                || match range.split_once('-') {
                    Some((from, to)) => value_ok(from) && value_ok(to),
                    None => value_ok(range),
                };
            let step_ok = step.is_none_or(|s| s.parse::<u32>().is_ok_and(|n| n >= 1));
            if !range_ok || !step_ok {
                return Err(format!(
                    "'{item}' is not a {name} of a cron expression ({low} to {high}, *, ranges a-b, steps /n, lists a,b)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn read(text: &str) -> Result<Hints> {
        let tokens = Tokenizer::new(&GenericDialect {}, text)
            .tokenize_with_location()
            .unwrap();
        Hints::read(&tokens)
    }

    #[test]
    fn reads_every_hint_before_its_statement() {
        let hints = read(
            "-- the risk job\n-- @ferris:workload = trading\n--@ferris:parallelism=4\n\
             -- @ferris:replicas = 2..12\n-- @ferris:resources = cpu 500m..2, memory 1Gi\n\
             CREATE STREAM risk AS SELECT 1",
        )
        .unwrap();
        assert_eq!(hints.workload, Some(Workload::Trading));
        assert_eq!(hints.parallelism, Some(4));
        assert_eq!(hints.replicas, Some(Replicas { min: 2, max: 12 }));
        let resources = hints.resources.clone().unwrap();
        assert_eq!(
            resources.cpu,
            Some(Quantities {
                request: "500m".into(),
                limit: Some("2".into())
            })
        );
        assert_eq!(resources.memory.unwrap().limit, None);
        assert_eq!(
            hints.to_string(),
            "workload = trading; parallelism = 4; replicas = 2..12; resources = cpu 500m..2, memory 1Gi"
        );
        assert!(read("SELECT 1").unwrap().is_empty());
    }

    #[test]
    fn each_bad_hint_is_an_error_at_its_line_and_column() {
        let cases = [
            (
                "-- @ferris:workload = fast\nSELECT 1",
                "1:23",
                "not a workload",
            ),
            (
                "-- @ferris:colour = red\nSELECT 1",
                "1:12",
                "unknown hint @ferris:colour",
            ),
            (
                "\n  -- @ferris:parallelism = 0\nSELECT 1",
                "2:28",
                "from 1 to 256",
            ),
            ("-- @ferris:replicas = 5..2\nSELECT 1", "1:23", "MIN <= MAX"),
            (
                "-- @ferris:resources = cpu 2..500m\nSELECT 1",
                "1:24",
                "less than the request",
            ),
            (
                "-- @ferris:resources = gpu 1\nSELECT 1",
                "1:24",
                "not a resource",
            ),
            (
                "-- @ferris:resources = cpu lots\nSELECT 1",
                "1:24",
                "not a Kubernetes quantity",
            ),
            (
                "-- @ferris:workload\nSELECT 1",
                "1:12",
                "expected @ferris:NAME = VALUE",
            ),
            (
                "-- @ferris:workload = trading\n-- @ferris:workload = trading\nSELECT 1",
                "2:12",
                "given twice",
            ),
            (
                "-- @ferris:workload = reporting\nSELECT 1",
                "1:23",
                "needs a @ferris:schedule",
            ),
            (
                "-- @ferris:workload = reporting\n-- @ferris:schedule = every day\nSELECT 1",
                "2:23",
                "not a cron expression",
            ),
            (
                "-- @ferris:schedule = @daily\nSELECT 1",
                "1:23",
                "is for @ferris:workload = reporting",
            ),
            (
                "SELECT\n-- @ferris:workload = trading\n1",
                "2:4",
                "goes before the statement",
            ),
            (
                "-- @ferris:workload = trading\n-- @ferris:replicas = 1..4\nSELECT 1",
                "2:23",
                "2 pods at least",
            ),
            (
                "-- @ferris:replicas = 0..4\nSELECT 1",
                "1:23",
                "0 pods at least",
            ),
            (
                "-- @ferris:workload = reporting\n-- @ferris:schedule = 99 * * * *\nSELECT 1",
                "2:23",
                "'99' is not a minute",
            ),
        ];
        for (text, position, message) in cases {
            match read(text) {
                Err(EngineError::Sql {
                    message: got,
                    position: at,
                }) => {
                    assert_eq!(at.to_string(), position, "{text}: {got}");
                    assert!(got.contains(message), "{text}: {got}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let reporting =
            read("-- @ferris:workload = reporting\n-- @ferris:schedule = 0 6 * * 1-5\nSELECT 1")
                .unwrap();
        assert_eq!(reporting.schedule.as_deref(), Some("0 6 * * 1-5"));
    }
}
