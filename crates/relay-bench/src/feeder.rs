//! A minimal connector for the end-to-end, saturation and echo measurements: a
//! tokio-tungstenite server that answers each `hello` with a descriptor and
//! `going_idle` with its ack, and otherwise writes what the benchmark hands it —
//! a slice of the corpus (one WebSocket message per line) or single probe lines.
//!
//! Why not the connector emulator: it reports every frame it sees and sends
//! (a broadcast of observations, a JSON value built per frame), which is right for
//! tests and wrong for a throughput or saturation figure of the host — on 2 cores
//! the emulator's own work would be most of what is measured. This server does
//! no more per frame than a connector must: hand tungstenite the bytes.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::live::lock;
use crate::throughput::DESCRIPTOR_LINE;

/// What a connection's writer is asked to send.
enum Out {
    /// One message, flushed at once (a probe, a handshake answer).
    Line(Utf8Bytes),
    /// These lines of a corpus, one message each, flushed after the last.
    Slice(Arc<Vec<Utf8Bytes>>, Range<usize>),
}

/// Called with each gateway frame that is neither `hello` nor `going_idle` (the
/// echo measurement times the echoes this way).
pub type FrameHook = Arc<dyn Fn(&Value) + Send + Sync>;

/// The WebSocket settings of the host's link (relay-host's `link::socket_config`,
/// which is private): 16 KiB buffers, a 64 MiB message cap. Both ends of every
/// measurement here use them, so a bare connection and a tenant compare like for
/// like.
pub fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .write_buffer_size(16 << 10)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// The running server. Dropping it stops every connection task.
pub struct Feeder {
    addr: SocketAddr,
    sender: Sender,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Hands lines to the feeder's connections; cheap to clone, usable from any
/// thread (the pacing thread of the latency measurements).
#[derive(Clone)]
pub struct Sender {
    /// Writers of the accepted connections, in accept order.
    conns: Arc<Mutex<Vec<mpsc::UnboundedSender<Out>>>>,
}

impl Sender {
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Writes `line` (which must end in `\n`) to connection `conn` (accept order).
    pub fn send(&self, conn: usize, line: Utf8Bytes) -> anyhow::Result<()> {
        self.out(conn, Out::Line(line))
    }

    /// Writes `lines[range]` to connection `conn`, one message per line.
    pub fn stream(
        &self,
        conn: usize,
        lines: Arc<Vec<Utf8Bytes>>,
        range: Range<usize>,
    ) -> anyhow::Result<()> {
        self.out(conn, Out::Slice(lines, range))
    }

    fn out(&self, conn: usize, out: Out) -> anyhow::Result<()> {
        let conns = lock(&self.conns);
        let tx = conns
            .get(conn)
            .ok_or_else(|| anyhow::anyhow!("no connection {conn}"))?;
        tx.send(out)
            .map_err(|_| anyhow::anyhow!("connection {conn} has ended"))
    }
}

impl Feeder {
    /// Listens on an ephemeral loopback port.
    pub async fn start(hook: Option<FrameHook>) -> anyhow::Result<Feeder> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let conns: Arc<Mutex<Vec<mpsc::UnboundedSender<Out>>>> = Arc::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (conns, tasks) = (conns.clone(), tasks.clone());
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (tx, rx) = mpsc::unbounded_channel();
                    lock(&conns).push(tx.clone());
                    let task = tokio::spawn(serve(tcp, tx, rx, hook.clone()));
                    lock(&tasks).push(task);
                }
            })
        };
        lock(&tasks).push(accept);
        Ok(Feeder {
            addr,
            sender: Sender { conns },
            tasks,
        })
    }

    /// What hands lines to the connections.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// The base URL tenants dial (any path is served).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// One connection: a reader that answers the handshake and `going_idle`, and a
/// writer that sends what arrives on `rx`.
async fn serve(
    tcp: TcpStream,
    tx: mpsc::UnboundedSender<Out>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    hook: Option<FrameHook>,
) {
    // As the host's link and the emulator do: frames are small, latency matters.
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(socket_config())).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let written = match out {
                Out::Line(line) => sink.send(Message::Text(line)).await,
                Out::Slice(lines, range) => {
                    let mut r = Ok(());
                    for line in &lines[range] {
                        // `feed` leaves the flushing to tungstenite's write buffer.
                        r = sink.feed(Message::Text(line.clone())).await;
                        if r.is_err() {
                            break;
                        }
                    }
                    match r {
                        Ok(()) => sink.flush().await,
                        e => e,
                    }
                }
            };
            if written.is_err() {
                break;
            }
        }
    });
    let descriptor = Utf8Bytes::from_static(DESCRIPTOR_LINE);
    let idle_ack = Utf8Bytes::from_static("{\"type\":\"going_idle_ack\"}\n");
    // Reading also answers pings and the close handshake (tungstenite does both).
    while let Some(Ok(msg)) = stream.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(b) => match Utf8Bytes::try_from(b) {
                Ok(t) => t,
                Err(_) => continue,
            },
            _ => continue,
        };
        for line in text.as_str().lines().filter(|l| !l.trim().is_empty()) {
            let Ok(frame) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let answer = match frame["type"].as_str() {
                Some("hello") => Some(descriptor.clone()),
                Some("going_idle") => Some(idle_ack.clone()),
                _ => {
                    if let Some(hook) = &hook {
                        hook(&frame);
                    }
                    None
                }
            };
            if let Some(answer) = answer {
                let _ = tx.send(Out::Line(answer));
            }
        }
    }
    writer.abort();
}
