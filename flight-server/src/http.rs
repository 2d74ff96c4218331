//! The server's HTTP endpoint (`--http`): `/health`, `/ready` and `/metrics` (Prometheus text
//! exposition of every job's counters), for load balancers, Kubernetes probes and scrapers.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::server::FerrisFlightSql;

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, service: FerrisFlightSql) {
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

async fn answer(service: &FerrisFlightSql, request: Request<Incoming>) -> Response<Full<Bytes>> {
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
            "not found: /health, /ready or /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Every job's counters in the Prometheus text format.
async fn metrics(service: &FerrisFlightSql) -> String {
    let jobs = service.job_records().await;
    let mut out = String::new();
    let families: [(&str, &str, &str); 6] = [
        (
            "ferris_job_records_in_total",
            "counter",
            "Valid records read by the job's sources.",
        ),
        (
            "ferris_job_records_out_total",
            "counter",
            "Result rows the job's sink has written.",
        ),
        (
            "ferris_job_bad_records_total",
            "counter",
            "Malformed records skipped or dead-lettered.",
        ),
        (
            "ferris_job_late_records_total",
            "counter",
            "Records that came after their window closed.",
        ),
        (
            "ferris_job_state_bytes_peak",
            "gauge",
            "Most bytes of keyed state held at once.",
        ),
        (
            "ferris_job_running",
            "gauge",
            "1 while the job runs, 0 once it ended or failed.",
        ),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for job in &jobs {
            let progress = job.progress();
            let value = match name {
                "ferris_job_records_in_total" => progress.records_in,
                "ferris_job_records_out_total" => progress.records_out,
                "ferris_job_bad_records_total" => progress.bad_records,
                "ferris_job_late_records_total" => progress.late_records,
                "ferris_job_state_bytes_peak" => progress.peak_state_bytes,
                _ => u64::from(job.status() == ferris_engine::job::JobStatus::Running),
            };
            let label = job.name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{job=\"{label}\"}} {value}");
        }
    }
    out
}
