//! The exchanges of a job whose instances run in several processes, through Kafka
//! ([`KafkaExchange`], an `ExchangeTransport`): exchange `n` of job `j` is the topic
//! `j-repartition-n` (`j-repartition-n-era<g>` once the job's parallelism has changed `g`
//! times), one partition per output of the exchange.
//!
//! A message is one sender's rows for one output, as an Arrow IPC stream (the schema, then
//! the batch), or a watermark, an idle notice or an end; headers say which sender sent it
//! and what it is. Messages go out through the job's Kafka sink's producer: with exactly
//! once, inside the transaction that commits the process's checkpoint, so that an output
//! (reading `read_committed`, librdkafka's default) sees a sender's rows once the
//! checkpoint that read them has committed, and never the rows of a run that crashed.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::connection::{KafkaConnection, drop_aside};
use super::producer::CheckedProducer;
use crate::error::{ConnectorError, Result};
use crate::exchange_transport::{ExchangeMessage, ExchangeTransport, ReceivedMessage};
use crate::position::{PartPosition, SourcePosition};

/// The header naming the sender (the exchange's input partition).
const FROM: &str = "ferris.from";
/// The header saying what a message is: `rows`, `watermark`, `idle`, `end` or `drained`.
const KIND: &str = "ferris.kind";
/// A watermark message's watermark (milliseconds).
const WATERMARK: &str = "ferris.watermark";

/// How long an output's reader waits for a message before it looks whether it is still
/// wanted.
const POLL: Duration = Duration::from_millis(100);
/// How long a new exchange topic may take to show all its partitions in the metadata.
const TOPIC_WAIT: Duration = Duration::from_secs(5);
/// The first wait before it is looked up again, doubled each time up to [`TOPIC_RETRY_MAX`]:
/// every instance's process waits for the topic before it starts, and it usually shows
/// within a few milliseconds.
const TOPIC_RETRY: Duration = Duration::from_millis(10);
const TOPIC_RETRY_MAX: Duration = Duration::from_millis(200);
/// Messages an output's reader may hold before the exchange takes them.
const READ_AHEAD: usize = 16;

/// A job's exchanges between processes, on the brokers of its Kafka sink.
pub struct KafkaExchange {
    connection: KafkaConnection,
    job: String,
    /// How many times the job's parallelism has changed.
    era: u64,
    producer: Arc<CheckedProducer>,
}

impl std::fmt::Debug for KafkaExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaExchange")
            .field("brokers", &self.connection.bootstrap_servers)
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

impl KafkaExchange {
    /// The exchanges of job `job` in era `era`, written through `producer` (the job's
    /// sink's).
    pub(crate) fn new(
        connection: KafkaConnection,
        job: &str,
        era: u64,
        producer: Arc<CheckedProducer>,
    ) -> Self {
        Self {
            connection,
            job: job.to_string(),
            era,
            producer,
        }
    }

    /// The topic of exchange `exchange`.
    pub fn topic(&self, exchange: u32) -> String {
        match self.era {
            0 => format!("{}-repartition-{exchange}", self.job),
            era => format!("{}-repartition-{exchange}-era{era}", self.job),
        }
    }

    /// Creates `topic` with `partitions` partitions unless it exists.
    fn create_topic(&self, topic: &str, partitions: usize) -> Result<()> {
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
        let (admin, options) = admin(&self.connection)?;
        let results = futures::executor::block_on(admin.create_topics([&new], &options));
        drop_aside(admin);
        let results =
            results.map_err(|e| self.connection.error("creating an exchange topic on", e))?;
        topics_done(
            results,
            RDKafkaErrorCode::TopicAlreadyExists,
            "creating",
            &self.connection,
        )
    }
}

/// Deletes the exchange topics of job `job` (`<job>-repartition-<n>`, and of every era
/// `<job>-repartition-<n>-era<g>`) on the brokers of `connection`; the topics deleted.
pub(crate) fn delete_exchange_topics(
    connection: &KafkaConnection,
    job: &str,
) -> Result<Vec<String>> {
    let prefix = format!("{job}-repartition-");
    let topics: Vec<String> = connection
        .list_topics()?
        .into_iter()
        .map(|t| t.name)
        .filter(|name| {
            let number = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
            name.strip_prefix(&prefix)
                .is_some_and(|rest| match rest.split_once("-era") {
                    Some((exchange, era)) => number(exchange) && number(era),
                    None => number(rest),
                })
        })
        .collect();
    if topics.is_empty() {
        return Ok(topics);
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let (admin, options) = admin(connection)?;
    let results = futures::executor::block_on(admin.delete_topics(&names, &options));
    drop_aside(admin);
    let results = results.map_err(|e| connection.error("deleting the exchange topics of", e))?;
    topics_done(
        results,
        RDKafkaErrorCode::UnknownTopicOrPartition,
        "deleting",
        connection,
    )?;
    Ok(topics)
}

/// An admin client of `connection`, and the options of its calls.
fn admin(
    connection: &KafkaConnection,
) -> Result<(AdminClient<DefaultClientContext>, AdminOptions)> {
    let admin = connection
        .client_config(&[])
        .create()
        .map_err(|e| connection.error("connecting to", e))?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    Ok((admin, options))
}

/// Checks what the brokers said of each topic `doing` did to, `passing` (already there,
/// already gone) being no error.
fn topics_done(
    results: Vec<TopicResult>,
    passing: RDKafkaErrorCode,
    doing: &str,
    connection: &KafkaConnection,
) -> Result<()> {
    for result in results {
        if let Err((topic, code)) = result
            && code != passing
        {
            return Err(ConnectorError::Config(format!(
                "{doing} the exchange topic '{topic}' on {}: {code}",
                connection.bootstrap_servers
            )));
        }
    }
    Ok(())
}

impl ExchangeTransport for KafkaExchange {
    /// Creates the exchange's topic (every process tries; the first makes it), and checks
    /// that it has one partition per output: a topic left by a run at another parallelism
    /// does not fit.
    fn open(&self, exchange: u32, outputs: usize) -> Result<()> {
        let topic = self.topic(exchange);
        self.create_topic(&topic, outputs)?;
        // A topic just made may take a moment to show in the metadata, all its partitions.
        let deadline = std::time::Instant::now() + TOPIC_WAIT;
        let mut retry = TOPIC_RETRY;
        loop {
            let late = std::time::Instant::now() >= deadline;
            match self.connection.partitions(&topic) {
                Ok(partitions) if partitions.len() == outputs => return Ok(()),
                Ok(partitions) if late => {
                    return Err(ConnectorError::Config(format!(
                        "the exchange topic '{topic}' has {} partitions, and the job runs as {outputs} instances: it was made for another parallelism; delete it (and the job's state) to run at this one",
                        partitions.len()
                    )));
                }
                Err(e) if late => return Err(e),
                _ => {
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(TOPIC_RETRY_MAX);
                }
            }
        }
    }

    fn send(
        &self,
        exchange: u32,
        output: usize,
        from: usize,
        message: &ExchangeMessage,
    ) -> Result<()> {
        let topic = self.topic(exchange);
        let from = from.to_string();
        let (kind, payload, watermark) = match message {
            ExchangeMessage::Rows(batch) => ("rows", Some(ipc_bytes(batch, &topic)?), None),
            ExchangeMessage::Watermark(watermark) => {
                ("watermark", None, Some(watermark.to_string()))
            }
            ExchangeMessage::Idle => ("idle", None, None),
            ExchangeMessage::End => ("end", None, None),
            ExchangeMessage::Drained => ("drained", None, None),
        };
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: FROM,
                value: Some(from.as_str()),
            })
            .insert(Header {
                key: KIND,
                value: Some(kind),
            });
        if let Some(watermark) = &watermark {
            headers = headers.insert(Header {
                key: WATERMARK,
                value: Some(watermark.as_str()),
            });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(&topic)
            .partition(output as i32)
            .headers(headers);
        if let Some(payload) = &payload {
            record = record.payload(payload.as_slice());
        }
        self.producer.send(&topic, record)
    }

    /// Reads on a blocking task of its own, which ends when the channel's receiver goes.
    fn read(
        &self,
        exchange: u32,
        output: usize,
        offset: Option<i64>,
    ) -> Result<mpsc::Receiver<Result<ReceivedMessage>>> {
        let topic = self.topic(exchange);
        let group = format!("ferris-{}-repartition", self.job);
        let consumer: BaseConsumer = self
            .connection
            .client_config(&[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("fetch.queue.backoff.ms", "10"),
                ("isolation.level", "read_committed"),
                // A checkpoint's offset gone from the log (retention, a topic made anew) is
                // an error, never a silent jump.
                ("auto.offset.reset", "error"),
            ])
            .create()
            .map_err(|e| self.connection.error("connecting to", e))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(
                &topic,
                output as i32,
                offset.map_or(Offset::Beginning, Offset::Offset),
            )
            .map_err(|e| self.connection.error(&format!("assigning '{topic}' on"), e))?;
        let (sender, receiver) = mpsc::channel(READ_AHEAD);
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            // A round trip to the brokers: off the runtime's threads.
            if let Err(e) = connection.assign(&consumer, &topic, &assignment) {
                let _ = sender.blocking_send(Err(e));
                return;
            }
            while !sender.is_closed() {
                let Some(polled) = consumer.poll(POLL) else {
                    continue;
                };
                let received = polled
                    .map_err(|e| connection.error(&format!("reading '{topic}' from"), e))
                    .and_then(|message| {
                        decode(&message).map_err(|why| {
                            ConnectorError::Config(format!(
                                "exchange topic '{topic}' partition {} offset {}: {why}",
                                message.partition(),
                                message.offset()
                            ))
                        })
                    });
                // librdkafka reconnects by itself to a broker that went away.
                if received.as_ref().is_err_and(ConnectorError::is_transient) {
                    continue;
                }
                let failed = received.is_err();
                if sender.blocking_send(received).is_err() || failed {
                    return;
                }
            }
        });
        Ok(receiver)
    }

    fn position(&self, exchange: u32, output: usize, next_offset: Option<i64>) -> RecordBatch {
        SourcePosition {
            parts: vec![PartPosition {
                part: format!("{}/{output}", self.topic(exchange)),
                // Kafka's offsets start at 0: -1 stands for the partition's beginning.
                offset: next_offset.unwrap_or(-1),
                line: 0,
                size: 0,
            }],
        }
        .to_batch()
    }

    fn resume_offset(&self, position: &RecordBatch) -> Result<Option<i64>> {
        let position = SourcePosition::from_batch(position)?;
        Ok(position
            .parts
            .first()
            .map(|part| part.offset)
            .filter(|offset| *offset >= 0))
    }
}

/// `batch` as an Arrow IPC stream.
fn ipc_bytes(batch: &RecordBatch, topic: &str) -> Result<Vec<u8>> {
    let encode = || {
        let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
        writer.write(batch)?;
        writer.into_inner()
    };
    encode().map_err(|e| ConnectorError::arrow(format!("exchange topic '{topic}'"), e))
}

/// A message of the exchange's topic, read back.
fn decode(message: &impl Message) -> std::result::Result<ReceivedMessage, String> {
    let header = |name: &str| -> Option<String> {
        let headers = message.headers()?;
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let from = header(FROM)
        .and_then(|from| from.parse().ok())
        .ok_or("no sender header: not a message of an exchange")?;
    let message_kind = header(KIND).ok_or("no kind header: not a message of an exchange")?;
    let decoded = match message_kind.as_str() {
        "rows" => {
            let payload = message.payload().ok_or("rows without a payload")?;
            let mut reader = StreamReader::try_new(Cursor::new(payload), None)
                .map_err(|e| format!("rows not in Arrow IPC: {e}"))?;
            let batch = reader
                .next()
                .ok_or("no rows in the message")?
                .map_err(|e| format!("rows not in Arrow IPC: {e}"))?;
            ExchangeMessage::Rows(batch)
        }
        "watermark" => ExchangeMessage::Watermark(
            header(WATERMARK)
                .and_then(|w| w.parse().ok())
                .ok_or("a watermark message without its watermark")?,
        ),
        "idle" => ExchangeMessage::Idle,
        "end" => ExchangeMessage::End,
        "drained" => ExchangeMessage::Drained,
        other => return Err(format!("unknown kind '{other}'")),
    };
    Ok(ReceivedMessage {
        from,
        message: decoded,
        next_offset: message.offset() + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    fn message(headers: OwnedHeaders, payload: Option<Vec<u8>>) -> OwnedMessage {
        OwnedMessage::new(
            payload,
            None,
            "job-repartition-0".into(),
            Timestamp::NotAvailable,
            1,
            41,
            Some(headers),
        )
    }

    fn headers(from: &str, kind: &str) -> OwnedHeaders {
        OwnedHeaders::new()
            .insert(Header {
                key: FROM,
                value: Some(from),
            })
            .insert(Header {
                key: KIND,
                value: Some(kind),
            })
    }

    #[test]
    fn rows_travel_as_arrow_ipc() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("qty", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["AAPL", "MSFT"])),
                Arc::new(Int64Array::from(vec![Some(5), None])),
            ],
        )
        .unwrap();
        let bytes = ipc_bytes(&batch, "t").unwrap();
        let received = decode(&message(headers("3", "rows"), Some(bytes))).unwrap();
        assert_eq!(received.from, 3);
        assert_eq!(received.next_offset, 42);
        let ExchangeMessage::Rows(back) = received.message else {
            panic!("not rows");
        };
        assert_eq!(back, batch);
    }

    #[test]
    fn watermarks_ends_and_strangers() {
        let watermark = headers("0", "watermark").insert(Header {
            key: WATERMARK,
            value: Some("1700"),
        });
        let received = decode(&message(watermark, None)).unwrap();
        assert!(matches!(received.message, ExchangeMessage::Watermark(1700)));
        let end = decode(&message(headers("1", "end"), None)).unwrap();
        assert!(matches!(end.message, ExchangeMessage::End));
        let stranger = decode(&message(OwnedHeaders::new(), Some(b"{}".to_vec())));
        assert_eq!(
            stranger.unwrap_err(),
            "no sender header: not a message of an exchange"
        );
        let bad = decode(&message(headers("0", "rows"), Some(b"nope".to_vec()))).unwrap_err();
        assert!(bad.starts_with("rows not in Arrow IPC"), "{bad}");
    }
}
