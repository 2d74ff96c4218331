//! The Kubernetes objects of one workload group, as the API server takes them.
//!
//! An always-on group (trading, analytics, realtime, or no workload) is a StatefulSet of
//! `ferris server --cluster etcd://.../WORKLOAD` pods, the nodes of a cluster of its own
//! (named after the workload, sharing the etcd with the others), with a headless Service, a
//! PodDisruptionBudget, its autoscaler ([`crate::scaling`]) and a Job that deploys its SQL
//! (kept in a ConfigMap) once the nodes answer: the cluster's leader places the jobs on
//! them. A reporting group is a CronJob that runs its bounded jobs with `ferris run` on its
//! schedule, with no pod between runs.

use std::collections::BTreeMap;
use std::hash::Hasher;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use ferris_engine::statements::hints::{Quantities, Workload};

use crate::workloads::{APP, APP_LABEL, WorkloadGroup};
use crate::{K8sError, Result, adapter, scaling};

/// The Flight SQL port of every pod.
pub const FLIGHT_PORT: i32 = 50051;
/// The HTTP port (`/health`, `/ready`, `/metrics`) of every pod.
pub const HTTP_PORT: i32 = 8080;
/// Where a pod finds its group's SQL.
const SQL_DIR: &str = "/etc/ferris/sql";
/// The SQL file's name in the ConfigMap and the folder.
const SQL_FILE: &str = "jobs.sql";

/// What every group's objects share, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ferris image.
    pub image: String,
    /// Where the objects go.
    pub namespace: String,
    /// The etcd (`etcd://HOST:PORT[,HOST:PORT]`) of the clusters: each group is the
    /// cluster named after its workload in it (`etcd://.../trading`).
    pub etcd: String,
    /// The state dir every node reads (`s3://...`, or a shared volume's path).
    pub state_dir: String,
}

/// One object, as the API server takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// The SQL, or the adapter's rules.
    ConfigMap(ConfigMap),
    /// The nodes.
    StatefulSet(Box<StatefulSet>),
    /// Their addresses.
    Service(Service),
    /// How many may be evicted at once.
    PodDisruptionBudget(PodDisruptionBudget),
    /// How they scale.
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    /// The SQL deployed once.
    Job(Box<Job>),
    /// A report's runs.
    CronJob(Box<CronJob>),
}

/// Every object of `group`.
pub fn objects(group: &WorkloadGroup, settings: &Settings) -> Vec<Object> {
    let name = group.name();
    let namespace = &settings.namespace;
    let config = ConfigMap {
        metadata: group.metadata(&format!("{name}-sql"), namespace),
        data: Some(BTreeMap::from([(SQL_FILE.to_string(), group.sql())])),
        ..Default::default()
    };
    let mut objects = vec![Object::ConfigMap(config)];
    if group.workload == Some(Workload::Reporting) {
        objects.push(Object::CronJob(Box::new(reports(group, settings))));
        return objects;
    }
    objects.push(Object::Service(Service {
        metadata: group.metadata(&name, namespace),
        spec: Some(ServiceSpec {
            // Headless: each node has its own address, for the cluster's own addressing.
            cluster_ip: Some("None".into()),
            selector: Some(group.labels()),
            ports: Some(vec![
                service_port("flight", FLIGHT_PORT),
                service_port("http", HTTP_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let autoscaler = scaling::autoscaler(group, namespace);
    objects.push(Object::StatefulSet(Box::new(nodes(
        group,
        settings,
        autoscaler.is_none(),
    ))));
    objects.push(Object::PodDisruptionBudget(PodDisruptionBudget {
        metadata: group.metadata(&name, namespace),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(group)),
            ..Default::default()
        }),
        ..Default::default()
    }));
    if let Some(autoscaler) = autoscaler {
        objects.push(Object::HorizontalPodAutoscaler(autoscaler));
    }
    objects.push(Object::Job(Box::new(deploy_job(group, settings))));
    objects
}

/// The adapter's rules as the ConfigMap the Prometheus Adapter reads (`config.yaml`).
pub fn adapter_rules(namespace: &str) -> Result<Object> {
    let config = serde_yaml::to_string(&adapter::rules())
        .map_err(|e| K8sError::Output(format!("the adapter's rules: {e}")))?;
    Ok(Object::ConfigMap(ConfigMap {
        metadata: ObjectMeta {
            name: Some("ferris-adapter-rules".into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(APP_LABEL.to_string(), APP.to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("config.yaml".to_string(), config)])),
        ..Default::default()
    }))
}

/// Objects as YAML documents, one after the other.
pub fn to_yaml(objects: &[Object]) -> Result<String> {
    let mut out = String::new();
    for object in objects {
        let yaml = serde_yaml::to_string(object)
            .map_err(|e| K8sError::Output(format!("writing an object: {e}")))?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

fn selector(group: &WorkloadGroup) -> LabelSelector {
    LabelSelector {
        match_labels: Some(group.labels()),
        ..Default::default()
    }
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        ..Default::default()
    }
}

/// The StatefulSet of `ferris server --cluster` nodes; its replicas are set when no
/// autoscaler sets them (an apply would otherwise bring the pods back to the minimum).
fn nodes(group: &WorkloadGroup, settings: &Settings, replicas: bool) -> StatefulSet {
    let name = group.name();
    let args = [
        "server",
        "--cluster",
        &format!(
            "{}/{}",
            settings.etcd.trim_end_matches('/'),
            group.workload.map_or("default", Workload::as_str)
        ),
        "--state-dir",
        &settings.state_dir,
        "--node-id",
        "$(POD_NAME)",
        "--advertise",
        &format!(
            "$(POD_NAME).{name}.{}.svc:{FLIGHT_PORT}",
            settings.namespace
        ),
        "--flight",
        &format!("0.0.0.0:{FLIGHT_PORT}"),
        "--http",
        &format!("0.0.0.0:{HTTP_PORT}"),
    ];
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    };
    let container = Container {
        name: "ferris".into(),
        image: Some(settings.image.clone()),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![
            container_port("flight", FLIGHT_PORT),
            container_port("http", HTTP_PORT),
        ]),
        readiness_probe: Some(probe("/ready", 5)),
        liveness_probe: Some(probe("/health", 10)),
        resources: Some(resources(group)),
        ..Default::default()
    };
    StatefulSet {
        metadata: group.metadata(&name, &settings.namespace),
        spec: Some(StatefulSetSpec {
            service_name: Some(name.clone()),
            replicas: replicas.then_some(group.replicas.min as i32),
            // Every node starts at once: the cluster places jobs on nodes as they join.
            pod_management_policy: Some("Parallel".into()),
            selector: selector(group),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(group.labels()),
                    annotations: Some(BTreeMap::from([
                        ("prometheus.io/scrape".to_string(), "true".to_string()),
                        ("prometheus.io/port".to_string(), HTTP_PORT.to_string()),
                        ("prometheus.io/path".to_string(), "/metrics".to_string()),
                    ])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    // SIGTERM drains the node: its jobs stop at a checkpoint and move.
                    termination_grace_period_seconds: Some(60),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        ..Default::default()
    }
}

/// Requests and limits from the group's resources.
fn resources(group: &WorkloadGroup) -> ResourceRequirements {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    let quantities: [(&str, &Option<Quantities>); 2] = [
        ("cpu", &group.resources.cpu),
        ("memory", &group.resources.memory),
    ];
    for (name, given) in quantities {
        if let Some(given) = given {
            requests.insert(name.to_string(), Quantity(given.request.clone()));
            if let Some(limit) = &given.limit {
                limits.insert(name.to_string(), Quantity(limit.clone()));
            }
        }
    }
    ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..Default::default()
    }
}

/// A pod of one container running `ferris` with `args`, the group's SQL mounted.
fn sql_pod(group: &WorkloadGroup, settings: &Settings, args: Vec<String>) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "ferris".into(),
            image: Some(settings.image.clone()),
            args: Some(args),
            volume_mounts: Some(vec![VolumeMount {
                name: "sql".into(),
                mount_path: SQL_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            resources: Some(resources(group)),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "sql".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{}-sql", group.name()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        restart_policy: Some("OnFailure".into()),
        ..Default::default()
    }
}

/// The Job that sends the group's SQL to its nodes once: retried until a node answers.
/// Named by a hash of the SQL and the image, since a Job's pods cannot be changed: another
/// SQL or image is another Job (a finished one goes an hour later).
fn deploy_job(group: &WorkloadGroup, settings: &Settings) -> Job {
    let name = group.name();
    let mut version = fnv::FnvHasher::default();
    version.write(format!("{}\n{}", settings.image, group.sql()).as_bytes());
    let version = version.finish();
    let args = vec![
        "deploy".to_string(),
        format!("{SQL_DIR}/{SQL_FILE}"),
        "--server".to_string(),
        format!("{name}.{}.svc:{FLIGHT_PORT}", settings.namespace),
    ];
    Job {
        metadata: group.metadata(
            &format!("{name}-deploy-{:08x}", version as u32),
            &settings.namespace,
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(20),
            ttl_seconds_after_finished: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([(
                        "ferris.io/deploys".to_string(),
                        name.clone(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(sql_pod(group, settings, args)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The CronJob that runs a reporting group's bounded jobs on its schedule. Each run reads
/// its sources from the start (no state dir: one would find the last run finished and do
/// nothing).
fn reports(group: &WorkloadGroup, settings: &Settings) -> CronJob {
    let args = vec!["run".to_string(), format!("{SQL_DIR}/{SQL_FILE}")];
    CronJob {
        metadata: group.metadata(&group.name(), &settings.namespace),
        spec: Some(CronJobSpec {
            schedule: group.schedule.clone().unwrap_or_default(),
            // A run still going when the next is due: the next is skipped.
            concurrency_policy: Some("Forbid".into()),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(group.labels()),
                            ..Default::default()
                        }),
                        spec: Some(sql_pod(group, settings, args)),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
