//! `ferris-k8s-monitor`: a deployment of `ferris-k8s-deploy` as one screen of text. Per
//! workload group, from the Kubernetes API: the autoscaler's current and desired pods and the
//! metric values it sees against its targets (or the CronJob of a reporting group), and each
//! pod's node and phase; from the group's own cluster (its REST API, `/api/v1/nodes` and
//! `/api/v1/jobs`, reached through the API server's service proxy or at an address given):
//! each ferris node's jobs, records/s, consumer lag and state bytes. A pod and the ferris
//! node of the same name are one row.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use crate::apply::reason;
use crate::manifests::HTTP_PORT;
use crate::workloads::{APP, APP_LABEL, GROUP_LABEL, WORKLOAD_LABEL};
use crate::{K8sError, Result};

/// How long the monitor waits for a cluster's REST API.
const REST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where to read the deployment from.
pub struct Sources {
    /// The Kubernetes API.
    pub client: Client,
    /// The deployment's namespace.
    pub namespace: String,
    /// Groups whose cluster REST API is read at an address (`http://HOST:PORT`, as a
    /// `kubectl port-forward` gives) instead of through the API server's service proxy.
    pub endpoints: BTreeMap<String, String>,
    /// The REST API's token (`--auth-token` of the servers), if it needs one: sent to the
    /// `endpoints` only (the API server's proxy keeps `Authorization` for itself).
    pub token: Option<String>,
}

/// One workload group as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    /// The group (`ferris-trading`).
    pub name: String,
    /// Its workload (`trading`, ..., `none`).
    pub workload: String,
    /// Pods asked for and ready, by its StatefulSet.
    pub pods_wanted: Option<(i32, i32)>,
    /// Its autoscaler, if it has one.
    pub autoscaler: Option<AutoscalerView>,
    /// Its CronJob (a reporting group): schedule, last run, runs going on.
    pub schedule: Option<(String, String, usize)>,
    /// Its pods and ferris nodes, joined by name.
    pub members: Vec<Member>,
    /// Why its cluster could not be read, if it could not.
    pub cluster_error: Option<String>,
}

/// What an autoscaler sees and does.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerView {
    /// Pods now, and the pods it wants.
    pub current: i32,
    /// The pods it wants.
    pub desired: i32,
    /// Its bounds.
    pub min: i32,
    /// Its bounds.
    pub max: i32,
    /// Each metric: its name, the value seen (`-` before the first), the target.
    pub metrics: Vec<(String, String, String)>,
}

/// A pod, a ferris node, or both (same name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// The pod's (and node's) name.
    pub name: String,
    /// The Kubernetes node the pod is on.
    pub node: String,
    /// The pod's phase (`-`: no pod of that name).
    pub phase: String,
    /// The ferris node's status (`-`: no ferris node of that name).
    pub status: String,
    /// Jobs it runs.
    pub jobs: u64,
    /// Records read per second by them.
    pub records_per_second: f64,
    /// Messages behind, over its jobs' partitions.
    pub lag: u64,
    /// Bytes of operator state.
    pub state_bytes: u64,
}

#[derive(Deserialize)]
struct NodeRow {
    id: String,
    status: String,
    #[serde(default)]
    jobs: u64,
    #[serde(default)]
    records_per_second: f64,
    #[serde(default)]
    state_bytes: u64,
}

#[derive(Deserialize)]
struct JobRow {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    lag: Option<String>,
}

/// Every group of the deployment in `sources.namespace`, by name.
pub async fn look(sources: &Sources) -> Result<Vec<GroupView>> {
    let sets: Vec<StatefulSet> = list(sources).await?;
    let crons: Vec<CronJob> = list(sources).await?;
    let autoscalers: Vec<HorizontalPodAutoscaler> = list(sources).await?;
    let pods: Vec<Pod> = list(sources).await?;
    let group_of = |labels: &BTreeMap<String, String>| labels.get(GROUP_LABEL).cloned();
    let mut groups = BTreeMap::new();
    for set in &sets {
        let Some(name) = group_of(set.labels()) else {
            continue;
        };
        let status = set.status.as_ref();
        let mut view = empty_group(&name, set.labels());
        view.pods_wanted = Some((
            set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            status.and_then(|s| s.ready_replicas).unwrap_or(0),
        ));
        groups.insert(name, view);
    }
    for cron in &crons {
        let Some(name) = group_of(cron.labels()) else {
            continue;
        };
        let mut view = empty_group(&name, cron.labels());
        let status = cron.status.as_ref();
        view.schedule = Some((
            cron.spec
                .as_ref()
                .map(|s| s.schedule.clone())
                .unwrap_or_default(),
            status
                .and_then(|s| s.last_schedule_time.as_ref())
                .map_or("never".to_string(), |t| t.0.to_string()),
            status.and_then(|s| s.active.as_ref()).map_or(0, Vec::len),
        ));
        groups.insert(name, view);
    }
    for autoscaler in &autoscalers {
        if let Some(view) = group_of(autoscaler.labels()).and_then(|n| groups.get_mut(&n)) {
            view.autoscaler = Some(autoscaler_view(autoscaler));
        }
    }
    for pod in &pods {
        if let Some(view) = group_of(pod.labels()).and_then(|n| groups.get_mut(&n)) {
            view.members.push(Member {
                name: pod.name_any(),
                node: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "-".into()),
                phase: pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".into()),
                status: "-".into(),
                ..Member::default()
            });
        }
    }
    for view in groups.values_mut() {
        if view.schedule.is_some() {
            continue;
        }
        match read_cluster(sources, &view.name).await {
            Ok((nodes, jobs)) => join_cluster(view, nodes, jobs),
            Err(e) => view.cluster_error = Some(e),
        }
    }
    Ok(groups.into_values().collect())
}

/// The deployment's objects of one kind in the namespace.
async fn list<K>(sources: &Sources) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let ns = &sources.namespace;
    let params = ListParams::default().labels(&format!("{APP_LABEL}={APP}"));
    Api::<K>::namespaced(sources.client.clone(), ns)
        .list(&params)
        .await
        .map(|list| list.items)
        .map_err(|e| {
            K8sError::Api(format!(
                "listing {} in {ns}: {}",
                K::plural(&()),
                reason(&e)
            ))
        })
}

fn empty_group(name: &str, labels: &BTreeMap<String, String>) -> GroupView {
    GroupView {
        name: name.to_string(),
        workload: labels
            .get(WORKLOAD_LABEL)
            .cloned()
            .unwrap_or_else(|| "none".into()),
        pods_wanted: None,
        autoscaler: None,
        schedule: None,
        members: Vec::new(),
        cluster_error: None,
    }
}

fn autoscaler_view(autoscaler: &HorizontalPodAutoscaler) -> AutoscalerView {
    let spec = autoscaler.spec.as_ref();
    let status = autoscaler.status.as_ref();
    let seen: Vec<&MetricStatus> = status
        .and_then(|s| s.current_metrics.as_ref())
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let metrics = spec
        .and_then(|s| s.metrics.as_ref())
        .map(|metrics| {
            metrics
                .iter()
                .map(|metric| {
                    let (name, target) = metric_target(metric);
                    let current = seen
                        .iter()
                        .find_map(|s| metric_current(s, &name))
                        .unwrap_or_else(|| "-".into());
                    (name, current, target)
                })
                .collect()
        })
        .unwrap_or_default();
    AutoscalerView {
        current: status.and_then(|s| s.current_replicas).unwrap_or(0),
        desired: status.map_or(0, |s| s.desired_replicas),
        min: spec.and_then(|s| s.min_replicas).unwrap_or(1),
        max: spec.map_or(0, |s| s.max_replicas),
        metrics,
    }
}

/// A target or a value seen: a utilization in percent, else a quantity.
fn metric_text(
    utilization: Option<i32>,
    average: Option<&Quantity>,
    value: Option<&Quantity>,
) -> String {
    match (utilization, average.or(value)) {
        (Some(percent), _) => format!("{percent}%"),
        (None, Some(quantity)) => quantity.0.clone(),
        (None, None) => "-".into(),
    }
}

/// A metric's name (a resource's or a Pods metric's) and its target as text.
fn metric_target(metric: &MetricSpec) -> (String, String) {
    let target = |t: &MetricTarget| {
        metric_text(
            t.average_utilization,
            t.average_value.as_ref(),
            t.value.as_ref(),
        )
    };
    if let Some(resource) = &metric.resource {
        (resource.name.clone(), target(&resource.target))
    } else if let Some(pods) = &metric.pods {
        (pods.metric.name.clone(), target(&pods.target))
    } else {
        (metric.type_.clone(), "-".into())
    }
}

/// The value an autoscaler last saw of the metric `name`, if it is `status`'s.
fn metric_current(status: &MetricStatus, name: &str) -> Option<String> {
    let value = |v: &MetricValueStatus| {
        metric_text(
            v.average_utilization,
            v.average_value.as_ref(),
            v.value.as_ref(),
        )
    };
    match (&status.resource, &status.pods) {
        (Some(resource), _) if resource.name == name => Some(value(&resource.current)),
        (_, Some(pods)) if pods.metric.name == name => Some(value(&pods.current)),
        _ => None,
    }
}

/// The group's ferris nodes and jobs, from its cluster's REST API.
async fn read_cluster(
    sources: &Sources,
    group: &str,
) -> std::result::Result<(Vec<NodeRow>, Vec<JobRow>), String> {
    let nodes = rest_get(sources, group, "nodes").await?;
    let jobs = rest_get(sources, group, "jobs").await?;
    let nodes = serde_json::from_str(&nodes).map_err(|e| format!("/api/v1/nodes: {e}"))?;
    let jobs = serde_json::from_str(&jobs).map_err(|e| format!("/api/v1/jobs: {e}"))?;
    Ok((nodes, jobs))
}

/// `GET /api/v1/{what}` of the group's REST API: at its given address, else through the API
/// server's proxy to the group's Service.
async fn rest_get(
    sources: &Sources,
    group: &str,
    what: &str,
) -> std::result::Result<String, String> {
    let path = format!("/api/v1/{what}");
    let request = match sources.endpoints.get(group) {
        Some(base) => {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let mut request = reqwest::Client::new().get(&url).timeout(REST_TIMEOUT);
            if let Some(token) = &sources.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            let body = response.text().await.map_err(|e| format!("{url}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{url}: {status}: {body}"));
            }
            return Ok(body);
        }
        None => http::Request::get(format!(
            "/api/v1/namespaces/{}/services/{group}:{HTTP_PORT}/proxy{path}",
            sources.namespace
        )),
    };
    let request = request.body(Vec::new()).map_err(|e| e.to_string())?;
    sources
        .client
        .request_text(request)
        .await
        .map_err(|e| format!("the service {group} through the API server: {}", reason(&e)))
}

/// The ferris nodes onto the pods of the same name; nodes without a pod get rows of their own.
fn join_cluster(view: &mut GroupView, nodes: Vec<NodeRow>, jobs: Vec<JobRow>) {
    let mut lag: BTreeMap<String, u64> = BTreeMap::new();
    for job in jobs {
        let (Some(node), Some(text)) = (job.node, job.lag) else {
            continue;
        };
        // `source[p]=n, source[q]=m`
        let behind: u64 = text
            .split(',')
            .filter_map(|part| part.rsplit('=').next()?.trim().parse::<u64>().ok())
            .sum();
        *lag.entry(node).or_default() += behind;
    }
    for node in nodes {
        let at = match view.members.iter().position(|m| m.name == node.id) {
            Some(at) => at,
            None => {
                view.members.push(Member {
                    name: node.id.clone(),
                    node: "-".into(),
                    phase: "-".into(),
                    ..Member::default()
                });
                view.members.len() - 1
            }
        };
        let member = &mut view.members[at];
        member.status = node.status;
        member.jobs = node.jobs;
        member.records_per_second = node.records_per_second;
        member.state_bytes = node.state_bytes;
        member.lag = lag.get(&node.id).copied().unwrap_or(0);
    }
    view.members.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The groups as the monitor's screen.
pub fn render(namespace: &str, groups: &[GroupView]) -> String {
    let mut out = String::new();
    if groups.is_empty() {
        let _ = writeln!(out, "no ferris deployment in namespace {namespace}");
        return out;
    }
    for group in groups {
        let _ = write!(out, "{} (workload {})", group.name, group.workload);
        if let Some((wanted, ready)) = group.pods_wanted {
            let _ = write!(out, ": {ready}/{wanted} pods ready");
        }
        out.push('\n');
        if let Some((schedule, last, active)) = &group.schedule {
            let _ = writeln!(
                out,
                "  cronjob: schedule '{schedule}', last run {last}, {active} running"
            );
        }
        if let Some(a) = &group.autoscaler {
            let _ = writeln!(
                out,
                "  autoscaler: {} pods, wants {} (min {}, max {})",
                a.current, a.desired, a.min, a.max
            );
            for (name, current, target) in &a.metrics {
                let _ = writeln!(out, "    {name}: {current} (target {target})");
            }
        }
        if let Some(error) = &group.cluster_error {
            let _ = writeln!(out, "  cluster: not read: {error}");
        }
        if group.members.is_empty() {
            continue;
        }
        let mut table = vec![[
            "POD".to_string(),
            "NODE".into(),
            "PHASE".into(),
            "FERRIS".into(),
            "JOBS".into(),
            "RECORDS/S".into(),
            "LAG".into(),
            "STATE".into(),
        ]];
        for m in &group.members {
            table.push([
                m.name.clone(),
                m.node.clone(),
                m.phase.clone(),
                m.status.clone(),
                m.jobs.to_string(),
                format!("{:.1}", m.records_per_second),
                m.lag.to_string(),
                bytes(m.state_bytes),
            ]);
        }
        let widths: Vec<usize> = (0..8)
            .map(|c| table.iter().map(|row| row[c].len()).max().unwrap_or(0))
            .collect();
        for row in &table {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
        }
    }
    out
}

/// Bytes as people read them.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_join_pods_by_name_and_lag_sums_partitions() {
        let mut view = empty_group("ferris-trading", &BTreeMap::new());
        view.members.push(Member {
            name: "ferris-trading-0".into(),
            node: "k1".into(),
            phase: "Running".into(),
            status: "-".into(),
            ..Member::default()
        });
        let node = |id: &str| NodeRow {
            id: id.into(),
            status: "UP".into(),
            jobs: 2,
            records_per_second: 10.5,
            state_bytes: 3 << 20,
        };
        let job = |node: &str, lag: &str| JobRow {
            node: Some(node.into()),
            lag: Some(lag.into()),
        };
        join_cluster(
            &mut view,
            vec![node("ferris-trading-0"), node("elsewhere")],
            vec![
                job("ferris-trading-0", "trades[0]=5, trades[1]=7"),
                job("ferris-trading-0", "quotes[0]=1"),
                job("elsewhere", ""),
            ],
        );
        let rows: Vec<(&str, &str, &str, u64)> = view
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.phase.as_str(), m.status.as_str(), m.lag))
            .collect();
        assert_eq!(
            rows,
            [
                ("elsewhere", "-", "UP", 0),
                ("ferris-trading-0", "Running", "UP", 13)
            ]
        );
        let screen = render("ns", &[view]);
        assert!(
            screen
                .contains("ferris-trading-0  k1    Running  UP      2     10.5       13   3.0 MiB"),
            "{screen}"
        );
    }

    #[test]
    fn an_empty_namespace_says_so() {
        assert_eq!(render("x", &[]), "no ferris deployment in namespace x\n");
    }
}
