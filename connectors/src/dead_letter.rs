//! The dead-letter file: records a job could not use, as JSON lines: malformed records with
//! the reason they were rejected, and records that came after their window closed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::record_batch::RecordBatch;

use crate::error::{ConnectorError, Result};

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The file (URL) it came from.
    pub file: String,
    /// The 1-based line it starts on.
    pub line: u64,
    /// Why it could not be decoded.
    pub reason: String,
    /// Its text, without the line terminator.
    pub raw: String,
}

/// Appends records to a JSON-lines file, flushing after each write so that nothing set
/// aside is only in memory when the process dies.
///
/// The file is created (or truncated) at the first write of a run, so that planning a job
/// (EXPLAIN, a statement that fails) leaves an earlier run's file alone.
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    file: Mutex<Option<BufWriter<File>>>,
}

impl DeadLetterWriter {
    /// A writer for `path`; nothing is created yet.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            file: Mutex::new(None),
        }
    }

    fn open(&self) -> Result<BufWriter<File>> {
        let path = &self.path;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                ConnectorError::storage(format!("creating folder {}", parent.display()), e)
            })?;
        }
        let file = File::create(path).map_err(|e| {
            ConnectorError::storage(format!("creating dead-letter file {}", path.display()), e)
        })?;
        Ok(BufWriter::new(file))
    }

    /// Writes through `write` to the file (opened at the first write), then flushes.
    fn append(
        &self,
        write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
    ) -> Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let file = match guard.as_mut() {
            Some(file) => file,
            None => guard.insert(self.open()?),
        };
        write(file)
            .and_then(|()| file.flush())
            .map_err(|e| ConnectorError::storage(format!("writing {}", self.path.display()), e))
    }

    /// Writes rejected records: `{"source", "file", "line", "error", "raw"}`.
    pub fn write(&self, source: &str, records: &[BadRecord]) -> Result<()> {
        self.append(|file| {
            for record in records {
                let line = serde_json::json!({
                    "source": source,
                    "file": record.file,
                    "line": record.line,
                    "error": record.reason,
                    "raw": record.raw,
                });
                writeln!(file, "{line}")?;
            }
            Ok(())
        })
    }

    /// Writes the rows of `batch`, one object per row with every column (nulls too).
    pub fn write_rows(&self, batch: &RecordBatch) -> Result<()> {
        self.append(|file| {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut *file);
            writer.write(batch).map_err(std::io::Error::other)?;
            writer.finish().map_err(std::io::Error::other)
        })
    }
}
