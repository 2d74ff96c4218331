//! A job's main loop: result batches from the plan to the sink, and checkpoints.
//!
//! Without checkpoints a job is at least once: source offsets are committed when the sink
//! has made everything read durable. With checkpoints (a state dir), every interval the
//! [`CheckpointBarrier`] cuts the plan, the sink prepares its output up to the cut, the
//! checkpoint is written, and only then is that output committed (a file renamed into place,
//! a Kafka transaction committed with the source offsets in it): exactly once.
//!
//! A checkpointing job that fails for a passing reason (a broker out of reach) starts again
//! from its last checkpoint by itself, after a backoff: [`CheckpointedJob::run`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::SessionState;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use ferris_connectors::{Sink, SinkConfig, SourceConnector, SourcePosition, StopSignal};
use ferris_streaming::checkpoint::{Captured, CheckpointBarrier, Restored};
use futures::StreamExt;

use crate::error::{EngineError, Result};
use crate::job::checkpoint::{CheckpointStore, merge_shares, offsets_metadata, take_up_era};
use crate::job::manifest::{Manifest, now_ms};
use crate::job::materialized::{LiveStreamWriter, MaterializedTable};
use crate::job::record::{CheckpointInfo, JobControl, JobEnd, JobMetrics};
use crate::job::task::{InstanceHere, JobRun, process_instance, task_context};
use crate::source::source_of;

/// What ends a job's loop: the session's stop (Ctrl-C) or the job's own (`STOP JOB`, or a
/// drain); and what ends its sources.
pub(crate) struct Stops {
    pub session: StopSignal,
    pub job: Arc<JobControl>,
    pub sources: StopSignal,
}

impl Stops {
    async fn requested(&self) {
        tokio::select! {
            _ = self.session.stopped() => {}
            _ = self.job.stop_requested().stopped() => {}
        }
    }
}

/// Where a job's result rows go: its sink, and what makes them readable by name.
pub(crate) struct JobOutputs {
    pub sink: Box<dyn Sink>,
    pub materialized: Option<Arc<MaterializedTable>>,
    pub live: Option<LiveStreamWriter>,
    pub metrics: Arc<JobMetrics>,
    /// The rows' columns as the sink names them (an insert's take its target's names).
    pub schema: SchemaRef,
}

impl JobOutputs {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let renamed;
        let batch = if batch.schema().fields() == self.schema.fields() {
            batch
        } else {
            renamed = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
            &renamed
        };
        self.sink.write(batch)?;
        if let Some(table) = &self.materialized {
            table.apply(batch)?;
        }
        if let Some(live) = &self.live {
            live.publish(batch);
        }
        self.metrics.add_records_out(batch.num_rows());
        Ok(())
    }
}

/// Runs a job without checkpoints. Without state (`stateless`), whatever the sink has made
/// durable covers everything read so far, so source offsets are committed then; with state
/// (windows), rows read may still sit in open windows, so offsets are committed at the end.
pub(crate) async fn run_at_least_once(
    mut stream: SendableRecordBatchStream,
    mut outputs: JobOutputs,
    sources: Vec<Arc<dyn SourceConnector>>,
    stateless: bool,
    stops: Stops,
) -> Result<JobEnd> {
    // A folder sink commits its part files on time even when no rows come.
    // Checked four times an interval, so a part lands at most a quarter late.
    let mut rollover = outputs
        .sink
        .rollover()
        .map(|every| tokio::time::interval((every / 4).max(Duration::from_millis(10))));
    loop {
        let tick = async {
            match rollover.as_mut() {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
        let durable = tokio::select! {
            // The sources end; the windows flush as the plan ends; the sink commits.
            _ = stops.requested(), if !stops.sources.is_stopped() => {
                stops.sources.stop();
                false
            }
            batch = stream.next() => match batch {
                Some(batch) => {
                    outputs.write(&batch?)?;
                    stateless && outputs.sink.flush()?
                }
                None => break,
            },
            _ = tick => outputs.sink.roll_if_due()? && stateless,
        };
        if durable {
            for source in &sources {
                // A failed commit only means more to re-read after a crash.
                if let Err(e) = source.commit() {
                    tracing::warn!("{e}");
                }
            }
        }
    }
    outputs.sink.close()?;
    for source in &sources {
        source.commit()?;
    }
    Ok(JobEnd::Finished)
}

/// A job's checkpointing: where, how often, and of which plan.
struct Checkpointing {
    pub store: CheckpointStore,
    pub interval: Duration,
    /// The plan's fingerprint, kept in every manifest.
    pub plan: String,
    /// Its parallelism, kept in every manifest.
    pub parallelism: usize,
    pub barrier: Arc<CheckpointBarrier>,
}

/// Everything a checkpointing job needs to start, and to start again from its last
/// checkpoint.
pub(crate) struct CheckpointedJob {
    pub name: String,
    pub state: SessionState,
    pub plan: Arc<dyn ExecutionPlan>,
    pub memory_limit: Option<usize>,
    /// The folder of the instances of the era before, for an instance of a new era.
    pub previous_era: Option<String>,
    pub sink: Box<dyn SinkConfig>,
    pub schema: SchemaRef,
    /// The sources this process reads (its instance's shares, when instances run in
    /// several processes).
    pub sources: Vec<(String, Arc<dyn SourceConnector>)>,
    /// The instance this process runs, when the job's instances run in several.
    pub instance: Option<InstanceHere>,
    pub store: CheckpointStore,
    pub interval: Duration,
    /// The sink commits in transactions, with the sources' positions (the checkpoint to
    /// resume is the one committed).
    pub transactional: bool,
    /// The plan as checkpoints record it.
    pub fingerprint: String,
    /// How many instances the plan runs as.
    pub parallelism: usize,
    pub metrics: Arc<JobMetrics>,
    pub control: Arc<JobControl>,
    pub materialized: Option<Arc<MaterializedTable>>,
    pub live: Option<LiveStreamWriter>,
    pub stops: Stops,
}

/// Failures in a row after which a job waits [`BREAKER_OPEN`] between attempts.
const BREAKER_THRESHOLD: u32 = 5;
/// The wait between attempts once the breaker is open.
const BREAKER_OPEN: Duration = Duration::from_secs(10);

/// The wait before attempt `failures + 1`: 200 ms doubling, then the open breaker's.
fn backoff(failures: u32) -> Duration {
    if failures > BREAKER_THRESHOLD {
        return BREAKER_OPEN;
    }
    Duration::from_millis(200 << (failures.saturating_sub(1)).min(5))
}

impl CheckpointedJob {
    /// Runs the job; a passing failure (a broker out of reach) starts it again from its
    /// last checkpoint after a backoff, while it shows RETRYING with the reason. Any other
    /// failure ends it.
    pub async fn run(self) -> Result<JobEnd> {
        let mut failures = 0;
        loop {
            let before = self.metrics.checkpoints();
            let error = match self.attempt().await {
                Ok(end) => {
                    self.metrics.set_retrying(None);
                    return Ok(end);
                }
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            // An attempt that got a checkpoint through was progress: count afresh.
            failures = if self.metrics.checkpoints() > before {
                1
            } else {
                failures + 1
            };
            // The failed attempt's consumers leave their groups now, not when the next
            // attempt's replace them: a member leaving after the next one joined would bump
            // the group's generation under the next attempt's first transaction, and fail it
            // again, attempt after attempt.
            for (_, source) in &self.sources {
                source.release();
            }
            let wait = backoff(failures);
            let reason = format!(
                "{error} (failed {failures} time(s) in a row; trying again in {:.1}s)",
                wait.as_secs_f64()
            );
            tracing::warn!("{reason}");
            self.metrics.set_retrying(Some(reason));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stops.requested() => return Ok(JobEnd::Stopped),
            }
        }
    }

    /// One run, from the last checkpoint.
    async fn attempt(&self) -> Result<JobEnd> {
        let new_era = self.previous_era.is_some();
        let chosen = self
            .store
            .choose(&self.sources, self.transactional, new_era)
            .await?;
        // The table kept by name as the checkpoint has it (a failed attempt may have
        // written past it), or empty.
        if let Some(table) = &self.materialized {
            let rows = match &chosen {
                Some((manifest, _)) => self.store.read_table(manifest).await?,
                None => None,
            };
            table.restore(rows.as_ref())?;
        }
        let (restored, sink_part) = match chosen {
            Some((manifest, _)) if manifest.finished => return Ok(JobEnd::Finished),
            Some((manifest, mut restored)) => {
                tracing::info!(
                    "resumes from checkpoint {} ({:.1}s old, parallelism {})",
                    manifest.epoch,
                    manifest.age().as_secs_f64(),
                    manifest.parallelism
                );
                if manifest.parallelism != self.parallelism {
                    // Each new share reads the parts that fall to it of its source's whole.
                    restored.sources = merge_shares(&restored.sources)?;
                }
                (restored, Some(manifest.sink))
            }
            // An instance of a new era: from the drained ones of the era before.
            None => match &self.previous_era {
                Some(folder) => {
                    let restored = take_up_era(folder, &self.fingerprint).await?;
                    tracing::info!(
                        "takes up the drained checkpoints of the job's instances in {folder}, as instance {} of {}",
                        self.instance.as_ref().map_or(0, |i| i.index),
                        self.parallelism
                    );
                    (restored, None)
                }
                None => (Restored::default(), None),
            },
        };
        let barrier = Arc::new(CheckpointBarrier::new(restored));
        // The sink first: exchanges between processes write through it.
        let sink = self.sink.recover(self.schema.clone(), sink_part.as_ref())?;
        let run = JobRun {
            metrics: self.metrics.clone(),
            barrier: Some(barrier.clone()),
            control: self.control.clone(),
            process: process_instance(&self.name, self.instance.as_ref(), sink.as_ref())?,
        };
        let task = task_context(&self.state, self.memory_limit, Some(&run))?;
        let stream = execute_stream(self.plan.clone(), task)?;
        let outputs = JobOutputs {
            sink,
            materialized: self.materialized.clone(),
            live: self.live.clone(),
            metrics: self.metrics.clone(),
            schema: self.schema.clone(),
        };
        let checkpointing = Checkpointing {
            store: self.store.clone(),
            interval: self.interval,
            plan: self.fingerprint.clone(),
            parallelism: self.parallelism,
            barrier,
        };
        run_checkpointed(stream, outputs, &self.sources, &checkpointing, &self.stops).await
    }
}

/// Runs a job that checkpoints every interval. A stop takes one last checkpoint and ends
/// the job without flushing open windows, so that a restart resumes them.
///
/// Unless the sink commits in a transaction (a Kafka sink's), the sources go on as soon as the
/// sink has prepared its output up to the cut: the checkpoint is written on another task
/// meanwhile, and its output committed once it is. The next cut waits for that.
async fn run_checkpointed(
    stream: SendableRecordBatchStream,
    outputs: JobOutputs,
    sources: &[(String, Arc<dyn SourceConnector>)],
    checkpointing: &Checkpointing,
    stops: &Stops,
) -> Result<JobEnd> {
    let mut in_flight = None;
    let result = checkpoint_loop(
        stream,
        outputs,
        sources,
        checkpointing,
        stops,
        &mut in_flight,
    )
    .await;
    if result.is_err()
        && let Some(pending) = in_flight
    {
        // The next attempt restores an earlier checkpoint and deletes the sink's parts after
        // it: this checkpoint, naming one of them, must not be written after that. Its own
        // failure changes nothing: the attempt failed already.
        let _ = pending.write.await;
    }
    result
}

/// [`run_checkpointed`]'s loop; `in_flight` is the checkpoint being written while the job
/// goes on.
async fn checkpoint_loop(
    mut stream: SendableRecordBatchStream,
    mut outputs: JobOutputs,
    sources: &[(String, Arc<dyn SourceConnector>)],
    checkpointing: &Checkpointing,
    stops: &Stops,
    in_flight: &mut Option<PendingCheckpoint>,
) -> Result<JobEnd> {
    let barrier = checkpointing.barrier.clone();
    let mut changes = barrier.subscribe();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + checkpointing.interval,
        checkpointing.interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    let mut draining = false;
    // When the cut being made was asked for (its time counts in the checkpoint's).
    let mut started: Option<Instant> = None;
    let trigger = |started: &mut Option<Instant>| {
        if barrier.trigger().is_some() {
            *started = Some(Instant::now());
        }
    };
    loop {
        // The timer goes first: a stream that always has a batch ready must not starve it.
        let batch = tokio::select! {
            biased;
            written = async { (&mut in_flight.as_mut().expect("guarded").write).await },
                if in_flight.is_some() =>
            {
                let pending = in_flight.take().expect("guarded");
                complete(checkpointing, &mut outputs, sources, pending, written).await?;
                // The next one a whole interval after this one completed, so that sources
                // always get time to read between checkpoints (Flink's minimum pause), however
                // long a checkpoint takes.
                ticker.reset();
                None
            }
            _ = ticker.tick(), if in_flight.is_none() => {
                trigger(&mut started);
                None
            }
            _ = stops.requested(), if !stopping && in_flight.is_none() => {
                stopping = true;
                trigger(&mut started);
                None
            }
            _ = stops.job.drain_requested().stopped(), if !draining && !stopping => {
                draining = true;
                barrier.drain();
                stops.sources.stop();
                // Rows between instances go through the transport in the checkpoints'
                // transactions: the sooner each commits, the sooner the drain ends.
                let every = checkpointing.interval.min(DRAIN_INTERVAL);
                ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                None
            }
            _ = barrier.wait_change(&mut changes) => None,
            batch = stream.next() => match batch {
                Some(batch) => Some(batch?),
                None => break,
            },
        };
        // A cut completed (maybe while this batch was made: the batch comes after it).
        if let Some(captured) = barrier.take_completed() {
            let elapsed = started.take().map(|s| s.elapsed()).unwrap_or_default();
            let pending = begin(checkpointing, &mut outputs, captured, None, elapsed)?;
            // A transaction takes all that is written until it commits: nothing may come
            // after the cut before then. A stop ends here.
            if outputs.sink.commits_positions() || stopping {
                wait_and_complete(checkpointing, &mut outputs, sources, pending).await?;
                if stopping {
                    return Ok(JobEnd::Stopped);
                }
                // The sources were held until now: a whole interval to read before the next.
                ticker.reset();
            } else {
                barrier.release(pending.epoch);
                *in_flight = Some(PendingCheckpoint {
                    held: Some(pending.cutting + pending.started.elapsed()),
                    ..pending
                });
            }
        }
        if let Some(batch) = batch {
            outputs.write(&batch)?;
        }
    }
    if let Some(pending) = in_flight.take() {
        wait_and_complete(checkpointing, &mut outputs, sources, pending).await?;
    }
    // Every source ended: the last checkpoint says so, so that a restart does not run the
    // job again, and commits the sink's last output. A drain's holds the operators' state
    // instead, for the job to go on from.
    let (last, operators) = if draining {
        let operators = barrier.ended_snapshots().ok_or_else(|| {
            EngineError::Internal("the plan ended before its operators did".into())
        })?;
        (LastCheckpoint::Drained, operators)
    } else {
        (LastCheckpoint::Finished, vec![])
    };
    let captured = Captured {
        epoch: barrier.epoch() + 1,
        sources: barrier.ended_positions(),
        operators,
    };
    let epoch = captured.epoch;
    let pending = begin(
        checkpointing,
        &mut outputs,
        captured,
        Some(last),
        Duration::ZERO,
    )?;
    wait_and_complete(checkpointing, &mut outputs, sources, pending).await?;
    outputs.sink.close()?;
    match last {
        LastCheckpoint::Drained => {
            // Committed: the instances of the next era may take it up.
            checkpointing.store.mark_drained(epoch).await?;
            Ok(JobEnd::Stopped)
        }
        LastCheckpoint::Finished => Ok(JobEnd::Finished),
    }
}

/// How often a draining job checkpoints at most.
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);

/// What a job's last checkpoint is.
#[derive(Debug, Clone, Copy)]
enum LastCheckpoint {
    /// Its input all read, its output all committed.
    Finished,
    /// Its drain's ([`JobControl::request_drain`]).
    Drained,
}

/// A checkpoint whose output the sink has prepared, being written.
struct PendingCheckpoint {
    epoch: u64,
    /// The sources' positions at the cut, by source name.
    positions: Vec<(String, RecordBatch)>,
    state_bytes: u64,
    /// From asking for the cut to the cut made.
    cutting: Duration,
    /// When the sink began preparing.
    started: Instant,
    /// How long the sources waited, once they went on before the write completed.
    held: Option<Duration>,
    write: tokio::task::JoinHandle<Result<()>>,
}

/// Prepares the sink's output up to the cut, and starts making it durable and writing the
/// checkpoint.
fn begin(
    checkpointing: &Checkpointing,
    outputs: &mut JobOutputs,
    captured: Captured,
    last: Option<LastCheckpoint>,
    cutting: Duration,
) -> Result<PendingCheckpoint> {
    let started = Instant::now();
    let prepared = outputs.sink.prepare_checkpoint()?;
    // A table kept by name comes back with its rows at the cut.
    let table = outputs
        .materialized
        .as_ref()
        .map(|table| table.snapshot())
        .transpose()?;
    let manifest = Manifest {
        epoch: captured.epoch,
        plan: checkpointing.plan.clone(),
        parallelism: checkpointing.parallelism,
        sources: captured.sources.iter().map(|(n, _)| n.clone()).collect(),
        operators: captured.operators.len(),
        sink: prepared.part.clone(),
        finished: matches!(last, Some(LastCheckpoint::Finished)),
        table: table.is_some(),
        created_ms: now_ms(),
    };
    let state_bytes = captured
        .operators
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum();
    let positions = captured.sources.clone();
    let epoch = captured.epoch;
    let store = checkpointing.store.clone();
    // The output must be on disk before the manifest that commits it.
    let write = tokio::spawn(tracing::Instrument::in_current_span(async move {
        tokio::task::spawn_blocking(move || prepared.make_durable())
            .await
            .map_err(|e| EngineError::Checkpoint(format!("syncing the output: {e}")))??;
        store.write(&manifest, &captured, table.as_ref()).await
    }));
    Ok(PendingCheckpoint {
        epoch,
        positions,
        state_bytes,
        cutting,
        started,
        held: None,
        write,
    })
}

async fn wait_and_complete(
    checkpointing: &Checkpointing,
    outputs: &mut JobOutputs,
    sources: &[(String, Arc<dyn SourceConnector>)],
    mut pending: PendingCheckpoint,
) -> Result<()> {
    let written = (&mut pending.write).await;
    complete(checkpointing, outputs, sources, pending, written).await
}

/// Once the checkpoint is written, commits the output up to its cut (and the sources'
/// positions); lets the sources go on if they still wait.
async fn complete(
    checkpointing: &Checkpointing,
    outputs: &mut JobOutputs,
    sources: &[(String, Arc<dyn SourceConnector>)],
    pending: PendingCheckpoint,
    written: std::result::Result<Result<()>, tokio::task::JoinError>,
) -> Result<()> {
    written.map_err(|e| {
        EngineError::Checkpoint(format!("writing checkpoint {}: {e}", pending.epoch))
    })??;
    // The checkpoint is written: what it holds back can be committed. A crash from here on
    // restores this checkpoint, which commits the same output again, harmlessly.
    let mut positions = Vec::new();
    for (name, batch) in &pending.positions {
        let position = SourcePosition::from_batch(batch)?;
        if let Some((_, source)) = sources.iter().find(|(n, _)| n == source_of(name)) {
            positions.push((source.as_ref(), position));
        }
    }
    outputs
        .sink
        .commit_checkpoint(&positions, &offsets_metadata(pending.epoch))?;
    if !outputs.sink.commits_positions() {
        for (source, position) in &positions {
            // Only for lag and for a run without checkpoints: the checkpoint is the truth.
            if let Err(e) = source.commit_position(position) {
                tracing::warn!("{e}");
            }
        }
    }
    checkpointing.barrier.release(pending.epoch);
    let duration = pending.cutting + pending.started.elapsed();
    outputs.metrics.checkpointed(CheckpointInfo {
        epoch: pending.epoch,
        at: std::time::SystemTime::now(),
        duration,
        held: pending.held.unwrap_or(duration),
        state_bytes: pending.state_bytes,
    });
    checkpointing.store.prune(pending.epoch).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::error::DataFusionError;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use ferris_connectors::{FileFormat, FileSinkConfig};
    use object_store::memory::InMemory;
    use object_store::throttle::{ThrottleConfig, ThrottledStore};

    #[tokio::test]
    async fn a_failed_attempt_leaves_no_checkpoint_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        // The plan fails while the first checkpoint is still being written.
        let failing = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(DataFusionError::Execution("the broker went away".into()))
        });
        let stream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), failing));
        let sink = FileSinkConfig {
            name: "out".into(),
            path: dir.path().join("out/"),
            format: FileFormat::Json,
            rollover: Duration::from_secs(60),
            part_prefix: "part".into(),
        };
        let outputs = JobOutputs {
            sink: sink.recover(schema.clone(), None).unwrap(),
            materialized: None,
            live: None,
            metrics: Arc::default(),
            schema,
        };
        let slow = ThrottleConfig {
            wait_put_per_call: Duration::from_millis(300),
            ..Default::default()
        };
        let store =
            CheckpointStore::with_store(Arc::new(ThrottledStore::new(InMemory::new(), slow)));
        let checkpointing = Checkpointing {
            store: store.clone(),
            interval: Duration::from_millis(10),
            plan: "plan".into(),
            parallelism: 1,
            barrier: Arc::new(CheckpointBarrier::new(Restored::default())),
        };
        let stops = Stops {
            session: StopSignal::new(),
            job: Arc::default(),
            sources: StopSignal::new(),
        };
        let ended = run_checkpointed(stream, outputs, &[], &checkpointing, &stops).await;
        assert!(ended.is_err());
        // The write ended with the attempt: nothing of it lands after a retry has begun.
        let epochs: Vec<u64> = store
            .manifests()
            .await
            .unwrap()
            .iter()
            .map(|m| m.epoch)
            .collect();
        assert_eq!(epochs, [1]);
    }
}
