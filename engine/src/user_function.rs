//! What tells the functions users wrote (`CREATE FUNCTION`) from the built-in ones.

use datafusion::logical_expr::ScalarUDF;

use crate::python_function::PythonFunction;
use crate::sql_function::SqlFunction;

/// The language and the `CREATE FUNCTION` statement of `function`, if a user wrote it.
pub fn written(function: &ScalarUDF) -> Option<(&'static str, &str)> {
    if let Some(sql) = SqlFunction::of(function) {
        return Some(("sql", sql.definition()));
    }
    PythonFunction::of(function).map(|python| ("python", python.definition()))
}
