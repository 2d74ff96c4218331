//! Runs a job's plan as N instances (`'parallelism' = 'N'`): each source divided into N
//! shares where its connector can divide it, and an exchange wherever an operator needs its
//! rows otherwise than they come (by key for a GROUP BY or a join, all in one for what runs
//! once), up to one merged stream for the sink.
//!
//! It runs last, on the finished streaming plan, so that every other rule sees the plan of
//! one instance. A job of one instance goes through it too when its plan has streams to
//! merge (a UNION ALL). Which distribution an operator needs is its own
//! `input_distribution_requirements`; the operators that run as many instances are listed in
//! [`runs_in_parallel`], and every other one gets its input merged.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{Distribution, ExecutionPlan, ExecutionPlanProperties};
use ferris_streaming::{
    ExchangeExec, ExchangeRouting, LookupJoinExec, StreamJoinExec, TopNExec, WATERMARK_COLUMN,
    WatermarkMerge, WindowAggregateExec, WindowRowsMapExec, final_window_rows,
};

use crate::source::SourceScan;

/// Spreads a plan over `instances` instances.
#[derive(Debug)]
pub struct Parallelize {
    /// How many instances; 1 leaves the plan as it is.
    pub instances: usize,
    /// Whether a window aggregate's rows are pre-aggregated before they cross an exchange:
    /// where the instances run in several processes, so that the exchanges go through
    /// Kafka. Within a process an exchange hands batches on for less than pre-aggregating
    /// them costs (measured: `docs/performance.md`, parallel_scaling and windowed_aggregation).
    pub pre_aggregate: bool,
    /// The sources the plan's scans read, each with its shares when it divides.
    pub sources: Vec<(SourceScan, Vec<Arc<dyn PartitionStream>>)>,
    /// The windowed source's idle timeout: a share silent this long stops holding the
    /// watermark back.
    pub idle_timeout: Option<Duration>,
}

impl PhysicalOptimizerRule for Parallelize {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // One instance needs exchanges only where streams meet: a UNION ALL's inputs merged
        // for an operator of one input (their watermarks merged too), or for the sink.
        if self.instances <= 1 && !has_several_partitions(&plan) {
            return Ok(plan);
        }
        let plan = self.spread(plan, &mut 0)?;
        // The sink writes one stream (of the instances of this process, when they run in
        // several: this exchange never crosses processes).
        Ok(self.distribute(
            plan,
            &Distribution::SinglePartition,
            "the sink writes one stream",
            None,
        ))
    }

    fn name(&self) -> &str {
        "parallelize"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

impl Parallelize {
    /// `plan` with its sources divided and its children given what each operator needs;
    /// `crossings` numbers the exchanges put in, in the order the walk puts them.
    fn spread(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        crossings: &mut u32,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(scan) = plan.downcast_ref::<StreamingTableExec>() {
            return self.divide(scan).map(|divided| divided.unwrap_or(plan));
        }
        // A lookup join reads its table whole in every instance.
        let table_side = plan.downcast_ref::<LookupJoinExec>().map(|_| 0);
        let parallel = runs_in_parallel(plan.as_ref());
        let required = plan.input_distribution_requirements();
        let mut two_phase = None;
        let mut children = Vec::new();
        for (i, child) in plan.children().into_iter().enumerate() {
            if Some(i) == table_side {
                children.push(child.clone());
                continue;
            }
            let mut spread = self.spread(child.clone(), crossings)?;
            let (mut distribution, mut why) = match required.child_distribution(i) {
                Some(distribution) if parallel => (distribution.clone(), why(plan.as_ref())),
                _ => (
                    Distribution::SinglePartition,
                    format!("{} runs as one instance", plan.name()),
                ),
            };
            // A window aggregate whose rows would cross processes takes each micro-batch's
            // partial states across instead, far fewer than its rows.
            if let Some(aggregate) = plan.downcast_ref::<WindowAggregateExec>()
                && self.pre_aggregate
                && parallel
                && !satisfies(&spread, &distribution)
                && let Some(merging) = aggregate.pre_aggregated(spread.clone())?
            {
                spread = merging.children()[0].clone();
                if let Some(keys) = merging
                    .input_distribution_requirements()
                    .child_distribution(0)
                {
                    distribution = keys.clone();
                }
                why = format!("{why}, as partial states per micro-batch");
                two_phase = Some(merging as Arc<dyn ExecutionPlan>);
            }
            children.push(self.distribute(spread, &distribution, &why, Some(crossings)));
        }
        replace_children_if_necessary(two_phase.unwrap_or(plan), children)
    }

    /// The scan with its source divided into shares, if it reads one that divides.
    fn divide(&self, scan: &StreamingTableExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let [partition] = scan.partitions().as_slice() else {
            return Ok(None);
        };
        let Some((_, shares)) = self.sources.iter().find(|(s, _)| s.reads(partition)) else {
            return Ok(None);
        };
        if shares.is_empty() {
            return Ok(None);
        }
        let ordering: Vec<_> = scan.projected_output_ordering().into_iter().collect();
        let divided = StreamingTableExec::try_new(
            scan.partition_schema().clone(),
            shares.clone(),
            scan.projection().as_ref().map(|p| p.to_vec()).as_ref(),
            ordering,
            scan.is_infinite(),
            scan.limit(),
        )?;
        Ok(Some(Arc::new(divided)))
    }

    /// `plan` with the distribution `required`, through an exchange if it is not so
    /// already: one that crosses processes when the instances run in several, numbered by
    /// `crossings`, unless that is `None`.
    fn distribute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        required: &Distribution,
        why: &str,
        crossings: Option<&mut u32>,
    ) -> Arc<dyn ExecutionPlan> {
        let routing = match required {
            _ if satisfies(&plan, required) => return plan,
            Distribution::SinglePartition => ExchangeRouting::Merge,
            Distribution::KeyPartitioned(keys) => {
                ExchangeRouting::Hash(keys.clone(), self.instances)
            }
            _ => return plan,
        };
        let level = exchange_level(&plan) + 1;
        let crossing = crossings.map(|next| {
            *next += 1;
            *next - 1
        });
        let watermark = match carries_watermarks(&plan) {
            true => plan
                .schema()
                .index_of(WATERMARK_COLUMN)
                .ok()
                .map(|column| WatermarkMerge {
                    column: Some(column),
                    idle_timeout: self.idle_timeout,
                }),
            // A window's rows whose operator announces its watermark: the announcements
            // alone are merged, and each sender's come as its input's watermark moves (its
            // own exchange tells it), so none is ever idle.
            false => announces_watermark(&plan).then_some(WatermarkMerge {
                column: None,
                idle_timeout: None,
            }),
        };
        Arc::new(ExchangeExec::new(
            plan,
            routing,
            level,
            crossing,
            watermark,
            why.to_string(),
        ))
    }
}

/// The operators that run as many instances, each on the rows its distribution gives it.
fn runs_in_parallel(plan: &dyn ExecutionPlan) -> bool {
    plan.downcast_ref::<FilterExec>().is_some()
        || plan.downcast_ref::<ProjectionExec>().is_some()
        || plan.downcast_ref::<CooperativeExec>().is_some()
        || plan.downcast_ref::<UnionExec>().is_some()
        || plan.downcast_ref::<WindowAggregateExec>().is_some()
        || plan.downcast_ref::<StreamJoinExec>().is_some()
        || plan.downcast_ref::<LookupJoinExec>().is_some()
        || plan.downcast_ref::<ExchangeExec>().is_some()
        || plan.downcast_ref::<TopNExec>().is_some()
        || plan.downcast_ref::<WindowRowsMapExec>().is_some()
}

/// Why an operator needs its input distributed as it says, for EXPLAIN.
fn why(plan: &dyn ExecutionPlan) -> String {
    if plan.downcast_ref::<WindowAggregateExec>().is_some() {
        "each GROUP BY key's state in one instance".into()
    } else if plan.downcast_ref::<StreamJoinExec>().is_some() {
        "each join key's rows of both sides in one instance".into()
    } else if plan.downcast_ref::<TopNExec>().is_some() {
        "each PARTITION BY key's rows in one instance".into()
    } else {
        format!("{} needs it", plan.name())
    }
}

/// The highest level of the exchanges in `plan` (0 without any).
fn exchange_level(plan: &Arc<dyn ExecutionPlan>) -> u32 {
    let mut level = 0;
    plan.apply(|node| {
        if let Some(exchange) = node.downcast_ref::<ExchangeExec>() {
            level = level.max(exchange.level());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the visit never fails");
    level
}

/// Whether `plan`'s output is distributed as `required` already.
fn satisfies(plan: &Arc<dyn ExecutionPlan>, required: &Distribution) -> bool {
    plan.output_partitioning()
        .satisfaction(required, plan.equivalence_properties(), false)
        .is_satisfied()
}

/// Whether some node of `plan` outputs more than one partition.
fn has_several_partitions(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| Ok(node.output_partitioning().partition_count() > 1))
        .expect("the visit never fails")
}

/// Whether `plan` passes on the final rows of a window aggregate that announces its
/// watermark in batches of no rows.
fn announces_watermark(plan: &Arc<dyn ExecutionPlan>) -> bool {
    final_window_rows(plan, None).is_some_and(|(window, _)| window.config().announces_watermark)
}

/// Whether `plan`'s rows still carry the watermark stamped at their source: no window
/// aggregate has replaced it with the window's end yet.
fn carries_watermarks(plan: &Arc<dyn ExecutionPlan>) -> bool {
    !plan
        .exists(|node| Ok(node.downcast_ref::<WindowAggregateExec>().is_some()))
        .expect("the visit never fails")
}
