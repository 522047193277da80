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
    /// Play a scripted conversation: the connector emulator and three tenants in
    /// one process, printed as a transcript (exit 1 if a step does not happen).
    Demo(relay_host::demo::Args),
    /// Run the gateway: tenants from flags or --config, the sidecar protocol on
    /// stdin/stdout (APP-PROTOCOL.md), logs on stderr.
    Run(relay_host::run::RunArgs),
    /// Run the connector emulator (a test double of the connector side), scripted
    /// with NDJSON on stdin; see docs/CONNECTOR.md.
    Connector(relay_host::connector::cli::Args),
    /// Run conformance vector files through the compiled component.
    Conform {
        /// Vector files, recognised by name (dial_url.json, frames.json, ...).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Measure throughput, tenant density and latency, side by side in one run.
    Bench {
        /// Smaller corpus and budgets (about a minute on 2 cores).
        #[arg(long)]
        quick: bool,
        /// Also write the report as a JSON object to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// NDJSON file of connector→gateway lines to use instead of the generated corpus.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Write the generated corpus as NDJSON to this file and exit (to measure
        /// other implementations on the same bytes).
        #[arg(long)]
        dump_corpus: Option<PathBuf>,
        /// Run only these sections (repeatable); all by default.
        #[arg(long, value_enum)]
        only: Vec<relay_host::bench::Section>,
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
        Command::Demo(args) => relay_host::demo::main(args),
        Command::Run(args) => {
            relay_host::run::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Connector(args) => relay_host::connector::cli::main(args),
        Command::Bench {
            quick,
            json,
            corpus,
            dump_corpus,
            only,
        } => {
            if let Some(path) = dump_corpus {
                let lines =
                    relay_host::bench::corpus::generate(relay_host::bench::CORPUS_SEED, 10_000);
                std::fs::write(&path, lines.join("\n") + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(ExitCode::SUCCESS);
            }
            let report = relay_host::bench::run(&relay_host::bench::BenchOptions {
                quick,
                corpus,
                only,
            })?;
            relay_host::bench::print_table(&report);
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
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
