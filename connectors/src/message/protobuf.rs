//! Protobuf message values of one message type, compiled from `.proto` files at run time
//! (protox: no `protoc` needed) and read through prost-reflect.
//!
//! A message becomes a row through protobuf's JSON mapping, serialized by prost-reflect
//! straight into arrow's JSON decoder: field names as written in the `.proto`, enums by name,
//! 64-bit integers as numbers, `bytes` as base64 text, `google.protobuf.Timestamp` as a
//! timestamp, and every field present (proto3 defaults included).

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions,
};
use serde::Serialize;

use super::{Decoded, MessageBuffer};
use crate::error::{ConnectorError, Result};

const SERIALIZE: SerializeOptions = SerializeOptions::new()
    .stringify_64_bit_integers(false)
    .use_proto_field_name(true)
    .skip_default_fields(false);

/// The protobuf format of a source or sink: one message type.
#[derive(Debug, Clone)]
pub struct ProtobufFormat {
    message: MessageDescriptor,
    schema: SchemaRef,
}

impl ProtobufFormat {
    /// Compiles `file` (imports are looked up beside it) and takes the message type `message`
    /// (its full name, such as `shop.Trade`).
    pub fn compile(file: &Path, message: &str) -> Result<Self> {
        let folder = file.parent().unwrap_or(Path::new("."));
        let folder = if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        };
        let compile_error = |e: protox::Error| {
            ConnectorError::Config(format!("protobuf schema {}: {e}", file.display()))
        };
        let mut compiler = protox::Compiler::new([folder]).map_err(compile_error)?;
        compiler.include_imports(true);
        let name = file.file_name().map(Path::new).unwrap_or(file);
        compiler.open_file(name).map_err(compile_error)?;
        let pool = compiler.descriptor_pool();
        let descriptor = pool.get_message_by_name(message).ok_or_else(|| {
            let known: Vec<_> = pool
                .all_messages()
                .map(|m| m.full_name().to_string())
                .collect();
            ConnectorError::Config(format!(
                "protobuf schema {}: no message '{message}' (it has {})",
                file.display(),
                known.join(", ")
            ))
        })?;
        let fields = message_fields(&descriptor, &mut vec![]).map_err(|recursive| {
            ConnectorError::Config(format!(
                "protobuf schema {}: message '{recursive}' contains itself, which has no table form",
                file.display()
            ))
        })?;
        let schema = Arc::new(Schema::new(fields));
        Ok(Self {
            message: descriptor,
            schema,
        })
    }

    /// Rows of the declared `columns` instead of every field: each names a field of the
    /// message, and the field's value is read as the column's type (decimal text as a
    /// `DECIMAL`, a number as `VARCHAR`, ...). Fields not named are not built into columns.
    pub fn with_columns(mut self, columns: SchemaRef) -> Result<Self> {
        for column in columns.fields() {
            if self.message.get_field_by_name(column.name()).is_none() {
                let fields: Vec<_> = self
                    .message
                    .fields()
                    .map(|f| f.name().to_string())
                    .collect();
                return Err(ConnectorError::Config(format!(
                    "protobuf message '{}' has no field '{}' (it has {})",
                    self.message.full_name(),
                    column.name(),
                    fields.join(", ")
                )));
            }
        }
        self.schema = columns;
        Ok(self)
    }

    /// The Arrow columns of a row: one per field of the message, or the declared ones.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub(crate) fn decoder(&self, batch_size: usize) -> Result<ProtobufDecoder> {
        let json = json_decoder(&self.schema, batch_size)
            .map_err(|e| ConnectorError::arrow("building the protobuf decoder", e))?;
        Ok(ProtobufDecoder {
            message: self.message.clone(),
            schema: self.schema.clone(),
            batch_size,
            json,
        })
    }

    /// One encoded message per row; columns are matched to fields by name.
    pub(crate) fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let rows = self
            .in_json_form(batch)
            .and_then(|batch| super::json_lines(&batch))
            .map_err(|e| ConnectorError::arrow("encoding protobuf messages", e))?;
        let options = DeserializeOptions::new().deny_unknown_fields(false);
        rows.iter()
            .map(|row| {
                let mut json = serde_json::Deserializer::from_slice(row);
                DynamicMessage::deserialize_with_options(self.message.clone(), &mut json, &options)
                    .map(|message| message.encode_to_vec())
                    .map_err(|e| {
                        ConnectorError::Config(format!(
                            "a result row does not fit protobuf message '{}': {e}",
                            self.message.full_name()
                        ))
                    })
            })
            .collect()
    }

    /// The batch as protobuf's JSON mapping reads it: zone-less timestamps as UTC (a
    /// `google.protobuf.Timestamp` is RFC 3339 text, which needs a zone), and a column of a
    /// `string` field that is not text (a `DECIMAL` declared over decimal text) as text.
    fn in_json_form(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let mut fields = Vec::with_capacity(batch.num_columns());
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let text_field = self
                .message
                .get_field_by_name(field.name())
                .is_some_and(|f| f.kind() == Kind::String && !f.is_list());
            let json_type = match field.data_type() {
                DataType::Timestamp(unit, None) => {
                    Some(DataType::Timestamp(*unit, Some("UTC".into())))
                }
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => None,
                _ if text_field => Some(DataType::Utf8),
                _ => None,
            };
            match json_type {
                Some(json_type) => {
                    columns.push(arrow::compute::cast(column, &json_type)?);
                    fields.push(field.as_ref().clone().with_data_type(json_type));
                }
                None => {
                    columns.push(column.clone());
                    fields.push(field.as_ref().clone());
                }
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }
}

/// arrow's JSON decoder into `schema`, as protobuf's JSON mapping needs it.
fn json_decoder(
    schema: &SchemaRef,
    batch_size: usize,
) -> Result<arrow::json::reader::Decoder, ArrowError> {
    arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size)
        // An enum value the schema does not know (a newer writer's) comes as its number: it
        // reads as that number's text rather than failing the message.
        .with_coerce_primitive(true)
        .build_decoder()
}

/// A message serialized with our JSON mapping options.
struct Mapped(DynamicMessage);

impl Serialize for Mapped {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_with_options(serializer, &SERIALIZE)
    }
}

/// Decodes protobuf messages into rows.
pub(crate) struct ProtobufDecoder {
    message: MessageDescriptor,
    schema: SchemaRef,
    batch_size: usize,
    json: arrow::json::reader::Decoder,
}

impl ProtobufDecoder {
    pub(crate) fn decode(&mut self, messages: &MessageBuffer) -> Result<Decoded, ArrowError> {
        let mut rows = Vec::with_capacity(messages.len());
        // The message each row is of.
        let mut decoded = Vec::with_capacity(messages.len());
        let mut bad = Vec::new();
        for i in 0..messages.len() {
            match DynamicMessage::decode(self.message.clone(), messages.get(i)) {
                Ok(message) => {
                    rows.push(Mapped(message));
                    decoded.push(i);
                }
                Err(e) => bad.push((i, format!("not a {}: {e}", self.message.full_name()))),
            }
        }
        if let Ok(batch) = self.rows(&rows) {
            return Ok((batch, bad));
        }
        // A value that does not fit its declared column (decimal text that is no number): the
        // messages one by one, so that only the ones that do not fit are bad.
        let mut batches = Vec::with_capacity(rows.len());
        for (row, &i) in rows.iter().zip(&decoded) {
            match self.rows(std::slice::from_ref(row)) {
                Ok(batch) => batches.push(batch),
                Err(e) => bad.push((
                    i,
                    format!(
                        "a field of {} does not fit its column: {e}",
                        self.message.full_name()
                    ),
                )),
            }
        }
        bad.sort_by_key(|(i, _)| *i);
        Ok((arrow::compute::concat_batches(&self.schema, &batches)?, bad))
    }

    /// `rows` as a batch; after a failure the decoder starts afresh, holding nothing of them.
    fn rows(&mut self, rows: &[Mapped]) -> Result<RecordBatch, ArrowError> {
        let batch = self.json.serialize(rows).and_then(|()| self.json.flush());
        if batch.is_err() {
            self.json = json_decoder(&self.schema, self.batch_size)?;
        }
        Ok(batch?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }
}

/// The columns of `message`; `Err` names a message type that contains itself (`open` holds
/// the types being expanded).
fn message_fields(
    message: &MessageDescriptor,
    open: &mut Vec<String>,
) -> std::result::Result<Vec<Field>, String> {
    if open.iter().any(|name| name == message.full_name()) {
        return Err(message.full_name().to_string());
    }
    open.push(message.full_name().to_string());
    let fields = message
        .fields()
        .map(|field| Ok(Field::new(field.name(), field_type(&field, open)?, true)))
        .collect();
    open.pop();
    fields
}

fn field_type(
    field: &FieldDescriptor,
    open: &mut Vec<String>,
) -> std::result::Result<DataType, String> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field's kind is its entry message")
        };
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", kind_type(&key.kind(), open)?, false),
                Field::new("values", kind_type(&value.kind(), open)?, true),
            ])),
            false,
        );
        return Ok(DataType::Map(Arc::new(entries), false));
    }
    let item = kind_type(&field.kind(), open)?;
    Ok(if field.is_list() {
        DataType::List(Arc::new(Field::new("item", item, true)))
    } else {
        item
    })
}

fn kind_type(kind: &Kind, open: &mut Vec<String>) -> std::result::Result<DataType, String> {
    Ok(match kind {
        Kind::Double => DataType::Float64,
        Kind::Float => DataType::Float32,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => DataType::Int32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => DataType::Int64,
        Kind::Uint32 | Kind::Fixed32 => DataType::UInt32,
        Kind::Uint64 | Kind::Fixed64 => DataType::UInt64,
        Kind::Bool => DataType::Boolean,
        // Enums by name; bytes as base64 text (protobuf's JSON mapping).
        Kind::String | Kind::Bytes | Kind::Enum(_) => DataType::Utf8,
        Kind::Message(message) => match message.full_name() {
            "google.protobuf.Timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "google.protobuf.DoubleValue" => DataType::Float64,
            "google.protobuf.FloatValue" => DataType::Float32,
            "google.protobuf.Int64Value" => DataType::Int64,
            "google.protobuf.UInt64Value" => DataType::UInt64,
            "google.protobuf.Int32Value" => DataType::Int32,
            "google.protobuf.UInt32Value" => DataType::UInt32,
            "google.protobuf.BoolValue" => DataType::Boolean,
            "google.protobuf.StringValue" | "google.protobuf.BytesValue" => DataType::Utf8,
            _ => DataType::Struct(Fields::from(message_fields(message, open)?)),
        },
    })
}
