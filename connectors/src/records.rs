//! Splitting text files into records and decoding them into batches, with per-record errors.
//!
//! The fast path hands a whole micro-batch of records to arrow's decoder. Only when that fails
//! are the records decoded one by one, so that a malformed record is found with its line and
//! every valid record around it is kept.

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::dead_letter::{BadRecord, DeadLetterWriter};
use crate::file::format::CsvOptions;
use crate::kafka::DeadLetterTopic;

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
        let line = memchr::memchr(b'\n', buf);
        match self {
            Self::Lines => line.map(|i| i + 1),
            // A line without a quote or a carriage return inside is one whole record: found
            // without running the CSV machine over it (the decoder parses it anyway).
            Self::Csv { .. }
                if line.is_some_and(|end| {
                    let text = &buf[..end];
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    !text.is_empty() && memchr::memchr2(b'"', b'\r', text).is_none()
                }) =>
            {
                line.map(|i| i + 1)
            }
            Self::Csv {
                reader,
                fields,
                ends,
            } => loop {
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
            },
        }
    }
}

/// Decodes record text into batches of a fixed schema.
#[derive(Debug, Clone)]
pub(crate) enum RecordDecoder {
    Csv { schema: SchemaRef, delimiter: u8 },
    Json { schema: SchemaRef },
}

impl RecordDecoder {
    pub(crate) fn schema(&self) -> &SchemaRef {
        match self {
            Self::Csv { schema, .. } | Self::Json { schema } => schema,
        }
    }

    /// Decodes `bytes`, which hold at most `records` whole records.
    fn decode(&self, bytes: &[u8], records: usize) -> Result<RecordBatch, ArrowError> {
        let batch_size = records.max(1);
        let batch = match self {
            Self::Csv { schema, delimiter } => {
                let mut decoder = arrow::csv::ReaderBuilder::new(schema.clone())
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .with_batch_size(batch_size)
                    .build_decoder();
                let mut read = 0;
                while read < bytes.len() {
                    let n = decoder.decode(&bytes[read..])?;
                    if n == 0 {
                        break;
                    }
                    read += n;
                }
                decoder.flush()?
            }
            Self::Json { schema } => {
                let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
                    .with_batch_size(batch_size)
                    .build_decoder()?;
                let mut read = 0;
                while read < bytes.len() {
                    let n = decoder.decode(&bytes[read..])?;
                    if n == 0 {
                        break;
                    }
                    read += n;
                }
                decoder.flush()?
            }
        };
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema().clone())))
    }

    /// Decodes the records at `ranges` of `buf` (contiguous, in order). Returns the valid
    /// rows, and the index into `ranges` of each record that was not, with the reason.
    pub(crate) fn decode_each(
        &self,
        buf: &[u8],
        ranges: &[Range<usize>],
    ) -> Result<(RecordBatch, Vec<(usize, String)>), ArrowError> {
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            return Ok((RecordBatch::new_empty(self.schema().clone()), vec![]));
        };
        if let Ok(batch) = self.decode(&buf[first.start..last.end], ranges.len()) {
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
        &self,
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
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
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
    use arrow::array::AsArray;
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

    #[test]
    fn bad_records_are_isolated_with_their_file_line() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let decoder = RecordDecoder::Csv {
            schema,
            delimiter: b',',
        };
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
        let decoder = RecordDecoder::Json { schema };
        let buf = b"{\"a\":1}\n{\"a\":\"x\"}\n{\"a\":\n{\"a\":4}\n";
        let ranges = split_all(&mut RecordSplitter::lines(), buf);
        let (batch, bad) = decoder.decode_records(buf, &ranges, "f", 1).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3]);
    }
}
