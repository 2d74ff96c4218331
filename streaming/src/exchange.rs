//! Moves rows between the parallel instances of a plan: [`ExchangeExec`].
//!
//! An exchange reads every partition of its input on a task of its own (a sender) and
//! hands each row to one of its outputs: by its key's group (so that each key's state lives
//! in one instance of the operator above: see `key_groups.rs`), or all to one output (a
//! merge). Along with
//! the rows it carries what the rows alone cannot:
//! - **watermarks**: rows stamped at a source carry the watermark of their own split; an
//!   output gives each row the least watermark of all the splits feeding it, as Flink and
//!   Arroyo merge watermarks over input channels. A split that has sent nothing yet holds
//!   every other back; one that has ended, or has been idle for the source's idle timeout,
//!   holds nothing back. When the merged watermark moves on without a row (a sender's
//!   watermark, end or idleness), the output gives a batch of no rows carrying it
//!   ([`watermark_of`]), so that windows close in an instance whose keys get no rows. A
//!   window aggregate's rows carry no watermark: its operator writes its own in batches of
//!   no rows, which a sender passes on as such, and the outputs merge those alone;
//! - **checkpoint markers**: a sender passes a marker on once everything below the exchange
//!   has cut and its input has nothing ready; an output that has read every sender's marker
//!   has given on everything before the cut (see `checkpoint.rs`);
//! - **ends and errors**, from every sender to every output.
//!
//! In one process, senders and outputs meet in bounded in-memory channels, whose back
//! pressure holds a fast sender to the pace of the slowest output. When the job's instances
//! run in several processes (`process_instance.rs`), every exchange but the one in front
//! of the sink crosses them: this process's senders write to the transport, its one output
//! reads the transport like a source (its offset cut at each checkpoint, held until the
//! job releases the cut), and a sender reports its cut to the barrier itself instead of
//! sending a marker. A sender whose input has been silent for the idle timeout says so, as
//! the output cannot tell silence from a sender whose messages wait in the transport.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, TimestampMillisecondArray};
use arrow::compute::max;
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use ferris_connectors::{ExchangeMessage, ExchangeTransport, ReceivedMessage};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::busy::{BusyTime, Timed};
use crate::checkpoint::{
    self, CheckpointBarrier, ExchangeBarrier, ExchangeLevel, SenderBarrier, SourceBarrier,
};
use crate::error::StreamingError;
use crate::key_groups;
use crate::process_instance::ProcessInstance;
use crate::task_context::context_with;

/// How an exchange merges the watermarks of its senders: stamped on their rows, or carried
/// by their batches of no rows alone.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkMerge {
    /// The column holding each row's watermark; `None`: the rows carry none (a window's
    /// rows), their sender's watermark comes in batches of no rows ([`watermark_batch`]).
    pub column: Option<usize>,
    /// A split silent this long no longer holds the others back (the source's idle
    /// timeout); `None`: it always does until it ends.
    pub idle_timeout: Option<Duration>,
}

/// The schema metadata of a batch of no rows that only moves the watermark on.
const WATERMARK_ONLY: &str = "ferris.exchange.watermark";

/// The watermark a batch of no rows carries, if it is one.
pub fn watermark_of(batch: &RecordBatch) -> Option<i64> {
    (batch.num_rows() == 0)
        .then(|| batch.schema().metadata().get(WATERMARK_ONLY)?.parse().ok())
        .flatten()
}

/// A batch of no rows of `schema` that only moves the watermark on to `watermark`.
pub fn watermark_batch(schema: &SchemaRef, watermark: i64) -> RecordBatch {
    let mut metadata = schema.metadata().clone();
    metadata.insert(WATERMARK_ONLY.into(), watermark.to_string());
    let schema = arrow::datatypes::Schema::new_with_metadata(schema.fields().clone(), metadata);
    RecordBatch::new_empty(Arc::new(schema))
}

/// Batches a sender may have queued for one output before it waits.
const CHANNEL_BATCHES: usize = 4;

/// Where an exchange sends each row.
#[derive(Debug, Clone)]
pub enum ExchangeRouting {
    /// By the key group of these expressions, over this many outputs: hash partitioned,
    /// though not by DataFusion's hash modulo the outputs (each output owns a range of key
    /// groups, so that state moves between parallelisms by key group).
    Hash(Vec<Arc<dyn PhysicalExpr>>, usize),
    /// Everything to one output.
    Merge,
}

/// Rows from every partition of its input, to the output their key (or the merge) says.
#[derive(Debug)]
pub struct ExchangeExec {
    input: Arc<dyn ExecutionPlan>,
    routing: ExchangeRouting,
    /// Its level among the plan's exchanges: one above the highest exchange below it.
    level: u32,
    /// Its number among the exchanges that cross processes when the job's instances run
    /// in several; `None` for the one in front of the sink, which never does.
    crossing: Option<u32>,
    /// How watermarks are merged, while rows carry one.
    watermark: Option<WatermarkMerge>,
    /// Why the plan has it (for EXPLAIN).
    why: String,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// The outputs of the current execution, taken one by one.
    outputs: Mutex<Vec<Option<Output>>>,
}

impl ExchangeExec {
    /// An exchange routing `input`'s rows as `routing` says, at `level`, merging the
    /// watermarks its rows carry as `watermark` says; `why` is shown by EXPLAIN.
    /// `crossing`: its number among the exchanges that cross processes when instances run
    /// in several (`None`: it never does).
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        routing: ExchangeRouting,
        level: u32,
        crossing: Option<u32>,
        watermark: Option<WatermarkMerge>,
        why: String,
    ) -> Self {
        let partitioning = match &routing {
            ExchangeRouting::Hash(exprs, n) => Partitioning::Hash(exprs.clone(), *n),
            ExchangeRouting::Merge => Partitioning::UnknownPartitioning(1),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            partitioning,
            EmissionType::Incremental,
            input.properties().boundedness,
        );
        Self {
            input,
            routing,
            level,
            crossing,
            watermark,
            why,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            outputs: Mutex::new(Vec::new()),
        }
    }

    /// Its level among the plan's exchanges.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Whether it merges the watermarks its rows carry.
    pub fn merges_watermarks(&self) -> bool {
        self.watermark.is_some()
    }

    fn output_count(&self) -> usize {
        self.properties.output_partitioning().partition_count()
    }

    /// Starts an execution: every input partition on a sender task, one channel per output;
    /// across processes, this process's senders and outputs on the transport.
    fn start(&self, context: &Arc<TaskContext>) -> Result<Vec<Option<Output>>> {
        let barrier = context
            .session_config()
            .get_extension::<CheckpointBarrier>();
        // The pipelines it reads are one level below it.
        let below = context_with(
            context,
            Arc::new(ExchangeLevel(self.level.saturating_sub(1))),
        );
        let inputs = self.input.output_partitioning().partition_count();
        let outputs = self.output_count();
        // The senders' work is the job's, as its own task's is.
        let busy = context.session_config().get_extension::<BusyTime>();
        let crossing = self.crossing.zip(ProcessInstance::of(context));
        let mut channels = Vec::new();
        let mut receivers = Vec::new();
        let ours: Vec<usize> = match &crossing {
            None => {
                for _ in 0..outputs {
                    let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES * inputs.max(1));
                    channels.push(sender);
                    receivers.push(receiver);
                }
                (0..inputs).collect()
            }
            Some((exchange, instance)) => {
                instance
                    .transport
                    .open(*exchange, outputs)
                    .map_err(transport_error)?;
                (0..inputs).filter(|p| instance.runs(*p)).collect()
            }
        };
        let status = Arc::new(watch::Sender::new(SendersStatus {
            running: ours.len(),
            error: None,
        }));
        let mut tasks = JoinSet::new();
        for partition in ours {
            let outbox = match &crossing {
                None => Outbox::Local(channels.clone()),
                Some((exchange, instance)) => Outbox::Remote {
                    transport: instance.transport.clone(),
                    exchange: *exchange,
                    outputs,
                    cut: barrier.as_ref().map(|b| b.register_exchange(self.level)),
                    status: status.clone(),
                },
            };
            let sender = Sender {
                index: partition,
                input: self.input.execute(partition, below.clone())?,
                outbox,
                keys: match &self.routing {
                    ExchangeRouting::Hash(exprs, _) => Some(KeyRouting {
                        exprs: exprs.clone(),
                        time: MetricBuilder::new(&self.metrics)
                            .subset_time("route_time", partition),
                    }),
                    ExchangeRouting::Merge => None,
                },
                watermark: self.watermark.and_then(|w| w.column),
                sent_watermarks: vec![i64::MIN; outputs],
                barrier: barrier.as_ref().map(|b| b.exchange_senders(self.level)),
                marked: barrier.as_ref().map_or(0, |b| b.epoch()),
                // Only a sender on a transport says it is idle: its outputs cannot tell.
                idle: crossing.as_ref().and_then(|_| {
                    let timeout = self.watermark?.idle_timeout?;
                    Some(Silence {
                        timeout,
                        since: Instant::now(),
                        told: false,
                        held: None,
                    })
                }),
            };
            let work = sender.run_reporting_panics();
            match &busy {
                Some(busy) => tasks.spawn(Timed::of_instance(work, busy.clone(), partition)),
                None => tasks.spawn(work),
            };
        }
        let tasks = Arc::new(Mutex::new(tasks));
        let mut receivers = receivers.into_iter();
        let mut outputs_made = Vec::new();
        for partition in 0..outputs {
            // What the senders had said before the checkpoint restored, if it is one.
            let mut marks = None;
            let (inbox, watermark) = match &crossing {
                None => (
                    Inbox::Local(receivers.next().expect("one per output")),
                    self.watermark,
                ),
                Some((exchange, instance)) if instance.runs(partition) => {
                    let name = format!("{TRANSPORT_OUTPUT}{exchange}[{partition}]");
                    let mut source = barrier.as_ref().map(|b| b.register_source(&name));
                    let restored = source.as_mut().and_then(SourceBarrier::take_restored);
                    let offset = match &restored {
                        Some(position) => instance
                            .transport
                            .resume_offset(position)
                            .map_err(transport_error)?,
                        None => None,
                    };
                    marks = restored.and_then(|p| p.schema().metadata().get(SENDER_MARKS).cloned());
                    let messages = instance
                        .transport
                        .read(*exchange, partition, offset)
                        .map_err(transport_error)?;
                    let inbox = Inbox::Remote(RemoteInbox {
                        messages,
                        transport: instance.transport.clone(),
                        exchange: *exchange,
                        output: partition,
                        offset,
                        source,
                        status: status.subscribe(),
                        _status: status.clone(),
                    });
                    // Its senders say when they are idle.
                    let watermark = self.watermark.map(|w| WatermarkMerge {
                        idle_timeout: None,
                        ..w
                    });
                    (inbox, watermark)
                }
                Some(_) => (Inbox::Elsewhere(status.subscribe()), None),
            };
            let local = matches!(inbox, Inbox::Local(_));
            let mut output = Output {
                inbox,
                senders: inputs,
                marked: vec![0; inputs],
                ended: vec![false; inputs],
                drained: vec![false; inputs],
                watermarks: vec![None; inputs],
                idle: vec![false; inputs],
                heard: vec![Instant::now(); inputs],
                // Until it is first polled, nobody listens either.
                returned: Some(Instant::now()),
                given: i64::MIN,
                schema: self.schema(),
                watermark,
                barrier: barrier
                    .as_ref()
                    .filter(|_| local)
                    .map(|b| b.register_exchange(self.level)),
                output_rows: MetricBuilder::new(&self.metrics).output_rows(partition),
                _tasks: tasks.clone(),
            };
            if let Some(marks) = marks {
                output.restore_marks(&marks)?;
            }
            outputs_made.push(Some(output));
        }
        Ok(outputs_made)
    }
}

impl DisplayAs for ExchangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let inputs = self.input.output_partitioning().partition_count();
        match &self.routing {
            ExchangeRouting::Hash(exprs, n) => {
                let keys: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                write!(
                    f,
                    "ExchangeExec: hash=[{}], {inputs} -> {n}",
                    keys.join(", ")
                )?;
            }
            ExchangeRouting::Merge => write!(f, "ExchangeExec: merge, {inputs} -> 1")?,
        }
        if self.watermark.is_some() {
            write!(f, ", watermark=min")?;
        }
        write!(f, ", why: {}", self.why)
    }
}

impl ExecutionPlan for ExchangeExec {
    fn name(&self) -> &str {
        "ExchangeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let mut recursion = TreeNodeRecursion::Continue;
        if let ExchangeRouting::Hash(exprs, _) = &self.routing {
            for expr in exprs {
                recursion = f(expr)?;
                if recursion == TreeNodeRecursion::Stop {
                    break;
                }
            }
        }
        Ok(recursion)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.routing.clone(),
            self.level,
            self.crossing,
            self.watermark,
            self.why.clone(),
        )))
    }

    /// The first output taken starts an execution (every sender); the others take theirs.
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        if partition >= self.output_count() {
            return Err(DataFusionError::Internal(format!(
                "ExchangeExec has {} outputs, not {}",
                self.output_count(),
                partition + 1
            )));
        }
        // Each execution of the plan takes every output once: an output taken already
        // means a new execution.
        if outputs.get(partition).is_none_or(Option::is_none) {
            *outputs = self.start(&context)?;
        }
        let output = outputs[partition].take().expect("just started");
        let rows = futures::stream::unfold(output, |mut output| async move {
            let next = output.next().await;
            next.map(|batch| (batch, output))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// What travels from a sender to an output.
enum Item {
    Batch(RecordBatch),
    /// The sender's watermark moved on without rows for this output.
    Watermark(i64),
    /// Everything the sender read before checkpoint `epoch`'s cut has been sent.
    Marker(u64),
    /// The sender's input has been silent for the idle timeout (across processes only).
    Idle,
    /// The sender has ended: for good, or (`drained`) for a drain, holding its watermark.
    End {
        drained: bool,
    },
    Error(Arc<DataFusionError>),
}

/// How this process's senders of an exchange are doing (across processes, where no output
/// of this process may hear them end or fail).
#[derive(Debug)]
struct SendersStatus {
    running: usize,
    error: Option<Arc<DataFusionError>>,
}

/// Where a sender's items go.
#[derive(Clone)]
enum Outbox {
    /// To every output's channel, in this process.
    Local(Vec<mpsc::Sender<(usize, Item)>>),
    /// To the outputs' partitions of the transport.
    Remote {
        transport: Arc<dyn ExchangeTransport>,
        exchange: u32,
        outputs: usize,
        /// The sender's own slot in the barrier: the outputs are in other processes.
        cut: Option<ExchangeBarrier>,
        status: Arc<watch::Sender<SendersStatus>>,
    },
}

impl Outbox {
    fn is_remote(&self) -> bool {
        matches!(self, Outbox::Remote { .. })
    }

    fn outputs(&self) -> usize {
        match self {
            Outbox::Local(channels) => channels.len(),
            Outbox::Remote { outputs, .. } => *outputs,
        }
    }

    /// Sends `item` from sender `from` to `output`; false once the plan is dropped.
    async fn send(&self, output: usize, from: usize, item: Item) -> bool {
        let (transport, exchange) = match self {
            Outbox::Local(channels) => return channels[output].send((from, item)).await.is_ok(),
            Outbox::Remote {
                transport,
                exchange,
                ..
            } => (transport, exchange),
        };
        let message = match item {
            Item::Batch(batch) => ExchangeMessage::Rows(batch),
            Item::Watermark(watermark) => ExchangeMessage::Watermark(watermark),
            Item::Idle => ExchangeMessage::Idle,
            Item::End { drained: false } => ExchangeMessage::End,
            Item::End { drained: true } => ExchangeMessage::Drained,
            Item::Marker(_) | Item::Error(_) => unreachable!("not sent on a transport"),
        };
        match transport.send(*exchange, output, from, &message) {
            Ok(()) => true,
            Err(e) => {
                self.finished(Some(Arc::new(transport_error(e))));
                false
            }
        }
    }

    /// Everything read before checkpoint `epoch`'s cut has been sent; false once the plan
    /// is dropped.
    async fn mark(&self, from: usize, epoch: u64) -> bool {
        match self {
            Outbox::Local(_) => self.send_to_all(from, || Item::Marker(epoch)).await,
            Outbox::Remote { cut, .. } => {
                if let Some(cut) = cut {
                    cut.cut(epoch);
                }
                true
            }
        }
    }

    /// Sends `item` to every output; false once an output has gone (the plan is dropped).
    async fn send_to_all(&self, from: usize, item: impl Fn() -> Item) -> bool {
        for output in 0..self.outputs() {
            if !self.send(output, from, item()).await {
                return false;
            }
        }
        true
    }

    /// The sender has ended (`drained`: in a drain): every output hears it.
    async fn end(&self, from: usize, drained: bool) {
        if self.send_to_all(from, || Item::End { drained }).await {
            self.finished(None);
        }
    }

    /// The sender has failed: the outputs of this process hear it.
    async fn fail(&self, from: usize, error: Arc<DataFusionError>) {
        match self {
            Outbox::Local(_) => {
                self.send_to_all(from, || Item::Error(error.clone())).await;
            }
            Outbox::Remote { .. } => self.finished(Some(error)),
        }
    }

    /// A sender on the transport is done, with `error` if it failed.
    fn finished(&self, error: Option<Arc<DataFusionError>>) {
        if let Outbox::Remote { cut, status, .. } = self {
            // A failed sender never counts as cut: no checkpoint may pass what it lost.
            if let (Some(cut), None) = (cut, &error) {
                cut.end();
            }
            status.send_modify(|status| {
                status.running = status.running.saturating_sub(1);
                if let Some(error) = error {
                    status.error.get_or_insert(error);
                }
            });
        }
    }
}

/// How long a sender's input has been silent, for a sender that says when it is idle.
struct Silence {
    timeout: Duration,
    /// When its input last gave rows.
    since: Instant,
    /// Whether it has said so since.
    told: bool,
    /// Since when the job holds its sources for a checkpoint: that time is no silence.
    held: Option<Instant>,
}

impl Silence {
    /// The job holds its sources (`holding`) or not: a hold ended moves the silence's
    /// start on by its length.
    fn hold(&mut self, holding: bool) {
        match (holding, self.held) {
            (true, None) => self.held = Some(Instant::now()),
            (false, Some(held)) => {
                self.since += held.elapsed();
                self.held = None;
            }
            _ => {}
        }
    }
}

/// One input partition, read on its own task.
struct Sender {
    index: usize,
    input: SendableRecordBatchStream,
    outbox: Outbox,
    /// `None`: a merge.
    keys: Option<KeyRouting>,
    watermark: Option<usize>,
    /// The watermark last sent to each output.
    sent_watermarks: Vec<i64>,
    barrier: Option<SenderBarrier>,
    /// The last epoch whose marker was sent.
    marked: u64,
    /// Its input's silence, when it says it is idle.
    idle: Option<Silence>,
}

impl Sender {
    /// Runs the sender; a panic in its input (an operator's, a function's) reaches every
    /// output as an error, instead of a sender gone silent that every checkpoint waits for.
    async fn run_reporting_panics(self) {
        let (index, outbox) = (self.index, self.outbox.clone());
        if let Err(panic) = std::panic::AssertUnwindSafe(self.run())
            .catch_unwind()
            .await
        {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            let error = Arc::new(DataFusionError::Execution(format!(
                "an exchange's input partition {index} failed: {why}"
            )));
            outbox.fail(index, error).await;
        }
    }

    async fn run(mut self) {
        loop {
            let marker = self.barrier.as_ref().and_then(SenderBarrier::marker_due);
            let next = match marker.filter(|epoch| *epoch > self.marked) {
                // Whatever the input still has ready was read before the cut.
                Some(epoch) => match checkpoint::ready_now(&mut self.input) {
                    Some(next) => next,
                    None => {
                        self.marked = epoch;
                        if !self.outbox.mark(self.index, epoch).await {
                            return;
                        }
                        continue;
                    }
                },
                None => {
                    // Nothing goes out between its cut and the job's release of it: a
                    // transaction commits meanwhile.
                    let holding = marker.is_some_and(|epoch| epoch <= self.marked);
                    // The sources hold back through the whole cut (a marker is due only within
                    // one): no silence then.
                    let cutting = self.barrier.as_ref().is_some_and(SenderBarrier::cutting);
                    if let Some(idle) = &mut self.idle {
                        idle.hold(cutting);
                    }
                    let paused = holding && self.outbox.is_remote();
                    let barrier = self.barrier.as_mut();
                    let silent_until = self
                        .idle
                        .as_ref()
                        .filter(|idle| !idle.told && !cutting)
                        .map(|idle| idle.since + idle.timeout);
                    tokio::select! {
                        biased;
                        // Across processes nothing read after the cut may go out before
                        // the job releases it (it would join the open transaction).
                        next = self.input.next(), if !paused => next,
                        _ = async {
                            match barrier {
                                Some(barrier) => barrier.changed().await,
                                None => std::future::pending().await,
                            }
                        } => continue,
                        _ = async {
                            match silent_until {
                                Some(at) => tokio::time::sleep_until(at.into()).await,
                                None => std::future::pending().await,
                            }
                        } => {
                            if let Some(idle) = &mut self.idle {
                                idle.told = true;
                            }
                            if !self.outbox.send_to_all(self.index, || Item::Idle).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let going_on = match next {
                Some(Ok(batch)) => {
                    if let Some(idle) = self.idle.as_mut().filter(|_| batch.num_rows() > 0) {
                        idle.since = Instant::now();
                        idle.told = false;
                    }
                    self.route(batch).await
                }
                Some(Err(e)) => {
                    self.outbox.fail(self.index, Arc::new(e)).await;
                    false
                }
                None => {
                    let drained = self.barrier.as_ref().is_some_and(SenderBarrier::draining);
                    self.outbox.end(self.index, drained).await;
                    false
                }
            };
            if !going_on {
                return;
            }
        }
    }

    /// Sends each row of `batch` where it goes, and the batch's watermark to the outputs
    /// whose rows (if any) do not carry it; a batch of no rows carrying a watermark (from a
    /// window aggregate below) to every output it moves on for.
    async fn route(&mut self, batch: RecordBatch) -> bool {
        if let Some(watermark) = watermark_of(&batch) {
            return self.send_watermark(watermark).await;
        }
        let watermark = self
            .watermark
            .and_then(|column| batch_watermark(&batch, column));
        let mut parts = Vec::new();
        match &self.keys {
            None => parts.push((0, batch)),
            Some(keys) => {
                let routed = keys.route(&batch, self.outbox.outputs());
                match routed {
                    Ok(routed) => parts = routed,
                    Err(e) => {
                        self.outbox.fail(self.index, Arc::new(e)).await;
                        return false;
                    }
                }
            }
        }
        for (output, part) in parts {
            // A part carries the watermarks of its own rows, maybe short of the batch's.
            if let Some(carried) = self
                .watermark
                .and_then(|column| batch_watermark(&part, column))
            {
                self.sent_watermarks[output] = self.sent_watermarks[output].max(carried);
            }
            if !self
                .outbox
                .send(output, self.index, Item::Batch(part))
                .await
            {
                return false;
            }
        }
        match watermark {
            Some(watermark) => self.send_watermark(watermark).await,
            None => true,
        }
    }

    /// Sends `watermark` to the outputs it moves on for; false when the exchange has gone.
    async fn send_watermark(&mut self, watermark: i64) -> bool {
        for output in 0..self.outbox.outputs() {
            if watermark > self.sent_watermarks[output] {
                self.sent_watermarks[output] = watermark;
                let item = Item::Watermark(watermark);
                if !self.outbox.send(output, self.index, item).await {
                    return false;
                }
            }
        }
        true
    }
}

/// How a hash exchange's sender routes rows: by the key group of `exprs`.
struct KeyRouting {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    time: datafusion::physical_plan::metrics::Time,
}

impl KeyRouting {
    /// The rows of `batch` for each of `outputs` that gets any.
    fn route(&self, batch: &RecordBatch, outputs: usize) -> Result<Vec<(usize, RecordBatch)>> {
        let _timer = self.time.timer();
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        let mut parts = Vec::new();
        for (output, rows) in key_groups::route(&columns, batch.num_rows(), outputs)?
            .into_iter()
            .enumerate()
        {
            if rows.len() == batch.num_rows() {
                parts.push((output, batch.clone()));
            } else if !rows.is_empty() {
                let rows = arrow::array::UInt32Array::from(rows);
                parts.push((output, arrow::compute::take_record_batch(batch, &rows)?));
            }
        }
        Ok(parts)
    }
}

/// The largest watermark stamped in `column` of `batch` (the last row's: they only grow).
fn batch_watermark(batch: &RecordBatch, column: usize) -> Option<i64> {
    let stamps = batch
        .column(column)
        .as_primitive_opt::<TimestampMillisecondType>()?;
    max(stamps)
}

/// A transport's error, as the plan's.
fn transport_error(error: ferris_connectors::ConnectorError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// What the position of an output read from a transport is named by, among a checkpoint's
/// source positions: `exchange#<n>[<output>]`.
pub const TRANSPORT_OUTPUT: &str = "exchange#";

/// How often an output read from a transport looks whether a checkpoint's cut is due.
const CUT_POLL: Duration = Duration::from_millis(50);

/// Where an output's items come from.
enum Inbox {
    /// The senders' channel, in this process.
    Local(mpsc::Receiver<(usize, Item)>),
    /// The output's partition of the transport, read like a source.
    Remote(RemoteInbox),
    /// The output runs in another process: it gives nothing, and ends once this process's
    /// senders have (or fails with them), so that the job here runs as long as they do.
    Elsewhere(watch::Receiver<SendersStatus>),
}

/// An output read from the transport.
struct RemoteInbox {
    messages: mpsc::Receiver<ferris_connectors::Result<ReceivedMessage>>,
    transport: Arc<dyn ExchangeTransport>,
    exchange: u32,
    output: usize,
    /// Where the next message starts (`None`: the partition's beginning).
    offset: Option<i64>,
    /// Its side of the job's barrier, as a source's.
    source: Option<SourceBarrier>,
    /// This process's senders, whose failure fails it.
    status: watch::Receiver<SendersStatus>,
    /// Held so that `status` stays open once the senders are gone.
    _status: Arc<watch::Sender<SendersStatus>>,
}

/// What an inbox gave.
enum Received {
    /// An item from a sender.
    Item(usize, Item),
    /// Every sender is gone.
    Gone,
    /// Nothing yet: look again (a checkpoint's cut may be due).
    Again,
}

impl Inbox {
    /// The next item and its sender. `marks`: the senders' state, to go with the position
    /// of a transport's output when a cut is due (`None`: none was due when asked).
    async fn recv(&mut self, marks: Option<String>) -> Received {
        match self {
            Inbox::Local(receiver) => match receiver.recv().await {
                Some((from, item)) => Received::Item(from, item),
                None => Received::Gone,
            },
            Inbox::Remote(remote) => remote.recv(marks).await,
            Inbox::Elsewhere(status) => loop {
                {
                    let status = status.borrow_and_update();
                    if let Some(error) = &status.error {
                        return Received::Item(0, Item::Error(error.clone()));
                    }
                    if status.running == 0 {
                        return Received::Gone;
                    }
                }
                if status.changed().await.is_err() {
                    return Received::Gone;
                }
            },
        }
    }

    /// Whether a transport's output must cut now.
    fn cut_due(&self) -> bool {
        matches!(self, Inbox::Remote(remote)
            if remote.source.as_ref().is_some_and(|s| s.cut_due().is_some()))
    }

    /// Every sender has ended: a transport's output ends as a source does, at `marks`.
    fn ended(&self, marks: String) {
        if let Inbox::Remote(remote) = self
            && let Some(source) = &remote.source
        {
            source.end(remote.position(marks));
        }
    }
}

/// The schema metadata of a transport output's position holding its senders' state:
/// messages before the position are not read again, so what they said (an end, an idle
/// spell, a watermark) must come back with it.
const SENDER_MARKS: &str = "ferris.exchange.senders";

impl RemoteInbox {
    /// Its position, with the senders' state `marks`.
    fn position(&self, marks: String) -> RecordBatch {
        let position = self
            .transport
            .position(self.exchange, self.output, self.offset);
        let mut metadata = position.schema().metadata().clone();
        metadata.insert(SENDER_MARKS.into(), marks);
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            position.schema().fields().clone(),
            metadata,
        ));
        position.with_schema(schema).expect("only metadata changed")
    }

    async fn recv(&mut self, marks: Option<String>) -> Received {
        // A sender of this process failed: nothing it should have sent may be cut past.
        if let Some(error) = &self.status.borrow().error {
            return Received::Item(0, Item::Error(error.clone()));
        }
        // A cut is due: what was handed on is before it; nothing more until released.
        if let Some(source) = &self.source
            && let Some(epoch) = source.cut_due()
        {
            let Some(marks) = marks else {
                return Received::Again;
            };
            source.cut(epoch, self.position(marks));
            source.released(epoch).await;
            return Received::Again;
        }
        let polling = self.source.is_some();
        tokio::select! {
            biased;
            received = self.messages.recv() => {
                let received = match received {
                    Some(Ok(received)) => received,
                    Some(Err(e)) => {
                        return Received::Item(0, Item::Error(Arc::new(transport_error(e))));
                    }
                    None => {
                        let error = DataFusionError::Execution(format!(
                            "the transport of exchange {} stopped reading output {}",
                            self.exchange, self.output
                        ));
                        return Received::Item(0, Item::Error(Arc::new(error)));
                    }
                };
                self.offset = Some(received.next_offset);
                let item = match received.message {
                    ExchangeMessage::Rows(batch) => Item::Batch(batch),
                    ExchangeMessage::Watermark(watermark) => Item::Watermark(watermark),
                    ExchangeMessage::Idle => Item::Idle,
                    ExchangeMessage::End => Item::End { drained: false },
                    ExchangeMessage::Drained => Item::End { drained: true },
                };
                Received::Item(received.from, item)
            }
            _ = self.status.changed() => Received::Again,
            _ = tokio::time::sleep(CUT_POLL), if polling => Received::Again,
        }
    }
}

/// One output: what every sender sent it, in the order each sent it.
struct Output {
    inbox: Inbox,
    senders: usize,
    /// Per sender, the last epoch whose marker was read.
    marked: Vec<u64>,
    ended: Vec<bool>,
    /// Per sender, its watermark so far (`None` before its first).
    watermarks: Vec<Option<i64>>,
    /// Per sender, whether its end was a drain's: it holds the watermark where it left it.
    drained: Vec<bool>,
    /// Per sender, whether it has said it is idle (and sent nothing since).
    idle: Vec<bool>,
    /// Per sender, when it last sent anything.
    heard: Vec<Instant>,
    /// When `next` last returned.
    returned: Option<Instant>,
    /// The merged watermark given downstream last.
    given: i64,
    schema: arrow::datatypes::SchemaRef,
    watermark: Option<WatermarkMerge>,
    barrier: Option<ExchangeBarrier>,
    output_rows: datafusion::physical_plan::metrics::Count,
    /// The senders, stopped when the last output goes.
    _tasks: Arc<Mutex<JoinSet<()>>>,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Output")
            .field("senders", &self.senders)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// The senders' state, as a transport output's position keeps it: per sender its
    /// watermark (`-` before one), whether it ended, whether it is idle.
    fn sender_marks(&self) -> String {
        (0..self.senders)
            .map(|s| {
                let watermark = self.watermarks[s].map_or("-".to_string(), |w| w.to_string());
                // A sender drained runs again when the job does.
                format!(
                    "{watermark}:{}:{}",
                    u8::from(self.ended[s] && !self.drained[s]),
                    u8::from(self.idle[s])
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Takes the senders' state back from `marks` ([`Output::sender_marks`]).
    fn restore_marks(&mut self, marks: &str) -> Result<()> {
        let bad = || {
            DataFusionError::from(StreamingError::Snapshot(format!(
                "an exchange's checkpointed senders '{marks}' do not fit its {} senders",
                self.senders
            )))
        };
        let marks: Vec<&str> = marks.split(',').collect();
        if marks.len() != self.senders {
            return Err(bad());
        }
        for (s, mark) in marks.into_iter().enumerate() {
            let [watermark, ended, idle] = mark.split(':').collect::<Vec<_>>()[..] else {
                return Err(bad());
            };
            self.watermarks[s] = match watermark {
                "-" => None,
                w => Some(w.parse().map_err(|_| bad())?),
            };
            self.ended[s] = ended == "1";
            self.idle[s] = idle == "1";
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        // While the operator above worked (or the job committed), nobody listened: that
        // time is no sender's silence.
        if let Some(returned) = self.returned.take() {
            let gap = returned.elapsed();
            for heard in &mut self.heard {
                *heard += gap;
            }
        }
        let next = self.next_item().await;
        self.returned = Some(Instant::now());
        next
    }

    async fn next_item(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            let marks = self.inbox.cut_due().then(|| self.sender_marks());
            let idle_at = self.next_idle();
            let received = tokio::select! {
                // What has come first: it may show a sender is not idle after all.
                biased;
                received = self.inbox.recv(marks) => received,
                _ = async {
                    match idle_at {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => {
                    // A sender that held the watermark back has gone idle.
                    match self.watermark_moved() {
                        Some(batch) => return Some(Ok(batch)),
                        None => continue,
                    }
                }
            };
            let (from, item) = match received {
                Received::Item(from, item) => (from, item),
                Received::Again => continue,
                Received::Gone if matches!(self.inbox, Inbox::Elsewhere(_)) => return None,
                // Every sender gone: each ends with End, so one that did not was lost.
                Received::Gone => {
                    return (!self.ended.iter().all(|e| *e)).then(|| {
                        Err(DataFusionError::Execution(
                            "an exchange's input stopped without ending".into(),
                        ))
                    });
                }
            };
            if from >= self.senders {
                return Some(Err(DataFusionError::Execution(format!(
                    "an exchange has {} senders, and a message came from sender {from}: a message of a run at another parallelism?",
                    self.senders
                ))));
            }
            // Only what moves the watermark counts against idleness (a checkpoint's markers
            // come from every sender, with data or without).
            if matches!(item, Item::Batch(_) | Item::Watermark(_)) {
                self.heard[from] = Instant::now();
                self.idle[from] = false;
            }
            match item {
                Item::Batch(batch) => {
                    let batch = match self.watermark.and_then(|merge| merge.column) {
                        Some(column) => self.merge_watermarks(from, batch, column),
                        None => Ok(batch),
                    };
                    if let Ok(batch) = &batch {
                        self.output_rows.add(batch.num_rows());
                    }
                    return Some(batch);
                }
                Item::Watermark(watermark) => {
                    self.watermarks[from] = self.watermarks[from].max(Some(watermark));
                    if let Some(batch) = self.watermark_moved() {
                        return Some(Ok(batch));
                    }
                }
                Item::Marker(epoch) => {
                    self.marked[from] = epoch;
                    self.cut_if_complete();
                }
                Item::Idle => {
                    self.idle[from] = true;
                    if let Some(batch) = self.watermark_moved() {
                        return Some(Ok(batch));
                    }
                }
                Item::End { drained } => {
                    self.ended[from] = true;
                    self.drained[from] = drained;
                    if self.ended.iter().all(|e| *e) {
                        if let Some(barrier) = &self.barrier {
                            barrier.end();
                        }
                        self.inbox.ended(self.sender_marks());
                        return None;
                    }
                    self.cut_if_complete();
                    if let Some(batch) = self.watermark_moved() {
                        return Some(Ok(batch));
                    }
                }
                Item::Error(e) => return Some(Err(DataFusionError::Shared(e))),
            }
        }
    }

    /// Whether sender `s` is idle: it said so, or has been silent for the source's idle
    /// timeout.
    fn idle(&self, s: usize) -> bool {
        self.idle[s]
            || self
                .watermark
                .and_then(|w| w.idle_timeout)
                .is_some_and(|timeout| self.heard[s].elapsed() >= timeout)
    }

    /// The least watermark of the senders that hold it back, leaving out `except`: those
    /// not idle and not ended, or ended by a drain and not said idle (a drain's end is a
    /// pause); one not heard from yet holds it back entirely. `None` when none does.
    fn holding(&self, except: Option<usize>) -> Option<i64> {
        let holds = |s: usize| match self.ended[s] {
            true => self.drained[s] && !self.idle[s],
            false => !self.idle(s),
        };
        (0..self.senders)
            .filter(|&s| Some(s) != except && holds(s))
            .map(|s| self.watermarks[s].unwrap_or(i64::MIN))
            .min()
    }

    /// The merged watermark: the least of the senders holding it back, else the largest
    /// any has sent.
    fn merged(&self) -> Option<i64> {
        self.holding(None)
            .or_else(|| self.watermarks.iter().flatten().copied().max())
    }

    /// When the next sender holding the watermark back goes idle, if one will.
    fn next_idle(&self) -> Option<Instant> {
        let timeout = self.watermark?.idle_timeout?;
        (0..self.senders)
            .filter(|&s| !self.ended[s] && !self.idle(s))
            .map(|s| self.heard[s] + timeout)
            .min()
    }

    /// A batch of no rows carrying the merged watermark, when it has moved on past the one
    /// given last.
    fn watermark_moved(&mut self) -> Option<RecordBatch> {
        self.watermark?;
        let merged = self.merged()?;
        if merged <= self.given {
            return None;
        }
        self.given = merged;
        Some(watermark_batch(&self.schema, merged))
    }

    /// Cuts once every sender still running has sent its marker of the epoch being cut.
    fn cut_if_complete(&self) {
        let Some(barrier) = &self.barrier else {
            return;
        };
        if let Some(epoch) = barrier.cutting()
            && (0..self.senders).all(|s| self.ended[s] || self.marked[s] >= epoch)
        {
            barrier.cut(epoch);
        }
    }

    /// Gives each row of `batch` (from sender `from`) the least watermark of every other
    /// sender that holds it back: not ended nor idle (one that has sent none yet holds it
    /// back entirely).
    fn merge_watermarks(
        &mut self,
        from: usize,
        batch: RecordBatch,
        column: usize,
    ) -> Result<RecordBatch> {
        let own = batch_watermark(&batch, column);
        if let Some(watermark) = own {
            self.watermarks[from] = self.watermarks[from].max(Some(watermark));
        }
        let others = self.holding(Some(from));
        let Some(own) = own else {
            return Ok(batch);
        };
        self.given = self.given.max(others.map_or(own, |others| own.min(others)));
        let Some(others) = others.filter(|others| own > *others) else {
            return Ok(batch);
        };
        let stamps = batch
            .column(column)
            .as_primitive::<TimestampMillisecondType>();
        let merged: TimestampMillisecondArray = stamps
            .iter()
            .map(|w| w.map(|w| w.min(others)))
            .collect::<TimestampMillisecondArray>()
            .with_timezone_opt(stamps.timezone());
        let mut columns = batch.columns().to_vec();
        columns[column] = Arc::new(merged);
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::col;

    use super::*;
    use crate::test_util::memory;

    /// The rows one output gets of a batch may carry watermarks short of the batch's: the
    /// output learns the batch's too, or its windows would wait for rows that never come.
    #[tokio::test]
    async fn every_output_learns_the_watermark_of_a_batch_it_gets_rows_of() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new(
                "watermark",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        let keys: Vec<String> = (0..10).map(|k| format!("k{k}")).collect();
        // Every row at 100, but the last at 200: the batch's watermark.
        let stamps: Vec<i64> = (0..10).map(|k| if k == 9 { 200 } else { 100 }).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(TimestampMillisecondArray::from(stamps)),
            ],
        )
        .unwrap();
        let exchange = ExchangeExec::new(
            memory(vec![batch]),
            ExchangeRouting::Hash(vec![col("key", &schema).unwrap()], 2),
            1,
            None,
            Some(WatermarkMerge {
                column: Some(1),
                idle_timeout: None,
            }),
            "a test".into(),
        );
        let context = Arc::new(TaskContext::default());
        let outputs: Vec<_> = (0..2)
            .map(|o| exchange.execute(o, context.clone()).unwrap())
            .collect();
        for (output, stream) in outputs.into_iter().enumerate() {
            let batches: Vec<RecordBatch> = stream.map(|b| b.unwrap()).collect().await;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let reached = batches
                .iter()
                .filter_map(|b| watermark_of(b).or_else(|| batch_watermark(b, 1)))
                .max();
            assert!(rows > 0, "output {output} gets rows");
            assert_eq!(reached, Some(200), "output {output}");
        }
    }
}
