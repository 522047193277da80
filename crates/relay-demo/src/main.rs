//! `relay-demo`: the connector emulator and three tenants in one process, a
//! scripted conversation printed as a transcript (exit 1 if a step does not
//! happen).

use std::process::ExitCode;

use clap::Parser;

/// Play the relay's scripted conversation.
#[derive(Debug, Parser)]
#[command(name = "relay-demo", version, about)]
struct Cli {
    #[command(flatten)]
    args: relay_demo::Args,
}

fn main() -> ExitCode {
    match relay_demo::main(Cli::parse().args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
