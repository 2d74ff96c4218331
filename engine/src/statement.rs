//! FerrisStreams statements: DataFusion's SQL plus our streaming clauses.
//!
//! A file is tokenized once by DataFusion's SQL tokenizer and split at top-level `;`. Each
//! statement is classified by its leading keywords; inside a query, our clauses (`WINDOW
//! TUMBLING(...)`, `EMIT CHANGES|FINAL`, `WITH ('k' = 'v', ...)`, `PRIMARY KEY` after a select
//! item) are recorded and blanked out. What is left is plain SQL for DataFusion, laid out at
//! its original line and column, so DataFusion's own errors point into the user's file.

use std::collections::HashSet;
use std::fmt;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{EngineError, Result};

/// A position in the SQL text, 1-based, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: u64,
    /// Column (in characters), from 1.
    pub column: u64,
}

impl From<Location> for Position {
    fn from(location: Location) -> Self {
        Self {
            line: location.line,
            column: location.column,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One statement of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Where it starts.
    pub position: Position,
    /// Its text as written (without the `;`), to keep in a server's catalog.
    pub text: String,
    /// What it is.
    pub kind: StatementKind,
}

/// The statements FerrisStreams understands.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// `CREATE STREAM|TABLE name AS <query>`: a continuous job writing to the sink `name`.
    CreateJob {
        /// Stream (append) or table (keyed upserts).
        kind: JobKind,
        /// The job's and its sink's name.
        name: String,
        /// The query.
        query: StreamingQuery,
    },
    /// `INSERT INTO name <query>`: a job appending the query's rows to the stream `name`
    /// (its sink, or its topic for a Kafka source).
    Insert {
        /// The stream written to.
        target: String,
        /// The query.
        query: StreamingQuery,
    },
    /// A plain query; its rows go to the caller.
    Query(StreamingQuery),
    /// `EXPLAIN <statement>`: the plan, without running it.
    Explain(Box<Statement>),
    /// `SHOW STREAMS [LIKE 'pattern']`.
    ShowStreams {
        /// Only names matching this SQL `LIKE` pattern.
        like: Option<String>,
    },
    /// `SHOW TABLES [LIKE 'pattern'] [WITH SCHEMAS]`.
    ShowTables {
        /// Only names matching this SQL `LIKE` pattern.
        like: Option<String>,
        /// With a column listing each table's columns and types.
        schemas: bool,
    },
    /// `SHOW FUNCTIONS [LIKE 'pattern']`.
    ShowFunctions {
        /// Only names matching this SQL `LIKE` pattern.
        like: Option<String>,
    },
    /// `SHOW JOBS [LIKE 'pattern']`: the session's jobs, their status and counters.
    ShowJobs {
        /// Only names matching this SQL `LIKE` pattern.
        like: Option<String>,
    },
    /// `SHOW JOB STATUS 'name'`: one job's status and every counter.
    ShowJobStatus {
        /// The job.
        name: String,
    },
    /// `SHOW TOPICS [LIKE 'pattern']`: the topics of the session's Kafka.
    ShowTopics {
        /// Only names matching this SQL `LIKE` pattern.
        like: Option<String>,
    },
    /// `SHOW TOPIC DETAILS 'name'`: a topic's partitions, offsets and consumer groups.
    ShowTopicDetails {
        /// The topic.
        topic: String,
    },
    /// `DESCRIBE name`: the columns of a stream, table or source.
    Describe {
        /// What to describe.
        name: String,
    },
    /// `START JOB name`, `STOP JOB name [FORCE]`, `PAUSE JOB name`, `RESUME JOB name`.
    JobCommand {
        /// What to do.
        command: JobCommand,
        /// The job.
        name: String,
    },
    /// `DROP STREAM|TABLE [IF EXISTS] name`: stops its job and forgets it, state and all.
    Drop {
        /// Stream or table.
        kind: JobKind,
        /// The job.
        name: String,
        /// No error when there is no such job.
        if_exists: bool,
    },
}

/// What a job command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobCommand {
    /// Starts a stopped or failed job again, from its last checkpoint.
    Start,
    /// Stops a job: at a checkpoint if it takes them (a start resumes it), else after its
    /// sources end and its windows flush.
    Stop,
    /// Stops a job at once: no checkpoint, no flush; its output stays as last committed.
    StopForce,
    /// Holds a job's sources back; it keeps its state.
    Pause,
    /// Lets a paused job's sources go on.
    Resume,
}

/// Whether a job's result is an append-only stream or a keyed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `CREATE STREAM`: every result row is appended.
    Stream,
    /// `CREATE TABLE`: result rows are upserts by key.
    Table,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stream => "STREAM",
            Self::Table => "TABLE",
        })
    }
}

/// When an aggregate's results are emitted (the operator's own setting).
pub use ferris_streaming::EmitMode;

/// A `WINDOW <KIND>(args)` clause, its arguments as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowClause {
    /// `TUMBLING`, `SLIDING` (or `HOPPING`) or `SESSION`, upper-cased.
    pub kind: String,
    /// The argument texts, trimmed.
    pub args: Vec<String>,
    /// Where the clause starts.
    pub position: Position,
}

/// One `'key' = 'value'` of a `WITH (...)` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionEntry {
    /// The key, as written.
    pub key: String,
    /// The value, as written (without quotes).
    pub value: String,
    /// Where the key is.
    pub position: Position,
}

/// A query with our streaming clauses taken out.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamingQuery {
    /// The SQL for DataFusion: the original text with everything else blanked, so that
    /// positions in it are positions in the file.
    pub sql: String,
    /// Where the query starts.
    pub position: Position,
    /// The `WINDOW` clause.
    pub window: Option<WindowClause>,
    /// The `EMIT` clause.
    pub emit: Option<EmitMode>,
    /// The `WITH (...)` options, in order.
    pub options: Vec<OptionEntry>,
    /// Select items marked `PRIMARY KEY`, by output name.
    pub primary_key: Vec<String>,
}

/// Splits `text` into statements and parses each.
pub fn parse_statements(text: &str) -> Result<Vec<Statement>> {
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| EngineError::Sql {
            message: e.message.clone(),
            position: e.location.into(),
        })?;
    let source = Source::new(text);
    let mut statements = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth == 0 => {
                statements.extend(parse_statement(&source, &tokens[start..i])?);
                start = i + 1;
            }
            _ => {}
        }
    }
    statements.extend(parse_statement(&source, &tokens[start..])?);
    Ok(statements)
}

/// The text being parsed, with a way from token locations to byte offsets.
struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, line_starts }
    }

    fn offset(&self, location: Location) -> usize {
        let Some(&line_start) = self
            .line_starts
            .get(location.line.saturating_sub(1) as usize)
        else {
            return self.text.len();
        };
        self.text[line_start..]
            .char_indices()
            .nth(location.column.saturating_sub(1) as usize)
            .map_or(self.text.len(), |(i, _)| line_start + i)
    }

    fn slice(&self, from: &TokenWithSpan, to: &TokenWithSpan) -> &'a str {
        &self.text[self.offset(from.span.start)..self.offset(to.span.end)]
    }
}

/// The significant (non-whitespace, non-comment) tokens of a statement.
fn significant(tokens: &[TokenWithSpan]) -> Vec<&TokenWithSpan> {
    tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect()
}

fn keyword(token: Option<&&TokenWithSpan>, expected: Keyword) -> bool {
    matches!(token, Some(t) if matches!(&t.token, Token::Word(w) if w.keyword == expected))
}

fn word_is(token: Option<&&TokenWithSpan>, expected: &str) -> bool {
    matches!(token, Some(t) if matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(expected)))
}

fn error_at(token: &TokenWithSpan, message: impl Into<String>) -> EngineError {
    EngineError::Sql {
        message: message.into(),
        position: token.span.start.into(),
    }
}

fn describe_token(token: &TokenWithSpan) -> String {
    match &token.token {
        Token::EOF => "end of statement".to_string(),
        other => format!("'{other}'"),
    }
}

fn identifier(token: Option<&&TokenWithSpan>, what: &str, after: &TokenWithSpan) -> Result<String> {
    match token {
        Some(t) => match &t.token {
            Token::Word(w) if w.quote_style.is_some() => Ok(w.value.clone()),
            Token::Word(w) => Ok(w.value.to_lowercase()),
            _ => Err(error_at(
                t,
                format!("expected {what}, found {}", describe_token(t)),
            )),
        },
        None => Err(error_at(
            after,
            format!("expected {what} after '{}'", after.token),
        )),
    }
}

/// `STREAM` or `TABLE`, the second word of a statement starting with `verb`.
fn job_kind(sig: &[&TokenWithSpan], verb: &str) -> Result<JobKind> {
    if word_is(sig.get(1), "STREAM") {
        return Ok(JobKind::Stream);
    }
    if keyword(sig.get(1), Keyword::TABLE) {
        return Ok(JobKind::Table);
    }
    let at = sig.get(1).copied().unwrap_or(sig[0]);
    Err(error_at(
        at,
        format!(
            "expected STREAM or TABLE after {verb}, found {}",
            describe_token(at)
        ),
    ))
}

/// The job command a statement's first word starts.
fn job_command(first: &TokenWithSpan) -> Option<JobCommand> {
    let Token::Word(word) = &first.token else {
        return None;
    };
    if word.quote_style.is_some() {
        return None;
    }
    match word.value.to_ascii_uppercase().as_str() {
        "START" => Some(JobCommand::Start),
        "STOP" => Some(JobCommand::Stop),
        "PAUSE" => Some(JobCommand::Pause),
        "RESUME" => Some(JobCommand::Resume),
        _ => None,
    }
}

fn parse_statement(source: &Source, tokens: &[TokenWithSpan]) -> Result<Option<Statement>> {
    let sig = significant(tokens);
    let Some(first) = sig.first() else {
        return Ok(None);
    };
    let position = first.span.start.into();
    let kind = parse_kind(source, tokens, &sig)?;
    let last = sig.last().expect("not empty");
    let text =
        source.text[source.offset(first.span.start)..source.offset(last.span.end)].to_string();
    Ok(Some(Statement {
        position,
        text,
        kind,
    }))
}

fn parse_kind(
    source: &Source,
    tokens: &[TokenWithSpan],
    sig: &[&TokenWithSpan],
) -> Result<StatementKind> {
    let first = sig[0];
    let like = |rest: &[&TokenWithSpan]| -> Result<Option<String>> {
        match rest {
            [] => Ok(None),
            [l, p] if keyword(Some(l), Keyword::LIKE) => match &p.token {
                Token::SingleQuotedString(s) => Ok(Some(s.clone())),
                _ => Err(error_at(p, "expected a quoted pattern after LIKE")),
            },
            [t, ..] => Err(error_at(
                t,
                format!(
                    "expected LIKE 'pattern' or the end of the statement, found {}",
                    describe_token(t)
                ),
            )),
        }
    };
    if keyword(Some(&first), Keyword::CREATE) {
        let kind = job_kind(sig, "CREATE")?;
        let name = identifier(sig.get(2), "a name", sig[1])?;
        if !keyword(sig.get(3), Keyword::AS) {
            let at = sig.get(3).copied().unwrap_or(sig[2]);
            return Err(error_at(
                at,
                format!(
                    "expected AS after CREATE {kind} {name}, found {}",
                    describe_token(at)
                ),
            ));
        }
        let Some(query_start) = sig.get(4) else {
            return Err(error_at(sig[3], "expected a query after AS"));
        };
        let from = tokens
            .iter()
            .position(|t| std::ptr::eq(t, *query_start))
            .expect("significant tokens come from tokens");
        let query = parse_query(source, &tokens[from..])?;
        return Ok(StatementKind::CreateJob { kind, name, query });
    }
    if keyword(Some(&first), Keyword::EXPLAIN) {
        let Some(inner_start) = sig.get(1) else {
            return Err(error_at(first, "expected a statement after EXPLAIN"));
        };
        let from = tokens
            .iter()
            .position(|t| std::ptr::eq(t, *inner_start))
            .expect("significant tokens come from tokens");
        let inner = parse_statement(source, &tokens[from..])?.expect("has a first token");
        if matches!(inner.kind, StatementKind::Explain(_)) {
            return Err(error_at(inner_start, "EXPLAIN EXPLAIN is not a statement"));
        }
        return Ok(StatementKind::Explain(Box::new(inner)));
    }
    if keyword(Some(&first), Keyword::SHOW) {
        return if word_is(sig.get(1), "STREAMS") {
            Ok(StatementKind::ShowStreams {
                like: like(&sig[2..])?,
            })
        } else if keyword(sig.get(1), Keyword::TABLES) {
            let rest = &sig[2..];
            let schemas = rest.len() >= 2
                && keyword(rest.get(rest.len() - 2), Keyword::WITH)
                && word_is(rest.last(), "SCHEMAS");
            let rest = if schemas {
                &rest[..rest.len() - 2]
            } else {
                rest
            };
            Ok(StatementKind::ShowTables {
                like: like(rest)?,
                schemas,
            })
        } else if keyword(sig.get(1), Keyword::FUNCTIONS) {
            Ok(StatementKind::ShowFunctions {
                like: like(&sig[2..])?,
            })
        } else if word_is(sig.get(1), "JOBS") {
            Ok(StatementKind::ShowJobs {
                like: like(&sig[2..])?,
            })
        } else if word_is(sig.get(1), "JOB") {
            match &sig[2..] {
                [status, name] if word_is(Some(status), "STATUS") => match &name.token {
                    Token::SingleQuotedString(job) => {
                        Ok(StatementKind::ShowJobStatus { name: job.clone() })
                    }
                    _ => Err(error_at(name, "expected the job's name, quoted")),
                },
                _ => Err(error_at(sig[1], "expected SHOW JOB STATUS 'name'")),
            }
        } else if word_is(sig.get(1), "TOPICS") {
            Ok(StatementKind::ShowTopics {
                like: like(&sig[2..])?,
            })
        } else if word_is(sig.get(1), "TOPIC") {
            match &sig[2..] {
                [details, name] if word_is(Some(details), "DETAILS") => match &name.token {
                    Token::SingleQuotedString(topic) => Ok(StatementKind::ShowTopicDetails {
                        topic: topic.clone(),
                    }),
                    _ => Err(error_at(name, "expected the topic's name, quoted")),
                },
                [details, ..] if !word_is(Some(details), "DETAILS") => Err(error_at(
                    details,
                    "expected DETAILS 'topic' after SHOW TOPIC",
                )),
                _ => Err(error_at(sig[1], "expected SHOW TOPIC DETAILS 'topic'")),
            }
        } else {
            let at = sig.get(1).copied().unwrap_or(first);
            Err(error_at(
                at,
                format!(
                    "expected STREAMS, TABLES, FUNCTIONS, JOBS, TOPICS or TOPIC DETAILS after SHOW, found {}",
                    describe_token(at)
                ),
            ))
        };
    }
    if keyword(Some(&first), Keyword::INSERT) {
        if !keyword(sig.get(1), Keyword::INTO) {
            let at = sig.get(1).copied().unwrap_or(first);
            return Err(error_at(
                at,
                format!("expected INTO after INSERT, found {}", describe_token(at)),
            ));
        }
        let target = identifier(sig.get(2), "the stream to insert into", sig[1])?;
        let Some(query_start) = sig.get(3) else {
            return Err(error_at(
                sig[2],
                "expected a query (SELECT or VALUES) after the name",
            ));
        };
        if matches!(query_start.token, Token::LParen)
            && !sig.get(4).is_some_and(|t| {
                keyword(Some(t), Keyword::SELECT)
                    || keyword(Some(t), Keyword::WITH)
                    || keyword(Some(t), Keyword::VALUES)
            })
        {
            return Err(error_at(
                query_start,
                "INSERT INTO takes no column list: the query's columns must be the stream's, in order",
            ));
        }
        let from = tokens
            .iter()
            .position(|t| std::ptr::eq(t, *query_start))
            .expect("significant tokens come from tokens");
        let query = parse_query(source, &tokens[from..])?;
        return Ok(StatementKind::Insert { target, query });
    }
    if let Some(command) = job_command(first) {
        if !word_is(sig.get(1), "JOB") {
            let at = sig.get(1).copied().unwrap_or(first);
            return Err(error_at(
                at,
                format!(
                    "expected JOB after {}, found {}",
                    first.token,
                    describe_token(at)
                ),
            ));
        }
        let name = identifier(sig.get(2), "the job's name", sig[1])?;
        let command = match (command, sig.get(3)) {
            (JobCommand::Stop, Some(force)) if word_is(Some(force), "FORCE") && sig.len() == 4 => {
                JobCommand::StopForce
            }
            (command, None) => command,
            (_, Some(extra)) => {
                return Err(error_at(
                    extra,
                    format!(
                        "expected the end of the statement after the job's name, found {}",
                        describe_token(extra)
                    ),
                ));
            }
        };
        return Ok(StatementKind::JobCommand { command, name });
    }
    if keyword(Some(&first), Keyword::DROP) {
        let kind = job_kind(sig, "DROP")?;
        let if_exists = keyword(sig.get(2), Keyword::IF) && keyword(sig.get(3), Keyword::EXISTS);
        let at = if if_exists { 4 } else { 2 };
        let name = identifier(sig.get(at), "a name", sig[at - 1])?;
        if let Some(extra) = sig.get(at + 1) {
            return Err(error_at(
                extra,
                format!(
                    "expected the end of the statement after DROP {kind} {name}, found {}",
                    describe_token(extra)
                ),
            ));
        }
        return Ok(StatementKind::Drop {
            kind,
            name,
            if_exists,
        });
    }
    if keyword(Some(&first), Keyword::DESCRIBE) || keyword(Some(&first), Keyword::DESC) {
        let name = identifier(sig.get(1), "a name", first)?;
        if let Some(extra) = sig.get(2) {
            return Err(error_at(
                extra,
                format!(
                    "expected the end of the statement after DESCRIBE {name}, found {}",
                    describe_token(extra)
                ),
            ));
        }
        return Ok(StatementKind::Describe { name });
    }
    if keyword(Some(&first), Keyword::SELECT)
        || keyword(Some(&first), Keyword::WITH)
        || keyword(Some(&first), Keyword::VALUES)
        || matches!(first.token, Token::LParen)
    {
        return Ok(StatementKind::Query(parse_query(source, tokens)?));
    }
    Err(error_at(
        first,
        format!(
            "unsupported statement starting with {}: expected CREATE STREAM, CREATE TABLE, INSERT INTO, SELECT, EXPLAIN, SHOW, DESCRIBE, DROP, or START / STOP / PAUSE / RESUME JOB",
            describe_token(first)
        ),
    ))
}

/// Takes our clauses out of a query, leaving DataFusion's SQL.
fn parse_query(source: &Source, tokens: &[TokenWithSpan]) -> Result<StreamingQuery> {
    let sig = significant(tokens);
    let first = sig[0];
    let mut blank: Vec<(usize, usize)> = Vec::new();
    let mut window = None;
    let mut emit = None;
    let mut options: Option<Vec<OptionEntry>> = None;
    let mut primary_key = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < sig.len() {
        let token = sig[i];
        match &token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth != 0 || options.is_some() {
            if options.is_some() {
                return Err(error_at(
                    token,
                    format!(
                        "unexpected {} after the WITH options; they end the statement",
                        describe_token(token)
                    ),
                ));
            }
            i += 1;
            continue;
        }
        let next = sig.get(i + 1);
        // `WINDOW w AS (...)` is SQL's named window: only `WINDOW KIND(` is ours.
        if keyword(Some(&token), Keyword::WINDOW)
            && matches!(sig.get(i + 2).map(|t| &t.token), Some(Token::LParen))
        {
            if window.is_some() {
                return Err(error_at(token, "a query can have only one WINDOW clause"));
            }
            let kind_token = next.expect("checked above");
            let Token::Word(kind) = &kind_token.token else {
                return Err(error_at(
                    kind_token,
                    "expected TUMBLING, SLIDING or SESSION after WINDOW",
                ));
            };
            let kind = kind.value.to_uppercase();
            if !["TUMBLING", "SLIDING", "HOPPING", "SESSION"].contains(&kind.as_str()) {
                return Err(error_at(
                    kind_token,
                    format!("unknown window type {kind}: expected TUMBLING, SLIDING or SESSION"),
                ));
            }
            let close = matching_paren(&sig, i + 2)?;
            let args = split_args(source, &sig[i + 3..close]);
            if args.is_empty() {
                return Err(error_at(kind_token, format!("WINDOW {kind} needs a size")));
            }
            window = Some(WindowClause {
                kind,
                args,
                position: token.span.start.into(),
            });
            blank.push((
                source.offset(token.span.start),
                source.offset(sig[close].span.end),
            ));
            i = close + 1;
            continue;
        }
        if word_is(Some(&token), "EMIT") {
            let mode = if word_is(next, "CHANGES") {
                EmitMode::Changes
            } else if word_is(next, "FINAL") {
                EmitMode::Final
            } else {
                let at = next.copied().unwrap_or(token);
                return Err(error_at(
                    at,
                    format!(
                        "expected CHANGES or FINAL after EMIT, found {}",
                        describe_token(at)
                    ),
                ));
            };
            if emit.is_some() {
                return Err(error_at(token, "a query can have only one EMIT clause"));
            }
            emit = Some(mode);
            blank.push((
                source.offset(token.span.start),
                source.offset(sig[i + 1].span.end),
            ));
            i += 2;
            continue;
        }
        if keyword(Some(&token), Keyword::WITH)
            && i > 0
            && matches!(next.map(|t| &t.token), Some(Token::LParen))
        {
            let close = matching_paren(&sig, i + 1)?;
            options = Some(parse_options(&sig[i + 2..close], sig[i + 1])?);
            blank.push((
                source.offset(token.span.start),
                source.offset(sig[close].span.end),
            ));
            i = close + 1;
            continue;
        }
        if keyword(Some(&token), Keyword::PRIMARY) && keyword(next, Keyword::KEY) {
            let named = i.checked_sub(1).map(|p| sig[p]);
            match named.map(|t| &t.token) {
                Some(Token::Word(w)) if w.keyword != Keyword::SELECT => {
                    primary_key.push(if w.quote_style.is_some() {
                        w.value.clone()
                    } else {
                        w.value.to_lowercase()
                    })
                }
                _ => {
                    return Err(error_at(
                        token,
                        "PRIMARY KEY must follow a select item's name",
                    ));
                }
            }
            blank.push((
                source.offset(token.span.start),
                source.offset(sig[i + 1].span.end),
            ));
            i += 2;
            continue;
        }
        i += 1;
    }
    if depth != 0 {
        return Err(error_at(sig[sig.len() - 1], "unbalanced parentheses"));
    }
    // Keep the statement's own text, blank everything else (newlines stay: positions hold).
    let start = source.offset(first.span.start);
    let end = source.offset(sig[sig.len() - 1].span.end);
    let mut sql: String = source.text[..start]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    let prefix = sql.len();
    sql.push_str(&source.text[start..end]);
    // Back to front, so that blanking (which may shorten multi-byte text) keeps offsets valid.
    for (from, to) in blank.into_iter().rev() {
        let (from, to) = (prefix + from - start, prefix + to - start);
        let spaces: String = sql[from..to]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        sql.replace_range(from..to, &spaces);
    }
    Ok(StreamingQuery {
        sql,
        position: first.span.start.into(),
        window,
        emit,
        options: options.unwrap_or_default(),
        primary_key,
    })
}

fn matching_paren(sig: &[&TokenWithSpan], open: usize) -> Result<usize> {
    let mut depth = 0;
    for (i, token) in sig.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    Err(error_at(sig[open], "this parenthesis is never closed"))
}

/// The texts of comma-separated arguments (commas inside parentheses do not split).
fn split_args(source: &Source, sig: &[&TokenWithSpan]) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, token) in sig.iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                if i > start {
                    args.push(source.slice(sig[start], sig[i - 1]).trim().to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < sig.len() {
        args.push(
            source
                .slice(sig[start], sig[sig.len() - 1])
                .trim()
                .to_string(),
        );
    }
    args
}

/// `'key' = 'value', ...` (values may also be numbers or TRUE/FALSE).
fn parse_options(sig: &[&TokenWithSpan], open: &TokenWithSpan) -> Result<Vec<OptionEntry>> {
    let mut entries: Vec<OptionEntry> = Vec::new();
    let mut seen = HashSet::new();
    let mut i = 0;
    if sig.is_empty() {
        return Err(error_at(open, "WITH () has no options"));
    }
    while i < sig.len() {
        let key_token = sig[i];
        let key = match &key_token.token {
            Token::SingleQuotedString(s) => s.clone(),
            _ => {
                return Err(error_at(
                    key_token,
                    format!(
                        "expected a quoted option name like 'source.type', found {}",
                        describe_token(key_token)
                    ),
                ));
            }
        };
        match sig.get(i + 1) {
            Some(t) if t.token == Token::Eq => {}
            Some(t) => {
                return Err(error_at(
                    t,
                    format!("expected = after '{key}', found {}", describe_token(t)),
                ));
            }
            None => {
                return Err(error_at(
                    key_token,
                    format!("expected = and a value after '{key}'"),
                ));
            }
        }
        let value = match sig.get(i + 2).map(|t| &t.token) {
            Some(Token::SingleQuotedString(s)) => s.clone(),
            Some(Token::Number(n, _)) => n.clone(),
            Some(Token::Word(w)) if matches!(w.keyword, Keyword::TRUE | Keyword::FALSE) => {
                w.value.to_lowercase()
            }
            Some(_) => {
                let t = sig[i + 2];
                return Err(error_at(
                    t,
                    format!(
                        "expected a quoted value for '{key}', found {}",
                        describe_token(t)
                    ),
                ));
            }
            None => {
                return Err(error_at(
                    sig[i + 1],
                    format!("expected a value for '{key}'"),
                ));
            }
        };
        if !seen.insert(key.to_lowercase()) {
            return Err(error_at(
                key_token,
                format!("option '{key}' is given twice"),
            ));
        }
        entries.push(OptionEntry {
            key,
            value,
            position: key_token.span.start.into(),
        });
        match sig.get(i + 3) {
            None => break,
            Some(t) if t.token == Token::Comma => i += 4,
            Some(t) => {
                return Err(error_at(
                    t,
                    format!(
                        "expected , or ) after the value of '{}', found {}",
                        entries[entries.len() - 1].key,
                        describe_token(t)
                    ),
                ));
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> StatementKind {
        let mut statements = parse_statements(sql).unwrap();
        assert_eq!(statements.len(), 1, "{statements:?}");
        statements.remove(0).kind
    }

    fn err(sql: &str) -> String {
        parse_statements(sql).unwrap_err().to_string()
    }

    #[test]
    fn create_stream_with_all_clauses() {
        let sql = "-- bars\nCREATE STREAM bars AS\nSELECT symbol, COUNT(*) AS n FROM trades\nGROUP BY symbol\nWINDOW TUMBLING(ts, INTERVAL '1' MINUTE)\nEMIT FINAL\nWITH ('trades.type' = 'file_source', 'trades.batch.size' = 10, 'x' = true);";
        let StatementKind::CreateJob { kind, name, query } = one(sql) else {
            panic!()
        };
        assert_eq!((kind, name.as_str()), (JobKind::Stream, "bars"));
        assert_eq!(query.emit, Some(EmitMode::Final));
        let window = query.window.unwrap();
        assert_eq!(window.kind, "TUMBLING");
        assert_eq!(window.args, ["ts", "INTERVAL '1' MINUTE"]);
        assert_eq!(window.position, Position { line: 5, column: 1 });
        let options: Vec<_> = query
            .options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            options,
            [
                ("trades.type", "file_source"),
                ("trades.batch.size", "10"),
                ("x", "true")
            ]
        );
        // The SQL left for DataFusion keeps every line where it was.
        let lines: Vec<_> = query.sql.lines().map(str::trim_end).collect();
        assert_eq!(lines[2], "SELECT symbol, COUNT(*) AS n FROM trades");
        assert_eq!(lines[3], "GROUP BY symbol");
        assert!(lines[4..].iter().all(|l| l.trim().is_empty()), "{lines:?}");
        assert_eq!(query.position, Position { line: 3, column: 1 });
    }

    #[test]
    fn job_commands_and_drop() {
        let statements = parse_statements(
            "START JOB bars; stop job \"Bars\"; STOP JOB bars FORCE; PAUSE JOB bars;\nRESUME JOB bars; DROP STREAM bars; drop table if exists t",
        )
        .unwrap();
        let kinds: Vec<_> = statements.iter().map(|s| s.kind.clone()).collect();
        let command = |command, name: &str| StatementKind::JobCommand {
            command,
            name: name.into(),
        };
        assert_eq!(
            kinds,
            [
                command(JobCommand::Start, "bars"),
                command(JobCommand::Stop, "Bars"),
                command(JobCommand::StopForce, "bars"),
                command(JobCommand::Pause, "bars"),
                command(JobCommand::Resume, "bars"),
                StatementKind::Drop {
                    kind: JobKind::Stream,
                    name: "bars".into(),
                    if_exists: false
                },
                StatementKind::Drop {
                    kind: JobKind::Table,
                    name: "t".into(),
                    if_exists: true
                },
            ]
        );
        assert_eq!(statements[4].text, "RESUME JOB bars");
        assert_eq!(statements[4].position, Position { line: 2, column: 1 });
        assert!(err("STOP bars").contains("at 1:6: expected JOB after STOP"));
        assert!(err("PAUSE JOB bars now").contains("at 1:16: expected the end of the statement"));
        assert!(err("RESUME JOB").contains("expected the job's name after 'JOB'"));
        assert!(err("DROP VIEW v").contains("at 1:6: expected STREAM or TABLE after DROP"));
        assert!(err("DROP STREAM a b").contains("at 1:15: expected the end of the statement"));
    }

    #[test]
    fn several_statements_and_show_describe_explain() {
        let statements = parse_statements(
            "SHOW STREAMS; show tables like 'a%';\nSHOW FUNCTIONS;\nDESCRIBE \"Bars\"; desc t;\nEXPLAIN SELECT 1;; SHOW JOBS LIKE 'b%'; SHOW TOPICS; SHOW TOPIC DETAILS 'trades'; SHOW TABLES WITH SCHEMAS; SHOW JOB STATUS 'bars';",
        )
        .unwrap();
        let kinds: Vec<_> = statements.iter().map(|s| s.kind.clone()).collect();
        assert_eq!(kinds[0], StatementKind::ShowStreams { like: None });
        assert_eq!(
            kinds[1],
            StatementKind::ShowTables {
                like: Some("a%".into()),
                schemas: false,
            }
        );
        assert_eq!(kinds[2], StatementKind::ShowFunctions { like: None });
        assert_eq!(
            kinds[3],
            StatementKind::Describe {
                name: "Bars".into()
            }
        );
        assert_eq!(kinds[4], StatementKind::Describe { name: "t".into() });
        assert_eq!(
            kinds[6],
            StatementKind::ShowJobs {
                like: Some("b%".into())
            }
        );
        assert_eq!(kinds[7], StatementKind::ShowTopics { like: None });
        assert_eq!(
            kinds[9],
            StatementKind::ShowTables {
                like: None,
                schemas: true
            }
        );
        assert_eq!(
            kinds[10],
            StatementKind::ShowJobStatus {
                name: "bars".into()
            }
        );
        assert_eq!(
            kinds[8],
            StatementKind::ShowTopicDetails {
                topic: "trades".into()
            }
        );
        assert!(
            matches!(&kinds[5], StatementKind::Explain(inner) if matches!(inner.kind, StatementKind::Query(_)))
        );
        assert_eq!(statements[5].position, Position { line: 4, column: 1 });
    }

    #[test]
    fn primary_key_and_emit_changes_on_a_table() {
        let StatementKind::CreateJob { kind, query, .. } = one(
            "CREATE TABLE t AS SELECT id AS Account PRIMARY KEY, SUM(x) FROM s GROUP BY id EMIT CHANGES",
        ) else {
            panic!()
        };
        assert_eq!(kind, JobKind::Table);
        assert_eq!(query.primary_key, ["account"]);
        assert_eq!(query.emit, Some(EmitMode::Changes));
        assert!(!query.sql.contains("PRIMARY"));
    }

    #[test]
    fn named_windows_and_ctes_are_left_to_datafusion() {
        let StatementKind::Query(query) =
            one("WITH a AS (SELECT 1 AS x) SELECT SUM(x) OVER w FROM a WINDOW w AS (ORDER BY x)")
        else {
            panic!()
        };
        assert!(query.window.is_none() && query.options.is_empty());
        assert!(query.sql.contains("WINDOW w AS"));
    }

    #[test]
    fn every_error_names_its_position() {
        let cases = [
            (
                "CREATE VIEW v AS SELECT 1",
                "1:8: expected STREAM or TABLE after CREATE, found 'VIEW'",
            ),
            (
                "CREATE STREAM AS SELECT 1",
                "expected AS after CREATE STREAM as",
            ),
            (
                "CREATE STREAM 1 AS SELECT 1",
                "1:15: expected a name, found '1'",
            ),
            ("CREATE STREAM s AS", "1:17: expected a query after AS"),
            (
                "CREATE STREAM s SELECT 1",
                "1:17: expected AS after CREATE STREAM s, found 'SELECT'",
            ),
            ("CREATE", "1:1: expected STREAM or TABLE after CREATE"),
            (
                "SELECT 1\nEMIT SOMETIMES",
                "2:6: expected CHANGES or FINAL after EMIT, found 'SOMETIMES'",
            ),
            (
                "SELECT 1 EMIT FINAL EMIT FINAL",
                "1:21: a query can have only one EMIT clause",
            ),
            (
                "SELECT 1 WINDOW TUMBLE(1s)",
                "1:17: unknown window type TUMBLE",
            ),
            (
                "SELECT 1 WINDOW SESSION()",
                "1:17: WINDOW SESSION needs a size",
            ),
            (
                "SELECT 1 WINDOW SESSION(1s) WINDOW SESSION(2s)",
                "1:29: a query can have only one WINDOW clause",
            ),
            (
                "SELECT 1 WINDOW TUMBLING(1s",
                "1:25: this parenthesis is never closed",
            ),
            ("SELECT (1", "1:9: unbalanced parentheses"),
            (
                "SHOW TOPIC DETAILS trades",
                "1:20: expected the topic's name, quoted",
            ),
            (
                "SHOW TOPIC trades",
                "1:12: expected DETAILS 'topic' after SHOW TOPIC",
            ),
            ("SELECT 1 WITH ()", "1:15: WITH () has no options"),
            (
                "SELECT 1 WITH (a = 'b')",
                "1:16: expected a quoted option name",
            ),
            ("SELECT 1 WITH ('a' 'b')", "1:20: expected = after 'a'"),
            ("SELECT 1 WITH ('a' = )", "1:20: expected a value for 'a'"),
            (
                "SELECT 1 WITH ('a' = b)",
                "1:22: expected a quoted value for 'a'",
            ),
            (
                "SELECT 1 WITH ('a' = 'b' 'c')",
                "1:26: expected , or ) after the value of 'a'",
            ),
            (
                "SELECT 1 WITH ('a' = 'b', 'A' = 'c')",
                "1:27: option 'A' is given twice",
            ),
            (
                "SELECT 1 WITH ('a' = 'b') LIMIT 1",
                "1:27: unexpected 'LIMIT' after the WITH options",
            ),
            (
                "SELECT PRIMARY KEY FROM t",
                "1:8: PRIMARY KEY must follow a select item's name",
            ),
            (
                "SHOW JOBZ",
                "1:6: expected STREAMS, TABLES, FUNCTIONS, JOBS, TOPICS or TOPIC DETAILS after SHOW, found 'JOBZ'",
            ),
            (
                "SHOW STREAMS LIKE x",
                "1:19: expected a quoted pattern after LIKE",
            ),
            (
                "SHOW STREAMS x",
                "1:14: expected LIKE 'pattern' or the end of the statement",
            ),
            ("DESCRIBE", "1:1: expected a name after 'DESCRIBE'"),
            (
                "DESCRIBE a b",
                "1:12: expected the end of the statement after DESCRIBE a",
            ),
            ("EXPLAIN", "1:1: expected a statement after EXPLAIN"),
            (
                "EXPLAIN EXPLAIN SELECT 1",
                "1:9: EXPLAIN EXPLAIN is not a statement",
            ),
            (
                "UPDATE t SET x = 1",
                "1:1: unsupported statement starting with 'UPDATE'",
            ),
            ("INSERT t VALUES (1)", "1:8: expected INTO after INSERT"),
            (
                "INSERT INTO t",
                "1:13: expected a query (SELECT or VALUES) after the name",
            ),
            ("SELECT 'unterminated", "1:8: Unterminated string literal"),
        ];
        for (sql, expected) in cases {
            let message = err(sql);
            assert!(
                message.contains(expected),
                "{sql}: got {message:?}, want {expected:?}"
            );
        }
    }
}
