//! `kafka_source`: a topic read as micro-batches of rows.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::connection::{GroupOffsets, KafkaConnection, METADATA_TIMEOUT, blocking, drop_aside};
use super::dead_letter::DeadLetter;
use super::metadata::{MetadataBuilder, PARTITION_COLUMN, TIMESTAMP_COLUMN, metadata_fields};
use crate::error::{ConnectorError, Result};
use crate::message::{MessageBuffer, MessageDecoder, MessageFormat};
use crate::metrics::SourceMetrics;
use crate::position::{CommittedPosition, PartPosition, SourcePosition};
use crate::records::OnError;
use crate::source::{DividedShare, Partitions, Share, SourceConnector, SourceReader};
use crate::stop::StopSignal;

/// How long a reader waits for a first message before it returns an empty batch.
pub const IDLE_TURN: Duration = Duration::from_millis(200);
/// Messages read to infer a JSON topic's schema when none is declared.
const INFER_MESSAGES: usize = 1000;
/// How long schema inference waits for messages.
const INFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a consumer group without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// At the oldest message kept (the default).
    #[default]
    Earliest,
    /// At the next message written.
    Latest,
}

impl OffsetReset {
    fn property(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }

    fn offset(self) -> Offset {
        match self {
            Self::Earliest => Offset::Beginning,
            Self::Latest => Offset::End,
        }
    }
}

/// How long an unbounded source's partition may go without messages before it no longer
/// holds the watermark back, unless `'<name>.watermark.idle.timeout'` says.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a partition short of its end may give nothing, its end not moving, before the
/// gap counts as no message (see [`KafkaSourceReader::backlogged`]): far longer than a fetch.
const STALE_GAP: Duration = Duration::from_secs(5);

/// Everything a Kafka source needs, resolved from its `WITH` options.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// The source's name in SQL.
    pub name: String,
    /// The brokers and extra librdkafka properties.
    pub connection: KafkaConnection,
    /// The topic to read.
    pub topic: String,
    /// The consumer group: processes sharing it split the partitions.
    pub group_id: String,
    /// Where to start without a committed offset.
    pub offset_reset: OffsetReset,
    /// Read up to the end of every partition, then end.
    pub bounded: bool,
    /// How message values are encoded.
    pub format: MessageFormat,
    /// The value's columns for JSON and CSV; `None` infers them from a JSON topic.
    pub schema: Option<SchemaRef>,
    /// Most messages per micro-batch.
    pub batch_size: usize,
    /// Longest wait for a micro-batch to fill after its first message.
    pub linger: Duration,
    /// What to do with a message that cannot be decoded.
    pub on_error: OnError,
}

/// A Kafka topic as a source of micro-batches.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    config: Arc<KafkaSourceConfig>,
    value_schema: SchemaRef,
    schema: SchemaRef,
    /// The partitions it reads: the topic's, or a parallel job's share of them.
    partitions: Vec<i32>,
    /// A share of a parallel job: its partitions are assigned to it, not handed out by the
    /// consumer group, so that each instance's state and positions stay its own.
    assigned: bool,
    /// Shared by a source's shares: any of their consumers commits for the group.
    progress: Arc<Progress>,
}

/// What has been read, so that it can be committed once the sink has it.
#[derive(Default)]
struct Progress {
    /// The consumer of the reader running now, if one is.
    live: Mutex<Option<LiveConsumer>>,
    /// Per partition, the offset of the next message to read.
    next: Mutex<BTreeMap<i32, i64>>,
    /// The partitions the consumer group has handed this process (a subscribed reader's).
    held: Mutex<BTreeSet<i32>>,
}

impl Progress {
    fn live(&self) -> std::sync::MutexGuard<'_, Option<LiveConsumer>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reader's consumer, as its source commits through it and lets it go.
struct LiveConsumer {
    consumer: Arc<StreamConsumer<SourceContext>>,
    /// The offsets last committed through it without waiting, until a commit that waited
    /// follows.
    unconfirmed: Option<TopicPartitionList>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Checks that the topic exists and settles the schema: declared, the format's own, or
    /// inferred from the first messages of a JSON topic.
    pub async fn try_new(config: KafkaSourceConfig) -> Result<Self> {
        let connection = config.connection.clone();
        let topic = config.topic.clone();
        let partitions = blocking(move || connection.partitions(&topic)).await?;
        let value_schema = match (config.format.own_schema(), &config.schema) {
            (Some(own), _) => own,
            (None, Some(declared)) => declared.clone(),
            (None, None) if matches!(config.format, MessageFormat::Json) => {
                let config = config.clone();
                let partitions = partitions.clone();
                blocking(move || infer_json_schema(&config, &partitions)).await?
            }
            (None, None) => {
                return Err(ConnectorError::Config(format!(
                    "source '{}': the {} format needs '{}.schema'",
                    config.name,
                    config.format.name(),
                    config.name
                )));
            }
        };
        let mut fields: Vec<_> = value_schema.fields().iter().cloned().collect();
        for field in metadata_fields() {
            if value_schema.field_with_name(field.name()).is_ok() {
                return Err(ConnectorError::Config(format!(
                    "source '{}': the message value has a column '{}', the name of a metadata column",
                    config.name,
                    field.name()
                )));
            }
            fields.push(Arc::new(field));
        }
        Ok(Self {
            schema: Arc::new(Schema::new(fields)),
            value_schema,
            partitions,
            assigned: false,
            config: Arc::new(config),
            progress: Arc::default(),
        })
    }

    /// A reader from the group's committed offsets. A bounded one is assigned every
    /// partition; an unbounded one joins the consumer group and gets its share.
    pub fn reader(
        &self,
        stop: StopSignal,
        metrics: Arc<SourceMetrics>,
    ) -> Result<KafkaSourceReader> {
        self.reader_from(None, None, stop, metrics)
    }

    /// A reader from `position` (a checkpoint's, from [`KafkaSourceReader::position`]) for
    /// the partitions it names, else from the group's committed offsets. A bounded reader is
    /// assigned those offsets; an unbounded one seeks to them as its group hands it each
    /// partition. It decodes `columns` of the schema only (`None`: all), value columns and
    /// metadata columns alike.
    pub fn reader_from(
        &self,
        position: Option<&SourcePosition>,
        columns: Option<&[usize]>,
        stop: StopSignal,
        metrics: Arc<SourceMetrics>,
    ) -> Result<KafkaSourceReader> {
        let config = &self.config;
        let context = SourceContext {
            name: config.name.clone(),
            progress: self.progress.clone(),
        };
        let consumer: StreamConsumer<SourceContext> = config
            .connection
            .client_config(&consumer_defaults(config))
            .create_with_context(context)
            .map_err(|e| config.connection.error("connecting to", e))?;
        // The position starts where reading starts, so that a checkpoint taken before a
        // partition yields anything still names it.
        // A share resumes its own partitions (a checkpoint of another parallelism names
        // every share's).
        let mut read: BTreeMap<i32, i64> = position
            .into_iter()
            .flat_map(|p| &p.parts)
            .filter_map(|p| Some((p.part.parse().ok()?, p.offset)))
            .filter(|(partition, _)| !self.assigned || self.partitions.contains(partition))
            .collect();
        let mut restore = read.clone();
        let mut starts = BTreeMap::new();
        let pending = if !self.subscribes() {
            let mut start = start_offsets(&consumer, config, &self.partitions)?;
            for (&partition, &offset) in &restore {
                start
                    .set_partition_offset(&config.topic, partition, Offset::Offset(offset))
                    .map_err(|e| config.connection.error("assigning partitions on", e))?;
            }
            restore.clear();
            for element in start.elements() {
                match element.offset() {
                    Offset::Offset(offset) => {
                        read.insert(element.partition(), offset);
                    }
                    offset => {
                        starts.insert(element.partition(), offset);
                    }
                }
            }
            config.connection.assign(&consumer, &config.topic, &start)?;
            match config.bounded {
                true => self.partitions.iter().copied().collect(),
                false => BTreeSet::new(),
            }
        } else {
            consumer
                .subscribe(&[&config.topic])
                .map_err(|e| config.connection.error("subscribing on", e))?;
            BTreeSet::new()
        };
        let consumer = Arc::new(consumer);
        *self.progress.live() = Some(LiveConsumer {
            consumer: consumer.clone(),
            unconfirmed: None,
        });
        // The value's columns come first, then the metadata columns.
        let values = self.value_schema.fields().len();
        let (value_columns, metadata_columns) = match columns {
            Some(columns) => {
                let (value, metadata): (Vec<usize>, Vec<usize>) =
                    columns.iter().partition(|&&c| c < values);
                let metadata = metadata.iter().map(|c| c - values).collect();
                (Some(value), Some(metadata))
            }
            None => (None, None),
        };
        let decoder = config.format.decoder(
            self.value_schema.clone(),
            value_columns.as_deref(),
            config.batch_size,
        )?;
        let decoded = match columns {
            Some(columns) => Arc::new(self.schema.project(columns).map_err(|e| {
                ConnectorError::arrow(format!("reading topic '{}'", config.topic), e)
            })?),
            None => self.schema.clone(),
        };
        Ok(KafkaSourceReader {
            source: self.clone(),
            decoded,
            consumer,
            messages: MessageBuffer::default(),
            origins: Vec::new(),
            metadata: MetadataBuilder::new(&config.topic, metadata_columns),
            topic: CString::new(config.topic.as_str()).map_err(|_| {
                ConnectorError::Config(format!(
                    "source '{}': a topic name holds a NUL",
                    config.name
                ))
            })?,
            read,
            restore,
            rewound: BTreeSet::new(),
            decoder,
            pending,
            starts,
            gaps: BTreeMap::new(),
            stop,
            metrics,
            finished: false,
        })
    }

    /// Whether its readers join the consumer group for their partitions (an unbounded source
    /// read whole), rather than being assigned them.
    fn subscribes(&self) -> bool {
        !self.config.bounded && !self.assigned
    }

    /// The offsets of `position` as a partition list of the topic.
    fn offsets(&self, position: &SourcePosition) -> Result<TopicPartitionList> {
        let mut offsets = TopicPartitionList::new();
        for part in &position.parts {
            let partition: i32 = part.part.parse().map_err(|_| {
                ConnectorError::Config(format!(
                    "source '{}': a checkpointed position names partition '{}'",
                    self.config.name, part.part
                ))
            })?;
            offsets
                .add_partition_offset(&self.config.topic, partition, Offset::Offset(part.offset))
                .map_err(|e| self.config.connection.error("committing offsets on", e))?;
        }
        Ok(offsets)
    }

    /// A checkpoint's position as offsets of the consumer group, each with `metadata`, to
    /// commit inside a transaction; `None` until a reader has joined the group.
    pub(crate) fn group_offsets(
        &self,
        position: &SourcePosition,
        metadata: &str,
    ) -> Result<Option<GroupOffsets>> {
        let offsets = self.offsets(position)?;
        for mut partition in offsets.elements() {
            partition.set_metadata(metadata);
        }
        Ok(self
            .live_consumer()
            .and_then(|consumer| consumer.group_metadata())
            .filter(|_| offsets.count() > 0)
            .map(|group| GroupOffsets { offsets, group }))
    }

    /// The consumer of the reader running now, if one is.
    fn live_consumer(&self) -> Option<Arc<StreamConsumer<SourceContext>>> {
        self.progress
            .live()
            .as_ref()
            .map(|live| live.consumer.clone())
    }
}

impl SourceConnector for KafkaSource {
    fn as_any(&self) -> &dyn Any {
        self
    }

    /// The consumer goes (it leaves its group as it is dropped) once its reader has too;
    /// the job's plan keeps the source, and would keep the consumer in the group until its
    /// poll interval ran out. An assigned consumer has no group to leave, yet its drop waits
    /// for a 100 ms poll of its closing queue (rust-rdkafka's, for any consumer with a group
    /// id): it goes aside, and the job ends without waiting for it.
    fn release(&self) {
        let live = self.progress.live().take();
        // One that joined its group is dropped here, leaving the group as it goes.
        let Some(live) = live.filter(|_| !self.subscribes()) else {
            return;
        };
        // Dropped in place, it would wait for a commit still on its way: here that commit is
        // made again and waited for (a round trip), as the process may end as soon as its
        // job has.
        if let Some(offsets) = &live.unconfirmed
            && let Err(e) = live.consumer.commit(offsets, CommitMode::Sync)
        {
            tracing::warn!(
                "source '{}': the last offsets were not committed ({e}): a run without checkpoints starts before them",
                self.config.name
            );
        }
        drop_aside(live.consumer)
    }

    /// The columns of a row: the value's, then the metadata columns.
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_bounded(&self) -> bool {
        self.config.bounded
    }

    fn connector(&self) -> &'static str {
        "kafka_source"
    }

    fn location(&self) -> String {
        format!(
            "kafka://{}/{}",
            self.config.connection.bootstrap_servers, self.config.topic
        )
    }

    fn format(&self) -> String {
        self.config.format.name().to_string()
    }

    /// A message's timestamp.
    fn event_time_column(&self) -> Option<&'static str> {
        Some(TIMESTAMP_COLUMN)
    }

    /// Partitions held by other members of an unbounded source's group never reach this
    /// process: without a timeout they would hold its watermark back for ever.
    fn idle_timeout(&self) -> Option<Duration> {
        (!self.config.bounded).then_some(DEFAULT_IDLE_TIMEOUT)
    }

    /// The topic's partitions when the source was opened (or its share's), read side by
    /// side.
    fn partitions(&self) -> Option<Partitions> {
        Some(Partitions {
            column: PARTITION_COLUMN,
            ids: self.partitions.clone(),
        })
    }

    /// Divided by partition: partition p falls to share p mod the count; a share without
    /// a partition is left out.
    fn split(&self, count: usize) -> BoxFuture<'_, Result<Option<Vec<DividedShare>>>> {
        let shares = (0..count)
            .map(|index| Share { index, count })
            .filter_map(|share| {
                let partitions: Vec<i32> = self
                    .partitions
                    .iter()
                    .copied()
                    .filter(|p| p.rem_euclid(count as i32) as usize == share.index)
                    .collect();
                let source = Self {
                    partitions,
                    assigned: true,
                    ..self.clone()
                };
                (!source.partitions.is_empty())
                    .then(|| (share, Arc::new(source) as Arc<dyn SourceConnector>))
            })
            .collect();
        async move { Ok(Some(shares)) }.boxed()
    }

    fn skips_unread_columns(&self) -> bool {
        self.config.format.decodes_columns_apart()
    }

    fn metadata_columns(&self) -> Vec<String> {
        metadata_fields().iter().map(|f| f.name().clone()).collect()
    }

    fn reader(
        &self,
        position: Option<&SourcePosition>,
        columns: Option<&[usize]>,
        stop: StopSignal,
        metrics: Arc<SourceMetrics>,
    ) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(
            self.reader_from(position, columns, stop, metrics)?,
        ))
    }

    /// Commits `position` (a checkpoint's, once complete) through the running reader's
    /// consumer, without waiting: it shows lag, and starts a run without checkpoints there.
    fn commit_position(&self, position: &SourcePosition) -> Result<()> {
        let offsets = self.offsets(position)?;
        let mut live = self.progress.live();
        match live.as_mut() {
            Some(live) if offsets.count() > 0 => {
                live.consumer
                    .commit(&offsets, CommitMode::Async)
                    .map_err(|e| self.config.connection.error("committing offsets on", e))?;
                live.unconfirmed = Some(offsets);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The offsets the consumer group has committed, as a position, with their metadata.
    fn committed_position(&self) -> BoxFuture<'_, Result<Option<CommittedPosition>>> {
        let source = self.clone();
        blocking(move || {
            let config = &source.config;
            let consumer: BaseConsumer = config
                .connection
                .client_config(&consumer_defaults(config))
                .create()
                .map_err(|e| config.connection.error("connecting to", e))?;
            let mut wanted = TopicPartitionList::new();
            for &p in &source.partitions {
                wanted.add_partition(&config.topic, p);
            }
            let committed = consumer.committed_offsets(wanted, METADATA_TIMEOUT);
            // It never joined the group: nothing to wait for as it goes.
            drop_aside(consumer);
            let committed = committed
                .map_err(|e| config.connection.error("reading committed offsets from", e))?;
            let mut found = CommittedPosition::default();
            for element in committed.elements() {
                if let Offset::Offset(offset) = element.offset() {
                    found.position.parts.push(PartPosition {
                        part: element.partition().to_string(),
                        offset,
                        line: 0,
                        size: 0,
                    });
                    found.metadata.push(element.metadata().to_string());
                }
            }
            Ok(Some(found))
        })
        .boxed()
    }

    /// Commits the offsets of everything read so far to the consumer group. Call it once the
    /// sink has everything those messages produced.
    fn commit(&self) -> Result<()> {
        let consumer = self.live_consumer();
        let next = self
            .progress
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(consumer) = consumer.filter(|_| !next.is_empty()) else {
            return Ok(());
        };
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets
                .add_partition_offset(&self.config.topic, partition, Offset::Offset(offset))
                .map_err(|e| self.config.connection.error("committing offsets on", e))?;
        }
        // Not under the consumer slot's lock: a commit may wait out a broker that is down,
        // and the reader takes that lock as it goes.
        let committed = consumer.commit(&offsets, CommitMode::Sync);
        if committed.is_ok()
            && let Some(live) = self.progress.live().as_mut()
        {
            // Later than any commit not waited for: that one must not be made again.
            live.unconfirmed = None;
        }
        match committed {
            // The group rebalanced under the commit (a member joined or left as this one
            // stopped): the partitions' next owner resumes from the last offsets committed,
            // reading some messages again, as at least once allows. (A reader assigned its
            // partitions has no group generation to lose: such an error is a real one.)
            Err(e)
                if self.subscribes()
                    && e.rdkafka_error_code().is_some_and(|code| {
                        matches!(
                            code,
                            RDKafkaErrorCode::IllegalGeneration
                                | RDKafkaErrorCode::UnknownMemberId
                                | RDKafkaErrorCode::RebalanceInProgress
                        )
                    }) =>
            {
                tracing::warn!(
                    "source '{}': the last offsets were not committed, the consumer group rebalancing ({e}): their next reader reads the messages since the last commit again",
                    self.config.name
                );
                Ok(())
            }
            outcome => {
                outcome.map_err(|e| self.config.connection.error("committing offsets on", e))
            }
        }
    }
}

fn consumer_defaults(config: &KafkaSourceConfig) -> Vec<(&str, &str)> {
    vec![
        ("group.id", config.group_id.as_str()),
        // Offsets are committed by the job, after the sink has the results.
        ("enable.auto.commit", "false"),
        // With its queue full, librdkafka waits this long before it fetches again (1 s by
        // default): a reader that takes its messages as fast as they come would sit idle.
        ("fetch.queue.backoff.ms", "10"),
        ("auto.offset.reset", config.offset_reset.property()),
        // A bounded read ends at the partition ends that fetches report.
        (
            "enable.partition.eof",
            if config.bounded { "true" } else { "false" },
        ),
    ]
}

/// The group's committed offset of each partition, else where the reset option says.
fn start_offsets<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    config: &KafkaSourceConfig,
    partitions: &[i32],
) -> Result<TopicPartitionList> {
    let mut wanted = TopicPartitionList::new();
    for &p in partitions {
        wanted.add_partition(&config.topic, p);
    }
    let committed = consumer
        .committed_offsets(wanted, METADATA_TIMEOUT)
        .map_err(|e| config.connection.error("reading committed offsets from", e))?;
    let mut start = TopicPartitionList::new();
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(n) => Offset::Offset(n),
            _ => config.offset_reset.offset(),
        };
        start
            .add_partition_offset(&config.topic, element.partition(), offset)
            .map_err(|e| config.connection.error("assigning partitions on", e))?;
    }
    Ok(start)
}

/// Reads up to [`INFER_MESSAGES`] messages from the start of every partition, without
/// committing, and infers their columns. (Not from the group's position: a group that has
/// read everything would leave nothing to infer from.)
fn infer_json_schema(config: &KafkaSourceConfig, partitions: &[i32]) -> Result<SchemaRef> {
    let mut defaults = consumer_defaults(config);
    defaults.retain(|(k, _)| *k != "enable.partition.eof");
    defaults.push(("enable.partition.eof", "true"));
    let consumer: BaseConsumer = config
        .connection
        .client_config(&defaults)
        .create()
        .map_err(|e| config.connection.error("connecting to", e))?;
    let mut start = TopicPartitionList::new();
    for &p in partitions {
        start
            .add_partition_offset(&config.topic, p, Offset::Beginning)
            .map_err(|e| config.connection.error("assigning partitions on", e))?;
    }
    config.connection.assign(&consumer, &config.topic, &start)?;
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + INFER_TIMEOUT;
    while values.len() < INFER_MESSAGES
        && at_end.len() < partitions.len()
        && std::time::Instant::now() < deadline
    {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(config.connection.error("reading from", e)),
            Some(Ok(message)) => {
                // Unparseable messages are left to the reader's `on.error`.
                if let Some(Ok(value)) = message
                    .payload()
                    .map(serde_json::from_slice::<serde_json::Value>)
                {
                    values.push(value);
                }
            }
        }
    }
    if values.is_empty() {
        return Err(ConnectorError::Config(format!(
            "source '{}': topic '{}' has no JSON messages to infer columns from; declare them with '{}.schema'",
            config.name, config.topic, config.name
        )));
    }
    let schema = arrow::json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| {
            ConnectorError::arrow(
                format!("inferring the columns of topic '{}'", config.topic),
                e,
            )
        })?;
    Ok(Arc::new(schema))
}

/// Tells which partitions a process holds, and forgets the progress of revoked ones so that
/// their next owner's position is never overwritten.
struct SourceContext {
    name: String,
    progress: Arc<Progress>,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let list = |partitions: &TopicPartitionList| {
            partitions
                .elements()
                .iter()
                .map(|e| e.partition().to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.progress
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(partitions.elements().iter().map(|e| e.partition()));
                tracing::info!(
                    "source '{}': assigned partitions [{}]",
                    self.name,
                    list(partitions)
                );
            }
            Rebalance::Revoke(partitions) => {
                let mut next = self.progress.next.lock().unwrap_or_else(|e| e.into_inner());
                let mut held = self.progress.held.lock().unwrap_or_else(|e| e.into_inner());
                for element in partitions.elements() {
                    next.remove(&element.partition());
                    held.remove(&element.partition());
                }
                tracing::info!(
                    "source '{}': revoked partitions [{}]",
                    self.name,
                    list(partitions)
                );
            }
            Rebalance::Error(e) => tracing::warn!("source '{}': rebalance failed: {e}", self.name),
        }
    }
}

/// Reads one Kafka source's micro-batches.
pub struct KafkaSourceReader {
    source: KafkaSource,
    /// The columns it decodes.
    decoded: SchemaRef,
    consumer: Arc<StreamConsumer<SourceContext>>,
    messages: MessageBuffer,
    /// Partition and offset of each message in `messages`.
    origins: Vec<(i32, i64)>,
    metadata: MetadataBuilder,
    /// Offsets of the next message, per partition, as of the current micro-batch.
    read: BTreeMap<i32, i64>,
    /// Where a checkpoint says partitions resume, until each is seen there.
    restore: BTreeMap<i32, i64>,
    /// Partitions sent back to where this reader was, after a rebalance handed them over at
    /// an earlier offset, until a message of theirs is taken: one seek each, so that an
    /// offset gone from the log resets as `auto.offset.reset` says instead of seeking again.
    rewound: BTreeSet<i32>,
    decoder: MessageDecoder,
    /// Partitions of a bounded read not yet at their end.
    pending: BTreeSet<i32>,
    /// Where reading starts in partitions held but not read from yet (the group's committed
    /// offset, else where the reset option says), to tell whether they have a backlog.
    starts: BTreeMap<i32, Offset>,
    /// Per partition short of its end: where the reader and the end stood, and since when
    /// neither has moved.
    gaps: BTreeMap<i32, (i64, i64, std::time::Instant)>,
    /// The topic's name for librdkafka's C calls.
    topic: CString,
    stop: StopSignal,
    metrics: Arc<SourceMetrics>,
    finished: bool,
}

impl Drop for KafkaSourceReader {
    /// A reader gone (its job ended or starts again) waits for nothing.
    fn drop(&mut self) {
        self.metrics.set_unavailable(None);
        self.metrics.set_lag(Default::default());
    }
}

impl SourceReader for KafkaSourceReader {
    fn position(&self) -> SourcePosition {
        KafkaSourceReader::position(self)
    }

    /// Each partition's, from the end offsets the client last fetched.
    fn report_lag(&self) {
        KafkaSourceReader::report_lag(self)
    }

    fn backlogged(&mut self) -> Vec<i32> {
        KafkaSourceReader::backlogged(self)
    }

    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>> {
        KafkaSourceReader::next_batch(self).boxed()
    }
}

impl KafkaSourceReader {
    /// The offset of the next message of every partition read, as of the last batch.
    pub fn position(&self) -> SourcePosition {
        SourcePosition {
            parts: self
                .read
                .iter()
                .map(|(partition, offset)| PartPosition {
                    part: partition.to_string(),
                    offset: *offset,
                    line: 0,
                    size: 0,
                })
                .collect(),
        }
    }

    /// The next micro-batch; `None` once a bounded read is at every partition's end, or the
    /// stop signal fired. With no message for [`IDLE_TURN`], an empty batch, so that the
    /// caller gets a turn (to checkpoint) while the topic is quiet.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.finished {
            return Ok(None);
        }
        self.fill().await?;
        let batch = self.decode()?;
        self.note_progress();
        if self.source.subscribes() {
            self.learn_starts().await;
        }
        self.report_lag();
        if self.finished && batch.num_rows() == 0 {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    /// Hands what has been read to the source's progress, for the next commit.
    fn note_progress(&self) {
        let progress = &self.source.progress;
        let mut next = progress.next.lock().unwrap_or_else(|e| e.into_inner());
        if self.source.subscribes() {
            // Only the partitions held now: one revoked meanwhile (its progress forgotten by
            // the rebalance) is its next owner's to commit.
            let held = progress.held.lock().unwrap_or_else(|e| e.into_inner());
            next.extend(self.read.iter().filter(|(p, _)| held.contains(p)));
        } else {
            next.extend(&self.read);
        }
    }

    /// Puts each partition's lag in the reader's metrics: how many messages it has after the
    /// reader's position, by the end offset the client last fetched (no broker round trip;
    /// the client fetches ahead even while nothing is read). Partitions whose end is not
    /// known yet are left out.
    pub fn report_lag(&self) {
        let lag = self
            .read
            .iter()
            .filter_map(|(&partition, &next)| {
                let (_, high) = self.end_offsets(partition)?;
                Some((partition, (high - next).max(0)))
            })
            .collect();
        self.metrics.set_lag(lag);
    }

    /// The partitions this reader holds that have messages it has not read: short of the end
    /// offset the client last fetched, or with an end not fetched yet. However long such a
    /// partition gave nothing (the reader waited for its group, was paused), it is behind,
    /// not idle. A gap that gives nothing for [`STALE_GAP`] while its end stays put is no
    /// message: a transaction's commit marker, or records of an aborted one, which a
    /// committed read never gets.
    pub fn backlogged(&mut self) -> Vec<i32> {
        let now = std::time::Instant::now();
        let held = self.held();
        self.gaps.retain(|p, _| held.contains(p));
        let mut behind = Vec::new();
        for partition in held {
            let Some((low, high)) = self.end_offsets(partition) else {
                behind.push(partition);
                continue;
            };
            let next = match (self.read.get(&partition), self.starts.get(&partition)) {
                (Some(&next), _) | (None, Some(&Offset::Offset(next))) => next,
                (None, Some(Offset::Beginning)) => low,
                // At the end, or a start not learnt: only new messages will come.
                (None, _) => high,
            };
            if next >= high {
                self.gaps.remove(&partition);
                continue;
            }
            let gap = self.gaps.entry(partition).or_insert((next, high, now));
            if (gap.0, gap.1) != (next, high) {
                *gap = (next, high, now);
            }
            if now.duration_since(gap.2) < STALE_GAP {
                behind.push(partition);
            }
        }
        behind
    }

    /// The partitions this reader reads now: its share's, or those its group handed it.
    fn held(&self) -> Vec<i32> {
        if self.source.subscribes() {
            let held = self.source.progress.held.lock();
            held.unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied()
                .collect()
        } else {
            self.source.partitions.clone()
        }
    }

    /// The low and high offsets of `partition` as the client last fetched them, if it has.
    fn end_offsets(&self, partition: i32) -> Option<(i64, i64)> {
        let client = self.consumer.client().native_ptr();
        let (mut low, mut high) = (-1_i64, -1_i64);
        // SAFETY: the client lives as long as `self.consumer`; the topic is a NUL-terminated
        // string, and librdkafka only writes the two offsets.
        let error = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                client,
                self.topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        let known = error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            && high >= 0;
        known.then_some((low.max(0), high))
    }

    /// Learns where reading starts in the partitions the group handed this reader since the
    /// last batch, from the group's committed offsets (one round trip per assignment, off the
    /// runtime's threads). Unknown starts count as at the end, as before this was known.
    async fn learn_starts(&mut self) {
        let held = self.held();
        self.starts.retain(|p, _| held.contains(p));
        let unknown: Vec<i32> = held
            .into_iter()
            .filter(|p| !self.read.contains_key(p) && !self.starts.contains_key(p))
            .collect();
        if unknown.is_empty() {
            return;
        }
        let consumer = self.consumer.clone();
        let config = self.source.config.clone();
        let asked = unknown.clone();
        let found = tokio::task::spawn_blocking(move || {
            start_offsets(consumer.as_ref(), &config, &asked).map(|list| {
                list.elements()
                    .iter()
                    .map(|e| (e.partition(), e.offset()))
                    .collect::<Vec<_>>()
            })
        })
        .await;
        let error = match found {
            Ok(Ok(found)) => return self.starts.extend(found),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        // Not asked again each batch: these partitions go idle as before.
        tracing::warn!(
            "source '{}': the start of partitions {unknown:?} is not known, so they can go idle while behind: {error}",
            self.source.config.name
        );
        self.starts
            .extend(unknown.into_iter().map(|p| (p, Offset::End)));
    }

    /// Gathers messages until the batch is full, its linger time is up, a bounded read is
    /// done, or the stop signal fires.
    async fn fill(&mut self) -> Result<()> {
        let config = self.source.config.clone();
        let consumer = self.consumer.clone();
        let separator = self.decoder.separator();
        let mut deadline = None;
        let idle = tokio::time::Instant::now() + IDLE_TURN;
        while self.messages.len() < config.batch_size {
            if config.bounded && self.pending.is_empty() {
                self.finished = true;
                break;
            }
            // Checked before a message is taken off the queue: a message taken and then left
            // out of the batch would be lost, as the next one's offset moves past it.
            if self.stop.is_stopped() {
                self.finished = true;
                break;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            // While messages are waiting, take them without the select below: its futures
            // cost more than the message.
            let received = match consumer.recv().now_or_never() {
                Some(received) => received,
                None => {
                    let linger = tokio::time::sleep_until(deadline.unwrap_or(idle));
                    tokio::select! {
                        biased;
                        _ = self.stop.stopped() => {
                            self.finished = true;
                            break;
                        }
                        _ = linger => break,
                        received = consumer.recv() => received,
                    }
                }
            };
            let message = match received {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.pending.remove(&partition);
                    continue;
                }
                Err(e) => {
                    let error = config
                        .connection
                        .error(&format!("reading topic '{}' from", config.topic), e);
                    if !error.is_transient() {
                        return Err(error);
                    }
                    // librdkafka reconnects by itself: wait for it, saying why.
                    if self
                        .metrics
                        .set_unavailable(Some(error.to_string()))
                        .is_none()
                    {
                        tracing::warn!("source '{}': {error}; waiting", config.name);
                    }
                    continue;
                }
            };
            if self.metrics.set_unavailable(None).is_some() {
                tracing::info!("source '{}': reading again", config.name);
            }
            let partition = message.partition();
            let resume = match self.restore.remove(&partition) {
                // The group handed the partition over at its committed offset, not the
                // checkpoint's: go there (once: an offset gone from the log resets as
                // `auto.offset.reset` says).
                Some(resume) => (message.offset() != resume).then_some(resume),
                // The group handed back a partition this reader had read further (a
                // rebalance, as when the broker restarts) at its committed offset: what was
                // read since is in the job's state already, so go on from where it was.
                None if self.rewound.contains(&partition) => None,
                None => self
                    .read
                    .get(&partition)
                    .copied()
                    .filter(|&next| message.offset() < next)
                    .inspect(|_| {
                        self.rewound.insert(partition);
                    }),
            };
            if let Some(resume) = resume {
                // librdkafka drops what it fetched before.
                consumer
                    .seek(
                        &config.topic,
                        message.partition(),
                        Offset::Offset(resume),
                        METADATA_TIMEOUT,
                    )
                    .map_err(|e| config.connection.error("seeking on", e))?;
                continue;
            }
            self.read.insert(partition, message.offset() + 1);
            if !self.rewound.is_empty() {
                self.rewound.remove(&partition);
            }
            // A tombstone (no value) deletes a key in a compacted topic; it is no row.
            let Some(payload) = message.payload() else {
                continue;
            };
            self.messages.push(payload, separator);
            self.origins.push((message.partition(), message.offset()));
            self.metadata.push(&message);
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + config.linger);
        }
        Ok(())
    }

    /// Decodes the gathered messages into one batch, handling the malformed ones.
    fn decode(&mut self) -> Result<RecordBatch> {
        let config = &self.source.config;
        let (values, bad) = self.decoder.decode(&mut self.messages)?;
        let mut metadata = self.metadata.finish();
        if !bad.is_empty() {
            self.reject(&bad)?;
            let mut keep = vec![true; self.messages.len()];
            for (i, _) in &bad {
                keep[*i] = false;
            }
            let keep = BooleanArray::from(keep);
            metadata = metadata
                .iter()
                .map(|column| arrow::compute::filter(column, &keep))
                .collect::<std::result::Result<Vec<ArrayRef>, _>>()
                .map_err(|e| ConnectorError::arrow("dropping malformed messages", e))?;
        }
        self.messages.clear();
        self.origins.clear();
        let mut columns = values.columns().to_vec();
        columns.extend(metadata);
        let batch = RecordBatch::try_new(self.decoded.clone(), columns)
            .map_err(|e| ConnectorError::arrow(format!("reading topic '{}'", config.topic), e))?;
        self.metrics.add_records(batch.num_rows());
        self.metrics.add_bad(bad.len());
        Ok(batch)
    }

    fn reject(&self, bad: &[(usize, String)]) -> Result<()> {
        let config = &self.source.config;
        match &config.on_error {
            OnError::Fail => {
                let (i, reason) = &bad[0];
                let (partition, offset) = self.origins[*i];
                Err(ConnectorError::MalformedMessage {
                    topic: config.topic.clone(),
                    partition,
                    offset,
                    reason: reason.clone(),
                })
            }
            OnError::Skip => Ok(()),
            OnError::DeadLetter(file) => {
                let records: Vec<_> = bad
                    .iter()
                    .map(|(i, reason)| crate::BadRecord {
                        file: format!("kafka:{}/{}", config.topic, self.origins[*i].0),
                        line: self.origins[*i].1 as u64,
                        reason: reason.clone(),
                        raw: String::from_utf8_lossy(self.messages.get(*i)).into_owned(),
                    })
                    .collect();
                file.write(&config.name, &records)
            }
            OnError::DeadLetterTopic(topic) => {
                let letters: Vec<_> = bad
                    .iter()
                    .map(|(i, reason)| {
                        let (partition, offset) = self.origins[*i];
                        DeadLetter {
                            origin: format!("{}/{partition}@{offset}", config.topic),
                            key: None,
                            value: self.messages.get(*i),
                            reason,
                        }
                    })
                    .collect();
                topic.write(&config.name, &letters)
            }
        }
    }
}
