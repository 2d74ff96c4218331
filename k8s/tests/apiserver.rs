//! `ferris-k8s-deploy --apply` and `ferris-k8s-monitor` against a real Kubernetes API server
//! (scripts/kube-apiserver.sh: kube-apiserver built from the Go module proxy, on loopback, with
//! an etcd of its own and no controllers, so objects are validated and kept but not run). Every
//! demo's objects are applied with strict server-side validation, read back equal to what the
//! generator writes, applied again without a change, and the monitor shows what the autoscaler
//! sees and what a ferris node of the cluster reports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

mod support;

// The demos, applied into one namespace: a reporting, a realtime + analytics and a trading
// group; their objects are checked in under deploy/ (tests/deploy.rs keeps them current).
use support::{DEMOS, FLAGS, NAMESPACE, root};

/// A kube-apiserver and its etcd, started by the project's script into a folder of the test's.
struct ApiServer {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl ApiServer {
    fn start(dir: &Path) -> Self {
        let output = Self::script(dir, "start");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let kubeconfig = stdout
            .lines()
            .find_map(|l| l.strip_prefix("kubeconfig: "))
            .unwrap_or_else(|| panic!("kube-apiserver.sh start printed no kubeconfig: {stdout}"));
        Self {
            dir: dir.to_path_buf(),
            kubeconfig: PathBuf::from(kubeconfig.trim()),
        }
    }

    fn script(dir: &Path, verb: &str) -> Output {
        let output = Command::new("bash")
            .arg(root().join("scripts/kube-apiserver.sh"))
            .arg(verb)
            .env("FERRIS_KUBE_DIR", dir)
            .env("FERRIS_KUBE_PORT", "0")
            .env("FERRIS_KUBE_ETCD_PORT", "0")
            // Killed before Drop runs, the test leaves nothing running.
            .env("FERRIS_KUBE_OWNER_PID", std::process::id().to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kube-apiserver.sh {verb}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The client port of its etcd, which the ferris node of the test shares.
    fn etcd_port(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd/etcd.port"))
            .unwrap()
            .trim()
            .to_string()
    }

    async fn client(&self) -> kube::Client {
        ferris_k8s::apply::connect(Some(&self.kubeconfig), true)
            .await
            .unwrap()
    }
}

impl Drop for ApiServer {
    /// Stops it without a panic (a test that failed is unwinding already).
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/kube-apiserver.sh"))
            .arg("stop")
            .env("FERRIS_KUBE_DIR", &self.dir)
            .output();
    }
}

fn deploy_apply(kubeconfig: &Path) -> Vec<String> {
    let mut args: Vec<&str> = DEMOS.iter().map(|(_, sql)| *sql).collect();
    args.extend(FLAGS);
    args.extend(["--apply", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    let output = Command::new(env!("CARGO_BIN_EXE_ferris-k8s-deploy"))
        .args(&args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ferris-k8s-deploy --apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The checked-in objects of every demo, as JSON.
fn generated() -> Vec<Value> {
    let mut objects = Vec::new();
    for (demo, _) in DEMOS {
        for entry in std::fs::read_dir(root().join("deploy").join(demo)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in text.split("---\n").filter(|d| !d.trim().is_empty()) {
                let yaml: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
                let object = serde_json::to_value(yaml).unwrap();
                // Each demo has the adapter's rules: the same object.
                if !objects.contains(&object) {
                    objects.push(object);
                }
            }
        }
    }
    objects
}

/// The API path of `object` (`/apis/apps/v1/namespaces/ferris/statefulsets/NAME`).
fn path_of(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap();
    let plural = match object["kind"].as_str().unwrap() {
        "ConfigMap" => "configmaps",
        "Service" => "services",
        "StatefulSet" => "statefulsets",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        "HorizontalPodAutoscaler" => "horizontalpodautoscalers",
        "Job" => "jobs",
        "CronJob" => "cronjobs",
        other => panic!("no plural for {other}"),
    };
    let prefix = match api_version {
        "v1" => "/api/v1".to_string(),
        group => format!("/apis/{group}"),
    };
    let name = object["metadata"]["name"].as_str().unwrap();
    format!("{prefix}/namespaces/{NAMESPACE}/{plural}/{name}")
}

/// Whether every field of `wanted` is in `live` with the same value (the server adds its
/// defaults and bookkeeping); the first difference, by its path.
fn contains(live: &Value, wanted: &Value, at: &str) -> Result<(), String> {
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => {
            for (key, value) in wanted {
                let Some(found) = live.get(key) else {
                    return Err(format!("{at}.{key}: missing"));
                };
                contains(found, value, &format!("{at}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(live), Value::Array(wanted)) if live.len() == wanted.len() => live
            .iter()
            .zip(wanted)
            .enumerate()
            .try_for_each(|(i, (l, w))| contains(l, w, &format!("{at}[{i}]"))),
        _ if live == wanted => Ok(()),
        _ => Err(format!("{at}: {live} on the server, {wanted} generated")),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `ferris server` node of the trading group's cluster (named as the group's first pod),
/// outside Kubernetes: its REST API is what the monitor reads for that pod.
struct FerrisNode {
    child: Child,
    http: String,
}

impl FerrisNode {
    fn start(dir: &Path, etcd_port: &str) -> Self {
        // Built beside this test by `cargo test --workspace` (flight-server's binary).
        let ferris = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .map(|debug| debug.join("ferris"))
            .filter(|path| path.exists())
            .expect("the ferris binary next to this test's: build with cargo test --workspace");
        let log = dir.join("node.log");
        let child = Command::new(ferris)
            .args(["server", "--flight", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--cluster")
            .arg(format!("etcd://127.0.0.1:{etcd_port}/trading"))
            .args(["--node-id", "ferris-trading-0", "--state-dir", "state"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut http = String::new();
        wait_until("the ferris node's HTTP port", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match text.lines().find(|l| l.starts_with("ferris: HTTP (")) {
                Some(line) => {
                    http = line.rsplit(' ').next().unwrap().trim().to_string();
                    true
                }
                None => false,
            }
        });
        Self { child, http }
    }
}

impl Drop for FerrisNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn monitor(kubeconfig: &Path, endpoint: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ferris-k8s-monitor"))
        .args(["--namespace", NAMESPACE, "--kubeconfig"])
        .arg(kubeconfig)
        .args(["--endpoint", endpoint])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ferris-k8s-monitor: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demos_apply_to_a_real_api_server_read_back_equal_apply_again_unchanged_and_show_in_the_monitor()
 {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start(dir.path());
    let client = server.client().await;

    // Applied: every object created (the namespace first), the server validating each
    // field strictly.
    let first = deploy_apply(&server.kubeconfig);
    let wanted = generated();
    assert_eq!(first[0], format!("namespace/{NAMESPACE} created"));
    assert_eq!(first.len(), wanted.len() + 1, "{first:#?}");
    assert!(
        first[1..].iter().all(|line| line.ends_with(" created")),
        "{first:#?}"
    );

    // Read back: the server keeps every field as generated.
    for object in &wanted {
        let path = path_of(object);
        let request = http::Request::get(&path).body(Vec::new()).unwrap();
        let live: Value = client.request(request).await.unwrap();
        if let Err(difference) = contains(&live, object, "") {
            panic!("{path}: {difference}");
        }
    }

    // Applied again: nothing changes.
    let again = deploy_apply(&server.kubeconfig);
    assert_eq!(again.len(), first.len());
    assert!(
        again.iter().all(|line| line.ends_with(" unchanged")),
        "{again:#?}"
    );

    // The policies the hints asked for, as the server keeps them.
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), NAMESPACE);
    let trading = autoscalers.get("ferris-trading").await.unwrap();
    let spec = trading.spec.as_ref().unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 6));
    let up = spec.behavior.as_ref().unwrap().scale_up.as_ref().unwrap();
    assert_eq!(up.stabilization_window_seconds, Some(0));
    let analytics = autoscalers.get("ferris-analytics").await.unwrap();
    let down = analytics
        .spec
        .unwrap()
        .behavior
        .unwrap()
        .scale_down
        .unwrap();
    assert_eq!(down.stabilization_window_seconds, Some(600));

    // What the autoscaler would see, and a pod of the trading group on a node (with the
    // namespace's service account): written as the controller manager and the kubelet would
    // (none runs here).
    autoscalers
        .patch_status(
            "ferris-trading",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "currentReplicas": 2,
                "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "ferris_consumer_lag"},
                                              "current": {"averageValue": "1500"}}},
                    {"type": "Resource", "resource": {"name": "cpu",
                                                      "current": {"averageUtilization": 45}}}
                ]
            }})),
        )
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "ferris-trading-0", "labels": {
            "app.kubernetes.io/name": "ferris",
            "app.kubernetes.io/instance": "ferris-trading",
            "ferris.io/workload": "trading"}},
        "spec": {"nodeName": "worker-a",
                 "containers": [{"name": "ferris", "image": "ghcr.io/ferris-streams/ferris:0.1.0"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch_status(
        "ferris-trading-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();

    let node = FerrisNode::start(dir.path(), &server.etcd_port());
    let endpoint = format!("ferris-trading=http://{}", node.http);
    let mut screen = String::new();
    wait_until("the monitor sees the ferris node", || {
        screen = monitor(&server.kubeconfig, &endpoint);
        screen.contains("Running  UP")
    });
    for expected in [
        // The StatefulSet's replicas are the autoscaler's to set: the server's default until then.
        "ferris-trading (workload trading): 0/1 pods ready",
        "  autoscaler: 2 pods, wants 3 (min 2, max 6)",
        "    ferris_consumer_lag: 1500 (target 1k)",
        "    cpu: 45% (target 70%)",
        "ferris-trading-0  worker-a  Running  UP",
        "ferris-reporting (workload reporting)",
        "  cronjob: schedule '0 6 * * *', last run never, 0 running",
        "ferris-analytics (workload analytics)",
        "  cluster: not read: the service ferris-analytics through the API server: no endpoints available for service \"ferris-analytics\" (503)",
    ] {
        assert!(screen.contains(expected), "{expected:?} in:\n{screen}");
    }

    // Watching, the screen is drawn again and again until the monitor is stopped.
    let mut watching = Command::new(env!("CARGO_BIN_EXE_ferris-k8s-monitor"))
        .args(["--namespace", NAMESPACE, "--kubeconfig"])
        .arg(&server.kubeconfig)
        .args(["--watch", "0.2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    watching.kill().unwrap();
    let output = watching.wait_with_output().unwrap();
    let frames = String::from_utf8_lossy(&output.stdout);
    let redraws = frames.matches("\x1b[H\x1b[2J").count();
    assert!(redraws >= 2, "{redraws} screens: {frames}");
    assert!(
        frames.contains("  autoscaler: 2 pods, wants 3 (min 2, max 6)"),
        "{frames}"
    );
}
