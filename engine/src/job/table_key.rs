//! The key of a table's changelog (`CREATE TABLE`): what a reader upserts its rows by, from
//! the statement's `PRIMARY KEY` marks or the query's shape (a GROUP BY, a Top-N).

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, Projection};
use ferris_streaming::WATERMARK_COLUMN;

use crate::error::{EngineError, Result};
use crate::statements::streaming_query::StreamingQuery;

/// The key of a `CREATE TABLE`: the select items marked `PRIMARY KEY`, or else the selected
/// GROUP BY columns, which must then all be selected (none for an aggregate without GROUP BY),
/// or a Top-N's (see [`top_n_key`]).
pub(crate) fn table_key(
    name: &str,
    query: &StreamingQuery,
    plan: &LogicalPlan,
    schema: &SchemaRef,
) -> Result<Vec<String>> {
    let missing_key = || EngineError::Sql {
        message: format!(
            "CREATE TABLE {name} needs a key: GROUP BY columns, all selected (for a windowed table, with _window_start), or a select item marked PRIMARY KEY"
        ),
        position: query.position,
    };
    if !query.primary_key.is_empty() {
        for key in &query.primary_key {
            if schema.field_with_name(key).is_err() {
                return Err(EngineError::Sql {
                    message: format!("PRIMARY KEY column '{key}' is not a result column of {name}"),
                    position: query.position,
                });
            }
        }
        return Ok(query.primary_key.clone());
    }
    let mut node = plan;
    while let LogicalPlan::Sort(_) | LogicalPlan::Limit(_) = node {
        node = node.inputs()[0];
    }
    let LogicalPlan::Projection(projection) = node else {
        return Err(missing_key());
    };
    let mut input = projection.input.as_ref();
    while let LogicalPlan::Filter(filter) = input {
        input = filter.input.as_ref();
    }
    let LogicalPlan::Aggregate(aggregate) = input else {
        return top_n_key(name, query, projection).unwrap_or_else(|| Err(missing_key()));
    };
    // A window's end is no part of the key: a session's end moves as it grows, and a fixed
    // window's end follows from its start.
    let group_columns: Vec<_> = aggregate.schema.columns()[..aggregate.group_expr.len()]
        .iter()
        .filter(|c| c.name != WATERMARK_COLUMN)
        .cloned()
        .collect();
    // An aggregate without GROUP BY is a table of one row, whose key is empty.
    if aggregate.group_expr.is_empty() {
        return Ok(vec![]);
    }
    let key: Vec<String> = projection
        .expr
        .iter()
        .zip(projection.schema.fields())
        .filter_map(|(expr, field)| match expr.clone().unalias() {
            Expr::Column(column) if group_columns.contains(&column) => Some(field.name().clone()),
            _ => None,
        })
        .collect();
    if key.is_empty() || key.len() < group_columns.len() {
        return Err(missing_key());
    }
    Ok(key)
}

/// The key of a Top-N's changelog (`ROW_NUMBER() OVER (PARTITION BY k ...) <= N`), if
/// `projection` selects from one: the `PARTITION BY` columns, which must all be selected, and
/// the rank, which must be selected when N > 1 (N rows of a key are told apart by it).
fn top_n_key(
    name: &str,
    query: &StreamingQuery,
    projection: &Projection,
) -> Option<Result<Vec<String>>> {
    let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
        return None;
    };
    let mut below = filter.input.as_ref();
    let mut between = Vec::new();
    loop {
        match below {
            LogicalPlan::Projection(p) => {
                between.push(p);
                below = p.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(alias) => below = alias.input.as_ref(),
            _ => break,
        }
    }
    let LogicalPlan::Window(window) = below else {
        return None;
    };
    let [Expr::WindowFunction(function)] = window.window_expr.as_slice() else {
        return None;
    };
    if function.fun.name() != "row_number" {
        return None;
    }
    // The rank's name where the filter reads it, through the projections that rename it.
    let mut rank = window
        .schema
        .field(window.schema.fields().len() - 1)
        .name()
        .clone();
    for p in between.iter().rev() {
        rank = output_name(p, &rank)?;
    }
    let rank = rank.as_str();
    let limit = rank_limit(&filter.predicate, rank)?;
    let selected = |wanted: &str| output_name(projection, wanted);
    let error = |message: String| {
        Some(Err(EngineError::Sql {
            message: format!("CREATE TABLE {name} needs a key: {message}"),
            position: query.position,
        }))
    };
    let mut key = Vec::new();
    for expr in &function.params.partition_by {
        let Expr::Column(column) = expr else {
            return error("a Top-N's PARTITION BY must name columns".into());
        };
        match selected(&column.name) {
            Some(name) => key.push(name),
            None => {
                return error(format!(
                    "select the Top-N's PARTITION BY column '{}'",
                    column.name
                ));
            }
        }
    }
    match selected(rank) {
        Some(rank) => key.push(rank),
        None if limit > 1 => {
            return error(format!(
                "a Top-N of {limit} rows per key must select its ROW_NUMBER() column"
            ));
        }
        None => {}
    }
    Some(Ok(key))
}

/// The name `projection` gives the column `name` of its input, if it selects it.
fn output_name(projection: &Projection, name: &str) -> Option<String> {
    projection
        .expr
        .iter()
        .zip(projection.schema.fields())
        .find_map(|(expr, field)| match expr.clone().unalias() {
            Expr::Column(c) if c.name == name => Some(field.name().clone()),
            _ => None,
        })
}

/// N when `predicate` keeps the rows whose rank (column `rank`) is at most N: `rank <= N`,
/// `rank < N + 1`, `rank = 1`, or the same with the sides swapped.
fn rank_limit(predicate: &Expr, rank: &str) -> Option<i64> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else {
        return None;
    };
    let is_rank = |e: &Expr| matches!(e, Expr::Column(c) if c.name == rank);
    let number = |e: &Expr| match e {
        Expr::Literal(value, _) => match value.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(n) => n,
            _ => None,
        },
        _ => None,
    };
    let (op, n) = if is_rank(left) {
        (*op, number(right)?)
    } else if is_rank(right) {
        (op.swap()?, number(left)?)
    } else {
        return None;
    };
    match op {
        Operator::LtEq => Some(n),
        Operator::Lt => Some(n - 1),
        Operator::Eq if n == 1 => Some(1),
        _ => None,
    }
}
