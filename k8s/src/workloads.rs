//! The jobs of SQL files grouped by workload: each group is one set of pods that runs every
//! job of its workload, so its jobs' hints for the pods (replicas, resources, schedule)
//! must agree. Jobs without a `workload` hint form a group of their own, scaled by hand.

use std::collections::BTreeMap;

use ferris_engine::statements::create_job::CreateJob;
use ferris_engine::statements::hints::{Quantities, Replicas, Resources, Workload};
use ferris_engine::statements::parser::with_option;
use ferris_engine::statements::{Hints, parse_statements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{K8sError, Result};

/// One job to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedJob {
    /// Its name (and its sink's).
    pub name: String,
    /// Where its statement is (`FILE:LINE`).
    pub at: String,
    /// Its statement, with `'parallelism'` set from its hint.
    pub sql: String,
}

/// The jobs of one workload and the pods that run them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadGroup {
    /// Their workload; `None`: jobs without a `workload` hint.
    pub workload: Option<Workload>,
    /// Its jobs, in the order of the files and statements.
    pub jobs: Vec<DeployedJob>,
    /// The fewest and most pods (from the hints, else the workload's defaults).
    pub replicas: Replicas,
    /// What each pod asks for and may use (from the hints, else the defaults).
    pub resources: Resources,
    /// When a reporting group runs.
    pub schedule: Option<String>,
}

/// The label every object of a deployment carries, with the value [`APP`].
pub const APP_LABEL: &str = "app.kubernetes.io/name";
/// The value of [`APP_LABEL`].
pub const APP: &str = "ferris";
/// The label that names an object's group (`ferris-trading`).
pub const GROUP_LABEL: &str = "app.kubernetes.io/instance";
/// The label that names a group's workload (`trading`, ..., `none`).
pub const WORKLOAD_LABEL: &str = "ferris.io/workload";

impl WorkloadGroup {
    /// The name its objects share: `ferris-trading`, ..., `ferris-default`.
    pub fn name(&self) -> String {
        format!(
            "ferris-{}",
            self.workload.map_or("default", Workload::as_str)
        )
    }

    /// The labels of its objects (and the selector of its pods).
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (APP_LABEL.to_string(), APP.to_string()),
            (GROUP_LABEL.to_string(), self.name()),
            (
                WORKLOAD_LABEL.to_string(),
                self.workload.map_or("none", Workload::as_str).to_string(),
            ),
        ])
    }

    /// The metadata of its object `name`.
    pub fn metadata(&self, name: &str, namespace: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(self.labels()),
            ..Default::default()
        }
    }

    /// Its jobs' statements, as the file the pods read.
    pub fn sql(&self) -> String {
        let mut sql = String::new();
        for job in &self.jobs {
            sql.push_str(&format!("-- {} ({})\n{};\n\n", job.name, job.at, job.sql));
        }
        sql
    }
}

/// The pods a workload gets when its hints do not say.
pub fn default_replicas(workload: Option<Workload>) -> Replicas {
    let (min, max) = match workload {
        Some(Workload::Trading) => (2, 8),
        Some(Workload::Analytics) => (1, 4),
        Some(Workload::Realtime) => (1, 8),
        // A reporting run is one pod; pods without a workload are scaled by hand.
        Some(Workload::Reporting) | None => (1, 1),
    };
    Replicas { min, max }
}

/// What a pod asks for when the hints do not say: the autoscalers compute utilization
/// against these requests.
pub fn default_resources() -> Resources {
    Resources {
        cpu: Some(Quantities {
            request: "500m".into(),
            limit: Some("2".into()),
        }),
        memory: Some(Quantities {
            request: "1Gi".into(),
            limit: Some("2Gi".into()),
        }),
    }
}

/// `given` resources, each one not given taken from [`default_resources`]: the autoscalers
/// need the requests of what they follow.
fn with_defaults(given: Option<Resources>) -> Resources {
    let defaults = default_resources();
    let given = given.unwrap_or_default();
    Resources {
        cpu: given.cpu.or(defaults.cpu),
        memory: given.memory.or(defaults.memory),
    }
}

/// The jobs of `files` (path and text each), grouped by workload, the groups in workload
/// order (jobs without a workload last). Statements that start no job are left out.
pub fn read(files: &[(String, String)]) -> Result<Vec<WorkloadGroup>> {
    // Per workload: its jobs, and each pod hint with where it was first given.
    struct Gathering {
        jobs: Vec<DeployedJob>,
        replicas: Option<(Replicas, String)>,
        resources: Option<(Resources, String)>,
        schedule: Option<(String, String)>,
    }
    let mut groups: BTreeMap<Option<Workload>, Gathering> = BTreeMap::new();
    for (path, text) in files {
        let statements = parse_statements(text).map_err(|e| match e {
            ferris_engine::EngineError::Sql { message, position } => {
                K8sError::Sql(format!("{path}:{position}: {message}"))
            }
            other => K8sError::Sql(format!("{path}: {other}")),
        })?;
        for statement in statements {
            let at = format!("{path}:{}", statement.position.line);
            let Some(job) = statement.kind.downcast_ref::<CreateJob>() else {
                if !statement.hints.is_empty() {
                    return Err(K8sError::Sql(format!(
                        "{at}: @ferris: hints go before a CREATE STREAM or CREATE TABLE, the statements deployed as jobs"
                    )));
                }
                continue;
            };
            let hints: &Hints = &statement.hints;
            let sql = match hints.parallelism {
                Some(n) => with_option(&statement.text, "parallelism", &n.to_string())
                    .map_err(|e| K8sError::Sql(format!("{at}: {e}")))?,
                None => statement.text.clone(),
            };
            let group = groups.entry(hints.workload).or_insert(Gathering {
                jobs: vec![],
                replicas: None,
                resources: None,
                schedule: None,
            });
            agree(&mut group.replicas, hints.replicas, &at, "replicas", |r| {
                format!("{}..{}", r.min, r.max)
            })?;
            agree(
                &mut group.resources,
                hints.resources.clone(),
                &at,
                "resources",
                |r| {
                    Hints {
                        resources: Some(r.clone()),
                        ..Hints::default()
                    }
                    .to_string()
                },
            )?;
            agree(
                &mut group.schedule,
                hints.schedule.clone(),
                &at,
                "schedule",
                String::clone,
            )?;
            group.jobs.push(DeployedJob {
                name: job.name.clone(),
                at,
                sql,
            });
        }
    }
    // Jobs without a workload last: `None` sorts first in a BTreeMap.
    let mut ordered: Vec<_> = groups.into_iter().collect();
    let unhinted_first = ordered.first().is_some_and(|(w, _)| w.is_none());
    ordered.rotate_left(usize::from(unhinted_first));
    Ok(ordered
        .into_iter()
        .map(|(workload, group)| WorkloadGroup {
            workload,
            jobs: group.jobs,
            replicas: group
                .replicas
                .map_or_else(|| default_replicas(workload), |(r, _)| r),
            resources: with_defaults(group.resources.map(|(r, _)| r)),
            schedule: group.schedule.map(|(s, _)| s),
        })
        .collect())
}

/// Keeps `given` as the group's `name` hint, or checks it is the one kept.
fn agree<T: PartialEq>(
    kept: &mut Option<(T, String)>,
    given: Option<T>,
    at: &str,
    name: &str,
    show: impl Fn(&T) -> String,
) -> Result<()> {
    let Some(given) = given else {
        return Ok(());
    };
    match kept {
        Some((value, first)) if *value != given => Err(K8sError::Conflict(format!(
            "{at}: @ferris:{name} = {} disagrees with {} given at {first}: one set of pods runs every job of a workload",
            show(&given),
            show(value)
        ))),
        Some(_) => Ok(()),
        None => {
            *kept = Some((given, at.to_string()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Vec<(String, String)> {
        vec![("jobs.sql".to_string(), text.to_string())]
    }

    const JOB: &str = "SELECT symbol FROM trades WITH ('trades.type' = 'file_source', 'trades.path' = 't.csv', 'trades.format' = 'csv', 'X.type' = 'file_sink', 'X.path' = 'x/')";

    fn job(name: &str, hints: &str) -> String {
        format!(
            "{hints}\nCREATE STREAM {name} AS {};\n",
            JOB.replace('X', name)
        )
    }

    #[test]
    fn jobs_are_grouped_by_workload_with_their_hints() {
        let text = [
            job(
                "a",
                "-- @ferris:workload = trading\n-- @ferris:parallelism = 4",
            ),
            job("b", ""),
            job(
                "c",
                "-- @ferris:workload = analytics\n-- @ferris:replicas = 1..3\n-- @ferris:resources = memory 2Gi",
            ),
            job(
                "d",
                "-- @ferris:workload = trading\n-- @ferris:replicas = 3..9",
            ),
        ]
        .concat();
        let groups = read(&file(&text)).unwrap();
        let names: Vec<String> = groups.iter().map(WorkloadGroup::name).collect();
        assert_eq!(
            names,
            ["ferris-trading", "ferris-analytics", "ferris-default"]
        );
        let trading = &groups[0];
        assert_eq!(trading.jobs.len(), 2);
        assert_eq!(trading.replicas, Replicas { min: 3, max: 9 });
        assert!(
            trading.jobs[0].sql.contains("'parallelism' = '4'"),
            "{}",
            trading.jobs[0].sql
        );
        assert_eq!(trading.jobs[1].at, "jobs.sql:12");
        assert_eq!(groups[1].replicas, Replicas { min: 1, max: 3 });
        // Memory given, CPU from the defaults (the autoscaler needs both requests).
        assert_eq!(groups[1].resources.memory.as_ref().unwrap().request, "2Gi");
        assert_eq!(groups[1].resources.cpu, default_resources().cpu);
        assert_eq!(groups[2].replicas, Replicas { min: 1, max: 1 });
        assert_eq!(groups[2].resources, default_resources());
    }

    #[test]
    fn jobs_of_one_workload_must_agree_on_their_pods() {
        let text = [
            job(
                "a",
                "-- @ferris:workload = trading\n-- @ferris:replicas = 2..4",
            ),
            job(
                "b",
                "-- @ferris:workload = trading\n-- @ferris:replicas = 2..6",
            ),
        ]
        .concat();
        let error = read(&file(&text)).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "jobs.sql:6: @ferris:replicas = 2..6 disagrees with 2..4 given at jobs.sql:3"
            ),
            "{error}"
        );
        let bad = read(&file("-- @ferris:workload = fast\nSELECT 1")).unwrap_err();
        assert!(bad.to_string().starts_with("jobs.sql:1:23: "), "{bad}");
        let not_a_job = read(&file("-- @ferris:workload = trading\nSELECT 1")).unwrap_err();
        assert!(
            not_a_job
                .to_string()
                .starts_with("jobs.sql:2: @ferris: hints go before a CREATE"),
            "{not_a_job}"
        );
    }
}
