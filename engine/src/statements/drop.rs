//! `DROP STREAM|TABLE [IF EXISTS] name`: stops its job at once and forgets it, its
//! checkpoints with it. Its output (files, topic) stays.

use datafusion::sql::sqlparser::keywords::Keyword;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::catalog::EntryKind;
use crate::error::{EngineError, Result};
use crate::job::JobKind;
use crate::job::checkpoint::CheckpointStore;
use crate::listing;
use crate::statements::create_job::job_kind;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, end_after, identifier, keyword};

/// `DROP STREAM|TABLE [IF EXISTS] name`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropJob {
    /// Stream or table.
    pub kind: JobKind,
    /// The job.
    pub name: String,
    /// No error when there is no such job.
    pub if_exists: bool,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["DROP STREAM", "DROP TABLE"],
    synopsis: "DROP",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let kind = job_kind(sig[1]);
    let if_exists = keyword(sig.get(2), Keyword::IF) && keyword(sig.get(3), Keyword::EXISTS);
    let at = if if_exists { 4 } else { 2 };
    let name = identifier(sig.get(at), "a name", sig[at - 1])?;
    end_after(sig, at, &format!("DROP {kind} {name}"))?;
    Ok(Box::new(DropJob {
        kind,
        name,
        if_exists,
    }))
}

impl StatementKind for DropJob {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let (name, kind, engine) = (&self.name, self.kind, run.engine);
            let position = run.statement.position;
            let expected = EntryKind::from(kind);
            match engine.catalog.get(name).map(|e| e.kind) {
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(EngineError::Sql {
                        message: format!("'{name}' is a {}, not a {kind}", found.as_str()),
                        position,
                    });
                }
                None if self.if_exists => {
                    return StatementOutput::rows(listing::job_reply(name, "NOT FOUND")?);
                }
                None => {
                    return Err(EngineError::Sql {
                        message: format!(
                            "no {kind} '{name}' (SHOW STREAMS / SHOW TABLES list them)"
                        ),
                        position,
                    });
                }
            }
            if let Some(cluster) = engine.cluster.clone()
                && let Some(kept) = cluster.remove(name).await?
            {
                // Its nodes have stopped it: its checkpoints can go, and the topics its
                // instances met in (a job of that name again would read their rows).
                if let Some(location) = &kept.checkpoint_dir {
                    CheckpointStore::delete(location).await?;
                }
                if kept.instances > 0
                    && let Some(writer) = engine.catalog.get(name).and_then(|e| e.writer.clone())
                {
                    let job = name.to_string();
                    let deleted =
                        tokio::task::spawn_blocking(move || writer.delete_exchanges(&job))
                            .await
                            .map_err(|e| EngineError::Internal(e.to_string()))??;
                    tracing::info!(job = %name, "deleted its exchange topics: {}", deleted.join(", "));
                }
            }
            let records: Vec<_> = engine
                .jobs
                .iter()
                .filter(|j| j.name.eq_ignore_ascii_case(name))
                .cloned()
                .collect();
            for job in &records {
                if job.is_running() {
                    job.force_stop().await;
                }
                if let Some(location) = &job.checkpoint_dir {
                    CheckpointStore::delete(location).await?;
                }
            }
            engine.jobs.retain(|j| !j.name.eq_ignore_ascii_case(name));
            engine.catalog.remove(name);
            engine.ctx.deregister_table(name)?;
            if let Some(stored) = engine.stored_jobs() {
                stored.remove(name)?;
            }
            StatementOutput::rows(listing::job_reply(name, "DROPPED")?)
        }
        .boxed()
    }
}
