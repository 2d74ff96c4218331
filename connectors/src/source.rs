//! What the engine asks of a source, whatever its connector: a [`SourceConnector`] describes
//! the source, says what it can do, and opens [`SourceReader`]s that read it a micro-batch at
//! a time.

use std::any::Any;
use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::metrics::SourceMetrics;
use crate::position::{CommittedPosition, SourcePosition};
use crate::stop::StopSignal;

/// Parts of a source read side by side (a topic's partitions), each keeping its own
/// watermark: the source's is their minimum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    /// The column naming each record's part.
    pub column: &'static str,
    /// The parts it reads, by the number that column holds.
    pub ids: Vec<i32>,
}

/// One of the equal shares a source is divided into for a parallel job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Which share, from 0.
    pub index: usize,
    /// How many shares there are.
    pub count: usize,
}

impl Share {
    /// Whether the part called `part` (a file's path) falls to this share: by a hash of
    /// its name that never changes between runs, so a part never moves between shares.
    pub fn owns(&self, part: &str) -> bool {
        // FNV-1a: stable across processes and Rust versions, unlike the std hasher.
        let mut hash = fnv::FnvHasher::default();
        hash.write(part.as_bytes());
        hash.finish() % self.count as u64 == self.index as u64
    }
}

/// A share of a divided source, and the source that reads it.
pub type DividedShare = (Share, Arc<dyn SourceConnector>);

/// An open source: its schema settled, its data found.
pub trait SourceConnector: fmt::Debug + Send + Sync {
    /// The source as its own type, for a connector that works with its own sources (a Kafka
    /// sink committing a Kafka source's offsets in its transaction).
    fn as_any(&self) -> &dyn Any;

    /// The columns of its records.
    fn schema(&self) -> SchemaRef;

    /// Whether it ends by itself.
    fn is_bounded(&self) -> bool;

    /// The connector type's name (`'<name>.type'`).
    fn connector(&self) -> &'static str;

    /// Where it reads: a path, or `kafka://servers/topic`.
    fn location(&self) -> String;

    /// The name of its record format.
    fn format(&self) -> String;

    /// The column holding each record's event time when no option names one (a Kafka
    /// message's timestamp).
    fn event_time_column(&self) -> Option<&'static str> {
        None
    }

    /// How long a part may go without records before it no longer holds the watermark back,
    /// unless an option says; `None`: it always does.
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }

    /// Its parts read side by side, if they are (else its records come in one order).
    fn partitions(&self) -> Option<Partitions> {
        None
    }

    /// The source divided into at most `count` shares for a parallel job, if it divides
    /// (else one instance reads it all). The shares read every record once between them,
    /// and each part (a file) always falls to the same share, so that a checkpoint's
    /// positions resume in the instance that read them. A share that would read nothing
    /// is left out where the source knows it (a bounded source's files).
    fn split(&self, _count: usize) -> BoxFuture<'_, Result<Option<Vec<DividedShare>>>> {
        async { Ok(None) }.boxed()
    }

    /// The columns it adds to each record (a Kafka message's key, timestamp, ...), which
    /// `INSERT INTO` the source does not give.
    fn metadata_columns(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether its readers leave the columns they are not asked for undecoded (else they
    /// decode whole records and drop the rest: Avro, Protobuf).
    fn skips_unread_columns(&self) -> bool {
        true
    }

    /// A reader from `position` (a checkpoint's), else from where the source starts (the
    /// beginning of its files, its consumer group's committed offsets), that decodes the
    /// `columns` of its schema a plan reads (ascending; `None`: all of them): its batches
    /// hold those columns, in that order. Where it skips the others, a value in one of them
    /// that would not decode does not make its record malformed.
    fn reader(
        &self,
        position: Option<&SourcePosition>,
        columns: Option<&[usize]>,
        stop: StopSignal,
        metrics: Arc<SourceMetrics>,
    ) -> Result<Box<dyn SourceReader>>;

    /// What the source's own store has committed (a consumer group's offsets, with their
    /// metadata); `None` where it keeps no positions.
    fn committed_position(&self) -> BoxFuture<'_, Result<Option<CommittedPosition>>> {
        async { Ok(None) }.boxed()
    }

    /// Commits a checkpoint's position where the source keeps positions, without waiting, so
    /// that lag shows and a run without the checkpoint starts there.
    fn commit_position(&self, _position: &SourcePosition) -> Result<()> {
        Ok(())
    }

    /// Commits what its readers have read, where the source keeps positions.
    fn commit(&self) -> Result<()> {
        Ok(())
    }

    /// The job reading the source has ended: what the source kept for the job's last commit
    /// goes (a Kafka consumer leaves its group, so that the job started again, here or on
    /// another node, is given its partitions at once).
    fn release(&self) {}
}

/// Reads a source's micro-batches.
pub trait SourceReader: Send {
    /// Where the reader stands, after the last batch it returned.
    fn position(&self) -> SourcePosition;

    /// Updates the lag in the reader's metrics without reading: a paused job's lag grows
    /// while it waits.
    fn report_lag(&self) {}

    /// The partitions known to hold records not read yet (a Kafka partition short of its end
    /// offset): the watermark waits for them, however long they gave nothing.
    fn backlogged(&mut self) -> Vec<i32> {
        Vec::new()
    }

    /// The next micro-batch, `None` at the end; an empty one when nothing came for a while.
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<RecordBatch>>>;
}
