//! `DROP FUNCTION [IF EXISTS] name`: forgets a function a user wrote (`CREATE FUNCTION`),
//! here and in the server's kept statements. Jobs already running with it go on.

use datafusion::sql::sqlparser::keywords::Keyword;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{EngineError, Result};
use crate::listing;
use crate::statements::create_function::{self, KEPT_AS};
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, end_after, identifier, keyword};
use crate::user_function;

/// `DROP FUNCTION [IF EXISTS] name`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropFunction {
    /// The function.
    pub name: String,
    /// No error when there is no such function.
    pub if_exists: bool,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["DROP FUNCTION"],
    synopsis: "DROP",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let if_exists = keyword(sig.get(2), Keyword::IF) && keyword(sig.get(3), Keyword::EXISTS);
    let at = if if_exists { 4 } else { 2 };
    let name = identifier(sig.get(at), "a name", sig[at - 1])?;
    end_after(sig, at, &format!("DROP FUNCTION {name}"))?;
    Ok(Box::new(DropFunction { name, if_exists }))
}

impl StatementKind for DropFunction {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let (name, engine) = (&self.name, run.engine);
            let state = engine.ctx.state();
            match user_function::find(&state, name) {
                Some(Some(_)) => {}
                Some(None) => {
                    return Err(EngineError::Sql {
                        message: format!("'{name}' is a built-in function"),
                        position: run.statement.position,
                    });
                }
                None if self.if_exists => {
                    return StatementOutput::rows(listing::function_reply(name, "NOT FOUND")?);
                }
                None => {
                    return Err(EngineError::Sql {
                        message: format!("no function '{name}' (SHOW FUNCTIONS lists them)"),
                        position: run.statement.position,
                    });
                }
            }
            create_function::forget(engine, name);
            // Every node of a cluster forgets it too.
            if let Some(cluster) = &engine.cluster {
                cluster.remove_function(name).await?;
            } else if let Some(stored) = engine.stored_jobs() {
                stored.remove(&format!("{KEPT_AS}{name}"))?;
            }
            StatementOutput::rows(listing::function_reply(name, "DROPPED")?)
        }
        .boxed()
    }
}
