//! Message formats: how one Kafka message's bytes become one row, and back.
//!
//! A source hands a whole micro-batch of messages to a [`MessageDecoder`], which decodes them
//! straight into Arrow builders (arrow's JSON and CSV decoders, arrow-avro, and protobuf
//! through prost-reflect's serde support into arrow's JSON decoder: never a per-message
//! `serde_json::Value`). Only when that fails are the messages decoded one at a time, so a
//! malformed message is reported with its index and every valid one around it is kept.

mod avro;
mod protobuf;
mod registry;

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, RecordBatch};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

pub use avro::AvroFormat;
pub use protobuf::ProtobufFormat;
pub use registry::SchemaRegistry;

use crate::error::{ConnectorError, Result};
use crate::records::{RecordDecoder, RecordSplitter, TextFormat};

/// How a topic's message values are encoded.
#[derive(Debug, Clone)]
pub enum MessageFormat {
    /// One JSON object per message.
    Json,
    /// One CSV record per message (no header), with this delimiter.
    Csv { delimiter: u8 },
    /// Avro binary, plain or in the Confluent wire format.
    Avro(AvroFormat),
    /// Protobuf messages of one type.
    Protobuf(ProtobufFormat),
    /// The bytes as they are, in one `value` column.
    Raw,
}

impl MessageFormat {
    /// The format's name in SQL options.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv { .. } => "csv",
            Self::Avro(_) => "avro",
            Self::Protobuf(_) => "protobuf",
            Self::Raw => "raw",
        }
    }

    /// Whether a value's columns decode apart, so that those not asked for are skipped
    /// (JSON, CSV); Avro, Protobuf and raw values are decoded whole.
    pub fn decodes_columns_apart(&self) -> bool {
        matches!(self, Self::Json | Self::Csv { .. })
    }

    /// The columns the format itself defines (Avro, Protobuf, raw); JSON and CSV take theirs
    /// from a declared or inferred schema.
    pub fn own_schema(&self) -> Option<SchemaRef> {
        match self {
            Self::Avro(avro) => Some(avro.schema()),
            Self::Protobuf(protobuf) => Some(protobuf.schema()),
            Self::Raw => Some(raw_schema()),
            Self::Json | Self::Csv { .. } => None,
        }
    }

    /// A decoder of messages into rows of `schema`, decoding only its `columns` (`None`:
    /// all). JSON skips the other fields and CSV does not parse them; Avro, Protobuf and raw
    /// values are decoded whole and the other columns dropped.
    pub(crate) fn decoder(
        &self,
        schema: SchemaRef,
        columns: Option<&[usize]>,
        batch_size: usize,
    ) -> Result<MessageDecoder> {
        let projected = || -> Result<SchemaRef> {
            Ok(match columns {
                Some(columns) => Arc::new(
                    schema
                        .project(columns)
                        .map_err(|e| ConnectorError::arrow("projecting a topic's columns", e))?,
                ),
                None => schema.clone(),
            })
        };
        let (kind, dropped) = match self {
            Self::Json => (
                DecoderKind::Text {
                    decoder: Box::new(RecordDecoder::new(TextFormat::Json {
                        schema: projected()?,
                    })),
                    separator: b'\n',
                },
                None,
            ),
            Self::Csv { delimiter } => (
                DecoderKind::Text {
                    decoder: Box::new(RecordDecoder::new(TextFormat::Csv {
                        schema: schema.clone(),
                        delimiter: *delimiter,
                        columns: columns.map(<[usize]>::to_vec),
                    })),
                    separator: b'\n',
                },
                None,
            ),
            Self::Avro(avro) => (
                DecoderKind::Avro(Box::new(avro.decoder(batch_size)?)),
                columns,
            ),
            Self::Protobuf(protobuf) => (
                DecoderKind::Protobuf(Box::new(protobuf.decoder(batch_size)?)),
                columns,
            ),
            Self::Raw => (DecoderKind::Raw, columns),
        };
        Ok(MessageDecoder {
            kind,
            dropped: dropped.map(<[usize]>::to_vec),
        })
    }

    /// An encoder of rows of `schema` into message values.
    pub(crate) fn encoder(&self, schema: SchemaRef, topic: &str) -> Result<MessageEncoder> {
        Ok(match self {
            Self::Json => MessageEncoder::Json,
            Self::Csv { delimiter } => MessageEncoder::Csv {
                delimiter: *delimiter,
            },
            Self::Avro(avro) => MessageEncoder::Avro(avro.encoder(schema, topic)?),
            Self::Protobuf(protobuf) => MessageEncoder::Protobuf(protobuf.clone()),
            Self::Raw => MessageEncoder::Raw,
        })
    }
}

fn raw_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "value",
        DataType::Binary,
        true,
    )]))
}

/// Messages of one micro-batch: their bytes back to back, and where each one is.
#[derive(Debug, Default)]
pub(crate) struct MessageBuffer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ranges: Vec<Range<usize>>,
}

impl MessageBuffer {
    /// Appends one message; text formats get a separator so arrow's decoders see records.
    pub(crate) fn push(&mut self, payload: &[u8], separator: Option<u8>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        self.ranges.push(start..self.bytes.len());
        if let Some(separator) = separator {
            self.bytes.push(separator);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.ranges.clear();
    }

    pub(crate) fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.ranges[i].clone()]
    }
}

/// Decodes the messages of a micro-batch into rows.
pub(crate) struct MessageDecoder {
    kind: DecoderKind,
    /// The columns kept of what a format that decodes whole values gives.
    dropped: Option<Vec<usize>>,
}

enum DecoderKind {
    Text {
        decoder: Box<RecordDecoder>,
        separator: u8,
    },
    Avro(Box<avro::AvroDecoder>),
    Protobuf(Box<protobuf::ProtobufDecoder>),
    Raw,
}

/// The rows decoded from a micro-batch, and the messages that could not be (by index).
pub(crate) type Decoded = (RecordBatch, Vec<(usize, String)>);

impl MessageDecoder {
    /// The byte to put after every message in the buffer, if the format needs one.
    pub(crate) fn separator(&self) -> Option<u8> {
        match &self.kind {
            DecoderKind::Text { separator, .. } => Some(*separator),
            _ => None,
        }
    }

    /// Decodes the messages; the raw format takes their bytes (the buffer is cleared after).
    pub(crate) fn decode(&mut self, messages: &mut MessageBuffer) -> Result<Decoded> {
        let decoded = match &mut self.kind {
            DecoderKind::Text { decoder, .. } => {
                // Each range plus its separator is one record for arrow's decoder.
                let ranges: Vec<_> = messages.ranges.iter().map(|r| r.start..r.end + 1).collect();
                decoder.decode_each(&messages.bytes, &ranges)
            }
            DecoderKind::Avro(decoder) => decoder.decode(messages),
            DecoderKind::Protobuf(decoder) => decoder.decode(messages),
            DecoderKind::Raw => raw_values(messages).and_then(|values| {
                RecordBatch::try_new(raw_schema(), vec![values]).map(|batch| (batch, vec![]))
            }),
        };
        let decoded = match (decoded, &self.dropped) {
            (Ok((batch, bad)), Some(columns)) => batch.project(columns).map(|batch| (batch, bad)),
            (decoded, _) => decoded,
        };
        decoded.map_err(|e| ConnectorError::arrow("decoding messages", e))
    }
}

/// The messages, back to back with no separator, become a binary array's values as they are.
fn raw_values(messages: &mut MessageBuffer) -> std::result::Result<ArrayRef, ArrowError> {
    let too_big = || ArrowError::InvalidArgumentError("a micro-batch over 2 GiB".into());
    let ends = messages
        .ranges
        .iter()
        .map(|r| i32::try_from(r.end).map_err(|_| too_big()));
    let offsets: Vec<i32> = std::iter::once(Ok(0))
        .chain(ends)
        .collect::<std::result::Result<_, _>>()?;
    let values = Buffer::from_vec(std::mem::take(&mut messages.bytes));
    Ok(Arc::new(BinaryArray::try_new(
        OffsetBuffer::new(offsets.into()),
        values,
        None,
    )?))
}

/// Encodes rows into message values, one per row.
pub(crate) enum MessageEncoder {
    Json,
    Csv { delimiter: u8 },
    Avro(avro::AvroEncoder),
    Protobuf(ProtobufFormat),
    Raw,
}

impl MessageEncoder {
    /// One value per row of `batch`.
    pub(crate) fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let context = |e| ConnectorError::arrow("encoding messages", e);
        match self {
            Self::Json => json_lines(batch).map_err(context),
            Self::Csv { delimiter } => {
                let mut text = Vec::new();
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .build(&mut text);
                writer.write(batch).map_err(context)?;
                drop(writer);
                // Quoted fields may hold line breaks: split where records end, not on lines.
                let mut splitter = RecordSplitter::csv(&crate::CsvOptions {
                    delimiter: *delimiter,
                    has_header: false,
                });
                let mut values = Vec::with_capacity(batch.num_rows());
                let mut pos = 0;
                while let Some(len) = splitter.next_record(&text[pos..]) {
                    let record = &text[pos..pos + len];
                    values.push(record.trim_ascii_end().to_vec());
                    pos += len;
                }
                Ok(values)
            }
            Self::Avro(encoder) => encoder.encode(batch),
            Self::Protobuf(format) => format.encode(batch),
            Self::Raw => {
                let column = batch.column(0);
                let cast = arrow::compute::cast(column, &DataType::Binary).map_err(context)?;
                let values = arrow::array::AsArray::as_binary::<i32>(&cast);
                Ok(values
                    .iter()
                    .map(|v| v.unwrap_or_default().to_vec())
                    .collect())
            }
        }
    }
}

/// One JSON object per row (arrow's writer escapes line breaks inside strings).
pub(crate) fn json_lines(batch: &RecordBatch) -> std::result::Result<Vec<Vec<u8>>, ArrowError> {
    let mut text = Vec::new();
    // Nulls written out, as the file sink does.
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(&mut text);
    writer.write(batch)?;
    writer.finish()?;
    Ok(text
        .split(|&b| b == b'\n')
        .take(batch.num_rows())
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn trades() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("qty", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["A", "B,\"quoted\"\nline", "C"])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap()
    }

    /// Encodes `batch`, puts `garbage` in as the second message, and decodes it all again.
    fn round_trip(format: &MessageFormat, batch: &RecordBatch, garbage: &[u8]) -> Decoded {
        let mut encoder = format.encoder(batch.schema(), "t").unwrap();
        let values = encoder.encode(batch).unwrap();
        assert_eq!(values.len(), batch.num_rows());
        let mut decoder = format.decoder(batch.schema(), None, 16).unwrap();
        let mut messages = MessageBuffer::default();
        for (i, value) in values.iter().enumerate() {
            messages.push(value, decoder.separator());
            if i == 0 {
                messages.push(garbage, decoder.separator());
            }
        }
        decoder.decode(&mut messages).unwrap()
    }

    fn assert_round_trip(format: MessageFormat, garbage: &[u8]) {
        let batch = trades();
        let (decoded, bad) = round_trip(&format, &batch, garbage);
        assert_eq!(decoded.columns(), batch.columns(), "{}", format.name());
        assert_eq!(bad.len(), 1, "{}", format.name());
        assert_eq!(bad[0].0, 1, "{}: {}", format.name(), bad[0].1);
    }

    #[test]
    fn json_and_csv_keep_every_valid_message_around_a_bad_one() {
        assert_round_trip(MessageFormat::Json, b"{\"qty\": \"lots\"}");
        assert_round_trip(MessageFormat::Csv { delimiter: b',' }, b"D,not a number");
    }

    #[test]
    fn raw_messages_become_the_binary_values_as_they_are() {
        let mut messages = MessageBuffer::default();
        for value in [&b"ab"[..], b"", b"\x00\xff"] {
            messages.push(value, None);
        }
        let (batch, bad) = MessageFormat::Raw
            .decoder(raw_schema(), None, 8)
            .unwrap()
            .decode(&mut messages)
            .unwrap();
        assert!(bad.is_empty());
        let values = arrow::array::AsArray::as_binary::<i32>(batch.column(0));
        let values: Vec<&[u8]> = values.iter().map(Option::unwrap).collect();
        assert_eq!(values, vec![&b"ab"[..], b"", b"\x00\xff"]);
    }

    #[test]
    fn avro_keeps_every_valid_message_around_a_bad_one() {
        let schema = r#"{"type":"record","name":"T","fields":[
            {"name":"symbol","type":["null","string"]},{"name":"qty","type":["null","long"]}]}"#;
        let format = MessageFormat::Avro(AvroFormat::plain(Some(schema.into())).unwrap());
        // A union branch that does not exist.
        assert_round_trip(format, &[0x08]);
    }

    #[test]
    fn protobuf_keeps_every_valid_message_around_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let proto = dir.path().join("t.proto");
        std::fs::write(
            &proto,
            "syntax = \"proto3\"; package p; message T { string symbol = 1; int64 qty = 2; }",
        )
        .unwrap();
        let format = MessageFormat::Protobuf(ProtobufFormat::compile(&proto, "p.T").unwrap());
        // Field 1 says 16 bytes follow; one does.
        assert_round_trip(format, &[0x0a, 0x10, b'A']);
        let missing = ProtobufFormat::compile(&proto, "p.Nope").unwrap_err();
        assert!(missing.to_string().contains("it has p.T"), "{missing}");
    }

    #[test]
    fn a_message_type_that_contains_itself_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let proto = dir.path().join("tree.proto");
        std::fs::write(
            &proto,
            "syntax = \"proto3\"; message Node { Node child = 1; }",
        )
        .unwrap();
        let err = ProtobufFormat::compile(&proto, "Node").unwrap_err();
        assert!(err.to_string().contains("contains itself"), "{err}");
    }

    /// The rules of docs/protobuf-evolution.md, one by one: a message written with one
    /// version of a `.proto` and read with another.
    mod protobuf_evolution {
        use super::*;
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;

        const V1: &str = "syntax = \"proto3\"; package m;
            enum Venue { VENUE_UNSPECIFIED = 0; XNAS = 1; XNYS = 2; }
            message Trade { string symbol = 1; string price = 2; int64 qty = 3; Venue venue = 4;
                            string condition = 7; }";
        const V2: &str = "syntax = \"proto3\"; package m;
            enum Venue { VENUE_UNSPECIFIED = 0; XNAS = 1; XNYS = 2; IEXG = 4; }
            enum Side { SIDE_UNSPECIFIED = 0; BUY = 1; SELL = 2; }
            message Trade { string symbol = 1; string price = 2; int64 qty = 3; Venue venue = 4;
                            string condition = 7 [deprecated = true]; Side aggressor = 8;
                            optional string note = 9; }";

        fn format(dir: &tempfile::TempDir, name: &str, text: &str) -> ProtobufFormat {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            ProtobufFormat::compile(&path, "m.Trade").unwrap()
        }

        /// Rows of `columns` (text values, `None` for null) encoded with `writer`.
        fn written(writer: &ProtobufFormat, columns: &[(&str, Vec<Option<&str>>)]) -> Vec<Vec<u8>> {
            let schema = Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|(name, _)| Field::new(*name, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ));
            let arrays = columns
                .iter()
                .map(|(_, values)| Arc::new(StringArray::from(values.clone())) as ArrayRef)
                .collect();
            writer
                .encode(&RecordBatch::try_new(schema, arrays).unwrap())
                .unwrap()
        }

        fn read(reader: &ProtobufFormat, messages: &[Vec<u8>]) -> Decoded {
            let mut buffer = MessageBuffer::default();
            for message in messages {
                buffer.push(message, None);
            }
            reader.decoder(16).unwrap().decode(&buffer).unwrap()
        }

        fn text(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
            let column = batch.column_by_name(column).unwrap();
            let column = arrow::compute::cast(column, &DataType::Utf8).unwrap();
            column
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(String::from))
                .collect()
        }

        #[test]
        fn an_older_reader_skips_added_fields_and_reads_a_new_enum_value_as_its_number() {
            let dir = tempfile::tempdir().unwrap();
            let (v1, v2) = (format(&dir, "v1.proto", V1), format(&dir, "v2.proto", V2));
            let messages = written(
                &v2,
                &[
                    ("symbol", vec![Some("AAPL"), Some("MSFT")]),
                    ("price", vec![Some("229.51"), Some("415.10")]),
                    ("qty", vec![Some("100"), Some("5")]),
                    ("venue", vec![Some("IEXG"), Some("XNAS")]),
                    ("aggressor", vec![Some("BUY"), Some("SELL")]),
                ],
            );
            let (batch, bad) = read(&v1, &messages);
            assert!(bad.is_empty(), "{bad:?}");
            assert!(batch.column_by_name("aggressor").is_none());
            assert_eq!(
                text(&batch, "symbol"),
                [Some("AAPL".into()), Some("MSFT".into())]
            );
            assert_eq!(
                text(&batch, "venue"),
                [Some("4".into()), Some("XNAS".into())]
            );
        }

        #[test]
        fn a_newer_reader_reads_fields_an_older_writer_never_set_as_defaults_or_null() {
            let dir = tempfile::tempdir().unwrap();
            let (v1, v2) = (format(&dir, "v1.proto", V1), format(&dir, "v2.proto", V2));
            let messages = written(
                &v1,
                &[
                    ("symbol", vec![Some("AAPL")]),
                    ("price", vec![Some("229.51")]),
                    ("condition", vec![Some("F")]),
                ],
            );
            let (batch, bad) = read(&v2, &messages);
            assert!(bad.is_empty(), "{bad:?}");
            // proto3 fields hold their default: 0, the first enum value; a deprecated field
            // is read like any other; an `optional` field that was never set is null.
            assert_eq!(
                batch
                    .column_by_name("qty")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .value(0),
                0
            );
            assert_eq!(text(&batch, "venue"), [Some("VENUE_UNSPECIFIED".into())]);
            assert_eq!(text(&batch, "aggressor"), [Some("SIDE_UNSPECIFIED".into())]);
            assert_eq!(text(&batch, "condition"), [Some("F".into())]);
            assert_eq!(text(&batch, "note"), [None]);
        }

        #[test]
        fn declared_columns_pick_and_type_fields_and_a_field_changed_on_the_wire_is_a_bad_message()
        {
            let dir = tempfile::tempdir().unwrap();
            let v2 = format(&dir, "v2.proto", V2);
            let columns = Arc::new(Schema::new(vec![
                Field::new("symbol", DataType::Utf8, true),
                Field::new("price", DataType::Decimal128(18, 6), true),
            ]));
            let typed = v2.clone().with_columns(columns.clone()).unwrap();
            // price, field 2, as a number instead of text: a writer that broke the rules.
            let broken_proto = "syntax = \"proto3\"; package m; message Trade { string symbol = 1; int64 price = 2; }";
            let broken = format(&dir, "broken.proto", broken_proto);
            let mut messages = written(
                &v2,
                &[
                    ("symbol", vec![Some("AAPL")]),
                    ("price", vec![Some("229.51")]),
                ],
            );
            messages.extend(written(
                &broken,
                &[("symbol", vec![Some("MSFT")]), ("price", vec![Some("415")])],
            ));
            let (batch, bad) = read(&typed, &messages);
            assert_eq!(batch.schema(), columns);
            assert_eq!(text(&batch, "price"), [Some("229.510000".into())]);
            assert_eq!(bad.len(), 1, "{bad:?}");
            assert_eq!(bad[0].0, 1);
            assert!(bad[0].1.contains("not a m.Trade"), "{}", bad[0].1);
            let unknown = Arc::new(Schema::new(vec![Field::new("prize", DataType::Utf8, true)]));
            let error = v2.with_columns(unknown).unwrap_err().to_string();
            assert!(
                error.contains(
                    "protobuf message 'm.Trade' has no field 'prize' (it has symbol, price"
                ),
                "{error}"
            );
        }

        #[test]
        fn a_value_that_does_not_fit_its_declared_column_is_one_bad_message_and_typed_rows_write_back()
         {
            let dir = tempfile::tempdir().unwrap();
            let v2 = format(&dir, "v2.proto", V2);
            let columns = Arc::new(Schema::new(vec![
                Field::new("symbol", DataType::Utf8, true),
                Field::new("price", DataType::Decimal128(18, 6), true),
            ]));
            let typed = v2.clone().with_columns(columns).unwrap();
            // An unset price is "", which is no decimal; so is "N/A".
            let messages = written(
                &v2,
                &[
                    (
                        "symbol",
                        vec![Some("AAPL"), Some("MSFT"), Some("NVDA"), Some("TSLA")],
                    ),
                    (
                        "price",
                        vec![Some("229.51"), None, Some("N/A"), Some("248.9")],
                    ),
                ],
            );
            let (batch, bad) = read(&typed, &messages);
            assert_eq!(
                text(&batch, "symbol"),
                [Some("AAPL".into()), Some("TSLA".into())]
            );
            assert_eq!(
                text(&batch, "price"),
                [Some("229.510000".into()), Some("248.900000".into())]
            );
            assert_eq!(
                bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                [1, 2],
                "{bad:?}"
            );
            assert!(bad[0].1.contains("does not fit its column"), "{}", bad[0].1);
            // INSERT INTO such a source writes its typed rows back as the message's fields.
            let (round_trip, bad) = read(&typed, &typed.encode(&batch).unwrap());
            assert!(bad.is_empty(), "{bad:?}");
            assert_eq!(round_trip, batch);
        }
    }
}
