//! The jobs a server keeps under its state dir, so that a restart starts them again.
//!
//! `jobs.json` lists each job's name and statement, in the order they were created (a job
//! may read another's output). It is rewritten whole, through a temporary file and a
//! rename, so a crash leaves the old list or the new one.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// A job as kept: its name and the statement that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    /// The job's name.
    pub name: String,
    /// Its `CREATE STREAM|TABLE ... AS ...` statement.
    pub sql: String,
    /// Stopped by `STOP JOB`: a restart leaves it stopped.
    pub stopped: bool,
}

/// The list of jobs under a state dir.
#[derive(Debug, Clone)]
pub struct StoredJobs {
    path: PathBuf,
}

impl StoredJobs {
    /// The list in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("jobs.json"),
        }
    }

    fn error(&self, doing: &str, e: impl std::fmt::Display) -> EngineError {
        EngineError::Checkpoint(format!("{doing} {}: {e}", self.path.display()))
    }

    /// Every job kept, oldest first.
    pub fn load(&self) -> Result<Vec<StoredJob>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.error("reading", e)),
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| self.error("reading", e))?;
        json.as_array()
            .ok_or_else(|| self.error("reading", "expected a list of jobs"))?
            .iter()
            .map(|job| {
                let field = |name: &str| {
                    job.get(name)
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| self.error("reading", format!("a job without '{name}'")))
                };
                Ok(StoredJob {
                    name: field("name")?,
                    sql: field("sql")?,
                    stopped: job
                        .get("stopped")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false),
                })
            })
            .collect()
    }

    /// Keeps `job`, replacing one of the same name.
    pub fn save(&self, job: StoredJob) -> Result<()> {
        let mut jobs = self.load()?;
        match jobs
            .iter_mut()
            .find(|j| j.name.eq_ignore_ascii_case(&job.name))
        {
            Some(existing) => *existing = job,
            None => jobs.push(job),
        }
        self.write(&jobs)
    }

    /// The job `name`, if kept.
    pub fn get(&self, name: &str) -> Result<Option<StoredJob>> {
        Ok(self
            .load()?
            .into_iter()
            .find(|j| j.name.eq_ignore_ascii_case(name)))
    }

    /// Marks the job `name` stopped (or not); whether it was kept.
    pub fn set_stopped(&self, name: &str, stopped: bool) -> Result<bool> {
        let mut jobs = self.load()?;
        let Some(job) = jobs.iter_mut().find(|j| j.name.eq_ignore_ascii_case(name)) else {
            return Ok(false);
        };
        job.stopped = stopped;
        self.write(&jobs)?;
        Ok(true)
    }

    /// Forgets the job `name`; whether it was kept.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let mut jobs = self.load()?;
        let before = jobs.len();
        jobs.retain(|j| !j.name.eq_ignore_ascii_case(name));
        if jobs.len() == before {
            return Ok(false);
        }
        self.write(&jobs)?;
        Ok(true)
    }

    fn write(&self, jobs: &[StoredJob]) -> Result<()> {
        let json = serde_json::Value::Array(
            jobs.iter()
                .map(|j| serde_json::json!({"name": j.name, "sql": j.sql, "stopped": j.stopped}))
                .collect(),
        );
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error("creating the folder of", e))?;
        }
        // Named by the process: instances of a job run apart may share a state dir, and a
        // rename of a temporary file another process renamed first would fail.
        let temporary = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(&json).expect("JSON values print");
        std::fs::write(&temporary, text).map_err(|e| self.error("writing", e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| self.error("writing", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_kept_in_order_replaced_by_name_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stored = StoredJobs::new(dir.path());
        assert!(stored.load().unwrap().is_empty());
        let job = |name: &str, sql: &str| StoredJob {
            name: name.into(),
            sql: sql.into(),
            stopped: false,
        };
        stored
            .save(job("a", "CREATE STREAM a AS SELECT 1"))
            .unwrap();
        stored
            .save(job("b", "CREATE STREAM b AS SELECT 2"))
            .unwrap();
        stored
            .save(job("A", "CREATE STREAM A AS SELECT 3"))
            .unwrap();
        assert_eq!(
            stored.load().unwrap(),
            [
                job("A", "CREATE STREAM A AS SELECT 3"),
                job("b", "CREATE STREAM b AS SELECT 2")
            ]
        );
        assert!(stored.set_stopped("b", true).unwrap());
        assert!(stored.get("B").unwrap().unwrap().stopped);
        assert!(stored.remove("b").unwrap());
        assert!(!stored.remove("b").unwrap());
        assert_eq!(stored.load().unwrap().len(), 1);
    }
}
