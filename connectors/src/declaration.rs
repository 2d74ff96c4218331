//! A connector as a statement declares it: its name, and the `WITH` options under that name.
//! Every connector type reads its own options through a [`Declaration`]; the options that
//! several sources share (the schema, the batch size, malformed records) are read here.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;

use crate::dead_letter::DeadLetterWriter;
use crate::error::Result;
use crate::kafka::{DeadLetterTopic, KafkaConnection};
use crate::options::{OptionValue, Options};
use crate::records::OnError;
use crate::sink::SinkConfig;
use crate::source::SourceConnector;

/// Rows per micro-batch unless `'<name>.batch.size'` says otherwise.
const DEFAULT_BATCH_SIZE: usize = 8192;

/// Reads a column list in the engine's SQL types (`'ts TIMESTAMP, price DECIMAL(18,4)'`):
/// the connectors know no SQL.
pub trait ColumnParser: Send + Sync {
    /// The columns of `list`, or why it is not a column list.
    fn parse<'a>(&'a self, list: &'a str) -> BoxFuture<'a, Result<SchemaRef, String>>;
}

/// A source its declaration opened, and where `INSERT INTO` it writes (a Kafka source's
/// topic; none: the source is read only).
pub struct DeclaredSource {
    /// The open source.
    pub source: Arc<dyn SourceConnector>,
    /// Its writer, if it takes rows.
    pub writer: Option<Box<dyn SinkConfig>>,
}

/// One connector of a statement: `'<name>.type'` chose its type, which reads its options
/// `'<name>.<option>'` from here.
pub struct Declaration<'a> {
    /// The name the statement gives it.
    pub name: &'a str,
    /// All the statement's options (the connector takes its own).
    pub options: &'a Options,
    /// Reads declared column lists.
    pub columns: &'a dyn ColumnParser,
    /// The job the connector belongs to, if any.
    pub job: Option<&'a str>,
}

impl<'a> Declaration<'a> {
    /// The full key of the connector's option `suffix`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.name)
    }

    /// Takes the connector's option `suffix`, if written.
    pub fn get(&self, suffix: &str) -> Option<OptionValue<'a>> {
        self.options.get(&self.key(suffix))
    }

    /// Takes the connector's option `suffix`, which must be written (`why` says what it is).
    pub fn required(&self, suffix: &str, why: &str) -> Result<OptionValue<'a>> {
        self.options.required(&self.key(suffix), why)
    }

    /// The columns `'<name>.schema'` declares, if it is written.
    pub async fn schema(&self) -> Result<Option<SchemaRef>> {
        let Some(value) = self.get("schema") else {
            return Ok(None);
        };
        let schema = self
            .columns
            .parse(value.value)
            .await
            .map_err(|reason| value.error(reason))?;
        Ok(Some(schema))
    }

    /// `'<name>.batch.size'`, or [`DEFAULT_BATCH_SIZE`].
    pub fn batch_size(&self) -> Result<usize> {
        Ok(self
            .get("batch.size")
            .map(|v| v.positive())
            .transpose()?
            .unwrap_or(DEFAULT_BATCH_SIZE))
    }

    /// What a source does with a record it cannot decode: `'<name>.on.error'`, with a
    /// dead-letter file (`'<name>.dead_letter.path'`) or, given a Kafka connection, topic
    /// (`'<name>.dead_letter.topic'`).
    pub fn on_error(&self, kafka: Option<&KafkaConnection>) -> Result<OnError> {
        let Some(value) = self.get("on.error") else {
            return Ok(OnError::Fail);
        };
        Ok(
            match value.one_of(&["fail", "skip", "dead_letter"])?.as_str() {
                "fail" => OnError::Fail,
                "skip" => OnError::Skip,
                _ => match (kafka, self.get("dead_letter.topic")) {
                    (Some(connection), Some(topic)) => OnError::DeadLetterTopic(Arc::new(
                        DeadLetterTopic::new(connection.clone(), topic.value.to_string()),
                    )),
                    _ => {
                        let path = self.required(
                            "dead_letter.path",
                            "where 'dead_letter' writes malformed records",
                        )?;
                        OnError::DeadLetter(Arc::new(DeadLetterWriter::new(path.value)))
                    }
                },
            },
        )
    }
}
