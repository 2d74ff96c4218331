//! `SHOW STREAMS | TABLES [WITH SCHEMAS] | FUNCTIONS | JOBS | TOPICS [LIKE 'pattern']`: a
//! listing of what the session knows, one row per stream, table, function, job or topic.

use datafusion::sql::sqlparser::keywords::Keyword;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::listing;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, keyword, like_pattern, word_is};

/// What a SHOW statement lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Sources and streams.
    Streams,
    /// Tables; with a column of their columns and types when `WITH SCHEMAS`.
    Tables {
        /// `WITH SCHEMAS`.
        schemas: bool,
    },
    /// The SQL functions a query can call.
    Functions,
    /// The session's jobs, their status and counters.
    Jobs,
    /// The topics of the session's Kafka cluster.
    Topics,
}

/// `SHOW <listing> [LIKE 'pattern']`.
#[derive(Debug, Clone, PartialEq)]
pub struct Show {
    /// What is listed.
    pub listing: Listing,
    /// Only names matching this SQL `LIKE` pattern.
    pub like: Option<String>,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &[
        "SHOW STREAMS",
        "SHOW TABLES",
        "SHOW FUNCTIONS",
        "SHOW JOBS",
        "SHOW TOPICS",
    ],
    synopsis: "SHOW",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let mut rest = &sig[2..];
    let listing = if word_is(sig.get(1), "STREAMS") {
        Listing::Streams
    } else if word_is(sig.get(1), "TABLES") {
        let schemas = rest.len() >= 2
            && keyword(rest.get(rest.len() - 2), Keyword::WITH)
            && word_is(rest.last(), "SCHEMAS");
        if schemas {
            rest = &rest[..rest.len() - 2];
        }
        Listing::Tables { schemas }
    } else if word_is(sig.get(1), "FUNCTIONS") {
        Listing::Functions
    } else if word_is(sig.get(1), "JOBS") {
        Listing::Jobs
    } else {
        Listing::Topics
    };
    Ok(Box::new(Show {
        listing,
        like: like_pattern(rest)?,
    }))
}

impl StatementKind for Show {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let like = self.like.as_deref();
            let engine = run.engine;
            StatementOutput::rows(match self.listing {
                Listing::Streams => listing::show_entries(&engine.catalog, false, like, false)?,
                Listing::Tables { schemas } => {
                    listing::show_entries(&engine.catalog, true, like, schemas)?
                }
                Listing::Functions => listing::show_functions(&engine.ctx.state(), like)?,
                Listing::Jobs => listing::show_jobs(&engine.jobs, like)?,
                Listing::Topics => listing::show_topics(&engine.kafka.topics().await?, like)?,
            })
        }
        .boxed()
    }
}
