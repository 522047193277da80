//! `relay-connector`: the emulator as a process, scripted with NDJSON.
//!
//! Commands arrive one JSON object per line on stdin; every observation and every
//! command reply leaves as one JSON object per line on stdout (the first is
//! `{"listening": "<addr>"}`); logs go to stderr. docs/CONNECTOR.md lists both.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;

use super::behavior::HandshakeDrop;
use super::script::{self, Command};
use super::{Connector, ConnectorHandle, ConnectorOptions};

/// Flags of `relay-connector`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (printed in the first line).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Environment variables holding accepted secrets (current and rotated); none
    /// turns upgrade authentication off.
    #[arg(long = "secret-env", value_name = "VAR", num_args = 1..)]
    pub secret_env: Vec<String>,
    /// WebSocket path gateways must dial.
    #[arg(long, default_value = "/relay")]
    pub path: String,
    /// Seconds a token may be past its expiry and still be accepted.
    #[arg(long, default_value_t = 0)]
    pub clock_skew: u64,
    /// Keep unacknowledged buffered deliveries in this JSON file across runs.
    #[arg(long, value_name = "FILE")]
    pub replay_file: Option<PathBuf>,
    /// Keep running after stdin ends (stop with SIGINT/SIGTERM or `shutdown`).
    #[arg(long)]
    pub keep_running: bool,
    /// "Descriptor then drop": answer every connection's hellos, then drop its
    /// TCP stream (no close frame) this many milliseconds after its last
    /// descriptor, to test a gateway's backoff ladder.
    #[arg(long, value_name = "MS")]
    pub drop_after_handshake: Option<u64>,
}

/// Runs the emulator to completion on its own tokio runtime.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let mut secrets = Vec::new();
    for var in &args.secret_env {
        let value = std::env::var(var)
            .with_context(|| format!("--secret-env {var}: the variable is not set"))?;
        if value.trim().is_empty() {
            anyhow::bail!("--secret-env {var}: the variable is empty");
        }
        secrets.push(value);
    }
    let options = ConnectorOptions {
        listen: args.listen,
        secrets,
        path: args.path.clone(),
        clock_skew_s: args.clock_skew,
        replay_file: args.replay_file.clone(),
        drop_after_handshake: args
            .drop_after_handshake
            .map(|ms| HandshakeDrop::every(Duration::from_millis(ms))),
        ..ConnectorOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(run(options, args.keep_running));
    // The stdin reader sits in a blocking thread that never returns by itself.
    rt.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout leaves nobody to tell; the emulator carries on.
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn drain(handle: &ConnectorHandle) {
    while let Some(ev) = handle.try_recv() {
        print(&ev.to_json());
    }
}

async fn run(options: ConnectorOptions, keep_running: bool) -> anyhow::Result<()> {
    let mut handle = Connector::start(options).await?;
    tracing::info!(target: "connector", "listening on {}", handle.url());
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let terminate = terminate_signal();
    tokio::pin!(terminate);
    let abrupt = loop {
        tokio::select! {
            ev = handle.recv() => print(&ev.to_json()),
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match lifecycle(&line) {
                        Some(Lifecycle::Shutdown { abrupt }) => break abrupt,
                        Some(Lifecycle::Restart { abrupt, down }) => {
                            let stopped = handle.stop(abrupt).await;
                            drain(&handle);
                            tokio::time::sleep(down).await;
                            handle = stopped.start_again().await?;
                            print(&json!({"ok": "restart"}));
                        }
                        None => print(&execute(&handle, &line)),
                    }
                }
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    if !keep_running {
                        break false;
                    }
                }
            },
            _ = &mut terminate => break false,
        }
    };
    handle.stop(abrupt).await;
    drain(&handle);
    print(&json!({"ok": "shutdown"}));
    Ok(())
}

/// Runs one script line and renders its reply.
fn execute(handle: &ConnectorHandle, line: &str) -> Value {
    let name = serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("cmd").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    match script::parse_line(line).and_then(|cmd: Command| handle.inject(cmd)) {
        Ok(outcome) => outcome.to_json(&name),
        Err(e) => json!({"error": e.to_string(), "cmd": name, "line": line}),
    }
}

enum Lifecycle {
    Shutdown { abrupt: bool },
    Restart { abrupt: bool, down: Duration },
}

/// `shutdown` and `restart` act on the process, not on the running emulator.
fn lifecycle(line: &str) -> Option<Lifecycle> {
    let v: Value = serde_json::from_str(line).ok()?;
    let abrupt = v.get("abrupt").and_then(Value::as_bool).unwrap_or(false);
    match v.get("cmd").and_then(Value::as_str)? {
        "shutdown" => Some(Lifecycle::Shutdown { abrupt }),
        "restart" => {
            let down = v.get("down_ms").and_then(Value::as_u64).unwrap_or(0);
            Some(Lifecycle::Restart {
                abrupt,
                down: Duration::from_millis(down),
            })
        }
        _ => None,
    }
}

async fn terminate_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }

    #[test]
    fn drop_after_handshake_flag() {
        let cli = Cli::try_parse_from(["connector", "--drop-after-handshake", "250"]).unwrap();
        assert_eq!(cli.args.drop_after_handshake, Some(250));
        let cli = Cli::try_parse_from(["connector"]).unwrap();
        assert_eq!(cli.args.drop_after_handshake, None);
    }
}
