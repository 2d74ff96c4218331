//! What a checkpoint holds besides its state files: its `_manifest.json`, written last, so
//! that a checkpoint without one never happened.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{EngineError, Result};

/// What a checkpoint holds besides the state files.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Its number.
    pub epoch: u64,
    /// The plan it was taken of (of one instance): state restores only into the same plan.
    pub plan: String,
    /// How many instances the plan ran as (1 in a manifest from before parallel jobs).
    pub parallelism: usize,
    /// Source names, in the order of their files.
    pub sources: Vec<String>,
    /// Operator snapshots taken.
    pub operators: usize,
    /// The sink's part: output prepared but maybe not yet committed.
    pub sink: serde_json::Value,
    /// Whether the job had ended (its input all read, its output all committed).
    pub finished: bool,
    /// Whether it holds the rows of the job's table kept by name, as they were at the cut
    /// (`table.arrow`).
    pub table: bool,
    /// When it was written (ms since the epoch).
    pub created_ms: u64,
}

impl Manifest {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "epoch": self.epoch,
            "plan": self.plan,
            "parallelism": self.parallelism,
            "sources": self.sources,
            "operators": self.operators,
            "sink": self.sink,
            "finished": self.finished,
            "table": self.table,
            "created_ms": self.created_ms,
        })
    }

    pub(crate) fn from_json(value: &serde_json::Value, location: &str) -> Result<Self> {
        let bad = |field: &str| {
            EngineError::Checkpoint(format!("{location}: no valid '{field}' in the manifest"))
        };
        let number = |field: &str| {
            value
                .get(field)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| bad(field))
        };
        Ok(Self {
            epoch: number("epoch")?,
            plan: value
                .get("plan")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("plan"))?
                .to_string(),
            parallelism: value
                .get("parallelism")
                .map(|v| {
                    v.as_u64()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("parallelism"))
                })
                .transpose()?
                .unwrap_or(1) as usize,
            sources: value
                .get("sources")
                .and_then(|v| v.as_array())
                .ok_or_else(|| bad("sources"))?
                .iter()
                .map(|s| s.as_str().map(str::to_string).ok_or_else(|| bad("sources")))
                .collect::<Result<_>>()?,
            operators: number("operators")? as usize,
            sink: value.get("sink").cloned().unwrap_or_default(),
            finished: value
                .get("finished")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            table: value
                .get("table")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            created_ms: number("created_ms")?,
        })
    }

    /// How long ago it was written.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.created_ms))
    }
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
