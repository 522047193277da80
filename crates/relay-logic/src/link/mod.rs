//! The whole link, as contract 0.2 exports it: a [`Connection`] plus everything
//! every host used to re-implement around it — when to dial and with which
//! `Authorization`, the link states of APP-PROTOCOL, keepalive, the timers,
//! shutdown, and taking over after a failed instance. A host is left with I/O:
//! the socket, TLS, the clock, one timer (`poll_timeout`) and the sandbox.
//!
//! Like the connection, a link is sans-IO and deterministic: every call takes
//! the monotonic time and returns effects to perform in order.

mod event;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::error::DecodeError;
use crate::session::{AppEvent, Caps, Connection, Effect as ConnEffect, Level, LinkState};

pub use event::{render, Event, EventKind};
pub use settings::{
    LinkConfig, Options, Settings, DEFAULT_CLOSE_WAIT_MS, DEFAULT_DEAD_LINK_CLOSE_CODE,
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PING_INTERVAL_MS, DEFAULT_PONG_TIMEOUT_MS,
    DEFAULT_SHUTDOWN_GRACE_MS,
};

/// The close code of a link ended on purpose (shutdown) or by a protocol rule.
pub const NORMAL_CLOSE: u16 = 1000;

/// What the host must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write this frame (one line ending in `\n`) as one WebSocket text message;
    /// `number` counts frames from 1 for [`Link::write_failed`].
    Send { number: u64, line: String },
    /// Send a WebSocket ping; report its pong with [`Link::pong`].
    SendPing,
    /// Deliver this event to the application.
    Emit(Event),
    /// Close the socket with this code; report [`Link::closed`] when it ended
    /// (or when `close_wait_ms` passed without the peer's answer).
    CloseLink { code: u16, reason: String },
    /// Open a WebSocket to `url` with this `Authorization` header (when any),
    /// then report [`Link::open`] or, if it failed, [`Link::closed`] with no code.
    Dial {
        url: String,
        authorization: Option<String>,
    },
    /// A log record; never contains secrets or tokens.
    Log(Level, String),
}

/// What a failed instance's host knows, handed to the instance that replaces it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// Outbound commands the old instance had not answered: (application id, the
    /// action when the host kept it), in the order they were given.
    pub owed: Vec<(String, Option<Value>)>,
    /// Buffer ids delivered to the application and neither acked nor nacked.
    pub in_flight: Vec<String>,
    /// A `going_idle` waited for its `idle`.
    pub idle_owed: bool,
    /// Dial again after this long (the host's restart backoff).
    pub dial_after_ms: u64,
    /// The old instance had been told never to dial again.
    pub revoked: bool,
    /// Why (for the `state` event's `reason`).
    pub reason: String,
}

/// Counters for `status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub state: LinkState,
    pub connected: bool,
    pub frames_in: u64,
    pub frames_out: u64,
    pub pending_outbound: u32,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    /// No socket and no dial in progress.
    Down,
    /// A `Dial` was asked for; `open` or `closed` comes next.
    Dialing,
    Up,
    /// A `CloseLink` was asked for; `closed` comes next.
    Closing,
}

#[derive(Debug, Clone)]
struct Shutdown {
    deadline: u64,
    reason: String,
    /// `stop` was called on the connection: waiting for the socket to end.
    stopped: bool,
}

/// One link to the connector: dials, re-dials, keepalive and shutdown included.
#[derive(Debug)]
pub struct Link {
    conn: Connection,
    settings: Settings,
    socket: Socket,
    /// The connection's timers: (due, id); ids grow, so ties fire in set order.
    timers: BTreeSet<(u64, u64)>,
    dial_at: Option<u64>,
    gave_up: bool,
    next_ping: Option<u64>,
    pong_by: Option<u64>,
    shutdown: Option<Shutdown>,
    /// The last state announced to the application.
    announced: Option<LinkState>,
    /// `stopped` was announced: nothing more happens.
    finished: bool,
}

/// Calls a link can take from the application, as typed values.
impl Link {
    /// Validates the config and applies every default.
    pub fn new(config: LinkConfig) -> Result<Self, DecodeError> {
        let settings = Settings::new(config)?;
        let conn = Connection::with_caps(settings.connection.clone(), settings.caps)?;
        Ok(Link {
            conn,
            settings,
            socket: Socket::Down,
            timers: BTreeSet::new(),
            dial_at: None,
            gave_up: false,
            next_ping: None,
            pong_by: None,
            shutdown: None,
            announced: None,
            finished: false,
        })
    }

    /// The settings in force (defaults applied).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The caps in force.
    pub fn caps(&self) -> Caps {
        self.conn.caps()
    }

    /// The wrapped connection (tests and tools).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Begins: the first dial (`state connecting` and a `Dial`).
    pub fn start(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.socket == Socket::Down && !self.finished && self.shutdown.is_none() {
            self.dial_at = Some(now_ms);
        }
        self.settle(now_ms, &mut out);
        out
    }

    /// The socket is up.
    pub fn open(&mut self, now_ms: u64) -> Vec<Effect> {
        let effects = self.conn.open(now_ms);
        self.socket = Socket::Up;
        self.dial_at = None;
        if self.settings.ping_interval_ms > 0 {
            self.next_ping = Some(now_ms.saturating_add(self.settings.ping_interval_ms));
        }
        self.pong_by = None;
        self.run(now_ms, effects)
    }

    /// One WebSocket text message.
    pub fn receive_text(&mut self, now_ms: u64, text: &str) -> Vec<Effect> {
        let effects = self.conn.receive_text(now_ms, text);
        self.run(now_ms, effects)
    }

    /// One WebSocket binary message.
    pub fn receive(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Effect> {
        let effects = self.conn.receive(now_ms, bytes);
        self.run(now_ms, effects)
    }

    /// The pong of a ping arrived.
    pub fn pong(&mut self, now_ms: u64) -> Vec<Effect> {
        let _ = now_ms;
        self.pong_by = None;
        Vec::new()
    }

    /// When the host must call [`Link::handle_timeout`] next (monotonic ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.finished {
            return None;
        }
        let mut at: Option<u64> = self.timers.first().map(|t| t.0);
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        if self.socket == Socket::Up {
            consider(self.next_ping);
            consider(self.pong_by);
        }
        if self.socket == Socket::Down && !self.gave_up && self.shutdown.is_none() {
            consider(self.dial_at);
        }
        if let Some(s) = &self.shutdown {
            if !s.stopped {
                consider(Some(s.deadline));
            }
        }
        at
    }

    /// Time passed: everything due by `now_ms` happens, in due order.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        // Guards against a timer that re-arms itself at once (a bug, not a hang).
        for _ in 0..10_000 {
            let Some(&(at, id)) = self.timers.first() else {
                break;
            };
            if at > now_ms {
                break;
            }
            self.timers.pop_first();
            let effects = self.conn.timer_fired(now_ms, id);
            self.absorb(now_ms, effects, &mut out);
        }
        if self.socket == Socket::Up {
            if self.pong_by.is_some_and(|t| t <= now_ms) {
                self.next_ping = None;
                self.pong_by = None;
                self.socket = Socket::Closing;
                out.push(Effect::Log(
                    Level::Warn,
                    format!(
                        "no pong within {} ms: the link is dead",
                        self.settings.pong_timeout_ms
                    ),
                ));
                out.push(Effect::CloseLink {
                    code: self.settings.dead_link_close_code,
                    reason: "keepalive ping timeout".into(),
                });
            } else if self.next_ping.is_some_and(|t| t <= now_ms) {
                self.next_ping = Some(now_ms.saturating_add(self.settings.ping_interval_ms));
                self.pong_by
                    .get_or_insert(now_ms.saturating_add(self.settings.pong_timeout_ms));
                out.push(Effect::SendPing);
            }
        }
        if let Some(s) = &self.shutdown {
            if !s.stopped && s.deadline <= now_ms {
                self.finish_shutdown(now_ms, &mut out);
            }
        }
        self.settle(now_ms, &mut out);
        out
    }

    /// The application's `outbound`; `id` is its own correlation id.
    pub fn outbound(
        &mut self,
        now_ms: u64,
        id: &str,
        action: Value,
        platform: Option<String>,
    ) -> Vec<Effect> {
        let effects = self.conn.outbound(now_ms, id, action, platform);
        self.run(now_ms, effects)
    }

    /// The application's `interrupt`.
    pub fn interrupt(
        &mut self,
        now_ms: u64,
        session_key: &str,
        reason: Option<String>,
    ) -> Vec<Effect> {
        let effects = self.conn.interrupt(now_ms, session_key, reason);
        self.run(now_ms, effects)
    }

    /// The application durably took a buffered delivery.
    pub fn ack(&mut self, now_ms: u64, buffer_id: &str) -> Vec<Effect> {
        let effects = self.conn.ack(now_ms, buffer_id);
        self.run(now_ms, effects)
    }

    /// The application could not take a delivery (D10 revised).
    pub fn nack(&mut self, now_ms: u64, buffer_id: &str) -> Vec<Effect> {
        let effects = self.conn.nack(now_ms, buffer_id);
        self.run(now_ms, effects)
    }

    /// The application's `going_idle`.
    pub fn going_idle(&mut self, now_ms: u64) -> Vec<Effect> {
        let effects = self.conn.going_idle(now_ms);
        self.run(now_ms, effects)
    }

    /// Park re-dialling for at most 60 s.
    pub fn hold_redial(&mut self, now_ms: u64) -> Vec<Effect> {
        let effects = self.conn.hold_redial(now_ms);
        self.run(now_ms, effects)
    }

    /// End a redial hold.
    pub fn release_redial(&mut self, now_ms: u64) -> Vec<Effect> {
        let effects = self.conn.release_redial(now_ms);
        self.run(now_ms, effects)
    }

    /// An APP-PROTOCOL command object (without `tenant`); errors are typed and
    /// leave the link unchanged.
    pub fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Effect>, DecodeError> {
        let effects = self.conn.command(now_ms, command)?;
        Ok(self.run(now_ms, effects))
    }

    /// Frame `number` and those after it could not be written.
    pub fn write_failed(&mut self, now_ms: u64, number: u64, reason: &str) -> Vec<Effect> {
        let effects = self.conn.write_failed(now_ms, number, reason);
        self.run(now_ms, effects)
    }

    /// Ends the link for good: a ready link sends `going_idle` and waits for its
    /// ack at most `grace_ms`; then what still waits is answered (`relay send
    /// failed: relay transport closed`), the socket is closed with 1000, and
    /// `state stopped` (with `reason`, default "shutdown") is the last event.
    pub fn shutdown(&mut self, now_ms: u64, grace_ms: u64, reason: Option<String>) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.finished || self.shutdown.is_some() {
            return out;
        }
        self.shutdown = Some(Shutdown {
            deadline: now_ms.saturating_add(grace_ms),
            reason: reason.unwrap_or_else(|| "shutdown".into()),
            stopped: false,
        });
        self.dial_at = None;
        if grace_ms > 0 && self.socket == Socket::Up && self.conn.state() == LinkState::Ready {
            let effects = self.conn.going_idle(now_ms);
            self.absorb(now_ms, effects, &mut out);
        } else {
            self.finish_shutdown(now_ms, &mut out);
        }
        self.settle(now_ms, &mut out);
        out
    }

    /// The socket ended (or the dial failed): its close code, when one came.
    pub fn closed(&mut self, now_ms: u64, code: Option<u16>, reason: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        self.next_ping = None;
        self.pong_by = None;
        // The connection judges every close, a failed dial (no `open` since the
        // last close) included; the socket is gone either way.
        self.socket = Socket::Down;
        if self.shutdown.as_ref().is_some_and(|s| !s.stopped) {
            // A close during the grace wait ends the wait: nothing is re-dialled.
            self.finish_shutdown(now_ms, &mut out);
        }
        let effects = self.conn.closed(now_ms, code, reason);
        self.absorb(now_ms, effects, &mut out);
        self.settle(now_ms, &mut out);
        out
    }

    /// A fresh instance takes over from a failed one (see [`Recovery`]).
    pub fn recover(&mut self, now_ms: u64, recovery: Recovery) -> Vec<Effect> {
        let mut out = Vec::new();
        let effects = self.conn.restore(&recovery.owed, &recovery.in_flight);
        self.absorb(now_ms, effects, &mut out);
        if recovery.idle_owed {
            self.emit(
                &mut out,
                AppEvent::from(json!({"event": "idle", "acked": false})),
            );
        }
        let state = if recovery.revoked {
            self.gave_up = true;
            json!({"event": "state", "state": "revoked", "reason": recovery.reason})
        } else {
            self.dial_at = Some(now_ms.saturating_add(recovery.dial_after_ms));
            json!({"event": "state", "state": "backoff", "retry_in_ms": recovery.dial_after_ms,
                   "reason": recovery.reason})
        };
        self.emit(&mut out, AppEvent::from(state));
        self.settle(now_ms, &mut out);
        out
    }

    /// Counters for `status`.
    pub fn stats(&self) -> Stats {
        let (frames_in, frames_out) = self.conn.frame_counts();
        Stats {
            state: self.announced.unwrap_or(LinkState::Connecting),
            connected: self.socket == Socket::Up && self.conn.state().is_writable(),
            frames_in,
            frames_out,
            pending_outbound: self.conn.pending_outbound() as u32,
            consecutive_failures: self.conn.consecutive_failures(),
        }
    }

    /// Each fronted platform's descriptor on this connection (D15).
    pub fn descriptors_json(&self) -> Value {
        self.conn.descriptors_json()
    }

    /// `stopped` was announced.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    // ---- inside ---------------------------------------------------------------

    fn run(&mut self, now_ms: u64, effects: Vec<ConnEffect>) -> Vec<Effect> {
        let mut out = Vec::with_capacity(effects.len() + 1);
        self.absorb(now_ms, effects, &mut out);
        self.settle(now_ms, &mut out);
        out
    }

    fn finish_shutdown(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(s) = &mut self.shutdown else { return };
        if s.stopped {
            return;
        }
        s.stopped = true;
        let effects = self.conn.stop(now_ms);
        self.absorb(now_ms, effects, out);
    }

    /// Turns the connection's effects into the link's.
    fn absorb(&mut self, now_ms: u64, effects: Vec<ConnEffect>, out: &mut Vec<Effect>) {
        for e in effects {
            match e {
                ConnEffect::Send { frame, line } => out.push(Effect::Send {
                    number: frame,
                    line,
                }),
                ConnEffect::Emit(event) => {
                    if self.shutdown.is_some() && is_dial_decision(&event) {
                        // Backoff and redial are moot once the link is ending.
                        continue;
                    }
                    let name = event.name().to_string();
                    self.emit(out, event);
                    let ending = self.shutdown.as_ref().is_some_and(|s| !s.stopped);
                    if ending && name == "idle" {
                        self.finish_shutdown(now_ms, out);
                    } else if !ending && matches!(name.as_str(), "ready" | "idle") {
                        // The state change right after the event that made it,
                        // wherever a message boundary falls.
                        self.announce_connection_state(out);
                    }
                }
                ConnEffect::SetTimer { id, at_ms } => {
                    self.timers.retain(|t| t.1 != id);
                    self.timers.insert((at_ms, id));
                }
                ConnEffect::CancelTimer(id) => self.timers.retain(|t| t.1 != id),
                ConnEffect::CloseLink(reason) => {
                    if self.socket == Socket::Up {
                        self.socket = Socket::Closing;
                        self.next_ping = None;
                        self.pong_by = None;
                        out.push(Effect::CloseLink {
                            code: NORMAL_CLOSE,
                            reason,
                        });
                    }
                }
                ConnEffect::Reconnect(after_ms) => {
                    self.dial_at = Some(now_ms.saturating_add(after_ms));
                }
                ConnEffect::Redial => self.dial_at = Some(now_ms),
                ConnEffect::GiveUp(reason) => {
                    self.gave_up = true;
                    self.dial_at = None;
                    out.push(Effect::Log(
                        Level::Warn,
                        format!("never dialing again: {reason}"),
                    ));
                }
                ConnEffect::Log(level, message) => out.push(Effect::Log(level, message)),
            }
        }
    }

    fn emit(&mut self, out: &mut Vec<Effect>, event: AppEvent) {
        match render(&event, self.settings.tenant.as_deref()) {
            Some(e) => {
                if let Some(state) = e.state {
                    self.announced = Some(state);
                }
                out.push(Effect::Emit(e));
            }
            None => out.push(Effect::Log(
                Level::Error,
                format!("not an application event: {:?}", event.name()),
            )),
        }
    }

    fn announce(&mut self, out: &mut Vec<Effect>, state: LinkState, reason: Option<&str>) {
        let mut v = json!({"event": "state", "state": state.as_str()});
        if let Some(r) = reason {
            v["reason"] = r.into();
        }
        self.emit(out, AppEvent::from(v));
    }

    /// `handshaking`, `ready` or `idle` when the connection is there and the
    /// application has not been told yet.
    fn announce_connection_state(&mut self, out: &mut Vec<Effect>) {
        let state = self.conn.state();
        if matches!(
            state,
            LinkState::Handshaking | LinkState::Ready | LinkState::Idle
        ) && self.socket == Socket::Up
            && self.announced != Some(state)
        {
            self.announce(out, state, None);
        }
    }

    /// After every call: the states that follow from where the connection stands
    /// now, a due immediate dial, and the end of a shutdown.
    fn settle(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if self.finished {
            return;
        }
        if let Some(s) = &self.shutdown {
            if s.stopped && matches!(self.socket, Socket::Down | Socket::Dialing) {
                let reason = s.reason.clone();
                self.socket = Socket::Down;
                self.finished = true;
                self.timers.clear();
                self.announce(out, LinkState::Stopped, Some(&reason));
            }
            return;
        }
        self.announce_connection_state(out);
        if self.socket == Socket::Down && !self.gave_up && self.dial_at.is_some_and(|t| t <= now_ms)
        {
            self.dial_at = None;
            self.socket = Socket::Dialing;
            self.announce(out, LinkState::Connecting, None);
            let unix_s = (now_ms as i64).saturating_add(self.settings.unix_offset_ms) / 1000;
            out.push(Effect::Dial {
                url: self.settings.dial_url.clone(),
                authorization: self.conn.authorization(unix_s),
            });
        }
    }
}

/// A `state` event that decides the next dial (`backoff`, `redial`).
fn is_dial_decision(event: &AppEvent) -> bool {
    match event {
        AppEvent::Json(v) => {
            v.get("event").and_then(Value::as_str) == Some("state")
                && matches!(
                    v.get("state").and_then(Value::as_str),
                    Some("backoff" | "redial")
                )
        }
        AppEvent::Message(_) => false,
    }
}
