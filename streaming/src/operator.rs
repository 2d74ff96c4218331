//! What a streaming operator implements itself; the driver (`driver.rs`) does the rest.
//!
//! In the spirit of Arroyo's `ArrowOperator`: an operator turns input batches into output
//! batches, and its state into a snapshot and back. The driver polls its inputs, takes part
//! in the job's checkpoints, runs its clock and holds its state against the job's memory
//! limit, the same way for every operator.

use std::future::Future;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use datafusion::error::Result;

use crate::key_groups::OperatorInstance;

/// One running operator's own work, fed by the driver.
pub(crate) trait StreamOperator: Send + 'static {
    /// Its plan node's name, which also names its state's memory reservation and errors.
    const NAME: &'static str;

    /// Gets ready before the first batch (a lookup join reads its table).
    fn start(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Handles a batch of input `input` (the index of its plan node's input stream); returns
    /// the rows it makes ready.
    fn process_batch(&mut self, input: usize, batch: RecordBatch) -> Result<Vec<RecordBatch>>;

    /// How often [`StreamOperator::on_tick`] wants processing time, if ever: every period,
    /// however busy its inputs are.
    fn tick_period(&self) -> Option<Duration> {
        None
    }

    /// Processing time has reached `now` (epoch ms); returns the rows that makes ready.
    fn on_tick(&mut self, _now: i64) -> Result<Vec<RecordBatch>> {
        Ok(vec![])
    }

    /// Every input has ended; returns the last rows.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(vec![])
    }

    /// What it keeps between batches, if anything. Only an operator with state takes part
    /// in checkpoints: one without (a lookup join, which reads its table again on every
    /// start) must not, or every checkpoint's operators would be numbered otherwise.
    fn state(&mut self) -> Option<&mut dyn OperatorState> {
        None
    }
}

/// How often an operator whose state expires after `ttl` (`'state.ttl'`) looks for what
/// expired: a quarter of it, so that nothing outlives it by more than a quarter.
pub(crate) fn expiry_tick(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// Before when (processing time, epoch ms) state last touched has expired at `now`.
pub(crate) fn expired_before(now: i64, ttl: Duration) -> i64 {
    now.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// The state an operator keeps between batches.
pub(crate) trait OperatorState: Send {
    /// The whole state as one batch, for a checkpoint, leaving it intact.
    fn snapshot(&mut self) -> Result<RecordBatch>;

    /// Takes the state of a snapshot, before the first batch.
    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()>;

    /// Bytes held.
    fn size(&self) -> usize;

    /// Records dropped (or dead-lettered) as late so far.
    fn late_records(&self) -> usize;

    /// The watermark acted on (epoch ms), for an operator that keeps one.
    fn watermark(&self) -> Option<i64> {
        None
    }

    /// Takes up, before the first batch, the state of its key groups from the snapshots of
    /// a checkpoint taken at another parallelism: those of the old instances whose key
    /// groups overlap its own (see `key_groups.rs`).
    fn restore_rescaled(
        &mut self,
        snapshots: &[RecordBatch],
        instance: OperatorInstance,
    ) -> Result<()>;
}
