//! `file_sink`: results as JSON lines, CSV or Parquet, committed atomically.
//!
//! Rows go to a hidden in-progress file beside the target, which is renamed into place when
//! it is committed: on a clean stop, or, for a folder sink, every rollover interval. Readers
//! (and our own file sources) never see a half-written file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use crate::error::{ConnectorError, Result};
use crate::format::FileFormat;

/// Everything a file sink needs, resolved from its `WITH` options.
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The sink's name in SQL.
    pub name: String,
    /// A file, or a folder (ending in `/` or existing) that receives part files.
    pub path: PathBuf,
    /// How rows are written.
    pub format: FileFormat,
    /// For a folder sink: commit the current part file after this long.
    pub rollover: Duration,
}

impl FileSinkConfig {
    fn is_folder(&self) -> bool {
        self.path.is_dir() || self.path.to_string_lossy().ends_with('/')
    }
}

/// Writes record batches to files.
pub struct FileSink {
    config: FileSinkConfig,
    schema: SchemaRef,
    part: Option<Part>,
    next_part: u64,
    rows: u64,
}

struct Part {
    in_progress: PathBuf,
    target: PathBuf,
    opened: Instant,
    writer: FormatWriter,
}

enum FormatWriter {
    Json(arrow::json::LineDelimitedWriter<BufWriter<File>>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
    Parquet(ArrowWriter<File>),
}

impl FileSink {
    /// Prepares the sink; nothing is created until the first row arrives.
    pub fn try_new(config: FileSinkConfig, schema: SchemaRef) -> Result<Self> {
        let next_part = if config.is_folder() {
            std::fs::create_dir_all(&config.path).map_err(|e| {
                ConnectorError::storage(format!("creating folder {}", config.path.display()), e)
            })?;
            highest_part(&config.path).map_or(0, |n| n + 1)
        } else {
            0
        };
        Ok(Self {
            config,
            schema,
            part: None,
            next_part,
            rows: 0,
        })
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// For a folder sink, how often its part files are committed: call
    /// [`FileSink::roll_if_due`] at least that often, so an idle job's rows still land.
    pub fn rollover(&self) -> Option<std::time::Duration> {
        self.config.is_folder().then_some(self.config.rollover)
    }

    /// Commits the current part file of a folder sink once its rollover time has passed;
    /// true when it did, so that every row written so far is now in a committed file.
    pub fn roll_if_due(&mut self) -> Result<bool> {
        let due = self
            .part
            .as_ref()
            .is_some_and(|p| p.opened.elapsed() >= self.config.rollover);
        if self.config.is_folder() && due {
            self.commit()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Appends a batch, committing the current part first when its rollover time has passed.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.roll_if_due()?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.part.is_none() {
            self.part = Some(self.open_part()?);
        }
        let part = self.part.as_mut().expect("opened above");
        let context = || format!("writing {}", part.in_progress.display());
        match &mut part.writer {
            FormatWriter::Json(w) => w.write(batch),
            FormatWriter::Csv(w) => w.write(batch),
            FormatWriter::Parquet(w) => w.write(batch).map_err(|e| e.into()),
        }
        .map_err(|e| ConnectorError::arrow(context(), e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Commits what was written and ends the sink. A file sink that got no rows still
    /// leaves an empty file, so that a finished job always has its output.
    pub fn close(mut self) -> Result<u64> {
        if self.part.is_none() && !self.config.is_folder() {
            self.part = Some(self.open_part()?);
        }
        self.commit()?;
        Ok(self.rows)
    }

    fn open_part(&mut self) -> Result<Part> {
        let target = if self.config.is_folder() {
            let name = format!(
                "part-{:05}.{}",
                self.next_part,
                self.config.format.extension()
            );
            self.next_part += 1;
            self.config.path.join(name)
        } else {
            self.config.path.clone()
        };
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| {
            ConnectorError::storage(format!("creating folder {}", dir.display()), e)
        })?;
        let file_name = target.file_name().unwrap_or_default().to_string_lossy();
        let in_progress = dir.join(format!(".{file_name}.inprogress"));
        let file = File::create(&in_progress).map_err(|e| {
            ConnectorError::storage(format!("creating {}", in_progress.display()), e)
        })?;
        let writer = match self.config.format {
            FileFormat::Json => FormatWriter::Json(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(BufWriter::new(file)),
            ),
            FileFormat::Csv(options) => FormatWriter::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(options.has_header)
                    .with_delimiter(options.delimiter)
                    .build(BufWriter::new(file)),
            ),
            FileFormat::Parquet => FormatWriter::Parquet(
                ArrowWriter::try_new(file, self.schema.clone(), None).map_err(|e| {
                    ConnectorError::storage(format!("creating {}", in_progress.display()), e)
                })?,
            ),
        };
        Ok(Part {
            in_progress,
            target,
            opened: Instant::now(),
            writer,
        })
    }

    fn commit(&mut self) -> Result<()> {
        let Some(part) = self.part.take() else {
            return Ok(());
        };
        let io = |e: std::io::Error| {
            ConnectorError::storage(format!("committing {}", part.target.display()), e)
        };
        let file = match part.writer {
            FormatWriter::Json(mut w) => {
                w.finish()
                    .map_err(|e| ConnectorError::arrow("finishing JSON output", e))?;
                w.into_inner()
                    .into_inner()
                    .map_err(|e| io(e.into_error()))?
            }
            FormatWriter::Csv(w) => w
                .into_inner()
                .into_inner()
                .map_err(|e| io(e.into_error()))?,
            FormatWriter::Parquet(w) => w.into_inner().map_err(|e| {
                ConnectorError::storage(format!("committing {}", part.target.display()), e)
            })?,
        };
        file.sync_all().map_err(io)?;
        std::fs::rename(&part.in_progress, &part.target).map_err(io)?;
        Ok(())
    }
}

impl Drop for FileSink {
    /// A sink dropped without `close` (the job failed) leaves no in-progress file behind.
    fn drop(&mut self) {
        if let Some(part) = self.part.take() {
            let _ = std::fs::remove_file(&part.in_progress);
        }
    }
}

/// The highest `part-NNNNN` number already in `dir`, so a restarted job appends.
fn highest_part(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().to_string();
            name.strip_prefix("part-")?.split('.').next()?.parse().ok()
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("amount", DataType::Decimal128(18, 4), true),
        ]));
        let amounts = Decimal128Array::from(vec![Some(1234567), None])
            .with_precision_and_scale(18, 4)
            .unwrap();
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(amounts)],
        )
        .unwrap()
    }

    #[test]
    fn json_file_appears_only_when_committed_with_exact_decimals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let config = FileSinkConfig {
            name: "out".into(),
            path: path.clone(),
            format: FileFormat::Json,
            rollover: Duration::from_secs(60),
        };
        let mut sink = FileSink::try_new(config, batch().schema()).unwrap();
        sink.write(&batch()).unwrap();
        assert!(!path.exists());
        assert_eq!(sink.close().unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"n\":1,\"amount\":123.4567}\n{\"n\":2,\"amount\":null}\n"
        );
    }

    #[test]
    fn folder_sink_rolls_part_files_and_continues_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig {
            name: "out".into(),
            path: dir.path().to_path_buf(),
            format: FileFormat::Parquet,
            rollover: Duration::ZERO,
        };
        let mut sink = FileSink::try_new(config.clone(), batch().schema()).unwrap();
        sink.write(&batch()).unwrap();
        sink.write(&batch()).unwrap();
        sink.close().unwrap();
        let sink = FileSink::try_new(config, batch().schema()).unwrap();
        assert_eq!(sink.next_part, 2);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["part-00000.parquet", "part-00001.parquet"]);
    }

    #[test]
    fn dropped_sink_leaves_nothing_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileSinkConfig {
            name: "out".into(),
            path: dir.path().join("out.csv"),
            format: FileFormat::Csv(Default::default()),
            rollover: Duration::from_secs(60),
        };
        let mut sink = FileSink::try_new(config, batch().schema()).unwrap();
        sink.write(&batch()).unwrap();
        drop(sink);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
