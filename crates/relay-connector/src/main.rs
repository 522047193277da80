//! `relay-connector`: the emulator as a process, scripted with NDJSON on stdin
//! (docs/CONNECTOR.md).

use std::process::ExitCode;

use clap::Parser;

/// The connector emulator: a development and test double of the connector side.
#[derive(Debug, Parser)]
#[command(name = "relay-connector", version, about)]
struct Cli {
    #[command(flatten)]
    args: relay_connector::cli::Args,
}

fn main() -> ExitCode {
    match relay_connector::cli::main(Cli::parse().args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
