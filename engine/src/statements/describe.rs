//! `DESCRIBE name` (or `DESC name`): the columns of a stream, table or source.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::listing;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, end_after, identifier};

/// `DESCRIBE name`.
#[derive(Debug, Clone, PartialEq)]
pub struct Describe {
    /// What to describe.
    pub name: String,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["DESCRIBE", "DESC"],
    synopsis: "DESCRIBE",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let name = identifier(sig.get(1), "a name", sig[0])?;
    end_after(sig, 1, &format!("DESCRIBE {name}"))?;
    Ok(Box::new(Describe { name }))
}

impl StatementKind for Describe {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move { StatementOutput::rows(listing::describe(&run.engine.catalog, &self.name)?) }
            .boxed()
    }
}
