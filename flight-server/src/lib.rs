//! FerrisStreams front door: the `ferris` command line.
//!
//! The Flight SQL server joins it here; for now it runs SQL files with [`cli`].

pub mod cli;
