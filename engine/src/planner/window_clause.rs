//! Our window clauses on DataFusion's AST: a SELECT's window comes from its `WINDOW
//! TUMBLING(...)` (or from Flink's `GROUP BY TUMBLE(ts, size)`); `TUMBLE_START(...)`-style
//! calls become `_window_start` / `_window_end`, those two columns join the GROUP BY, and the
//! seed's `COUNT_DISTINCT` / `LISTAGG` map onto DataFusion's functions. The time source's rows
//! carry event time and watermark in those two columns (see `ferris_streaming::event_time`),
//! and a window's rows its bounds, so DataFusion plans ordinary aggregates, which
//! `ferris_streaming::WindowAggregateRule` replaces. A query may window a window's rows: its
//! windows nest, each over the next.

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::planner::IdentNormalizer;
use datafusion::sql::sqlparser::ast::Spanned;
use datafusion::sql::sqlparser::ast::{
    self, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, ObjectName, ObjectNamePart, SetExpr, Statement, TableFactor, Value,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use ferris_connectors::options::parse_duration;
use ferris_streaming::{EVENT_TIME_COLUMN, WATERMARK_COLUMN, WindowSpec};

use crate::error::{EngineError, Result};
use crate::position::Position;
use crate::statements::streaming_query::WindowClause;

/// A window and the column its event time comes from, if it names one.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPlan {
    /// The window's shape.
    pub spec: WindowSpec,
    /// `WINDOW TUMBLING(ts, ...)` / `TUMBLE(ts, ...)`: the event time column.
    pub time_column: Option<String>,
}

fn sql_error(message: impl Into<String>, position: Position) -> EngineError {
    EngineError::Sql {
        message: message.into(),
        position,
    }
}

fn position_of(span: datafusion::sql::sqlparser::tokenizer::Span) -> Position {
    Position {
        line: span.start.line,
        column: span.start.column,
    }
}

/// Milliseconds of a window size written as `30s`-style shorthand or an SQL interval.
fn duration_ms(text: &str, what: &str, position: Position) -> Result<i64> {
    let bad = || {
        sql_error(
            format!("{what}: '{text}' is not a duration (try 30s, 1m, INTERVAL '5' SECOND)"),
            position,
        )
    };
    let duration = match parse_duration(text) {
        Some(d) => d,
        None => {
            let expr = Parser::new(&GenericDialect {})
                .try_with_sql(text)
                .and_then(|mut p| p.parse_expr())
                .map_err(|_| bad())?;
            interval_duration(&expr).ok_or_else(bad)?
        }
    };
    let ms = duration.as_millis() as i64;
    if ms <= 0 {
        return Err(sql_error(
            format!("{what} must be at least 1ms, got '{text}'"),
            position,
        ));
    }
    Ok(ms)
}

/// The duration of `INTERVAL '5' SECOND` / `INTERVAL '5 seconds'`.
fn interval_duration(expr: &Expr) -> Option<std::time::Duration> {
    let Expr::Interval(interval) = expr else {
        return None;
    };
    let Expr::Value(value) = interval.value.as_ref() else {
        return None;
    };
    let amount = match &value.value {
        Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
        _ => return None,
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{amount} {field}"),
        None => amount,
    };
    parse_duration(&text.to_lowercase())
}

fn window_spec(kind: &str, sizes: &[i64]) -> WindowSpec {
    match (kind, sizes) {
        ("TUMBLING", [size]) => WindowSpec::Tumbling { size: *size },
        ("SESSION", [gap]) => WindowSpec::Session { gap: *gap },
        (_, [size, slide]) => WindowSpec::Sliding {
            size: *size,
            slide: *slide,
        },
        _ => unreachable!("argument counts are checked by the callers"),
    }
}

/// The window of a `WINDOW KIND(args)` clause.
fn window_from_clause(clause: &WindowClause) -> Result<WindowPlan> {
    let sizes_wanted = if matches!(clause.kind.as_str(), "SLIDING" | "HOPPING") {
        2
    } else {
        1
    };
    let kind = if clause.kind == "HOPPING" {
        "SLIDING"
    } else {
        clause.kind.as_str()
    };
    let (time_column, sizes) = match clause.args.len() {
        n if n == sizes_wanted => (None, &clause.args[..]),
        n if n == sizes_wanted + 1 => (Some(clause.args[0].clone()), &clause.args[1..]),
        n => {
            return Err(sql_error(
                format!(
                    "WINDOW {} takes {} duration(s), optionally after the time column; got {n} arguments",
                    clause.kind, sizes_wanted
                ),
                clause.position,
            ));
        }
    };
    let what = format!("WINDOW {}", clause.kind);
    let sizes = sizes
        .iter()
        .map(|s| duration_ms(s, &what, clause.position))
        .collect::<Result<Vec<_>>>()?;
    Ok(WindowPlan {
        spec: window_spec(kind, &sizes),
        time_column: time_column.map(|c| c.trim_matches('"').to_string()),
    })
}

fn function_name(function: &ast::Function) -> String {
    function.name.to_string().to_uppercase()
}

fn function_args(function: &ast::Function) -> Vec<&Expr> {
    match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// `TUMBLE(ts, size)`, `HOP(ts, slide, size)`, `SESSION(ts, gap)` in a GROUP BY.
fn window_from_group_function(function: &ast::Function) -> Result<Option<WindowPlan>> {
    let name = function_name(function);
    let (kind, wanted) = match name.as_str() {
        "TUMBLE" => ("TUMBLING", 2),
        "HOP" => ("SLIDING", 3),
        "SESSION" => ("SESSION", 2),
        _ => return Ok(None),
    };
    let position = position_of(function.name.span());
    let args = function_args(function);
    if args.len() != wanted {
        return Err(sql_error(
            format!("{name} takes {wanted} arguments: the time column and the size(s)"),
            position,
        ));
    }
    let time_column = match args[0] {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        other => {
            return Err(sql_error(
                format!("{name}: the first argument must be a column, not {other}"),
                position,
            ));
        }
    };
    let mut sizes = args[1..]
        .iter()
        .map(|e| {
            interval_duration(e)
                .map(|d| d.as_millis() as i64)
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    sql_error(
                        format!("{name}: '{e}' is not an interval such as INTERVAL '10' SECOND"),
                        position,
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    // Flink's HOP is (slide, size); ours is (size, slide).
    if name == "HOP" {
        sizes.reverse();
    }
    Ok(Some(WindowPlan {
        spec: window_spec(kind, &sizes),
        time_column: Some(time_column),
    }))
}

fn identifier(name: &str) -> Expr {
    Expr::Identifier(Ident::new(name))
}

/// A window of a query, and the SELECT it windows.
#[derive(Debug, Clone, PartialEq)]
struct SelectWindow {
    /// Where the SELECT starts: it names the select.
    pub select: Position,
    /// Its window.
    pub plan: WindowPlan,
}

/// What a query's windows and stream are, once its AST is rewritten for streaming.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryWindows {
    /// Its windows, outermost first: each after the first aggregates the rows of the one
    /// after it, the last those of the sources.
    pub windows: Vec<WindowPlan>,
    /// The sources its stream reads (see [`stream_sources`]).
    pub sources: Vec<String>,
}

/// Rewrites the query for streaming (see [`rewrite_query`] and [`stream_sources`]) and
/// checks that its windows nest: each reads the rows of the next, down to the sources.
pub fn plan_windows(
    statement: &mut DfStatement,
    clauses: &[WindowClause],
    position: Position,
) -> Result<QueryWindows> {
    let found = rewrite_query(statement, clauses, position)?;
    let windowed: Vec<Position> = found.iter().map(|w| w.select).collect();
    let stream = stream_sources(statement, &windowed);
    let mut windows = Vec::with_capacity(found.len());
    for level in 0..found.len() {
        let at_level: Vec<&Position> = stream
            .windows
            .iter()
            .filter(|(_, above)| *above == level)
            .map(|(select, _)| select)
            .collect();
        match at_level[..] {
            [select] => windows.push(
                found
                    .iter()
                    .find(|w| w.select == *select)
                    .expect("met windows were found")
                    .plan
                    .clone(),
            ),
            [] => {
                let lost = found
                    .iter()
                    .find(|w| !stream.windows.iter().any(|(s, _)| *s == w.select))
                    .map_or(position, |w| w.select);
                return Err(sql_error(
                    "this SELECT's window is not on the query's stream: a window aggregates the rows of the query's first FROM item (through subqueries, CTEs and UNION ALL), or of a window below it",
                    lost,
                ));
            }
            [_, second, ..] => {
                return Err(sql_error(
                    "two windows side by side (in the branches of a UNION ALL): window the UNION ALL once, around it",
                    *second,
                ));
            }
        }
    }
    // A source read beside a window's rows (in the other branch of a UNION ALL) would be
    // taken for them.
    if let Some(beside) = stream
        .sources
        .iter()
        .find(|source| source.windows_above < found.len())
    {
        return Err(sql_error(
            format!(
                "'{}' is read beside a window's rows: a window over a window's rows reads them alone",
                beside.name
            ),
            beside.select,
        ));
    }
    Ok(QueryWindows {
        windows,
        sources: stream.sources.into_iter().map(|s| s.name).collect(),
    })
}

/// Rewrites the query for streaming and returns its windows, each from a `WINDOW` clause or
/// the Flink group-window functions of a SELECT, in the order the SELECTs are met from the
/// top down.
fn rewrite_query(
    statement: &mut DfStatement,
    clauses: &[WindowClause],
    position: Position,
) -> Result<Vec<SelectWindow>> {
    let DfStatement::Statement(statement) = statement else {
        return Err(sql_error("expected a query", position));
    };
    let statement: &mut Statement = statement.as_mut();
    let mut windows = Vec::new();
    if let Statement::Query(query) = statement {
        each_select(query, &mut |select| {
            if let Some(window) = select_window(select, clauses)? {
                windows.push(window);
            }
            Ok(())
        })?;
    }
    if let Some(clause) = clauses
        .iter()
        .find(|c| !windows.iter().any(|w| w.select == c.select))
    {
        return Err(sql_error(
            "WINDOW applies to a SELECT ... GROUP BY (or a SELECT of aggregates) of the query, a subquery in FROM or a CTE",
            clause.position,
        ));
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr {
            match function_name(function).as_str() {
                "TUMBLE_START" | "HOP_START" | "SESSION_START" => {
                    *expr = identifier(EVENT_TIME_COLUMN)
                }
                "TUMBLE_END" | "HOP_END" | "SESSION_END" => *expr = identifier(WATERMARK_COLUMN),
                "COUNT_DISTINCT" => {
                    function.name =
                        ObjectName(vec![ObjectNamePart::Identifier(Ident::new("count"))]);
                    if let FunctionArguments::List(list) = &mut function.args {
                        list.duplicate_treatment = Some(DuplicateTreatment::Distinct);
                    }
                }
                "LISTAGG" => {
                    function.name =
                        ObjectName(vec![ObjectNamePart::Identifier(Ident::new("string_agg"))]);
                    if let FunctionArguments::List(list) = &mut function.args
                        && list.args.len() == 1
                    {
                        list.args
                            .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                                Value::SingleQuotedString(",".into()),
                            ))));
                    }
                }
                _ => {}
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(windows)
}

/// The window of one SELECT, from its `WINDOW` clause or a group-window function in its
/// GROUP BY, whose window columns join its GROUP BY.
fn select_window(
    select: &mut ast::Select,
    clauses: &[WindowClause],
) -> Result<Option<SelectWindow>> {
    let at = position_of(select.select_token.0.span);
    let clause = clauses.iter().find(|c| c.select == at);
    let mut window = clause.map(window_from_clause).transpose()?;
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return Ok(None);
    };
    let mut kept = Vec::with_capacity(exprs.len());
    for expr in exprs.drain(..) {
        let found = match &expr {
            Expr::Function(f) => window_from_group_function(f)?,
            _ => None,
        };
        match (found, &window) {
            (Some(_), Some(_)) => {
                return Err(sql_error(
                    "a SELECT has one window: one WINDOW clause or one group window function",
                    clause.map_or(at, |c| c.position),
                ));
            }
            (Some(found), None) => window = Some(found),
            (None, _) => kept.push(expr),
        }
    }
    if window.is_some() {
        kept.push(identifier(EVENT_TIME_COLUMN));
        kept.push(identifier(WATERMARK_COLUMN));
    }
    *exprs = kept;
    Ok(window.map(|plan| SelectWindow { select: at, plan }))
}

/// Calls `f` on every SELECT of a query's FROM items, CTEs and set operations, top down.
fn each_select(
    query: &mut ast::Query,
    f: &mut dyn FnMut(&mut ast::Select) -> Result<()>,
) -> Result<()> {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            each_select(&mut cte.query, f)?;
        }
    }
    each_select_of_set(&mut query.body, f)
}

fn each_select_of_set(
    body: &mut SetExpr,
    f: &mut dyn FnMut(&mut ast::Select) -> Result<()>,
) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            f(select)?;
            for from in &mut select.from {
                each_select_of_table(from, f)?;
            }
            Ok(())
        }
        SetExpr::Query(query) => each_select(query, f),
        SetExpr::SetOperation { left, right, .. } => {
            each_select_of_set(left, f)?;
            each_select_of_set(right, f)
        }
        _ => Ok(()),
    }
}

fn each_select_of_table(
    table: &mut ast::TableWithJoins,
    f: &mut dyn FnMut(&mut ast::Select) -> Result<()>,
) -> Result<()> {
    let relations =
        std::iter::once(&mut table.relation).chain(table.joins.iter_mut().map(|j| &mut j.relation));
    for relation in relations {
        match relation {
            TableFactor::Derived { subquery, .. } => each_select(subquery, f)?,
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => each_select_of_table(table_with_joins, f)?,
            _ => {}
        }
    }
    Ok(())
}

/// What [`stream_sources`] found of a query's stream.
#[derive(Debug, Default)]
struct StreamPath {
    /// The sources its stream comes from.
    sources: Vec<StreamSource>,
    /// The windowed SELECTs on the way, each with how many of them are above it.
    windows: Vec<(Position, usize)>,
}

/// A source a query's stream comes from.
#[derive(Debug)]
struct StreamSource {
    /// Its name, as DataFusion resolves it.
    name: String,
    /// Where the SELECT reading it starts.
    select: Position,
    /// How many windowed SELECTs are above it.
    windows_above: usize,
}

/// The sources a query's stream comes from: its first FROM item (the stream side of a
/// stream-table join), followed through subqueries, common table expressions, the branches
/// of a UNION ALL and the windowed SELECTs (`windowed`, by where they start). Each select
/// on the way below a window passes the stamp columns (event time and watermark, or a
/// window's bounds) on, so that the window's GROUP BY finds them.
fn stream_sources(statement: &mut DfStatement, windowed: &[Position]) -> StreamPath {
    let mut path = StreamPath::default();
    if let DfStatement::Statement(statement) = statement
        && let Statement::Query(query) = statement.as_mut()
    {
        let ast::Query { with, body, .. } = query.as_mut();
        let mut follow = Follow {
            ctes: with
                .as_mut()
                .map_or(&mut [], |w| w.cte_tables.as_mut_slice()),
            within: Vec::new(),
            windowed,
            path: &mut path,
        };
        follow.set(body, true, 0, 0);
    }
    path
}

/// The walk of [`stream_sources`].
struct Follow<'a> {
    ctes: &'a mut [ast::Cte],
    /// The CTEs being followed: inside one, its own name is the table it hides.
    within: Vec<usize>,
    windowed: &'a [Position],
    path: &'a mut StreamPath,
}

/// How deep CTEs and subqueries are followed.
const MAX_DEPTH: usize = 16;

/// A table or CTE name as DataFusion resolves it: folded to lower case unless quoted.
fn normalized(ident: &Ident) -> String {
    IdentNormalizer::default().normalize(ident.clone())
}

impl Follow<'_> {
    /// Follows `body`, below `windows` windowed SELECTs.
    fn set(&mut self, body: &mut SetExpr, top: bool, depth: usize, windows: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match body {
            SetExpr::Select(select) => self.select(select, top, depth, windows),
            SetExpr::Query(query) => self.set(&mut query.body, false, depth + 1, windows),
            SetExpr::SetOperation {
                op: ast::SetOperator::Union,
                set_quantifier: ast::SetQuantifier::All,
                left,
                right,
            } => {
                self.set(left, false, depth + 1, windows);
                self.set(right, false, depth + 1, windows);
            }
            _ => {}
        }
    }

    fn select(&mut self, select: &mut ast::Select, top: bool, depth: usize, windows: usize) {
        let at = position_of(select.select_token.0.span);
        let windowed = self.windowed.contains(&at);
        // A select below the top passes the stamps on, unless its rows are no longer the
        // source's (it aggregates or removes duplicates, other than by a window) or it
        // takes every column (the stamps among them).
        let aggregates = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            || select.having.is_some()
            || select.distinct.is_some();
        if !top && aggregates && !windowed {
            return;
        }
        // The name the stream followed (the first FROM item) goes by: `t.*` of it takes
        // every column of it, the stamps among them (not so `i.*` of a table joined).
        let followed = select.from.first().and_then(|from| match &from.relation {
            TableFactor::Table { alias: Some(a), .. }
            | TableFactor::Derived { alias: Some(a), .. } => Some(normalized(&a.name)),
            TableFactor::Table { name, .. } => name.0.last()?.as_ident().map(normalized),
            _ => None,
        });
        let every_column = select.projection.iter().any(|item| match item {
            ast::SelectItem::Wildcard(_) => true,
            ast::SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) => {
                followed.is_some()
                    && name.0.last().and_then(|p| p.as_ident()).map(normalized) == followed
            }
            _ => false,
        });
        if windows > 0 && !every_column {
            for column in [EVENT_TIME_COLUMN, WATERMARK_COLUMN] {
                let selected = select.projection.iter().any(|item| match item {
                    ast::SelectItem::UnnamedExpr(Expr::Identifier(i)) => i.value == column,
                    ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                        parts.last().is_some_and(|i| i.value == column)
                    }
                    _ => false,
                });
                if !selected {
                    select
                        .projection
                        .push(ast::SelectItem::UnnamedExpr(identifier(column)));
                }
            }
        }
        let windows = match windowed {
            true => {
                self.path.windows.push((at, windows));
                windows + 1
            }
            false => windows,
        };
        let Some(from) = select.from.first_mut() else {
            return;
        };
        match &mut from.relation {
            TableFactor::Table { name, .. } => {
                let Some(name) = name.0.last().and_then(|p| p.as_ident()).map(normalized) else {
                    return;
                };
                let cte = self
                    .ctes
                    .iter()
                    .position(|cte| normalized(&cte.alias.name) == name);
                match cte.filter(|i| !self.within.contains(i)) {
                    Some(i) => {
                        let mut cte = self.ctes[i].clone();
                        self.within.push(i);
                        self.set(&mut cte.query.body, false, depth + 1, windows);
                        self.within.pop();
                        pass_stamps_through(&mut cte.alias, windows);
                        self.ctes[i] = cte;
                    }
                    None => self.path.sources.push(StreamSource {
                        name,
                        select: at,
                        windows_above: windows,
                    }),
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                self.set(&mut subquery.body, false, depth + 1, windows);
                if let Some(alias) = alias {
                    pass_stamps_through(alias, windows);
                }
            }
            _ => {}
        }
    }
}

/// Below `windows` windows, a subquery's or CTE's column names, when it names them, name
/// the stamps too.
fn pass_stamps_through(alias: &mut ast::TableAlias, windows: usize) {
    if windows > 0 && !alias.columns.is_empty() {
        for column in [EVENT_TIME_COLUMN, WATERMARK_COLUMN] {
            if !alias.columns.iter().any(|c| c.name.value == column) {
                alias
                    .columns
                    .push(ast::TableAliasColumnDef::from_name(column));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::config::Dialect;
    use datafusion::prelude::SessionContext;

    fn rewrite(sql: &str, clause: Option<WindowClause>) -> Result<(String, Option<WindowPlan>)> {
        let state = SessionContext::new().state();
        let mut statement = state.sql_to_statement(sql, &Dialect::Generic).unwrap();
        let clauses: Vec<WindowClause> = clause.into_iter().collect();
        let windows = rewrite_query(&mut statement, &clauses, Position::default())?;
        Ok((
            statement.to_string(),
            windows.into_iter().next().map(|w| w.plan),
        ))
    }

    /// A clause of the SELECT at the start of the statement.
    fn clause(kind: &str, args: &[&str]) -> WindowClause {
        WindowClause {
            kind: kind.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            position: Position { line: 2, column: 1 },
            select: Position { line: 1, column: 1 },
        }
    }

    #[test]
    fn window_clause_forms() {
        let (sql, window) = rewrite(
            "SELECT k, COUNT(*) FROM t GROUP BY k",
            Some(clause("TUMBLING", &["INTERVAL '1' MINUTE"])),
        )
        .unwrap();
        assert_eq!(window.unwrap().spec, WindowSpec::Tumbling { size: 60_000 });
        assert!(
            sql.ends_with("GROUP BY k, _window_start, _window_end"),
            "{sql}"
        );
        let (_, window) = rewrite(
            "SELECT COUNT(*) FROM t",
            Some(clause("SLIDING", &["ts", "1m", "10s"])),
        )
        .unwrap();
        assert_eq!(
            window.unwrap(),
            WindowPlan {
                spec: WindowSpec::Sliding {
                    size: 60_000,
                    slide: 10_000
                },
                time_column: Some("ts".into())
            }
        );
        let (_, window) = rewrite(
            "SELECT COUNT(*) FROM t",
            Some(clause("SESSION", &["500ms"])),
        )
        .unwrap();
        assert_eq!(window.unwrap().spec, WindowSpec::Session { gap: 500 });
        let (_, window) = rewrite(
            "SELECT COUNT(*) FROM t",
            Some(clause("HOPPING", &["INTERVAL '2' HOUR", "1h"])),
        )
        .unwrap();
        assert_eq!(
            window.unwrap().spec,
            WindowSpec::Sliding {
                size: 7_200_000,
                slide: 3_600_000
            }
        );
    }

    #[test]
    fn flink_group_windows_and_seed_aliases() {
        let (sql, window) = rewrite(
            "SELECT k, TUMBLE_START(ts, INTERVAL '10' SECOND) AS s, TUMBLE_END(ts, INTERVAL '10' SECOND), COUNT_DISTINCT(x), LISTAGG(y) FROM t GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k",
            None,
        )
        .unwrap();
        assert_eq!(
            window.unwrap(),
            WindowPlan {
                spec: WindowSpec::Tumbling { size: 10_000 },
                time_column: Some("ts".into())
            }
        );
        assert!(
            sql.contains("_window_start AS s, _window_end, count(DISTINCT x), string_agg(y, ',')"),
            "{sql}"
        );
        assert!(
            sql.ends_with("GROUP BY k, _window_start, _window_end"),
            "{sql}"
        );
        let (_, window) = rewrite(
            "SELECT COUNT(*) FROM t GROUP BY HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)",
            None,
        )
        .unwrap();
        assert_eq!(
            window.unwrap().spec,
            WindowSpec::Sliding {
                size: 300_000,
                slide: 60_000
            }
        );
    }

    #[test]
    fn window_errors() {
        let cases = [
            (
                Some(clause("TUMBLING", &["soon"])),
                "SELECT COUNT(*) FROM t",
                "2:1: WINDOW TUMBLING: 'soon' is not a duration",
            ),
            (
                Some(clause("TUMBLING", &["a", "b", "c"])),
                "SELECT COUNT(*) FROM t",
                "WINDOW TUMBLING takes 1 duration(s)",
            ),
            (
                Some(clause("SESSION", &["0s"])),
                "SELECT COUNT(*) FROM t",
                "must be at least 1ms",
            ),
            (
                Some(clause("TUMBLING", &["1s"])),
                "VALUES (1)",
                "WINDOW applies to a SELECT",
            ),
            (
                Some(clause("TUMBLING", &["1s"])),
                "SELECT COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
                "a SELECT has one window",
            ),
            (
                None,
                "SELECT COUNT(*) FROM t GROUP BY TUMBLE(ts)",
                "TUMBLE takes 2 arguments",
            ),
            (
                None,
                "SELECT COUNT(*) FROM t GROUP BY TUMBLE(1, INTERVAL '1' SECOND)",
                "must be a column",
            ),
            (
                None,
                "SELECT COUNT(*) FROM t GROUP BY TUMBLE(ts, 5)",
                "is not an interval",
            ),
        ];
        for (clause, sql, expected) in cases {
            let err = rewrite(sql, clause).unwrap_err().to_string();
            assert!(err.contains(expected), "{sql}: {err}");
        }
    }

    /// The sources of a statement's stream, and the statement after the stamps are passed
    /// on for a window.
    fn sources(sql: &str) -> (Vec<String>, String) {
        let state = SessionContext::new().state();
        let mut statement = state.sql_to_statement(sql, &Dialect::Generic).unwrap();
        let DfStatement::Statement(top) = &statement else {
            panic!("a query")
        };
        let Statement::Query(query) = top.as_ref() else {
            panic!("a query")
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!("a select at the top")
        };
        let top = position_of(select.select_token.0.span);
        let path = stream_sources(&mut statement, &[top]);
        let names = path.sources.into_iter().map(|s| s.name).collect();
        (names, statement.to_string())
    }

    fn windows(sql: &str) -> Result<(QueryWindows, String)> {
        let statements = crate::statements::parse_statements(sql)?;
        let [statement] = &statements[..] else {
            panic!("one statement")
        };
        let query = &statement
            .kind
            .downcast_ref::<crate::statements::query::Query>()
            .expect("a query")
            .query;
        let mut config = datafusion::prelude::SessionConfig::new();
        config.options_mut().sql_parser.collect_spans = true;
        let state = SessionContext::new_with_config(config).state();
        let mut statement = state
            .sql_to_statement(&query.sql, &Dialect::Generic)
            .unwrap();
        let windows = plan_windows(&mut statement, &query.windows, query.position)?;
        Ok((windows, statement.to_string()))
    }

    #[test]
    fn windows_nest_each_over_the_rows_of_the_next() {
        let (found, sql) = windows(
            "SELECT s, MAX(n) AS most FROM (SELECT s, _window_start AS minute, COUNT(*) AS n FROM t GROUP BY s WINDOW TUMBLING(1m)) AS m GROUP BY s WINDOW TUMBLING(1h)",
        )
        .unwrap();
        let sizes: Vec<WindowSpec> = found.windows.iter().map(|w| w.spec).collect();
        assert_eq!(
            sizes,
            [
                WindowSpec::Tumbling { size: 3_600_000 },
                WindowSpec::Tumbling { size: 60_000 }
            ]
        );
        assert_eq!(found.sources, ["t"]);
        // The inner window's bounds reach the outer one's GROUP BY.
        assert!(
            sql.contains("COUNT(*) AS n, _window_start, _window_end FROM t GROUP BY s, _window_start, _window_end"),
            "{sql}"
        );
        assert!(
            sql.ends_with("GROUP BY s, _window_start, _window_end"),
            "{sql}"
        );
        let (found, _) = windows(
            "SELECT s, SUM(n) FROM (SELECT s, COUNT(*) AS n FROM t GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), s) GROUP BY s",
        )
        .unwrap();
        assert_eq!(found.windows.len(), 1);
        let err = windows(
            "SELECT s, COUNT(*) FROM (SELECT s FROM (SELECT s, COUNT(*) AS n FROM a GROUP BY s WINDOW TUMBLING(1s)) UNION ALL SELECT s FROM b) GROUP BY s WINDOW TUMBLING(1m)",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1:114: 'b' is read beside a window's rows"),
            "{err}"
        );
        let err = windows(
            "SELECT s, COUNT(*) FROM (SELECT s FROM a GROUP BY s WINDOW TUMBLING(1s) UNION ALL SELECT s FROM b GROUP BY s WINDOW TUMBLING(1s)) GROUP BY s WINDOW TUMBLING(1m)",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("side by side"), "{err}");
        let err =
            windows("SELECT s FROM t WHERE s IN (SELECT s FROM u GROUP BY s WINDOW TUMBLING(1s))")
                .unwrap_err()
                .to_string();
        assert!(err.contains("1:56: WINDOW applies to"), "{err}");
        let err = windows(
            "SELECT t.s FROM t JOIN (SELECT s, COUNT(*) AS n FROM u GROUP BY s WINDOW TUMBLING(1s)) AS w ON t.s = w.s",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1:25: this SELECT's window is not on the query's stream"),
            "{err}"
        );
    }

    #[test]
    fn the_stream_is_the_first_from_item_followed_through_subqueries_and_unions() {
        let (found, _) = sources("SELECT * FROM Trades t JOIN instruments i ON t.s = i.s");
        assert_eq!(found, vec!["trades"]);
        let (found, sql) = sources(
            "WITH big AS (SELECT s, q FROM trades WHERE q > 100) SELECT s, COUNT(*) FROM big GROUP BY s",
        );
        assert_eq!(found, vec!["trades"]);
        assert!(
            sql.contains("SELECT s, q, _window_start, _window_end FROM trades"),
            "{sql}"
        );
        let (found, sql) = sources(
            "SELECT s, COUNT(*) FROM (SELECT s FROM a UNION ALL SELECT * FROM b) AS t GROUP BY s",
        );
        assert_eq!(found, vec!["a", "b"]);
        assert!(
            sql.contains("SELECT s, _window_start, _window_end FROM a UNION ALL SELECT * FROM b"),
            "{sql}"
        );
        // An aggregate's rows are not the source's: nothing is followed into it.
        let (found, _) =
            sources("SELECT COUNT(*) FROM (SELECT s, COUNT(*) AS n FROM a GROUP BY s) AS t");
        assert!(found.is_empty());
        let (found, _) = sources("SELECT COUNT(*) FROM (SELECT DISTINCT s FROM a) AS t");
        assert!(found.is_empty());
        // Inside a CTE its own name is the table it hides; named columns name the stamps too.
        let (found, sql) = sources(
            "WITH trades(sym) AS (SELECT s FROM trades WHERE q > 1) SELECT sym, COUNT(*) FROM trades GROUP BY sym",
        );
        assert_eq!(found, vec!["trades"]);
        assert!(
            sql.contains("trades (sym, _window_start, _window_end) AS (SELECT s, _window_start, _window_end FROM trades"),
            "{sql}"
        );
        // `t.*` of the stream takes its stamps; `i.*` of a table joined does not.
        let joined = "WITH j AS (SELECT t.*, i.sector FROM trades AS t JOIN instruments AS i ON t.s = i.s) SELECT sector, COUNT(*) FROM j GROUP BY sector";
        let (_, sql) = sources(joined);
        assert!(sql.contains("SELECT t.*, i.sector FROM trades"), "{sql}");
        let (_, sql) = sources(&joined.replace("t.*, i.sector", "i.*, t.q"));
        assert!(
            sql.contains("SELECT i.*, t.q, _window_start, _window_end FROM trades"),
            "{sql}"
        );
        let (_, sql) = sources("SELECT n FROM (SELECT t._window_start, q FROM a AS t) AS x(n, q)");
        assert!(
            sql.contains("SELECT t._window_start, q, _window_end FROM a"),
            "{sql}"
        );
    }
}
