//! `?` placeholders, as JDBC and Python's DB-API (ADBC) write parameters.
//!
//! DataFusion binds parameters by number (`$1`, `$2`, ...) and takes every bare `?` for one
//! named parameter `?`. So once sqlparser has parsed a statement, its `?` are numbered in the
//! order they appear in the text, and DataFusion plans and binds them as `$1`, `$2`, ...

use std::ops::ControlFlow;

use datafusion::config::Dialect;
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::tokenizer::Location;

use crate::error::{EngineError, Result};
use crate::position;

/// Parses `sql` as DataFusion does, its `?` placeholders numbered: the one way queries are
/// parsed, whether they run or are prepared.
pub fn parse_query(state: &SessionState, sql: &str) -> Result<DfStatement> {
    let mut statement = state.sql_to_statement(sql, &Dialect::Generic)?;
    number_placeholders(&mut statement)?;
    Ok(statement)
}

/// Renames the `?` placeholders of `statement` `$1`, `$2`, ... in the order they appear in
/// the text. A statement that mixes `?` with other placeholders (`$1`, `?2`) is refused at
/// the first one of the other kind: their numbers could not both hold.
fn number_placeholders(statement: &mut DfStatement) -> Result<()> {
    let statement = match statement {
        DfStatement::Statement(statement) => statement.as_mut(),
        DfStatement::Explain(explain) => return number_placeholders(&mut explain.statement),
        _ => return Ok(()),
    };
    // Every placeholder in the order the visitor meets them, which is the AST's order, not
    // always the text's (`OFFSET ? LIMIT ?`).
    let mut found: Vec<(Location, String)> = Vec::new();
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Value(value) = expr
            && let Value::Placeholder(name) = &value.value
        {
            found.push((value.span.start, name.clone()));
        }
        ControlFlow::<()>::Continue(())
    });
    let mut in_text: Vec<usize> = (0..found.len()).collect();
    in_text.sort_by_key(|&i| found[i].0);
    let Some(&first) = in_text.first() else {
        return Ok(());
    };
    let is_bare = |i: usize| found[i].1 == "?";
    if let Some(&other) = in_text.iter().find(|&&i| is_bare(i) != is_bare(first)) {
        let (at, name) = &found[other];
        let (first_at, first_name) = &found[first];
        return Err(EngineError::Sql {
            message: format!(
                "placeholder {name} after {first_name} at {}:{}: use ? for every parameter, or $1, $2, ... for every one, not both",
                first_at.line, first_at.column
            ),
            position: position::at(*at),
        });
    }
    if !is_bare(first) {
        return Ok(());
    }
    // The number of each placeholder, by the order the visitor meets them.
    let mut numbers = vec![0; found.len()];
    for (n, &i) in in_text.iter().enumerate() {
        numbers[i] = n + 1;
    }
    let mut visited = numbers.into_iter();
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Value(value) = expr
            && let Value::Placeholder(name) = &mut value.value
        {
            *name = format!("${}", visited.next().expect("counted above"));
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn numbered(sql: &str) -> Result<String> {
        let mut statement = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        number_placeholders(&mut statement)?;
        Ok(statement.to_string())
    }

    #[test]
    fn question_marks_are_numbered_in_the_order_of_the_text() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c IN (?, (SELECT d FROM u WHERE e > ?))")
                .unwrap(),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, (SELECT d FROM u WHERE e > $3))"
        );
        // The AST keeps LIMIT before OFFSET; the numbers follow the text.
        assert_eq!(
            numbered("SELECT a FROM t OFFSET ? LIMIT ?").unwrap(),
            "SELECT a FROM t LIMIT $2 OFFSET $1"
        );
        assert_eq!(
            numbered("INSERT INTO s VALUES (?, ?), (?, 'x')").unwrap(),
            "INSERT INTO s VALUES ($1, $2), ($3, 'x')"
        );
        assert_eq!(
            numbered("EXPLAIN SELECT CASE WHEN a > ? THEN ? ELSE ? END FROM t").unwrap(),
            "EXPLAIN SELECT CASE WHEN a > $1 THEN $2 ELSE $3 END FROM t"
        );
    }

    #[test]
    fn numbered_placeholders_are_left_as_they_are() {
        let sql = "SELECT a FROM t WHERE b = $2 AND c = $1";
        assert_eq!(numbered(sql).unwrap(), sql);
    }

    #[test]
    fn mixing_question_marks_and_numbers_is_refused_where_the_other_kind_starts() {
        let error = numbered("SELECT a FROM t\nWHERE b = $1 AND c = ?").unwrap_err();
        assert_eq!(
            error.to_string(),
            "SQL error at 2:22: placeholder ? after $1 at 2:11: use ? for every parameter, or $1, $2, ... for every one, not both"
        );
        let error = numbered("SELECT ?, ?2").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("SQL error at 1:11: placeholder ?2 after ? at 1:8")
        );
    }

    #[tokio::test]
    async fn datafusion_binds_numbered_question_marks_by_position() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let statement = parse_query(&state, "SELECT ? - ? AS difference").unwrap();
        let plan = state
            .statement_to_plan(statement)
            .await
            .unwrap()
            .with_param_values(vec![
                datafusion::common::ScalarValue::Int64(Some(50)),
                datafusion::common::ScalarValue::Int64(Some(8)),
            ])
            .unwrap();
        let batches = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let difference = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(difference, 42);
    }
}
