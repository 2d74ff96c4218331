//! Streaming planning: our window clauses on DataFusion's AST, and our operators in
//! DataFusion's physical plan.
//!
//! [`window_clause`] rewrites the query's AST before DataFusion plans it. Each rewrite of
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

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use ferris_streaming::{
    AggregateSettings, LookupJoinRule, SideTime, StreamJoinRule, TopNRule, WindowAggregateRule,
};

/// What the streaming rules need to know of a query beyond its plan.
#[derive(Debug, Default)]
pub struct StreamingQueryPlan {
    /// How its aggregate runs, when it has one that streams (a window, or a changelog).
    pub aggregate: Option<AggregateSettings>,
    /// The schema its stream (its first FROM item) is read with.
    pub stream: Option<SchemaRef>,
    /// The event times of the sources that declare one, by the schema they are read with.
    pub times: Vec<(SchemaRef, SideTime)>,
    /// How long a join of two streams without time bounds keeps a row (`'state.ttl'`).
    pub state_ttl: Option<std::time::Duration>,
}

/// Our rewrites of DataFusion's physical plan, in the order they run.
pub fn streaming_rules(query: StreamingQueryPlan) -> Vec<Arc<dyn PhysicalOptimizerRule>> {
    let streams = query.aggregate.is_some();
    vec![
        Arc::new(StreamJoinRule {
            times: query.times,
            state_ttl: query.state_ttl,
        }),
        Arc::new(LookupJoinRule {
            stream: query.stream,
        }),
        // A query that streams ranks as rows come (before the aggregate rule, to see an
        // aggregate it is asked to rank, and refuse).
        Arc::new(TopNRule {
            changelog: streams,
            state_ttl: query.state_ttl,
        }),
        Arc::new(WindowAggregateRule {
            settings: query.aggregate,
        }),
        Arc::new(batch_pass_through::BatchPassThrough),
    ]
}
