//! `relay-host`: the command-line edge (clap + anyhow).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use relay_host::conform;
use relay_host::sandbox::{Allocation, Runtime};

/// The gateway side of the chat relay, as a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "relay-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: tenants from flags or --config, the sidecar protocol on
    /// stdin/stdout (APP-PROTOCOL.md), logs on stderr.
    Run(Box<relay_host::run::RunArgs>),
    /// Run conformance vector files through the compiled component.
    Conform {
        /// Vector files, recognised by name (dial_url.json, frames.json, ...).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            relay_host::run::run(*args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Conform { files } => {
            let runtime = Runtime::new(Allocation::OnDemand, conform::limits())
                .context("loading the component")?;
            let mut make = || {
                runtime
                    .instantiate(conform::limits())
                    .map_err(anyhow::Error::from)
            };
            let summary = conform::run_files(&files, &mut make)?;
            for line in &summary.lines {
                println!("{line}");
            }
            if summary.deviations > 0 {
                println!(
                    "{} known deviations (docs/DEVIATIONS.md), not counted as passed",
                    summary.deviations
                );
            }
            println!("{}", summary.closing_line());
            Ok(if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
