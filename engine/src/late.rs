//! The late-data dead-letter file.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Mutex;

use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use ferris_streaming::LateRecordSink;

/// Appends late records as JSON lines (the window operator's input columns; event time in
/// `_window_start`, the watermark they missed in `_window_end`).
#[derive(Debug)]
pub struct LateRecordFile {
    writer: Mutex<arrow::json::LineDelimitedWriter<BufWriter<File>>>,
}

impl LateRecordFile {
    /// Creates (or truncates) the file.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = BufWriter::new(File::create(path)?);
        Ok(Self {
            writer: Mutex::new(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(file),
            ),
        })
    }
}

impl LateRecordSink for LateRecordFile {
    fn write(&self, late: &RecordBatch) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.write(late)?;
        // Flushed per batch: a late record is never only in memory.
        std::io::Write::flush(writer.get_mut()).map_err(|e| DataFusionError::External(Box::new(e)))
    }
}
