//! How each workload scales: the `autoscaling/v2` HorizontalPodAutoscaler of its pods, the
//! metrics it follows and how fast it moves. The numbers are explained in
//! docs/kubernetes.md; the metrics per pod come from the server's `/metrics` through the
//! Prometheus Adapter ([`crate::adapter`]), CPU and memory from the metrics server.
//!
//! | workload | follows | up | down |
//! |---|---|---|---|
//! | trading | consumer lag per pod, CPU | at once: double, or +4 pods, every 15 s | after 5 min calm: 1 pod a minute |
//! | analytics | memory, state bytes per pod | after 2 min: 1 pod per 2 min | after 10 min: 1 pod per 5 min |
//! | realtime | records/s per pod | after 30 s: +50 % per 30 s | after 3 min: -25 % a minute |
//! | reporting | (a CronJob: no pods between runs) | | |

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec,
    MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use ferris_engine::statements::hints::Workload;

use crate::workloads::WorkloadGroup;

/// Trading: messages behind per pod (`ferris_consumer_lag`) the autoscaler holds pods to
/// (1000, written as the API server keeps it, so that an object read back equals it).
pub const TRADING_LAG_PER_POD: &str = "1k";
/// Trading: the CPU use, of what a pod asks for, it holds pods to (percent).
pub const TRADING_CPU_PERCENT: i32 = 70;
/// Analytics: the memory use, of what a pod asks for, it holds pods to (percent).
pub const ANALYTICS_MEMORY_PERCENT: i32 = 75;
/// Analytics: bytes of keyed state per pod (`ferris_state_bytes`) it holds pods to.
pub const ANALYTICS_STATE_PER_POD: &str = "512Mi";
/// Realtime: records read per second per pod (`ferris_records_per_second`) it aims at.
pub const REALTIME_RECORDS_PER_POD: &str = "20k";

/// The autoscaler of `group`'s StatefulSet (named as the group), if its workload scales.
pub fn autoscaler(group: &WorkloadGroup, namespace: &str) -> Option<HorizontalPodAutoscaler> {
    let (metrics, up, down) = match group.workload? {
        Workload::Trading => (
            vec![
                pods("ferris_consumer_lag", TRADING_LAG_PER_POD),
                resource("cpu", TRADING_CPU_PERCENT),
            ],
            rules(0, &[("Percent", 100, 15), ("Pods", 4, 15)], "Max"),
            rules(300, &[("Pods", 1, 60)], "Min"),
        ),
        Workload::Analytics => (
            vec![
                resource("memory", ANALYTICS_MEMORY_PERCENT),
                pods("ferris_state_bytes", ANALYTICS_STATE_PER_POD),
            ],
            rules(120, &[("Pods", 1, 120)], "Max"),
            rules(600, &[("Pods", 1, 300)], "Min"),
        ),
        Workload::Realtime => (
            vec![pods("ferris_records_per_second", REALTIME_RECORDS_PER_POD)],
            rules(30, &[("Percent", 50, 30)], "Max"),
            rules(180, &[("Percent", 25, 60)], "Min"),
        ),
        Workload::Reporting => return None,
    };
    let name = group.name();
    Some(HorizontalPodAutoscaler {
        metadata: group.metadata(&name, namespace),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "StatefulSet".into(),
                name,
            },
            min_replicas: Some(group.replicas.min as i32),
            max_replicas: group.replicas.max as i32,
            metrics: Some(metrics),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(up),
                scale_down: Some(down),
            }),
        }),
        ..Default::default()
    })
}

/// A per-pod metric of the adapter's, held at `average` per pod.
fn pods(name: &str, average: &str) -> MetricSpec {
    MetricSpec {
        type_: "Pods".into(),
        pods: Some(PodsMetricSource {
            metric: MetricIdentifier {
                name: name.into(),
                selector: None,
            },
            target: MetricTarget {
                type_: "AverageValue".into(),
                average_value: Some(Quantity(average.into())),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// CPU or memory use, held at `percent` of what the pods ask for.
fn resource(name: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: name.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// A direction's rules: wait `stabilization` seconds of steady advice, then move by the
/// policies (kind, value, per seconds), taking the one that moves `select` (most or least).
fn rules(stabilization: i32, policies: &[(&str, i32, i32)], select: &str) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(stabilization),
        select_policy: Some(select.into()),
        policies: Some(
            policies
                .iter()
                .map(|&(kind, value, period)| HPAScalingPolicy {
                    type_: kind.into(),
                    value,
                    period_seconds: period,
                })
                .collect(),
        ),
        ..Default::default()
    }
}
