//! `relay-demo`: the whole relay in one process, as a readable transcript.
//!
//! The connector emulator ([`relay_connector`]) runs in-process; three tenants
//! (`acme` on Discord and WhatsApp, `globex` on Telegram, `initech` on Slack) run
//! in one [`Host`], each in its own sandbox, each presenting a signed upgrade
//! token. A scripted conversation then goes through every path of the protocol —
//! handshakes (a descriptor per fronted platform), a message and its answer, a
//! slash command and a button press forwarded as passthrough, interrupts both
//! ways, a buffered message that survives a connector crash, a live message
//! replayed from the buffer and recognised by its message id — and a summary
//! table closes the run.
//!
//! Every line is printed only after what it describes was observed, in script
//! order, so the transcript is the same on every run (the port and the times
//! aside). A step that does not see what it expects within the step timeout ends
//! the demo with exit status 1 and names the step: it doubles as a smoke test.
//!
//! Files: `cast` (tenants, secrets, specs), `wire` (the emulator side), `app` (the
//! application side), `script` (the steps), `transcript` (printing), `summary`
//! (the closing table).

mod app;
mod cast;
mod script;
mod summary;
mod transcript;
mod wire;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use transcript::ColorChoice;

use app::App;
use relay_host::app::{Host, HostOptions};
use script::Demo;
use transcript::Transcript;
use wire::Wire;

/// Flags of `relay-demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How long each step may wait for what it expects (the reconnect after the
    /// connector crash takes about 1 s).
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub step_timeout_ms: u64,
    /// Colours: auto = only when stdout is a terminal and NO_COLOR is unset.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Why the demo did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure(message.into())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// Runs the demo: exit status 0 when every step was seen, 1 when one was not
/// (the error names it); `Err` when the demo could not even start.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args, started))
}

async fn run(args: Args, started: Instant) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_millis(args.step_timeout_ms.max(1));
    let out = Transcript::new(args.color.enabled(), &cast::tenant_ids());
    let secrets = cast::secrets();
    let gateways: Vec<(&str, &str)> = cast::CAST
        .iter()
        .map(|m| (m.gateway_id, m.tenant))
        .collect();
    let wire = Wire::start(cast::connector_options(&secrets), &gateways, timeout)
        .await
        .context("starting the connector emulator")?;
    let specs = cast::specs(&wire.url(), &secrets).context("building the tenants")?;
    let (handle, events) =
        Host::start(specs, HostOptions::default()).context("starting the host")?;

    out.bold(&format!(
        "relay-demo: 3 tenants, each in its own wasm sandbox, one connector emulator at {}",
        wire.url()
    ));
    out.dim(
        "hops  conn → host  frame from the connector      host → app   event to the application",
    );
    out.dim("       app → host  command from the application  host → conn  frame to the connector");

    let mut demo = Demo::new(out, App::new(handle, events, timeout), wire);
    match demo.play().await {
        Ok(()) => {
            let statuses = demo.app.handle().status();
            summary::print(
                &demo.out,
                &statuses,
                &demo.app,
                demo.wire.restarts(),
                started.elapsed(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            let message = format!("demo failed in step {}: {failure}", demo.step);
            demo.out.failure(&message);
            eprintln!("error: {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Logs go to stderr and stay quiet unless `RUST_LOG` asks for more: stdout is
/// the transcript.
fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = relay_host::run::never_log_tokens(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
