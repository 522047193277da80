//! `relay-bench`: throughput, tenant density and latency, side by side in one run
//! (docs/PERFORMANCE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Measure the relay: pipelines, instantiation, density and latency, as ratios.
#[derive(Debug, Parser)]
#[command(name = "relay-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Shorter budgets (about a minute on 2 cores).
    #[arg(long)]
    quick: bool,
    /// Smoke-test sizes, for the tests: every key, no meaningful number.
    #[arg(long, hide = true)]
    tiny: bool,
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
    only: Vec<relay_bench::Section>,
    /// Also run the pure-Python reference handler on the same corpus and report
    /// the ratios (default script: ../shared/bench/py_reference.py beside the
    /// repository). Skipped with a note, and null, when Python or it is absent.
    #[arg(long, value_name = "SCRIPT", num_args = 0..=1)]
    python_ref: Option<Option<PathBuf>>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The connector emulator in its own process: the density section measures
    /// the host's memory apart from the emulator's.
    #[command(hide = true)]
    Connector(relay_connector::cli::Args),
    /// One density figure in a fresh process; prints resident KiB per item.
    #[command(hide = true)]
    DensityProbe {
        #[arg(value_enum)]
        what: relay_bench::DensityProbe,
        count: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Connector(args)) => return relay_connector::cli::main(args),
        Some(Command::DensityProbe { what, count }) => {
            println!("{}", relay_bench::density_probe(what, count)?);
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    if let Some(path) = cli.dump_corpus {
        let lines =
            relay_bench::corpus::generate(relay_bench::CORPUS_SEED, relay_bench::CORPUS_LINES);
        std::fs::write(&path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let report = relay_bench::run(&relay_bench::BenchOptions {
        quick: cli.quick,
        tiny: cli.tiny,
        corpus: cli.corpus,
        only: cli.only,
        python_ref: cli
            .python_ref
            .map(|p| p.unwrap_or_else(relay_bench::python_ref::default_script)),
    })?;
    relay_bench::print_table(&report);
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
