//! Counters a source keeps while it runs, read by progress lines and summaries.

use std::sync::atomic::{AtomicU64, Ordering};

/// Records read and rejected by one source.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    records_in: AtomicU64,
    bad_records: AtomicU64,
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

    pub(crate) fn add_records(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_bad(&self, n: usize) {
        self.bad_records.fetch_add(n as u64, Ordering::Relaxed);
    }
}
