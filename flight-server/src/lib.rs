//! FerrisStreams front door: the `ferris` command line ([`cli`]), the Arrow Flight SQL
//! server ([`server`]) and its command-line client `ferris-flight` ([`client`]).

pub mod cli;
pub mod client;
pub mod server;
