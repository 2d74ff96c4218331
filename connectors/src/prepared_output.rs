//! What a sink hands a checkpoint: its output up to the cut, written but not yet durable or
//! visible.

use crate::error::{ConnectorError, Result};

/// A sink's output up to a checkpoint's cut: written and finished, neither durable nor
/// visible yet.
#[derive(Debug)]
pub struct PreparedOutput {
    /// What the checkpoint's manifest records of it.
    pub part: serde_json::Value,
    /// Files written to, synced by [`PreparedOutput::make_durable`].
    pub(crate) unsynced: Vec<std::fs::File>,
}

impl PreparedOutput {
    /// Output that is durable as it is (nothing to sync), recorded as `part`.
    pub fn durable(part: serde_json::Value) -> Self {
        Self {
            part,
            unsynced: Vec::new(),
        }
    }

    /// Syncs its files to disk (blocking; the job goes on meanwhile): the checkpoint may be
    /// written once it returns.
    pub fn make_durable(&self) -> Result<()> {
        for file in &self.unsynced {
            file.sync_all()
                .map_err(|e| ConnectorError::storage("syncing a checkpoint's output", e))?;
        }
        Ok(())
    }
}
