//! FerrisStreams front door: the `ferris` command line ([`cli`]), the Arrow Flight SQL
//! server ([`server`]) and its command-line client `ferris-flight` ([`client`]).

pub mod cli;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod rest;
pub mod server;
pub mod sse;

/// Runs `work` on a new multi-threaded runtime; its error is printed as `program: error: ...`.
pub(crate) fn block_on(
    program: &str,
    work: impl std::future::Future<Output = Result<(), String>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{program}: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
