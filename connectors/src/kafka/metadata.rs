//! The metadata columns a Kafka source adds to every row.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, MapBuilder, StringArray, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use rdkafka::message::{Headers, Message};

/// The message key, as text.
pub const KEY_COLUMN: &str = "_key";
/// The message timestamp (the default event time).
pub const TIMESTAMP_COLUMN: &str = "_timestamp";
/// The partition the message came from.
pub const PARTITION_COLUMN: &str = "_partition";
/// The message offset in its partition.
pub const OFFSET_COLUMN: &str = "_offset";
/// The topic.
pub const TOPIC_COLUMN: &str = "_topic";
/// The message headers, as a map of name to text.
pub const HEADERS_COLUMN: &str = "_headers";

fn headers_type() -> (Field, Field, Field) {
    let keys = Field::new("keys", DataType::Utf8, false);
    let values = Field::new("values", DataType::Utf8, true);
    let entries = Field::new(
        "entries",
        DataType::Struct(vec![keys.clone(), values.clone()].into()),
        false,
    );
    (entries, keys, values)
}

/// The metadata columns, after the value's own.
pub fn metadata_fields() -> Vec<Field> {
    let (entries, _, _) = headers_type();
    vec![
        Field::new(KEY_COLUMN, DataType::Utf8, true),
        Field::new(
            TIMESTAMP_COLUMN,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new(PARTITION_COLUMN, DataType::Int32, false),
        Field::new(OFFSET_COLUMN, DataType::Int64, false),
        Field::new(TOPIC_COLUMN, DataType::Utf8, false),
        Field::new(
            HEADERS_COLUMN,
            DataType::Map(Arc::new(entries), false),
            true,
        ),
    ]
}

/// Builds the metadata columns of a micro-batch, one message at a time: those it is asked
/// for only.
pub(crate) struct MetadataBuilder {
    /// Which of [`metadata_fields`] it builds.
    wanted: [bool; 6],
    keys: StringBuilder,
    timestamps: TimestampMillisecondBuilder,
    partitions: Int32Builder,
    offsets: Int64Builder,
    headers: MapBuilder<StringBuilder, StringBuilder>,
    topic: String,
    /// Messages pushed since the last finish.
    rows: usize,
}

impl MetadataBuilder {
    /// A builder of the metadata columns of `topic` numbered `columns` in
    /// [`metadata_fields`] (`None`: all of them).
    pub(crate) fn new(topic: &str, columns: Option<Vec<usize>>) -> Self {
        let mut wanted = [columns.is_none(); 6];
        for column in columns.iter().flatten() {
            wanted[*column] = true;
        }
        let (_, keys, values) = headers_type();
        let names = arrow::array::builder::MapFieldNames {
            entry: "entries".into(),
            key: keys.name().clone(),
            value: values.name().clone(),
        };
        Self {
            wanted,
            keys: StringBuilder::new(),
            timestamps: TimestampMillisecondBuilder::new(),
            partitions: Int32Builder::new(),
            offsets: Int64Builder::new(),
            headers: MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new()),
            topic: topic.to_string(),
            rows: 0,
        }
    }

    pub(crate) fn push(&mut self, message: &impl Message) {
        let [key, timestamp, partition, offset, _, headers] = self.wanted;
        self.rows += 1;
        if key {
            self.keys
                .append_option(message.key().map(String::from_utf8_lossy));
        }
        if timestamp {
            self.timestamps
                .append_option(message.timestamp().to_millis());
        }
        if partition {
            self.partitions.append_value(message.partition());
        }
        if offset {
            self.offsets.append_value(message.offset());
        }
        if !headers {
            return;
        }
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                self.headers.keys().append_value(header.key);
                self.headers
                    .values()
                    .append_option(header.value.map(String::from_utf8_lossy));
            }
        }
        self.headers
            .append(true)
            .expect("keys and values are appended in pairs");
    }

    /// The columns asked for, of the messages pushed since the last call.
    pub(crate) fn finish(&mut self) -> Vec<ArrayRef> {
        let rows = std::mem::take(&mut self.rows);
        let all: [ArrayRef; 6] = [
            Arc::new(self.keys.finish()),
            Arc::new(self.timestamps.finish()),
            Arc::new(self.partitions.finish()),
            Arc::new(self.offsets.finish()),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                &self.topic,
                if self.wanted[4] { rows } else { 0 },
            ))),
            Arc::new(self.headers.finish()),
        ];
        all.into_iter()
            .zip(self.wanted)
            .filter_map(|(column, wanted)| wanted.then_some(column))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};

    use super::*;

    /// Only the columns asked for are built, in the order of [`metadata_fields`].
    #[test]
    fn builds_the_columns_asked_for() {
        let message = OwnedMessage::new(
            Some(b"v".to_vec()),
            Some(b"k".to_vec()),
            "trades".into(),
            Timestamp::CreateTime(7),
            3,
            42,
            Some(OwnedHeaders::new()),
        );
        let mut builder = MetadataBuilder::new("trades", Some(vec![2, 4]));
        builder.push(&message);
        builder.push(&message);
        let columns = builder.finish();
        assert_eq!(columns.len(), 2);
        assert_eq!(
            columns[0]
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values(),
            &[3, 3]
        );
        assert_eq!(columns[1].as_string::<i32>().value(1), "trades");
        let mut all = MetadataBuilder::new("trades", None);
        all.push(&message);
        assert_eq!(all.finish().len(), metadata_fields().len());
    }
}
