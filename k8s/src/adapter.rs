//! The Prometheus Adapter rules that turn the servers' `/metrics` into the per-pod custom
//! metrics the autoscalers follow ([`crate::scaling`]): each a sum over the pod's jobs.

use serde::Serialize;

/// The adapter's configuration (its `config.yaml`): the rules only.
#[derive(Debug, Serialize)]
pub struct AdapterConfig {
    /// One per metric.
    pub rules: Vec<Rule>,
}

/// One rule: which series, per which pod, under which name, computed how.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The series it reads.
    pub series_query: String,
    /// How the series' labels name Kubernetes objects.
    pub resources: RuleResources,
    /// The metric's name for the autoscaler.
    pub name: RuleName,
    /// The PromQL that computes it per pod.
    pub metrics_query: String,
}

/// Label to resource mapping.
#[derive(Debug, Serialize)]
pub struct RuleResources {
    /// `namespace` and `pod`, each named by the label of its name.
    pub overrides: std::collections::BTreeMap<String, Resource>,
}

/// A Kubernetes resource.
#[derive(Debug, Serialize)]
pub struct Resource {
    /// Its name (`pod`, `namespace`).
    pub resource: String,
}

/// The series' name and the metric's.
#[derive(Debug, Serialize)]
pub struct RuleName {
    /// The series name matched.
    pub matches: String,
    /// The metric's name.
    #[serde(rename = "as")]
    pub as_: String,
}

/// The rules for `ferris_consumer_lag`, `ferris_records_per_second` and `ferris_state_bytes`.
pub fn rules() -> AdapterConfig {
    let rule = |series: &str, name: &str, query: &str| Rule {
        series_query: format!("{series}{{namespace!=\"\",pod!=\"\"}}"),
        resources: RuleResources {
            overrides: ["namespace", "pod"]
                .into_iter()
                .map(|r| {
                    (
                        r.to_string(),
                        Resource {
                            resource: r.to_string(),
                        },
                    )
                })
                .collect(),
        },
        name: RuleName {
            matches: format!("^{series}$"),
            as_: name.into(),
        },
        metrics_query: query.into(),
    };
    AdapterConfig {
        rules: vec![
            rule(
                "ferris_job_consumer_lag",
                "ferris_consumer_lag",
                "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            ),
            rule(
                "ferris_job_records_in_total",
                "ferris_records_per_second",
                "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
            ),
            rule(
                "ferris_instance_state_bytes",
                "ferris_state_bytes",
                "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            ),
        ],
    }
}
