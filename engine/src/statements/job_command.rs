//! `START JOB name`, `STOP JOB name [FORCE]`, `PAUSE JOB name`, `RESUME JOB name`.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{EngineError, Result};
use crate::job::command::JobCommand;
use crate::listing;
use crate::statements::kind::{Execution, StatementKind, StatementOutput};
use crate::statements::parser::{StatementSyntax, StatementTokens, end_after, identifier, word_is};

/// A job command and the job it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlJob {
    /// What to do.
    pub command: JobCommand,
    /// The job.
    pub name: String,
}

pub(crate) const SYNTAX: StatementSyntax = StatementSyntax {
    leading: &["START JOB", "STOP JOB", "PAUSE JOB", "RESUME JOB"],
    synopsis: "START / STOP / PAUSE / RESUME JOB",
    parse,
};

fn parse(statement: &StatementTokens) -> Result<Box<dyn StatementKind>> {
    let sig = &statement.sig;
    let command = if word_is(sig.first(), "START") {
        JobCommand::Start
    } else if word_is(sig.first(), "STOP") {
        JobCommand::Stop
    } else if word_is(sig.first(), "PAUSE") {
        JobCommand::Pause
    } else {
        JobCommand::Resume
    };
    let name = identifier(sig.get(2), "the job's name", sig[1])?;
    let command = match (command, sig.get(3)) {
        (JobCommand::Stop, Some(force)) if word_is(Some(force), "FORCE") && sig.len() == 4 => {
            JobCommand::StopForce
        }
        (command, _) => {
            end_after(sig, 2, "the job's name")?;
            command
        }
    };
    Ok(Box::new(ControlJob { command, name }))
}

impl StatementKind for ControlJob {
    fn execute<'a>(&'a self, run: Execution<'a>) -> BoxFuture<'a, Result<StatementOutput>> {
        async move {
            let name = &self.name;
            let engine = run.engine;
            let job = engine.latest_job(name);
            let error = |message: String| EngineError::Sql {
                message,
                position: run.statement.position,
            };
            // In a cluster the command goes to the shared catalog, and the job's node acts on
            // it (a one-shot insert, which runs here outside the catalog, is told here).
            if let Some(cluster) = engine.cluster.clone() {
                if self.command == JobCommand::Start {
                    let running = engine.job_summaries().await?.into_iter().any(|j| {
                        j.name == *name
                            && matches!(j.status.as_str(), "RUNNING" | "PAUSED" | "RETRYING")
                    });
                    if running {
                        return Err(error(format!("job '{name}' is running already")));
                    }
                }
                if cluster.command(name, self.command).await? {
                    return StatementOutput::rows(listing::job_reply(name, self.command.status())?);
                }
            }
            if self.command == JobCommand::Start {
                if job.as_ref().is_some_and(|j| j.is_running()) {
                    return Err(error(format!("job '{name}' is running already")));
                }
                let kept = engine
                    .stored_jobs()
                    .map(|s| s.get(name))
                    .transpose()?
                    .flatten();
                let sql = match (&job, kept) {
                    (Some(job), _) => job.statement.clone(),
                    (None, Some(kept)) => kept.sql,
                    (None, None) => {
                        return Err(error(format!("no job '{name}' (SHOW JOBS lists them)")));
                    }
                };
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
                // Whatever the statement, a started job starts again with the server.
                if let Some(stored) = engine.stored_jobs() {
                    stored.set_stopped(name, false)?;
                }
                return Ok(output);
            }
            let Some(job) = job.filter(|j| j.is_running()) else {
                return Err(error(format!(
                    "job '{name}' is not running (SHOW JOBS lists the jobs)"
                )));
            };
            match self.command {
                JobCommand::Stop | JobCommand::StopForce => {
                    if let Some(stored) = engine.stored_jobs() {
                        stored.set_stopped(name, true)?;
                    }
                    if self.command == JobCommand::StopForce {
                        job.force_stop().await;
                    } else {
                        job.control.request_stop();
                    }
                }
                JobCommand::Pause => job.control.set_paused(true),
                JobCommand::Resume => job.control.set_paused(false),
                JobCommand::Start => unreachable!("handled above"),
            }
            StatementOutput::rows(listing::job_reply(&job.name, self.command.status())?)
        }
        .boxed()
    }
}
