//! Splitting text files into records and decoding them into batches, with per-record errors.
//!
//! The fast path hands a whole micro-batch of records to arrow's decoder. Only when that fails
//! are the records decoded one by one, so that a malformed record is found with its line and
//! every valid record around it is kept.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::dead_letter::{BadRecord, DeadLetterWriter};
use crate::file::format::CsvOptions;
use crate::kafka::DeadLetterTopic;
use crate::text_timestamps::parse_timestamps;

/// What a source does with a record it cannot decode.
#[derive(Debug, Clone, Default)]
pub enum OnError {
    /// Stop with an error naming the file, line and reason (the default).
    #[default]
    Fail,
    /// Count the record and go on.
    Skip,
    /// Count the record, write it with the reason to the dead-letter file, and go on.
    DeadLetter(Arc<DeadLetterWriter>),
    /// Count the record, write it with the reason to the dead-letter topic, and go on.
    DeadLetterTopic(Arc<DeadLetterTopic>),
}

/// Finds where records end in a buffer of text.
#[derive(Debug)]
pub(crate) enum RecordSplitter {
    /// One record per line (JSON lines).
    Lines,
    /// CSV records, which may span lines inside quotes.
    Csv {
        reader: Box<csv_core::Reader>,
        fields: Vec<u8>,
        ends: Vec<usize>,
    },
}

impl RecordSplitter {
    pub(crate) fn lines() -> Self {
        Self::Lines
    }

    pub(crate) fn csv(options: &CsvOptions) -> Self {
        Self::Csv {
            reader: Box::new(
                csv_core::ReaderBuilder::new()
                    .delimiter(options.delimiter)
                    .build(),
            ),
            fields: vec![0; 64 * 1024],
            ends: vec![0; 256],
        }
    }

    /// Length of the first complete record of `buf`, its terminator included; `None` when
    /// `buf` holds only the beginning of one.
    pub(crate) fn next_record(&mut self, buf: &[u8]) -> Option<usize> {
        let (reader, fields, ends) = match self {
            Self::Lines => return memchr::memchr(b'\n', buf).map(|i| i + 1),
            Self::Csv {
                reader,
                fields,
                ends,
            } => (reader, fields, ends),
        };
        // A line without a quote or a carriage return inside is one whole record: found
        // without running the CSV machine over it (the decoder parses it anyway). (One
        // search for all three bytes, or a loop over the line, measured slower.)
        if let Some(end) = memchr::memchr(b'\n', buf) {
            let text = &buf[..end];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if !text.is_empty() && memchr::memchr2(b'"', b'\r', text).is_none() {
                return Some(end + 1);
            }
        }
        loop {
            reader.reset();
            let (result, consumed, _, _) = reader.read_record(buf, fields, ends);
            match result {
                // A record ended by CR takes the LF of a CRLF with it, so that every
                // record but the first of a line-broken text starts after a LF (as byte
                // ranges of a file assume).
                csv_core::ReadRecordResult::Record if buf[..consumed].ends_with(b"\r") => {
                    return match buf.get(consumed) {
                        Some(b'\n') => Some(consumed + 1),
                        Some(_) => Some(consumed),
                        None => None,
                    };
                }
                csv_core::ReadRecordResult::Record => return Some(consumed),
                csv_core::ReadRecordResult::InputEmpty | csv_core::ReadRecordResult::End => {
                    return None;
                }
                // A very wide record: grow the scratch space and scan it again.
                csv_core::ReadRecordResult::OutputFull => fields.resize(fields.len() * 2, 0),
                csv_core::ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            }
        }
    }
}

/// The text formats records are decoded from, with the schema they are decoded into.
#[derive(Debug, Clone)]
pub(crate) enum TextFormat {
    /// Records of `schema`'s fields, of which only `columns` are decoded (`None`: all).
    Csv {
        schema: SchemaRef,
        delimiter: u8,
        columns: Option<Vec<usize>>,
    },
    /// Objects whose fields of `schema` are decoded (the others are skipped).
    Json { schema: SchemaRef },
}

/// Decodes record text into batches of a fixed schema. One arrow decoder is kept from
/// micro-batch to micro-batch: built afresh for each, it cost a CSV state machine and newly
/// zeroed buffers every time (5 % of a CSV aggregation's CPU). It reads a CSV's timestamps
/// as text, which [`crate::text_timestamps`] reads faster than arrow.
#[derive(Debug)]
pub(crate) struct RecordDecoder {
    format: TextFormat,
    /// The columns it gives (a CSV's decoded ones).
    output: SchemaRef,
    /// The decoder kept, and how many records it takes at most.
    kept: Option<(ArrowDecoder, usize)>,
    /// What the decoder kept reads as text: the schema it reads, and the timestamp columns
    /// of the output (without a time zone) it reads as text.
    text_timestamps: Option<(SchemaRef, Vec<(usize, TimeUnit)>)>,
}

/// One of arrow's push decoders.
#[derive(Debug)]
enum ArrowDecoder {
    Csv(Box<arrow::csv::reader::Decoder>),
    Json(arrow::json::reader::Decoder),
}

impl ArrowDecoder {
    /// Decodes the whole records of `bytes`, which the decoder has room for.
    fn decode_all(&mut self, bytes: &[u8]) -> Result<Option<RecordBatch>, ArrowError> {
        let mut read = 0;
        while read < bytes.len() {
            let n = match self {
                Self::Csv(decoder) => decoder.decode(&bytes[read..])?,
                Self::Json(decoder) => decoder.decode(&bytes[read..])?,
            };
            if n == 0 {
                break;
            }
            read += n;
        }
        match self {
            Self::Csv(decoder) => decoder.flush(),
            Self::Json(decoder) => decoder.flush(),
        }
    }
}

impl RecordDecoder {
    pub(crate) fn new(format: TextFormat) -> Self {
        let (output, text_timestamps) = match &format {
            TextFormat::Csv {
                schema, columns, ..
            } => {
                let output = match columns {
                    Some(columns) => Arc::new(
                        schema
                            .project(columns)
                            .expect("decoded columns are the schema's"),
                    ),
                    None => schema.clone(),
                };
                let read_as = |field: &Field| match field.data_type() {
                    DataType::Timestamp(_, None) => Field::new(field.name(), DataType::Utf8, true),
                    _ => field.clone(),
                };
                let fields: Vec<Field> = schema.fields().iter().map(|f| read_as(f)).collect();
                let timestamps: Vec<(usize, TimeUnit)> = output
                    .fields()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, field)| match field.data_type() {
                        DataType::Timestamp(unit, None) => Some((i, *unit)),
                        _ => None,
                    })
                    .collect();
                let text =
                    (!timestamps.is_empty()).then(|| (Arc::new(Schema::new(fields)), timestamps));
                (output, text)
            }
            TextFormat::Json { schema } => (schema.clone(), None),
        };
        Self {
            format,
            output,
            kept: None,
            text_timestamps,
        }
    }

    /// The columns of its batches.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.output
    }

    /// The format's own schema: what a record holds.
    fn format_schema(&self) -> &SchemaRef {
        match &self.format {
            TextFormat::Csv { schema, .. } | TextFormat::Json { schema } => schema,
        }
    }

    /// A decoder of at most `records` records at a time, reading them as `schema` (the
    /// format's, or the one that reads timestamps as text).
    fn build(&self, schema: &SchemaRef, records: usize) -> Result<ArrowDecoder, ArrowError> {
        let batch_size = records.max(1);
        Ok(match &self.format {
            TextFormat::Csv {
                delimiter, columns, ..
            } => {
                let builder = arrow::csv::ReaderBuilder::new(schema.clone())
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .with_batch_size(batch_size);
                let builder = match columns {
                    Some(columns) => builder.with_projection(columns.clone()),
                    None => builder,
                };
                ArrowDecoder::Csv(Box::new(builder.build_decoder()))
            }
            TextFormat::Json { .. } => ArrowDecoder::Json(
                arrow::json::ReaderBuilder::new(schema.clone())
                    .with_batch_size(batch_size)
                    .build_decoder()?,
            ),
        })
    }

    /// Decodes `bytes`, which hold at most `records` whole records, with a decoder of its own.
    fn decode(&self, bytes: &[u8], records: usize) -> Result<RecordBatch, ArrowError> {
        let batch = self
            .build(self.format_schema(), records)?
            .decode_all(bytes)?;
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema().clone())))
    }

    /// Decodes `bytes`, which hold `records` whole records, with the decoder kept (made
    /// anew when it is too small, and dropped after it failed, or gave another number of
    /// rows than records: it may hold part of a record). An error sends the records to be
    /// decoded one by one.
    fn decode_kept(&mut self, bytes: &[u8], records: usize) -> Result<RecordBatch, ArrowError> {
        let read_as = match &self.text_timestamps {
            Some((schema, _)) => schema.clone(),
            None => self.format_schema().clone(),
        };
        // The CSV machine drops a byte-order mark only before it has read anything.
        if bytes.starts_with(b"\xEF\xBB\xBF") {
            self.kept = None;
        }
        let mut kept = match self.kept.take() {
            Some((decoder, room)) if room >= records => (decoder, room),
            _ => (self.build(&read_as, records)?, records),
        };
        let batch = kept.0.decode_all(bytes)?;
        let rows = batch.as_ref().map_or(0, RecordBatch::num_rows);
        if rows != records {
            return Err(ArrowError::ParseError(format!(
                "{records} records gave {rows} rows"
            )));
        }
        self.kept = Some(kept);
        let Some(batch) = batch else {
            return Ok(RecordBatch::new_empty(self.schema().clone()));
        };
        let Some((_, timestamps)) = &self.text_timestamps else {
            return Ok(batch);
        };
        let mut columns = batch.columns().to_vec();
        for (i, unit) in timestamps {
            columns[*i] = parse_timestamps(columns[*i].as_string::<i32>(), *unit)?;
        }
        RecordBatch::try_new(self.schema().clone(), columns)
    }

    /// Decodes the records at `ranges` of `buf` (contiguous, in order). Returns the valid
    /// rows, and the index into `ranges` of each record that was not, with the reason.
    pub(crate) fn decode_each(
        &mut self,
        buf: &[u8],
        ranges: &[Range<usize>],
    ) -> Result<(RecordBatch, Vec<(usize, String)>), ArrowError> {
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            return Ok((RecordBatch::new_empty(self.schema().clone()), vec![]));
        };
        if let Ok(batch) = self.decode_kept(&buf[first.start..last.end], ranges.len()) {
            return Ok((batch, vec![]));
        }
        let mut good = Vec::with_capacity(ranges.len());
        let mut bad = Vec::new();
        for (i, range) in ranges.iter().enumerate() {
            match self.decode(&buf[range.clone()], 1) {
                Ok(batch) => good.push(batch),
                Err(e) => bad.push((i, without_relative_line(&e.to_string()))),
            }
        }
        let batch = arrow::compute::concat_batches(self.schema(), &good)?;
        Ok((batch, bad))
    }

    /// Decodes the records at `ranges` of `buf` (contiguous, in order), the first starting on
    /// line `first_line` of `file`. Returns the valid rows and the records that were not.
    pub(crate) fn decode_records(
        &mut self,
        buf: &[u8],
        ranges: &[Range<usize>],
        file: &str,
        first_line: u64,
    ) -> Result<(RecordBatch, Vec<BadRecord>), ArrowError> {
        let (batch, failed) = self.decode_each(buf, ranges)?;
        if failed.is_empty() {
            return Ok((batch, vec![]));
        }
        let mut bad = Vec::with_capacity(failed.len());
        let mut line = first_line;
        let mut failed = failed.into_iter().peekable();
        for (i, range) in ranges.iter().enumerate() {
            let bytes = &buf[range.clone()];
            if let Some((_, reason)) = failed.next_if(|(f, _)| *f == i) {
                bad.push(BadRecord {
                    file: file.to_string(),
                    // After a `\r` terminator, the `\n` opens the next record's bytes.
                    line: line + count_lines(leading_blank(bytes)),
                    reason,
                    raw: String::from_utf8_lossy(bytes)
                        .trim_matches(['\r', '\n'])
                        .to_string(),
                });
            }
            line += count_lines(bytes);
        }
        Ok((batch, bad))
    }
}

/// The blank bytes (`\n` and such) a record starts with.
fn leading_blank(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// Number of line terminators in `bytes`.
pub(crate) fn count_lines(bytes: &[u8]) -> u64 {
    // Counted in bytes, 255 at most at a time so that none overflows: LLVM compares and
    // adds 16 or 32 bytes a step. (Counted into a usize per byte, it took two bytes a step,
    // 6 % of a CSV aggregation's CPU.)
    bytes
        .chunks(255)
        .map(|chunk| u64::from(chunk.iter().map(|&b| u8::from(b == b'\n')).sum::<u8>()))
        .sum()
}

/// Arrow numbers lines from the start of what it was given (here, one record), which would
/// contradict the file line we report; drop its "for line N" / "at line N".
fn without_relative_line(message: &str) -> String {
    let mut out = message.to_string();
    for marker in [" for line ", " at line "] {
        if let Some(start) = out.find(marker) {
            let digits = out[start + marker.len()..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(out.len(), |i| start + marker.len() + i);
            out.replace_range(start..digits, "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn split_all(splitter: &mut RecordSplitter, buf: &[u8]) -> Vec<Range<usize>> {
        let mut ranges = vec![];
        let mut pos = 0;
        while let Some(len) = splitter.next_record(&buf[pos..]) {
            ranges.push(pos..pos + len);
            pos += len;
        }
        ranges
    }

    #[test]
    fn csv_records_may_span_lines_inside_quotes() {
        let mut splitter = RecordSplitter::csv(&CsvOptions::default());
        let buf = b"1,\"a\nb\"\n2,c\n3,partial";
        let ranges = split_all(&mut splitter, buf);
        assert_eq!(ranges, vec![0..8, 8..12]);
        assert_eq!(count_lines(&buf[0..8]), 2);
    }

    /// The quick path for plain lines splits as the CSV machine alone does: quotes, CRLF,
    /// blank lines and lone carriage returns included.
    #[test]
    fn csv_lines_split_as_the_csv_machine_splits_them() {
        let machine = |buf: &[u8]| {
            let mut reader = csv_core::Reader::new();
            let (mut fields, mut ends) = (vec![0; 1024], vec![0; 64]);
            let mut ranges = vec![];
            let mut pos = 0;
            loop {
                reader.reset();
                match reader.read_record(&buf[pos..], &mut fields, &mut ends) {
                    (csv_core::ReadRecordResult::Record, consumed, _, _) => {
                        ranges.push(pos..pos + consumed);
                        pos += consumed;
                    }
                    _ => return ranges,
                }
            }
        };
        for buf in [
            &b"a,b\n1,2\n3,4\n"[..],
            b"a,b\r\n1,2\r\n3,4\r\npartial",
            b"1,\"x\ny\"\n2,z\n\n\n3,w\n",
            b"1,a\r2,b\n3,c\n",
            b"\"q\",1\n2,\"r,s\"\n",
        ] {
            // Where a CRLF's line feed goes (this record's end, or the next one's start)
            // differs; the records do not.
            let records = |ranges: Vec<Range<usize>>| -> Vec<String> {
                ranges
                    .into_iter()
                    .map(|r| {
                        String::from_utf8_lossy(&buf[r])
                            .trim_matches(['\r', '\n'])
                            .to_string()
                    })
                    .filter(|r| !r.is_empty())
                    .collect()
            };
            let split = split_all(&mut RecordSplitter::csv(&CsvOptions::default()), buf);
            assert_eq!(
                records(split),
                records(machine(buf)),
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn lines_split_on_newline_only() {
        let ranges = split_all(&mut RecordSplitter::lines(), b"{}\n{}\n{");
        assert_eq!(ranges, vec![0..3, 3..6]);
    }

    /// A decoder of CSV records `a BIGINT, b VARCHAR`.
    fn number_and_text_decoder() -> RecordDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        RecordDecoder::new(TextFormat::Csv {
            columns: None,
            schema,
            delimiter: b',',
        })
    }

    #[test]
    fn bad_records_are_isolated_with_their_file_line() {
        let mut decoder = number_and_text_decoder();
        let buf = b"1,x\r\nnope,y\r\n3,z\n4\n5,w\n";
        let ranges = split_all(&mut RecordSplitter::csv(&CsvOptions::default()), buf);
        let (batch, bad) = decoder
            .decode_records(buf, &ranges, "file:///t.csv", 2)
            .unwrap();
        let a = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(a.values().to_vec(), vec![1, 3, 5]);
        assert_eq!(bad.len(), 2);
        assert_eq!((bad[0].line, bad[0].raw.as_str()), (3, "nope,y"));
        assert!(bad[0].reason.contains("nope"), "{}", bad[0].reason);
        assert_eq!((bad[1].line, bad[1].raw.as_str()), (5, "4"));
        assert!(!bad[1].reason.contains("line"), "{}", bad[1].reason);
    }

    #[test]
    fn json_lines_with_wrong_types_or_syntax_are_rejected() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let mut decoder = RecordDecoder::new(TextFormat::Json { schema });
        let buf = b"{\"a\":1}\n{\"a\":\"x\"}\n{\"a\":\n{\"a\":4}\n";
        let ranges = split_all(&mut RecordSplitter::lines(), buf);
        let (batch, bad) = decoder.decode_records(buf, &ranges, "f", 1).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn timestamps_read_as_text_keep_nulls_and_arrows_errors() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let mut decoder = RecordDecoder::new(TextFormat::Csv {
            columns: None,
            schema: schema.clone(),
            delimiter: b',',
        });
        let buf = b"1,2026-03-02 09:30:00.001\n2,\n3,2026-03-02T09:30:00Z\n4,soon\n";
        let ranges = split_all(&mut RecordSplitter::csv(&CsvOptions::default()), buf);
        let (batch, bad) = decoder.decode_records(buf, &ranges, "f", 1).unwrap();
        assert_eq!(batch.schema(), schema);
        let ts = batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_772_443_800_001);
        assert!(ts.is_null(1));
        assert_eq!(ts.value(2), 1_772_443_800_000);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4);
        assert!(bad[0].reason.contains("soon"), "{}", bad[0].reason);
    }

    #[test]
    fn the_decoder_kept_drops_each_files_byte_order_mark_and_no_half_record_stays_in_it() {
        // Text first: a mark left in it would be no error, only a wrong value.
        let mut decoder = RecordDecoder::new(TextFormat::Csv {
            columns: None,
            schema: Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)])),
            delimiter: b',',
        });
        let mut splitter = RecordSplitter::csv(&CsvOptions::default());
        let mut texts = |decoder: &mut RecordDecoder, buf: &[u8]| {
            let ranges = split_all(&mut splitter, buf);
            let (batch, _) = decoder.decode_records(buf, &ranges, "f", 1).unwrap();
            batch
                .column(0)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&mut decoder, b"x\n"), ["x"]);
        assert_eq!(texts(&mut decoder, b"\xEF\xBB\xBFy\nz\n"), ["y", "z"]);
        let mut decoder = number_and_text_decoder();
        // A message that opens a quote and never closes it leaves nothing behind.
        let open = b"4,\"never closed\n";
        let ranges = split_all(&mut RecordSplitter::lines(), open);
        let _ = decoder.decode_each(open, &ranges);
        let next = b"5,w\n";
        let ranges = split_all(&mut RecordSplitter::lines(), next);
        let (batch, bad) = decoder.decode_each(next, &ranges).unwrap();
        assert!(bad.is_empty());
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "w");
    }

    #[test]
    fn lines_are_counted_across_the_counting_chunks() {
        for len in [0, 1, 254, 255, 256, 600, 1000] {
            let bytes: Vec<u8> = (0..len)
                .map(|i| if i % 3 == 0 { b'\n' } else { b'x' })
                .collect();
            let expected = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count_lines(&bytes), expected, "{len} bytes");
        }
        assert_eq!(count_lines(&[b'\n'; 1000]), 1000);
    }

    #[test]
    fn the_decoder_kept_reads_batch_after_batch_and_after_a_bad_one() {
        let mut decoder = number_and_text_decoder();
        let mut splitter = RecordSplitter::csv(&CsvOptions::default());
        // Two records, then three with a bad one between, then four: more than the decoder
        // was first made for.
        let batches: [&[u8]; 3] = [b"1,a\n2,b\n", b"3,c\nx,d\n5,e\n", b"6,f\n7,g\n8,h\n9,i\n"];
        let mut got = Vec::new();
        let mut bad = 0;
        for buf in batches {
            let ranges = split_all(&mut splitter, buf);
            let (batch, rejected) = decoder.decode_records(buf, &ranges, "f", 1).unwrap();
            got.extend(
                batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec(),
            );
            bad += rejected.len();
        }
        assert_eq!(got, vec![1, 2, 3, 5, 6, 7, 8, 9]);
        assert_eq!(bad, 1);
    }
}
