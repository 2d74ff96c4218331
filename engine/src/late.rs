//! The late-data dead-letter file: records that came after their window closed, as JSON
//! lines (the window operator's input columns; event time in `_window_start`, the watermark
//! they missed in `_window_end`).

use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use ferris_connectors::DeadLetterWriter;
use ferris_streaming::LateRecordSink;

/// Hands the window operator's late records to a dead-letter file.
#[derive(Debug)]
pub struct LateRecordFile(DeadLetterWriter);

impl LateRecordFile {
    /// A writer for `path`; nothing is created until the first late record.
    pub fn new(path: impl AsRef<std::path::Path>) -> Self {
        Self(DeadLetterWriter::new(path))
    }
}

impl LateRecordSink for LateRecordFile {
    fn write(&self, late: &RecordBatch) -> Result<()> {
        self.0
            .write_rows(late)
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}
