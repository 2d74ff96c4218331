//! `SHOW STREAMS | TABLES [WITH SCHEMAS] | FUNCTIONS | JOBS | TOPICS [LIKE 'pattern']`,
//! `SHOW JOBS ON NODE 'id'` and `SHOW NODES`: a listing of what the session (or its cluster)
//! knows, one row per stream, table, function, job, topic or node.

use datafusion::sql::sqlparser::keywords::Keyword;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{EngineError, Result};
use crate::listing;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{
    StatementSyntax, StatementTokens, keyword, like_pattern, quoted_name, word_is,
};

/// What a SHOW statement lists.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The jobs (of the whole cluster, in one), their node, status and counters.
    Jobs {
        /// Only the jobs of this node (`ON NODE 'id'`).
        node: Option<String>,
    },
    /// The nodes of the cluster.
    Nodes,
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
        "SHOW NODES",
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
        let node = if word_is(rest.first(), "ON") && word_is(rest.get(1), "NODE") {
            let node = quoted_name(&rest[2..], rest[1], "the node's id")?;
            rest = &[];
            Some(node)
        } else {
            None
        };
        Listing::Jobs { node }
    } else if word_is(sig.get(1), "NODES") {
        Listing::Nodes
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
            StatementOutput::rows(match &self.listing {
                Listing::Streams => listing::show_entries(&engine.catalog, false, like, false)?,
                Listing::Tables { schemas } => {
                    listing::show_entries(&engine.catalog, true, like, *schemas)?
                }
                Listing::Functions => listing::show_functions(&engine.ctx.state(), like)?,
                Listing::Jobs { node: None } => {
                    listing::show_jobs(&engine.job_summaries().await?, like)?
                }
                Listing::Jobs { node: Some(node) } => {
                    let known = engine.node_ids().await?;
                    if !known.iter().any(|id| id == node) {
                        return Err(EngineError::Sql {
                            message: format!("no node '{node}' (the nodes: {})", known.join(", ")),
                            position: run.statement.position,
                        });
                    }
                    let mut jobs = engine.job_summaries().await?;
                    // A job whose instances run apart is on each of their nodes.
                    jobs.retain(|j| j.node.split(',').any(|n| n == node));
                    listing::show_jobs(&jobs, like)?
                }
                Listing::Nodes => listing::show_nodes(&engine.cluster()?.nodes().await?)?,
                Listing::Topics => listing::show_topics(&engine.kafka.topics().await?, like)?,
            })
        }
        .boxed()
    }
}
