//! The dead-letter file: malformed records, kept with the reason they were rejected.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{ConnectorError, Result};
use crate::records::BadRecord;

/// Appends rejected records as JSON lines: `{"source", "file", "line", "error", "raw"}`.
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl DeadLetterWriter {
    /// Creates (or truncates) the dead-letter file, creating its folder if needed.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                ConnectorError::storage(format!("creating folder {}", parent.display()), e)
            })?;
        }
        let file = std::fs::File::create(&path).map_err(|e| {
            ConnectorError::storage(format!("creating dead-letter file {}", path.display()), e)
        })?;
        Ok(Self {
            path,
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    /// Writes the records of one batch and flushes, so that nothing rejected is lost on a crash.
    pub fn write(&self, source: &str, records: &[BadRecord]) -> Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
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
