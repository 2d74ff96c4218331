//! The one loop that runs every streaming operator ([`StreamOperator`]), and what their plan
//! nodes share ([`StreamNode`]).
//!
//! The driver polls the operator's inputs and hands it their batches, wakes it on its clock,
//! and gives on the rows it makes ready. For an operator with state it also snapshots that
//! state at the job's checkpoints (restoring it first when the job restores one), holds its
//! size against the job's `'state.memory.limit'`, and keeps the state metrics:
//! `peak_state_bytes`, `late_records` and, where there is a watermark, `watermark_ms`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, Gauge, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{Partitioning, PlanProperties, SendableRecordBatchStream};
use futures::StreamExt;

use crate::checkpoint::{self, CheckpointBarrier, OperatorBarrier, RestoredState, barrier_changed};
use crate::key_groups::OperatorInstance;
use crate::operator::{OperatorState, StreamOperator};
use crate::state_memory::StateMemory;

/// What every streaming operator's plan node keeps: its properties and its metrics.
#[derive(Debug)]
pub(crate) struct StreamNode {
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl StreamNode {
    /// A node giving rows of `schema` as they come, in `partitions` partitions, ending when
    /// its inputs do (`boundedness`).
    pub(crate) fn new(schema: SchemaRef, partitions: usize, boundedness: Boundedness) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            boundedness,
        );
        Self {
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    pub(crate) fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    pub(crate) fn metrics(&self) -> MetricsSet {
        self.metrics.clone_inner()
    }

    /// Runs `operator` over `inputs`, partition `partition` of the node. Its inputs must
    /// have been executed already: operators register with the checkpoint barrier in the
    /// order the plan executes them, which is how each gets its own state back.
    pub(crate) fn run<O: StreamOperator>(
        &self,
        mut operator: O,
        inputs: Vec<SendableRecordBatchStream>,
        partition: usize,
        context: &Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let instance = OperatorInstance {
            index: partition,
            count: self.properties.output_partitioning().partition_count(),
        };
        let barrier = match operator.state() {
            Some(state) => {
                CheckpointBarrier::register_task_operator(context, instance, |restored| {
                    match restored {
                        RestoredState::Own(snapshot) => state.restore(&snapshot),
                        RestoredState::Rescaled(snapshots) => {
                            state.restore_rescaled(&snapshots, instance).map_err(|e| {
                                e.context(format!(
                                    "{}: taking up its state as instance {} of {}",
                                    O::NAME,
                                    instance.index,
                                    instance.count
                                ))
                            })
                        }
                    }
                })?
            }
            None => None,
        };
        let accounting = operator
            .state()
            .map(|state| Accounting::new(O::NAME, state, partition, context, &self.metrics));
        // Without state, counted as DataFusion counts the operators it stands in for.
        let baseline = accounting
            .is_none()
            .then(|| BaselineMetrics::new(&self.metrics, partition));
        let output_rows = match &baseline {
            Some(baseline) => baseline.output_rows().clone(),
            None => MetricBuilder::new(&self.metrics).output_rows(partition),
        };
        let compute = match &baseline {
            Some(baseline) => baseline.elapsed_compute().clone(),
            None => MetricBuilder::new(&self.metrics).elapsed_compute(partition),
        };
        let clock = operator.tick_period();
        let driver = Driver {
            next_tick: clock.map(|period| tokio::time::Instant::now() + period),
            clock,
            operator,
            inputs: inputs.into_iter().map(Some).collect(),
            polled_first: 0,
            pending: VecDeque::new(),
            output_rows,
            compute,
            _baseline: baseline,
            accounting,
            barrier,
            started: false,
            done: false,
        };
        let output = futures::stream::unfold(driver, |mut driver| async move {
            let next = driver.next().await;
            next.map(|batch| (batch, driver))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.properties.eq_properties.schema().clone(),
            output,
        )))
    }
}

/// An operator's state held against the memory limit, and its state metrics.
struct Accounting {
    memory: StateMemory,
    late: Count,
    /// The watermark (epoch ms), once there is one.
    watermark: Option<Gauge>,
}

impl Accounting {
    fn new(
        operator: &'static str,
        state: &dyn OperatorState,
        partition: usize,
        context: &Arc<TaskContext>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Self {
        Self {
            memory: StateMemory::new(operator, partition, context, metrics),
            late: MetricBuilder::new(metrics).counter("late_records", partition),
            watermark: state
                .watermark()
                .map(|_| MetricBuilder::new(metrics).gauge("watermark_ms", partition)),
        }
    }
}

/// One running operator and everything around it.
struct Driver<O> {
    operator: O,
    /// Its inputs; `None` once ended.
    inputs: Vec<Option<SendableRecordBatchStream>>,
    /// The input polled first next time: each in turn, so that a busy one starves none.
    polled_first: usize,
    /// Rows made ready and not given on yet.
    pending: VecDeque<RecordBatch>,
    output_rows: Count,
    /// Time spent in the operator's own work (EXPLAIN ANALYZE's `elapsed_compute`).
    compute: Time,
    /// Held so that it records when the run ends.
    _baseline: Option<BaselineMetrics>,
    /// For an operator with state.
    accounting: Option<Accounting>,
    /// The job's checkpoint barrier, for an operator with state in a job that checkpoints.
    barrier: Option<OperatorBarrier>,
    /// How often the operator wants processing time.
    clock: Option<Duration>,
    /// When it is due next: on a fixed cadence, so that a busy input does not put it off.
    next_tick: Option<tokio::time::Instant>,
    started: bool,
    done: bool,
}

/// What woke the driver.
enum Wake {
    Input(usize, Option<Result<RecordBatch>>),
    /// The checkpoint barrier changed: a snapshot may be due.
    Barrier,
    /// Processing time moved on.
    Tick,
}

impl<O: StreamOperator> Driver<O> {
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        if !self.started {
            self.started = true;
            if let Err(e) = self.operator.start().await {
                self.done = true;
                return Some(Err(e));
            }
        }
        loop {
            if let Some(batch) = self.pending.pop_front() {
                self.output_rows.add(batch.num_rows());
                return Some(Ok(batch));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step().await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// Does the next thing due: a snapshot, a batch, a tick; nothing between its snapshot
    /// and the job's release of the cut.
    async fn step(&mut self) -> Result<()> {
        if self.barrier.as_ref().is_some_and(OperatorBarrier::holds) {
            barrier_changed(self.barrier.as_mut()).await;
            return Ok(());
        }
        if let Some(epoch) = self
            .barrier
            .as_ref()
            .and_then(OperatorBarrier::snapshot_due)
        {
            // Every source holds back: what an input still has ready was read before the
            // cut and belongs in the snapshot; once none has anything, snapshot.
            let ready = self.inputs.iter_mut().enumerate().find_map(|(i, input)| {
                let next = checkpoint::ready_now(input.as_mut()?)?;
                Some((i, next))
            });
            if let Some((input, next)) = ready {
                return self.take(input, next);
            }
            if let (Some(barrier), Some(state)) = (&self.barrier, self.operator.state()) {
                barrier.snapshot(epoch, state.snapshot()?);
            }
            return Ok(());
        }
        // Due: before any input, however much one has ready.
        if self
            .next_tick
            .is_some_and(|at| tokio::time::Instant::now() >= at)
        {
            return self.tick();
        }
        let next_tick = self.next_tick;
        let inputs = next_input(&mut self.inputs, &mut self.polled_first);
        let barrier = self.barrier.as_mut();
        let wake = tokio::select! {
            biased;
            (input, next) = inputs => Wake::Input(input, next),
            _ = barrier_changed(barrier) => Wake::Barrier,
            _ = async {
                match next_tick {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => Wake::Tick,
        };
        match wake {
            Wake::Input(input, next) => self.take(input, next),
            Wake::Barrier => Ok(()),
            Wake::Tick => self.tick(),
        }
    }

    /// Gives the operator processing time, and sets the next tick one period on.
    fn tick(&mut self) -> Result<()> {
        self.next_tick = self
            .clock
            .map(|period| tokio::time::Instant::now() + period);
        let now = chrono::Utc::now().timestamp_millis();
        let timer = self.compute.timer();
        let ready = self.operator.on_tick(now);
        timer.done();
        let ready = ready?;
        // Windows closed by the clock, or state expired, give their memory back.
        self.account()?;
        self.pending.extend(ready);
        Ok(())
    }

    /// Hands the operator what input `input` gave (a batch, its end, or an error).
    fn take(&mut self, input: usize, next: Option<Result<RecordBatch>>) -> Result<()> {
        let Some(batch) = next else {
            self.inputs[input] = None;
            if self.inputs.iter().all(Option::is_none) {
                self.done = true;
                // A drain's end is a pause: what is open stays open, in the state.
                if !self.barrier.as_ref().is_some_and(OperatorBarrier::draining) {
                    let timer = self.compute.timer();
                    let ready = self.operator.finish();
                    timer.done();
                    self.pending.extend(ready?);
                }
                // Checkpoints taken while the rest of the job runs on keep its last state.
                if let (Some(barrier), Some(state)) = (&self.barrier, self.operator.state()) {
                    barrier.end(state.snapshot()?);
                }
            }
            return Ok(());
        };
        let batch = batch?;
        let late_before = self.late_records();
        let timer = self.compute.timer();
        let ready = self.operator.process_batch(input, batch);
        timer.done();
        // Late rows count even when the rest of the batch fails.
        let late = self.late_records() - late_before;
        if let Some(accounting) = &self.accounting {
            accounting.late.add(late);
        }
        let ready = ready?;
        self.account()?;
        self.pending.extend(ready);
        Ok(())
    }

    fn late_records(&mut self) -> usize {
        self.operator
            .state()
            .map_or(0, |state| state.late_records())
    }

    /// Brings the state metrics up to date, and the state's memory reservation: an error if
    /// the job's limit does not leave room for it.
    fn account(&mut self) -> Result<()> {
        let (Some(accounting), Some(state)) = (&mut self.accounting, self.operator.state()) else {
            return Ok(());
        };
        if let (Some(gauge), Some(watermark)) = (&accounting.watermark, state.watermark())
            && watermark > 0
            && watermark < i64::MAX
        {
            gauge.set(watermark as usize);
        }
        accounting.memory.resize(state.size())
    }
}

/// The next item of whichever input has one first, with its index.
fn next_input<'a>(
    inputs: &'a mut [Option<SendableRecordBatchStream>],
    polled_first: &'a mut usize,
) -> impl Future<Output = (usize, Option<Result<RecordBatch>>)> + 'a {
    std::future::poll_fn(move |cx| {
        let count = inputs.len();
        for turn in 0..count {
            let i = (*polled_first + turn) % count;
            if let Some(input) = inputs[i].as_mut()
                && let Poll::Ready(next) = input.poll_next_unpin(cx)
            {
                *polled_first = (i + 1) % count;
                return Poll::Ready((i, next));
            }
        }
        Poll::Pending
    })
}
