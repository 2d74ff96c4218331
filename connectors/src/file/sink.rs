//! `file_sink`: results as JSON lines, CSV or Parquet, committed atomically.
//!
//! Rows go to a hidden in-progress file beside the target, which is renamed into place when
//! it is committed: on a clean stop, or, for a folder sink, every rollover interval. Readers
//! (and our own file sources) never see a half-written file.
//!
//! A job that checkpoints commits in two phases instead. At a checkpoint the sink finishes
//! its part file ([`FileSink::prepare_checkpoint`]); once the checkpoint is written, the part
//! is renamed into place ([`FileSink::commit_checkpoint`]). A restart from that checkpoint
//! renames whatever the crash left unrenamed and deletes every part written after it
//! ([`FileSink::recover`]). A single-file sink is flushed at each checkpoint instead, and cut
//! back to the checkpoint's length on restore.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::format::FileFormat;
use crate::error::{ConnectorError, Result};
use crate::position::SourcePosition;
use crate::prepared_output::PreparedOutput;
use crate::sink::{Sink, SinkConfig};
use crate::source::SourceConnector;

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
    /// For a folder sink: part files are `<prefix>-00000.<ext>`, ... (`part`, or another
    /// for each further writer of the folder).
    pub part_prefix: String,
}

impl FileSinkConfig {
    /// Whether it writes part files into a folder (not one file).
    pub fn is_folder(&self) -> bool {
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
    /// Parts commit at checkpoints only (two-phase), not on a timer.
    checkpointing: bool,
    /// Finished parts of a checkpoint not yet written: `(in-progress, target)`.
    prepared: Vec<(PathBuf, PathBuf)>,
}

struct Part {
    in_progress: PathBuf,
    target: PathBuf,
    opened: Instant,
    writer: FormatWriter,
}

enum FormatWriter {
    Json(arrow::json::LineDelimitedWriter<BufWriter<File>>),
    /// arrow's CSV writer keeps its output to itself: one is made per batch over ours.
    Csv {
        file: BufWriter<File>,
        /// Whether the next batch starts with the header line.
        header: bool,
        delimiter: u8,
    },
    Parquet(ArrowWriter<File>),
}

impl FileSink {
    /// Prepares the sink; nothing is created until the first row arrives.
    pub fn try_new(config: FileSinkConfig, schema: SchemaRef) -> Result<Self> {
        let next_part = if config.is_folder() {
            std::fs::create_dir_all(&config.path).map_err(|e| {
                ConnectorError::storage(format!("creating folder {}", config.path.display()), e)
            })?;
            highest_part(&config.path, &config.part_prefix).map_or(0, |n| n + 1)
        } else {
            0
        };
        Ok(Self {
            config,
            schema,
            part: None,
            next_part,
            rows: 0,
            checkpointing: false,
            prepared: Vec::new(),
        })
    }

    /// A sink of a job that checkpoints, continuing from `checkpoint` (from
    /// [`FileSink::prepare_checkpoint`]; `None` on a first start). Parts the checkpoint
    /// prepared are committed; parts written after it are deleted.
    pub fn recover(
        config: FileSinkConfig,
        schema: SchemaRef,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<Self> {
        let mut sink = Self::try_new(config, schema)?;
        sink.checkpointing = true;
        let bad = |what: &str| {
            ConnectorError::Config(format!(
                "sink '{}': the checkpoint has no valid {what}",
                sink.config.name
            ))
        };
        if !sink.config.is_folder() {
            if matches!(sink.config.format, FileFormat::Parquet) {
                return Err(ConnectorError::Config(format!(
                    "sink '{}': a single Parquet file cannot be resumed from checkpoints; write to a folder (a path ending in '/')",
                    sink.config.name
                )));
            }
            let length = match checkpoint {
                Some(checkpoint) => Some(
                    checkpoint
                        .get("length")
                        .and_then(|v| v.as_u64())
                        .ok_or_else(|| bad("length"))?,
                ),
                None => None,
            };
            sink.part = Some(sink.open_part(length)?);
            sink.rows = checkpoint
                .and_then(|c| c.get("rows"))
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            return Ok(sink);
        }
        let mut keep = Vec::new();
        if let Some(checkpoint) = checkpoint {
            let parts = checkpoint
                .get("parts")
                .and_then(|v| v.as_array())
                .ok_or_else(|| bad("parts"))?;
            for part in parts {
                let pair = part
                    .as_array()
                    .and_then(|p| Some((p.first()?.as_str()?, p.get(1)?.as_str()?)))
                    .ok_or_else(|| bad("parts"))?;
                let (in_progress, target) = (PathBuf::from(pair.0), PathBuf::from(pair.1));
                // Committed before the crash, or not yet: renaming again is harmless.
                if in_progress.exists() {
                    std::fs::rename(&in_progress, &target).map_err(|e| {
                        ConnectorError::storage(format!("committing {}", target.display()), e)
                    })?;
                }
                keep.push(target);
            }
            sink.next_part = checkpoint
                .get("next_part")
                .and_then(|v| v.as_u64())
                .ok_or_else(|| bad("next_part"))?;
            sink.rows = checkpoint.get("rows").and_then(|v| v.as_u64()).unwrap_or(0);
        }
        // Its own parts after the checkpoint: unfinished ones, and ones numbered past it.
        // Other writers' parts in the folder (an INSERT INTO's, another job's) are theirs.
        let entries = std::fs::read_dir(&sink.config.path).map_err(|e| {
            ConnectorError::storage(format!("listing {}", sink.config.path.display()), e)
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let number = name
                .trim_start_matches('.')
                .strip_prefix(&format!("{}-", sink.config.part_prefix))
                .and_then(|n| n.split('.').next()?.parse::<u64>().ok());
            let stray = number.is_some_and(|n| {
                name.ends_with(".inprogress") || (checkpoint.is_some() && n >= sink.next_part)
            });
            if stray && !keep.contains(&entry.path()) {
                std::fs::remove_file(entry.path()).map_err(|e| {
                    ConnectorError::storage(format!("removing {}", entry.path().display()), e)
                })?;
            }
        }
        Ok(sink)
    }

    /// Commits what the last checkpoint of a finished job prepared, if a crash kept it from
    /// being committed: its parts, or the single file.
    pub fn complete(config: &FileSinkConfig, checkpoint: &serde_json::Value) -> Result<()> {
        let commit = |in_progress: &str, target: &Path| {
            let in_progress = Path::new(in_progress);
            if !in_progress.exists() {
                return Ok(());
            }
            std::fs::rename(in_progress, target)
                .map_err(|e| ConnectorError::storage(format!("committing {}", target.display()), e))
        };
        if let Some(file) = checkpoint.get("file").and_then(|f| f.as_str()) {
            return commit(file, &config.path);
        }
        let parts = checkpoint.get("parts").and_then(|p| p.as_array());
        for part in parts.into_iter().flatten() {
            if let Some((in_progress, target)) = part
                .as_array()
                .and_then(|p| Some((p.first()?.as_str()?, p.get(1)?.as_str()?)))
            {
                commit(in_progress, Path::new(target))?;
            }
        }
        Ok(())
    }

    /// Phase one of a checkpoint: finishes (or flushes) every row written so far, not yet
    /// visible, and says how to commit it (the sink's part of the checkpoint). The files
    /// are durable once [`PreparedOutput::make_durable`] has synced them.
    pub fn prepare_checkpoint(&mut self) -> Result<PreparedOutput> {
        if !self.config.is_folder() {
            let part = self
                .part
                .as_mut()
                .expect("a resumable single file stays open");
            let (length, file) = part.writer.flush()?;
            return Ok(PreparedOutput {
                part: serde_json::json!({
                    "file": absolute(&part.in_progress),
                    "length": length,
                    "rows": self.rows,
                }),
                unsynced: vec![file],
            });
        }
        let mut unsynced = Vec::new();
        if let Some(part) = self.part.take() {
            let in_progress = part.in_progress.clone();
            let target = part.target.clone();
            unsynced.push(part.finish()?);
            self.prepared.push((in_progress, target));
        }
        let parts: Vec<_> = self
            .prepared
            .iter()
            .map(|(a, b)| serde_json::json!([absolute(a), absolute(b)]))
            .collect();
        Ok(PreparedOutput {
            part: serde_json::json!({
                "parts": parts,
                "next_part": self.next_part,
                "rows": self.rows,
            }),
            unsynced,
        })
    }

    /// Phase two, once the checkpoint is written: its parts become visible.
    pub fn commit_checkpoint(&mut self) -> Result<()> {
        for (in_progress, target) in self.prepared.drain(..) {
            std::fs::rename(&in_progress, &target).map_err(|e| {
                ConnectorError::storage(format!("committing {}", target.display()), e)
            })?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// For a folder sink, how often its part files are committed: call
    /// [`FileSink::roll_if_due`] at least that often, so an idle job's rows still land.
    pub fn rollover(&self) -> Option<std::time::Duration> {
        (self.config.is_folder() && !self.checkpointing).then_some(self.config.rollover)
    }

    /// Commits the current part file of a folder sink once its rollover time has passed;
    /// true when it did, so that every row written so far is now in a committed file.
    pub fn roll_if_due(&mut self) -> Result<bool> {
        let due = self
            .part
            .as_ref()
            .is_some_and(|p| p.opened.elapsed() >= self.config.rollover);
        if self.config.is_folder() && due && !self.checkpointing {
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
            self.part = Some(self.open_part(None)?);
        }
        let part = self.part.as_mut().expect("opened above");
        let context = || format!("writing {}", part.in_progress.display());
        match &mut part.writer {
            FormatWriter::Json(w) => w.write(batch),
            FormatWriter::Csv {
                file,
                header,
                delimiter,
            } => {
                let written = arrow::csv::WriterBuilder::new()
                    .with_header(*header)
                    .with_delimiter(*delimiter)
                    .build(&mut *file)
                    .write(batch);
                *header = false;
                written
            }
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
            self.part = Some(self.open_part(None)?);
        }
        self.commit_checkpoint()?;
        self.commit()?;
        Ok(self.rows)
    }

    /// Opens the next part file; with `resume_at`, the single file's in-progress file cut
    /// back to that length, appended to.
    fn open_part(&mut self, resume_at: Option<u64>) -> Result<Part> {
        let target = if self.config.is_folder() {
            let name = format!(
                "{}-{:05}.{}",
                self.config.part_prefix,
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
        let file = match resume_at {
            Some(length) => resume_file(&in_progress, length)?,
            None => File::create(&in_progress).map_err(|e| {
                ConnectorError::storage(format!("creating {}", in_progress.display()), e)
            })?,
        };
        // A resumed CSV file has its header already.
        let header = resume_at.is_none_or(|length| length == 0);
        let writer = match self.config.format {
            FileFormat::Json => FormatWriter::Json(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(BufWriter::new(file)),
            ),
            FileFormat::Csv(options) => FormatWriter::Csv {
                file: BufWriter::new(file),
                header: options.has_header && header,
                delimiter: options.delimiter,
            },
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
        let (in_progress, target) = (part.in_progress.clone(), part.target.clone());
        part.finish()?
            .sync_all()
            .map_err(|e| ConnectorError::storage(format!("committing {}", target.display()), e))?;
        std::fs::rename(&in_progress, &target)
            .map_err(|e| ConnectorError::storage(format!("committing {}", target.display()), e))
    }
}

impl Part {
    /// Finishes the file (a Parquet footer) and flushes it; the file, not yet synced.
    fn finish(self) -> Result<File> {
        let io = |e: std::io::Error| {
            ConnectorError::storage(format!("committing {}", self.target.display()), e)
        };
        let file = match self.writer {
            FormatWriter::Json(mut w) => {
                w.finish()
                    .map_err(|e| ConnectorError::arrow("finishing JSON output", e))?;
                w.into_inner()
                    .into_inner()
                    .map_err(|e| io(e.into_error()))?
            }
            FormatWriter::Csv { file, .. } => file.into_inner().map_err(|e| io(e.into_error()))?,
            FormatWriter::Parquet(w) => w.into_inner().map_err(|e| {
                ConnectorError::storage(format!("committing {}", self.target.display()), e)
            })?,
        };
        Ok(file)
    }
}

impl FormatWriter {
    /// Flushes a text file; its length, and a handle to sync it with.
    fn flush(&mut self) -> Result<(u64, File)> {
        let file = match self {
            Self::Json(w) => w.get_mut(),
            Self::Csv { file, .. } => file,
            Self::Parquet(_) => unreachable!("a single Parquet file is never resumed"),
        };
        let io = |e: std::io::Error| ConnectorError::storage("flushing a checkpointed file", e);
        file.flush().map_err(io)?;
        let length = file.get_ref().metadata().map(|m| m.len()).map_err(io)?;
        Ok((length, file.get_ref().try_clone().map_err(io)?))
    }
}

/// A path as a checkpoint keeps it: absolute, so a restart from elsewhere finds it.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The in-progress file of a single-file sink, cut back to the checkpoint's `length`.
fn resume_file(path: &Path, length: u64) -> Result<File> {
    let io = |e: std::io::Error| ConnectorError::storage(format!("resuming {}", path.display()), e);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    let actual = file.metadata().map_err(io)?.len();
    if actual < length {
        return Err(ConnectorError::Config(format!(
            "{} has {actual} bytes, but its checkpoint wrote {length}: it was changed outside the job",
            path.display()
        )));
    }
    file.set_len(length).map_err(io)?;
    let mut file = file;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(io)?;
    Ok(file)
}

impl SinkConfig for FileSinkConfig {
    fn connector(&self) -> &'static str {
        "file_sink"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn format(&self) -> String {
        self.format.to_string()
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    /// A folder takes more writers, each with part files of its own so that their numbers
    /// never meet; a single file is its own job's.
    fn for_insert(&self, target: &str, job: &str) -> Result<Box<dyn SinkConfig>> {
        if !self.is_folder() {
            return Err(ConnectorError::Config(format!(
                "'{target}' is written to the single file {}, which only its own job writes; give it a folder (a path ending in '/') or a topic",
                self.path.display()
            )));
        }
        Ok(Box::new(Self {
            part_prefix: format!("part-{job}"),
            ..self.clone()
        }))
    }

    fn open(&self, schema: SchemaRef) -> Result<Box<dyn Sink>> {
        Ok(Box::new(FileSink::try_new(self.clone(), schema)?))
    }

    fn recover(
        &self,
        schema: SchemaRef,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Sink>> {
        Ok(Box::new(FileSink::recover(
            self.clone(),
            schema,
            checkpoint,
        )?))
    }

    fn complete(&self, checkpoint: &serde_json::Value) -> Result<()> {
        FileSink::complete(self, checkpoint)
    }
}

impl Sink for FileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        FileSink::write(self, batch)
    }

    /// Its rows are durable only when their file is committed.
    fn flush(&mut self) -> Result<bool> {
        Ok(false)
    }

    fn rollover(&self) -> Option<Duration> {
        FileSink::rollover(self)
    }

    fn roll_if_due(&mut self) -> Result<bool> {
        FileSink::roll_if_due(self)
    }

    fn prepare_checkpoint(&mut self) -> Result<PreparedOutput> {
        FileSink::prepare_checkpoint(self)
    }

    /// Renames the parts the checkpoint names into place (the sources' positions are the
    /// checkpoint's business).
    fn commit_checkpoint(
        &mut self,
        _positions: &[(&dyn SourceConnector, SourcePosition)],
        _metadata: &str,
    ) -> Result<()> {
        FileSink::commit_checkpoint(self)
    }

    fn close(self: Box<Self>) -> Result<u64> {
        FileSink::close(*self)
    }
}

impl Drop for FileSink {
    /// A sink dropped without `close` (the job failed) leaves no in-progress file behind.
    fn drop(&mut self) {
        // A checkpointed single file holds rows its checkpoint counts on.
        if self.checkpointing && !self.config.is_folder() {
            return;
        }
        if let Some(part) = self.part.take() {
            let _ = std::fs::remove_file(&part.in_progress);
        }
    }
}

/// The highest `<prefix>-NNNNN` number already in `dir`, so a restarted job appends.
fn highest_part(dir: &Path, prefix: &str) -> Option<u64> {
    let prefix = format!("{prefix}-");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().to_string();
            name.strip_prefix(&prefix)?.split('.').next()?.parse().ok()
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
            part_prefix: "part".into(),
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
            part_prefix: "part".into(),
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
            part_prefix: "part".into(),
        };
        let mut sink = FileSink::try_new(config, batch().schema()).unwrap();
        sink.write(&batch()).unwrap();
        drop(sink);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
