//! The options of the Kafka connectors, `kafka_source` and `kafka_sink`: the brokers, the
//! topic, and the message format.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::connection::KafkaConnection;
use super::sink::KafkaSinkConfig;
use super::source::{KafkaSource, KafkaSourceConfig, OffsetReset};
use crate::declaration::{Declaration, DeclaredSource};
use crate::error::{ConnectorError, Result};
use crate::message::{AvroFormat, MessageFormat, ProtobufFormat, SchemaRegistry};
use crate::sink::SinkConfig;

/// The brokers unless `'<name>.bootstrap.servers'` says.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";
/// How long a Kafka micro-batch waits to fill unless `'<name>.batch.linger.ms'` says.
const DEFAULT_LINGER: Duration = Duration::from_millis(100);

/// A `kafka_source`: a topic to read, in a consumer group.
pub(crate) fn source<'a>(declared: &'a Declaration<'a>) -> BoxFuture<'a, Result<DeclaredSource>> {
    async move {
        let topic = declared.required("topic", "the topic to read")?;
        let connection = connection(declared);
        let mut format = message_format(declared, topic.value, true).await?;
        let mut schema = declared.schema().await?;
        // A declared schema picks and types a protobuf message's fields; Avro's and raw's
        // columns are their own.
        if let (Some(columns), Some(value)) = (schema.clone(), declared.get("schema")) {
            format = match format {
                MessageFormat::Protobuf(protobuf) => {
                    schema = None;
                    MessageFormat::Protobuf(
                        protobuf.with_columns(columns).map_err(|e| value.error(e))?,
                    )
                }
                MessageFormat::Avro(_) | MessageFormat::Raw => {
                    return Err(value.error(format!(
                        "the {} format's columns come from its own schema",
                        format.name()
                    )));
                }
                other => other,
            };
        }
        let bounded = match declared.get("scan.bounded.mode") {
            Some(value) => value.one_of(&["latest-offset", "unbounded"])? == "latest-offset",
            None => false,
        };
        let offset_reset = match declared.get("auto.offset.reset") {
            Some(value) => match value.one_of(&["earliest", "latest"])?.as_str() {
                "latest" => OffsetReset::Latest,
                _ => OffsetReset::Earliest,
            },
            None => OffsetReset::Earliest,
        };
        // A job's consumer group is named after the job; a query's after its source.
        let group = declared.job.unwrap_or(declared.name);
        let group_id = declared
            .get("group.id")
            .map_or_else(|| format!("ferris-{group}"), |v| v.value.to_string());
        let batch_size = declared.batch_size()?;
        let linger = declared
            .get("batch.linger.ms")
            .map(|v| v.positive().map(|ms| Duration::from_millis(ms as u64)))
            .transpose()?
            .unwrap_or(DEFAULT_LINGER);
        let on_error = declared.on_error(Some(&connection))?;
        // `INSERT INTO` the source writes to its topic, in its format.
        let writer = KafkaSinkConfig {
            name: declared.name.to_string(),
            connection: connection.clone(),
            topic: topic.value.to_string(),
            format: format.clone(),
            key_fields: Some(vec![]),
            timestamp_field: None,
            transactional_id: None,
        };
        let source = KafkaSource::try_new(KafkaSourceConfig {
            name: declared.name.to_string(),
            connection,
            topic: topic.value.to_string(),
            group_id,
            offset_reset,
            bounded,
            format,
            schema,
            batch_size,
            linger,
            on_error,
        })
        .await
        .map_err(|e| topic.error(e))?;
        Ok(DeclaredSource {
            source: Arc::new(source),
            writer: Some(Box::new(writer)),
        })
    }
    .boxed()
}

/// A `kafka_sink`: a topic to write. Its key and timestamp columns are left to the job unless
/// `'<name>.key.field'` / `'<name>.timestamp.field'` name them.
pub(crate) fn sink<'a>(
    declared: &'a Declaration<'a>,
) -> BoxFuture<'a, Result<Box<dyn SinkConfig>>> {
    async move {
        let topic = declared.required("topic", "the topic to write")?;
        let connection = connection(declared);
        let format = message_format(declared, topic.value, false).await?;
        let key_fields = declared.get("key.field").map(|v| {
            v.value
                .split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        });
        let timestamp_field = declared.get("timestamp.field").map(|v| v.value.to_string());
        let sink: Box<dyn SinkConfig> = Box::new(KafkaSinkConfig {
            name: declared.name.to_string(),
            connection,
            topic: topic.value.to_string(),
            format,
            key_fields,
            timestamp_field,
            transactional_id: None,
        });
        Ok(sink)
    }
    .boxed()
}

/// The connection of a Kafka connector: `'<name>.bootstrap.servers'` and every
/// `'<name>.kafka.<property>'`.
fn connection(declared: &Declaration) -> KafkaConnection {
    let bootstrap_servers = declared
        .get("bootstrap.servers")
        .map_or(DEFAULT_BOOTSTRAP_SERVERS, |v| v.value)
        .to_string();
    let properties = declared
        .options
        .with_prefix(&declared.key("kafka."))
        .into_iter()
        .map(|(property, value)| (property, value.value.to_string()))
        .collect();
    KafkaConnection {
        bootstrap_servers,
        properties,
    }
}

/// The message format of a Kafka connector (`'<name>.format'`, JSON by default); a source's
/// (`source`) Avro needs a schema, a sink's may take the result's.
async fn message_format(
    declared: &Declaration<'_>,
    topic: &str,
    source: bool,
) -> Result<MessageFormat> {
    let format = match declared.get("format") {
        Some(value) => value.one_of(&["json", "csv", "avro", "protobuf", "raw"])?,
        None => "json".to_string(),
    };
    Ok(match format.as_str() {
        "json" => MessageFormat::Json,
        "csv" => MessageFormat::Csv {
            delimiter: match declared.get("delimiter") {
                Some(value) => value.delimiter()?,
                None => b',',
            },
        },
        "avro" => MessageFormat::Avro(avro(declared, topic, source).await?),
        "protobuf" => {
            let file = declared.required(
                "protobuf.schema.file",
                "the .proto file that defines the message",
            )?;
            let message = declared.required(
                "protobuf.message",
                "the full name of the message type, such as shop.Trade",
            )?;
            MessageFormat::Protobuf(
                ProtobufFormat::compile(std::path::Path::new(file.value), message.value)
                    .map_err(|e| file.error(e))?,
            )
        }
        _ => MessageFormat::Raw,
    })
}

/// The Avro format: a schema inline or in a file, or a schema registry's.
async fn avro(declared: &Declaration<'_>, topic: &str, source: bool) -> Result<AvroFormat> {
    let key = |suffix: &str| declared.key(suffix);
    let inline = declared.get("avro.schema");
    let file = declared.get("avro.schema.file");
    let json = match (inline, file) {
        (Some(_), Some(file)) => {
            return Err(file.error(format!(
                "give either '{}' or this, not both",
                key("avro.schema")
            )));
        }
        (Some(inline), None) => Some(inline.value.to_string()),
        (None, Some(file)) => Some(
            tokio::fs::read_to_string(file.value)
                .await
                .map_err(|e| file.error(format!("cannot read it: {e}")))?,
        ),
        (None, None) => None,
    };
    let registry = declared.get("schema.registry.url");
    let subject = declared
        .get("schema.registry.subject")
        .map_or_else(|| format!("{topic}-value"), |v| v.value.to_string());
    match registry {
        Some(url) => {
            let registry = SchemaRegistry::new(url.value);
            tokio::task::spawn_blocking(move || {
                AvroFormat::confluent(registry, subject, json, source)
            })
            .await
            .map_err(|e| ConnectorError::storage("reading the schema registry", e))?
            .map_err(|e| url.error(e))
        }
        None if source && json.is_none() => Err(ConnectorError::option(
            format!(
                "an Avro source needs '{}', '{}' or '{}'",
                key("avro.schema"),
                key("avro.schema.file"),
                key("schema.registry.url")
            ),
            None,
        )),
        None => AvroFormat::plain(json),
    }
}
