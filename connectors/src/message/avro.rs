//! Avro message values: plain binary datums of a given schema, or the Confluent wire format
//! (a zero byte, the 4-byte schema id, the datum) with schemas from a schema registry.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, Fingerprint, FingerprintAlgorithm, FingerprintStrategy, SCHEMA_METADATA_KEY,
    SchemaStore,
};
use arrow_avro::writer::format::{AvroBinaryFormat, AvroSoeFormat};
use arrow_avro::writer::{Encoder, WriterBuilder};

use super::registry::SchemaRegistry;
use super::{Decoded, MessageBuffer};
use crate::error::{ConnectorError, Result};

/// A plain datum is decoded as if framed with this registry id, so that one decoder serves
/// both layouts.
const PLAIN_ID: u32 = 0;
const PLAIN_PREFIX: [u8; 5] = [0; 5];

/// The Avro format of a source or sink.
#[derive(Debug, Clone)]
pub struct AvroFormat {
    /// The schema rows are read as (the reader schema), with its Arrow form.
    schema: Option<(AvroSchema, SchemaRef)>,
    /// With a registry: messages are in the Confluent wire format.
    registry: Option<(SchemaRegistry, String)>,
    /// Writer schemas known up front, by registry id.
    writers: Vec<(u32, AvroSchema)>,
}

impl AvroFormat {
    /// Plain Avro datums of the schema `json`. For a sink, `None` derives the schema from the
    /// result's columns.
    pub fn plain(json: Option<String>) -> Result<Self> {
        let schema = json.map(reader_schema).transpose()?;
        let writers = schema
            .iter()
            .map(|(avro, _)| (PLAIN_ID, avro.clone()))
            .collect();
        Ok(Self {
            schema,
            registry: None,
            writers,
        })
    }

    /// The Confluent wire format with the registry's schemas for `subject`. A source reads
    /// rows as the subject's latest schema (or `json`, when given); a sink registers the
    /// schema of its columns (or `json`) under the subject.
    pub fn confluent(
        registry: SchemaRegistry,
        subject: String,
        json: Option<String>,
        source: bool,
    ) -> Result<Self> {
        let (json, writers) = if source {
            let (id, latest) = registry.latest(&subject)?;
            let writers = vec![(id, AvroSchema::new(latest.clone()))];
            (Some(json.unwrap_or(latest)), writers)
        } else {
            (json, vec![])
        };
        Ok(Self {
            schema: json.map(reader_schema).transpose()?,
            registry: Some((registry, subject)),
            writers,
        })
    }

    /// The Arrow columns of a row (empty for a sink that derives its schema).
    pub fn schema(&self) -> SchemaRef {
        self.schema
            .as_ref()
            .map_or_else(|| Arc::new(Schema::empty()), |(_, arrow)| arrow.clone())
    }

    pub(crate) fn decoder(&self, batch_size: usize) -> Result<AvroDecoder> {
        let (reader, arrow) = self.schema.clone().ok_or_else(|| {
            ConnectorError::Config("an Avro source needs a schema or a schema registry".into())
        })?;
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        for (id, writer) in &self.writers {
            store
                .set(Fingerprint::Id(*id), writer.clone())
                .map_err(|e| ConnectorError::arrow("registering the Avro schema", e))?;
        }
        let mut decoder = AvroDecoder {
            decoder: None,
            reader,
            store,
            registry: self.registry.as_ref().map(|(r, _)| r.clone()),
            batch_size,
            arrow,
            active: None,
        };
        decoder
            .rebuild()
            .map_err(|e| ConnectorError::arrow("building the Avro decoder", e))?;
        Ok(decoder)
    }

    pub(crate) fn encoder(&self, schema: SchemaRef, _topic: &str) -> Result<AvroEncoder> {
        let mut schema = schema.as_ref().clone();
        if let Some((avro, _)) = &self.schema {
            schema
                .metadata
                .insert(SCHEMA_METADATA_KEY.into(), avro.json_string.clone());
        }
        let context = |e: arrow_avro::errors::AvroError| {
            ConnectorError::arrow("building the Avro encoder", e.into())
        };
        let builder = WriterBuilder::new(schema.clone());
        let encoder = match &self.registry {
            None => builder
                .build_encoder::<AvroBinaryFormat>()
                .map_err(context)?,
            Some((registry, subject)) => {
                let avro = match &self.schema {
                    Some((avro, _)) => avro.clone(),
                    None => AvroSchema::try_from(&schema)
                        .map_err(|e| ConnectorError::arrow("deriving the Avro schema", e))?,
                };
                let id = registry.register(subject, &avro.json_string)?;
                builder
                    .with_fingerprint_strategy(FingerprintStrategy::Id(id))
                    .build_encoder::<AvroSoeFormat>()
                    .map_err(context)?
            }
        };
        Ok(AvroEncoder { encoder })
    }
}

fn reader_schema(json: String) -> Result<(AvroSchema, SchemaRef)> {
    let avro = AvroSchema::new(json);
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    let invalid = |e| ConnectorError::arrow("reading the Avro schema", e);
    store
        .set(Fingerprint::Id(PLAIN_ID), avro.clone())
        .map_err(invalid)?;
    let decoder = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .build_decoder()
        .map_err(invalid)?;
    Ok((avro, decoder.schema()))
}

/// Decodes Avro messages into rows of the reader schema.
pub(crate) struct AvroDecoder {
    /// `None` only while being rebuilt.
    decoder: Option<Decoder>,
    reader: AvroSchema,
    store: SchemaStore,
    registry: Option<SchemaRegistry>,
    batch_size: usize,
    arrow: SchemaRef,
    /// The writer schema id of the rows decoded since the last flush.
    active: Option<u32>,
}

impl AvroDecoder {
    /// A fresh decoder: after a malformed message its builders may hold half a row.
    fn rebuild(&mut self) -> Result<(), ArrowError> {
        self.active = None;
        self.decoder = Some(
            ReaderBuilder::new()
                .with_writer_schema_store(self.store.clone())
                .with_reader_schema(self.reader.clone())
                .with_batch_size(self.batch_size)
                .build_decoder()?,
        );
        Ok(())
    }

    fn decoder(&mut self) -> &mut Decoder {
        self.decoder.as_mut().expect("rebuilt after every failure")
    }

    fn flush(&mut self, rows: &mut Vec<RecordBatch>) -> Result<(), ArrowError> {
        if let Some(batch) = self.decoder().flush()? {
            rows.push(batch);
        }
        Ok(())
    }

    /// Decodes one message into the builders; on error they must be rebuilt.
    fn decode_one(&mut self, payload: &[u8], rows: &mut Vec<RecordBatch>) -> Result<(), String> {
        let body = match self.registry.clone() {
            None => {
                self.decoder()
                    .decode(&PLAIN_PREFIX)
                    .map_err(|e| e.to_string())?;
                payload
            }
            Some(registry) => {
                let id = match payload {
                    [0, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
                    _ => {
                        return Err(
                            "not in the Confluent wire format (a zero byte, then a 4-byte schema id)"
                                .into(),
                        );
                    }
                };
                if self.active.is_some_and(|active| active != id) {
                    // A new writer schema starts a new batch of rows.
                    self.flush(rows).map_err(|e| e.to_string())?;
                }
                if self.store.lookup(&Fingerprint::Id(id)).is_none() {
                    self.flush(rows).map_err(|e| e.to_string())?;
                    let json = registry.schema_by_id(id).map_err(|e| e.to_string())?;
                    self.store
                        .set(Fingerprint::Id(id), AvroSchema::new(json))
                        .map_err(|e| e.to_string())?;
                    self.rebuild().map_err(|e| e.to_string())?;
                }
                self.active = Some(id);
                payload
            }
        };
        let read = self.decoder().decode(body).map_err(|e| e.to_string())?;
        if read != body.len() {
            return Err(format!(
                "not one Avro record of the schema: {read} of {} bytes read",
                body.len()
            ));
        }
        Ok(())
    }

    fn decode_all(&mut self, messages: &MessageBuffer) -> Result<Vec<RecordBatch>, String> {
        let mut rows = Vec::new();
        for i in 0..messages.len() {
            self.decode_one(messages.get(i), &mut rows)?;
        }
        self.flush(&mut rows).map_err(|e| e.to_string())?;
        Ok(rows)
    }

    pub(crate) fn decode(&mut self, messages: &MessageBuffer) -> Result<Decoded, ArrowError> {
        let (rows, bad) = match self.decode_all(messages) {
            Ok(rows) => (rows, vec![]),
            Err(_) => {
                // Again one message at a time, keeping every valid one.
                self.rebuild()?;
                let mut rows = Vec::new();
                let mut bad = Vec::new();
                for i in 0..messages.len() {
                    match self.decode_one(messages.get(i), &mut rows) {
                        Ok(()) => self.flush(&mut rows)?,
                        Err(reason) => {
                            bad.push((i, reason));
                            self.rebuild()?;
                        }
                    }
                }
                (rows, bad)
            }
        };
        Ok((arrow::compute::concat_batches(&self.arrow, &rows)?, bad))
    }
}

/// Encodes rows as Avro datums, with the Confluent prefix when a registry is used.
pub(crate) struct AvroEncoder {
    encoder: Encoder,
}

impl AvroEncoder {
    pub(crate) fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let context = |e: arrow_avro::errors::AvroError| {
            ConnectorError::arrow("encoding Avro messages", e.into())
        };
        self.encoder.encode(batch).map_err(context)?;
        let rows = self.encoder.flush();
        Ok(rows.iter().map(|row| row.to_vec()).collect())
    }
}
