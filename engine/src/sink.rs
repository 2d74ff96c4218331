//! Sinks named in `WITH`, resolved into connectors.

use std::time::Duration;

use ferris_connectors::kafka::KafkaSinkConfig;
use ferris_connectors::{FileFormat, FileSinkConfig, SinkConfig};

use crate::error::Result;
use crate::options::Options;
use crate::source::{resolve_format, resolve_kafka_connection, resolve_message_format};

/// How long a folder sink writes one part file unless `'<name>.rollover.interval'` says.
const DEFAULT_ROLLOVER: Duration = Duration::from_secs(60);

/// Resolves the file sink `name` from its options.
pub(crate) fn resolve_file_sink(name: &str, options: &Options) -> Result<SinkConfig> {
    let path = options.required(&format!("{name}.path"), "the file or folder to write")?;
    // JSON lines unless the options or the path say otherwise.
    let format = resolve_format(name, options, path.value, Some(FileFormat::Json))?;
    let rollover = options
        .get(&format!("{name}.rollover.interval"))
        .map(|v| v.duration())
        .transpose()?
        .unwrap_or(DEFAULT_ROLLOVER);
    Ok(SinkConfig::File(FileSinkConfig {
        name: name.to_string(),
        path: path.value.into(),
        format,
        rollover,
        part_prefix: "part".into(),
    }))
}

/// Resolves the Kafka sink `name` from its options. Its key and timestamp columns are left
/// to the job unless `'<name>.key.field'` / `'<name>.timestamp.field'` name them.
pub(crate) async fn resolve_kafka_sink(name: &str, options: &Options) -> Result<SinkConfig> {
    let key = |suffix: &str| format!("{name}.{suffix}");
    let topic = options.required(&key("topic"), "the topic to write")?;
    let connection = resolve_kafka_connection(name, options);
    let format = resolve_message_format(name, options, topic.value, false).await?;
    let key_fields = options.get(&key("key.field")).map(|v| {
        v.value
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    });
    let timestamp_field = options
        .get(&key("timestamp.field"))
        .map(|v| v.value.to_string());
    Ok(SinkConfig::Kafka(KafkaSinkConfig {
        name: name.to_string(),
        connection,
        topic: topic.value.to_string(),
        format,
        key_fields,
        timestamp_field,
        transactional_id: None,
    }))
}
