//! `ferris-flight`: a command-line client of a FerrisStreams Flight SQL server.

fn main() -> std::process::ExitCode {
    ferris_flight_server::client::main(std::env::args().skip(1).collect())
}
