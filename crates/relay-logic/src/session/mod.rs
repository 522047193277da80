//! The connection state machine (sans-IO): bytes, time and application calls in,
//! effects out. See docs/ARCHITECTURE.md for the state diagram.
//!
//! Rules: PROTOCOL.md §5, §6, §11.5, §11.6, §12; PORT-DECISIONS D2, D9–D21; and the
//! settled points of spec/vectors/README.md (sessions.json).

mod app_event;
pub(crate) mod backoff;
pub mod command;
mod dedup;
mod egress;
mod identity;
mod lru;
mod pending;
mod prompts;
pub mod results;
mod rng;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::codec::{self, ConnectorFrame, GatewayFrame};
use crate::descriptor::Descriptor;
use crate::error::DecodeError;
use crate::event::MessageEvent;
use crate::lines::{LineBuffer, Piece};

pub use app_event::{AppEvent, MessageDelivery};
pub use command::Command;

use backoff::Backoff;
use dedup::{BufferLedger, BufferState};
use egress::EgressRecords;
use identity::DeliveredMessages;
use pending::{Pending, PendingRequests};
use prompts::{PromptRegistry, Verdict};
use rng::SplitMix64;
use timers::{TimerKind, Timers};

/// One identity the gateway fronts; the first is the default for untagged frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub platform: String,
    pub bot_id: String,
    pub command_manifest: Option<Value>,
}

/// Everything a connection needs. Times are milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub identities: Vec<Identity>,
    pub handshake_timeout_ms: u64,
    pub outbound_timeout_ms: u64,
    pub going_idle_timeout_ms: u64,
    pub max_line_bytes: usize,
    /// This gateway's prompt-owner nonce (prompt ids are `<nonce>.<suffix>`).
    pub prompt_nonce: String,
    /// Seeds request ids and backoff jitter: the same seed gives the same effects.
    pub seed: u64,
    /// Backoff jitter: a delay `d` is drawn from `[d − d·p/100, d]`. D11's
    /// `[d/2, d]` is 50 (the default); 0 gives exact delays.
    pub reconnect_jitter_percent: u8,
    /// The first reconnect delay (D11: 1 s); it doubles per failure.
    pub backoff_base_ms: u64,
    /// The largest reconnect delay before jitter (D11: 30 s).
    pub backoff_max_ms: u64,
    /// A connection that lasted this long past its handshake restarts the backoff
    /// ladder when it ends (D11 revised: 60 s).
    pub stable_connection_ms: u64,
    pub gateway_id: Option<String>,
    pub secret: Option<String>,
    pub token_ttl_seconds: i64,
}

impl Config {
    /// The defaults of PROTOCOL.md for one identity.
    pub fn new(identities: Vec<Identity>) -> Self {
        Config {
            identities,
            handshake_timeout_ms: 30_000,
            outbound_timeout_ms: 30_000,
            going_idle_timeout_ms: 10_000,
            max_line_bytes: crate::codec::DEFAULT_MAX_LINE_BYTES,
            prompt_nonce: String::new(),
            seed: 0,
            reconnect_jitter_percent: backoff::DEFAULT_JITTER_PERCENT,
            backoff_base_ms: backoff::BASE_DELAY_MS,
            backoff_max_ms: backoff::MAX_DELAY_MS,
            stable_connection_ms: backoff::STABLE_CONNECTION_MS,
            gateway_id: None,
            secret: None,
            token_ttl_seconds: crate::auth::DEFAULT_TTL_SECONDS,
        }
    }
}

/// Log severity of a [`Effect::Log`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The longest a `hold_redial` parks re-dialling, so a brokered suspend that
/// never lands still reconnects (the reference's cap).
pub const REDIAL_HOLD_MAX_MS: u64 = 60_000;

/// What the host must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write this frame (one line ending in `\n`) as one WebSocket text message.
    /// `frame` numbers the frames of the connection resource from 1, so a host
    /// can say which write failed ([`Connection::write_failed`]).
    Send { frame: u64, line: String },
    /// Deliver this APP-PROTOCOL event (without `tenant`) to the application.
    Emit(AppEvent),
    /// Call `timer_fired(id)` at monotonic time `at_ms`.
    SetTimer { id: u64, at_ms: u64 },
    /// Forget timer `id`.
    CancelTimer(u64),
    /// Close the socket (the reason is for logs); the host then reports `closed`.
    CloseLink(String),
    /// Dial again after this many milliseconds. A later `Reconnect` replaces one
    /// not acted on yet (a redial hold moves the dial).
    Reconnect(u64),
    /// Dial again at once with a fresh token (D11's one re-dial).
    Redial,
    /// Never dial again.
    GiveUp(String),
    /// A log record; never contains secrets or tokens.
    Log(Level, String),
}

/// Hard limits on everything the connection remembers (see docs/ARCHITECTURE.md).
/// A connector or application can never make the component's memory grow past
/// these, whatever it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Outbound requests waiting for a result; one more is answered at once with
    /// `relay send failed: too many requests in flight` and nothing is written.
    pub pending_requests: usize,
    /// Buffer ids remembered for de-duplication (LRU).
    pub buffer_ids: usize,
    /// Prompts waiting for a press (LRU; expired ones are purged first).
    pub prompts: usize,
    /// Answered prompt ids remembered (the reference keeps 256).
    pub answered_prompts: usize,
    /// Chats with an egress record (LRU).
    pub egress_chats: usize,
    /// Identities of delivered messages remembered for de-duplication (D16: at
    /// least 512).
    pub message_ids: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            pending_requests: 4096,
            buffer_ids: 4096,
            prompts: 1024,
            answered_prompts: 256,
            egress_chats: 4096,
            message_ids: 4096,
        }
    }
}

/// How many entries each bounded collection holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub pending_requests: usize,
    pub buffer_ids: usize,
    pub prompts: usize,
    pub answered_prompts: usize,
    pub egress_chats: usize,
    pub message_ids: usize,
    /// Armed timers: at most one per pending request plus the handshake and
    /// going-idle deadlines.
    pub timers: usize,
}

/// Where the link stands (the `state` of `stats()`; APP-PROTOCOL state names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Never opened yet: the host is dialing.
    Connecting,
    /// Socket up, hellos sent, no valid descriptor yet.
    Handshaking,
    /// A descriptor arrived on this connection.
    Ready,
    /// The connector acknowledged `going_idle` (buffered delivery only).
    Idle,
    /// The handshake deadline passed; the link is being closed.
    HandshakeFailed,
    /// Closed; the host dials again after the announced delay.
    Backoff,
    /// Closed by a 4401; the host dials again at once with a fresh token.
    Redial,
    /// Terminal: credentials revoked, never dial again.
    Revoked,
    /// A write failed: the socket is being closed; nothing more is written on it.
    Closing,
    /// Terminal: the application stopped the link (`stop`).
    Stopped,
}

impl LinkState {
    /// Every state, in declaration order.
    pub const ALL: [LinkState; 10] = [
        LinkState::Connecting,
        LinkState::Handshaking,
        LinkState::Ready,
        LinkState::Idle,
        LinkState::HandshakeFailed,
        LinkState::Backoff,
        LinkState::Redial,
        LinkState::Revoked,
        LinkState::Closing,
        LinkState::Stopped,
    ];

    /// The state an APP-PROTOCOL name means (the inverse of [`LinkState::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The APP-PROTOCOL name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Handshaking => "handshaking",
            LinkState::Ready => "ready",
            LinkState::Idle => "idle",
            LinkState::HandshakeFailed => "handshake_failed",
            LinkState::Backoff => "backoff",
            LinkState::Redial => "redial",
            LinkState::Revoked => "revoked",
            LinkState::Closing => "closing",
            LinkState::Stopped => "stopped",
        }
    }

    /// Frames may be written: the socket is up and not being closed.
    pub fn is_writable(self) -> bool {
        self.writable()
    }

    /// A socket is up (the host has not reported its close yet).
    fn socket_up(self) -> bool {
        matches!(
            self,
            LinkState::Handshaking
                | LinkState::Ready
                | LinkState::Idle
                | LinkState::HandshakeFailed
                | LinkState::Closing
        )
    }

    /// Frames may be written and read: the socket is up and not being closed.
    fn writable(self) -> bool {
        matches!(
            self,
            LinkState::Handshaking | LinkState::Ready | LinkState::Idle
        )
    }
}

/// One link to the connector across all its re-dials.
///
/// Owns every decision and no I/O: each method takes the current monotonic time and
/// returns the effects the host must perform, in order. The same config (seed) and
/// the same calls always give the same effects.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    caps: Caps,
    state: LinkState,
    lines: LineBuffer,
    /// Number of the current (or last) connection; tags its timers.
    conn: u64,
    handshake_timer: Option<u64>,
    /// A handshake completed on some connection of this resource (D11's flag).
    ever_handshaked: bool,
    /// A `redial` was decided and no connection opened since.
    redial_pending: bool,
    /// The current connection is the re-dial attempt.
    on_redial_conn: bool,
    idle_timer: Option<u64>,
    descriptor: Option<Descriptor>,
    /// Every platform's descriptor on this connection (D15), the first included.
    descriptors: BTreeMap<String, Descriptor>,
    /// When this connection's handshake completed (for the stable-connection rule).
    handshake_at: Option<u64>,
    /// The application stopped the link while this connection was up.
    stopped_while_up: bool,
    /// When the announced backoff dial is due (while in `Backoff`).
    dial_due: Option<u64>,
    /// Re-dialling is parked until then (`hold_redial`).
    redial_held_until: Option<u64>,
    /// Number of the first frame of the current connection (earlier numbers
    /// belong to closed connections).
    first_frame: u64,
    delivered: DeliveredMessages,
    ids: SplitMix64,
    backoff: Backoff,
    timers: Timers,
    pending: PendingRequests,
    buffers: BufferLedger,
    prompts: PromptRegistry,
    egress: EgressRecords,
    frames_in: u64,
    frames_out: u64,
}

/// Keeps close reasons and other peer text short in logs.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn state_event(state: &str) -> Value {
    json!({"event": "state", "state": state})
}

/// `state backoff` with the delay before the next dial (and why it moved).
fn backoff_event(retry_in_ms: u64, reason: Option<&str>) -> Effect {
    let mut event = json!({"event": "state", "state": "backoff", "retry_in_ms": retry_in_ms});
    if let Some(reason) = reason {
        event["reason"] = reason.into();
    }
    Effect::Emit(event.into())
}

impl Connection {
    /// Validates the config (at least one identity, non-zero limits).
    pub fn new(config: Config) -> Result<Self, DecodeError> {
        Self::with_caps(config, Caps::default())
    }

    /// Like [`Connection::new`] with explicit memory caps (each at least 1).
    pub fn with_caps(config: Config, caps: Caps) -> Result<Self, DecodeError> {
        if config.identities.is_empty() {
            return Err(DecodeError::invalid(
                "identities",
                "at least one is required",
            ));
        }
        for (name, v) in [
            ("handshake_timeout_ms", config.handshake_timeout_ms),
            ("outbound_timeout_ms", config.outbound_timeout_ms),
            ("going_idle_timeout_ms", config.going_idle_timeout_ms),
            ("max_line_bytes", config.max_line_bytes as u64),
            ("backoff_base_ms", config.backoff_base_ms),
        ] {
            if v == 0 {
                return Err(DecodeError::invalid(name, "must be positive"));
            }
        }
        if config.backoff_max_ms < config.backoff_base_ms {
            return Err(DecodeError::invalid(
                "backoff_max_ms",
                "must be at least backoff_base_ms",
            ));
        }
        if config.reconnect_jitter_percent > 100 {
            return Err(DecodeError::invalid(
                "reconnect_jitter_percent",
                "must be at most 100",
            ));
        }
        let caps = Caps {
            pending_requests: caps.pending_requests.max(1),
            buffer_ids: caps.buffer_ids.max(1),
            prompts: caps.prompts.max(1),
            answered_prompts: caps.answered_prompts.max(1),
            egress_chats: caps.egress_chats.max(1),
            message_ids: caps.message_ids.max(1),
        };
        Ok(Connection {
            lines: LineBuffer::new(config.max_line_bytes),
            ids: SplitMix64::new(config.seed),
            // A second stream, so jitter draws never shift the request ids.
            backoff: Backoff::new(
                config.seed ^ 0x6A09_E667_F3BC_C909,
                config.reconnect_jitter_percent,
                config.backoff_base_ms,
                config.backoff_max_ms,
            ),
            delivered: DeliveredMessages::new(caps.message_ids, config.seed),
            buffers: BufferLedger::new(caps.buffer_ids),
            prompts: PromptRegistry::new(
                config.prompt_nonce.clone(),
                caps.prompts,
                caps.answered_prompts,
            ),
            egress: EgressRecords::new(caps.egress_chats),
            caps,
            state: LinkState::Connecting,
            conn: 0,
            handshake_timer: None,
            ever_handshaked: false,
            redial_pending: false,
            on_redial_conn: false,
            idle_timer: None,
            descriptor: None,
            descriptors: BTreeMap::new(),
            handshake_at: None,
            stopped_while_up: false,
            dial_due: None,
            redial_held_until: None,
            first_frame: 1,
            timers: Timers::default(),
            pending: PendingRequests::default(),
            frames_in: 0,
            frames_out: 0,
            config,
        })
    }

    /// The `Authorization` header value for the next dial, when credentials are set.
    pub fn authorization(&self, now_unix_s: i64) -> Option<String> {
        let (Some(g), Some(s)) = (&self.config.gateway_id, &self.config.secret) else {
            return None;
        };
        if !crate::auth::has_credentials(Some(g), Some(s)) {
            return None;
        }
        let token = crate::auth::upgrade_token(g, s, self.config.token_ttl_seconds, now_unix_s);
        Some(format!("Bearer {token}"))
    }

    /// Where the link stands now.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// The descriptor of the current connection, once its handshake completed.
    pub fn descriptor(&self) -> Option<&Descriptor> {
        self.descriptor.as_ref()
    }

    /// Each fronted platform's descriptor on the current connection (D15).
    pub fn descriptors(&self) -> &BTreeMap<String, Descriptor> {
        &self.descriptors
    }

    /// The per-platform descriptors as one JSON object `{platform: descriptor}`.
    pub fn descriptors_json(&self) -> Value {
        Value::Object(
            self.descriptors
                .iter()
                .map(|(p, d)| (p.clone(), d.to_json()))
                .collect(),
        )
    }

    /// The caps in force.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The socket is up.
    pub fn open(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if matches!(self.state, LinkState::Revoked | LinkState::Stopped) {
            let state = self.state.as_str();
            out.push(Effect::Log(
                Level::Warn,
                format!("open after {state}: closing, never dialing again"),
            ));
            out.push(Effect::CloseLink(state.into()));
            return out;
        }
        if self.state.socket_up() {
            out.push(Effect::Log(
                Level::Warn,
                "open while a connection was up: treating the previous one as lost".into(),
            ));
            self.drop_connection(&mut out);
        }
        self.conn += 1;
        self.lines.clear();
        self.descriptor = None;
        self.descriptors.clear();
        self.handshake_at = None;
        self.dial_due = None;
        self.first_frame = self.frames_out + 1;
        self.on_redial_conn = std::mem::take(&mut self.redial_pending);
        self.state = LinkState::Handshaking;
        for i in 0..self.config.identities.len() {
            let id = &self.config.identities[i];
            // D20: the slash-command manifest is Discord's; the reference sends it
            // in Discord hellos only.
            let command_manifest = id
                .command_manifest
                .clone()
                .filter(|_| id.platform == "discord");
            let frame = GatewayFrame::Hello {
                platform: id.platform.clone(),
                bot_id: id.bot_id.clone(),
                command_manifest,
            };
            self.send(&mut out, &frame);
        }
        let at = now_ms.saturating_add(self.config.handshake_timeout_ms);
        let (tid, eff) = self
            .timers
            .arm(TimerKind::Handshake { conn: self.conn }, at);
        self.handshake_timer = Some(tid);
        out.push(eff);
        out
    }

    /// One WebSocket message (text or binary: the bytes go into the same buffer).
    pub fn receive(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Effect> {
        self.receive_message(now_ms, bytes, None)
    }

    /// A text message: like [`Connection::receive`], but a line lying wholly
    /// inside it is known to be UTF-8 and is not validated again.
    pub fn receive_text(&mut self, now_ms: u64, text: &str) -> Vec<Effect> {
        self.receive_message(now_ms, text.as_bytes(), Some(text))
    }

    fn receive_message(&mut self, now_ms: u64, bytes: &[u8], text: Option<&str>) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.state.writable() {
            out.push(Effect::Log(
                Level::Debug,
                format!(
                    "ignored {} bytes: no connection is being served ({})",
                    bytes.len(),
                    self.state.as_str()
                ),
            ));
            return out;
        }
        let max = self.config.max_line_bytes;
        let mut pos = 0;
        while let Some(piece) = self.lines.next_piece(bytes, &mut pos) {
            let decoded = match piece {
                Piece::Within(range) => match text.and_then(|t| t.get(range.clone())) {
                    Some(line) => codec::decode_str(line, max),
                    None => codec::decode(bytes.get(range).unwrap_or_default(), max),
                },
                Piece::Joined(line) => codec::decode(line, max),
                Piece::TooLarge { seen } => {
                    out.push(Effect::Log(
                        Level::Warn,
                        format!(
                            "skipped a line: too_large: over {max} bytes ({seen} seen), discarded up to its newline"
                        ),
                    ));
                    continue;
                }
            };
            match decoded {
                Ok(frame) => {
                    self.frames_in += 1;
                    self.handle_frame(now_ms, frame, &mut out);
                }
                Err(e) => out.push(Effect::Log(Level::Warn, format!("skipped a line: {e}"))),
            }
        }
        out
    }

    /// A timer is due.
    pub fn timer_fired(&mut self, now_ms: u64, id: u64) -> Vec<Effect> {
        let _ = now_ms;
        let mut out = Vec::new();
        match self.timers.fire(id) {
            None => out.push(Effect::Log(Level::Trace, format!("timer {id} is stale"))),
            Some(TimerKind::Handshake { conn }) => {
                if conn == self.conn && self.handshake_timer == Some(id) {
                    self.handshake_timer = None;
                    if self.state == LinkState::Handshaking {
                        self.state = LinkState::HandshakeFailed;
                        out.push(Effect::Emit(state_event("handshake_failed").into()));
                        out.push(Effect::CloseLink(format!(
                            "no descriptor within {} ms",
                            self.config.handshake_timeout_ms
                        )));
                    }
                }
            }
            Some(TimerKind::Outbound { request_id }) => {
                if let Some(p) = self.pending.take(&request_id) {
                    self.emit_result(&mut out, &p, results::timed_out());
                }
            }
            Some(TimerKind::GoingIdle { conn }) => {
                if conn == self.conn && self.idle_timer == Some(id) {
                    self.idle_timer = None;
                    out.push(Effect::Emit(
                        json!({"event": "idle", "acked": false}).into(),
                    ));
                }
            }
        }
        out
    }

    /// The application's `outbound` command.
    pub fn outbound(
        &mut self,
        now_ms: u64,
        id: &str,
        action: Value,
        platform: Option<String>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let chat_info_of = (action.get("op").and_then(Value::as_str) == Some("get_chat_info"))
            .then(|| action.get("chat_id").cloned().unwrap_or_else(|| "".into()));
        let answer_now = |out: &mut Vec<Effect>, result: Value| {
            let result = results::shape(result, chat_info_of.as_ref());
            out.push(Effect::Emit(
                json!({"event": "outbound_result", "id": id, "result": result}).into(),
            ));
        };
        if self.state == LinkState::Stopped {
            answer_now(&mut out, results::failure(results::TRANSPORT_CLOSED));
            return out;
        }
        if !self.state.writable() {
            answer_now(&mut out, results::failure(results::NOT_CONNECTED));
            return out;
        }
        if !action.is_object() {
            answer_now(
                &mut out,
                results::send_failed("action is not a JSON object"),
            );
            return out;
        }
        if self.pending.len() >= self.caps.pending_requests {
            out.push(Effect::Log(
                Level::Warn,
                format!(
                    "outbound refused: {} requests already in flight",
                    self.pending.len()
                ),
            ));
            answer_now(
                &mut out,
                results::send_failed("too many requests in flight"),
            );
            return out;
        }
        let mut action = action;
        let recorded = self.egress.enrich(&mut action);
        let platform = platform
            .filter(|p| !p.is_empty())
            .or_else(|| self.follow_up_platform(&action))
            .or(recorded);
        let bot_id = platform.as_ref().and_then(|p| {
            self.config
                .identities
                .iter()
                .find(|i| &i.platform == p)
                .map(|i| i.bot_id.clone())
        });
        let mut request_id = self.ids.request_id();
        while self.pending.contains(&request_id) {
            request_id = self.ids.request_id();
        }
        self.prompts.register_action(&action, now_ms);
        let frame_number = self.frames_out + 1;
        let frame = GatewayFrame::Outbound {
            request_id: request_id.clone(),
            action,
            platform,
            bot_id,
        };
        self.send(&mut out, &frame);
        let at = now_ms.saturating_add(self.config.outbound_timeout_ms);
        let (timer, eff) = self.timers.arm(
            TimerKind::Outbound {
                request_id: request_id.clone(),
            },
            at,
        );
        out.push(eff);
        self.pending.insert(
            request_id,
            Pending {
                app_id: id.to_string(),
                timer,
                chat_info_of,
                frame: frame_number,
            },
        );
        out
    }

    /// The application's `interrupt` command.
    pub fn interrupt(
        &mut self,
        now_ms: u64,
        session_key: &str,
        reason: Option<String>,
    ) -> Vec<Effect> {
        let _ = now_ms;
        let mut out = Vec::new();
        if !self.state.writable() {
            out.push(Effect::Log(
                Level::Warn,
                "interrupt not sent: relay transport not connected".into(),
            ));
            return out;
        }
        let frame = GatewayFrame::Interrupt {
            session_key: session_key.to_string(),
            reason,
        };
        self.send(&mut out, &frame);
        out
    }

    /// The application durably took a buffered delivery.
    pub fn ack(&mut self, now_ms: u64, buffer_id: &str) -> Vec<Effect> {
        let _ = now_ms;
        let mut out = Vec::new();
        if buffer_id.is_empty() {
            out.push(Effect::Log(
                Level::Warn,
                "ack without a buffer id ignored".into(),
            ));
            return out;
        }
        self.buffers.mark_acked(buffer_id);
        if self.state.writable() {
            self.send(&mut out, &GatewayFrame::InboundAck(buffer_id.to_string()));
        } else {
            out.push(Effect::Log(
                Level::Debug,
                "ack recorded; no connection: a redelivery will be acked at once".into(),
            ));
        }
        out
    }

    /// The application could not take a buffered delivery it was handed (D10
    /// revised): nothing is written, and the id's next arrival is delivered again
    /// (so is a replay of the same message, D16).
    pub fn nack(&mut self, now_ms: u64, buffer_id: &str) -> Vec<Effect> {
        let _ = now_ms;
        let mut out = Vec::new();
        match self.buffers.release(buffer_id) {
            Some(message) => {
                if let Some(key) = message {
                    self.delivered.forget(&key);
                }
                out.push(Effect::Log(
                    Level::Debug,
                    "nack: the next arrival of this buffer id is delivered again".into(),
                ));
            }
            None => out.push(Effect::Log(
                Level::Warn,
                "nack of a buffer id that is not in flight ignored".into(),
            )),
        }
        out
    }

    /// Parks re-dialling for at most [`REDIAL_HOLD_MAX_MS`] (a scale-to-zero host
    /// brokering a suspend). A dial already announced moves to the hold's end.
    pub fn hold_redial(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let until = now_ms.saturating_add(REDIAL_HOLD_MAX_MS);
        self.redial_held_until = Some(until);
        if let (LinkState::Backoff, Some(due)) = (self.state, self.dial_due) {
            if due > now_ms && due < until {
                out.push(backoff_event(until - now_ms, Some("redial held")));
                out.push(Effect::Reconnect(until - now_ms));
            }
        }
        out.push(Effect::Log(
            Level::Info,
            format!("re-dialling held for at most {REDIAL_HOLD_MAX_MS} ms"),
        ));
        out
    }

    /// Ends a redial hold: a dial the hold deferred is announced again for the
    /// time the backoff alone gives (at once if that has passed).
    pub fn release_redial(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let held = self
            .redial_held_until
            .take()
            .is_some_and(|until| until > now_ms);
        if held && self.state == LinkState::Backoff {
            if let Some(due) = self.dial_due {
                let delay = due.saturating_sub(now_ms);
                out.push(backoff_event(delay, Some("redial released")));
                out.push(Effect::Reconnect(delay));
            }
        }
        out.push(Effect::Log(Level::Info, "re-dialling released".into()));
        out
    }

    /// The host could not write frame number `frame` (see [`Effect::Send`]), nor
    /// anything after it: the requests in those frames are answered
    /// `relay send failed: <reason>` (D9; not ambiguous, they never left), and the
    /// socket is closed: the host reports `closed` when it has ended.
    pub fn write_failed(&mut self, now_ms: u64, frame: u64, reason: &str) -> Vec<Effect> {
        let _ = now_ms;
        let mut out = Vec::new();
        if !self.state.writable() || frame < self.first_frame || frame > self.frames_out {
            out.push(Effect::Log(
                Level::Debug,
                format!("write failure of frame {frame} is not on the open connection: ignored"),
            ));
            return out;
        }
        let reason = clip(reason);
        for (_, p) in self.pending.take_from_frame(frame) {
            self.emit_result(&mut out, &p, results::send_failed(&reason));
        }
        self.state = LinkState::Closing;
        out.push(Effect::CloseLink(format!("write failed: {reason}")));
        out
    }

    /// The application ends the link on purpose: requests still waiting are
    /// answered `relay send failed: relay transport closed` (ambiguous: they had
    /// been written; the reference's words), a waiting `going_idle` with
    /// `idle {acked: false}`; the socket is closed and never dialled again. Later
    /// outbounds are answered `relay transport closed` at once.
    pub fn stop(&mut self, now_ms: u64) -> Vec<Effect> {
        let _ = now_ms;
        let mut out = Vec::new();
        if self.state == LinkState::Stopped {
            return out;
        }
        if let Some(t) = self.handshake_timer.take() {
            out.extend(self.timers.cancel(t));
        }
        for (_, p) in self.pending.drain() {
            self.emit_result(&mut out, &p, results::closed_while_pending());
        }
        if let Some(t) = self.idle_timer.take() {
            out.extend(self.timers.cancel(t));
            out.push(Effect::Emit(
                json!({"event": "idle", "acked": false}).into(),
            ));
        }
        let was_up = self.state.socket_up();
        self.stopped_while_up = was_up;
        self.state = LinkState::Stopped;
        self.dial_due = None;
        if was_up {
            out.push(Effect::CloseLink("gateway shutting down".into()));
        }
        out
    }

    /// The application's `going_idle` command. A second one while the first still
    /// waits joins that wait (one `going_idle` frame, one `idle` answer).
    pub fn going_idle(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.state.writable() {
            out.push(Effect::Emit(
                json!({"event": "idle", "acked": false}).into(),
            ));
            return out;
        }
        if self.idle_timer.is_some() {
            out.push(Effect::Log(
                Level::Debug,
                "going_idle already waiting for its ack".into(),
            ));
            return out;
        }
        self.send(&mut out, &GatewayFrame::GoingIdle);
        let at = now_ms.saturating_add(self.config.going_idle_timeout_ms);
        let (tid, eff) = self
            .timers
            .arm(TimerKind::GoingIdle { conn: self.conn }, at);
        self.idle_timer = Some(tid);
        out.push(eff);
        out
    }

    /// An APP-PROTOCOL command object (without `tenant`): `outbound`, `interrupt`,
    /// `ack`, `nack`, `going_idle`, `hold_redial`, `release_redial`. Unknown ops and missing fields are typed errors.
    pub fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Effect>, DecodeError> {
        Ok(match command::parse(command)? {
            Command::Outbound {
                id,
                action,
                platform,
            } => self.outbound(now_ms, &id, action, platform),
            Command::Interrupt {
                session_key,
                reason,
            } => self.interrupt(now_ms, &session_key, reason),
            Command::Ack { buffer_id } => self.ack(now_ms, &buffer_id),
            Command::Nack { buffer_id } => self.nack(now_ms, &buffer_id),
            Command::GoingIdle => self.going_idle(now_ms),
            Command::HoldRedial => self.hold_redial(now_ms),
            Command::ReleaseRedial => self.release_redial(now_ms),
        })
    }

    /// The socket ended (or a dial failed: a close with no `open` since the last).
    pub fn closed(&mut self, now_ms: u64, code: Option<u16>, reason: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        let code_text = code.map_or("none".to_string(), |c| c.to_string());
        if self.state == LinkState::Stopped {
            if std::mem::take(&mut self.stopped_while_up) {
                self.drop_connection(&mut out);
            }
            out.push(Effect::Log(
                Level::Debug,
                format!("close (code {code_text}) after stop: not dialing again"),
            ));
            return out;
        }
        if self.state == LinkState::Revoked {
            out.push(Effect::Log(
                Level::Debug,
                format!("close (code {code_text}) after revoked ignored"),
            ));
            return out;
        }
        let was_up = self.state.socket_up();
        out.push(Effect::Log(
            Level::Info,
            format!(
                "{} (code {code_text}, reason {:?})",
                if was_up {
                    "connection closed"
                } else {
                    "dial failed"
                },
                clip(reason)
            ),
        ));
        // D11 revised: only a connection that lasted past its handshake restarts
        // the ladder; a connector that answers the hello and drops keeps climbing.
        let stable = was_up
            && self
                .handshake_at
                .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.stable_connection_ms);
        if stable {
            self.backoff.reset();
        }
        if was_up {
            self.drop_connection(&mut out);
        }
        let redial_attempt = if was_up {
            self.on_redial_conn
        } else {
            self.redial_pending
        };
        self.on_redial_conn = false;
        self.redial_pending = false;
        if code == Some(4401) && self.ever_handshaked && reason != "expired" {
            if redial_attempt {
                self.state = LinkState::Revoked;
                out.push(Effect::Emit(state_event("revoked").into()));
                out.push(Effect::GiveUp(
                    "4401 on the re-dial with a fresh token: credentials revoked".into(),
                ));
            } else {
                self.state = LinkState::Redial;
                self.redial_pending = true;
                out.push(Effect::Emit(state_event("redial").into()));
                out.push(Effect::Redial);
            }
            return out;
        }
        let mut delay = self.backoff.next_delay();
        self.dial_due = Some(now_ms.saturating_add(delay));
        if let Some(until) = self.redial_held_until.filter(|u| *u > now_ms) {
            if until - now_ms > delay {
                out.push(Effect::Log(
                    Level::Info,
                    "re-dial held: dialing when the hold ends or is released".into(),
                ));
                delay = until - now_ms;
            }
        }
        self.state = LinkState::Backoff;
        out.push(backoff_event(delay, None));
        out.push(Effect::Reconnect(delay));
        out
    }

    /// A fresh instance takes over from one that failed (a trap): each request
    /// the old one still owed is answered `relay transport connection lost`
    /// (ambiguous, D17: it may have been written), shaped for `get_chat_info`
    /// when its action is known, in the order given; each buffer id the old one
    /// delivered and the application has not acked yet is in flight here too, so
    /// its redelivery is not delivered a second time (D10).
    pub fn restore(
        &mut self,
        owed: &[(String, Option<Value>)],
        in_flight: &[String],
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        for id in in_flight {
            if !id.is_empty() && self.buffers.seen(id).is_none() {
                self.buffers.mark_delivered(id, None);
            }
        }
        for (id, action) in owed {
            let chat_info_of = action.as_ref().and_then(|a| {
                (a.get("op").and_then(Value::as_str) == Some("get_chat_info"))
                    .then(|| a.get("chat_id").cloned().unwrap_or_else(|| "".into()))
            });
            let result = results::shape(results::connection_lost(), chat_info_of.as_ref());
            out.push(Effect::Emit(
                json!({"event": "outbound_result", "id": id, "result": result}).into(),
            ));
        }
        out
    }

    /// Whether a handshake completed on the current connection.
    pub fn handshaked(&self) -> bool {
        self.handshake_at.is_some()
    }

    /// Reconnect failures since the last stable connection.
    pub fn consecutive_failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// Outbound requests waiting for their result.
    pub fn pending_outbound(&self) -> usize {
        self.pending.len()
    }

    /// Frames decoded from, and written to, the connector.
    pub fn frame_counts(&self) -> (u64, u64) {
        (self.frames_in, self.frames_out)
    }

    /// Counters for the host's `status` answer.
    pub fn stats(&self) -> Value {
        json!({
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "pending_outbound": self.pending.len(),
            "state": self.state.as_str(),
            "connected": self.state.writable(),
            "consecutive_failures": self.backoff.failures(),
            "platforms": self.descriptors.keys().collect::<Vec<_>>(),
        })
    }

    /// How full each bounded collection is (compare with [`Connection::caps`]).
    pub fn usage(&self) -> Usage {
        let (prompts, answered_prompts) = self.prompts.sizes();
        Usage {
            pending_requests: self.pending.len(),
            buffer_ids: self.buffers.len(),
            prompts,
            answered_prompts,
            egress_chats: self.egress.len(),
            message_ids: self.delivered.len(),
            timers: self.timers.len(),
        }
    }

    // ---- internals -------------------------------------------------------------

    fn send(&mut self, out: &mut Vec<Effect>, frame: &GatewayFrame) {
        self.frames_out += 1;
        let mut line = codec::encode(frame);
        line.push('\n');
        out.push(Effect::Send {
            frame: self.frames_out,
            line,
        });
    }

    /// D19: a `follow_up` without an explicit platform goes to the platform its
    /// `kind` names (`discord.interaction_token` → `discord`), when fronted.
    fn follow_up_platform(&self, action: &Value) -> Option<String> {
        if action.get("op").and_then(Value::as_str) != Some("follow_up") {
            return None;
        }
        let kind = action.get("kind").and_then(Value::as_str)?;
        let prefix = kind.split('.').next().filter(|p| !p.is_empty())?;
        self.config
            .identities
            .iter()
            .any(|i| i.platform == prefix)
            .then(|| prefix.to_string())
    }

    fn emit_result(&mut self, out: &mut Vec<Effect>, p: &Pending, result: Value) {
        if let Some(e) = self.timers.cancel(p.timer) {
            out.push(e);
        }
        let result = results::shape(result, p.chat_info_of.as_ref());
        out.push(Effect::Emit(
            json!({"event": "outbound_result", "id": p.app_id, "result": result}).into(),
        ));
    }

    /// The socket is gone: answer what waited on it (requests in issue order, then
    /// a `going_idle`), cancel its timers and forget its partial line.
    fn drop_connection(&mut self, out: &mut Vec<Effect>) {
        if let Some(t) = self.handshake_timer.take() {
            out.extend(self.timers.cancel(t));
        }
        for (_, p) in self.pending.drain() {
            self.emit_result(out, &p, results::connection_lost());
        }
        if let Some(t) = self.idle_timer.take() {
            out.extend(self.timers.cancel(t));
            out.push(Effect::Emit(
                json!({"event": "idle", "acked": false}).into(),
            ));
        }
        self.lines.clear();
        self.descriptor = None;
        self.descriptors.clear();
        self.handshake_at = None;
    }

    fn handle_frame(&mut self, now_ms: u64, frame: ConnectorFrame, out: &mut Vec<Effect>) {
        match frame {
            ConnectorFrame::Descriptor(d) => {
                if self.descriptor.is_some() {
                    // D15: a later descriptor is another fronted platform's limits
                    // (or a replacement of one): the application needs each.
                    out.push(Effect::Emit(
                        json!({"event": "descriptor", "platform": d.platform, "descriptor": d.to_json()})
                            .into(),
                    ));
                    self.descriptors.insert(d.platform.clone(), d);
                    return;
                }
                if let Some(t) = self.handshake_timer.take() {
                    out.extend(self.timers.cancel(t));
                }
                self.ever_handshaked = true;
                self.handshake_at = Some(now_ms);
                if self.state == LinkState::Handshaking {
                    self.state = LinkState::Ready;
                }
                out.push(Effect::Emit(
                    json!({"event": "ready", "descriptor": d.to_json()}).into(),
                ));
                self.descriptors.insert(d.platform.clone(), d.clone());
                self.descriptor = Some(d);
            }
            ConnectorFrame::Inbound { event, buffer_id } => {
                self.deliver(now_ms, event, buffer_id, out);
            }
            ConnectorFrame::OutboundResult { request_id, result } => {
                match self.pending.take(&request_id) {
                    Some(p) => self.emit_result(out, &p, result),
                    None => out.push(Effect::Log(
                        Level::Debug,
                        "outbound_result for an unknown or finished request ignored".into(),
                    )),
                }
            }
            ConnectorFrame::InterruptInbound {
                session_key,
                chat_id,
            } => out.push(Effect::Emit(
                json!({
                    "event": "interrupt",
                    "session_key": session_key,
                    "chat_id": chat_id,
                })
                .into(),
            )),
            ConnectorFrame::GoingIdleAck => match self.idle_timer.take() {
                Some(t) => {
                    out.extend(self.timers.cancel(t));
                    if self.state == LinkState::Ready {
                        self.state = LinkState::Idle;
                    }
                    out.push(Effect::Emit(json!({"event": "idle", "acked": true}).into()));
                }
                None => out.push(Effect::Log(
                    Level::Debug,
                    "going_idle_ack with nothing waiting ignored".into(),
                )),
            },
            ConnectorFrame::PassthroughForward { forward, buffer_id } => {
                if let Some(id) = &buffer_id {
                    if self.already_handled(id, out) {
                        return;
                    }
                }
                match crate::discord::interaction_to_event(&forward) {
                    Ok(event) => self.deliver(now_ms, event, buffer_id, out),
                    Err(dropped) => {
                        out.push(Effect::Log(
                            Level::Info,
                            format!(
                                "passthrough {} {} dropped: {}",
                                clip(&forward.method),
                                clip(&forward.path),
                                clip(&dropped.reason)
                            ),
                        ));
                        if let Some(id) = buffer_id {
                            self.ack_at_once(&id, out);
                        }
                    }
                }
            }
        }
    }

    /// D10: a buffer id seen before is not delivered again; if it was acknowledged,
    /// the redelivery is acknowledged again at once. True when the frame is done.
    fn already_handled(&mut self, buffer_id: &str, out: &mut Vec<Effect>) -> bool {
        match self.buffers.seen(buffer_id) {
            None => false,
            Some(BufferState::Delivered(_)) => {
                out.push(Effect::Log(
                    Level::Debug,
                    "redelivery of an unacknowledged buffer id suppressed".into(),
                ));
                true
            }
            Some(BufferState::Acked) => {
                self.send(out, &GatewayFrame::InboundAck(buffer_id.to_string()));
                true
            }
        }
    }

    /// A buffered frame that does not become a message is acknowledged at once.
    fn ack_at_once(&mut self, buffer_id: &str, out: &mut Vec<Effect>) {
        self.buffers.mark_acked(buffer_id);
        self.send(out, &GatewayFrame::InboundAck(buffer_id.to_string()));
    }

    /// An inbound event or converted interaction: de-dup, egress record, prompt
    /// routing, then a `message` for the application.
    fn deliver(
        &mut self,
        now_ms: u64,
        event: MessageEvent,
        buffer_id: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(id) = &buffer_id {
            if self.already_handled(id, out) {
                return;
            }
        }
        // D16: the same message delivered before (live, then replayed from the
        // buffer under a new id) is not delivered again.
        let key = self.delivered.key_of(&event);
        if let Some(key) = &key {
            if self.delivered.seen(key) {
                out.push(Effect::Log(
                    Level::Debug,
                    "message delivered before (same platform, chat and message id) suppressed"
                        .into(),
                ));
                if let Some(id) = buffer_id {
                    self.ack_at_once(&id, out);
                }
                return;
            }
        }
        self.egress.record(&event.source);
        if let Some((prompt_id, _)) = event.prompt_press() {
            let verdict = self.prompts.judge(&prompt_id, now_ms);
            if verdict != Verdict::Deliver {
                if verdict == Verdict::Stale {
                    out.push(Effect::Emit(
                        json!({
                            "event": "prompt_stale",
                            "chat_id": event.source.chat_id,
                            "thread_id": event.source.thread_id,
                            "prompt_id": prompt_id,
                        })
                        .into(),
                    ));
                } else {
                    out.push(Effect::Log(
                        Level::Debug,
                        format!("prompt press consumed ({verdict:?})"),
                    ));
                }
                if let Some(id) = buffer_id {
                    self.ack_at_once(&id, out);
                }
                return;
            }
        }
        if let Some(id) = &buffer_id {
            self.buffers.mark_delivered(id, key);
        }
        if let Some(key) = key {
            self.delivered.remember(key);
        }
        out.push(Effect::Emit(AppEvent::message(event, buffer_id)));
    }
}
