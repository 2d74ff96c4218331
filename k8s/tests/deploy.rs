//! `ferris-k8s-deploy` through its command line: the checked-in objects of the demos under
//! `deploy/` are what it writes today, every object reads back as Kubernetes' own type, each
//! workload gets its scaling policy, and a bad hint is an error at its place.
//!
//! After a change to the demos' SQL or to the generator, write `deploy/` anew with
//! `FERRIS_UPDATE_DEPLOY=1 cargo test --workspace --test deploy`.

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_yaml::Value;

mod support;

use support::{DEMOS, FLAGS, root};

fn deploy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferris-k8s-deploy"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// Writes the objects of the SQL file `sql` into `out` with [`FLAGS`]; fails the test if
/// the generator fails.
fn generate(sql: &Path, out: &Path) {
    let mut args = vec![sql.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(FLAGS);
    let run = deploy(&args);
    assert!(
        run.status.success(),
        "{}: {}",
        sql.display(),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The files of a folder, by name, with their text.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The documents of a YAML file.
fn documents(text: &str) -> Vec<Value> {
    text.split("---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect()
}

#[test]
fn the_demos_objects_under_deploy_are_what_the_generator_writes() {
    let update = std::env::var_os("FERRIS_UPDATE_DEPLOY").is_some();
    for (demo, sql) in DEMOS {
        let out = tempfile::tempdir().unwrap();
        generate(Path::new(sql), out.path());
        let kept = root().join("deploy").join(demo);
        if update {
            let _ = std::fs::remove_dir_all(&kept);
            std::fs::create_dir_all(&kept).unwrap();
            for (name, text) in files(out.path()) {
                std::fs::write(kept.join(name), text).unwrap();
            }
        }
        assert_eq!(
            files(&kept),
            files(out.path()),
            "deploy/{demo} drifted from what ferris-k8s-deploy writes for {sql}: write it anew with FERRIS_UPDATE_DEPLOY=1 cargo test --workspace --test deploy"
        );
    }
}

/// Every object read as its Kubernetes type and written again is what was written: no
/// field the API does not know, none misspelt.
#[test]
fn every_object_reads_back_as_its_kubernetes_type() {
    fn same<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) {
        let typed: T = serde_yaml::from_value(doc.clone()).unwrap();
        assert_eq!(&serde_yaml::to_value(&typed).unwrap(), doc);
    }
    let mut kinds = Vec::new();
    for (demo, _) in DEMOS {
        for (name, text) in files(&root().join("deploy").join(demo)) {
            for doc in documents(&text) {
                let kind = doc["kind"].as_str().unwrap().to_string();
                match kind.as_str() {
                    "ConfigMap" => same::<ConfigMap>(&doc),
                    "Service" => same::<Service>(&doc),
                    "StatefulSet" => same::<StatefulSet>(&doc),
                    "PodDisruptionBudget" => same::<PodDisruptionBudget>(&doc),
                    "HorizontalPodAutoscaler" => same::<HorizontalPodAutoscaler>(&doc),
                    "Job" => same::<Job>(&doc),
                    "CronJob" => same::<CronJob>(&doc),
                    other => panic!("{demo}/{name}: unexpected kind {other}"),
                }
                kinds.push(kind);
            }
        }
    }
    for kind in ["StatefulSet", "HorizontalPodAutoscaler", "CronJob", "Job"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}

/// The objects of one SQL text, by kind.
fn objects_of(sql: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.sql");
    std::fs::write(&file, sql).unwrap();
    let out = dir.path().join("out");
    generate(&file, &out);
    files(&out)
        .into_iter()
        .filter(|(name, _)| name != "prometheus-adapter-rules.yaml")
        .flat_map(|(_, text)| documents(&text))
        .collect()
}

fn job(workload: &str, extra: &str) -> String {
    format!(
        "-- @ferris:workload = {workload}\n{extra}CREATE STREAM j AS SELECT symbol FROM t WITH (
           't.type' = 'file_source', 't.path' = 't.csv', 't.format' = 'csv',
           'j.type' = 'file_sink', 'j.path' = 'j/');"
    )
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

#[test]
fn each_workload_scales_by_its_own_policy() {
    // Trading: lag per pod and CPU; up at once by doubling (or 4 pods) every 15 s, down
    // after 5 calm minutes by one pod a minute; 2 pods at least.
    let trading = objects_of(&job("trading", ""));
    let hpa = &of_kind(&trading, "HorizontalPodAutoscaler").unwrap()["spec"];
    assert_eq!(hpa["minReplicas"], 2);
    assert_eq!(hpa["maxReplicas"], 8);
    assert_eq!(
        hpa["metrics"][0]["pods"]["metric"]["name"],
        "ferris_consumer_lag"
    );
    assert_eq!(hpa["metrics"][0]["pods"]["target"]["averageValue"], "1k");
    assert_eq!(hpa["metrics"][1]["resource"]["name"], "cpu");
    assert_eq!(
        hpa["metrics"][1]["resource"]["target"]["averageUtilization"],
        70
    );
    let up = &hpa["behavior"]["scaleUp"];
    assert_eq!(up["stabilizationWindowSeconds"], 0);
    assert_eq!(up["policies"][0]["type"], "Percent");
    assert_eq!(up["policies"][0]["value"], 100);
    assert_eq!(up["policies"][0]["periodSeconds"], 15);
    assert_eq!(
        hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        300
    );

    // Analytics: memory and state bytes, slow both ways.
    let analytics = objects_of(&job("analytics", ""));
    let hpa = &of_kind(&analytics, "HorizontalPodAutoscaler").unwrap()["spec"];
    assert_eq!(hpa["metrics"][0]["resource"]["name"], "memory");
    assert_eq!(
        hpa["metrics"][1]["pods"]["metric"]["name"],
        "ferris_state_bytes"
    );
    assert_eq!(
        hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"],
        120
    );
    assert_eq!(
        hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        600
    );

    // Realtime: records per second per pod, toward a target throughput.
    let realtime = objects_of(&job("realtime", "-- @ferris:replicas = 3..12\n"));
    let hpa = &of_kind(&realtime, "HorizontalPodAutoscaler").unwrap()["spec"];
    assert_eq!(
        hpa["metrics"][0]["pods"]["metric"]["name"],
        "ferris_records_per_second"
    );
    assert_eq!(hpa["metrics"][0]["pods"]["target"]["averageValue"], "20k");
    assert_eq!(
        (hpa["minReplicas"].clone(), hpa["maxReplicas"].clone()),
        (3.into(), 12.into())
    );
    // The autoscaler sets the pods: an apply must not bring them back to the minimum.
    let nodes = &of_kind(&realtime, "StatefulSet").unwrap()["spec"];
    assert!(nodes["replicas"].is_null(), "{nodes:?}");

    // Without a workload: pods by hand, no autoscaler.
    let unhinted = objects_of(&job("realtime", "").replace("-- @ferris:workload = realtime\n", ""));
    assert!(of_kind(&unhinted, "HorizontalPodAutoscaler").is_none());
    assert_eq!(
        of_kind(&unhinted, "StatefulSet").unwrap()["spec"]["replicas"],
        1
    );

    // Reporting: a CronJob on its schedule, no pod in between.
    let reporting = objects_of(&job("reporting", "-- @ferris:schedule = 0 6 * * 1-5\n"));
    assert!(of_kind(&reporting, "StatefulSet").is_none());
    assert!(of_kind(&reporting, "HorizontalPodAutoscaler").is_none());
    let cron = &of_kind(&reporting, "CronJob").unwrap()["spec"];
    assert_eq!(cron["schedule"], "0 6 * * 1-5");
    let args = &cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[0], "run");

    // Resources from the hint; the nodes' probes on /ready and /health.
    let sized = objects_of(&job(
        "trading",
        "-- @ferris:resources = cpu 1..4, memory 2Gi..3Gi\n",
    ));
    let container =
        &of_kind(&sized, "StatefulSet").unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["requests"]["cpu"], "1");
    assert_eq!(container["resources"]["limits"]["memory"], "3Gi");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
}

#[test]
fn a_bad_hint_is_an_error_at_its_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.sql");
    std::fs::write(
        &file,
        "\n-- @ferris:workload = trading\n-- @ferris:replicas = 1..4\nSELECT 1",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let run = deploy(&[
        path,
        "--image",
        "i",
        "--state-dir",
        "s3://b/p",
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!(
            "{path}:3:23: @ferris:replicas: a trading workload runs on 2 pods at least"
        )),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
}
