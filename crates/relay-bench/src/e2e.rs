//! End-to-end pipelines: corpus bytes on a loopback WebSocket in, APP-PROTOCOL
//! events out to the application, through the host's real code.
//!
//! - (e) sidecar: `relay_host::app::run_stdio` — the code `relay-host run` runs
//!   between its stdin and stdout — writing the event lines into an OS pipe whose
//!   other end a thread reads line by line, as an application reading the sidecar
//!   would.
//! - (f) in-process: `relay_host::client::Client`, the typed Rust API; every event
//!   is consumed as a typed `Event`.
//!
//! Each repeat starts a fresh host (so each link's message memory, D16, is
//! empty: every corpus line is delivered, none is a duplicate), waits until every
//! tenant is ready, then starts the clock and has [`Feeder`] write each tenant's
//! share of the corpus followed by one end marker. The clock stops when the last
//! tenant's marker reaches the application: a tenant's events are in order, so
//! by then every event of the corpus has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use relay_host::app::{Host, HostHandle, HostOptions};
use relay_host::client::{Client, Command as ClientCommand, Event};
use relay_host::sandbox::{Limits, Runtime};
use relay_host::spec::TenantSpec;

use crate::feeder::Feeder;

/// The message id of the end marker: each tenant gets one after its corpus share.
pub const END_MARKER_ID: &str = "relay-bench-end-of-corpus";

/// Who reads the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// (e) `run_stdio` into a pipe, read by a thread.
    Sidecar,
    /// (f) the typed [`Client`].
    InProcess,
}

/// One pipeline's result.
#[derive(Debug, Clone, Copy, Default)]
pub struct E2e {
    /// Corpus frames per second, from the first byte written to the last event read.
    pub fps: f64,
    /// Corpus frames timed (every repeat but the warm-up).
    pub frames: usize,
    /// Timed repeats.
    pub repeats: usize,
    /// Events the application received per repeat (the markers included).
    pub events_per_repeat: u64,
}

/// The corpus as the feeder sends it: each line one message, with its newline.
pub fn messages(lines: &[String]) -> Arc<Vec<Utf8Bytes>> {
    Arc::new(
        lines
            .iter()
            .map(|l| Utf8Bytes::from(format!("{l}\n")))
            .collect(),
    )
}

/// The line that ends each connection's share of the corpus.
pub fn end_marker() -> Utf8Bytes {
    let frame = json!({"type": "inbound", "event": {
        "text": "end of corpus", "message_type": "text", "message_id": END_MARKER_ID,
        "source": {"platform": "discord", "chat_id": "c-end", "chat_type": "group",
                   "user_id": "u1", "user_name": "ben"}}});
    Utf8Bytes::from(format!("{frame}\n"))
}

/// `n` tenants dialling `url`, each with the identity the corpus is written for
/// (discord bot `app`, whose passthrough forwards it accepts).
pub fn corpus_specs(url: &str, n: usize) -> anyhow::Result<Vec<TenantSpec>> {
    let mut specs = crate::live::specs_with_bots(url, n, |_| "app".into())?;
    for spec in &mut specs {
        // As in the component pipelines: a deadline a loaded 2-core machine
        // cannot trip by descheduling a thread mid-call.
        spec.limits = Limits {
            cpu_per_call: Duration::from_secs(10),
            ..spec.limits
        };
    }
    Ok(specs)
}

fn host_options() -> HostOptions {
    HostOptions {
        // The feeder acknowledges going_idle at once; this only bounds a failure.
        shutdown_grace: Duration::from_secs(2),
        ..HostOptions::default()
    }
}

/// Measures one pipeline: a warm-up repeat, then repeats until `budget` of timed
/// work (at least one). `runtime` must have room for `tenants` instances.
pub async fn measure(
    consumer: Consumer,
    runtime: &Arc<Runtime>,
    corpus: &Arc<Vec<Utf8Bytes>>,
    tenants: usize,
    budget: Duration,
) -> anyhow::Result<E2e> {
    anyhow::ensure!(
        corpus.len() >= tenants,
        "the corpus has fewer lines than tenants"
    );
    once(consumer, runtime, corpus, tenants).await?;
    let (mut timed, mut repeats, mut events) = (Duration::ZERO, 0usize, 0u64);
    while repeats == 0 || (timed < budget && repeats < 1_000) {
        let (t, e) = once(consumer, runtime, corpus, tenants).await?;
        timed += t;
        events = e;
        repeats += 1;
    }
    let frames = corpus.len() * repeats;
    Ok(E2e {
        fps: frames as f64 / timed.as_secs_f64().max(1e-9),
        frames,
        repeats,
        events_per_repeat: events,
    })
}

/// One repeat: the time from the first corpus byte to the last marker event, and
/// the events read in that time.
async fn once(
    consumer: Consumer,
    runtime: &Arc<Runtime>,
    corpus: &Arc<Vec<Utf8Bytes>>,
    tenants: usize,
) -> anyhow::Result<(Duration, u64)> {
    let feeder = Feeder::start(None).await?;
    let specs = corpus_specs(&feeder.url(), tenants)?;
    let (handle, events) = Host::start_with_runtime(runtime.clone(), specs, host_options())?;
    let to = feeder.sender().clone();
    let go = move || -> anyhow::Result<Instant> {
        anyhow::ensure!(
            to.connections() == tenants,
            "{} connections for {tenants} tenants",
            to.connections()
        );
        let marker = end_marker();
        let t0 = Instant::now();
        let n = corpus.len();
        for k in 0..tenants {
            to.stream(k, corpus.clone(), k * n / tenants..(k + 1) * n / tenants)?;
            to.send(k, marker.clone())?;
        }
        Ok(t0)
    };
    let result = match consumer {
        Consumer::Sidecar => sidecar(handle, events, tenants, go).await,
        Consumer::InProcess => in_process(Client::new(handle, events), tenants, go).await,
    };
    drop(feeder);
    result
}

/// How long a repeat may wait for the tenants to be ready, or for the corpus.
const PATIENCE: Duration = Duration::from_secs(120);

#[cfg(unix)]
async fn sidecar(
    handle: HostHandle,
    events: relay_host::app::Events,
    tenants: usize,
    go: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<(Duration, u64)> {
    use tokio::io::AsyncWriteExt as _;

    let (pipe_tx, pipe_rx) = tokio::net::unix::pipe::pipe()?;
    let pipe_rx = std::fs::File::from(pipe_rx.into_blocking_fd()?);
    let (ready_tx, ready_rx) = oneshot::channel();
    let (through_tx, through_rx) = oneshot::channel();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<String>();
    let reader = std::thread::Builder::new()
        .name("bench-app-reader".into())
        .spawn(move || read_events(pipe_rx, tenants, ready_tx, through_tx, ack_tx))?;
    // The sidecar's stdin: open until the end, then closed, which is `shutdown`.
    // Acks for buffered deliveries go in here, as an application writes them.
    let (mut stdin_w, stdin_r) = tokio::io::duplex(1 << 16);
    let stdin_writer = tokio::spawn(async move {
        while let Some(line) = ack_rx.recv().await {
            if stdin_w.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let host = handle.clone();
    let sidecar = tokio::spawn(relay_host::app::run_stdio(
        handle,
        events,
        tokio::io::BufReader::new(stdin_r),
        pipe_tx,
        std::future::pending::<()>(),
    ));
    let timed = async {
        tokio::time::timeout(PATIENCE, ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("the tenants were not ready within {PATIENCE:?}"))?
            .map_err(|_| {
                anyhow::anyhow!("the event reader stopped before every tenant was ready")
            })?;
        let t0 = go()?;
        let t1 = tokio::time::timeout(PATIENCE, through_rx)
            .await
            .map_err(|_| anyhow::anyhow!("the corpus did not get through within {PATIENCE:?}"))?
            .map_err(|_| {
                anyhow::anyhow!("the event reader stopped before the corpus was through")
            })?;
        anyhow::Ok(t1 - t0)
    }
    .await;
    // Normally the reader has dropped the ack sender by now, so the stdin writer
    // ends and drops stdin, which shuts the sidecar down. After a failure the
    // reader may still wait for lines: stopping the host ends the pipe, and so it.
    if timed.is_err() {
        let _ = tokio::time::timeout(PATIENCE, host.shutdown()).await;
    }
    drop(host);
    let joined = tokio::task::spawn_blocking(move || reader.join()).await;
    let _ = tokio::time::timeout(PATIENCE, sidecar).await;
    let _ = stdin_writer.await;
    // A failure in the timed part explains a reader's error, not the reverse.
    let elapsed = timed?;
    let lines = joined?.map_err(|_| anyhow::anyhow!("the event reader panicked"))??;
    Ok((elapsed, lines))
}

#[cfg(not(unix))]
async fn sidecar(
    _handle: HostHandle,
    _events: relay_host::app::Events,
    _tenants: usize,
    _go: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<(Duration, u64)> {
    anyhow::bail!("the sidecar pipeline needs a Unix pipe")
}

/// The application's side of the pipe: lines until every tenant is ready, then
/// lines until every tenant's end marker (sent on `through` with the time), then
/// to the end of the pipe. Returns the lines of the timed part. A buffered
/// delivery is acknowledged on `acks` (`ack` commands for stdin).
#[cfg(unix)]
fn read_events(
    pipe: std::fs::File,
    tenants: usize,
    ready: oneshot::Sender<()>,
    through: oneshot::Sender<Instant>,
    acks: mpsc::UnboundedSender<String>,
) -> anyhow::Result<u64> {
    use std::io::BufRead as _;

    let mut pipe = std::io::BufReader::with_capacity(1 << 16, pipe);
    let mut line = Vec::with_capacity(16 << 10);
    let mut next = |line: &mut Vec<u8>| -> anyhow::Result<()> {
        line.clear();
        anyhow::ensure!(
            pipe.read_until(b'\n', line)? > 0,
            "the sidecar's output ended early"
        );
        Ok(())
    };
    let buffered = memchr::memmem::Finder::new(b"\"buffer_id\":\"");
    let ack = |line: &[u8]| {
        if buffered.find(line).is_none() {
            return;
        }
        if let Ok(ev) = serde_json::from_slice::<Value>(line) {
            if let (Some(tenant), Some(id)) = (ev["tenant"].as_str(), ev["buffer_id"].as_str()) {
                let cmd = json!({"op": "ack", "tenant": tenant, "buffer_id": id});
                let _ = acks.send(format!("{cmd}\n"));
            }
        }
    };
    let mut seen = 0;
    while seen < tenants {
        next(&mut line)?;
        if let Ok(ev) = serde_json::from_slice::<Value>(&line) {
            if ev["event"] == "ready" {
                seen += 1;
            }
        }
        ack(&line);
    }
    let _ = ready.send(());
    let marker = memchr::memmem::Finder::new(END_MARKER_ID.as_bytes());
    let (mut done, mut lines) = (0, 0u64);
    while done < tenants {
        next(&mut line)?;
        lines += 1;
        if marker.find(&line).is_some() {
            done += 1;
        }
        ack(&line);
    }
    let _ = through.send(Instant::now());
    // No more acks: the stdin writer ends, stdin closes, the sidecar shuts down.
    drop(acks);
    std::io::copy(&mut pipe, &mut std::io::sink())?;
    Ok(lines)
}

async fn in_process(
    mut client: Client,
    tenants: usize,
    go: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<(Duration, u64)> {
    let timed = async {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut seen = 0;
        while seen < tenants {
            match tokio::time::timeout_at(deadline, client.next_event()).await {
                Ok(Some(Event::Ready(_))) => seen += 1,
                Ok(Some(ev)) => ack(&client, &ev).await,
                Ok(None) => anyhow::bail!("the host stopped before every tenant was ready"),
                Err(_) => anyhow::bail!("the tenants were not ready within {PATIENCE:?}"),
            }
        }
        let t0 = go()?;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let (mut done, mut events) = (0, 0u64);
        while done < tenants {
            let ev = match tokio::time::timeout_at(deadline, client.next_event()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => anyhow::bail!("the host stopped before the corpus was through"),
                Err(_) => anyhow::bail!("the corpus did not get through within {PATIENCE:?}"),
            };
            events += 1;
            if let Event::Message(m) = &ev {
                if m.message.get("message_id").and_then(Value::as_str) == Some(END_MARKER_ID) {
                    done += 1;
                }
            }
            ack(&client, &ev).await;
            std::hint::black_box(ev);
        }
        anyhow::Ok((t0.elapsed(), events))
    }
    .await;
    // The stream is read while the tenants stop, as the client's docs ask.
    let handle = client.handle();
    let drain = tokio::spawn(async move { while client.next_event().await.is_some() {} });
    let _ = tokio::time::timeout(PATIENCE, handle.shutdown()).await;
    let _ = tokio::time::timeout(PATIENCE, drain).await;
    timed
}

/// What an application does with a buffered delivery once it has it: `ack`.
async fn ack(client: &Client, ev: &Event) {
    if let Event::Message(m) = ev {
        if let Some(buffer_id) = &m.buffer_id {
            client
                .send(ClientCommand::Ack {
                    tenant: m.tenant.clone(),
                    buffer_id: buffer_id.clone(),
                })
                .await;
        }
    }
}
