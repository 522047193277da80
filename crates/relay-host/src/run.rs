//! `relay-host run`: logging, configuration, optional metrics, then the stdio
//! sidecar until `shutdown` or the end of stdin.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::app::{run_stdio, Host, HostError, HostOptions, ReloadSource};
use crate::config::{self, ConfigError, Loaded, SingleTenant};
use crate::shard::Shard;

/// Flags of `relay-host run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Tenants from a TOML file (docs/CONFIG.md); excludes the one-tenant flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "platform", "bot_id", "gateway_id", "secret_env", "secret_file", "prompt_nonce", "ca_file"])]
    pub config: Option<PathBuf>,
    /// Connector base URL (http(s):// or ws(s)://) of the single tenant `default`.
    #[arg(long, required_unless_present = "config")]
    pub url: Option<String>,
    /// Platform of the single identity (e.g. discord).
    #[arg(long, required_unless_present = "config")]
    pub platform: Option<String>,
    /// Bot id of the single identity.
    #[arg(long, required_unless_present = "config")]
    pub bot_id: Option<String>,
    /// Gateway id for the upgrade token (needs --secret-env or --secret-file).
    #[arg(long)]
    pub gateway_id: Option<String>,
    /// Environment variable holding the upgrade secret.
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// File holding the upgrade secret.
    #[arg(long, value_name = "FILE", conflicts_with = "secret_env")]
    pub secret_file: Option<PathBuf>,
    /// This gateway's prompt-owner nonce.
    #[arg(long)]
    pub prompt_nonce: Option<String>,
    /// Extra trusted root certificates (PEM) for wss://.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Log format on stderr; the filter comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve only the --config tenants that hash to shard K of N (K is 0-based,
    /// e.g. a StatefulSet pod ordinal); docs/DEPLOY.md.
    // `requires` alone is not enough: clap lets a missing requirement pass when
    // an argument it conflicts with (the one-tenant flags) is present.
    #[arg(long, value_name = "K/N", requires = "config", conflicts_with_all = ["url", "platform", "bot_id"])]
    pub shard: Option<Shard>,
}

/// How logs are written to stderr.
// The variants' doc comments are for rustdoc only: `help = None` keeps clap from
// turning them into `--help` text, so the command's help reads as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours only when stderr is a terminal).
    #[value(help = None::<&'static str>)]
    Text,
    /// One JSON object per line, for a log collector.
    #[value(help = None::<&'static str>)]
    Json,
}

/// Why `run` could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The flags or the `--config` file are not a usable configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host could not start its tenants.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The `--metrics` address could not be bound.
    #[error("metrics address {addr}: {error}")]
    Metrics {
        /// The address given to `--metrics`.
        addr: SocketAddr,
        /// Why binding it failed.
        error: std::io::Error,
    },
    /// The tokio runtime could not be built.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the sidecar; returns when every tenant has stopped.
pub fn run(args: RunArgs) -> Result<(), RunError> {
    init_logging(args.log_format);
    let mut loaded = match &args.config {
        Some(path) => config::load_file(path)?,
        None => config::from_flags(&SingleTenant {
            url: args.url.clone().unwrap_or_default(),
            platform: args.platform.clone().unwrap_or_default(),
            bot_id: args.bot_id.clone().unwrap_or_default(),
            gateway_id: args.gateway_id.clone(),
            secret_env: args.secret_env.clone(),
            secret_file: args.secret_file.clone(),
            prompt_nonce: args.prompt_nonce.clone(),
            ca_file: args.ca_file.clone(),
        })?,
    };
    if let Some(shard) = args.shard {
        select_shard(&mut loaded, shard);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let result = runtime.block_on(async move {
        // Watched before the (slow) start, so an early SIGHUP is not fatal.
        let hangups = hangup_signals();
        let listener = match args.metrics {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|error| RunError::Metrics { addr, error })?,
            ),
            None => None,
        };
        let count = loaded.tenants.len();
        let loaded_options = loaded.options.clone();
        let (handle, events) = match args.shard {
            // A shard may get no tenant: it still serves the probes and waits.
            Some(_) => Host::start_shard(loaded.tenants, loaded.options)?,
            None => Host::start(loaded.tenants, loaded.options)?,
        };
        tracing::info!(tenants = count, "relay-host running");
        if let Some(path) = args.config.clone() {
            handle.set_reload_source(reload_source(path, args.shard, loaded_options));
        }
        if let Some(mut hangups) = hangups {
            let handle = handle.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        let _ = handle.reload().await;
                    });
                }
            });
        }
        if let Some(listener) = listener {
            tokio::spawn(crate::metrics::serve(listener, handle.status_board()));
        }
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        run_stdio(handle, events, stdin, tokio::io::stdout(), stop_signal()).await;
        tracing::info!("relay-host stopped");
        Ok(())
    });
    // The stdin reader blocks in a thread of its own: do not wait for it after
    // a `shutdown` command (the application may keep stdin open).
    runtime.shutdown_background();
    result
}

/// Keeps the tenants of `shard` and logs their ids. The whole file was checked
/// first, so every shard of one file agrees on whether it is valid (and needs
/// every tenant's secret).
fn select_shard(loaded: &mut Loaded, shard: Shard) {
    let configured = loaded.tenants.len();
    loaded.tenants.retain(|t| shard.owns(&t.id));
    let ids: Vec<&str> = loaded.tenants.iter().map(|t| t.id.as_str()).collect();
    if ids.is_empty() {
        tracing::warn!(
            %shard,
            configured,
            "shard {shard} serves none of the {configured} configured tenants: running with no tenant until shutdown"
        );
    } else {
        tracing::info!(
            %shard,
            configured,
            serving = ids.len(),
            tenants = %ids.join(","),
            "shard {shard} serves {} of {configured} tenants",
            ids.len()
        );
    }
}

/// A reload of `relay-host run --config FILE`: FILE read and checked again, as at
/// the start, then `shard`'s tenants kept. The file's `[host]` table applies at
/// the next start only; a change to it is logged.
fn reload_source(path: PathBuf, shard: Option<Shard>, started: HostOptions) -> ReloadSource {
    std::sync::Arc::new(move || {
        let mut loaded = config::load_file(&path).map_err(|e| e.to_string())?;
        let (now, then) = (&loaded.options, &started);
        if now.shutdown_grace != then.shutdown_grace
            || now.command_queue != then.command_queue
            || now.restart_budget.max_restarts != then.restart_budget.max_restarts
            || now.restart_budget.window != then.restart_budget.window
        {
            tracing::warn!(
                "{}: the [host] table changed; it takes effect at the next start only",
                path.display()
            );
        }
        if let Some(shard) = shard {
            select_shard(&mut loaded, shard);
        }
        Ok(loaded.tenants)
    })
}

/// SIGHUP, each time it arrives (`None` where it cannot be watched).
#[cfg(unix)]
fn hangup_signals() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP ({e}); only the `reload` command reloads");
            None
        }
    }
}

/// SIGHUP does not exist here: only the `reload` command reloads.
#[cfg(not(unix))]
fn hangup_signals() -> Option<NoSignal> {
    None
}

/// Stands in for a signal stream where there is none.
#[cfg(not(unix))]
struct NoSignal;

#[cfg(not(unix))]
impl NoSignal {
    async fn recv(&mut self) -> Option<()> {
        None
    }
}

/// SIGTERM (a container stop) or SIGINT (Ctrl-C): both mean `shutdown`, so the
/// tenants go idle, close with 1000 and the process exits 0.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot watch SIGTERM/SIGINT ({e}); only stdin ends the host");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = never_log_tokens(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Caps the one log target known to print an upgrade token: tungstenite's client
/// handshake logs the raw upgrade request, `Authorization` header included, at
/// trace level. Whatever `RUST_LOG` says (even `trace`), that target stays at
/// `info` (it logs nothing at info or above), so no token reaches the logs.
/// A program embedding the host that installs its own subscriber should pass its
/// filter through this.
pub fn never_log_tokens(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    filter.add_directive(
        "tungstenite::handshake::client=info"
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid static directive")),
    )
}
