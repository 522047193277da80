//! The floor of the end-to-end pipelines: the same corpus over the same loopback
//! WebSockets to the same consumer, with everything of the relay taken out.
//!
//! [`Feeder`] writes each connection's share of the corpus and one end marker,
//! exactly as for (e) and (f); `tenants` bare tokio-tungstenite clients (the
//! link's buffer settings) hand every text message on unchanged — no sandbox, no
//! relay logic, no JSON — through a bounded channel, as a tenant hands events to
//! its host, to
//! - [`Consumer::Sidecar`]: one task writing them into an OS pipe (a flush when
//!   the channel is empty, as `run_stdio` does) whose other end a thread reads
//!   line by line, like (e)'s application;
//! - [`Consumer::InProcess`]: one application task receiving them, like (f)'s.
//!
//! It forwards every corpus line (the pipelines emit events for 8 in 10), so it
//! is a floor, not a twin: no relay can deliver the corpus faster than this rig
//! moves its bytes. Timed like [`e2e::measure`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::e2e::{self, Consumer, E2e, END_MARKER_ID};
use crate::feeder::{socket_config, Feeder};

/// The host's event queue bound (relay-host's `EVENT_QUEUE`), so a slow consumer
/// pushes back on the clients as it pushes back on tenants.
const QUEUE: usize = 4096;

/// How long a repeat may wait for its connections, or for the corpus.
const PATIENCE: Duration = Duration::from_secs(120);

/// Measures the floor for `consumer`: a warm-up repeat, then repeats until
/// `budget` of timed work (at least one).
pub async fn measure(
    consumer: Consumer,
    corpus: &Arc<Vec<Utf8Bytes>>,
    tenants: usize,
    budget: Duration,
) -> anyhow::Result<E2e> {
    anyhow::ensure!(
        corpus.len() >= tenants,
        "the corpus has fewer lines than connections"
    );
    once(consumer, corpus, tenants).await?;
    let (mut timed, mut repeats, mut lines) = (Duration::ZERO, 0usize, 0u64);
    while repeats == 0 || (timed < budget && repeats < 1_000) {
        let (t, n) = once(consumer, corpus, tenants).await?;
        timed += t;
        lines = n;
        repeats += 1;
    }
    let frames = corpus.len() * repeats;
    Ok(E2e {
        fps: frames as f64 / timed.as_secs_f64().max(1e-9),
        frames,
        repeats,
        events_per_repeat: lines,
    })
}

/// One repeat: the time from the first corpus byte to the last marker reaching
/// the consumer, and the lines it received in that time.
async fn once(
    consumer: Consumer,
    corpus: &Arc<Vec<Utf8Bytes>>,
    tenants: usize,
) -> anyhow::Result<(Duration, u64)> {
    let feeder = Feeder::start(None).await?;
    let url = feeder.url();
    let addr = url.trim_start_matches("ws://").to_string();
    let (tx, rx) = mpsc::channel::<Utf8Bytes>(QUEUE);
    let mut clients = Vec::with_capacity(tenants);
    for _ in 0..tenants {
        let tcp = tokio::net::TcpStream::connect(&addr).await?;
        tcp.set_nodelay(true)?;
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(socket_config()))
                .await?;
        let tx = tx.clone();
        clients.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(text) = msg {
                    if tx.send(text).await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    drop(tx);
    let deadline = Instant::now() + PATIENCE;
    while feeder.sender().connections() < tenants {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the feeder did not accept {tenants} connections within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let to = feeder.sender().clone();
    let go = move || -> anyhow::Result<Instant> {
        let marker = e2e::end_marker();
        let t0 = Instant::now();
        let n = corpus.len();
        for k in 0..tenants {
            to.stream(k, corpus.clone(), k * n / tenants..(k + 1) * n / tenants)?;
            to.send(k, marker.clone())?;
        }
        Ok(t0)
    };
    let result = match consumer {
        Consumer::Sidecar => through_pipe(rx, tenants, go).await,
        Consumer::InProcess => in_task(rx, tenants, go).await,
    };
    for client in &clients {
        client.abort();
    }
    drop(feeder);
    result
}

#[cfg(unix)]
async fn through_pipe(
    mut rx: mpsc::Receiver<Utf8Bytes>,
    tenants: usize,
    go: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<(Duration, u64)> {
    use std::io::BufRead as _;
    use tokio::io::AsyncWriteExt as _;

    let (pipe_tx, pipe_rx) = tokio::net::unix::pipe::pipe()?;
    let pipe_rx = std::fs::File::from(pipe_rx.into_blocking_fd()?);
    let (through_tx, through_rx) = oneshot::channel::<Instant>();
    let reader = std::thread::Builder::new()
        .name("bench-bare-reader".into())
        .spawn(move || -> anyhow::Result<u64> {
            let mut pipe = std::io::BufReader::with_capacity(1 << 16, pipe_rx);
            let marker = memchr::memmem::Finder::new(END_MARKER_ID.as_bytes());
            let mut line = Vec::with_capacity(16 << 10);
            let (mut done, mut lines) = (0, 0u64);
            while done < tenants {
                line.clear();
                anyhow::ensure!(
                    pipe.read_until(b'\n', &mut line)? > 0,
                    "the pipe ended early"
                );
                lines += 1;
                if marker.find(&line).is_some() {
                    done += 1;
                }
            }
            let _ = through_tx.send(Instant::now());
            Ok(lines)
        })?;
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::BufWriter::with_capacity(1 << 16, pipe_tx);
        while let Some(first) = rx.recv().await {
            out.write_all(first.as_bytes()).await?;
            while let Ok(next) = rx.try_recv() {
                out.write_all(next.as_bytes()).await?;
            }
            out.flush().await?;
        }
        anyhow::Ok(())
    });
    let t0 = go()?;
    let t1 = tokio::time::timeout(PATIENCE, through_rx)
        .await
        .map_err(|_| anyhow::anyhow!("the corpus did not get through within {PATIENCE:?}"))?
        .map_err(|_| anyhow::anyhow!("the pipe's reader stopped before the corpus was through"))?;
    writer.abort();
    let lines = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pipe's reader panicked"))??;
    Ok((t1 - t0, lines))
}

#[cfg(not(unix))]
async fn through_pipe(
    _rx: mpsc::Receiver<Utf8Bytes>,
    _tenants: usize,
    _go: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<(Duration, u64)> {
    anyhow::bail!("the sidecar floor needs a Unix pipe")
}

async fn in_task(
    mut rx: mpsc::Receiver<Utf8Bytes>,
    tenants: usize,
    go: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<(Duration, u64)> {
    let marker = memchr::memmem::Finder::new(END_MARKER_ID.as_bytes());
    let t0 = go()?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (mut done, mut lines) = (0, 0u64);
    while done < tenants {
        let text = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(text)) => text,
            Ok(None) => anyhow::bail!("every client stopped before the corpus was through"),
            Err(_) => anyhow::bail!("the corpus did not get through within {PATIENCE:?}"),
        };
        lines += 1;
        if marker.find(text.as_bytes()).is_some() {
            done += 1;
        }
        std::hint::black_box(text);
    }
    Ok((t0.elapsed(), lines))
}
