//! `ferris`: run FerrisStreams SQL files.

fn main() -> std::process::ExitCode {
    ferris_flight_server::cli::main(std::env::args().skip(1).collect())
}
