//! `file_source`: CSV, JSON lines or Parquet files, read once or watched for new data.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::format::FileFormat;
use super::location::Location;
use super::parquet_reader::ObjectReader;
use crate::dead_letter::BadRecord;
use crate::error::{ConnectorError, Result};
use crate::kafka::DeadLetter;
use crate::metrics::SourceMetrics;
use crate::position::{PartPosition, SourcePosition};
use crate::records::{OnError, RecordDecoder, RecordSplitter, TextFormat, count_lines};
use crate::source::{DividedShare, Share, SourceConnector, SourceReader};
use crate::stop::StopSignal;

/// Bytes read from a file at a time.
const READ_CHUNK: u64 = 4 * 1024 * 1024;
/// How long a watched source's share may go without records before it no longer holds the
/// watermark of a parallel job back.
const WATCHED_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Between a file's path and its range in a range share's position.
pub const RANGE_TAG: &str = "#range=";
/// The fewest bytes of files read in byte ranges by a parallel job: below it, the ranges
/// would cost more to start than they save (and each range holds the watermark back for
/// the others, so small inputs keep the order of one reader).
const RANGES_FROM: u64 = 64 * 1024 * 1024;
/// Records looked at when inferring a schema.
const INFER_RECORDS: usize = 1000;

/// Everything a file source needs, resolved from its `WITH` options.
#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// The source's name in SQL.
    pub name: String,
    /// The file, folder or glob to read.
    pub location: Location,
    /// How records are laid out.
    pub format: FileFormat,
    /// The declared schema; inferred from the first file when absent.
    pub schema: Option<SchemaRef>,
    /// Rows per micro-batch (at most).
    pub batch_size: usize,
    /// Poll interval when the source keeps watching for new files and appended records;
    /// `None` reads what is there and ends.
    pub watch: Option<Duration>,
    /// What a malformed record gets.
    pub on_error: OnError,
}

/// A file source with its schema resolved. Each [`FileSource::reader`] reads it from the start.
#[derive(Debug, Clone)]
pub struct FileSource {
    config: Arc<FileSourceConfig>,
    schema: SchemaRef,
    /// What this source reads of the files, in a parallel job; `None`: all of them.
    share: Option<FileShare>,
}

/// A parallel job's share of a file source.
#[derive(Debug, Clone, Copy)]
enum FileShare {
    /// The files that fall to it (by a hash of their path), whole.
    Files(Share),
    /// One of equal ranges of every file read once: of bytes (CSV and JSON lines), whose
    /// records are those that start in the range, or of row groups (Parquet).
    Ranges(Share),
}

impl FileShare {
    fn reads(&self, path: &Path) -> bool {
        match self {
            Self::Files(share) => share.owns(path.as_ref()),
            Self::Ranges(_) => true,
        }
    }

    /// How a range share names its parts' positions (`path#range=i/n`), so that they never
    /// pass for a whole file's, nor for another range's.
    fn range_tag(self) -> Option<String> {
        match self {
            Self::Ranges(share) => Some(format!("{}/{}", share.index, share.count)),
            Self::Files(_) => None,
        }
    }

    /// The bytes of a file of `size` whose records it reads, if a range.
    fn range(&self, size: u64) -> Option<std::ops::Range<u64>> {
        let Self::Ranges(share) = self else {
            return None;
        };
        let at = |i: usize| (u128::from(size) * i as u128 / share.count as u128) as u64;
        Some(at(share.index)..at(share.index + 1))
    }

    /// The row groups of a Parquet file of `groups` that it reads, if a range.
    fn row_groups(&self, groups: usize) -> Option<Vec<usize>> {
        let Self::Ranges(share) = self else {
            return None;
        };
        Some(
            (share.index * groups / share.count..(share.index + 1) * groups / share.count)
                .collect(),
        )
    }
}

impl FileSource {
    /// Resolves the schema: the declared one, or one inferred from the first file.
    pub async fn try_new(config: FileSourceConfig) -> Result<Self> {
        let schema = match &config.schema {
            Some(schema) => schema.clone(),
            None => infer_schema(&config).await?,
        };
        Ok(Self {
            config: Arc::new(config),
            schema,
            share: None,
        })
    }

    /// A reader from the beginning of the data, counting into `metrics`; it ends at the end
    /// of the files, or when watching, once `stop` fires.
    pub fn reader(&self, stop: StopSignal, metrics: Arc<SourceMetrics>) -> FileSourceReader {
        self.reader_from(&SourcePosition::default(), None, stop, metrics)
    }

    /// A reader that resumes at `position` (from [`FileSourceReader::position`]): files read
    /// to their end are skipped unless they grew, a file read part way goes on where it was.
    /// It decodes `columns` of the schema only (`None`: all).
    pub fn reader_from(
        &self,
        position: &SourcePosition,
        columns: Option<&[usize]>,
        stop: StopSignal,
        metrics: Arc<SourceMetrics>,
    ) -> FileSourceReader {
        let decoded = match columns {
            Some(columns) => Arc::new(
                self.schema
                    .project(columns)
                    .expect("decoded columns are the schema's"),
            ),
            None => self.schema.clone(),
        };
        let decoder = match self.config.format {
            FileFormat::Csv(options) => Some(RecordDecoder::new(TextFormat::Csv {
                schema: self.schema.clone(),
                delimiter: options.delimiter,
                columns: columns.map(<[usize]>::to_vec),
            })),
            FileFormat::Json => Some(RecordDecoder::new(TextFormat::Json {
                schema: decoded.clone(),
            })),
            FileFormat::Parquet => None,
        };
        FileSourceReader {
            source: self.clone(),
            decoded,
            stop,
            metrics,
            decoder,
            queue: VecDeque::new(),
            progress: position
                .parts
                .iter()
                .filter_map(|p| {
                    let progress = FileProgress {
                        offset: p.offset as u64,
                        line: p.line as u64,
                        size: p.size as u64,
                    };
                    // A share resumes the parts that are its own (a checkpoint of another
                    // parallelism names every share's).
                    let (name, range, whole_and_done) = part_read(p);
                    if range != self.share.and_then(FileShare::range_tag).as_deref()
                        && !whole_and_done
                    {
                        return None;
                    }
                    let path = Path::parse(name).unwrap_or_else(|_| Path::from(name));
                    self.share
                        .is_none_or(|share| share.reads(&path))
                        .then_some((path, progress))
                })
                .collect(),
            current: None,
            listed: false,
            drained: false,
        }
    }
}

/// A checkpointed part's file, the range it was read in (`None`: whole), and whether it was
/// read whole to its end.
fn part_read(part: &PartPosition) -> (&str, Option<&str>, bool) {
    let (path, range) = match part.part.rsplit_once(RANGE_TAG) {
        Some((path, range)) => (path, Some(range)),
        None => (part.part.as_str(), None),
    };
    let whole_and_done = range.is_none() && part.size > 0 && part.offset >= part.size;
    (path, range, whole_and_done)
}

impl FileSource {
    /// A checkpoint's position must have read each file as this share reads it: whole, or
    /// in the same byte range (the count of instances and files decides). A file read to its
    /// end counts as read whichever way.
    fn check_read_the_same_way(&self, position: &SourcePosition) -> Result<()> {
        let own = self.share.and_then(FileShare::range_tag);
        for part in &position.parts {
            let (path, range, whole_and_done) = part_read(part);
            // Another share's part read the same way is no concern of this share's.
            let same_way = range == own.as_deref() || range.is_some() == own.is_some();
            if !same_way && !whole_and_done {
                return Err(ConnectorError::Config(format!(
                    "source '{}': its checkpoint read {path} {} and this run reads it {}: resume with the parallelism and the files it had, or delete the job's checkpoints to start over",
                    self.config.name,
                    range.map_or("whole".to_string(), |r| format!("in range {r}")),
                    own.as_deref()
                        .map_or("whole".to_string(), |r| format!("in range {r}")),
                )));
            }
        }
        Ok(())
    }
}

impl SourceConnector for FileSource {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// It ends by itself unless it is watching.
    fn is_bounded(&self) -> bool {
        self.config.watch.is_none()
    }

    fn connector(&self) -> &'static str {
        "file_source"
    }

    fn location(&self) -> String {
        self.config.location.display().to_string()
    }

    fn format(&self) -> String {
        self.config.format.to_string()
    }

    /// Divided by file: each file falls to one share. Read once, the shares without a
    /// file are left out; watched, every share is kept for the files still to come. Fewer
    /// files than shares, of [`RANGES_FROM`] bytes or more, read once, are divided into
    /// ranges instead, one per share: of bytes (CSV, JSON lines) or of row groups (Parquet).
    fn split(&self, count: usize) -> BoxFuture<'_, Result<Option<Vec<DividedShare>>>> {
        async move {
            let files = match self.config.watch {
                Some(_) => vec![],
                None => self.config.location.list().await?,
            };
            let bytes: u64 = files.iter().map(|f| f.size).sum();
            let ranges = self.config.watch.is_none() && files.len() < count && bytes >= RANGES_FROM;
            let shares = (0..count)
                .map(|index| Share { index, count })
                .map(|share| match ranges {
                    true => FileShare::Ranges(share),
                    false => FileShare::Files(share),
                })
                .filter(|share| {
                    self.config.watch.is_some() || files.iter().any(|f| share.reads(&f.location))
                })
                .map(|file_share| {
                    let (FileShare::Files(share) | FileShare::Ranges(share)) = file_share;
                    let source = Self {
                        share: Some(file_share),
                        ..self.clone()
                    };
                    (share, Arc::new(source) as Arc<dyn SourceConnector>)
                })
                .collect();
            Ok(Some(shares))
        }
        .boxed()
    }

    /// Watched in a parallel job, a share that has no new file for this long no longer
    /// holds the watermark back.
    fn idle_timeout(&self) -> Option<Duration> {
        self.config.watch.map(|_| WATCHED_IDLE_TIMEOUT)
    }

    fn reader(
        &self,
        position: Option<&SourcePosition>,
        columns: Option<&[usize]>,
        stop: StopSignal,
        metrics: Arc<SourceMetrics>,
    ) -> Result<Box<dyn SourceReader>> {
        let start = SourcePosition::default();
        if let Some(position) = position {
            self.check_read_the_same_way(position)?;
        }
        Ok(Box::new(self.reader_from(
            position.unwrap_or(&start),
            columns,
            stop,
            metrics,
        )))
    }
}

/// Reads a [`FileSource`] a micro-batch at a time.
pub struct FileSourceReader {
    source: FileSource,
    /// The columns it decodes.
    decoded: SchemaRef,
    stop: StopSignal,
    metrics: Arc<SourceMetrics>,
    decoder: Option<RecordDecoder>,
    queue: VecDeque<ObjectMeta>,
    /// How far each file has been consumed (byte offset of the first unconsumed record).
    progress: HashMap<Path, FileProgress>,
    current: Option<OpenFile>,
    listed: bool,
    /// The final pass after a stop has been queued.
    drained: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct FileProgress {
    offset: u64,
    line: u64,
    /// The file's size when it was last read to its end.
    size: u64,
}

enum OpenFile {
    Text(TextFile),
    Parquet {
        path: Path,
        size: u64,
        url: String,
        /// Rows read so far (of its row groups, in a range share): where a resumed read
        /// starts.
        rows: u64,
        stream: ParquetRecordBatchStream<ObjectReader>,
    },
}

impl SourceReader for FileSourceReader {
    fn position(&self) -> SourcePosition {
        FileSourceReader::position(self)
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        FileSourceReader::next_batch(self).boxed()
    }
}

impl FileSourceReader {
    /// Where the reader stands: every file it has read, and how far into the one it reads.
    pub fn position(&self) -> SourcePosition {
        let mut progress = self.progress.clone();
        match &self.current {
            // A file read part way has no size yet: it counts as grown when resumed.
            Some(OpenFile::Text(file)) => {
                let current = FileProgress {
                    size: 0,
                    ..file.progress()
                };
                progress.insert(file.meta.location.clone(), current);
            }
            Some(OpenFile::Parquet { path, rows, .. }) => {
                let current = FileProgress {
                    offset: 0,
                    line: *rows,
                    size: 0,
                };
                progress.insert(path.clone(), current);
            }
            None => {}
        }
        let tag = self.source.share.and_then(FileShare::range_tag);
        let mut parts: Vec<PartPosition> = progress
            .into_iter()
            .map(|(path, p)| PartPosition {
                part: match &tag {
                    Some(tag) => format!("{path}{RANGE_TAG}{tag}"),
                    None => path.to_string(),
                },
                offset: p.offset as i64,
                line: p.line as i64,
                size: p.size as i64,
            })
            .collect();
        parts.sort_by(|a, b| a.part.cmp(&b.part));
        SourcePosition { parts }
    }

    /// The next micro-batch of valid rows, or `None` once the source has ended. A watching
    /// reader that found nothing new returns an empty batch after each look, so that its
    /// caller gets a turn (to checkpoint) even while no data comes.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(batch) = self.next_from_current().await? {
                if batch.num_rows() > 0 {
                    self.metrics.add_records(batch.num_rows());
                    return Ok(Some(batch));
                }
                continue;
            }
            if let Some(meta) = self.queue.pop_front() {
                self.current = Some(self.open(meta).await?);
                continue;
            }
            let Some(poll) = self.source.config.watch else {
                if self.listed {
                    return Ok(None);
                }
                self.enqueue_new_data().await?;
                continue;
            };
            if self.stop.is_stopped() {
                // One last look, so that what was written before the stop is not left out.
                if self.drained {
                    return Ok(None);
                }
                self.drained = true;
            } else if self.listed {
                self.stop.sleep(poll).await;
                self.enqueue_new_data().await?;
                if self.queue.is_empty() {
                    return Ok(Some(RecordBatch::new_empty(self.decoded.clone())));
                }
                continue;
            }
            self.enqueue_new_data().await?;
        }
    }

    /// Queues every file that is new or has grown since it was last read.
    async fn enqueue_new_data(&mut self) -> Result<()> {
        self.listed = true;
        for meta in self.source.config.location.list().await? {
            let ours = self
                .source
                .share
                .is_none_or(|share| share.reads(&meta.location));
            let grown = self
                .progress
                .get(&meta.location)
                .is_none_or(|seen| seen.size != meta.size);
            if ours && grown {
                self.queue.push_back(meta);
            }
        }
        Ok(())
    }

    async fn open(&mut self, meta: ObjectMeta) -> Result<OpenFile> {
        let location = &self.source.config.location;
        let url = location.object_url(&meta.location);
        let mut progress = self
            .progress
            .get(&meta.location)
            .copied()
            .unwrap_or_default();
        if meta.size < progress.offset {
            // Truncated or replaced: read it again from the start.
            progress = FileProgress::default();
        }
        let range = self.source.share.and_then(|share| share.range(meta.size));
        Ok(match self.source.config.format {
            FileFormat::Parquet => {
                let reader = ObjectReader::new(location.store().clone(), &meta);
                let builder = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| ConnectorError::storage(format!("opening {url}"), e))?;
                let groups = builder.metadata().num_row_groups();
                let builder = match self.source.share.and_then(|s| s.row_groups(groups)) {
                    Some(own) => builder.with_row_groups(own),
                    None => builder,
                };
                // The file's columns the reader decodes (matched by name, as they are after).
                let roots: Vec<usize> = builder
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, field)| self.decoded.field_with_name(field.name()).is_ok())
                    .map(|(i, _)| i)
                    .collect();
                let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
                let builder = builder.with_projection(mask);
                let stream = builder
                    .with_batch_size(self.source.config.batch_size)
                    .with_offset(progress.line as usize)
                    .build()
                    .map_err(|e| ConnectorError::storage(format!("reading {url}"), e))?;
                OpenFile::Parquet {
                    path: meta.location,
                    size: meta.size,
                    url,
                    rows: progress.line,
                    stream,
                }
            }
            FileFormat::Csv(options) => OpenFile::Text(TextFile::new(
                meta,
                url,
                progress,
                RecordSplitter::csv(&options),
                options.has_header,
                self.source.is_bounded(),
                range,
            )),
            FileFormat::Json => OpenFile::Text(TextFile::new(
                meta,
                url,
                progress,
                RecordSplitter::lines(),
                false,
                self.source.is_bounded(),
                range,
            )),
        })
    }

    async fn next_from_current(&mut self) -> Result<Option<RecordBatch>> {
        let Some(current) = self.current.as_mut() else {
            return Ok(None);
        };
        let config = &self.source.config;
        match current {
            OpenFile::Text(file) => {
                let decoder = self.decoder.as_mut().expect("text formats have a decoder");
                match file
                    .next_batch(&config.location, decoder, config.batch_size)
                    .await?
                {
                    Some((batch, bad)) => {
                        self.handle_bad(bad)?;
                        Ok(Some(batch))
                    }
                    None => {
                        let (path, progress) = (file.meta.location.clone(), file.progress());
                        self.progress.insert(path, progress);
                        self.current = None;
                        Ok(None)
                    }
                }
            }
            OpenFile::Parquet {
                path,
                size,
                url,
                rows,
                stream,
            } => match stream.next().await {
                Some(batch) => {
                    let batch =
                        batch.map_err(|e| ConnectorError::storage(format!("reading {url}"), e))?;
                    *rows += batch.num_rows() as u64;
                    conform_to_schema(&batch, &self.decoded)
                        .map(Some)
                        .map_err(|e| ConnectorError::arrow(format!("reading {url}"), e))
                }
                None => {
                    let progress = FileProgress {
                        offset: *size,
                        line: 0,
                        size: *size,
                    };
                    self.progress.insert(path.clone(), progress);
                    self.current = None;
                    Ok(None)
                }
            },
        }
    }

    fn handle_bad(&self, bad: Vec<BadRecord>) -> Result<()> {
        let Some(first) = bad.first() else {
            return Ok(());
        };
        match &self.source.config.on_error {
            OnError::Fail => {
                return Err(ConnectorError::MalformedRecord {
                    file: first.file.clone(),
                    line: first.line,
                    reason: first.reason.clone(),
                });
            }
            OnError::Skip => {}
            OnError::DeadLetter(writer) => writer.write(&self.source.config.name, &bad)?,
            OnError::DeadLetterTopic(topic) => {
                let letters: Vec<_> = bad
                    .iter()
                    .map(|record| DeadLetter {
                        origin: format!("{}:{}", record.file, record.line),
                        key: None,
                        value: record.raw.as_bytes(),
                        reason: &record.reason,
                    })
                    .collect();
                topic.write(&self.source.config.name, &letters)?;
            }
        }
        self.metrics.add_bad(bad.len());
        Ok(())
    }
}

/// A CSV or JSON-lines file being read: a window of its bytes, split into records.
struct TextFile {
    meta: ObjectMeta,
    url: String,
    splitter: RecordSplitter,
    /// Bytes read; those from `head` on are not consumed yet, and `buf[head]` is at file
    /// offset `buf_offset`. (Consumed bytes go at the next read, not at every batch: moving
    /// the rest of a 4 MiB read down after each batch cost more than the parsing.)
    buf: Vec<u8>,
    head: usize,
    buf_offset: u64,
    /// Line number of `buf[0]`.
    line: u64,
    /// File offset of the end of `buf`.
    read_pos: u64,
    skip_header: bool,
    /// Whether the end of the file ends its last record (not while watching: more may come).
    final_read: bool,
    terminated: bool,
    /// Of a file read in byte ranges: records starting here or after are the next range's.
    end: Option<u64>,
    /// A range starting within the file: what comes before its first line break belongs
    /// to the record the range before reads.
    align: bool,
    /// Where `line` counts from, when not from the file's start (a range): the lines before
    /// it are counted only when a bad record needs its line number.
    counted_from: Option<u64>,
    /// The lines before `counted_from`, once counted.
    lines_before: Option<u64>,
}

impl TextFile {
    fn new(
        meta: ObjectMeta,
        url: String,
        progress: FileProgress,
        splitter: RecordSplitter,
        has_header: bool,
        final_read: bool,
        range: Option<std::ops::Range<u64>>,
    ) -> Self {
        let start = range.as_ref().map_or(0, |r| r.start);
        // A range starting within the file reads from the byte before it, to find where
        // its first record starts; resumed, it goes on at a record's start.
        let (offset, align, counted_from) = match progress.offset {
            _ if start == 0 => (progress.offset, false, None),
            offset if offset > start => (offset, false, Some(offset)),
            _ => (start - 1, true, None),
        };
        Self {
            meta,
            url,
            splitter,
            buf: Vec::new(),
            head: 0,
            buf_offset: offset,
            line: match counted_from.or(align.then_some(start)) {
                Some(_) => 1,
                None => progress.line.max(1),
            },
            read_pos: offset,
            skip_header: has_header && offset == 0,
            final_read,
            terminated: false,
            end: range.map(|r| r.end),
            align,
            counted_from,
            lines_before: None,
        }
    }

    /// The lines before `counted_from`: read and counted once, for a bad record's line.
    async fn lines_before(&mut self, location: &Location) -> Result<u64> {
        let Some(until) = self.counted_from else {
            return Ok(0);
        };
        if let Some(lines) = self.lines_before {
            return Ok(lines);
        }
        let mut lines = 0;
        let mut at = 0;
        while at < until {
            let end = (at + READ_CHUNK).min(until);
            let bytes = location
                .store()
                .get_range(&self.meta.location, at..end)
                .await
                .map_err(|e| ConnectorError::storage(format!("reading {}", self.url), e))?;
            lines += count_lines(&bytes);
            at = end;
        }
        self.lines_before = Some(lines);
        Ok(lines)
    }

    fn progress(&self) -> FileProgress {
        FileProgress {
            offset: self.buf_offset,
            line: self.line,
            size: self.meta.size,
        }
    }

    /// Reads more of the file; false at its end.
    async fn fill(&mut self, location: &Location) -> Result<bool> {
        if self.read_pos < self.meta.size {
            let end = (self.read_pos + READ_CHUNK).min(self.meta.size);
            let bytes = location
                .store()
                .get_range(&self.meta.location, self.read_pos..end)
                .await
                .map_err(|e| ConnectorError::storage(format!("reading {}", self.url), e))?;
            self.buf.drain(..self.head);
            self.head = 0;
            self.buf.extend_from_slice(&bytes);
            self.read_pos = end;
            return Ok(true);
        }
        if self.final_read && !self.terminated {
            // The last record of a finished file needs no line terminator.
            self.terminated = true;
            if self.unread().last().is_some_and(|&b| b != b'\n') {
                self.buf.push(b'\n');
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The bytes read and not consumed yet.
    fn unread(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    fn consume(&mut self, len: usize) {
        self.line += count_lines(&self.unread()[..len]);
        self.head += len;
        self.buf_offset += len as u64;
    }

    async fn next_batch(
        &mut self,
        location: &Location,
        decoder: &mut RecordDecoder,
        batch_size: usize,
    ) -> Result<Option<(RecordBatch, Vec<BadRecord>)>> {
        while self.skip_header {
            match self.splitter.next_record(&self.buf[self.head..]) {
                Some(len) => {
                    self.consume(len);
                    self.skip_header = false;
                }
                None if self.fill(location).await? => {}
                None => return Ok(None),
            }
        }
        while self.align {
            match memchr::memchr(b'\n', self.unread()) {
                Some(at) => {
                    self.head += at + 1;
                    self.buf_offset += at as u64 + 1;
                    self.align = false;
                    self.counted_from = Some(self.buf_offset);
                }
                None if self.fill(location).await? => {}
                // No line starts in the range.
                None => return Ok(None),
            }
        }
        let mut ranges = Vec::with_capacity(batch_size.min(65536));
        let mut pos = 0;
        let mut range_done = false;
        loop {
            while ranges.len() < batch_size {
                if self
                    .end
                    .is_some_and(|end| self.buf_offset + pos as u64 >= end)
                {
                    range_done = true;
                    break;
                }
                match self.splitter.next_record(&self.buf[self.head + pos..]) {
                    Some(len) => {
                        ranges.push(pos..pos + len);
                        pos += len;
                    }
                    None => break,
                }
            }
            if ranges.len() == batch_size || range_done || !self.fill(location).await? {
                break;
            }
        }
        let mut bad = Vec::new();
        if ranges.is_empty() && range_done {
            return Ok(None);
        }
        if ranges.is_empty() {
            if self.terminated && self.unread().iter().all(u8::is_ascii_whitespace) {
                // Blank lines at the end (or the `\n` of a final `\r\n`) are no record.
                let len = self.unread().len();
                self.consume(len);
            }
            if self.unread().is_empty() || !self.terminated {
                return Ok(None);
            }
            // What is left of a finished file is no complete record (an open quote).
            let line = self.line + self.lines_before(location).await?;
            bad.push(BadRecord {
                file: self.url.clone(),
                line,
                reason: "unterminated record at end of file".to_string(),
                raw: String::from_utf8_lossy(self.unread())
                    .trim_end()
                    .to_string(),
            });
            let len = self.unread().len();
            self.consume(len);
            let empty = RecordBatch::new_empty(decoder.schema().clone());
            return Ok(Some((empty, bad)));
        }
        let (batch, decode_bad) = decoder
            .decode_records(self.unread(), &ranges, &self.url, self.line)
            .map_err(|e| ConnectorError::arrow(format!("decoding {}", self.url), e))?;
        bad.extend(decode_bad);
        self.consume(pos);
        if !bad.is_empty() {
            let before = self.lines_before(location).await?;
            for record in &mut bad {
                record.line += before;
            }
        }
        Ok(Some((batch, bad)))
    }
}

/// Columns of `batch` by name, cast to the declared types; a missing column is all null.
fn conform_to_schema(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => arrow::compute::cast(column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

async fn infer_schema(config: &FileSourceConfig) -> Result<SchemaRef> {
    let files = config.location.list().await?;
    let Some(first) = files.first() else {
        return Err(ConnectorError::Config(format!(
            "source '{}': no files at '{}' to infer a schema from; give '{}.schema'",
            config.name,
            config.location.display(),
            config.name
        )));
    };
    let url = config.location.object_url(&first.location);
    let store = config.location.store();
    if config.format == FileFormat::Parquet {
        let reader = ObjectReader::new(store.clone(), first);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| ConnectorError::storage(format!("opening {url}"), e))?;
        return Ok(builder.schema().clone());
    }
    let head = store
        .get_range(&first.location, 0..first.size.min(READ_CHUNK))
        .await
        .map_err(|e| ConnectorError::storage(format!("reading {url}"), e))?;
    // Only whole lines, so a record cut in half does not skew a column's type.
    let whole = head
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&head[..], |i| &head[..=i]);
    let context = || format!("inferring the schema of {url}");
    let schema: Schema = match config.format {
        FileFormat::Csv(options) => {
            arrow::csv::reader::Format::default()
                .with_header(options.has_header)
                .with_delimiter(options.delimiter)
                .infer_schema(whole, Some(INFER_RECORDS))
                .map_err(|e| ConnectorError::arrow(context(), e))?
                .0
        }
        FileFormat::Json => {
            arrow::json::reader::infer_json_schema(whole, Some(INFER_RECORDS))
                .map_err(|e| ConnectorError::arrow(context(), e))?
                .0
        }
        FileFormat::Parquet => unreachable!("handled above"),
    };
    Ok(Arc::new(schema))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::format::CsvOptions;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type};

    fn config(path: &str, format: FileFormat) -> FileSourceConfig {
        FileSourceConfig {
            name: "t".into(),
            location: Location::parse(path).unwrap(),
            format,
            schema: None,
            batch_size: 2,
            watch: None,
            on_error: OnError::Skip,
        }
    }

    async fn read_all(source: &FileSource, metrics: &Arc<SourceMetrics>) -> Vec<RecordBatch> {
        let mut reader = source.reader(StopSignal::new(), metrics.clone());
        let mut out = vec![];
        while let Some(batch) = reader.next_batch().await.unwrap() {
            out.push(batch);
        }
        out
    }

    #[tokio::test]
    async fn reads_csv_files_in_batches_skipping_each_header() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.csv"), "a,b\n1,x\n2,y\n3,z").unwrap();
        std::fs::write(dir.path().join("2.csv"), "a,b\n4,w\n").unwrap();
        let source = FileSource::try_new(config(
            dir.path().to_str().unwrap(),
            FileFormat::Csv(CsvOptions::default()),
        ))
        .await
        .unwrap();
        assert_eq!(source.schema().field(0).data_type(), &DataType::Int64);
        let metrics = Arc::new(SourceMetrics::default());
        let batches = read_all(&source, &metrics).await;
        let values: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(values, vec![1, 2, 3, 4]);
        assert_eq!(batches.iter().map(|b| b.num_rows()).max(), Some(2));
        assert_eq!(metrics.records_in(), 4);
    }

    /// Every record once over the ranges, whatever their number and where their bounds
    /// fall (within a quoted field's line too), and a bad record's line counted from the
    /// file's start; a range resumed from its position goes on where it was.
    #[tokio::test]
    async fn byte_ranges_read_every_record_once_and_name_true_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let mut text = String::from("a,b\n");
        for i in 0..200 {
            match i {
                150 => text.push_str("oops,bad\n"),
                _ => text.push_str(&format!("{i},\"x {i}\"\n")),
            }
        }
        std::fs::write(&path, &text).unwrap();
        let mut config = config(
            path.to_str().unwrap(),
            FileFormat::Csv(CsvOptions::default()),
        );
        config.schema = Some(Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ])));
        let whole = FileSource::try_new(config.clone()).await.unwrap();
        for count in [1, 2, 3, 7] {
            let dead = dir.path().join(format!("dead-{count}.jsonl"));
            let on_error = OnError::DeadLetter(Arc::new(crate::DeadLetterWriter::new(&dead)));
            let whole = FileSource {
                config: Arc::new(FileSourceConfig {
                    on_error,
                    ..config.clone()
                }),
                ..whole.clone()
            };
            let mut values = vec![];
            for index in 0..count {
                let share = FileSource {
                    share: Some(FileShare::Ranges(Share { index, count })),
                    ..whole.clone()
                };
                for batch in read_all(&share, &Arc::default()).await {
                    values.extend(
                        batch
                            .column(0)
                            .as_primitive::<Int64Type>()
                            .values()
                            .to_vec(),
                    );
                }
            }
            values.sort();
            let expected: Vec<i64> = (0..200).filter(|i| *i != 150).collect();
            assert_eq!(values, expected, "{count} ranges");
            let letters = std::fs::read_to_string(&dead).unwrap();
            assert!(
                letters.contains("t.csv\",\"line\":152"),
                "{count} ranges: {letters}"
            );
        }
        // The second of two ranges, stopped after its first batch and resumed from there.
        let share = FileSource {
            share: Some(FileShare::Ranges(Share { index: 1, count: 2 })),
            ..whole.clone()
        };
        let mut reader = share.reader(StopSignal::new(), Arc::default());
        let first = reader.next_batch().await.unwrap().unwrap();
        let position = reader.position();
        let mut resumed = share.reader_from(&position, None, StopSignal::new(), Arc::default());
        let mut rest = vec![];
        while let Some(batch) = resumed.next_batch().await.unwrap() {
            rest.extend(
                batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec(),
            );
        }
        let first = first
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(rest.first().copied(), first.last().map(|v| v + 1));
        assert_eq!(rest.last(), Some(&199));
    }

    /// A reader asked for some columns decodes those only, in every format: a value that
    /// would not decode in a column it does not read leaves its record valid.
    #[tokio::test]
    async fn a_reader_decodes_the_columns_it_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int64, true),
        ]));
        std::fs::write(dir.path().join("t.csv"), "a,b,c\nnot a number,x,1\n2,y,2\n").unwrap();
        std::fs::write(
            dir.path().join("t.jsonl"),
            "{\"a\": \"not a number\", \"b\": \"x\", \"c\": 1}\n{\"a\": 2, \"b\": \"y\", \"c\": 2}\n",
        )
        .unwrap();
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
                Arc::new(arrow::array::StringArray::from(vec!["x", "y"])),
                Arc::new(arrow::array::Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let parquet = dir.path().join("t.parquet");
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&parquet).unwrap(),
            schema.clone(),
            None,
        )
        .unwrap();
        writer.write(&rows).unwrap();
        writer.close().unwrap();
        let formats = [
            ("t.csv", FileFormat::Csv(CsvOptions::default())),
            ("t.jsonl", FileFormat::Json),
            ("t.parquet", FileFormat::Parquet),
        ];
        for (file, format) in formats {
            let path = dir.path().join(file);
            let mut config = config(path.to_str().unwrap(), format);
            config.schema = Some(schema.clone());
            let source = FileSource::try_new(config).await.unwrap();
            let mut reader = source.reader_from(
                &SourcePosition::default(),
                Some(&[1, 2]),
                StopSignal::new(),
                Arc::default(),
            );
            let mut batches = vec![];
            while let Some(batch) = reader.next_batch().await.unwrap() {
                batches.push(batch);
            }
            let read = arrow::compute::concat_batches(
                &Arc::new(schema.project(&[1, 2]).unwrap()),
                &batches,
            )
            .unwrap();
            assert_eq!(read, rows.project(&[1, 2]).unwrap(), "{file}");
        }
    }

    /// A Parquet file read in ranges of row groups: every row once, whatever the number of
    /// ranges (more than the file has row groups too); a range resumed goes on where it was.
    #[tokio::test]
    async fn row_group_ranges_read_every_parquet_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(20))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            schema.clone(),
            Some(properties),
        )
        .unwrap();
        let values = arrow::array::Int64Array::from_iter_values(0..200);
        writer
            .write(&RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap())
            .unwrap();
        assert_eq!(writer.close().unwrap().num_row_groups(), 10);
        let whole = FileSource::try_new(config(path.to_str().unwrap(), FileFormat::Parquet))
            .await
            .unwrap();
        let column = |batch: &RecordBatch| {
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        for count in [1, 2, 3, 13] {
            let mut read = vec![];
            for index in 0..count {
                let share = FileSource {
                    share: Some(FileShare::Ranges(Share { index, count })),
                    ..whole.clone()
                };
                let mut own = vec![];
                for batch in read_all(&share, &Arc::default()).await {
                    own.extend(column(&batch));
                }
                // Each range is whole row groups, in order.
                assert!(own.windows(2).all(|w| w[1] == w[0] + 1), "{own:?}");
                read.extend(own);
            }
            read.sort();
            assert_eq!(read, (0..200).collect::<Vec<i64>>(), "{count} ranges");
        }
        // The second of three ranges (row groups 3 to 5), resumed after its first batch.
        let share = FileSource {
            share: Some(FileShare::Ranges(Share { index: 1, count: 3 })),
            ..whole.clone()
        };
        let mut reader = share.reader(StopSignal::new(), Arc::default());
        let first = column(&reader.next_batch().await.unwrap().unwrap());
        assert_eq!(first, vec![60, 61]);
        let position = reader.position();
        assert!(
            position.parts[0].part.ends_with("#range=1/3"),
            "{position:?}"
        );
        let mut resumed = share.reader_from(&position, None, StopSignal::new(), Arc::default());
        let mut rest = vec![];
        while let Some(batch) = resumed.next_batch().await.unwrap() {
            rest.extend(column(&batch));
        }
        assert_eq!(rest, (62..120).collect::<Vec<i64>>());
    }

    #[tokio::test]
    async fn fail_policy_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":\"x\"}\n").unwrap();
        let mut config = config(path.to_str().unwrap(), FileFormat::Json);
        config.on_error = OnError::Fail;
        config.schema = Some(Arc::new(Schema::new(vec![Field::new(
            "a",
            DataType::Int64,
            true,
        )])));
        let source = FileSource::try_new(config).await.unwrap();
        let mut reader = source.reader(StopSignal::new(), Arc::default());
        let first = reader.next_batch().await.unwrap().unwrap();
        assert_eq!(first.num_rows(), 2);
        let err = reader.next_batch().await.unwrap_err().to_string();
        assert!(err.contains("t.jsonl:3"), "{err}");
    }

    #[tokio::test]
    async fn watching_picks_up_appended_lines_and_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.jsonl");
        std::fs::write(&file, "{\"a\":1}\n{\"a\":").unwrap();
        let mut config = config(dir.path().to_str().unwrap(), FileFormat::Json);
        config.watch = Some(Duration::from_millis(10));
        let source = FileSource::try_new(config).await.unwrap();
        let stop = StopSignal::new();
        let mut reader = source.reader(stop.clone(), Arc::default());
        assert_eq!(reader.next_batch().await.unwrap().unwrap().num_rows(), 1);
        std::fs::write(&file, "{\"a\":1}\n{\"a\":2}\n").unwrap();
        let batch = reader.next_batch().await.unwrap().unwrap();
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 2);
        std::fs::write(dir.path().join("b.jsonl"), "{\"a\":3}\n").unwrap();
        let batch = reader.next_batch().await.unwrap().unwrap();
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 3);
        stop.stop();
        assert!(reader.next_batch().await.unwrap().is_none());
    }
}
