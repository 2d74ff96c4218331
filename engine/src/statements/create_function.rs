//! `CREATE [OR REPLACE] [AGGREGATE] FUNCTION name(param TYPE, ...) RETURNS TYPE AS '...'`: a
//! function written in SQL ([`SqlFunction`]) or Python ([`PythonFunction`], an aggregate:
//! [`PythonAggregate`]), callable from every query, kept by a server with a state dir across
//! restarts (beside its jobs), listed by `SHOW FUNCTIONS`.
//!
//! DataFusion reads the statement (its parameter and return types; `AGGREGATE`, which its
//! parser does not know, is blanked out first); a SQL body is a string that DataFusion plans
//! as an expression over the parameters, by name, or a plain expression (`RETURN $1 * 2`)
//! whose `$1`, `$name` are the parameters.

use arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{
    AggregateUDF, DdlStatement, Expr, ExprSchemable, LogicalPlan, ScalarUDF,
};
use datafusion::optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::job::stored::StoredJob;
use crate::listing;
use crate::python_aggregate::PythonAggregate;
use crate::python_function::PythonFunction;
use crate::python_worker::PythonDefinition;
use crate::sql_function::{Parameter, SqlFunction};
use crate::statements::kind::{Execution, Statement, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens};
use crate::user_function;

/// The body of a function written in SQL, as an expression of columns named after its
/// parameters, checked: a string planned by DataFusion against the parameters, or an
/// expression whose `$1`, `$name` DataFusion made positional.
fn sql_body(
    engine: &Engine,
    body: &Option<Expr>,
    parameters: &[Parameter],
    returns: &DataType,
) -> std::result::Result<Expr, String> {
    let schema = SqlFunction::parameter_schema(parameters).map_err(|e| e.to_string())?;
    let body = match body.clone() {
        Some(Expr::Literal(ScalarValue::Utf8(Some(text)), _)) => engine
            .ctx
            .parse_sql_expr(&text, &schema)
            .map_err(|e| format!("in its body '{text}': {}", e.find_root()))?,
        Some(body) => {
            body.transform(|e| match &e {
                Expr::Placeholder(p) => {
                    let at = p.id[1..].parse::<usize>().ok().filter(|&i| i >= 1);
                    match at.and_then(|i| parameters.get(i - 1)) {
                        Some(parameter) => Ok(Transformed::yes(Expr::Column(
                            Column::new_unqualified(&parameter.name),
                        ))),
                        None => Ok(Transformed::no(e)),
                    }
                }
                _ => Ok(Transformed::no(e)),
            })
            .map_err(|e| e.to_string())?
            .data
        }
        None => return Err("AS '<expression>' is missing".into()),
    };
    // As the analyzer would in a query: the body is put in after it ran.
    let body = body
        .rewrite(&mut TypeCoercionRewriter::new(&schema))
        .map_err(|e| format!("in its body: {}", e.find_root()))?
        .data;
    let stray = body
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::AggregateFunction(_) | Expr::WindowFunction(_) | Expr::Placeholder(_)
            ))
        })
        .map_err(|e| e.to_string())?;
    if stray {
        return Err("its body must be an expression of its parameters alone: no aggregate, window function or unknown parameter".into());
    }
    let body_type = body
        .get_type(&schema)
        .map_err(|e| format!("in its body: {}", e.find_root()))?;
    if !arrow::compute::can_cast_types(&body_type, returns) {
        return Err(format!(
            "its body is of type {body_type}, which cannot be cast to {returns}"
        ));
    }
    Ok(body)
}

/// What a function is kept under among a server's kept jobs: no job's name has a `:`.
pub(crate) const KEPT_AS: &str = "function:";

/// `CREATE [OR REPLACE] [AGGREGATE] FUNCTION ...`, read by DataFusion when it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateFunction {
    /// `AGGREGATE`: a group's values in, one value out.
    pub aggregate: bool,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &[
        "CREATE FUNCTION",
        "CREATE OR REPLACE FUNCTION",
        "CREATE AGGREGATE FUNCTION",
        "CREATE OR REPLACE AGGREGATE FUNCTION",
    ],
    synopsis: "CREATE FUNCTION",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    // `CREATE AGGREGATE FUNCTION` or `CREATE OR REPLACE AGGREGATE FUNCTION`.
    let at = |i: usize| {
        statement
            .sig
            .get(i)
            .is_some_and(|t| matches!(&t.token, Token::Word(w) if w.keyword == Keyword::AGGREGATE))
    };
    Ok(Box::new(CreateFunction {
        aggregate: at(1) || at(3),
    }))
}

/// `sql` with its first `AGGREGATE` keyword blanked out (spaces, so that DataFusion's
/// positions stay those of the statement).
fn without_aggregate(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return sql.to_string();
    };
    let Some(start) = tokens.iter().find_map(|t| match &t.token {
        Token::Word(w) if w.keyword == Keyword::AGGREGATE => Some(t.span.start),
        _ => None,
    }) else {
        return sql.to_string();
    };
    // Lines end at `\n` (a `\r` before it stays on its line); columns count characters.
    let line_start: usize = sql
        .split_inclusive('\n')
        .take(start.line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let from = sql[line_start..]
        .char_indices()
        .nth(start.column.saturating_sub(1) as usize)
        .map_or(sql.len(), |(i, _)| line_start + i);
    let to = (from + "AGGREGATE".len()).min(sql.len());
    format!("{}{}{}", &sql[..from], " ".repeat(to - from), &sql[to..])
}

impl StatementKind for CreateFunction {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let sql = run.statement.text.as_str();
            let engine = run.engine;
            let (name, replaced) = self.create(engine, run.statement, false).await?;
            // A cluster keeps it for every node (each creates it); a server, beside its jobs.
            if let Some(cluster) = &engine.cluster {
                cluster.put_function(&name, sql).await?;
            } else if let Some(stored) = engine.stored_jobs() {
                stored.save(StoredJob {
                    name: format!("{KEPT_AS}{name}"),
                    sql: sql.to_string(),
                    stopped: false,
                })?;
            }
            let status = if replaced { "REPLACED" } else { "CREATED" };
            StatementOutput::rows(listing::function_reply(&name, status)?)
        }
        .boxed()
    }

    /// Creates the function a cluster keeps, as every node does, replacing one of its name.
    fn declare_as<'a>(&'a self, run: Execution<'a>, _name: &'a str) -> BoxFuture<'a, Result<()>> {
        async move { self.create(run.engine, run.statement, true).await.map(drop) }.boxed()
    }
}

impl CreateFunction {
    /// Makes the function `statement` says and registers it: its name, and whether it
    /// replaced one. `kept`: a cluster keeps it already, and it replaces whatever function
    /// of that name this node has.
    async fn create(
        &self,
        engine: &mut Engine,
        statement: &Statement,
        kept: bool,
    ) -> Result<(String, bool)> {
        let position = statement.position;
        let sql = statement.text.as_str();
        let error = |message: String| EngineError::Sql { message, position };
        let state = engine.ctx.state();
        let read = match self.aggregate {
            true => without_aggregate(sql),
            false => sql.to_string(),
        };
        let statement = state
            .sql_to_statement(&read, &datafusion::config::Dialect::Generic)
            .map_err(|e| error(e.find_root().to_string()))?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| error(e.find_root().to_string()))?;
        let LogicalPlan::Ddl(DdlStatement::CreateFunction(created)) = plan else {
            return Err(error("not a CREATE FUNCTION".into()));
        };
        // Calls are read with DataFusion's identifiers, lowercased unless quoted.
        let name = created.name.to_lowercase();
        let error = |message: String| error(format!("CREATE FUNCTION {name}: {message}"));
        let replaced = match user_function::find(&state, &name) {
            Some(None) => return Err(error("a built-in function of that name exists".into())),
            Some(Some(_)) if !created.or_replace && !kept => {
                return Err(error(
                    "a function of that name exists (CREATE OR REPLACE FUNCTION replaces it)"
                        .into(),
                ));
            }
            Some(Some(_)) => true,
            None => false,
        };
        let parameters: Vec<Parameter> = created
            .args
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, arg)| Parameter {
                name: arg
                    .name
                    .as_ref()
                    .map_or_else(|| format!("${}", i + 1), |n| n.value.to_lowercase()),
                data_type: arg.data_type.clone(),
            })
            .collect();
        let returns = created
            .return_type
            .clone()
            .ok_or_else(|| error("RETURNS <type> is missing".into()))?;
        let language = created
            .params
            .language
            .as_ref()
            .map(|l| l.value.to_lowercase());
        let python_code = || match created.params.function_body.clone() {
            Some(Expr::Literal(ScalarValue::Utf8(Some(code)), _)) => Ok(code),
            _ => Err(error(
                "a Python function's body is its code, quoted: AS 'def name(...): ...'".into(),
            )),
        };
        let python = |code: String| PythonDefinition {
            name: name.clone(),
            parameters: parameters.clone(),
            returns: returns.clone(),
            code,
            statement: sql.to_string(),
        };
        if self.aggregate {
            if language.as_deref() != Some("python") {
                return Err(error(
                    "an aggregate function is written in Python (LANGUAGE python)".into(),
                ));
            }
            let definition = python(python_code()?);
            // Starts its worker process, and runs it once.
            let loaded = tokio::task::spawn_blocking(move || PythonAggregate::try_new(definition))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            let aggregate = AggregateUDF::new_from_impl(loaded.map_err(error)?);
            forget(engine, &name);
            engine.ctx.register_udaf(aggregate);
            return Ok((name, replaced));
        }
        let function = match language.as_deref() {
            None | Some("sql") => {
                let body = sql_body(engine, &created.params.function_body, &parameters, &returns)
                    .map_err(error)?;
                ScalarUDF::new_from_impl(SqlFunction::new(&name, parameters, returns, body, sql))
            }
            Some("python") => {
                let definition = python(python_code()?);
                // Starts its worker process, and runs it once.
                let loaded =
                    tokio::task::spawn_blocking(move || PythonFunction::try_new(definition))
                        .await
                        .map_err(|e| EngineError::Internal(e.to_string()))?;
                ScalarUDF::new_from_impl(loaded.map_err(error)?)
            }
            Some(other) => {
                return Err(error(format!(
                    "LANGUAGE {other} is not supported: a function is written in sql or python"
                )));
            }
        };
        forget(engine, &name);
        engine.ctx.register_udf(function);
        Ok((name, replaced))
    }
}

/// Forgets the function a user wrote called `name`, if any, scalar or aggregate (one
/// replaced by the other kind would otherwise stay).
pub(crate) fn forget(engine: &Engine, name: &str) {
    engine.ctx.deregister_udf(name);
    engine.ctx.deregister_udaf(name);
}

#[cfg(test)]
mod tests {
    use super::without_aggregate;

    /// The keyword is blanked where it is, whatever the line ends before it.
    #[test]
    fn aggregate_is_blanked_in_place() {
        let sql = "CREATE OR REPLACE\r\n  Aggregate FUNCTION f(x BIGINT)";
        assert_eq!(
            without_aggregate(sql),
            "CREATE OR REPLACE\r\n            FUNCTION f(x BIGINT)"
        );
        assert_eq!(
            without_aggregate("CREATE AGGREGATE FUNCTION g(x BIGINT)"),
            "CREATE           FUNCTION g(x BIGINT)"
        );
    }
}
