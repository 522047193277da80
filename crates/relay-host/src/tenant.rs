//! One tenant: a tokio task that owns the tenant's sandbox and socket and performs
//! the effects the component returns. It decides nothing about the relay protocol;
//! it dials, reads, writes, keeps time and reports what happened.
//!
//! Host-side bookkeeping is limited to what a dead guest cannot do: when the
//! instance traps, the outbound commands it had not answered yet are answered with
//! `relay transport connection lost`, and a waiting `going_idle` with `idle: false`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::event;
use crate::instance::{BuildError, Instance};
use crate::link::{self, DialError, Socket};
use crate::sandbox::{Effect, LogLevel, LogRecord, Runtime, SandboxError};
use crate::secret::Secret;
use crate::spec::TenantSpec;
use crate::timers::{Clock, Timers};

/// D9's result for a request whose connection (here: whose guest) went away.
pub const CONNECTION_LOST: &str = "relay transport connection lost";
/// D9's result for a request to a tenant that no longer runs.
pub const TRANSPORT_CLOSED: &str = "relay transport closed";

/// A write that takes longer than this means the socket is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing socket may take to finish the close handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Large messages reach the guest in pieces of at most this size, so one message
/// never needs a guest allocation near its memory cap.
const CHUNK_BYTES: usize = 256 << 10;

/// How many guest failures a tenant survives: more than `max_restarts` within
/// `window` stops it (a crash loop would otherwise spin forever).
#[derive(Debug, Clone, Copy)]
pub struct RestartBudget {
    /// Guest failures survived within `window`, each followed by a rebuild; one
    /// more stops the tenant.
    pub max_restarts: u32,
    /// How far back failures are counted (a sliding window).
    pub window: Duration,
}

impl Default for RestartBudget {
    fn default() -> Self {
        RestartBudget {
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// A tenant's counters, as the `status` event and the metrics report them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantStatus {
    /// The tenant id.
    pub tenant: String,
    /// The last `state` announced to the application.
    pub state: String,
    /// Unix time (ms) the current socket opened; null while there is none.
    pub connected_since_ms: Option<u64>,
    /// Frames decoded from the connector, across instance rebuilds.
    pub frames_in: u64,
    /// Frames written to the connector, across instance rebuilds.
    pub frames_out: u64,
    /// Outbound requests waiting for their result.
    pub pending_outbound: u64,
    /// How often the guest instance was rebuilt after a failure.
    pub restarts: u64,
    /// Each fronted platform's descriptor on the current connection (D15):
    /// the `ready` one and every later `descriptor` event's.
    pub descriptors: BTreeMap<String, Value>,
}

/// The status of one tenant, shared between its task and readers.
pub type SharedStatus = Arc<Mutex<TenantStatus>>;

/// What the host asks of a tenant task.
#[derive(Debug)]
pub enum TenantCommand {
    /// An APP-PROTOCOL command for the connection (without `tenant`).
    App(Map<String, Value>),
    /// Go idle (bounded), close, report `stopped` and end the task.
    Shutdown,
    /// Like `Shutdown`, reporting `stopped` with this reason (e.g. a reload
    /// removed the tenant).
    Stop(String),
}

/// Everything a tenant task shares with the host.
#[derive(Clone)]
pub struct TenantContext {
    pub runtime: Arc<Runtime>,
    pub clock: Clock,
    pub events: mpsc::Sender<Value>,
    pub budget: RestartBudget,
    /// Longest wait for `going_idle` to be acknowledged on shutdown.
    pub shutdown_grace: Duration,
}

/// Starts the task of one tenant around an instance already built (so a bad
/// configuration fails before anything runs).
pub fn spawn(
    spec: TenantSpec,
    instance: Instance,
    ctx: TenantContext,
    status: SharedStatus,
    commands: mpsc::Receiver<TenantCommand>,
) -> JoinHandle<()> {
    let tenant = Tenant {
        spec,
        ctx,
        status,
        inst: instance,
        generation: 0,
        timers: Timers::default(),
        link: Link::Down,
        next_dial: None,
        gave_up: false,
        owed_results: HashMap::new(),
        owes_idle: false,
        announced: String::new(),
        base_frames: (0, 0),
        failures: VecDeque::new(),
        stop: None,
        stopped_reason: None,
        stop_reason: None,
    };
    tokio::spawn(tenant.run(commands))
}

type DialFuture = Pin<Box<dyn Future<Output = Result<Socket, DialError>> + Send>>;

/// Where the socket stands (the host's view; the guest keeps its own).
enum Link {
    Down,
    Dialing(DialFuture),
    Up {
        ws: Box<Socket>,
        ping_at: u64,
        pong_by: Option<u64>,
    },
    /// A close frame was sent or received; waiting for the socket to end.
    Closing {
        ws: Box<Socket>,
        code: Option<u16>,
        reason: String,
        deadline: u64,
    },
}

enum LinkEvent {
    Dialed(Result<Box<Socket>, DialError>),
    Message(Option<Result<Message, WsError>>),
}

async fn next_link_event(link: &mut Link) -> LinkEvent {
    match link {
        Link::Down => std::future::pending().await,
        Link::Dialing(dial) => LinkEvent::Dialed(dial.await.map(Box::new)),
        Link::Up { ws, .. } | Link::Closing { ws, .. } => LinkEvent::Message(ws.next().await),
    }
}

async fn sleep_until(clock: Clock, at_ms: Option<u64>) {
    match at_ms {
        Some(at) => tokio::time::sleep_until(clock.instant(at).into()).await,
        None => std::future::pending().await,
    }
}

struct Stop {
    deadline: u64,
    closing: bool,
}

struct Tenant {
    spec: TenantSpec,
    ctx: TenantContext,
    status: SharedStatus,
    inst: Instance,
    generation: u64,
    timers: Timers,
    link: Link,
    /// When to dial next (monotonic ms), while the link is down.
    next_dial: Option<u64>,
    /// The component said never to dial again.
    gave_up: bool,
    /// Application outbound ids not answered yet (id -> count).
    owed_results: HashMap<String, usize>,
    /// A `going_idle` waits for its `idle`.
    owes_idle: bool,
    announced: String,
    /// Frame counters of instances that died.
    base_frames: (u64, u64),
    /// When recent guest failures happened (restart budget).
    failures: VecDeque<Instant>,
    stop: Option<Stop>,
    stopped_reason: Option<String>,
    /// Why the host asked the tenant to stop, when not for `shutdown`.
    stop_reason: Option<String>,
}

impl Tenant {
    async fn run(mut self, mut commands: mpsc::Receiver<TenantCommand>) {
        self.next_dial = Some(self.now());
        let mut commands_open = true;
        loop {
            let wake = self.wake_at();
            let step = tokio::select! {
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(TenantCommand::App(command)) => self.on_command(command).await,
                    Some(TenantCommand::Shutdown) => self.begin_stop().await,
                    Some(TenantCommand::Stop(reason)) => {
                        self.stop_reason.get_or_insert(reason);
                        self.begin_stop().await
                    }
                    None => {
                        commands_open = false;
                        self.begin_stop().await
                    }
                },
                event = next_link_event(&mut self.link) => self.on_link_event(event).await,
                _ = sleep_until(self.ctx.clock, wake) => self.on_wake().await,
            };
            if let Err(e) = step {
                if !self.recover(e).await {
                    break;
                }
            }
            if self.stop.is_some() {
                match self.progress_stop().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        if !self.recover(e).await {
                            break;
                        }
                    }
                }
            }
        }
        // Commands still queued are answered too (APP-PROTOCOL: every outbound
        // gets its result); closing first means no new one can slip in behind,
        // and `stopped` stays the tenant's last event.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            if let TenantCommand::App(command) = command {
                let answer = event::answer_when_stopped(&self.spec.id, &command);
                self.send_event(answer).await;
            }
        }
        self.finish().await;
    }

    fn now(&self) -> u64 {
        self.ctx.clock.now_ms()
    }

    /// The earliest moment something is due (guest timer, keep-alive, dial, stop).
    fn wake_at(&self) -> Option<u64> {
        let mut at = self.timers.next_due();
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        match &self.link {
            Link::Up {
                ping_at, pong_by, ..
            } => {
                consider(Some(*ping_at));
                consider(*pong_by);
            }
            Link::Closing { deadline, .. } => consider(Some(*deadline)),
            Link::Down if self.may_dial() => consider(self.next_dial),
            _ => {}
        }
        if let Some(stop) = &self.stop {
            if !stop.closing {
                consider(Some(stop.deadline));
            }
        }
        at
    }

    fn may_dial(&self) -> bool {
        !self.gave_up && self.stop.is_none()
    }

    // ---- inputs ---------------------------------------------------------------

    async fn on_command(&mut self, mut command: Map<String, Value>) -> Result<(), SandboxError> {
        command.remove("tenant");
        let op = command.get("op").and_then(Value::as_str).unwrap_or("");
        let id = command.get("id").cloned();
        let owed_id = (op == "outbound")
            .then(|| id.as_ref().and_then(Value::as_str).map(str::to_string))
            .flatten();
        let idle_was_owed = self.owes_idle;
        if op == "going_idle" {
            self.owes_idle = true;
        }
        if let Some(id) = &owed_id {
            *self.owed_results.entry(id.clone()).or_default() += 1;
        }
        let text = Value::Object(command).to_string();
        let now = self.now();
        match self.inst.sandbox.command(self.inst.conn, now, &text)? {
            Ok(effects) => self.apply(effects).await,
            Err(e) => {
                self.owes_idle = idle_was_owed;
                if let Some(id) = &owed_id {
                    self.settle(id);
                }
                let mut error = event::error(event::kind_name(e.kind), &e.message);
                if let Some(id) = id {
                    error.insert("id".into(), id);
                }
                self.send_event(error).await;
                Ok(())
            }
        }
    }

    async fn on_link_event(&mut self, event: LinkEvent) -> Result<(), SandboxError> {
        let now = self.now();
        match event {
            LinkEvent::Dialed(Ok(ws)) => {
                self.link = Link::Up {
                    ws,
                    ping_at: now + millis(self.spec.timeouts.ping_interval),
                    pong_by: None,
                };
                self.status().connected_since_ms = Some(unix_ms());
                tracing::info!(tenant = %self.spec.id, "connected");
                let effects = self.inst.sandbox.open(self.inst.conn, now)?;
                self.apply(effects).await
            }
            LinkEvent::Dialed(Err(e)) => {
                tracing::debug!(tenant = %self.spec.id, "dial failed: {e}");
                let effects = self.guest_closed(None, &e.0)?;
                self.apply(effects).await
            }
            LinkEvent::Message(Some(Ok(message))) => self.on_message(message).await,
            LinkEvent::Message(end) => {
                let why = match end {
                    Some(Err(e)) => link::describe(&e),
                    _ => "connection dropped".to_string(),
                };
                let (code, reason) = match std::mem::replace(&mut self.link, Link::Down) {
                    Link::Closing { code, reason, .. } => (code, reason),
                    _ => {
                        tracing::info!(tenant = %self.spec.id, "socket ended: {why}");
                        (None, why)
                    }
                };
                let effects = self.guest_closed(code, &reason)?;
                self.apply(effects).await
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Result<(), SandboxError> {
        let up = matches!(self.link, Link::Up { .. });
        match message {
            Message::Text(text) if up => {
                for chunk in text_chunks(text.as_str()) {
                    let now = self.now();
                    let effects = self.inst.sandbox.receive_text(self.inst.conn, now, chunk)?;
                    self.apply(effects).await?;
                    if !matches!(self.link, Link::Up { .. }) {
                        break;
                    }
                }
            }
            Message::Binary(bytes) if up => {
                for chunk in bytes.chunks(CHUNK_BYTES) {
                    let now = self.now();
                    let effects = self
                        .inst
                        .sandbox
                        .receive_binary(self.inst.conn, now, chunk)?;
                    self.apply(effects).await?;
                    if !matches!(self.link, Link::Up { .. }) {
                        break;
                    }
                }
            }
            Message::Pong(_) => {
                if let Link::Up { pong_by, .. } = &mut self.link {
                    *pong_by = None;
                }
            }
            Message::Close(frame) => {
                // The close code is known now: the guest hears it at once, and the
                // handshake finishes in the background.
                let (peer_code, peer_reason) = match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                    None => (None, String::new()),
                };
                let (ws, code, reason) = match std::mem::replace(&mut self.link, Link::Down) {
                    Link::Up { ws, .. } => (ws, peer_code, peer_reason),
                    // The received code wins; the sent one is the fallback.
                    Link::Closing {
                        ws, code, reason, ..
                    } => match peer_code {
                        Some(_) => (ws, peer_code, peer_reason),
                        None => (ws, code, reason),
                    },
                    other => {
                        self.link = other;
                        return Ok(());
                    }
                };
                tokio::spawn(finish_close(ws));
                let effects = self.guest_closed(code, &reason)?;
                self.apply(effects).await?;
            }
            // Pings are answered by tungstenite; data on a closing socket is moot.
            _ => {}
        }
        Ok(())
    }

    async fn on_wake(&mut self) -> Result<(), SandboxError> {
        let now = self.now();
        while let Some(id) = self.timers.pop_due(now) {
            let effects = self.inst.sandbox.timer_fired(self.inst.conn, now, id)?;
            self.apply(effects).await?;
        }
        let now = self.now();
        let dial_due = self.may_dial() && self.next_dial.is_some_and(|t| t <= now);
        match &mut self.link {
            Link::Up { pong_by, .. } if pong_by.is_some_and(|t| t <= now) => {
                tracing::warn!(tenant = %self.spec.id, "no pong in time: dropping the socket");
                let effects = self.guest_closed(Some(1011), "keepalive ping timeout")?;
                self.apply(effects).await?;
            }
            Link::Up {
                ws,
                ping_at,
                pong_by,
            } if *ping_at <= now => {
                *ping_at = now + millis(self.spec.timeouts.ping_interval);
                pong_by.get_or_insert(now + millis(self.spec.timeouts.pong_timeout));
                if let Err(why) = write(ws, Message::Ping(Default::default())).await {
                    let effects = self.guest_closed(None, &why)?;
                    self.apply(effects).await?;
                }
            }
            Link::Closing { deadline, .. } if *deadline <= now => {
                let Link::Closing { code, reason, .. } =
                    std::mem::replace(&mut self.link, Link::Down)
                else {
                    unreachable!("matched Closing above")
                };
                let effects = self.guest_closed(code, &reason)?;
                self.apply(effects).await?;
            }
            Link::Down if dial_due => {
                self.start_dial().await?;
            }
            _ => {}
        }
        Ok(())
    }

    // ---- effects --------------------------------------------------------------

    /// Performs effects in order. A write failure ends the socket; the guest then
    /// hears `closed` and its effects are performed in turn.
    async fn apply(&mut self, effects: Vec<Effect>) -> Result<(), SandboxError> {
        let mut batch = effects;
        loop {
            let mut lost: Option<(u64, String)> = None;
            for effect in batch {
                match effect {
                    Effect::Send(frame) => match &mut self.link {
                        Link::Up { ws, .. } if lost.is_none() => {
                            if let Err(why) = write(ws, Message::Text(frame.line.into())).await {
                                lost = Some((frame.number, why));
                            }
                        }
                        _ => {
                            tracing::debug!(tenant = %self.spec.id, "frame dropped: no socket")
                        }
                    },
                    Effect::Emit(bytes) => match crate::sandbox::document(&bytes) {
                        Some(json) => self.emit_from_guest(json).await,
                        None => {
                            tracing::error!(tenant = %self.spec.id, "the component emitted an event that is not UTF-8");
                        }
                    },
                    Effect::SetTimer(t) => self
                        .timers
                        .set(t.id, t.at_ms)
                        .map_err(|e| SandboxError::Trap(e.to_string()))?,
                    Effect::CancelTimer(id) => self.timers.cancel(id),
                    Effect::CloseLink(reason) => self.begin_close(1000, &reason).await,
                    Effect::Reconnect(after_ms) => {
                        self.next_dial = Some(self.now().saturating_add(after_ms))
                    }
                    Effect::Redial => self.next_dial = Some(self.now()),
                    Effect::GiveUp(reason) => {
                        tracing::warn!(tenant = %self.spec.id, "never dialing again: {reason}");
                        self.gave_up = true;
                        self.next_dial = None;
                    }
                    Effect::Log(record) => log_guest(&self.spec.id, record),
                }
            }
            self.refresh_status().await?;
            match lost {
                None => return Ok(()),
                Some((number, why)) => {
                    tracing::info!(tenant = %self.spec.id, "write failed: {why}");
                    // The guest answers the requests that never left (D9 `relay
                    // send failed`), then hears that the socket is gone.
                    let now = self.now();
                    batch = self
                        .inst
                        .sandbox
                        .write_failed(self.inst.conn, now, number, &why)?;
                    batch.extend(self.guest_closed(None, &why)?);
                }
            }
        }
    }

    /// The socket is gone: forget it and tell the guest.
    fn guest_closed(
        &mut self,
        code: Option<u16>,
        reason: &str,
    ) -> Result<Vec<Effect>, SandboxError> {
        self.link = Link::Down;
        {
            let mut status = self.status();
            status.connected_since_ms = None;
            status.descriptors.clear();
        }
        let now = self.now();
        self.inst.sandbox.closed(self.inst.conn, now, code, reason)
    }

    async fn start_dial(&mut self) -> Result<(), SandboxError> {
        self.next_dial = None;
        let now_s = (unix_ms() / 1000) as i64;
        let authorization = self
            .inst
            .sandbox
            .authorization(self.inst.conn, now_s)?
            .map(Secret::new);
        self.announce("connecting", None).await;
        let url = self.inst.url.clone();
        let options = self.spec.dial_options();
        self.link = Link::Dialing(Box::pin(async move {
            link::dial(&url, authorization.as_ref(), &options).await
        }));
        Ok(())
    }

    /// Sends a close frame; the socket is reported closed when it ends (or after
    /// [`CLOSE_WAIT`]), with the peer's close code, else `code`.
    async fn begin_close(&mut self, code: u16, reason: &str) {
        let deadline = self.now() + millis(CLOSE_WAIT);
        self.link = match std::mem::replace(&mut self.link, Link::Down) {
            Link::Up { mut ws, .. } => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: clip(reason, 120).into(),
                };
                let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(Some(frame))).await;
                Link::Closing {
                    ws,
                    code: Some(code),
                    reason: reason.to_string(),
                    deadline,
                }
            }
            other => other,
        };
    }

    async fn emit_from_guest(&mut self, json: &str) {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(json) else {
            tracing::error!(tenant = %self.spec.id, "the component emitted a non-object event");
            return;
        };
        match event.get("event").and_then(Value::as_str) {
            Some("outbound_result") => {
                if let Some(id) = event.get("id").and_then(Value::as_str) {
                    let id = id.to_string();
                    self.settle(&id);
                }
            }
            Some("idle") => self.owes_idle = false,
            Some("ready" | "descriptor") => {
                if let Some(d) = event.get("descriptor") {
                    let platform = d.get("platform").and_then(Value::as_str).unwrap_or("");
                    let mut status = self.status();
                    if event.get("event").and_then(Value::as_str) == Some("ready") {
                        status.descriptors.clear();
                    }
                    status.descriptors.insert(platform.to_string(), d.clone());
                }
            }
            Some("state") => {
                if self.stop.is_some() {
                    // Backoff/redial decisions are moot while shutting down.
                    return;
                }
                if let Some(state) = event.get("state").and_then(Value::as_str) {
                    self.announced = state.to_string();
                    self.status().state = state.to_string();
                }
            }
            _ => {}
        }
        self.send_event(event).await;
    }

    fn settle(&mut self, id: &str) {
        if let Some(n) = self.owed_results.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.owed_results.remove(id);
            }
        }
    }

    /// Copies the guest's counters into the shared status, and announces the
    /// states the component reports without an event of its own (`handshaking`
    /// after open, `ready` after the descriptor, `idle` after the ack).
    async fn refresh_status(&mut self) -> Result<(), SandboxError> {
        let stats = self.inst.sandbox.stats(self.inst.conn)?;
        let stats: Value = serde_json::from_str(&stats).unwrap_or(Value::Null);
        let count = |k: &str| stats.get(k).and_then(Value::as_u64).unwrap_or(0);
        {
            let mut status = self.status();
            status.frames_in = self.base_frames.0 + count("frames_in");
            status.frames_out = self.base_frames.1 + count("frames_out");
            status.pending_outbound = count("pending_outbound");
        }
        let state = stats.get("state").and_then(Value::as_str).unwrap_or("");
        if matches!(state, "handshaking" | "ready" | "idle")
            && state != self.announced
            && self.stop.is_none()
        {
            let state = state.to_string();
            self.announce(&state, None).await;
        }
        Ok(())
    }

    // ---- shutdown and failure -------------------------------------------------

    async fn begin_stop(&mut self) -> Result<(), SandboxError> {
        if self.stop.is_some() {
            return Ok(());
        }
        let now = self.now();
        self.stop = Some(Stop {
            deadline: now + millis(self.ctx.shutdown_grace),
            closing: false,
        });
        self.next_dial = None;
        if matches!(self.link, Link::Up { .. }) {
            self.owes_idle = true;
            let command = json!({"op": "going_idle"}).to_string();
            match self.inst.sandbox.command(self.inst.conn, now, &command)? {
                Ok(effects) => self.apply(effects).await?,
                Err(e) => {
                    self.owes_idle = false;
                    tracing::error!(tenant = %self.spec.id, "going_idle refused: {}", e.message);
                }
            }
        }
        Ok(())
    }

    /// Moves a shutdown along; true once the socket is closed.
    async fn progress_stop(&mut self) -> Result<bool, SandboxError> {
        let now = self.now();
        let Some(stop) = &mut self.stop else {
            return Ok(false);
        };
        match &self.link {
            Link::Down => Ok(true),
            Link::Dialing(_) => {
                self.link = Link::Down;
                Ok(true)
            }
            Link::Closing { .. } => Ok(false),
            Link::Up { .. } => {
                if !stop.closing && self.owes_idle && now < stop.deadline {
                    return Ok(false);
                }
                stop.closing = true;
                // The component answers what still waits (`relay transport
                // closed`) and asks for the close; it never dials again.
                let effects = self.inst.sandbox.stop(self.inst.conn, now)?;
                self.apply(effects).await?;
                if matches!(self.link, Link::Up { .. }) {
                    self.begin_close(1000, "gateway shutting down").await;
                }
                Ok(false)
            }
        }
    }

    /// The guest died: answer what it owed, then rebuild it within the restart
    /// budget. False when the tenant must stop.
    async fn recover(&mut self, mut err: SandboxError) -> bool {
        loop {
            let what = trap_summary(&err.to_string());
            tracing::error!(tenant = %self.spec.id, generation = self.generation, "guest instance failed: {what}");
            tracing::debug!(tenant = %self.spec.id, "guest failure in full: {err}");
            if let Some(said) = self.inst.sandbox.guest_stderr() {
                let said = guest_words(&said, self.spec.secret.as_ref().map(|s| s.expose()));
                tracing::error!(tenant = %self.spec.id, generation = self.generation, "the guest wrote before it failed: {said}");
            }
            if let Link::Up { mut ws, .. } | Link::Closing { mut ws, .. } =
                std::mem::replace(&mut self.link, Link::Down)
            {
                let frame = CloseFrame {
                    code: CloseCode::Error,
                    reason: "gateway restarting".into(),
                };
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), ws.close(Some(frame))).await;
            }
            self.timers.clear();
            self.next_dial = None;
            self.answer_owed(CONNECTION_LOST).await;
            {
                let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                self.base_frames = (status.frames_in, status.frames_out);
                status.connected_since_ms = None;
                status.pending_outbound = 0;
                status.restarts += 1;
            }
            if self.stop.is_some() {
                return false;
            }
            let now = Instant::now();
            self.failures.push_back(now);
            while self
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.ctx.budget.window)
            {
                self.failures.pop_front();
            }
            let recent = self.failures.len() as u32;
            if recent > self.ctx.budget.max_restarts {
                self.stopped_reason = Some(format!(
                    "guest instance failed {recent} times within {} s (last: {what}); restart budget exhausted",
                    self.ctx.budget.window.as_secs()
                ));
                return false;
            }
            let delay =
                Duration::from_millis(500u64 << (recent - 1).min(5)).min(Duration::from_secs(10));
            self.generation += 1;
            match Instance::build(&self.ctx.runtime, &self.spec, self.generation) {
                Ok(instance) => self.inst = instance,
                Err(BuildError::Sandbox(e)) => {
                    err = e;
                    continue;
                }
                Err(other) => {
                    self.stopped_reason =
                        Some(format!("cannot rebuild the guest instance: {other}"));
                    return false;
                }
            }
            self.announced.clear();
            if self.gave_up {
                self.announce(
                    "revoked",
                    Some(format!(
                        "guest instance failed ({what}); rebuilt it; credentials stay revoked"
                    )),
                )
                .await;
            } else {
                self.next_dial = Some(self.now() + millis(delay));
                let mut state = event::state(
                    "backoff",
                    Some(&format!(
                        "guest instance failed ({what}); rebuilt it, dialing again"
                    )),
                );
                state.insert("retry_in_ms".into(), json!(millis(delay)));
                self.announced = "backoff".into();
                self.status().state = "backoff".into();
                self.send_event(state).await;
            }
            return true;
        }
    }

    async fn answer_owed(&mut self, error: &str) {
        let owed: Vec<(String, usize)> = self.owed_results.drain().collect();
        for (id, n) in owed {
            for _ in 0..n {
                self.send_event(event::outbound_failure(&id, error)).await;
            }
        }
        if std::mem::take(&mut self.owes_idle) {
            self.send_event(event::idle(false)).await;
        }
    }

    async fn finish(&mut self) {
        self.link = Link::Down;
        self.timers.clear();
        let reason = match self.stopped_reason.take() {
            Some(reason) => {
                tracing::error!(tenant = %self.spec.id, "tenant stopped: {reason}");
                reason
            }
            None => match self.stop_reason.take() {
                Some(reason) => {
                    tracing::info!(tenant = %self.spec.id, "tenant stopped: {reason}");
                    reason
                }
                None => "shutdown".to_string(),
            },
        };
        {
            let mut status = self.status();
            status.connected_since_ms = None;
        }
        self.announce("stopped", Some(reason)).await;
    }

    // ---- events ---------------------------------------------------------------

    async fn announce(&mut self, state: &str, reason: Option<String>) {
        self.announced = state.to_string();
        self.status().state = state.to_string();
        self.send_event(event::state(state, reason.as_deref()))
            .await;
    }

    async fn send_event(&mut self, event: Map<String, Value>) {
        let _ = self
            .ctx
            .events
            .send(event::for_tenant(&self.spec.id, event))
            .await;
    }

    fn status(&self) -> std::sync::MutexGuard<'_, TenantStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lets tungstenite send its close reply and see the peer end the connection.
async fn finish_close(mut ws: Box<Socket>) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async { while ws.next().await.is_some() {} }).await;
}

async fn write(ws: &mut Socket, message: Message) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(message)).await {
        Err(_) => Err(format!("write blocked for {} s", WRITE_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(link::describe(&e)),
        Ok(Ok(())) => Ok(()),
    }
}

fn log_guest(tenant: &str, record: LogRecord) {
    let m = record.message;
    match record.level {
        LogLevel::Trace => tracing::trace!(target: "relay_component", tenant = %tenant, "{m}"),
        LogLevel::Debug => tracing::debug!(target: "relay_component", tenant = %tenant, "{m}"),
        LogLevel::Info => tracing::info!(target: "relay_component", tenant = %tenant, "{m}"),
        LogLevel::Warn => tracing::warn!(target: "relay_component", tenant = %tenant, "{m}"),
        LogLevel::Error => tracing::error!(target: "relay_component", tenant = %tenant, "{m}"),
    }
}

/// Splits text at char boundaries into pieces of at most [`CHUNK_BYTES`].
fn text_chunks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

fn clip(text: &str, max_bytes: usize) -> String {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What a failed guest wrote to stderr (its panic message), fit for a log line:
/// at most 1 KiB, control characters escaped, and the tenant's connector secret
/// (which the guest holds to sign upgrade tokens) replaced, should a message
/// ever quote it.
fn guest_words(text: &str, secret: Option<&str>) -> String {
    let mut text = clip(text.trim_end(), 1024);
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        text = text.replace(secret, "<redacted>");
    }
    text.escape_debug().to_string()
}

/// One line saying why a guest died: wasmtime puts the cause after a backtrace,
/// at the end of the innermost frame (`... .wasm!symbol: cause`).
fn trap_summary(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let summary = match first.strip_suffix("error while executing at wasm backtrace:") {
        Some(prefix) => {
            let last = text.lines().last().unwrap_or("");
            let cause = last
                .find(".wasm!")
                .and_then(|at| last[at..].find(": ").map(|c| &last[at + c + 2..]))
                .unwrap_or("trap");
            format!("{prefix}{cause}")
        }
        None => first.to_string(),
    };
    clip(&summary, 200)
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_words_are_bounded_and_secret_free() {
        let said = "thread '<unnamed>' panicked at src/lib.rs:1:1:\nbad token s3cr3t\n";
        let line = guest_words(said, Some("s3cr3t"));
        assert_eq!(
            line,
            "thread \\'<unnamed>\\' panicked at src/lib.rs:1:1:\\nbad token <redacted>"
        );
        assert!(guest_words(&"x".repeat(5000), None).len() <= 1024);
    }

    #[test]
    fn trap_summary_names_the_cause() {
        let text = "guest trapped: error while executing at wasm backtrace:\n    0:  0x55fa4 - relay_guest.wasm!sbrk\n   10:  0x3833e - relay_guest.wasm!hermes:relay/session@0.1.0#[method]connection.receive-text: forcing trap when growing memory to 2228224 bytes";
        assert_eq!(
            trap_summary(text),
            "guest trapped: forcing trap when growing memory to 2228224 bytes"
        );
        assert_eq!(
            trap_summary("guest trapped: plain\nmore"),
            "guest trapped: plain"
        );
    }

    #[test]
    fn chunks_respect_char_boundaries() {
        let text = "é".repeat(CHUNK_BYTES);
        let chunks: Vec<&str> = text_chunks(&text).collect();
        assert_eq!(chunks.concat(), text);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(text_chunks("").count(), 0);
    }
}
