//! Consistent checkpoints of a running plan: a cut between micro-batches.
//!
//! A job hands one [`CheckpointBarrier`] to every operator of its plan (through the task's
//! session config). When the job asks for a checkpoint, each source records its position
//! before its next batch and then holds its batches back. Each stateful operator, once every
//! source has cut and nothing is left in flight on its input, snapshots its state. Every
//! piece of state then describes the same prefix of the input: the job writes them out,
//! makes its sink's output up to the cut durable, and releases the sources.
//!
//! In a plan of one instance (one partition per source, no exchange), "nothing in flight" is
//! simply "the input has no batch ready while every source holds back". A parallel plan's
//! instances meet at exchanges (`exchange.rs`), which number them in levels: the pipelines
//! reading the sources are level 0, and what reads an exchange is one level above the
//! highest exchange below it. Each sender of an exchange passes a marker on once everything
//! at the levels below it has cut and every operator there has snapshotted (and its own
//! input has nothing ready); each output of the exchange counts as cut once it has read
//! every sender's marker, so an operator knows its input is complete once every source and
//! every exchange up to its level has cut. An operator that has snapshotted neither reads
//! nor ticks until the release. Sources hold back until the job releases the cut (once the
//! sink has prepared its output), so no alignment buffering is needed: nothing follows a
//! marker before the release.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::record_batch::RecordBatch;
//! use ferris_streaming::checkpoint::{CheckpointBarrier, Restored};
//!
//! let barrier = Arc::new(CheckpointBarrier::new(Restored::default()));
//! let source = barrier.register_source("trades");
//! let operator = barrier.register_operator();
//! let epoch = barrier.trigger().unwrap();
//! assert_eq!(source.cut_due(), Some(epoch));
//! source.cut(epoch, RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty())));
//! assert_eq!(operator.snapshot_due(), Some(epoch));
//! operator.snapshot(epoch, RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty())));
//! let taken = barrier.take_completed().unwrap();
//! assert_eq!((taken.epoch, taken.sources.len(), taken.operators.len()), (epoch, 1, 1));
//! barrier.release(epoch);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;

use crate::key_groups::{self, OperatorInstance};

/// State read back from a checkpoint, handed to the operators and sources that registered
/// in the same order as when it was taken.
#[derive(Debug, Default, Clone)]
pub struct Restored {
    /// The checkpoint's epoch: the next one is numbered after it.
    pub epoch: u64,
    /// Each source's position, by source name.
    pub sources: HashMap<String, RecordBatch>,
    /// Each stateful operator's snapshot, by registration order.
    pub operators: Vec<RecordBatch>,
}

impl Restored {
    /// The last checkpoints of a job's instances that ran apart (`apart[k]` the process
    /// running instance `k` took), as one checkpoint of them all: the newest epoch, every
    /// position, and each operator's instances side by side, each taken from the process
    /// that ran it (the others ran that partition with no input, and hold nothing of it).
    pub fn of_instances_apart(apart: Vec<Restored>) -> Result<Restored, String> {
        let processes = apart.len();
        let grouped: Vec<_> = apart
            .iter()
            .map(|r| group_instances(&r.operators))
            .collect();
        let operators = grouped.first().map_or(0, Vec::len);
        if grouped.iter().any(|groups| groups.len() != operators) {
            return Err("the instances' checkpoints hold different operators".into());
        }
        let mut combined = Vec::new();
        for operator in 0..operators {
            for (process, groups) in grouped.iter().enumerate() {
                combined.extend(
                    groups[operator]
                        .iter()
                        .filter(|(instance, _)| instance.index % processes == process)
                        .map(|(_, snapshot)| snapshot.clone()),
                );
            }
        }
        Ok(Restored {
            epoch: apart.iter().map(|r| r.epoch).max().unwrap_or(0),
            sources: apart.into_iter().flat_map(|r| r.sources).collect(),
            operators: combined,
        })
    }
}

/// Everything one checkpoint captured.
#[derive(Debug)]
pub struct Captured {
    /// Its number; each checkpoint of a job has a larger one.
    pub epoch: u64,
    /// Each source's position at the cut, by name.
    pub sources: Vec<(String, RecordBatch)>,
    /// Each stateful operator's snapshot, in registration order.
    pub operators: Vec<RecordBatch>,
}

/// Coordinates the checkpoints of one running plan.
#[derive(Debug)]
pub struct CheckpointBarrier {
    state: Mutex<BarrierState>,
    /// Bumped on every change, so that waiters never miss one.
    version: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct BarrierState {
    /// The epoch asked for last.
    epoch: u64,
    /// Whether `epoch` is still being cut (sources hold back until it is released).
    cutting: bool,
    sources: Vec<SourceSlot>,
    /// Per operator, its snapshot for `epoch`.
    operators: Vec<OperatorSlot>,
    exchanges: Vec<ExchangeSlot>,
    restored: Restored,
    /// The restored operator snapshots grouped by operator: one per instance it had (in a
    /// process running one instance of a job apart, only that instance's).
    restored_groups: Vec<Vec<(OperatorInstance, RecordBatch)>>,
    /// The instance registered last: the next registration starts the next operator unless
    /// it is a later instance of the same one.
    last_registered: Option<OperatorInstance>,
    /// How many operators have registered so far (the last one's restored group is this
    /// less one).
    operators_registered: usize,
    taken: bool,
    /// The plan ends by a drain (see [`CheckpointBarrier::drain`]).
    draining: bool,
}

#[derive(Debug)]
struct SourceSlot {
    name: String,
    /// The position recorded for the current epoch.
    cut: Option<RecordBatch>,
    /// An ended source's last position: its cut for every later epoch.
    ended: Option<RecordBatch>,
}

/// One stateful operator instance.
#[derive(Debug)]
struct OperatorSlot {
    /// Its exchange level.
    level: u32,
    /// Its snapshot for the current epoch.
    snapshot: Option<RecordBatch>,
    /// An ended operator's last state: its snapshot for every later epoch (its instance
    /// ended before the job: where instances run in several processes, one whose input
    /// runs in another process ends with this process's senders).
    ended: Option<RecordBatch>,
}

/// The state a restoring operator instance is handed.
#[derive(Debug, Clone)]
pub enum RestoredState {
    /// Its own snapshot: the checkpoint was taken at the same parallelism.
    Own(RecordBatch),
    /// The snapshots of the instances the operator had when the checkpoint was taken, at
    /// another parallelism, whose key groups overlap this instance's: it takes the rows of
    /// its own key groups.
    Rescaled(Vec<RecordBatch>),
}

/// Snapshot metadata: which instance of how many took it.
const INSTANCE_KEY: &str = "ferris.instance";
const INSTANCES_KEY: &str = "ferris.instances";

/// Snapshots in registration order, grouped by operator: a group is an operator's
/// instances in rising order (a snapshot without instance metadata is an operator of one).
/// A process running one instance of a job apart took one snapshot per operator, all of the
/// same instance, so an instance that does not rise starts the next operator.
fn group_instances(snapshots: &[RecordBatch]) -> Vec<Vec<(OperatorInstance, RecordBatch)>> {
    let number = |batch: &RecordBatch, key: &str, default: usize| -> usize {
        batch
            .schema()
            .metadata()
            .get(key)
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let mut groups: Vec<Vec<(OperatorInstance, RecordBatch)>> = Vec::new();
    for snapshot in snapshots {
        let instance = OperatorInstance {
            index: number(snapshot, INSTANCE_KEY, 0),
            count: number(snapshot, INSTANCES_KEY, 1),
        };
        match groups.last_mut() {
            Some(group) if same_operator(group.last().map(|(last, _)| *last), instance) => {
                group.push((instance, snapshot.clone()))
            }
            _ => groups.push(vec![(instance, snapshot.clone())]),
        }
    }
    groups
}

/// Whether `next`, registering or restored right after `last`, is another instance of the
/// same operator: instances of one operator come one after the other, the first first.
fn same_operator(last: Option<OperatorInstance>, next: OperatorInstance) -> bool {
    last.is_some_and(|last| last.count == next.count && last.index < next.index)
}

/// One output of an exchange.
#[derive(Debug)]
struct ExchangeSlot {
    level: u32,
    /// It has read every sender's marker of the current epoch.
    cut: bool,
    /// Every sender has ended: it counts as cut for every later epoch.
    ended: bool,
}

/// The exchange level of the operators in a task context: the pipelines an exchange runs
/// are given its level less one. Without it, an operator sits above every exchange.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeLevel(pub u32);

impl ExchangeLevel {
    /// The level of `context`'s operators.
    pub fn of(context: &TaskContext) -> u32 {
        context
            .session_config()
            .get_extension::<ExchangeLevel>()
            .map_or(u32::MAX, |level| level.0)
    }
}

impl CheckpointBarrier {
    /// A barrier for a plan about to run, restoring `restored` into it.
    pub fn new(restored: Restored) -> Self {
        Self {
            state: Mutex::new(BarrierState {
                epoch: restored.epoch,
                restored_groups: group_instances(&restored.operators),
                restored,
                ..Default::default()
            }),
            version: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BarrierState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// A source of the plan joins; it is asked for its position at every checkpoint.
    pub fn register_source(self: &Arc<Self>, name: &str) -> SourceBarrier {
        self.register_source_share(name, name)
    }

    /// A share `name` of the source `source` joins: it resumes from its own position, or
    /// else from the source's whole position (a checkpoint of another parallelism, its
    /// shares' positions put together), of which it reads the parts that fall to it.
    pub fn register_source_share(self: &Arc<Self>, name: &str, source: &str) -> SourceBarrier {
        let mut state = self.lock();
        state.sources.push(SourceSlot {
            name: name.to_string(),
            cut: None,
            ended: None,
        });
        let restored = match state.restored.sources.remove(name) {
            Some(own) => Some(own),
            None => state.restored.sources.get(source).cloned(),
        };
        SourceBarrier {
            barrier: self.clone(),
            index: state.sources.len() - 1,
            restored,
        }
    }

    /// A stateful operator of the plan joins; it snapshots at every checkpoint.
    pub fn register_operator(self: &Arc<Self>) -> OperatorBarrier {
        self.register_operator_at(u32::MAX, OperatorInstance::ONLY)
    }

    /// Instance `instance` of a stateful operator at exchange level `level` joins: it
    /// snapshots once every source and every exchange up to its level has cut. The
    /// instances of an operator register one after the other, the first first.
    fn register_operator_at(
        self: &Arc<Self>,
        level: u32,
        instance: OperatorInstance,
    ) -> OperatorBarrier {
        let mut state = self.lock();
        let index = state.operators.len();
        state.operators.push(OperatorSlot {
            level,
            snapshot: None,
            ended: None,
        });
        if !same_operator(state.last_registered, instance) {
            state.operators_registered += 1;
        }
        state.last_registered = Some(instance);
        let group = state.operators_registered - 1;
        let restored = state.restored_groups.get(group).map(|snapshots| {
            match snapshots.iter().find(|(old, _)| *old == instance) {
                // Taken at the same parallelism: this instance's own.
                Some((_, own)) => RestoredState::Own(own.clone()),
                // Of another parallelism: the snapshots of the old instances whose key
                // groups overlap its own.
                None => RestoredState::Rescaled(
                    snapshots
                        .iter()
                        .filter(|(old, _)| key_groups::overlaps(*old, instance))
                        .map(|(_, snapshot)| snapshot.clone())
                        .collect(),
                ),
            }
        });
        OperatorBarrier {
            barrier: self.clone(),
            index,
            level,
            instance,
            restored,
            seen: self.subscribe(),
        }
    }

    /// An output of an exchange at `level` joins: a checkpoint is complete once it has cut.
    pub fn register_exchange(self: &Arc<Self>, level: u32) -> ExchangeBarrier {
        let mut state = self.lock();
        state.exchanges.push(ExchangeSlot {
            level,
            cut: false,
            ended: false,
        });
        ExchangeBarrier {
            barrier: self.clone(),
            index: state.exchanges.len() - 1,
        }
    }

    /// The senders' side of an exchange at `level`: they pass a marker on once everything
    /// below that level has cut.
    pub fn exchange_senders(self: &Arc<Self>, level: u32) -> SenderBarrier {
        SenderBarrier {
            barrier: self.clone(),
            below: level.saturating_sub(1),
            seen: self.subscribe(),
        }
    }

    /// Instance `instance` of a stateful operator joins the barrier of the job running
    /// `context`, if the job checkpoints (`None` if not); `restore` is first given the state
    /// to start from, when the job restores a checkpoint. Operators register in the order
    /// the plan executes them, which restores each one's state into it.
    pub fn register_task_operator(
        context: &TaskContext,
        instance: OperatorInstance,
        restore: impl FnOnce(RestoredState) -> datafusion::error::Result<()>,
    ) -> datafusion::error::Result<Option<OperatorBarrier>> {
        let Some(barrier) = context
            .session_config()
            .get_extension::<CheckpointBarrier>()
        else {
            return Ok(None);
        };
        let mut operator = barrier.register_operator_at(ExchangeLevel::of(context), instance);
        if let Some(restored) = operator.restored.take() {
            restore(restored)?;
        }
        Ok(Some(operator))
    }

    /// The epoch asked for last (or restored).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Asks for a checkpoint; its epoch, or `None` while the last one is still being cut.
    pub fn trigger(&self) -> Option<u64> {
        let mut state = self.lock();
        if state.cutting {
            return None;
        }
        state.epoch += 1;
        state.cutting = true;
        state.taken = false;
        for slot in &mut state.sources {
            slot.cut = slot.ended.clone();
        }
        for operator in &mut state.operators {
            operator.snapshot = operator.ended.clone();
        }
        for exchange in &mut state.exchanges {
            exchange.cut = exchange.ended;
        }
        let epoch = state.epoch;
        drop(state);
        self.changed();
        Some(epoch)
    }

    /// The checkpoint being cut, once every source has cut and every operator snapshotted
    /// (once per epoch).
    pub fn take_completed(&self) -> Option<Captured> {
        let mut state = self.lock();
        if !state.cutting
            || state.taken
            || !state.all_cut_through(u32::MAX)
            || !state.all_snapshotted_through(u32::MAX)
        {
            return None;
        }
        state.taken = true;
        Some(Captured {
            epoch: state.epoch,
            sources: state
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.cut.clone().expect("all cut")))
                .collect(),
            operators: state
                .operators
                .iter()
                .filter_map(|o| o.snapshot.clone())
                .collect(),
        })
    }

    /// The positions of the sources that have ended (all of them, once the plan has).
    pub fn ended_positions(&self) -> Vec<(String, RecordBatch)> {
        self.lock()
            .sources
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.ended.clone()?)))
            .collect()
    }

    /// Makes the plan's coming end a drain, before its job goes on at another parallelism:
    /// its sources end where they are, everything in flight is taken in, and then its
    /// stateful operators keep their state for the last checkpoint instead of flushing it,
    /// and an exchange's ended senders go on holding the watermark back where they left it,
    /// as they would have running on. The plan's end is then only a pause.
    pub fn drain(&self) {
        self.lock().draining = true;
        self.changed();
    }

    /// Whether the plan's end is a drain.
    pub fn is_draining(&self) -> bool {
        self.lock().draining
    }

    /// Every stateful operator's last state, once all of them have ended (for the last
    /// checkpoint of a drain); `None` while one runs.
    pub fn ended_snapshots(&self) -> Option<Vec<RecordBatch>> {
        self.lock()
            .operators
            .iter()
            .map(|o| o.ended.clone())
            .collect()
    }

    /// Lets the sources go on after checkpoint `epoch` was written (or given up).
    pub fn release(&self, epoch: u64) {
        let mut state = self.lock();
        if state.epoch == epoch {
            state.cutting = false;
        }
        drop(state);
        self.changed();
    }

    /// Waits for any change: a cut, a snapshot, a release.
    pub async fn wait_change(&self, seen: &mut watch::Receiver<u64>) {
        // The sender lives as long as `self`, so this never errs.
        let _ = seen.changed().await;
    }

    /// A receiver of changes, for [`CheckpointBarrier::wait_change`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

impl BarrierState {
    /// Every source has cut, and every exchange up to `level`.
    fn all_cut_through(&self, level: u32) -> bool {
        self.sources.iter().all(|s| s.cut.is_some())
            && self.exchanges.iter().all(|e| e.cut || e.level > level)
    }

    /// Every operator up to `level` has snapshotted (or ended).
    fn all_snapshotted_through(&self, level: u32) -> bool {
        self.operators
            .iter()
            .all(|o| o.snapshot.is_some() || o.level > level)
    }
}

/// A source's side of the barrier.
#[derive(Debug)]
pub struct SourceBarrier {
    barrier: Arc<CheckpointBarrier>,
    index: usize,
    restored: Option<RecordBatch>,
}

impl SourceBarrier {
    /// The position to resume from, when the job restores a checkpoint.
    pub fn take_restored(&mut self) -> Option<RecordBatch> {
        self.restored.take()
    }

    /// The epoch this source must cut now (record its position, then hold back), if any.
    pub fn cut_due(&self) -> Option<u64> {
        let state = self.barrier.lock();
        (state.cutting && state.sources[self.index].cut.is_none()).then_some(state.epoch)
    }

    /// Records the position for `epoch`: every batch before it is in the checkpoint.
    pub fn cut(&self, epoch: u64, position: RecordBatch) {
        let mut state = self.barrier.lock();
        if state.epoch == epoch {
            state.sources[self.index].cut = Some(position);
        }
        drop(state);
        self.barrier.changed();
    }

    /// The source has ended at `position`: that is its cut from now on.
    pub fn end(&self, position: RecordBatch) {
        let mut state = self.barrier.lock();
        let slot = &mut state.sources[self.index];
        slot.ended = Some(position.clone());
        if slot.cut.is_none() && state.cutting {
            state.sources[self.index].cut = Some(position);
        }
        drop(state);
        self.barrier.changed();
    }

    /// Waits until the job releases `epoch`.
    pub async fn released(&self, epoch: u64) {
        let mut seen = self.barrier.subscribe();
        loop {
            {
                let state = self.barrier.lock();
                if state.epoch != epoch || !state.cutting {
                    return;
                }
            }
            self.barrier.wait_change(&mut seen).await;
        }
    }
}

/// A stateful operator's side of the barrier.
#[derive(Debug)]
pub struct OperatorBarrier {
    barrier: Arc<CheckpointBarrier>,
    index: usize,
    /// Its exchange level.
    level: u32,
    /// Which instance of its operator it is.
    instance: OperatorInstance,
    restored: Option<RestoredState>,
    /// The barrier's changes seen so far.
    seen: watch::Receiver<u64>,
}

impl OperatorBarrier {
    /// The epoch to snapshot once the input has nothing in flight: every source has cut
    /// (and every exchange up to its level) and this operator has not snapshotted it yet.
    pub fn snapshot_due(&self) -> Option<u64> {
        let state = self.barrier.lock();
        (state.cutting
            && state.operators[self.index].snapshot.is_none()
            && state.all_cut_through(self.level))
        .then_some(state.epoch)
    }

    /// Whether it has snapshotted the epoch being cut: until the job releases the cut,
    /// nothing more may come out of it (a tick's rows, or rows of input after the cut, would
    /// join the epoch's output while its snapshot has not seen them).
    pub fn holds(&self) -> bool {
        let state = self.barrier.lock();
        let slot = &state.operators[self.index];
        state.cutting && slot.ended.is_none() && slot.snapshot.is_some()
    }

    /// Hands over the state for `epoch`.
    pub fn snapshot(&self, epoch: u64, state: RecordBatch) {
        let state = self.stamped(state);
        let mut guard = self.barrier.lock();
        if guard.epoch == epoch {
            guard.operators[self.index].snapshot = Some(state);
        }
        drop(guard);
        self.barrier.changed();
    }

    /// The operator has ended with `state`: that is its snapshot from now on.
    pub fn end(&self, state: RecordBatch) {
        let state = self.stamped(state);
        let mut guard = self.barrier.lock();
        let slot = &mut guard.operators[self.index];
        slot.ended = Some(state.clone());
        if slot.snapshot.is_none() && guard.cutting {
            guard.operators[self.index].snapshot = Some(state);
        }
        drop(guard);
        self.barrier.changed();
    }

    /// `state` saying which instance took it, so that a restore at another parallelism
    /// finds them all.
    fn stamped(&self, state: RecordBatch) -> RecordBatch {
        let mut metadata = state.schema().metadata().clone();
        metadata.insert(INSTANCE_KEY.into(), self.instance.index.to_string());
        metadata.insert(INSTANCES_KEY.into(), self.instance.count.to_string());
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
            state.schema().fields().clone(),
            metadata,
        ));
        state.with_schema(schema).expect("only metadata changed")
    }

    /// Whether the plan's end is a drain: the operator keeps its state instead of flushing.
    pub fn draining(&self) -> bool {
        self.barrier.is_draining()
    }

    /// Waits for a change of the barrier not seen yet (a source cut: a snapshot may be due).
    pub async fn changed(&mut self) {
        self.barrier.wait_change(&mut self.seen).await
    }
}

/// What `stream` has ready now, if anything, whatever the task's poll budget: a stream the
/// runtime made yield (tokio's cooperative budget) would otherwise read as empty, and a cut
/// taken then would leave a batch read before it out of its snapshot.
pub fn ready_now<S: Stream + Unpin>(stream: &mut S) -> Option<Option<S::Item>> {
    tokio::task::coop::unconstrained(stream.next()).now_or_never()
}

/// Waits for a change of an operator's barrier; never, for an operator of a job that does
/// not checkpoint.
pub async fn barrier_changed(barrier: Option<&mut OperatorBarrier>) {
    match barrier {
        Some(barrier) => barrier.changed().await,
        None => std::future::pending().await,
    }
}

/// One output of an exchange's side of the barrier.
#[derive(Debug, Clone)]
pub struct ExchangeBarrier {
    barrier: Arc<CheckpointBarrier>,
    index: usize,
}

impl ExchangeBarrier {
    /// The epoch being cut, if one is.
    pub fn cutting(&self) -> Option<u64> {
        let state = self.barrier.lock();
        state.cutting.then_some(state.epoch)
    }

    /// Every sender's marker of `epoch` has been read: all they sent before it is given on.
    pub fn cut(&self, epoch: u64) {
        let mut state = self.barrier.lock();
        if state.epoch == epoch && state.cutting {
            state.exchanges[self.index].cut = true;
        }
        drop(state);
        self.barrier.changed();
    }

    /// Every sender has ended.
    pub fn end(&self) {
        let mut state = self.barrier.lock();
        let slot = &mut state.exchanges[self.index];
        slot.ended = true;
        slot.cut = true;
        drop(state);
        self.barrier.changed();
    }
}

/// The senders' side of an exchange's barrier.
#[derive(Debug)]
pub struct SenderBarrier {
    barrier: Arc<CheckpointBarrier>,
    /// The level of the pipelines the senders read.
    below: u32,
    seen: watch::Receiver<u64>,
}

impl SenderBarrier {
    /// The epoch whose marker is due once the sender's input has nothing ready: everything
    /// below the exchange has cut, and every operator below it has snapshotted. An operator
    /// snapshots when it is polled; until then the sender keeps polling its input (a marker
    /// sent first would let a sender across processes pause, and nothing would poll it).
    pub fn marker_due(&self) -> Option<u64> {
        let state = self.barrier.lock();
        (state.cutting
            && state.all_cut_through(self.below)
            && state.all_snapshotted_through(self.below))
        .then_some(state.epoch)
    }

    /// Waits for a change of the barrier not seen yet.
    pub async fn changed(&mut self) {
        self.barrier.wait_change(&mut self.seen).await
    }

    /// Whether a cut is open (the sources hold back until the job releases it).
    pub fn cutting(&self) -> bool {
        self.barrier.lock().cutting
    }

    /// Whether the plan's end is a drain: a sender's end is then a pause.
    pub fn draining(&self) -> bool {
        self.barrier.is_draining()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn state(value: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![value]))]).unwrap()
    }

    fn value(state: &RecordBatch) -> i64 {
        let column = state.column(0).as_any().downcast_ref::<Int64Array>();
        column.unwrap().value(0)
    }

    /// Checkpoints `instances` (operator, instance) registering in this order, each
    /// snapshotting its position in the list, and restores them into the same
    /// registrations: what each is handed.
    fn restored(instances: &[OperatorInstance]) -> Vec<Vec<i64>> {
        handed(snapshots(instances, |position| position as i64), instances)
    }

    /// What each of `instances`, registering in this order, is handed of `restored`.
    fn handed(restored: Restored, instances: &[OperatorInstance]) -> Vec<Vec<i64>> {
        let barrier = Arc::new(CheckpointBarrier::new(restored));
        instances
            .iter()
            .map(
                |instance| match barrier.register_operator_at(u32::MAX, *instance).restored {
                    Some(RestoredState::Own(own)) => vec![value(&own)],
                    Some(RestoredState::Rescaled(all)) => all.iter().map(value).collect(),
                    None => vec![],
                },
            )
            .collect()
    }

    fn instance(index: usize, count: usize) -> OperatorInstance {
        OperatorInstance { index, count }
    }

    /// Two parallel operators of two instances each, and one of one, in one process.
    #[test]
    fn each_operator_instance_gets_its_own_snapshot_back() {
        let plan = [
            instance(0, 2),
            instance(1, 2),
            instance(0, 1),
            instance(0, 2),
            instance(1, 2),
        ];
        assert_eq!(
            restored(&plan),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
        );
    }

    /// The snapshots a process takes of `instances` registering in this order, each
    /// holding `value(position)`.
    fn snapshots(instances: &[OperatorInstance], value: impl Fn(usize) -> i64) -> Restored {
        let barrier = Arc::new(CheckpointBarrier::new(Restored::default()));
        let operators: Vec<_> = instances
            .iter()
            .map(|instance| barrier.register_operator_at(u32::MAX, *instance))
            .collect();
        let epoch = barrier.trigger().unwrap();
        for (position, operator) in operators.iter().enumerate() {
            operator.snapshot(epoch, state(value(position)));
        }
        Restored {
            epoch,
            sources: HashMap::new(),
            operators: barrier.take_completed().unwrap().operators,
        }
    }

    /// Two processes each ran every partition of a plan (an operator of two instances, one
    /// of one), only their own with input: put together, each new instance of three gets
    /// the old instances overlapping it from the process that ran them, and the operator
    /// of one its own snapshot from the first process.
    #[test]
    fn checkpoints_of_instances_apart_put_together_take_each_from_its_process() {
        let plan = [instance(0, 2), instance(1, 2), instance(0, 1)];
        let apart = vec![
            snapshots(&plan, |position| position as i64),
            snapshots(&plan, |position| 10 + position as i64),
        ];
        let together = Restored::of_instances_apart(apart).unwrap();
        let new = [
            instance(0, 3),
            instance(1, 3),
            instance(2, 3),
            instance(0, 1),
        ];
        let handed = handed(together, &new);
        assert_eq!(handed, vec![vec![0], vec![0, 11], vec![11], vec![2]]);
    }

    /// A process running instance 1 of 2 apart registers one instance of each operator: the
    /// second operator must not be taken for the first's instance 1 (nor get its state).
    #[test]
    fn a_process_running_one_instance_gets_each_operator_its_own_snapshot() {
        let plan = [instance(1, 2), instance(1, 2), instance(1, 2)];
        assert_eq!(restored(&plan), vec![vec![0], vec![1], vec![2]]);
    }
}
