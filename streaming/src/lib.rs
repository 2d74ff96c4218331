//! FerrisStreams streaming execution: what DataFusion lacks for unbounded data.
//!
//! - [`event_time`]: stamps each source row with its event time and the watermark left by
//!   the rows before it, so lateness is judged in source order whatever the batching.
//! - [`window`]: window shapes (tumbling, sliding, session, or one global window), how a
//!   timestamp maps to them, and when their rows are emitted.
//! - [`WindowAggregateExec`]: an incremental GROUP BY per window, built on DataFusion's own
//!   aggregate functions (`GroupsAccumulator`), emitting final rows or changes.
//!
//! - [`LookupJoinExec`]: a stream joined to a bounded table, each batch as it comes.
//! - [`StreamJoinExec`]: two streams joined on equal keys, each batch as it comes.
//! - [`checkpoint`]: a consistent cut of a running plan, for checkpoints.
//! - [`ExchangeExec`]: rows, watermarks and checkpoint markers between the parallel
//!   instances of a plan (by key, or merged into one).
//! - [`TopNExec`]: the first N rows of each key by an order (`ROW_NUMBER() ... <= N`, and
//!   deduplication), as a changelog.
//!
//! Those operators implement only their own work (`operator.rs`); one driver runs
//! them all (`driver.rs`): it polls their inputs, snapshots and restores their state at
//! checkpoints, runs their clock and holds their state against the job's memory limit.
//! Every stateful piece can be snapshotted to a `RecordBatch` and restored from it.

pub mod busy;
mod changelog;
pub mod checkpoint;
mod driver;
mod error;
pub mod event_time;
mod exchange;
mod join_keys;
mod join_time_bounds;
pub mod key_groups;
pub mod late;
mod lookup_join;
mod operator;
mod pre_aggregate;
pub mod process_instance;
mod session_state;
mod sliced_state;
mod state_memory;
mod stream_join;
mod task_context;
#[cfg(test)]
mod test_util;
mod top_n;
pub mod window;
mod window_aggregate;
mod window_rows_map;
mod window_state;

pub use error::StreamingError;
pub use event_time::{EVENT_TIME_COLUMN, EventTimeStamper, WATERMARK_COLUMN, WatermarkSpec};
pub use exchange::{ExchangeExec, ExchangeRouting, TRANSPORT_OUTPUT, WatermarkMerge};
pub use join_time_bounds::SideTime;
pub use late::{LateDataPolicy, LateRecordSink};
pub use lookup_join::{LookupJoinExec, LookupJoinRule, LookupTableRead};
pub use pre_aggregate::PreAggregateExec;
pub use stream_join::{StreamJoinExec, StreamJoinRule};
pub use top_n::{TopNConfig, TopNExec, TopNRule};
pub use window::{EmitMode, WindowSpec};
pub use window_aggregate::{
    AggregateSettings, GROUPING_SETS_UNSUPPORTED, WindowAggregateConfig, WindowAggregateExec,
    WindowAggregateRule, final_window_rows,
};
pub use window_rows_map::WindowRowsMapExec;
