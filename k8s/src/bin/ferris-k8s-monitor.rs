//! `ferris-k8s-monitor [--namespace NS] [--kubeconfig PATH] [--endpoint GROUP=URL]...
//! [--token TOKEN] [--watch [SECONDS]]`: a deployment of `ferris-k8s-deploy` on one screen
//! (`ferris_k8s::monitor`), once or refreshed until Ctrl-C.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use ferris_k8s::K8sError;
use ferris_k8s::apply::connect;
use ferris_k8s::monitor::{Sources, look, render};

const USAGE: &str = "usage: ferris-k8s-monitor [--namespace NS] [--kubeconfig PATH] [--endpoint GROUP=URL]... [--token TOKEN] [--watch [SECONDS]]

Per workload group of the namespace (default: default): the autoscaler's pods and the metric
values it sees against its targets, or the CronJob of a reporting group; per pod its node,
phase, and as its ferris node reports: jobs, records/s, consumer lag, state bytes. The nodes
are read through the API server's proxy to the group's Service, or at --endpoint
GROUP=http://HOST:PORT (a `kubectl port-forward svc/GROUP 8080`), with --token if the
servers have an --auth-token. --watch redraws every SECONDS (default 2) until Ctrl-C.";

/// How long one screen may take to gather.
const LOOK_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match monitor(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferris-k8s-monitor: {message}");
            ExitCode::from(2)
        }
    }
}

async fn monitor(args: Vec<String>) -> Result<(), String> {
    let (mut namespace, mut kubeconfig, mut token, mut watch) =
        ("default".to_string(), None, None, None);
    let mut endpoints = BTreeMap::new();
    let mut rest = args.into_iter().peekable();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().ok_or(format!("{arg} needs a value\n\n{USAGE}"));
        match arg.as_str() {
            "--namespace" => namespace = value()?,
            "--kubeconfig" => kubeconfig = Some(value()?),
            "--token" => token = Some(value()?),
            "--endpoint" => {
                let given = value()?;
                let Some((group, url)) = given.split_once('=') else {
                    return Err(format!("--endpoint {given}: expected GROUP=URL"));
                };
                endpoints.insert(group.to_string(), url.to_string());
            }
            "--watch" => {
                let seconds = match rest.peek() {
                    Some(next) if !next.starts_with("--") => {
                        let next = rest.next().unwrap_or_default();
                        next.parse::<f64>()
                            .ok()
                            .filter(|s| s.is_finite() && *s >= 0.1)
                            .ok_or(format!("--watch {next}: expected seconds, 0.1 or more"))?
                    }
                    _ => 2.0,
                };
                watch = Some(Duration::from_secs_f64(seconds));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }
    let client = connect(kubeconfig.as_deref().map(std::path::Path::new), false)
        .await
        .map_err(|e| e.to_string())?;
    let sources = Sources {
        client,
        namespace,
        endpoints,
        token,
    };
    // One Ctrl-C handler for the whole watch: it also cuts a look that hangs.
    let stopped = tokio::signal::ctrl_c();
    tokio::pin!(stopped);
    loop {
        let looked = tokio::select! {
            _ = &mut stopped => return Ok(()),
            looked = tokio::time::timeout(LOOK_TIMEOUT, look(&sources)) => looked,
        };
        let looked = looked.unwrap_or_else(|_| {
            Err(K8sError::Api(format!(
                "no answer within {}s",
                LOOK_TIMEOUT.as_secs()
            )))
        });
        // Watching, an API server out of reach is shown, and tried again.
        let screen = match looked {
            Ok(groups) => render(&sources.namespace, &groups),
            Err(e) if watch.is_some() => format!("{e}\n"),
            Err(e) => return Err(e.to_string()),
        };
        let Some(every) = watch else {
            print!("{screen}");
            return Ok(());
        };
        // Home and clear, then the screen: a redraw, not a scroll.
        print!("\x1b[H\x1b[2J{screen}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}
