//! Streaming planning: our window clauses on DataFusion's AST, and our operators in
//! DataFusion's physical plan.
//!
//! [`window_clause`] rewrites the query's AST before DataFusion plans it;
//! [`window_output`] keeps filters on a window's bounds above its aggregate in the logical
//! plan (an analyzer rule, a node and its physical planner). Each rewrite of
//! the physical plan is a DataFusion [`PhysicalOptimizerRule`]: an operator's sits in the
//! operator's own file in `ferris_streaming` (it puts that operator in place of what
//! DataFusion planned), the others in a file of their own here; [`streaming_rules`] lists
//! them in the order they run; [`parallelize`] spreads the finished plan over a parallel
//! job's instances, after the others; [`properties`] answers what the finished plan is
//! (stateless, checkpointable, windowed).

pub mod batch_pass_through;
pub mod parallelize;
pub mod properties;
pub mod window_clause;
pub mod window_output;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use ferris_streaming::{
    AggregateSettings, LookupJoinRule, SideTime, StreamJoinRule, TopNRule, WindowAggregateRule,
};

/// What the streaming rules need to know of a query beyond its plan.
#[derive(Debug, Default)]
pub struct StreamingQueryPlan {
    /// How each of its windows runs, outermost first.
    pub windows: Vec<AggregateSettings>,
    /// How its aggregate by keys runs (without a window, or over a window's rows), when it
    /// streams (as a changelog); `None`: left to DataFusion.
    pub keyed: Option<AggregateSettings>,
    /// The schema its stream (its first FROM item) is read with.
    pub stream: Option<SchemaRef>,
    /// The event times of the sources that declare one, by the schema they are read with.
    pub times: Vec<(SchemaRef, SideTime)>,
    /// How long a join of two streams without time bounds keeps a row (`'state.ttl'`).
    pub state_ttl: Option<std::time::Duration>,
}

/// Our rewrites of DataFusion's physical plan, in the order they run.
pub fn streaming_rules(query: StreamingQueryPlan) -> Vec<Arc<dyn PhysicalOptimizerRule>> {
    let streams = !query.windows.is_empty() || query.keyed.is_some();
    vec![
        Arc::new(StreamJoinRule {
            times: query.times,
            state_ttl: query.state_ttl,
        }),
        Arc::new(LookupJoinRule {
            stream: query.stream,
        }),
        Arc::new(WindowAggregateRule {
            windows: query.windows,
            keyed: query.keyed,
        }),
        // A query that streams ranks as rows come (after the aggregate rule: a window's
        // final rows can be ranked, a changelog's cannot).
        Arc::new(TopNRule {
            changelog: streams,
            state_ttl: query.state_ttl,
        }),
        Arc::new(batch_pass_through::BatchPassThrough),
    ]
}
