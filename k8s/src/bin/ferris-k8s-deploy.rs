//! `ferris-k8s-deploy FILE.sql... --image IMAGE --state-dir DIR [--namespace NS] [--etcd URL]
//! (--out DIR | --apply [--kubeconfig PATH])`: the Kubernetes objects of SQL files, by their
//! `-- @ferris:` hints, per workload group, and the Prometheus Adapter's rules: written as
//! one YAML file per group, or applied to a cluster (server-side apply).

use std::process::ExitCode;

use ferris_k8s::manifests::{Object, Settings, adapter_rules, objects, to_yaml};
use ferris_k8s::{apply, workloads};

const USAGE: &str = "usage: ferris-k8s-deploy FILE.sql... --image IMAGE --state-dir DIR [--namespace NS] [--etcd etcd://HOST:PORT] (--out DIR | --apply [--kubeconfig PATH])

--out writes DIR/ferris-WORKLOAD.yaml for each workload the files' `-- @ferris:workload`
hints name (and ferris-default.yaml for jobs without one), and
DIR/prometheus-adapter-rules.yaml, for `kubectl apply -f DIR`. --apply sends the same
objects to the cluster of the kubeconfig (--kubeconfig, else KUBECONFIG, ~/.kube/config or
the pod's service account) by server-side apply, the namespace first if it is missing.
--state-dir is where every node keeps and finds checkpoints: s3://BUCKET/PREFIX, or a path
on a volume every pod mounts. Defaults: --namespace default, --etcd etcd://etcd:2379.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match deploy(std::env::args().skip(1).collect()).await {
        Ok(done) => {
            for line in done {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ferris-k8s-deploy: {message}");
            ExitCode::from(2)
        }
    }
}

/// Writes or applies the objects; what was done, line by line, or what went wrong.
async fn deploy(args: Vec<String>) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    let (mut image, mut out, mut state_dir, mut kubeconfig) = (None, None, None, None);
    let mut applying = false;
    let mut settings = Settings {
        image: String::new(),
        namespace: "default".into(),
        etcd: "etcd://etcd:2379".into(),
        state_dir: String::new(),
    };
    let mut rest = args.into_iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().ok_or(format!("{arg} needs a value\n\n{USAGE}"));
        match arg.as_str() {
            "--image" => image = Some(value()?),
            "--out" => out = Some(value()?),
            "--namespace" => settings.namespace = value()?,
            "--etcd" => settings.etcd = value()?,
            "--state-dir" => state_dir = Some(value()?),
            "--apply" => applying = true,
            "--kubeconfig" => kubeconfig = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n\n{USAGE}"));
            }
            file => files.push(file.to_string()),
        }
    }
    let (Some(image), Some(state_dir)) = (image, state_dir) else {
        return Err(USAGE.into());
    };
    if out.is_some() == applying {
        return Err(format!("give one of --out DIR and --apply\n\n{USAGE}"));
    }
    if kubeconfig.is_some() && !applying {
        return Err(format!("--kubeconfig goes with --apply\n\n{USAGE}"));
    }
    settings.state_dir = state_dir;
    if files.is_empty() {
        return Err(USAGE.into());
    }
    settings.image = image;
    let texts = files
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|text| (path.clone(), text))
                .map_err(|e| format!("{path}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let groups = workloads::read(&texts).map_err(|e| e.to_string())?;
    if groups.is_empty() {
        return Err(format!(
            "{}: no CREATE STREAM or CREATE TABLE to deploy",
            files.join(", ")
        ));
    }
    let rules = adapter_rules(&settings.namespace).map_err(|e| e.to_string())?;
    let Some(out) = out else {
        let mut all: Vec<Object> = groups.iter().flat_map(|g| objects(g, &settings)).collect();
        all.push(rules);
        let client = apply::connect(kubeconfig.as_deref().map(std::path::Path::new), true)
            .await
            .map_err(|e| e.to_string())?;
        let applied = apply::apply(&client, &settings.namespace, &all)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(applied
            .iter()
            .map(|a| format!("{} {}", a.object, a.outcome.as_str()))
            .collect());
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{out}: {e}"))?;
    let mut written = Vec::new();
    let mut write = |name: String, yaml: String| -> Result<(), String> {
        let path = std::path::Path::new(&out).join(name);
        std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(format!("wrote {}", path.display()));
        Ok(())
    };
    for group in &groups {
        let yaml = to_yaml(&objects(group, &settings)).map_err(|e| e.to_string())?;
        write(format!("{}.yaml", group.name()), yaml)?;
    }
    write(
        "prometheus-adapter-rules.yaml".into(),
        to_yaml(&[rules]).map_err(|e| e.to_string())?,
    )?;
    Ok(written)
}
