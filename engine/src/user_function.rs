//! What tells the functions users wrote (`CREATE FUNCTION`) from the built-in ones.

use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

use crate::python_aggregate::PythonAggregate;
use crate::python_function::PythonFunction;
use crate::sql_function::SqlFunction;

/// The language and the `CREATE FUNCTION` statement of `function`, if a user wrote it.
pub fn written(function: &ScalarUDF) -> Option<(&'static str, &str)> {
    if let Some(sql) = SqlFunction::of(function) {
        return Some(("sql", sql.definition()));
    }
    PythonFunction::of(function).map(|python| ("python", python.definition()))
}

/// The language and the `CREATE AGGREGATE FUNCTION` statement of `function`, if a user
/// wrote it.
pub fn written_aggregate(function: &AggregateUDF) -> Option<(&'static str, &str)> {
    PythonAggregate::of(function).map(|python| ("python", python.definition()))
}

/// Whether a function is called `name`: `Some(None)` a built-in one (scalar, aggregate or
/// window), `Some(Some((language, statement)))` one a user wrote.
pub fn find<'a>(state: &'a SessionState, name: &str) -> Option<Option<(&'static str, &'a str)>> {
    if let Some(function) = state.scalar_functions().get(name) {
        return Some(written(function));
    }
    if let Some(function) = state.aggregate_functions().get(name) {
        return Some(written_aggregate(function));
    }
    state.window_functions().get(name).map(|_| None)
}
