//! Reading statements: a file is tokenized once by DataFusion's SQL tokenizer and split at
//! top-level `;`; each statement goes to the kind whose leading keywords it starts with
//! ([`StatementSyntax`]), which reads the rest of its tokens with the helpers here.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{EngineError, Result};
use crate::position::at;
use crate::statements::hints::Hints;
use crate::statements::kind::{Statement, StatementKind};

/// How a statement kind is recognised and read: one entry of the statement table.
pub struct StatementSyntax {
    /// The keywords it starts with, one string per alternative (`"SHOW TOPIC DETAILS"`),
    /// matched case-insensitively word by word; `(` stands for an opening parenthesis.
    pub leading: &'static [&'static str],
    /// How it starts, for the message about a statement no kind takes (`"INSERT INTO"`).
    pub synopsis: &'static str,
    /// Reads a statement that starts with one of [`leading`](Self::leading).
    pub parse: fn(&StatementTokens) -> Result<Box<dyn StatementKind>>,
}

/// Splits `text` into statements and reads each with the kinds of `syntax`.
pub(crate) fn parse_statements(
    text: &str,
    syntax: &'static [StatementSyntax],
) -> Result<Vec<Statement>> {
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| EngineError::Sql {
            message: e.message.clone(),
            position: at(e.location),
        })?;
    let text = SqlText::new(text);
    let mut statements = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth == 0 => {
                statements.extend(parse_statement(&text, &tokens[start..i], syntax)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    statements.extend(parse_statement(&text, &tokens[start..], syntax)?);
    Ok(statements)
}

fn parse_statement(
    text: &SqlText,
    tokens: &[TokenWithSpan],
    syntax: &'static [StatementSyntax],
) -> Result<Option<Statement>> {
    let statement = StatementTokens {
        text,
        all: tokens,
        sig: significant(tokens),
        syntax,
    };
    let (Some(first), Some(last)) = (statement.sig.first(), statement.sig.last()) else {
        return Ok(None);
    };
    let hints = Hints::read(tokens)?;
    let kind = (statement.kind_syntax()?.parse)(&statement)?;
    Ok(Some(Statement {
        position: at(first.span.start),
        text: text.text[text.offset(first.span.start)..text.offset(last.span.end)].to_string(),
        kind: kind.into(),
        hints,
    }))
}

/// `sql` (one statement) with its `WITH (...)` options setting `key` to `value`: the
/// value of the option replaced where it is given, else the option added first.
pub fn with_option(sql: &str, key: &str, value: &str) -> Result<String> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| EngineError::Sql {
            message: e.message.clone(),
            position: at(e.location),
        })?;
    let text = SqlText::new(sql);
    let sig = significant(&tokens);
    let mut depth = 0i32;
    let mut options = None;
    for (i, token) in sig.iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0
            && word_is(Some(token), "WITH")
            && sig.get(i + 1).is_some_and(|t| t.token == Token::LParen)
        {
            options = Some(i + 1);
        }
    }
    let Some(open) = options else {
        return Err(EngineError::Internal(format!(
            "the statement has no WITH (...) options: {sql}"
        )));
    };
    let quoted = format!("'{}'", value.replace('\'', "''"));
    let given = sig[open + 1..].windows(3).find(|w| {
        matches!(&w[0].token, Token::SingleQuotedString(k) if k.eq_ignore_ascii_case(key))
            && w[1].token == Token::Eq
    });
    let mut rewritten = sql.to_string();
    match given {
        Some(w) => rewritten.replace_range(
            text.offset(w[2].span.start)..text.offset(w[2].span.end),
            &quoted,
        ),
        None => {
            let after = text.offset(sig[open].span.end);
            rewritten.insert_str(after, &format!("'{key}' = {quoted}, "));
        }
    }
    Ok(rewritten)
}

/// The text being parsed, with a way from token locations to byte offsets.
pub struct SqlText<'a> {
    /// The whole text.
    pub text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SqlText<'a> {
    fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, line_starts }
    }

    /// The byte offset of a token location.
    pub fn offset(&self, location: Location) -> usize {
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

    /// The text from the start of `from` to the end of `to`.
    pub fn slice(&self, from: &TokenWithSpan, to: &TokenWithSpan) -> &'a str {
        &self.text[self.offset(from.span.start)..self.offset(to.span.end)]
    }
}

/// One statement's tokens, as its kind reads them.
pub struct StatementTokens<'a> {
    /// The file's text.
    pub text: &'a SqlText<'a>,
    /// Every token, whitespace and comments too (a query keeps its layout).
    pub all: &'a [TokenWithSpan],
    /// The significant tokens (not whitespace or comments); never empty.
    pub sig: Vec<&'a TokenWithSpan>,
    syntax: &'static [StatementSyntax],
}

impl<'a> StatementTokens<'a> {
    /// Every token from the significant token `index` on.
    pub fn all_from(&self, index: usize) -> &'a [TokenWithSpan] {
        let from = self
            .all
            .iter()
            .position(|t| std::ptr::eq(t, self.sig[index]))
            .expect("significant tokens come from all tokens");
        &self.all[from..]
    }

    /// The statement that starts at the significant token `index` (EXPLAIN's).
    pub fn statement_from(&self, index: usize) -> Result<Statement> {
        let statement = parse_statement(self.text, self.all_from(index), self.syntax)?;
        Ok(statement.expect("starts with a significant token"))
    }

    /// The entry whose leading keywords the statement starts with (the longest that
    /// matches); else an error naming what could have come where the match ended.
    fn kind_syntax(&self) -> Result<&'static StatementSyntax> {
        let mut best: Option<(usize, &StatementSyntax)> = None;
        // How far some alternative matched without matching whole, and what it wanted next.
        let mut partial = 0;
        let mut wanted: Vec<String> = Vec::new();
        for entry in self.syntax {
            for alternative in entry.leading {
                let words: Vec<&str> = alternative.split(' ').collect();
                let matched = words
                    .iter()
                    .zip(&self.sig)
                    .take_while(|(word, token)| leading_word(token, word))
                    .count();
                if matched == words.len() {
                    if best.is_none_or(|(n, _)| matched > n) {
                        best = Some((matched, entry));
                    }
                } else if matched > 0 && matched >= partial {
                    if matched > partial {
                        partial = matched;
                        wanted.clear();
                    }
                    let rest = words[matched..].join(" ");
                    if !wanted.contains(&rest) {
                        wanted.push(rest);
                    }
                }
            }
        }
        match best {
            Some((matched, entry)) if matched >= partial => Ok(entry),
            _ if partial > 0 => {
                let at = self.sig.get(partial).copied();
                let after: Vec<String> = self.sig[..partial]
                    .iter()
                    .map(|t| t.token.to_string().to_uppercase())
                    .collect();
                Err(error_at(
                    at.unwrap_or(self.sig[partial - 1]),
                    format!(
                        "expected {} after {}, found {}",
                        one_of(&wanted),
                        after.join(" "),
                        at.map_or("end of statement".into(), describe_token)
                    ),
                ))
            }
            _ => {
                let mut starts: Vec<&str> = Vec::new();
                for entry in self.syntax {
                    if !starts.contains(&entry.synopsis) {
                        starts.push(entry.synopsis);
                    }
                }
                Err(error_at(
                    self.sig[0],
                    format!(
                        "unsupported statement starting with {}: expected {}",
                        describe_token(self.sig[0]),
                        one_of(&starts)
                    ),
                ))
            }
        }
    }
}

/// `a, b or c`.
fn one_of(items: &[impl AsRef<str>]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => format!(
            "{} or {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

/// Whether `token` is the leading keyword `word` (or `(` for `"("`).
fn leading_word(token: &TokenWithSpan, word: &str) -> bool {
    match &token.token {
        Token::LParen => word == "(",
        Token::Word(w) => w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word),
        _ => false,
    }
}

/// The significant (non-whitespace, non-comment) tokens of a statement.
pub fn significant(tokens: &[TokenWithSpan]) -> Vec<&TokenWithSpan> {
    tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect()
}

/// Whether `token` is the SQL keyword `expected`.
pub fn keyword(token: Option<&&TokenWithSpan>, expected: Keyword) -> bool {
    matches!(token, Some(t) if matches!(&t.token, Token::Word(w) if w.keyword == expected))
}

/// Whether `token` is the unquoted word `expected`, in any case.
pub fn word_is(token: Option<&&TokenWithSpan>, expected: &str) -> bool {
    matches!(token, Some(t) if matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(expected)))
}

/// A SQL error at `token`.
pub fn error_at(token: &TokenWithSpan, message: impl Into<String>) -> EngineError {
    EngineError::Sql {
        message: message.into(),
        position: at(token.span.start),
    }
}

/// A token as messages show it.
pub fn describe_token(token: &TokenWithSpan) -> String {
    match &token.token {
        Token::EOF => "end of statement".to_string(),
        other => format!("'{other}'"),
    }
}

/// A name: as written when quoted, else lower-cased.
pub fn identifier(
    token: Option<&&TokenWithSpan>,
    what: &str,
    after: &TokenWithSpan,
) -> Result<String> {
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

/// An error unless the statement ends after the significant token `last`.
pub fn end_after(sig: &[&TokenWithSpan], last: usize, what: &str) -> Result<()> {
    match sig.get(last + 1) {
        None => Ok(()),
        Some(extra) => Err(error_at(
            extra,
            format!(
                "expected the end of the statement after {what}, found {}",
                describe_token(extra)
            ),
        )),
    }
}

/// `[LIKE 'pattern']`: the rest of a SHOW statement.
pub fn like_pattern(rest: &[&TokenWithSpan]) -> Result<Option<String>> {
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
}

/// A quoted name (`SHOW JOB STATUS 'name'`): the only token of `rest`.
pub fn quoted_name(rest: &[&TokenWithSpan], after: &TokenWithSpan, what: &str) -> Result<String> {
    match rest {
        [name] => match &name.token {
            Token::SingleQuotedString(value) => Ok(value.clone()),
            _ => Err(error_at(name, format!("expected {what}, quoted"))),
        },
        [] => Err(error_at(after, format!("expected {what}, quoted"))),
        [_, extra, ..] => Err(error_at(
            extra,
            format!(
                "expected the end of the statement after {what}, found {}",
                describe_token(extra)
            ),
        )),
    }
}
