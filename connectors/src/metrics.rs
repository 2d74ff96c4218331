//! Counters a source keeps while it runs, read by progress lines and summaries.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Records read and rejected by one source, and whether it is waiting for its system.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    records_in: AtomicU64,
    bad_records: AtomicU64,
    unavailable: Mutex<Option<String>>,
    /// Per partition, how many messages the reader is behind the partition's end.
    lag: Mutex<BTreeMap<i32, i64>>,
}

impl SourceMetrics {
    /// Valid records decoded so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    /// Malformed records skipped or dead-lettered so far.
    pub fn bad_records(&self) -> u64 {
        self.bad_records.load(Ordering::Relaxed)
    }

    /// Why the source waits for its system (a broker out of reach), while it does.
    pub fn unavailable(&self) -> Option<String> {
        self.unavailable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that the source waits for its system (or, with `None`, that it reads again);
    /// returns what was recorded before.
    pub(crate) fn set_unavailable(&self, reason: Option<String>) -> Option<String> {
        std::mem::replace(
            &mut *self.unavailable.lock().unwrap_or_else(|e| e.into_inner()),
            reason,
        )
    }

    /// Per partition read (Kafka), how many messages the reader is behind its end, as the
    /// client last reported (every second).
    pub fn lag(&self) -> BTreeMap<i32, i64> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_lag(&self, lag: BTreeMap<i32, i64>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    pub(crate) fn add_records(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_bad(&self, n: usize) {
        self.bad_records.fetch_add(n as u64, Ordering::Relaxed);
    }
}
