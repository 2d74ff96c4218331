//! `kafka_sink`: one message per result row.
//!
//! The key is the key columns' value (the text of one column, or a JSON object of several),
//! the timestamp comes from a timestamp column (the window end of a windowed result), headers
//! from a `_headers` map column. In a changelog (`_op`), a deletion is written as a tombstone
//! (the key with no value) and the retraction half of an update is not written: the update
//! itself replaces the key's value.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef, TimeUnit};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::connection::{GroupOffsets, KafkaConnection};
use super::exchange::{KafkaExchange, delete_exchange_topics};
use super::metadata::{HEADERS_COLUMN, TIMESTAMP_COLUMN};
use super::producer::CheckedProducer;
use super::source::KafkaSource;
use crate::changelog::{RowChange, op_column, row_changes};
use crate::error::{ConnectorError, Result};
use crate::exchange_transport::ExchangeTransport;
use crate::message::{MessageEncoder, MessageFormat, json_lines};
use crate::position::SourcePosition;
use crate::prepared_output::PreparedOutput;
use crate::sink::{Sink, SinkConfig};
use crate::source::SourceConnector;

/// Everything a Kafka sink needs, resolved from its `WITH` options.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// The sink's name in SQL.
    pub name: String,
    /// The brokers and extra librdkafka properties.
    pub connection: KafkaConnection,
    /// The topic to write.
    pub topic: String,
    /// How message values are encoded.
    pub format: MessageFormat,
    /// The columns whose values make the message key (none: messages have no key); `None`
    /// until the engine settles it (the result's key columns unless the options say).
    pub key_fields: Option<Vec<String>>,
    /// A timestamp column giving the message timestamp; none: the time of writing.
    pub timestamp_field: Option<String>,
    /// Writes in Kafka transactions under this id, one per checkpoint (exactly once); a
    /// restarted job's producer fences off its crashed predecessor's open transaction.
    pub transactional_id: Option<String>,
}

/// Writes result rows to a topic.
pub struct KafkaSink {
    config: KafkaSinkConfig,
    /// Shared with the job's exchanges between processes, whose messages ride in its
    /// transactions.
    producer: Arc<CheckedProducer>,
    encoder: MessageEncoder,
    /// The columns that make the value: all but `_op` and `_headers`.
    value_columns: Vec<usize>,
    value_schema: SchemaRef,
    key_columns: Vec<usize>,
    timestamp_column: Option<usize>,
    op_column: Option<usize>,
    headers_column: Option<usize>,
    rows: u64,
}

impl KafkaSink {
    /// Checks the topic and columns, and connects.
    pub fn try_new(config: KafkaSinkConfig, schema: SchemaRef) -> Result<Self> {
        config.connection.partitions(&config.topic)?;
        let column = |name: &str, what: &str| {
            schema.index_of(name).map_err(|_| {
                ConnectorError::Config(format!(
                    "sink '{}': {what} '{name}' is not a result column",
                    config.name
                ))
            })
        };
        let key_columns = config
            .key_fields
            .iter()
            .flatten()
            .map(|f| column(f, "the key column"))
            .collect::<Result<Vec<_>>>()?;
        let timestamp_column = config
            .timestamp_field
            .as_deref()
            .map(|f| column(f, "the timestamp column"))
            .transpose()?;
        let op_column = op_column(&schema);
        let headers_column = schema.index_of(HEADERS_COLUMN).ok();
        if let Some(i) = headers_column {
            let text_map = match schema.field(i).data_type() {
                DataType::Map(entries, _) => match entries.data_type() {
                    DataType::Struct(kv) => {
                        kv.len() == 2 && kv.iter().all(|f| f.data_type() == &DataType::Utf8)
                    }
                    _ => false,
                },
                _ => false,
            };
            if !text_map {
                return Err(ConnectorError::Config(format!(
                    "sink '{}': the '{HEADERS_COLUMN}' column becomes message headers and must be a MAP of VARCHAR to VARCHAR, not {}",
                    config.name,
                    schema.field(i).data_type()
                )));
            }
        }
        let value_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| Some(*i) != op_column && Some(*i) != headers_column)
            .collect();
        let value_schema = Arc::new(
            schema
                .project(&value_columns)
                .map_err(|e| ConnectorError::arrow(format!("sink '{}'", config.name), e))?,
        );
        if matches!(config.format, MessageFormat::Raw) && value_schema.fields().len() != 1 {
            return Err(ConnectorError::Config(format!(
                "sink '{}': the raw format writes one column, the result has {}",
                config.name,
                value_schema.fields().len()
            )));
        }
        let encoder = config.format.encoder(value_schema.clone(), &config.topic)?;
        let producer = match &config.transactional_id {
            Some(id) => {
                let producer =
                    CheckedProducer::new(&config.connection, &[("transactional.id", id)])?;
                producer.begin(&config.topic)?;
                producer
            }
            None => CheckedProducer::new(&config.connection, &[])?,
        };
        Ok(Self {
            config,
            producer: Arc::new(producer),
            encoder,
            value_columns,
            value_schema,
            key_columns,
            timestamp_column,
            op_column,
            headers_column,
            rows: 0,
        })
    }

    /// Commits the current transaction with the sources' offsets in it (`offsets` for the
    /// consumer group `group`), and opens the next. Everything written since the last commit
    /// becomes visible to `read_committed` readers at once, with the offsets that produced it.
    pub fn commit_transaction(&mut self, offsets: &[GroupOffsets]) -> Result<()> {
        self.producer.commit(&self.config.topic, offsets)
    }

    /// Whether it writes in transactions.
    pub fn is_transactional(&self) -> bool {
        self.config.transactional_id.is_some()
    }

    /// Messages written so far (tombstones included).
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Queues one message per row; [`KafkaSink::flush`] waits for the broker.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let arrow =
            |e| ConnectorError::arrow(format!("writing to topic '{}'", self.config.topic), e);
        let changes = row_changes(batch, self.op_column);
        // A retraction is followed by the update that replaces it: nothing to write.
        let keep: BooleanArray = changes
            .iter()
            .map(|c| Some(*c != RowChange::Retract))
            .collect();
        let batch = filter_record_batch(batch, &keep).map_err(arrow)?;
        let tombstone: Vec<bool> = changes
            .iter()
            .filter(|c| **c != RowChange::Retract)
            .map(|c| *c == RowChange::Delete)
            .collect();
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let values = batch.project(&self.value_columns).map_err(arrow)?;
        let values = RecordBatch::try_new(self.value_schema.clone(), values.columns().to_vec())
            .map_err(arrow)?;
        let encoded = self.encoder.encode(&values)?;
        let keys = self.keys(&batch).map_err(arrow)?;
        let timestamps = match self.timestamp_column {
            Some(i) => {
                let millis = cast(
                    batch.column(i),
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )
                .and_then(|t| cast(&t, &DataType::Int64))
                .map_err(arrow)?;
                Some(millis)
            }
            None => None,
        };
        let headers = self
            .headers_column
            .map(|i| batch.column(i).as_map().clone());
        for row in 0..batch.num_rows() {
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.config.topic);
            if !tombstone[row] {
                record = record.payload(&encoded[row]);
            }
            if let Some(keys) = &keys {
                record = record.key(keys[row].as_slice());
            }
            if let Some(millis) = &timestamps {
                let millis = millis.as_primitive::<Int64Type>();
                if millis.is_valid(row) {
                    record = record.timestamp(millis.value(row));
                }
            }
            if let Some(headers) = headers.as_ref().filter(|h| h.is_valid(row)) {
                let entries = headers.value(row);
                let names = entries.column(0).as_string::<i32>();
                let values = entries.column(1).as_string::<i32>();
                let mut owned = OwnedHeaders::new_with_capacity(names.len());
                for i in 0..names.len() {
                    owned = owned.insert(Header {
                        key: names.value(i),
                        value: values.is_valid(i).then(|| values.value(i)),
                    });
                }
                record = record.headers(owned);
            }
            self.producer.send(&self.config.topic, record)?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Waits until the broker has every message written.
    pub fn flush(&self) -> Result<()> {
        self.producer.flush(&self.config.topic)
    }

    /// The message key of each row, if the sink has key columns.
    fn keys(
        &self,
        batch: &RecordBatch,
    ) -> std::result::Result<Option<Vec<Vec<u8>>>, arrow::error::ArrowError> {
        match self.key_columns.as_slice() {
            [] => Ok(None),
            [one] => {
                let text = cast(batch.column(*one), &DataType::Utf8)?;
                let text: &StringArray = text.as_string::<i32>();
                Ok(Some(
                    text.iter()
                        .map(|v| v.unwrap_or_default().as_bytes().to_vec())
                        .collect(),
                ))
            }
            several => {
                let fields: Vec<_> = several
                    .iter()
                    .map(|&i| batch.schema().field(i).clone())
                    .collect();
                let columns = several.iter().map(|&i| batch.column(i).clone()).collect();
                let keys = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
                json_lines(&keys).map(Some)
            }
        }
    }
}

/// A topic takes any number of writers. Nothing to recover or complete: a transactional
/// producer aborts what its predecessor left open as it starts, and a committed transaction
/// chose its checkpoint by its offsets.
impl SinkConfig for KafkaSinkConfig {
    fn connector(&self) -> &'static str {
        "kafka_sink"
    }

    fn carries_exchanges(&self) -> bool {
        true
    }

    fn delete_exchanges(&self, job: &str) -> Result<Vec<String>> {
        delete_exchange_topics(&self.connection, job)
    }

    fn location(&self) -> String {
        format!(
            "kafka://{}/{}",
            self.connection.bootstrap_servers, self.topic
        )
    }

    fn format(&self) -> String {
        self.format.name().to_string()
    }

    fn clone_box(&self) -> Box<dyn SinkConfig> {
        Box::new(self.clone())
    }

    fn for_insert(&self, _target: &str, _job: &str) -> Result<Box<dyn SinkConfig>> {
        Ok(self.clone_box())
    }

    /// Messages are keyed by the result's key, and timed by the first of `times` (or a
    /// Kafka source's message timestamp) that the rows have as a timestamp column.
    fn settle(&mut self, schema: &SchemaRef, key: &[String], times: &[String]) {
        self.key_fields.get_or_insert_with(|| key.to_vec());
        if self.timestamp_field.is_none() {
            self.timestamp_field = times
                .iter()
                .map(String::as_str)
                .chain([TIMESTAMP_COLUMN])
                .find(|column| {
                    schema
                        .field_with_name(column)
                        .is_ok_and(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
                })
                .map(str::to_string);
        }
    }

    /// A Kafka transaction can carry the offsets of Kafka sources only.
    fn use_transactions(
        &mut self,
        job: &str,
        sources: &[&dyn SourceConnector],
        exactly_once: Option<bool>,
    ) -> Result<bool> {
        let all_kafka = sources.iter().all(|s| s.as_any().is::<KafkaSource>());
        match exactly_once {
            Some(true) if !all_kafka => {
                return Err(ConnectorError::Config(
                    "exactly once into Kafka commits the sources' offsets in the sink's transaction, so every source must be a Kafka topic; use 'processing.guarantee' = 'at_least_once'".into(),
                ));
            }
            Some(false) => {}
            _ if all_kafka => {
                self.transactional_id = Some(format!("ferris-{job}-{}", self.topic));
            }
            _ => {}
        }
        Ok(self.transactional_id.is_some())
    }

    fn open(&self, schema: SchemaRef) -> Result<Box<dyn Sink>> {
        Ok(Box::new(KafkaSink::try_new(self.clone(), schema)?))
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        KafkaSink::write(self, batch)
    }

    /// Flushed and acknowledged: durable.
    fn flush(&mut self) -> Result<bool> {
        KafkaSink::flush(self).map(|()| true)
    }

    /// Flushed and acknowledged, its output is durable at once.
    fn prepare_checkpoint(&mut self) -> Result<PreparedOutput> {
        KafkaSink::flush(self).map(|()| PreparedOutput::durable(serde_json::json!({})))
    }

    /// A transaction commits with the Kafka sources' offsets at the cut.
    fn commit_checkpoint(
        &mut self,
        positions: &[(&dyn SourceConnector, SourcePosition)],
        metadata: &str,
    ) -> Result<()> {
        if !self.is_transactional() {
            return Ok(());
        }
        let mut offsets = Vec::new();
        for (source, position) in positions {
            if let Some(kafka) = source.as_any().downcast_ref::<KafkaSource>() {
                offsets.extend(kafka.group_offsets(position, metadata)?);
            }
        }
        self.commit_transaction(&offsets)
    }

    fn commits_positions(&self) -> bool {
        self.is_transactional()
    }

    fn exchange_transport(&self, job: &str, era: u64) -> Option<Arc<dyn ExchangeTransport>> {
        Some(Arc::new(KafkaExchange::new(
            self.config.connection.clone(),
            job,
            era,
            self.producer.clone(),
        )))
    }

    fn close(mut self: Box<Self>) -> Result<u64> {
        if self.is_transactional() {
            self.commit_transaction(&[])?;
        }
        KafkaSink::flush(&self)?;
        Ok(self.rows_written())
    }
}
