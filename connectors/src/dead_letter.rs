//! The dead-letter file: malformed records, kept with the reason they were rejected.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{ConnectorError, Result};
use crate::records::BadRecord;

/// Appends rejected records as JSON lines: `{"source", "file", "line", "error", "raw"}`.
///
/// The file is created (or truncated) at the first rejected record of a run, so that planning
/// a job (EXPLAIN, a statement that fails) leaves an earlier run's dead letters alone.
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

impl DeadLetterWriter {
    /// A writer for `path`; nothing is created yet.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            file: Mutex::new(None),
        }
    }

    fn open(&self) -> Result<std::io::BufWriter<std::fs::File>> {
        let path = &self.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                ConnectorError::storage(format!("creating folder {}", parent.display()), e)
            })?;
        }
        let file = std::fs::File::create(path).map_err(|e| {
            ConnectorError::storage(format!("creating dead-letter file {}", path.display()), e)
        })?;
        Ok(std::io::BufWriter::new(file))
    }

    /// Writes the records of one batch and flushes, so that nothing rejected is lost on a crash.
    pub fn write(&self, source: &str, records: &[BadRecord]) -> Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let file = match guard.as_mut() {
            Some(file) => file,
            None => guard.insert(self.open()?),
        };
        let io = |e| ConnectorError::storage(format!("writing {}", self.path.display()), e);
        for record in records {
            let line = serde_json::json!({
                "source": source,
                "file": record.file,
                "line": record.line,
                "error": record.reason,
                "raw": record.raw,
            });
            writeln!(file, "{line}").map_err(io)?;
        }
        file.flush().map_err(io)
    }
}
