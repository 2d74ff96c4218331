//! The server's HTTP endpoint (`--http`): `/health`, `/ready` and `/metrics` (Prometheus text
//! exposition of every job's counters), for load balancers, Kubernetes probes and scrapers;
//! the JSON API under `/api/` ([`crate::rest`]); and the web dashboard at `/`
//! ([`crate::dashboard`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use ferris_engine::JobProgress;
use ferris_engine::job::manifest::now_ms;
use ferris_engine::job::{
    CheckpointInfo, InstanceCounters, JobRecord, JobStatus, OperatorCounters,
};

use crate::sse::Body;

/// What the endpoint reports on: the server's readiness and its jobs; and what the API runs
/// its SQL through.
pub trait Monitored: crate::rest::SqlService + Clone + 'static {
    /// Whether the server has restored its jobs and takes queries.
    fn is_ready(&self) -> bool;
    /// Every job the server started.
    fn job_records(&self) -> impl Future<Output = Vec<Arc<JobRecord>>> + Send;
}

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, service: impl Monitored) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&service, request).await) }
            });
            // A client that hangs up mid-request is no error of ours.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

/// Binds the endpoint's address.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

async fn answer(service: &impl Monitored, request: Request<Incoming>) -> Response<Body> {
    if request.uri().path() == crate::sse::PATH {
        return crate::sse::answer(service, request).await;
    }
    if request.uri().path().starts_with(crate::rest::PREFIX) {
        return crate::rest::answer(service, request)
            .await
            .map(BodyExt::boxed_unsync);
    }
    if let Some(page) = crate::dashboard::page(request.uri().path()) {
        return page.map(BodyExt::boxed_unsync);
    }
    let (status, body) = match request.uri().path() {
        "/health" => (StatusCode::OK, "ok\n".to_string()),
        "/ready" if service.is_ready() => (StatusCode::OK, "ok\n".to_string()),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "restoring jobs\n".to_string(),
        ),
        "/metrics" => (StatusCode::OK, metrics(service).await),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: / (the dashboard), /health, /ready, /metrics or /api/v1/\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// One metric family: its name, type, help, and a job's samples (none: not yet known).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&JobView) -> Vec<Sample>,
);

/// One value of a family: the labels it has besides `job`, and the value.
type Sample = (Vec<(&'static str, String)>, f64);

/// A family's one sample per job.
fn per_job(value: Option<f64>) -> Vec<Sample> {
    value.map(|v| (Vec::new(), v)).into_iter().collect()
}

/// A family's sample per operator of the job's plan, where `value` knows one.
fn per_operator(job: &JobView, value: fn(&OperatorCounters) -> Option<u64>) -> Vec<Sample> {
    job.operators
        .iter()
        .filter_map(|op| {
            let labels = vec![
                ("node", op.node.to_string()),
                ("operator", op.operator.clone()),
            ];
            value(op).map(|v| (labels, v as f64))
        })
        .collect()
}

/// A family's sample per instance of the job, where `value` knows one (labelled
/// `job_instance`: Prometheus gives `instance` to the scraped target).
fn per_instance(job: &JobView, value: fn(&InstanceCounters) -> Option<f64>) -> Vec<Sample> {
    job.instances
        .iter()
        .filter_map(|i| value(i).map(|v| (vec![("job_instance", i.instance.to_string())], v)))
        .collect()
}

/// A job as one scrape sees it: its counters read once (they walk the plan's metrics).
struct JobView<'a> {
    record: &'a JobRecord,
    progress: JobProgress,
    checkpoint: Option<CheckpointInfo>,
    operators: Vec<OperatorCounters>,
    instances: Vec<InstanceCounters>,
    lag: Vec<(String, i32, i64)>,
}

/// Every job's counters in the Prometheus text format.
async fn metrics(service: &impl Monitored) -> String {
    let jobs = service.job_records().await;
    let families: [Family; 23] = [
        (
            "ferris_job_records_in_total",
            "counter",
            "Valid records read by the job's sources.",
            |job| per_job(Some(job.progress.records_in as f64)),
        ),
        (
            "ferris_job_records_out_total",
            "counter",
            "Result rows the job's sink has written.",
            |job| per_job(Some(job.progress.records_out as f64)),
        ),
        (
            "ferris_job_bad_records_total",
            "counter",
            "Malformed records skipped or dead-lettered.",
            |job| per_job(Some(job.progress.bad_records as f64)),
        ),
        (
            "ferris_job_late_records_total",
            "counter",
            "Records that came after their window closed.",
            |job| per_job(Some(job.progress.late_records as f64)),
        ),
        (
            "ferris_job_state_bytes_peak",
            "gauge",
            "Most bytes of keyed state held at once.",
            |job| per_job(Some(job.progress.peak_state_bytes as f64)),
        ),
        (
            "ferris_job_running",
            "gauge",
            "1 while the job runs, 0 once it ended or failed.",
            |job| {
                per_job(Some(f64::from(u8::from(
                    job.record.status() == JobStatus::Running,
                ))))
            },
        ),
        (
            "ferris_job_watermark_delay_seconds",
            "gauge",
            "How far the windows' watermark is behind the clock.",
            |job| {
                let watermark = job.progress.watermark_ms;
                per_job((watermark > 0).then(|| now_ms().saturating_sub(watermark) as f64 / 1000.0))
            },
        ),
        (
            "ferris_job_consumer_lag",
            "gauge",
            "Messages of a Kafka partition after the job's position in it.",
            |job| {
                job.lag
                    .iter()
                    .map(|(source, partition, lag)| {
                        let labels = vec![
                            ("source", source.clone()),
                            ("partition", partition.to_string()),
                        ];
                        (labels, *lag as f64)
                    })
                    .collect()
            },
        ),
        (
            "ferris_job_checkpoints_total",
            "counter",
            "Checkpoints completed since the job (re)started.",
            |job| per_job(Some(job.record.metrics().checkpoints() as f64)),
        ),
        (
            "ferris_job_checkpoint_duration_seconds",
            "gauge",
            "How long the last checkpoint took, from the cut to its output committed.",
            |job| per_job(job.checkpoint.map(|c| c.duration.as_secs_f64())),
        ),
        (
            "ferris_job_checkpoint_pause_seconds",
            "gauge",
            "How long the sources waited for the last checkpoint (the cut and the sink's prepare).",
            |job| per_job(job.checkpoint.map(|c| c.held.as_secs_f64())),
        ),
        (
            "ferris_job_checkpoint_age_seconds",
            "gauge",
            "Time since the last checkpoint completed.",
            |job| {
                per_job(job.checkpoint.map(|c| {
                    std::time::SystemTime::now()
                        .duration_since(c.at)
                        .map_or(0.0, |d| d.as_secs_f64())
                }))
            },
        ),
        (
            "ferris_job_checkpoint_state_bytes",
            "gauge",
            "Bytes of operator state in the last checkpoint.",
            |job| per_job(job.checkpoint.map(|c| c.state_bytes as f64)),
        ),
        (
            "ferris_operator_records_in_total",
            "counter",
            "Rows an operator of the job's plan took from its inputs.",
            |job| per_operator(job, |op| op.records_in),
        ),
        (
            "ferris_operator_records_out_total",
            "counter",
            "Rows an operator of the job's plan gave on.",
            |job| per_operator(job, |op| op.records_out),
        ),
        (
            "ferris_operator_errors_total",
            "counter",
            "Records an operator could not use: malformed (a source) or late (windows).",
            |job| per_operator(job, |op| Some(op.errors)),
        ),
        (
            "ferris_instance_records_in_total",
            "counter",
            "Valid records an instance's shares of the sources read.",
            |job| per_instance(job, |i| Some(i.records_in as f64)),
        ),
        (
            "ferris_instance_consumer_lag",
            "gauge",
            "Messages of an instance's Kafka partitions after its position in them.",
            |job| per_instance(job, |i| Some(i.lag as f64)),
        ),
        (
            "ferris_instance_watermark_delay_seconds",
            "gauge",
            "How far an instance's windows' watermark is behind the clock.",
            |job| {
                per_instance(job, |i| {
                    (i.watermark_ms > 0)
                        .then(|| now_ms().saturating_sub(i.watermark_ms) as f64 / 1000.0)
                })
            },
        ),
        (
            "ferris_instance_late_records_total",
            "counter",
            "Records an instance's windows found late.",
            |job| per_instance(job, |i| Some(i.late_records as f64)),
        ),
        (
            "ferris_instance_state_bytes",
            "gauge",
            "Bytes of keyed state an instance's operators hold now.",
            |job| per_instance(job, |i| Some(i.state_bytes as f64)),
        ),
        (
            "ferris_instance_state_bytes_peak",
            "gauge",
            "Most bytes of keyed state an instance's operators held at once.",
            |job| per_instance(job, |i| Some(i.peak_state_bytes as f64)),
        ),
        (
            "ferris_instance_busy_seconds_total",
            "counter",
            "Time an instance's tasks spent computing.",
            |job| per_instance(job, |i| Some(i.busy.as_secs_f64())),
        ),
    ];
    let views: Vec<JobView> = jobs
        .iter()
        .map(|record| JobView {
            record,
            progress: record.progress(),
            checkpoint: record.metrics().last_checkpoint(),
            operators: record.operators(),
            // A run of one instance (the others elsewhere) counts that one alone.
            instances: record
                .instances()
                .into_iter()
                .filter(|i| record.instance.is_none_or(|here| here == i.instance))
                .collect(),
            lag: record.metrics().lag(),
        })
        .collect();
    // The process's own, for autoscalers that count per pod.
    let mut out = format!(
        "# HELP ferris_process_cpu_seconds_total CPU time the server process used (user and system).\n\
         # TYPE ferris_process_cpu_seconds_total counter\n\
         ferris_process_cpu_seconds_total {}\n\
         # HELP ferris_process_resident_memory_bytes Resident memory of the server process.\n\
         # TYPE ferris_process_resident_memory_bytes gauge\n\
         ferris_process_resident_memory_bytes {}\n",
        ferris_cluster::resources::cpu_seconds(),
        ferris_cluster::resources::rss_bytes()
    );
    for (name, kind, help, samples) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for job in &views {
            for (mut labels, value) in samples(job) {
                // Two instances of a job run in one process are two series.
                if let Some(here) = job.record.instance
                    && !labels.iter().any(|(key, _)| *key == "job_instance")
                {
                    labels.push(("job_instance", here.to_string()));
                }
                let mut text = format!("job=\"{}\"", label(&job.record.name));
                for (key, v) in labels {
                    let _ = write!(text, ",{key}=\"{}\"", label(&v));
                }
                let _ = writeln!(out, "{name}{{{text}}} {value}");
            }
        }
    }
    out
}

/// A Prometheus label value, escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}
