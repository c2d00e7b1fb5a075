//! `trustos`: the Trust OS command line.
//!
//! Exit codes, for every command: 0 ok / valid / allow, 1 invalid / deny, 2 usage or
//! configuration error.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    trustos::cli::run(trustos::cli::Cli::parse())
}
