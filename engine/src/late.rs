//! The late-data dead-letter file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use ferris_streaming::LateRecordSink;

type JsonLines = arrow::json::LineDelimitedWriter<BufWriter<File>>;

/// Appends late records as JSON lines (the window operator's input columns; event time in
/// `_window_start`, the watermark they missed in `_window_end`). The file is created at the
/// first late record of a run, so planning a job leaves an earlier run's file alone.
#[derive(Debug)]
pub struct LateRecordFile {
    path: PathBuf,
    writer: Mutex<Option<JsonLines>>,
}

impl LateRecordFile {
    /// A writer for `path`; nothing is created yet.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            writer: Mutex::new(None),
        }
    }

    fn open(&self) -> std::io::Result<JsonLines> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = BufWriter::new(File::create(&self.path)?);
        Ok(arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build(file))
    }
}

impl LateRecordSink for LateRecordFile {
    fn write(&self, late: &RecordBatch) -> Result<()> {
        let io = |e: std::io::Error| {
            DataFusionError::External(format!("{}: {e}", self.path.display()).into())
        };
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let writer = match guard.as_mut() {
            Some(writer) => writer,
            None => guard.insert(self.open().map_err(io)?),
        };
        writer.write(late)?;
        // Flushed per batch: a late record is never only in memory.
        std::io::Write::flush(writer.get_mut()).map_err(io)
    }
}
