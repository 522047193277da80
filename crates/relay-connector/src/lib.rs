//! The connector emulator: a development and test double of the connector side.
//!
//! The gateway dials out to a connector; to run it without the hosted service this
//! module plays the connector on a real WebSocket (tokio-tungstenite over TCP):
//! token check with close 4401, a descriptor per `hello`, an `outbound_result` per
//! `outbound`, `going_idle_ack`, and buffered delivery with replay until
//! `inbound_ack`. Tests and the demo drive it in-process through
//! [`ConnectorHandle`]; the `relay-connector` binary drives it with NDJSON on stdin
//! ([`cli`], docs/CONNECTOR.md).

pub mod auth;
pub mod behavior;
pub mod cli;
mod conn;
pub mod events;
pub mod replay;
pub mod script;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use behavior::{DescriptorMode, Descriptors, HandshakeDrop, IdleMode, Outbound};
use conn::Ctl;
pub use events::{Initiator, Observed, Seen, Sent};
use replay::{Kind, ReplayBuffer};
use script::RejectCmd;
pub use script::{Command, CommandError, ConnectionInfo, Outcome, Status};

/// How many observations a slow subscriber may fall behind before it loses some.
const EVENT_CAPACITY: usize = 16384;
/// How long a stop waits for connections to finish their close handshakes.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Start-up settings. Everything but the address and the path can also be changed
/// at run time with a [`Command`].
#[derive(Debug, Clone)]
pub struct ConnectorOptions {
    /// Where to listen (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Accepted secrets, current and rotated; empty turns authentication off.
    pub secrets: Vec<String>,
    /// The WebSocket path (default `/relay`); other paths get HTTP 404.
    pub path: String,
    /// Seconds a token may be past its expiry and still pass (default 0).
    pub clock_skew_s: u64,
    /// Buffered deliveries carried over from an earlier run.
    pub replay: ReplayBuffer,
    /// Save the replay buffer here after every change (and load it at start when
    /// `replay` is empty), so it survives a process restart.
    pub replay_file: Option<PathBuf>,
    /// "Descriptor then drop" from the start (and again after every restart);
    /// the `drop_after_handshake` command changes it at run time.
    pub drop_after_handshake: Option<HandshakeDrop>,
}

impl Default for ConnectorOptions {
    fn default() -> Self {
        ConnectorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            secrets: Vec::new(),
            path: "/relay".into(),
            clock_skew_s: 0,
            replay: ReplayBuffer::new(),
            replay_file: None,
            drop_after_handshake: None,
        }
    }
}

impl ConnectorOptions {
    /// Listen on `addr`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Require tokens signed with `secret` (may be called again for rotated secrets).
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Answer every connection's hellos, then drop its TCP stream `delay` after
    /// its last descriptor (no close frame).
    pub fn drop_after_handshake(mut self, delay: Duration) -> Self {
        self.drop_after_handshake = Some(HandshakeDrop::every(delay));
        self
    }
}

/// How running connections are ended when the emulator stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// Close frame 1001 "going away", like a connector being redeployed.
    Graceful,
    /// TCP drop without a close frame, like a crash.
    Abrupt,
}

/// The emulator's entry point.
pub struct Connector;

impl Connector {
    /// Binds the listener (with `SO_REUSEADDR`, so a restart can take the same port
    /// at once) and starts accepting gateways. The first observation is
    /// [`Observed::Listening`].
    pub async fn start(options: ConnectorOptions) -> anyhow::Result<ConnectorHandle> {
        let listener = bind(options.listen)
            .with_context(|| format!("binding the connector emulator to {}", options.listen))?;
        let addr = listener.local_addr()?;
        let mut replay = options.replay.clone();
        if replay.is_empty() {
            if let Some(path) = &options.replay_file {
                replay = ReplayBuffer::load(path)
                    .with_context(|| format!("reading the replay file {}", path.display()))?;
            }
        }
        replay.reset_delivery_marks();
        let (events, first) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                secrets: options.secrets.clone(),
                conns: BTreeMap::new(),
                next_conn: 0,
                replay,
                outbound: Outbound::default(),
                descriptors: Descriptors::default(),
                idle: IdleMode::default(),
                handshake_drop: options
                    .drop_after_handshake
                    .clone()
                    .and_then(HandshakeDrop::active),
                reject_next: None,
                stopped: None,
            }),
            events,
            path: options.path.clone(),
            clock_skew_s: options.clock_skew_s,
            replay_file: options.replay_file.clone(),
            addr,
        });
        shared.emit(Observed::Listening { addr });
        let (stop_tx, stop_rx) = watch::channel(None);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop_rx));
        Ok(ConnectorHandle {
            shared,
            stop: stop_tx,
            task: tokio::sync::Mutex::new(Some(task)),
            events: tokio::sync::Mutex::new(first),
            options,
        })
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<StopMode>>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tasks.spawn(conn::serve(Arc::clone(&shared), tcp, peer, stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(target: "connector", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // A stop request, or the handle was dropped.
            _ = stop.changed() => break,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// State shared by the handle, the accept loop and the connection tasks.
pub(crate) struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<Observed>,
    path: String,
    clock_skew_s: u64,
    replay_file: Option<PathBuf>,
    addr: SocketAddr,
}

pub(crate) struct State {
    secrets: Vec<String>,
    conns: BTreeMap<u64, ConnEntry>,
    next_conn: u64,
    replay: ReplayBuffer,
    outbound: Outbound,
    descriptors: Descriptors,
    idle: IdleMode,
    handshake_drop: Option<HandshakeDrop>,
    reject_next: Option<RejectCmd>,
    stopped: Option<Stopped>,
}

pub(crate) struct ConnEntry {
    peer: SocketAddr,
    gateway_id: Option<String>,
    ctl: mpsc::UnboundedSender<Ctl>,
    hellos: Vec<(String, String)>,
    idle: bool,
    replayed: bool,
    frames_in: u64,
    frames_out: u64,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the
/// state stays consistent: every critical section is a few plain assignments).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Publishes an observation (and logs it: connection lifecycle at info level,
    /// frames at debug level).
    pub(crate) fn emit(&self, ev: Observed) {
        match &ev {
            Observed::Seen { .. } | Observed::Sent { .. } | Observed::Queued { .. } => {
                tracing::debug!(target: "connector", "{}", ev.to_json())
            }
            _ => tracing::info!(target: "connector", "{}", ev.to_json()),
        }
        // No subscriber is fine: the handle keeps one receiver while it lives.
        let _ = self.events.send(ev);
    }

    /// Saves the replay buffer when a replay file is configured.
    pub(crate) fn persist(&self, replay: &ReplayBuffer) {
        if let Some(path) = &self.replay_file {
            if let Err(e) = replay.save(path) {
                tracing::warn!(target: "connector", "saving {}: {e:#}", path.display());
            }
        }
    }

    fn status(&self) -> Status {
        self.status_of(&self.lock_state())
    }

    fn status_of(&self, st: &State) -> Status {
        Status {
            listening: self.addr,
            connections: st
                .conns
                .iter()
                .map(|(&conn, e)| ConnectionInfo {
                    conn,
                    peer: e.peer,
                    gateway_id: e.gateway_id.clone(),
                    hellos: e.hellos.clone(),
                    idle: e.idle,
                    frames_in: e.frames_in,
                    frames_out: e.frames_out,
                })
                .collect(),
            pending: st.replay.pending_ids(),
            rules: st.outbound.rule_count(),
        }
    }

    /// Carries out one command (never blocks: writes go through connection channels).
    fn execute(&self, cmd: Command) -> Result<Outcome, CommandError> {
        let mut st = self.lock_state();
        if st.stopped.is_some() && cmd != Command::Status {
            return Err(CommandError::Stopped);
        }
        match cmd {
            Command::Inbound(c) => {
                let platform = c
                    .event
                    .get("source")
                    .and_then(|s| s.get("platform"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let buffered = c.buffered || c.buffer_id.is_some();
                deliver(
                    self,
                    &mut st,
                    Kind::Inbound,
                    c.event,
                    buffered.then_some(c.buffer_id),
                    c.conn,
                    platform.as_deref(),
                )
            }
            Command::Passthrough(c) => {
                let platform = c.platform.clone().unwrap_or_else(|| "discord".into());
                let target = pick_live(&st, c.conn, Some(&platform));
                let bot_id = c.bot_id.clone().unwrap_or_else(|| {
                    target
                        .as_ref()
                        .ok()
                        .and_then(|t| st.conns.get(t))
                        .and_then(|e| e.hellos.iter().find(|(p, _)| *p == platform))
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default()
                });
                let forward = build_forward(&c, &platform, &bot_id);
                let buffered = c.buffered || c.buffer_id.is_some();
                deliver(
                    self,
                    &mut st,
                    Kind::Passthrough,
                    forward,
                    buffered.then_some(c.buffer_id),
                    c.conn,
                    Some(&platform),
                )
            }
            Command::Interrupt(c) => {
                let conn = pick_live(&st, c.conn, None)?;
                let frame = json!({
                    "type": "interrupt_inbound", "session_key": c.session_key, "chat_id": c.chat_id,
                });
                let report = Sent::InterruptInbound {
                    session_key: c.session_key,
                    chat_id: c.chat_id,
                };
                send_to(&st, conn, Ctl::Frame { frame, report })?;
                Ok(sent(vec![conn], None))
            }
            Command::Close(c) => {
                let conns = pick_any(&st, c.conn, c.all)?;
                for &conn in &conns {
                    let ctl = Ctl::Close {
                        code: c.code,
                        reason: c.reason.clone(),
                    };
                    send_to(&st, conn, ctl)?;
                }
                Ok(sent(conns, None))
            }
            Command::Drop(t) => {
                let conns = pick_any(&st, t.conn, t.all)?;
                for &conn in &conns {
                    send_to(&st, conn, Ctl::Drop)?;
                }
                Ok(sent(conns, None))
            }
            Command::Stall(c) => {
                let conns = pick_any(&st, c.conn, c.all)?;
                for &conn in &conns {
                    send_to(&st, conn, Ctl::Stall { ms: c.ms })?;
                }
                Ok(sent(conns, None))
            }
            Command::Raw(c) => {
                let conns = pick_any(&st, c.conn, false)?;
                let mut text = c.line;
                if c.newline {
                    text.push('\n');
                }
                for &conn in &conns {
                    let ctl = Ctl::Raw {
                        text: text.clone(),
                        binary: c.binary,
                    };
                    send_to(&st, conn, ctl)?;
                }
                Ok(sent(conns, None))
            }
            Command::Replay(t) => {
                let conn = pick_live(&st, t.conn, None)?;
                let due = st.replay.take_due(conn, true);
                for entry in due {
                    let buffer_id = Some(entry.buffer_id.clone());
                    let report = match entry.kind {
                        Kind::Inbound => Sent::Inbound {
                            buffer_id,
                            replay: true,
                        },
                        Kind::Passthrough => Sent::Passthrough {
                            buffer_id,
                            replay: true,
                        },
                    };
                    let frame = entry.frame();
                    send_to(&st, conn, Ctl::Frame { frame, report })?;
                }
                Ok(sent(vec![conn], None))
            }
            Command::Forget(c) => {
                st.replay.forget(c.buffer_id.as_deref());
                self.persist(&st.replay);
                Ok(Outcome::Done)
            }
            Command::OutboundRule(rule) => {
                st.outbound.add_rule(rule);
                Ok(Outcome::Done)
            }
            Command::ClearRules => {
                st.outbound.clear_rules();
                Ok(Outcome::Done)
            }
            Command::IdleMode(mode) => {
                st.idle = mode;
                Ok(Outcome::Done)
            }
            Command::DropAfterHandshake(mode) => {
                st.handshake_drop = mode.active();
                Ok(Outcome::Done)
            }
            Command::Descriptor(c) => {
                let mode = match (c.silent, c.descriptor) {
                    (true, _) => DescriptorMode::Silent,
                    (false, Some(d)) => DescriptorMode::Custom(d),
                    (false, None) => DescriptorMode::Builtin,
                };
                st.descriptors.set(&c.platform, mode);
                Ok(Outcome::Done)
            }
            Command::RejectNext(c) => {
                st.reject_next = (c.count > 0).then_some(c);
                Ok(Outcome::Done)
            }
            Command::Secrets(c) => {
                st.secrets = c.secrets;
                Ok(Outcome::Done)
            }
            Command::Status => Ok(Outcome::Status(self.status_of(&st))),
        }
    }
}

fn sent(conns: Vec<u64>, buffer_id: Option<String>) -> Outcome {
    Outcome::Sent { conns, buffer_id }
}

/// Sends an inbound or passthrough item, keeping buffered ones for replay.
/// `buffer_id`: `None` = live only; `Some(None)` = buffered with a fresh id.
fn deliver(
    shared: &Shared,
    st: &mut State,
    kind: Kind,
    payload: Value,
    buffer_id: Option<Option<String>>,
    conn: Option<u64>,
    platform: Option<&str>,
) -> Result<Outcome, CommandError> {
    let target = match pick_live(st, conn, platform) {
        Ok(c) => Some(c),
        // A buffered item may wait for the next connection; a live-only one cannot.
        Err(CommandError::NoConnection) if buffer_id.is_some() => None,
        Err(e) => return Err(e),
    };
    let Some(wanted) = buffer_id else {
        let conn = target.ok_or(CommandError::NoConnection)?;
        let frame = replay::frame(kind, &payload, None);
        let report = report_for(kind, None, false);
        send_to(st, conn, Ctl::Frame { frame, report })?;
        return Ok(sent(vec![conn], None));
    };
    let id = match wanted {
        Some(id) => id,
        None => st.replay.fresh_id(),
    };
    // A replay goes back to the gateway the item was meant for.
    let gateway = target
        .and_then(|c| st.conns.get(&c))
        .and_then(|e| e.gateway_id.clone());
    st.replay
        .push_for(id.clone(), kind, payload.clone(), gateway)?;
    shared.persist(&st.replay);
    if let Some(conn) = target {
        let frame = replay::frame(kind, &payload, Some(&id));
        let report = report_for(kind, Some(id.clone()), false);
        if send_to(st, conn, Ctl::Frame { frame, report }).is_ok() {
            st.replay.mark_sent(&id, conn);
            return Ok(sent(vec![conn], Some(id)));
        }
    }
    shared.emit(Observed::Queued {
        buffer_id: id.clone(),
    });
    Ok(Outcome::Queued { buffer_id: id })
}

fn report_for(kind: Kind, buffer_id: Option<String>, replay: bool) -> Sent {
    match kind {
        Kind::Inbound => Sent::Inbound { buffer_id, replay },
        Kind::Passthrough => Sent::Passthrough { buffer_id, replay },
    }
}

fn build_forward(c: &script::PassthroughCmd, platform: &str, bot_id: &str) -> Value {
    let body_b64 = if let Some(raw) = &c.body_b64 {
        raw.clone()
    } else if let Some(body) = &c.body {
        STANDARD.encode(body.as_bytes())
    } else if let Some(interaction) = &c.interaction {
        // The connector answers Discord at its edge and keeps the token in its vault.
        let mut interaction = interaction.clone();
        if let Some(obj) = interaction.as_object_mut() {
            obj.remove("token");
        }
        STANDARD.encode(interaction.to_string().as_bytes())
    } else {
        String::new()
    };
    let mut forward = Map::new();
    forward.insert("platform".into(), platform.into());
    forward.insert("botId".into(), bot_id.into());
    forward.insert(
        "method".into(),
        c.method.clone().unwrap_or_else(|| "POST".into()).into(),
    );
    forward.insert(
        "path".into(),
        c.path
            .clone()
            .unwrap_or_else(|| "/interactions".into())
            .into(),
    );
    forward.insert(
        "headers".into(),
        c.headers
            .clone()
            .unwrap_or_else(|| json!([["content-type", "application/json"]])),
    );
    forward.insert("bodyB64".into(), body_b64.into());
    if let Some(profile) = &c.profile {
        forward.insert("profile".into(), profile.clone());
    }
    Value::Object(forward)
}

/// The connection a delivery goes to: `conn` if given, else the newest connection
/// that has said hello and is not idle, preferring one that fronts `platform`.
fn pick_live(st: &State, conn: Option<u64>, platform: Option<&str>) -> Result<u64, CommandError> {
    if let Some(c) = conn {
        return if st.conns.contains_key(&c) {
            Ok(c)
        } else {
            Err(CommandError::UnknownConnection(c))
        };
    }
    let live = || {
        st.conns
            .iter()
            .rev()
            .filter(|(_, e)| !e.hellos.is_empty() && !e.idle)
    };
    if let Some(p) = platform {
        if let Some((&id, _)) = live().find(|(_, e)| e.hellos.iter().any(|(hp, _)| hp == p)) {
            return Ok(id);
        }
    }
    live()
        .map(|(&id, _)| id)
        .next()
        .ok_or(CommandError::NoConnection)
}

/// Connections for `close`/`drop`/`raw`: `conn`, all of them, or the newest one
/// (hello or not, idle or not).
fn pick_any(st: &State, conn: Option<u64>, all: bool) -> Result<Vec<u64>, CommandError> {
    if let Some(c) = conn {
        return if st.conns.contains_key(&c) {
            Ok(vec![c])
        } else {
            Err(CommandError::UnknownConnection(c))
        };
    }
    let ids: Vec<u64> = if all {
        st.conns.keys().copied().collect()
    } else {
        st.conns.keys().next_back().copied().into_iter().collect()
    };
    if ids.is_empty() {
        return Err(CommandError::NoConnection);
    }
    Ok(ids)
}

fn send_to(st: &State, conn: u64, ctl: Ctl) -> Result<(), CommandError> {
    let entry = st
        .conns
        .get(&conn)
        .ok_or(CommandError::UnknownConnection(conn))?;
    entry
        .ctl
        .send(ctl)
        .map_err(|_| CommandError::UnknownConnection(conn))
}

/// What survives a stop: the address, the settings and the unacknowledged
/// buffered deliveries, ready to start again on the same port.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// Where the emulator listened.
    pub addr: SocketAddr,
    /// Pending buffered deliveries.
    pub replay: ReplayBuffer,
    /// The start-up options, with `listen` = `addr`, the secrets as last set and
    /// `replay` = the pending buffer (scripted rules and overrides are not kept).
    pub options: ConnectorOptions,
}

impl Stopped {
    /// Starts a new emulator on the same address with the pending buffer, like a
    /// restarted connector process with a durable queue.
    pub async fn start_again(self) -> anyhow::Result<ConnectorHandle> {
        Connector::start(self.options).await
    }
}

/// A running emulator. Dropping it stops the emulator abruptly.
pub struct ConnectorHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<Option<StopMode>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    events: tokio::sync::Mutex<broadcast::Receiver<Observed>>,
    options: ConnectorOptions,
}

impl ConnectorHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The URL a gateway should dial: `ws://<addr><path>`.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.shared.addr, self.shared.path)
    }

    /// Carries out a scripted command.
    pub fn inject(&self, cmd: Command) -> Result<Outcome, CommandError> {
        self.shared.execute(cmd)
    }

    /// The live connections, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared.status().connections
    }

    /// Connections, pending buffer ids and rule count.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Buffer ids still waiting for `inbound_ack`, oldest first.
    pub fn pending(&self) -> Vec<String> {
        self.shared.lock_state().replay.pending_ids()
    }

    /// An independent stream of observations from now on (for extra consumers).
    pub fn subscribe(&self) -> broadcast::Receiver<Observed> {
        self.shared.events.subscribe()
    }

    /// The next observation from the handle's own stream, which holds everything
    /// since [`Connector::start`] (up to a bounded backlog). Cancel-safe.
    pub async fn recv(&self) -> Observed {
        let mut rx = self.events.lock().await;
        loop {
            match rx.recv().await {
                Ok(ev) => return ev,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(target: "connector", "{n} observations were not read in time");
                }
                // The handle owns the sender through `shared`: this cannot happen,
                // but waiting forever is the honest answer if it did.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }

    /// The next observation if one is already waiting (never blocks).
    pub fn try_recv(&self) -> Option<Observed> {
        let mut rx = self.events.try_lock().ok()?;
        loop {
            match rx.try_recv() {
                Ok(ev) => return Some(ev),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next observation, or `None` after `timeout`.
    pub async fn next_event(&self, timeout: Duration) -> Option<Observed> {
        tokio::time::timeout(timeout, self.recv()).await.ok()
    }

    /// Skips observations until one satisfies `pred`; `None` after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Observed) -> bool,
    ) -> Option<Observed> {
        tokio::time::timeout(timeout, async {
            loop {
                let ev = self.recv().await;
                if pred(&ev) {
                    return ev;
                }
            }
        })
        .await
        .ok()
    }

    /// Stops accepting, ends every connection (close 1001 when `abrupt` is false,
    /// a TCP drop otherwise) and returns what a restart needs. Later commands fail
    /// with [`CommandError::Stopped`]; a second call returns the same snapshot.
    pub async fn stop(&self, abrupt: bool) -> Stopped {
        let mode = if abrupt {
            StopMode::Abrupt
        } else {
            StopMode::Graceful
        };
        let mut task = self.task.lock().await;
        if let Some(t) = task.take() {
            let _ = self.stop.send(Some(mode));
            let _ = t.await;
        }
        let mut st = self.shared.lock_state();
        if let Some(s) = &st.stopped {
            return s.clone();
        }
        let mut options = self.options.clone();
        options.listen = self.shared.addr;
        options.secrets = st.secrets.clone();
        options.replay = st.replay.clone();
        let stopped = Stopped {
            addr: self.shared.addr,
            replay: st.replay.clone(),
            options,
        };
        st.stopped = Some(stopped.clone());
        stopped
    }

    /// Graceful stop (close 1001 to every gateway).
    pub async fn shutdown(self) -> Stopped {
        self.stop(false).await
    }

    /// Abrupt stop (TCP drop, no close frames), like a crashed connector.
    pub async fn kill(self) -> Stopped {
        self.stop(true).await
    }

    /// Stops, stays down for `down`, and starts again on the same port with the
    /// pending buffer, so a gateway reconnects and gets the replay.
    pub async fn restart(self, abrupt: bool, down: Duration) -> anyhow::Result<ConnectorHandle> {
        let stopped = self.stop(abrupt).await;
        drop(self);
        tokio::time::sleep(down).await;
        stopped.start_again().await
    }
}

impl Drop for ConnectorHandle {
    fn drop(&mut self) {
        // Dropping the watch sender also signals every task; send first so the
        // mode is explicit.
        let _ = self.stop.send(Some(StopMode::Abrupt));
    }
}
