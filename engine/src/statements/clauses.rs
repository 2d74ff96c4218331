//! Our clauses inside a query: `WINDOW TUMBLING(...)` (after any SELECT, a subquery's too),
//! `EMIT CHANGES|FINAL`, `WITH ('k' = 'v', ...)` and `PRIMARY KEY` after a select item are
//! recorded and blanked out. What is left is plain SQL for DataFusion, laid out at its
//! original line and column, so DataFusion's own errors point into the user's file.

use std::collections::HashSet;

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};
use ferris_connectors::options::OptionEntry;

use crate::error::Result;
use crate::position::{Position, at};
use crate::statements::parser::{
    SqlText, StatementTokens, describe_token, error_at, keyword, significant, word_is,
};
use crate::statements::streaming_query::{EmitMode, StreamingQuery, WindowClause};

/// The query that starts at the significant token `index` of a statement.
pub fn query_from(statement: &StatementTokens, index: usize) -> Result<StreamingQuery> {
    parse_query(statement.text, statement.all_from(index))
}

/// Takes our clauses out of a query, leaving DataFusion's SQL.
fn parse_query(source: &SqlText, tokens: &[TokenWithSpan]) -> Result<StreamingQuery> {
    let sig = significant(tokens);
    let first = sig[0];
    let mut blank: Vec<(usize, usize)> = Vec::new();
    let mut windows: Vec<WindowClause> = Vec::new();
    // The SELECT each open parenthesis depth is in, for the WINDOW clauses that follow.
    let mut selects: Vec<Option<Position>> = vec![None];
    let mut emit = None;
    let mut options: Option<Vec<OptionEntry>> = None;
    let mut primary_key = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < sig.len() {
        let token = sig[i];
        match &token.token {
            Token::LParen => {
                depth += 1;
                selects.push(None);
            }
            Token::RParen => {
                depth -= 1;
                selects.pop();
            }
            _ => {}
        }
        if options.is_some() {
            return Err(error_at(
                token,
                format!(
                    "unexpected {} after the WITH options; they end the statement",
                    describe_token(token)
                ),
            ));
        }
        let next = sig.get(i + 1);
        if keyword(Some(&token), Keyword::SELECT)
            && let Some(select) = selects.last_mut()
        {
            *select = Some(at(token.span.start));
        }
        // `WINDOW w AS (...)` is SQL's named window: only `WINDOW KIND(` is ours.
        if keyword(Some(&token), Keyword::WINDOW)
            && matches!(sig.get(i + 2).map(|t| &t.token), Some(Token::LParen))
        {
            let Some(Some(select)) = selects.last().copied() else {
                return Err(error_at(token, "WINDOW must follow a SELECT"));
            };
            if windows.iter().any(|w| w.select == select) {
                return Err(error_at(token, "a SELECT can have only one WINDOW clause"));
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
            windows.push(WindowClause {
                kind,
                args,
                position: at(token.span.start),
                select,
            });
            blank.push((
                source.offset(token.span.start),
                source.offset(sig[close].span.end),
            ));
            i = close + 1;
            continue;
        }
        if depth != 0 {
            if word_is(Some(&token), "EMIT") && (word_is(next, "CHANGES") || word_is(next, "FINAL"))
            {
                return Err(error_at(
                    token,
                    "EMIT is said once for the whole query, at its end: a window inside it emits its final rows",
                ));
            }
            i += 1;
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
        position: at(first.span.start),
        windows,
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
fn split_args(source: &SqlText, sig: &[&TokenWithSpan]) -> Vec<String> {
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
            position: at(key_token.span.start),
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
