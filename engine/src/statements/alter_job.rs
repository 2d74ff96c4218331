//! `ALTER JOB name SET PARALLELISM n`: the job stops at a checkpoint and starts again from
//! it as `n` instances, its keyed state and its sources' shares divided anew; its statement
//! is kept with `'parallelism' = 'n'`, so that a restart keeps the new parallelism. In a
//! cluster the statement changes in the shared catalog and the job's node restarts it; a
//! job whose instances run apart drains first (`AlterJob::rescale_apart`).

use std::time::{Duration, Instant};

use datafusion::sql::sqlparser::tokenizer::Token;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::cluster::{ClusterCatalog, ClusterJob};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::job::checkpoint::{drained_instances, era_folder, era_positions};
use crate::job::command::JobCommand;
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

impl AlterJob {
    /// Changes the parallelism of `job`, whose instances run apart on the cluster's nodes
    /// and meet in Kafka topics: they stop with a drain (everything in flight between them
    /// taken in, their state in a last checkpoint each), their exchange topics are deleted,
    /// and the job starts again from `sql` as instances of a new era, each taking up the
    /// key groups and source parts that fall to it from those drained checkpoints.
    async fn rescale_apart(
        &self,
        engine: &Engine,
        cluster: &dyn ClusterCatalog,
        job: ClusterJob,
        sql: String,
        refused: impl Fn(String) -> EngineError,
    ) -> Result<()> {
        let name = &self.name;
        if self.parallelism < 2 {
            return Err(refused(format!(
                "job '{name}' runs its {} instances apart, and goes on at 2 or more: to run it whole, drop it and create it again",
                job.instances
            )));
        }
        if job.stopped {
            return Err(refused(format!(
                "job '{name}' is stopped: START JOB it, then change its parallelism"
            )));
        }
        if self.parallelism == job.instances {
            return Err(refused(format!(
                "job '{name}' runs as {} instances already",
                job.instances
            )));
        }
        let Some(base) = job.checkpoint_dir.as_deref() else {
            return Err(refused(format!("job '{name}' takes no checkpoints")));
        };
        let gone = || {
            refused(format!(
                "job '{name}' was dropped, stopped or started meanwhile"
            ))
        };
        // Every instance drains into a last checkpoint: one not running would leave none.
        let status = job_status(cluster, name).await?.ok_or_else(gone)?.0;
        if status != "RUNNING" {
            return Err(refused(format!(
                "job '{name}' is {status}: change its parallelism once every instance runs (SHOW JOBS)"
            )));
        }
        if !cluster.drain(name).await? {
            return Err(gone());
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match job_status(cluster, name).await?.ok_or_else(gone)? {
                (status, _) if status == "STOPPED" => break,
                (status, error) if status == "FAILED" => {
                    return Err(refused(format!(
                        "job '{name}' failed while it drained ({}): START JOB runs it again at its parallelism",
                        error.unwrap_or_default()
                    )));
                }
                _ if Instant::now() >= deadline => {
                    return Err(refused(format!(
                        "job '{name}' did not drain within {}s; it goes on draining (SHOW JOBS), and START JOB runs it again at its parallelism",
                        STOP_TIMEOUT.as_secs()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        // Every instance's last checkpoint is its drain's, and the new era can take them
        // up; else the job goes on at its parallelism.
        let folder = era_folder(base, job.era);
        let drained = match drained_instances(&folder).await {
            Ok(lasts) => era_positions(&lasts).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = drained {
            cluster.command(name, JobCommand::Start).await?;
            return Err(refused(format!(
                "job '{name}' cannot go on at {} instances ({e}): it runs again as {}",
                self.parallelism, job.instances
            )));
        }
        // Drained, the old era's topics hold nothing unread; the new era has its own.
        if let Some(sink) = engine.catalog.get(name).and_then(|e| e.writer.clone()) {
            let job_name = name.clone();
            let deleted = tokio::task::spawn_blocking(move || sink.delete_exchanges(&job_name))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            match deleted {
                Ok(deleted) => {
                    tracing::info!(job = %name, "deleted its exchange topics {deleted:?}")
                }
                Err(e) => tracing::warn!(job = %name, "its drained exchange topics stay: {e}"),
            }
        }
        if !cluster
            .rescale(name, sql, self.parallelism, job.era)
            .await?
        {
            return Err(gone());
        }
        Ok(())
    }
}

/// The status of job `name` as `SHOW JOBS` gives it, and its last error; `None` once it is
/// dropped.
async fn job_status(
    cluster: &dyn ClusterCatalog,
    name: &str,
) -> Result<Option<(String, Option<String>)>> {
    Ok(cluster
        .summaries()
        .await?
        .into_iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .map(|s| (s.status, s.last_error)))
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
                let sql = self.restated(&job.sql)?;
                // What would not parse is refused here, not by its node.
                (run.parse)(&sql)?;
                if job.instances > 0 {
                    self.rescale_apart(engine, cluster.as_ref(), job, sql, error)
                        .await?;
                    return StatementOutput::rows(listing::job_reply(name, "RESTARTING")?);
                }
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
