//! `ALTER JOB name SET PARALLELISM n`: the job stops at a checkpoint and starts again from
//! it as `n` instances, its keyed state and its sources' shares divided anew; its statement
//! is kept with `'parallelism' = 'n'`, so that a restart keeps the new parallelism. In a
//! cluster the statement changes in the shared catalog and the job's node restarts it.

use std::time::{Duration, Instant};

use datafusion::sql::sqlparser::tokenizer::Token;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{EngineError, Result};
use crate::job::stored::StoredJob;
use crate::listing;
use crate::prepare::MAX_PARALLELISM;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{
    StatementSyntax, StatementTokens, describe_token, end_after, error_at, identifier, with_option,
    word_is,
};

/// How long a stop at a checkpoint may take before the statement gives up.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A job and the parallelism it is to run at.
#[derive(Debug, Clone, PartialEq)]
pub struct AlterJob {
    /// The job.
    pub name: String,
    /// Its new number of instances.
    pub parallelism: usize,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["ALTER JOB"],
    synopsis: "ALTER JOB",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let name = identifier(sig.get(2), "the job's name", sig[1])?;
    let after_name = sig.get(3).unwrap_or(&sig[sig.len() - 1]);
    if !word_is(sig.get(3), "SET") || !word_is(sig.get(4), "PARALLELISM") {
        return Err(error_at(
            after_name,
            "expected SET PARALLELISM n after the job's name",
        ));
    }
    let Some(number) = sig.get(5) else {
        return Err(error_at(
            sig[4],
            "expected the number of instances after PARALLELISM",
        ));
    };
    let parallelism = match &number.token {
        Token::Number(n, _) => n.parse().ok(),
        _ => None,
    }
    .filter(|n| (1..=MAX_PARALLELISM).contains(n))
    .ok_or_else(|| {
        error_at(
            number,
            format!(
                "expected a whole number of instances from 1 to {MAX_PARALLELISM}, found {}",
                describe_token(number)
            ),
        )
    })?;
    end_after(sig, 5, "the parallelism")?;
    Ok(Box::new(AlterJob { name, parallelism }))
}

impl AlterJob {
    /// The job's statement `sql` at the new parallelism.
    fn restated(&self, sql: &str) -> Result<String> {
        with_option(sql, "parallelism", &self.parallelism.to_string())
            .map_err(|e| EngineError::Internal(format!("job '{}': its statement: {e}", self.name)))
    }
}

impl StatementKind for AlterJob {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let name = &self.name;
            let engine = run.engine;
            let error = |message: String| EngineError::Sql {
                message,
                position: run.statement.position,
            };
            // In a cluster the job's statement changes in the shared catalog, and its node
            // stops it at a checkpoint and starts it again (every cluster job checkpoints).
            if let Some(cluster) = engine.cluster.clone() {
                let Some(job) = cluster.job(name).await? else {
                    return Err(error(format!("no job '{name}' (SHOW JOBS lists them)")));
                };
                // Their exchange topics have a partition per instance, and rows in them
                // between the instances' checkpoints are bound for the old instances.
                if job.instances > 0 {
                    return Err(error(format!(
                        "job '{name}' runs its {} instances apart, on the cluster's nodes, and such a job cannot change its parallelism yet: drop it and create it again at the new parallelism (its state starts afresh)",
                        job.instances
                    )));
                }
                let sql = self.restated(&job.sql)?;
                // What would not parse is refused here, not by its node.
                (run.parse)(&sql)?;
                if !cluster.restate(name, sql).await? {
                    return Err(error(format!("job '{name}' was dropped meanwhile")));
                }
                return StatementOutput::rows(listing::job_reply(name, "RESTARTING")?);
            }
            let Some(job) = engine.latest_job(name) else {
                return Err(error(format!("no job '{name}' (SHOW JOBS lists them)")));
            };
            if job.checkpoint_dir.is_none() {
                return Err(error(format!(
                    "job '{name}' takes no checkpoints, so it cannot go on at another parallelism where it stopped: start the server with --state-dir, or give the job a 'checkpoint.dir'"
                )));
            }
            let sql = self.restated(&job.statement)?;
            if job.is_running() {
                job.control.request_stop();
                let deadline = Instant::now() + STOP_TIMEOUT;
                while job.is_running() {
                    if Instant::now() >= deadline {
                        return Err(error(format!(
                            "job '{name}' did not stop at a checkpoint within {}s; it goes on stopping (SHOW JOBS)",
                            STOP_TIMEOUT.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let statements = (run.parse)(&sql)?;
            let [statement] = statements.as_slice() else {
                return Err(EngineError::Internal(format!(
                    "job '{name}' kept {} statements",
                    statements.len()
                )));
            };
            let again = Execution {
                engine,
                statement,
                parameters: &[],
                parse: run.parse,
                instance: run.instance,
            };
            let output = statement.kind.execute_as(again, name).await?;
            // A restart keeps the new parallelism.
            if let Some(stored) = engine.stored_jobs() {
                stored.save(StoredJob {
                    name: name.clone(),
                    sql,
                    stopped: false,
                })?;
            }
            Ok(output)
        }
        .boxed()
    }
}
