//! `ferris-k8s-deploy FILE.sql... --image IMAGE [--namespace NS] [--etcd URL]
//! [--state-dir DIR] --out DIR`: the Kubernetes objects of SQL files, by their `-- @ferris:`
//! hints, one YAML file per workload group, and the Prometheus Adapter's rules.

use std::process::ExitCode;

use ferris_k8s::manifests::{Settings, adapter_rules, objects, to_yaml};
use ferris_k8s::workloads;

const USAGE: &str = "usage: ferris-k8s-deploy FILE.sql... --image IMAGE --state-dir DIR [--namespace NS] [--etcd etcd://HOST:PORT] --out DIR

Writes DIR/ferris-WORKLOAD.yaml for each workload the files' `-- @ferris:workload` hints
name (and ferris-default.yaml for jobs without one), and DIR/prometheus-adapter-rules.yaml;
apply them with `kubectl apply -f DIR`. --state-dir is where every node keeps and finds
checkpoints: s3://BUCKET/PREFIX, or a path on a volume every pod mounts. Defaults:
--namespace default, --etcd etcd://etcd:2379.";

fn main() -> ExitCode {
    match deploy(std::env::args().skip(1).collect()) {
        Ok(written) => {
            for path in written {
                println!("wrote {path}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ferris-k8s-deploy: {message}");
            ExitCode::from(2)
        }
    }
}

/// Writes the objects; the files written, or what went wrong.
fn deploy(args: Vec<String>) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    let (mut image, mut out, mut state_dir) = (None, None, None);
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
            "--apply" | "--kubeconfig" => {
                return Err(format!(
                    "{arg} is not available yet: write the objects with --out DIR and apply them with kubectl apply -f DIR"
                ));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n\n{USAGE}"));
            }
            file => files.push(file.to_string()),
        }
    }
    let (Some(image), Some(out), Some(state_dir)) = (image, out, state_dir) else {
        return Err(USAGE.into());
    };
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
    std::fs::create_dir_all(&out).map_err(|e| format!("{out}: {e}"))?;
    let mut written = Vec::new();
    let mut write = |name: String, yaml: String| -> Result<(), String> {
        let path = std::path::Path::new(&out).join(name);
        std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
        Ok(())
    };
    for group in &groups {
        let yaml = to_yaml(&objects(group, &settings)).map_err(|e| e.to_string())?;
        write(format!("{}.yaml", group.name()), yaml)?;
    }
    let rules = adapter_rules(&settings.namespace).map_err(|e| e.to_string())?;
    write(
        "prometheus-adapter-rules.yaml".into(),
        to_yaml(&[rules]).map_err(|e| e.to_string())?,
    )?;
    Ok(written)
}
