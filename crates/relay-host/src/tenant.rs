//! One tenant: a tokio task that owns the tenant's sandbox and socket and performs
//! the effects the component returns. It decides nothing about the relay protocol;
//! it dials, reads, writes, keeps time and reports what happened.
//!
//! The component (contract 0.2) decides when to dial, every link state, keepalive,
//! shutdown and the timers; the task performs its effects. Host-side bookkeeping
//! is what a dead guest cannot keep: the outbound ids it had not answered and the
//! buffer ids delivered but not acked, handed to the instance that replaces it
//! (`recover`), which answers in the guest's own shape. Only when no instance can
//! be built any more does the host answer itself (`relay transport connection
//! lost`, `idle: false`, `stopped`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event_line::{EventLine, TenantEvents};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::clock::Clock;
use crate::event;
use crate::instance::{BuildError, Instance};
use crate::link::{self, DialError, Socket};
use crate::sandbox::{
    DialRequest, Effect, Event as GuestEvent, EventKind, LinkState, LogLevel, LogRecord,
    OwedRequest, Recovery, Runtime, SandboxError,
};
use crate::secret::Secret;
use crate::spec::TenantSpec;

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
    pub events: TenantEvents,
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
        link: Link::Down,
        owed: Vec::new(),
        in_flight: BTreeSet::new(),
        owes_idle: false,
        revoked: false,
        base_frames: (0, 0),
        failures: VecDeque::new(),
        stopping: false,
        last_event: None,
        finished: false,
        stopped_reason: None,
        stop_reason: None,
    };
    tokio::spawn(tenant.run(commands))
}

type DialFuture = Pin<Box<dyn Future<Output = Result<Socket, DialError>> + Send>>;

/// Where the socket stands (the host's I/O view; the component decides).
enum Link {
    Down,
    Dialing(DialFuture),
    Up {
        ws: Box<Socket>,
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

struct Tenant {
    spec: TenantSpec,
    ctx: TenantContext,
    status: SharedStatus,
    inst: Instance,
    generation: u64,
    link: Link,
    /// Application outbound commands not answered yet, in order: (id, action).
    /// Only a replacement instance needs them (`recover`).
    owed: Vec<(String, Option<String>)>,
    /// Buffer ids delivered and neither acked nor nacked (for `recover`).
    in_flight: BTreeSet<String>,
    /// A `going_idle` waits for its `idle`.
    owes_idle: bool,
    /// The component said never to dial again.
    revoked: bool,
    /// Frame counters of instances that died.
    base_frames: (u64, u64),
    /// When recent guest failures happened (restart budget).
    failures: VecDeque<Instant>,
    /// `shutdown` was called on the link.
    stopping: bool,
    /// The component's `state stopped`, sent once queued commands are answered
    /// (so it stays the tenant's last event).
    last_event: Option<EventLine>,
    /// The component announced `stopped`.
    finished: bool,
    stopped_reason: Option<String>,
    /// Why the host asked the tenant to stop, when not for `shutdown`.
    stop_reason: Option<String>,
}

impl Tenant {
    async fn run(mut self, mut commands: mpsc::Receiver<TenantCommand>) {
        let mut commands_open = true;
        let now = self.now();
        let mut step = match self.inst.sandbox.start(self.inst.link, now).await {
            Ok(effects) => self.apply(effects).await,
            Err(e) => Err(e),
        };
        loop {
            if let Err(e) = step {
                if !self.recover(e).await {
                    break;
                }
            }
            if self.finished {
                break;
            }
            let wake = match self.wake_at().await {
                Ok(wake) => wake,
                Err(e) => {
                    step = Err(e);
                    continue;
                }
            };
            step = tokio::select! {
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(TenantCommand::App(command)) => self.on_command(command).await,
                    Some(TenantCommand::Shutdown) => self.begin_stop(None).await,
                    Some(TenantCommand::Stop(reason)) => {
                        self.stop_reason.get_or_insert(reason.clone());
                        self.begin_stop(Some(reason)).await
                    }
                    None => {
                        commands_open = false;
                        self.begin_stop(None).await
                    }
                },
                event = next_link_event(&mut self.link) => self.on_link_event(event).await,
                _ = sleep_until(self.ctx.clock, wake) => self.on_wake().await,
            };
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

    /// The earliest moment something is due: the component's timer, or the end
    /// of a close handshake's wait.
    async fn wake_at(&mut self) -> Result<Option<u64>, SandboxError> {
        let mut at = self.inst.sandbox.poll_timeout(self.inst.link).await?;
        if let Link::Closing { deadline, .. } = &self.link {
            at = Some(at.map_or(*deadline, |a| a.min(*deadline)));
        }
        Ok(at)
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
        if matches!(op, "ack" | "nack") {
            if let Some(b) = command.get("buffer_id").and_then(Value::as_str) {
                self.in_flight.remove(b);
            }
        }
        if let Some(id) = &owed_id {
            let action = command.get("action").map(Value::to_string);
            self.owed.push((id.clone(), action));
        }
        let text = Value::Object(command).to_string();
        let now = self.now();
        match self
            .inst
            .sandbox
            .command(self.inst.link, now, &text)
            .await?
        {
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
                self.link = Link::Up { ws };
                self.status().connected_since_ms = Some(unix_ms());
                tracing::info!(tenant = %self.spec.id, "connected");
                let effects = self.inst.sandbox.open(self.inst.link, now).await?;
                self.apply(effects).await
            }
            LinkEvent::Dialed(Err(e)) => {
                tracing::debug!(tenant = %self.spec.id, "dial failed: {e}");
                let effects = self.guest_closed(None, &e.0).await?;
                self.apply(effects).await
            }
            LinkEvent::Message(Some(Ok(message))) => self.on_message(message).await,
            LinkEvent::Message(end) => {
                let too_big = matches!(end, Some(Err(WsError::Capacity(_))));
                let why = match end {
                    Some(Err(e)) => link::describe(&e),
                    _ => "connection dropped".to_string(),
                };
                let (code, reason) = match std::mem::replace(&mut self.link, Link::Down) {
                    Link::Closing { code, reason, .. } => (code, reason),
                    // A message over the limit: the socket is closed with 1009
                    // (RFC 6455 "message too big"), as the Python and Node
                    // WebSocket libraries do (the parity suite checks it).
                    Link::Up { mut ws } if too_big => {
                        tracing::info!(tenant = %self.spec.id, "socket ended: {why}");
                        let frame = CloseFrame {
                            code: CloseCode::Size,
                            reason: "message too big".into(),
                        };
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(Some(frame))).await;
                        tokio::spawn(finish_close(ws));
                        (Some(1009), why)
                    }
                    _ => {
                        tracing::info!(tenant = %self.spec.id, "socket ended: {why}");
                        (None, why)
                    }
                };
                let effects = self.guest_closed(code, &reason).await?;
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
                    let effects = self
                        .inst
                        .sandbox
                        .receive_text(self.inst.link, now, chunk)
                        .await?;
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
                        .receive_binary(self.inst.link, now, chunk)
                        .await?;
                    self.apply(effects).await?;
                    if !matches!(self.link, Link::Up { .. }) {
                        break;
                    }
                }
            }
            Message::Pong(_) if up => {
                let now = self.now();
                let effects = self.inst.sandbox.pong(self.inst.link, now).await?;
                self.apply(effects).await?;
            }
            Message::Close(frame) => {
                // The close code is known now: the guest hears it at once, and the
                // handshake finishes in the background.
                let (peer_code, peer_reason) = match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                    None => (None, String::new()),
                };
                let (ws, code, reason) = match std::mem::replace(&mut self.link, Link::Down) {
                    Link::Up { ws } => (ws, peer_code, peer_reason),
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
                let effects = self.guest_closed(code, &reason).await?;
                self.apply(effects).await?;
            }
            // Pings are answered by tungstenite; data on a closing socket is moot.
            _ => {}
        }
        Ok(())
    }

    async fn on_wake(&mut self) -> Result<(), SandboxError> {
        let now = self.now();
        if matches!(&self.link, Link::Closing { deadline, .. } if *deadline <= now) {
            let Link::Closing { code, reason, .. } = std::mem::replace(&mut self.link, Link::Down)
            else {
                unreachable!("matched Closing above")
            };
            let effects = self.guest_closed(code, &reason).await?;
            self.apply(effects).await?;
        }
        let now = self.now();
        let effects = self
            .inst
            .sandbox
            .handle_timeout(self.inst.link, now)
            .await?;
        self.apply(effects).await
    }

    // ---- effects --------------------------------------------------------------

    /// Performs effects in order. A write failure ends the socket; the guest then
    /// hears `closed` and its effects are performed in turn.
    async fn apply(&mut self, effects: Vec<Effect>) -> Result<(), SandboxError> {
        let mut batch = effects;
        loop {
            let mut lost: Option<(Option<u64>, String)> = None;
            for effect in batch {
                match effect {
                    Effect::Send(frame) => match &mut self.link {
                        Link::Up { ws } if lost.is_none() => {
                            if let Err(why) = write(ws, Message::Text(frame.line.into())).await {
                                lost = Some((Some(frame.number), why));
                            }
                        }
                        _ => {
                            tracing::debug!(tenant = %self.spec.id, "frame dropped: no socket")
                        }
                    },
                    Effect::SendPing => {
                        if let Link::Up { ws } = &mut self.link {
                            if lost.is_none() {
                                if let Err(why) = write(ws, Message::Ping(Default::default())).await
                                {
                                    lost = Some((None, why));
                                }
                            }
                        }
                    }
                    Effect::Emit(event) => self.on_event(event).await,
                    Effect::CloseLink(close) => self.begin_close(close.code, &close.reason).await,
                    Effect::Dial(dial) => self.start_dial(dial),
                    Effect::Log(record) => log_guest(&self.spec.id, record),
                }
            }
            self.refresh_counters().await?;
            match lost {
                None => return Ok(()),
                Some((number, why)) => {
                    tracing::info!(tenant = %self.spec.id, "write failed: {why}");
                    // The guest answers the requests that never left (D9 `relay
                    // send failed`), then hears that the socket is gone.
                    self.link = Link::Down;
                    let now = self.now();
                    batch = match number {
                        Some(number) => {
                            self.inst
                                .sandbox
                                .write_failed(self.inst.link, now, number, &why)
                                .await?
                        }
                        None => Vec::new(),
                    };
                    batch.extend(self.guest_closed(None, &why).await?);
                }
            }
        }
    }

    /// The socket is gone: forget it and tell the guest.
    async fn guest_closed(
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
        self.inst
            .sandbox
            .closed(self.inst.link, now, code, reason)
            .await
    }

    fn start_dial(&mut self, dial: DialRequest) {
        if !matches!(self.link, Link::Down) {
            tracing::warn!(tenant = %self.spec.id, "the component asked for a dial while a socket is up: ignored");
            return;
        }
        let authorization = dial.authorization.map(Secret::new);
        // The URL was checked when the instance was built (`settings().dial_url`);
        // a bad one fails the dial, which the component hears as `closed`.
        let url = dial.url;
        let options = self
            .spec
            .dial_options(self.inst.settings.max_message_bytes as usize);
        self.link = Link::Dialing(Box::pin(async move {
            link::dial(&url, authorization.as_ref(), &options).await
        }));
    }

    /// Sends a close frame; the socket is reported closed when it ends (or after
    /// the component's `close-wait-ms`), with the peer's close code, else `code`.
    async fn begin_close(&mut self, code: u16, reason: &str) {
        let deadline = self.now() + self.inst.settings.close_wait_ms;
        self.link = match std::mem::replace(&mut self.link, Link::Down) {
            Link::Up { mut ws } => {
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

    /// An event from the component: its typed facts update the host's books,
    /// its line goes to the application.
    async fn on_event(&mut self, event: GuestEvent) {
        match event.kind {
            EventKind::OutboundResult => {
                if let Some(id) = &event.id {
                    self.settle(id);
                }
            }
            EventKind::Idle => self.owes_idle = false,
            EventKind::Message => {
                if let Some(b) = &event.buffer_id {
                    self.in_flight.insert(b.clone());
                }
            }
            _ => {}
        }
        let line = match EventLine::from_guest(event.line, &self.spec.id) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(tenant = %self.spec.id, "the component's event was dropped: {e}");
                return;
            }
        };
        // Only the rare events are parsed (for `status`); messages and results
        // go out as the component rendered them.
        match event.kind {
            EventKind::Ready | EventKind::Descriptor => {
                if let Some(d) = line.value().get("descriptor") {
                    let platform = d.get("platform").and_then(Value::as_str).unwrap_or("");
                    let mut status = self.status();
                    if event.kind == EventKind::Ready {
                        status.descriptors.clear();
                    }
                    status.descriptors.insert(platform.to_string(), d.clone());
                }
            }
            EventKind::State => {
                if let Some(state) = line.value().get("state").and_then(Value::as_str) {
                    self.status().state = state.to_string();
                }
                match event.state {
                    Some(LinkState::Revoked) => self.revoked = true,
                    Some(LinkState::Stopped) => {
                        self.finished = true;
                        if matches!(self.link, Link::Dialing(_)) {
                            self.link = Link::Down;
                        }
                        self.last_event = Some(line);
                        return;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.ctx.events.send(line).await;
    }

    fn settle(&mut self, id: &str) {
        if let Some(i) = self.owed.iter().position(|(owed, _)| owed == id) {
            self.owed.remove(i);
        }
    }

    /// Copies the guest's counters into the shared status.
    async fn refresh_counters(&mut self) -> Result<(), SandboxError> {
        let stats = self.inst.sandbox.stats(self.inst.link).await?;
        let mut status = self.status();
        status.frames_in = self.base_frames.0 + stats.frames_in;
        status.frames_out = self.base_frames.1 + stats.frames_out;
        status.pending_outbound = u64::from(stats.pending_outbound);
        Ok(())
    }

    // ---- shutdown and failure -------------------------------------------------

    async fn begin_stop(&mut self, reason: Option<String>) -> Result<(), SandboxError> {
        if self.stopping {
            return Ok(());
        }
        self.stopping = true;
        let now = self.now();
        let grace = millis(self.ctx.shutdown_grace);
        let effects = self
            .inst
            .sandbox
            .shutdown(self.inst.link, now, grace, reason.as_deref())
            .await?;
        self.apply(effects).await
    }

    /// The guest died: rebuild it within the restart budget and hand the new
    /// instance what the old one owed. False when the tenant must stop.
    async fn recover(&mut self, mut err: SandboxError) -> bool {
        loop {
            let what = trap_summary(&err.to_string());
            tracing::error!(tenant = %self.spec.id, generation = self.generation, "guest instance failed: {what}");
            tracing::debug!(tenant = %self.spec.id, "guest failure in full: {err}");
            if let Some(said) = self.inst.sandbox.guest_stderr() {
                let said = guest_words(&said, self.spec.secret.as_ref().map(|s| s.expose()));
                tracing::error!(tenant = %self.spec.id, generation = self.generation, "the guest wrote before it failed: {said}");
            }
            if let Link::Up { mut ws } | Link::Closing { mut ws, .. } =
                std::mem::replace(&mut self.link, Link::Down)
            {
                let frame = CloseFrame {
                    code: CloseCode::Error,
                    reason: "gateway restarting".into(),
                };
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), ws.close(Some(frame))).await;
            }
            self.link = Link::Down;
            {
                let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                self.base_frames = (status.frames_in, status.frames_out);
                status.connected_since_ms = None;
                status.pending_outbound = 0;
                status.restarts += 1;
            }
            if self.stopping {
                self.answer_owed(CONNECTION_LOST).await;
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
                self.answer_owed(CONNECTION_LOST).await;
                self.stopped_reason = Some(format!(
                    "guest instance failed {recent} times within {} s (last: {what}); restart budget exhausted",
                    self.ctx.budget.window.as_secs()
                ));
                return false;
            }
            let delay =
                Duration::from_millis(500u64 << (recent - 1).min(5)).min(Duration::from_secs(10));
            self.generation += 1;
            match Instance::build(
                &self.ctx.runtime,
                &self.spec,
                self.generation,
                self.ctx.clock,
            )
            .await
            {
                Ok(instance) => self.inst = instance,
                Err(BuildError::Sandbox(e)) => {
                    err = e;
                    continue;
                }
                Err(other) => {
                    self.answer_owed(CONNECTION_LOST).await;
                    self.stopped_reason =
                        Some(format!("cannot rebuild the guest instance: {other}"));
                    return false;
                }
            }
            let reason = if self.revoked {
                format!("guest instance failed ({what}); rebuilt it; credentials stay revoked")
            } else {
                format!("guest instance failed ({what}); rebuilt it, dialing again")
            };
            let recovery = Recovery {
                owed: std::mem::take(&mut self.owed)
                    .into_iter()
                    .map(|(id, action)| OwedRequest { id, action })
                    .collect(),
                in_flight: std::mem::take(&mut self.in_flight).into_iter().collect(),
                idle_owed: std::mem::take(&mut self.owes_idle),
                dial_after_ms: millis(delay),
                revoked: self.revoked,
                reason,
            };
            let now = self.now();
            let step = match self
                .inst
                .sandbox
                .recover(self.inst.link, now, &recovery)
                .await
            {
                Ok(effects) => Box::pin(self.apply(effects)).await,
                Err(e) => Err(e),
            };
            match step {
                Ok(()) => return true,
                Err(e) => {
                    // Not answered by the instance that died taking over: the
                    // host still owes them.
                    if self.owed.is_empty() {
                        self.owed = recovery
                            .owed
                            .into_iter()
                            .map(|o| (o.id, o.action))
                            .collect();
                    }
                    err = e;
                }
            }
        }
    }

    /// Answers, host-made, what no guest is left to answer (the D9 texts).
    async fn answer_owed(&mut self, error: &str) {
        let owed = std::mem::take(&mut self.owed);
        for (id, _) in owed {
            self.send_event(event::outbound_failure(&id, error)).await;
        }
        if std::mem::take(&mut self.owes_idle) {
            self.send_event(event::idle(false)).await;
        }
    }

    async fn finish(&mut self) {
        self.link = Link::Down;
        {
            let mut status = self.status();
            status.connected_since_ms = None;
            status.state = "stopped".into();
        }
        if let Some(last) = self.last_event.take() {
            if let Some(reason) = &self.stop_reason {
                tracing::info!(tenant = %self.spec.id, "tenant stopped: {reason}");
            }
            self.ctx.events.send(last).await;
            return;
        }
        // No guest is left to say it (its restart budget is spent).
        let reason = match self.stopped_reason.take() {
            Some(reason) => {
                tracing::error!(tenant = %self.spec.id, "tenant stopped: {reason}");
                reason
            }
            None => self
                .stop_reason
                .take()
                .unwrap_or_else(|| "shutdown".to_string()),
        };
        self.send_event(event::state("stopped", Some(&reason)))
            .await;
    }

    // ---- events ---------------------------------------------------------------

    async fn send_event(&mut self, event: Map<String, Value>) {
        self.ctx
            .events
            .send(EventLine::from_value(event::for_tenant(
                &self.spec.id,
                event,
            )))
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
