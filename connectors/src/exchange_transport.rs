//! How the exchanges of a job whose instances run in several processes reach the other
//! processes: [`ExchangeTransport`], what carries an exchange's messages from the senders in
//! one process to an output in another (`kafka/exchange.rs`: a topic per exchange, a
//! partition per output). The exchange itself (`ferris-streaming`) decides what to send.

use std::fmt;

use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use crate::error::Result;

/// What one sender of an exchange tells one output through the transport.
#[derive(Debug, Clone)]
pub enum ExchangeMessage {
    /// Rows, stamped with their watermark when the exchange merges watermarks.
    Rows(RecordBatch),
    /// The sender's watermark moved on without rows for this output.
    Watermark(i64),
    /// The sender's input has been silent for the source's idle timeout: it holds no
    /// watermark back until it sends again.
    Idle,
    /// The sender has ended.
    End,
    /// The sender's input ended in a drain, before the job's parallelism changes: it has
    /// sent everything, and its watermark holds where it is, as if it ran on.
    Drained,
}

/// A message read back, with who sent it and where the next one starts.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The sender (the exchange's input partition).
    pub from: usize,
    pub message: ExchangeMessage,
    /// The transport's offset just after this message: where to resume once it is handled.
    pub next_offset: i64,
}

/// Carries an exchange's messages between the processes running a job's instances.
pub trait ExchangeTransport: Send + Sync + fmt::Debug {
    /// Makes ready exchange `exchange` (its number in the plan) with `outputs` outputs;
    /// called by each process before its senders write. (Rows carry their own schema.)
    fn open(&self, exchange: u32, outputs: usize) -> Result<()>;

    /// Sends `message` from sender `from` to output `output` of `exchange`. It may wait
    /// while the transport's queue is full; an error fails the sender.
    fn send(
        &self,
        exchange: u32,
        output: usize,
        from: usize,
        message: &ExchangeMessage,
    ) -> Result<()>;

    /// Reads output `output` of `exchange` from `offset` (`None`: from its beginning), as
    /// a channel its own task fills; an error ends it.
    fn read(
        &self,
        exchange: u32,
        output: usize,
        offset: Option<i64>,
    ) -> Result<mpsc::Receiver<Result<ReceivedMessage>>>;

    /// The position to checkpoint for output `output` of `exchange` resuming at
    /// `next_offset` (`None`: its beginning), as the job keeps its sources' positions.
    fn position(&self, exchange: u32, output: usize, next_offset: Option<i64>) -> RecordBatch;

    /// The offset a position from [`ExchangeTransport::position`] resumes at.
    fn resume_offset(&self, position: &RecordBatch) -> Result<Option<i64>>;
}
