//! A typed Rust API for programs that embed the host in-process (issue #12).
//!
//! [`Host::start`] speaks the sidecar protocol (spec/SIDECAR.md) in
//! `serde_json::Value`s: commands in, events out, answers matched by hand. This
//! module puts types on both directions — [`Event`] (SIDECAR.md §2) and
//! [`Command`] (§3) — and a [`Client`] that does the matching an application would
//! otherwise write itself: [`Client::outbound`] sends an `outbound` with an id of
//! its own and resolves with the `outbound_result` that echoes it.
//!
//! The wire stays the protocol: a `Command` serialises to exactly the JSON object
//! SIDECAR.md documents, and an `Event` deserialises from the line the host
//! writes. An event this version does not know (or cannot read) is kept whole as
//! [`Event::Other`], never dropped.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::stream::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::app::{Events, Flow, Host, HostError, HostHandle, HostOptions};
use crate::spec::TenantSpec;
use crate::TenantStatus;

// ---- events -------------------------------------------------------------------

/// A tenant's link state (SIDECAR.md §2.1), as `state` events and `status`
/// entries name it; typed so applications match on variants, not strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// A dial starts (each dial).
    Connecting,
    /// The socket is up, hellos written.
    Handshaking,
    /// A descriptor arrived (follows the `ready` event).
    Ready,
    /// The connector acknowledged `going_idle`.
    Idle,
    /// No descriptor within the handshake deadline; the socket is closed.
    HandshakeFailed,
    /// Closed; the next dial is in `retry_in_ms`.
    Backoff,
    /// Closed by a 4401; dialling again at once with a fresh token.
    Redial,
    /// Credentials refused twice: terminal, no more dials.
    Revoked,
    /// The tenant ended (`reason` says why).
    Stopped,
    /// A state this version does not know, verbatim: a newer host may add one,
    /// and the event carrying it must still arrive typed.
    Other(String),
}

impl LinkState {
    /// The protocol name (`"handshake_failed"`, ...), for logs and comparisons.
    pub fn as_str(&self) -> &str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Handshaking => "handshaking",
            LinkState::Ready => "ready",
            LinkState::Idle => "idle",
            LinkState::HandshakeFailed => "handshake_failed",
            LinkState::Backoff => "backoff",
            LinkState::Redial => "redial",
            LinkState::Revoked => "revoked",
            LinkState::Stopped => "stopped",
            LinkState::Other(name) => name,
        }
    }

    /// The state a protocol name means (unknown names become [`LinkState::Other`]).
    pub fn from_name(name: &str) -> LinkState {
        match name {
            "connecting" => LinkState::Connecting,
            "handshaking" => LinkState::Handshaking,
            "ready" => LinkState::Ready,
            "idle" => LinkState::Idle,
            "handshake_failed" => LinkState::HandshakeFailed,
            "backoff" => LinkState::Backoff,
            "redial" => LinkState::Redial,
            "revoked" => LinkState::Revoked,
            "stopped" => LinkState::Stopped,
            other => LinkState::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LinkState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LinkState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|name| LinkState::from_name(&name))
    }
}

/// `state`: the tenant's link changed (SIDECAR.md §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEvent {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The state the link is now in.
    pub state: LinkState,
    /// With `backoff`: milliseconds until the next dial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// Why: on `stopped`, and on `backoff`/`revoked` after a guest failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `ready`: the first valid descriptor of a connection — the tenant can relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyEvent {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The platform descriptor (PROTOCOL.md §3.3), free-form.
    pub descriptor: Value,
}

/// `descriptor`: a later descriptor on the same connection (D15), one platform's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescriptorEvent {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The platform (one of the tenant's identities) this descriptor is for.
    pub platform: String,
    /// The platform descriptor (PROTOCOL.md §3.3), free-form.
    pub descriptor: Value,
}

/// `message`: an inbound event (or a converted Discord interaction) delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageEvent {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The canonical event (PROTOCOL.md §4, §9.3), free-form.
    pub message: Value,
    /// Set for buffered deliveries: answer with [`Command::Ack`] or
    /// [`Command::Nack`] (SIDECAR.md §7). Written as `null` when absent.
    pub buffer_id: Option<String>,
}

/// `interrupt`: the connector asks to stop a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterruptEvent {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The session whose turn should stop, as the connector sent it (`""` when
    /// it sent none).
    pub session_key: String,
    /// The chat of that session, as the connector sent it (`""` when it sent
    /// none).
    pub chat_id: String,
}

/// `outbound_result`: the one answer to an accepted `outbound` command, and what
/// [`Client::outbound`] resolves with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundResult {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The `id` of the `outbound` command this answers.
    pub id: String,
    /// The connector's result (`success`, `message_id`, `error`, `ambiguous`,
    /// op-specific fields), free-form.
    pub result: Value,
}

impl OutboundResult {
    /// Whether the action was carried out (`result.success == true`).
    pub fn success(&self) -> bool {
        self.result.get("success").and_then(Value::as_bool) == Some(true)
    }

    /// The failure text, when the action failed.
    pub fn error(&self) -> Option<&str> {
        self.result.get("error").and_then(Value::as_str)
    }

    /// Whether the outcome is unknown: the action may or may not have happened
    /// (a lost connection, a timeout; SIDECAR.md §7).
    pub fn ambiguous(&self) -> bool {
        self.result.get("ambiguous").and_then(Value::as_bool) == Some(true)
    }

    /// The platform message id of a `send`-like action, when the result has one.
    pub fn message_id(&self) -> Option<&str> {
        self.result.get("message_id").and_then(Value::as_str)
    }
}

/// `prompt_stale`: a press on one of this gateway's prompts that is unknown or
/// expired (PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptStaleEvent {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The chat the press came from.
    pub chat_id: String,
    /// Written as `null` when the press came from no thread.
    pub thread_id: Option<String>,
    /// The id of the prompt that was pressed, which this gateway no longer knows.
    pub prompt_id: String,
}

/// `idle`: the answer to `going_idle` (also sent during shutdown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleEvent {
    /// The tenant id (absent only in single-connection transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Whether the connector acknowledged in time.
    pub acked: bool,
}

/// The `error` object of an [`ErrorEvent`] (SIDECAR.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `malformed_json`, `missing_field`, `unknown_tenant`, `stopped`, `busy`, ...
    #[serde(default)]
    pub kind: String,
    /// A sentence for people; programs should match on `kind` instead.
    #[serde(default)]
    pub message: String,
}

/// `error`: a command that could not be taken; the host keeps running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Present once the command was routed to a tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// What went wrong: a kind to match on and a message.
    pub error: ErrorBody,
    /// The command's `id`, copied when it had one (any JSON the command carried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

/// One tenant in a `status` event (SIDECAR.md §2.2); the deserialisable mirror
/// of [`TenantStatus`], which [`Client::status`] returns directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantStatusEntry {
    /// The tenant id.
    pub tenant: String,
    /// The last `state` announced.
    pub state: LinkState,
    /// Unix time (ms) the current socket opened; `None` without one.
    pub connected_since_ms: Option<u64>,
    /// Frames decoded from the connector, across guest rebuilds.
    pub frames_in: u64,
    /// Frames the component asked to write, across guest rebuilds.
    pub frames_out: u64,
    /// Outbound requests waiting for their result.
    pub pending_outbound: u64,
    /// How often the guest instance was rebuilt after a failure.
    pub restarts: u64,
    /// `{platform: descriptor}` of the current connection.
    #[serde(default)]
    pub descriptors: BTreeMap<String, Value>,
}

/// `status`: the answer to [`Command::Status`], one entry per tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// One entry per tenant, in configuration order.
    pub tenants: Vec<TenantStatusEntry>,
}

/// `reloaded`: the answer to [`Command::Reload`] (or a SIGHUP): what the re-read
/// configuration changed (SIDECAR.md §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadedEvent {
    /// The command's `id`, copied when it had one (a SIGHUP reload has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Tenants new in the file, started.
    #[serde(default)]
    pub started: Vec<String>,
    /// Tenants gone from the file, stopped gracefully.
    #[serde(default)]
    pub stopped: Vec<String>,
    /// Tenants whose spec changed, stopped and started again.
    #[serde(default)]
    pub restarted: Vec<String>,
    /// Tenants left as they were, connection included.
    #[serde(default)]
    pub unchanged: Vec<String>,
}

/// One event of the sidecar protocol (SIDECAR.md §2), typed, so an embedding
/// application matches variants instead of JSON. Serialises to the object the
/// host writes; deserialising never fails on an object the host could write
/// (unknown or unreadable events become [`Event::Other`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `state`: the tenant's link changed.
    State(StateEvent),
    /// `ready`: the first descriptor of a connection arrived.
    Ready(ReadyEvent),
    /// `descriptor`: a later descriptor on the same connection.
    Descriptor(DescriptorEvent),
    /// `message`: an inbound event was delivered.
    Message(MessageEvent),
    /// `interrupt`: the connector asks to stop a turn.
    Interrupt(InterruptEvent),
    /// `outbound_result`: the answer to an `outbound` command.
    OutboundResult(OutboundResult),
    /// `prompt_stale`: a press on an unknown or expired prompt.
    PromptStale(PromptStaleEvent),
    /// `idle`: the answer to `going_idle`.
    Idle(IdleEvent),
    /// `error`: a command could not be taken.
    Error(ErrorEvent),
    /// `status`: every tenant's counters, the answer to `status`.
    Status(StatusEvent),
    /// `reloaded`: what a reload of the configuration changed.
    Reloaded(ReloadedEvent),
    /// An event this version does not know, or one whose fields it cannot read,
    /// kept whole so that nothing the host says is lost.
    #[serde(untagged)]
    Other(Value),
}

impl Event {
    /// The typed form of one event as the host emits it; never fails.
    pub fn from_value(value: Value) -> Event {
        fn typed<T: DeserializeOwned>(value: &Value, wrap: fn(T) -> Event) -> Option<Event> {
            match T::deserialize(value) {
                Ok(t) => Some(wrap(t)),
                Err(e) => {
                    // A known name with fields of another shape: the protocol
                    // drifted from this module. Keep the event, say so.
                    tracing::warn!(event = %value, "event not readable as its kind ({e}); kept as Other");
                    None
                }
            }
        }
        let typed = match value.get("event").and_then(Value::as_str) {
            Some("state") => typed(&value, Event::State),
            Some("ready") => typed(&value, Event::Ready),
            Some("descriptor") => typed(&value, Event::Descriptor),
            Some("message") => typed(&value, Event::Message),
            Some("interrupt") => typed(&value, Event::Interrupt),
            Some("outbound_result") => typed(&value, Event::OutboundResult),
            Some("prompt_stale") => typed(&value, Event::PromptStale),
            Some("idle") => typed(&value, Event::Idle),
            Some("error") => typed(&value, Event::Error),
            Some("status") => typed(&value, Event::Status),
            Some("reloaded") => typed(&value, Event::Reloaded),
            _ => None,
        };
        typed.unwrap_or(Event::Other(value))
    }

    /// The typed form of one event line as the host writes it; never fails, and
    /// equal to [`Event::from_value`] of the parsed line. A known kind is parsed
    /// straight into its struct (no `Value` tree of the whole event first, then a
    /// copy of its parts: the client's pump did that for every event); anything
    /// else goes through [`Event::from_value`].
    pub fn from_line(line: &str) -> Event {
        /// Only the `event` name; every other field is skipped unparsed.
        #[derive(Deserialize)]
        struct Name<'a> {
            #[serde(borrow)]
            event: Option<std::borrow::Cow<'a, str>>,
        }
        fn typed<T: DeserializeOwned>(line: &str, wrap: fn(T) -> Event) -> Option<Event> {
            serde_json::from_str(line).ok().map(wrap)
        }
        let name = serde_json::from_str::<Name>(line)
            .ok()
            .and_then(|n| n.event);
        let typed = match name.as_deref() {
            Some("state") => typed(line, Event::State),
            Some("ready") => typed(line, Event::Ready),
            Some("descriptor") => typed(line, Event::Descriptor),
            Some("message") => typed(line, Event::Message),
            Some("interrupt") => typed(line, Event::Interrupt),
            Some("outbound_result") => typed(line, Event::OutboundResult),
            Some("prompt_stale") => typed(line, Event::PromptStale),
            Some("idle") => typed(line, Event::Idle),
            Some("error") => typed(line, Event::Error),
            Some("status") => typed(line, Event::Status),
            Some("reloaded") => typed(line, Event::Reloaded),
            _ => None,
        };
        // Unknown, or not readable as its kind: from_value keeps it whole (and warns).
        typed
            .unwrap_or_else(|| Event::from_value(serde_json::from_str(line).unwrap_or(Value::Null)))
    }

    /// The tenant the event is about; `None` for `status` and for errors about
    /// commands the host could not route.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Event::State(e) => e.tenant.as_deref(),
            Event::Ready(e) => e.tenant.as_deref(),
            Event::Descriptor(e) => e.tenant.as_deref(),
            Event::Message(e) => e.tenant.as_deref(),
            Event::Interrupt(e) => e.tenant.as_deref(),
            Event::OutboundResult(e) => e.tenant.as_deref(),
            Event::PromptStale(e) => e.tenant.as_deref(),
            Event::Idle(e) => e.tenant.as_deref(),
            Event::Error(e) => e.tenant.as_deref(),
            Event::Status(_) | Event::Reloaded(_) => None,
            Event::Other(v) => v.get("tenant").and_then(Value::as_str),
        }
    }

    /// The protocol name (`"outbound_result"`, ...; `""` for an [`Event::Other`]
    /// without a string `event`), for logs.
    pub fn name(&self) -> &str {
        match self {
            Event::State(_) => "state",
            Event::Ready(_) => "ready",
            Event::Descriptor(_) => "descriptor",
            Event::Message(_) => "message",
            Event::Interrupt(_) => "interrupt",
            Event::OutboundResult(_) => "outbound_result",
            Event::PromptStale(_) => "prompt_stale",
            Event::Idle(_) => "idle",
            Event::Error(_) => "error",
            Event::Status(_) => "status",
            Event::Reloaded(_) => "reloaded",
            Event::Other(v) => v.get("event").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    /// Reads any JSON value; see [`Event::from_value`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Event::from_value)
    }
}

// ---- commands -----------------------------------------------------------------

/// One command of the sidecar protocol (SIDECAR.md §3), typed, so an embedding
/// application cannot misspell an op or a field. `tenant` may be `None` with a
/// single tenant; the host answers a missing one with an `error` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// An `outbound` frame; answered by exactly one `outbound_result` with `id`
    /// (or an `error` with `id` when rejected). [`Client::outbound`] builds it and
    /// waits for the answer.
    Outbound {
        /// The tenant to route to; may be `None` when the host runs one tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// Echoed by the answer; ids need not be unique (each command is still
        /// answered exactly once).
        id: String,
        /// An object with `op` (`send`, `edit`, `typing`, `get_chat_info`, ...).
        action: Value,
        /// The platform to act on; `None` = the chat's (or the default) one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
    },
    /// An `interrupt` frame (stop a turn); no answer.
    Interrupt {
        /// The tenant to route to; may be `None` when the host runs one tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// The session whose turn to stop.
        session_key: String,
        /// Why, passed on in the frame (`null` there when `None`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A buffered message was handed off durably; no answer.
    Ack {
        /// The tenant to route to; may be `None` when the host runs one tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// The `buffer_id` of the [`MessageEvent`] handed off.
        buffer_id: String,
    },
    /// A buffered message could not be taken: deliver it again; no answer.
    Nack {
        /// The tenant to route to; may be `None` when the host runs one tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// The `buffer_id` of the [`MessageEvent`] that could not be taken.
        buffer_id: String,
    },
    /// A `going_idle` frame; answered by one `idle`.
    GoingIdle {
        /// The tenant to route to; may be `None` when the host runs one tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// Park re-dialling (at most 60 s), e.g. while brokering a suspend; no answer.
    HoldRedial {
        /// The tenant to route to; may be `None` when the host runs one tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// End a [`Command::HoldRedial`]; no answer.
    ReleaseRedial {
        /// The tenant to route to; may be `None` when the host runs one tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// Every tenant's counters; answered by one `status` event.
    Status,
    /// Re-read `--config` (as SIGHUP does); answered by one `reloaded` event, or
    /// an `error` (`reload_failed`, `reload_unavailable`) when nothing changed.
    Reload {
        /// Copied into the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Stop every tenant gracefully (SIDECAR.md §5); the event stream then ends.
    Shutdown,
}

impl Command {
    /// The JSON object the host takes ([`HostHandle::send_command`]).
    pub fn to_value(&self) -> Value {
        // Cannot fail: every field is a string, an option of one, or a Value.
        serde_json::to_value(self).expect("a Command always serialises")
    }
}

// ---- the client ---------------------------------------------------------------

/// The prefix of the ids [`Client::outbound`] generates. Outbound commands sent
/// with [`Client::send`] should use other ids, or their answers may be taken for
/// a waiting call's.
pub const OUTBOUND_ID_PREFIX: &str = "relay-client-";

/// Why a [`Client::outbound`] call got no `outbound_result`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The host's event stream ended (shutdown) before the answer came.
    #[error("the host stopped before answering")]
    HostStopped,
    /// The host or the component refused the command with an `error` event
    /// (unknown tenant, an action that is not an object, ...).
    #[error("the command was rejected ({kind}): {message}")]
    Rejected {
        /// The tenant the `error` event named, if the command was routed.
        tenant: Option<String>,
        /// The error's `kind` (`unknown_tenant`, `invalid_field`, ...).
        kind: String,
        /// The error's `message`.
        message: String,
    },
}

type Answer = Result<OutboundResult, ClientError>;

/// Outbound calls waiting for their answer, shared with the event pump.
#[derive(Default)]
struct Pending {
    /// Set when the host's event stream ended: no answer will ever come.
    closed: bool,
    waiters: HashMap<String, oneshot::Sender<Answer>>,
}

#[derive(Default)]
struct Shared {
    next_id: AtomicU64,
    pending: Mutex<Pending>,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{OUTBOUND_ID_PREFIX}{n}")
    }

    /// Registers a waiter before its command is sent, so the answer cannot
    /// arrive first; refused once the host has stopped.
    fn register(&self, id: &str) -> Result<oneshot::Receiver<Answer>, ClientError> {
        let mut pending = self.pending();
        if pending.closed {
            return Err(ClientError::HostStopped);
        }
        let (tx, rx) = oneshot::channel();
        pending.waiters.insert(id.to_string(), tx);
        Ok(rx)
    }

    fn forget(&self, id: &str) {
        self.pending().waiters.remove(id);
    }

    /// Hands an answer to its waiting call; returns the event when it is no one's.
    fn settle(&self, event: Event) -> Option<Event> {
        let id = match &event {
            Event::OutboundResult(r) => r.id.as_str(),
            Event::Error(e) => match e.id.as_ref().and_then(Value::as_str) {
                Some(id) => id,
                None => return Some(event),
            },
            _ => return Some(event),
        };
        let Some(waiter) = self.pending().waiters.remove(id) else {
            return Some(event);
        };
        match event {
            Event::OutboundResult(r) => match waiter.send(Ok(r)) {
                Ok(()) => None,
                // The caller gave up just now: the answer goes to the stream.
                Err(Ok(r)) => Some(Event::OutboundResult(r)),
                Err(Err(_)) => None,
            },
            Event::Error(e) => {
                let rejected = ClientError::Rejected {
                    tenant: e.tenant.clone(),
                    kind: e.error.kind.clone(),
                    message: e.error.message.clone(),
                };
                match waiter.send(Err(rejected)) {
                    Ok(()) => None,
                    Err(_) => Some(Event::Error(e)),
                }
            }
            other => Some(other),
        }
    }

    /// The host stopped: every waiting call learns it.
    fn close(&self) {
        let mut pending = self.pending();
        pending.closed = true;
        pending.waiters.clear();
    }
}

/// Removes a call's waiter when the call ends or is dropped (a caller's own
/// timeout), so a late answer is not held for no one.
struct Waiting<'a> {
    shared: &'a Shared,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.forget(&self.id);
    }
}

/// Reads the host's events: completes waiting outbound calls, forwards the rest.
async fn pump(mut from_host: Events, shared: Arc<Shared>, to_app: mpsc::Sender<Event>) {
    let mut app_gone = false;
    while let Some(line) = from_host.recv().await {
        let Some(event) = shared.settle(Event::from_line(line.as_str())) else {
            continue;
        };
        if !app_gone && to_app.send(event).await.is_err() {
            tracing::debug!("the client's event stream was dropped; later events are discarded");
            app_gone = true;
        }
    }
    shared.close();
    tracing::debug!("host event stream ended");
}

/// The command side of a [`Client`], cheap to clone: lets other tasks send
/// commands and await outbound results while one task reads the events.
#[derive(Clone)]
pub struct ClientHandle {
    host: HostHandle,
    shared: Arc<Shared>,
}

impl ClientHandle {
    /// Sends one command; its answer (if any) arrives as an event. Returns
    /// whether the host still runs ([`Flow::Stopped`] after [`Command::Shutdown`]).
    pub async fn send(&self, command: Command) -> Flow {
        self.host.send_command(command.to_value()).await
    }

    /// Sends `action` (an object with `op`) as an `outbound` for `tenant` and
    /// waits for its `outbound_result`. Concurrent calls each get their own.
    /// No client-side deadline: the component answers every request (a silent
    /// connector times out per `timeouts.outbound`); dropping the future gives up.
    pub async fn outbound(
        &self,
        tenant: &str,
        action: Value,
    ) -> Result<OutboundResult, ClientError> {
        self.outbound_on(tenant, None, action).await
    }

    /// Like [`ClientHandle::outbound`] for one `platform` of a multi-identity
    /// tenant.
    pub async fn outbound_on(
        &self,
        tenant: &str,
        platform: Option<&str>,
        action: Value,
    ) -> Result<OutboundResult, ClientError> {
        let id = self.shared.fresh_id();
        let answer = self.shared.register(&id)?;
        let _waiting = Waiting {
            shared: &self.shared,
            id: id.clone(),
        };
        let command = Command::Outbound {
            tenant: Some(tenant.to_string()),
            id,
            action,
            platform: platform.map(str::to_string),
        };
        self.host.send_command(command.to_value()).await;
        // A dropped sender means the pump ended: the host stopped.
        answer.await.unwrap_or(Err(ClientError::HostStopped))
    }

    /// Every tenant's counters, read directly (no `status` event is produced).
    pub fn status(&self) -> Vec<TenantStatus> {
        self.host.status()
    }

    /// The tenant ids, in configuration order.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.host.tenant_ids()
    }

    /// Every tenant goes idle (bounded), closes and reports `stopped`; returns
    /// when all have. The event stream then ends after the last events, and
    /// waiting or later outbound calls fail with [`ClientError::HostStopped`].
    /// While it runs the tenants' last events must be read to make room, unless
    /// they fit the stream's buffer (the host's `event_capacity`).
    pub async fn shutdown(&self) {
        self.host.shutdown().await;
    }

    /// The untyped handle, for what this API does not cover (raw command lines,
    /// [`HostHandle::status_board`]).
    pub fn host(&self) -> &HostHandle {
        &self.host
    }
}

/// The host embedded in-process with typed commands and events: the Rust
/// counterpart of running `relay-host run` as a sidecar.
///
/// A background task reads the host's events. An `outbound_result` (or an `error`
/// carrying the id) that answers a [`Client::outbound`] call goes to that call
/// only; every other event — including answers to outbound commands sent with
/// [`Client::send`], and late answers of calls that gave up — is forwarded to a
/// bounded stream ([`Client::next_event`], or [`Stream`]). Read it: when it is
/// full the task waits, the host's own queue fills, tenants wait, and waiting
/// outbound calls wait with them (the sidecar's stdout behaves the same).
pub struct Client {
    handle: ClientHandle,
    events: mpsc::Receiver<Event>,
}

impl Client {
    /// Starts the host ([`Host::start`]) and the event task. Must be called
    /// inside a tokio runtime.
    pub fn start(specs: Vec<TenantSpec>, options: HostOptions) -> Result<Client, HostError> {
        let (host, events) = Host::start(specs, options)?;
        Ok(Client::new(host, events))
    }

    /// Wraps a host started otherwise (e.g. [`Host::start_with_runtime`]). The
    /// client must get the host's event receiver before anything reads it. Must
    /// be called inside a tokio runtime.
    pub fn new(host: HostHandle, events: Events) -> Client {
        // As deep as the host's queue: the client adds no tighter bound.
        let (to_app, from_pump) = mpsc::channel(events.max_capacity().max(1));
        let shared = Arc::new(Shared::default());
        tokio::spawn(pump(events, shared.clone(), to_app));
        Client {
            handle: ClientHandle { host, shared },
            events: from_pump,
        }
    }

    /// A clone of the command side, for other tasks.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }

    /// See [`ClientHandle::send`].
    pub async fn send(&self, command: Command) -> Flow {
        self.handle.send(command).await
    }

    /// See [`ClientHandle::outbound`].
    pub async fn outbound(
        &self,
        tenant: &str,
        action: Value,
    ) -> Result<OutboundResult, ClientError> {
        self.handle.outbound(tenant, action).await
    }

    /// See [`ClientHandle::outbound_on`].
    pub async fn outbound_on(
        &self,
        tenant: &str,
        platform: Option<&str>,
        action: Value,
    ) -> Result<OutboundResult, ClientError> {
        self.handle.outbound_on(tenant, platform, action).await
    }

    /// See [`ClientHandle::status`].
    pub fn status(&self) -> Vec<TenantStatus> {
        self.handle.status()
    }

    /// See [`ClientHandle::tenant_ids`].
    pub fn tenant_ids(&self) -> Vec<String> {
        self.handle.tenant_ids()
    }

    /// See [`ClientHandle::shutdown`].
    pub async fn shutdown(&self) {
        self.handle.shutdown().await;
    }

    /// See [`ClientHandle::host`].
    pub fn host(&self) -> &HostHandle {
        self.handle.host()
    }

    /// The next event not taken by an outbound call; `None` once the host has
    /// shut down and every event was read. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Stream for Client {
    type Item = Event;

    /// The events of [`Client::next_event`], as a stream.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().events.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event;
    use serde_json::json;

    /// Parses `line` as the host wrote it and checks that serialising the typed
    /// event gives the same object back, and that the pump's direct parse
    /// (`from_line`) reads it as the `Value` route does.
    fn round_trip(line: &str) -> Event {
        let event: Event = serde_json::from_str(line).expect("an event");
        let wire: Value = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_value(&event).unwrap(), wire, "{line}");
        assert_eq!(Event::from_line(line), event, "from_line: {line}");
        event
    }

    fn line(v: Value) -> String {
        v.to_string()
    }

    #[test]
    fn state_events_from_host_and_component() {
        // Built by the host (event.rs), as a tenant task writes it.
        let host = line(event::for_tenant(
            "t1",
            event::state("stopped", Some("shutdown")),
        ));
        assert_eq!(
            round_trip(&host),
            Event::State(StateEvent {
                tenant: Some("t1".into()),
                state: LinkState::Stopped,
                retry_in_ms: None,
                reason: Some("shutdown".into()),
            })
        );
        // The component's backoff, with the delay.
        let e =
            round_trip(r#"{"event":"state","tenant":"t1","state":"backoff","retry_in_ms":2000}"#);
        let Event::State(s) = &e else { panic!("{e:?}") };
        assert_eq!((&s.state, s.retry_in_ms), (&LinkState::Backoff, Some(2000)));
        // The host's after a guest failure: reason before the delay.
        let e = round_trip(
            r#"{"event":"state","tenant":"t1","state":"backoff","reason":"guest instance failed (trap); rebuilt it, dialing again","retry_in_ms":500}"#,
        );
        let Event::State(s) = &e else { panic!("{e:?}") };
        assert_eq!(s.retry_in_ms, Some(500));
        assert!(s
            .reason
            .as_deref()
            .unwrap()
            .starts_with("guest instance failed"));
        for (name, state) in [
            ("connecting", LinkState::Connecting),
            ("handshaking", LinkState::Handshaking),
            ("ready", LinkState::Ready),
            ("idle", LinkState::Idle),
            ("handshake_failed", LinkState::HandshakeFailed),
            ("redial", LinkState::Redial),
            ("revoked", LinkState::Revoked),
        ] {
            let e = round_trip(&line(event::for_tenant("t1", event::state(name, None))));
            assert!(
                matches!(&e, Event::State(s) if s.state == state),
                "{name}: {e:?}"
            );
            assert_eq!(state.as_str(), name);
        }
        // A state this version does not know stays a typed state event.
        let e = round_trip(r#"{"event":"state","tenant":"t1","state":"hibernating"}"#);
        assert!(
            matches!(&e, Event::State(s) if s.state == LinkState::Other("hibernating".into())),
            "{e:?}"
        );
    }

    #[test]
    fn ready_and_descriptor() {
        let e = round_trip(
            r#"{"event":"ready","tenant":"default","descriptor":{"contract_version":1,"platform":"discord","max_message_length":2000,"ratio":1.50}}"#,
        );
        let Event::Ready(r) = &e else { panic!("{e:?}") };
        assert_eq!(r.tenant.as_deref(), Some("default"));
        assert_eq!(r.descriptor["platform"], "discord");
        // arbitrary_precision: the number is kept as written.
        assert_eq!(r.descriptor["ratio"].to_string(), "1.50");

        let e = round_trip(
            r#"{"event":"descriptor","tenant":"default","platform":"telegram","descriptor":{"contract_version":1,"platform":"telegram"}}"#,
        );
        let Event::Descriptor(d) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(d.platform, "telegram");
        assert_eq!(d.descriptor["platform"], "telegram");
    }

    #[test]
    fn messages_with_and_without_buffer_id() {
        let e = round_trip(
            r#"{"event":"message","tenant":"default","message":{"text":"hi","source":{"platform":"discord","chat_id":"c1"}},"buffer_id":"b7"}"#,
        );
        let Event::Message(m) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(m.buffer_id.as_deref(), Some("b7"));
        assert_eq!(m.message["text"], "hi");
        // A live delivery: `buffer_id` is written as null, and stays so.
        let e = round_trip(
            r#"{"event":"message","tenant":"default","message":{"text":"yo"},"buffer_id":null}"#,
        );
        let Event::Message(m) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(m.buffer_id, None);
    }

    #[test]
    fn interrupt_prompt_stale_and_idle() {
        let e = round_trip(
            r#"{"event":"interrupt","tenant":"default","session_key":"sk-3","chat_id":"c1"}"#,
        );
        assert_eq!(
            e,
            Event::Interrupt(InterruptEvent {
                tenant: Some("default".into()),
                session_key: "sk-3".into(),
                chat_id: "c1".into(),
            })
        );
        let e = round_trip(
            r#"{"event":"prompt_stale","tenant":"default","chat_id":"c1","thread_id":null,"prompt_id":"p9"}"#,
        );
        let Event::PromptStale(p) = &e else {
            panic!("{e:?}")
        };
        assert_eq!((p.prompt_id.as_str(), p.thread_id.as_deref()), ("p9", None));
        let e = round_trip(
            r#"{"event":"prompt_stale","tenant":"default","chat_id":"c1","thread_id":"th1","prompt_id":"p9"}"#,
        );
        assert!(matches!(&e, Event::PromptStale(p) if p.thread_id.as_deref() == Some("th1")));

        for acked in [true, false] {
            let e = round_trip(&line(event::for_tenant("t2", event::idle(acked))));
            assert_eq!(
                e,
                Event::Idle(IdleEvent {
                    tenant: Some("t2".into()),
                    acked
                })
            );
        }
    }

    #[test]
    fn outbound_results() {
        let e = round_trip(
            r#"{"event":"outbound_result","tenant":"default","id":"a1","result":{"success":true,"message_id":"m1"}}"#,
        );
        let Event::OutboundResult(r) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(r.id, "a1");
        assert!(r.success() && !r.ambiguous());
        assert_eq!((r.message_id(), r.error()), (Some("m1"), None));
        // The host's own answer for a lost guest: ambiguous (D17).
        let lost = event::outbound_failure("a2", crate::tenant::CONNECTION_LOST);
        let e = round_trip(&line(event::for_tenant("t1", lost)));
        let Event::OutboundResult(r) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(r.tenant.as_deref(), Some("t1"));
        assert!(!r.success() && r.ambiguous());
        assert_eq!(r.error(), Some(crate::tenant::CONNECTION_LOST));
    }

    #[test]
    fn errors_with_and_without_tenant_and_id() {
        // An unroutable line: no tenant, no id.
        let e = round_trip(&line(Value::Object(event::error(
            "malformed_json",
            "command is not JSON",
        ))));
        let Event::Error(err) = &e else {
            panic!("{e:?}")
        };
        assert_eq!((err.tenant.as_deref(), &err.id), (None, &None));
        assert_eq!(err.error.kind, "malformed_json");
        assert_eq!(e.tenant(), None);
        // Routed, with the command's id.
        let mut routed = event::error("stopped", "tenant `t1` is stopped");
        routed.insert("id".into(), json!("x1"));
        let e = round_trip(&line(event::for_tenant("t1", routed)));
        let Event::Error(err) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(err.id, Some(json!("x1")));
        assert_eq!(err.error.message, "tenant `t1` is stopped");
        assert_eq!(e.tenant(), Some("t1"));
        // An id of another JSON type is copied as it was.
        let e = round_trip(
            r#"{"event":"error","error":{"kind":"unknown_tenant","message":"unknown tenant `q`"},"id":7}"#,
        );
        assert!(
            matches!(&e, Event::Error(err) if err.id == Some(json!(7))),
            "{e:?}"
        );
    }

    #[test]
    fn status_mirrors_tenant_status() {
        // Built as app.rs answers `status`: the serialised TenantStatus list.
        let mut descriptors = BTreeMap::new();
        descriptors.insert("discord".to_string(), json!({"platform": "discord"}));
        let tenants = vec![
            TenantStatus {
                tenant: "t1".into(),
                state: "ready".into(),
                connected_since_ms: Some(1_700_000_000_000),
                frames_in: 3,
                frames_out: 4,
                pending_outbound: 1,
                restarts: 2,
                descriptors,
            },
            TenantStatus {
                tenant: "t2".into(),
                state: "connecting".into(),
                ..TenantStatus::default()
            },
        ];
        let wire = json!({"event": "status", "tenants": serde_json::to_value(&tenants).unwrap()});
        // Every field of TenantStatus survives: a field added there fails here.
        let e = round_trip(&wire.to_string());
        let Event::Status(s) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(s.tenants.len(), 2);
        assert_eq!(s.tenants[0].state, LinkState::Ready);
        assert_eq!(s.tenants[0].connected_since_ms, Some(1_700_000_000_000));
        assert_eq!((s.tenants[0].frames_in, s.tenants[0].restarts), (3, 2));
        assert_eq!(s.tenants[1].connected_since_ms, None);
        assert_eq!(e.tenant(), None);
    }

    #[test]
    fn a_reloaded_event_is_typed() {
        // As app.rs writes it for a `reload` command with an id.
        let line = r#"{"event":"reloaded","id":"r1","started":["d"],"stopped":["b"],"restarted":["c"],"unchanged":["a"]}"#;
        let e = round_trip(line);
        let Event::Reloaded(r) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(r.id, Some(json!("r1")));
        assert_eq!(
            (
                &r.started[..],
                &r.stopped[..],
                &r.restarted[..],
                &r.unchanged[..]
            ),
            (
                &["d".to_string()][..],
                &["b".to_string()][..],
                &["c".to_string()][..],
                &["a".to_string()][..]
            )
        );
        assert_eq!((e.name(), e.tenant()), ("reloaded", None));
    }

    #[test]
    fn unknown_and_unreadable_events_are_kept_whole() {
        for text in [
            r#"{"event":"future_thing","tenant":"t1","n":1.50}"#,
            // A known name with a field of another type.
            r#"{"event":"idle","tenant":"t1","acked":"yes"}"#,
            // A known name missing a required field.
            r#"{"event":"outbound_result","tenant":"t1","result":{}}"#,
            r#"{"no_event":true}"#,
            r#"[1,2]"#,
        ] {
            let wire: Value = serde_json::from_str(text).unwrap();
            let e = round_trip(text);
            assert_eq!(e, Event::Other(wire), "{text}");
        }
        let e: Event = serde_json::from_str(r#"{"event":"future_thing","tenant":"t1"}"#).unwrap();
        assert_eq!((e.name(), e.tenant()), ("future_thing", Some("t1")));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"future_thing","tenant":"t1"}"#
        );
    }

    #[test]
    fn serialised_events_keep_the_host_field_order() {
        let e = Event::OutboundResult(OutboundResult {
            tenant: Some("default".into()),
            id: "a1".into(),
            result: json!({"success": true, "message_id": "m1"}),
        });
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"outbound_result","tenant":"default","id":"a1","result":{"success":true,"message_id":"m1"}}"#
        );
    }

    #[test]
    fn commands_serialise_to_the_documented_json() {
        let t = || Some("t1".to_string());
        let cases = [
            (
                Command::Outbound {
                    tenant: t(),
                    id: "a1".into(),
                    action: json!({"op": "send", "chat_id": "c1", "content": "hi"}),
                    platform: None,
                },
                json!({"op": "outbound", "tenant": "t1", "id": "a1",
                       "action": {"op": "send", "chat_id": "c1", "content": "hi"}}),
            ),
            (
                Command::Outbound {
                    tenant: None,
                    id: "a2".into(),
                    action: json!({"op": "typing", "chat_id": "c1"}),
                    platform: Some("telegram".into()),
                },
                json!({"op": "outbound", "id": "a2", "action": {"op": "typing", "chat_id": "c1"},
                       "platform": "telegram"}),
            ),
            (
                Command::Interrupt {
                    tenant: t(),
                    session_key: "sk".into(),
                    reason: Some("user pressed stop".into()),
                },
                json!({"op": "interrupt", "tenant": "t1", "session_key": "sk",
                       "reason": "user pressed stop"}),
            ),
            (
                Command::Interrupt {
                    tenant: None,
                    session_key: "sk".into(),
                    reason: None,
                },
                json!({"op": "interrupt", "session_key": "sk"}),
            ),
            (
                Command::Ack {
                    tenant: t(),
                    buffer_id: "b7".into(),
                },
                json!({"op": "ack", "tenant": "t1", "buffer_id": "b7"}),
            ),
            (
                Command::Nack {
                    tenant: t(),
                    buffer_id: "b7".into(),
                },
                json!({"op": "nack", "tenant": "t1", "buffer_id": "b7"}),
            ),
            (
                Command::GoingIdle { tenant: t() },
                json!({"op": "going_idle", "tenant": "t1"}),
            ),
            (
                Command::HoldRedial { tenant: t() },
                json!({"op": "hold_redial", "tenant": "t1"}),
            ),
            (
                Command::ReleaseRedial { tenant: None },
                json!({"op": "release_redial"}),
            ),
            (Command::Status, json!({"op": "status"})),
            (Command::Shutdown, json!({"op": "shutdown"})),
            (
                Command::Reload {
                    id: Some("r1".into()),
                },
                json!({"op": "reload", "id": "r1"}),
            ),
        ];
        for (command, wire) in cases {
            assert_eq!(command.to_value(), wire, "{command:?}");
            let back: Command = serde_json::from_value(wire.clone()).unwrap();
            assert_eq!(back, command, "{wire}");
        }
        // `null` counts as absent, as the host reads it.
        let c: Command =
            serde_json::from_str(r#"{"op":"ack","tenant":null,"buffer_id":"b1"}"#).unwrap();
        assert_eq!(
            c,
            Command::Ack {
                tenant: None,
                buffer_id: "b1".into()
            }
        );
    }

    fn result_event(id: &str) -> Event {
        Event::OutboundResult(OutboundResult {
            tenant: Some("t1".into()),
            id: id.into(),
            result: json!({"success": true, "message_id": format!("m-{id}")}),
        })
    }

    #[tokio::test]
    async fn answers_reach_their_own_waiter() {
        let shared = Shared::default();
        let (a, b) = (shared.fresh_id(), shared.fresh_id());
        assert_ne!(a, b);
        assert!(a.starts_with(OUTBOUND_ID_PREFIX));
        let (rx_a, rx_b) = (shared.register(&a).unwrap(), shared.register(&b).unwrap());
        // Answered out of order; an answer for no waiter passes through.
        assert_eq!(shared.settle(result_event(&b)), None);
        assert_eq!(
            shared.settle(result_event("app-1")),
            Some(result_event("app-1"))
        );
        assert_eq!(shared.settle(result_event(&a)), None);
        let (ra, rb) = (rx_a.await.unwrap().unwrap(), rx_b.await.unwrap().unwrap());
        assert_eq!(
            (ra.id.as_str(), ra.message_id()),
            (a.as_str(), Some(format!("m-{a}").as_str()))
        );
        assert_eq!(
            (rb.id.as_str(), rb.message_id()),
            (b.as_str(), Some(format!("m-{b}").as_str()))
        );
        // A second answer under a settled id is no one's: it goes to the stream.
        assert_eq!(shared.settle(result_event(&a)), Some(result_event(&a)));
    }

    #[tokio::test]
    async fn errors_with_a_waiting_id_reject_the_call() {
        let shared = Shared::default();
        let id = shared.fresh_id();
        let rx = shared.register(&id).unwrap();
        let unrelated = Event::Error(ErrorEvent {
            tenant: None,
            error: ErrorBody {
                kind: "malformed_json".into(),
                message: "command is not JSON".into(),
            },
            id: None,
        });
        assert_eq!(shared.settle(unrelated.clone()), Some(unrelated));
        let rejection = Event::Error(ErrorEvent {
            tenant: None,
            error: ErrorBody {
                kind: "unknown_tenant".into(),
                message: "unknown tenant `q`".into(),
            },
            id: Some(json!(id)),
        });
        assert_eq!(shared.settle(rejection), None);
        assert_eq!(
            rx.await.unwrap(),
            Err(ClientError::Rejected {
                tenant: None,
                kind: "unknown_tenant".into(),
                message: "unknown tenant `q`".into(),
            })
        );
    }

    #[tokio::test]
    async fn a_stopped_host_fails_waiting_and_later_calls() {
        let shared = Shared::default();
        let id = shared.fresh_id();
        let rx = shared.register(&id).unwrap();
        shared.close();
        assert!(rx.await.is_err(), "the waiter learns that no answer comes");
        assert_eq!(shared.register("x").unwrap_err(), ClientError::HostStopped);
    }

    #[tokio::test]
    async fn a_call_that_gave_up_leaves_its_answer_to_the_stream() {
        let shared = Shared::default();
        let id = shared.fresh_id();
        let rx = shared.register(&id).unwrap();
        drop(Waiting {
            shared: &shared,
            id: id.clone(),
        });
        drop(rx);
        assert!(shared.pending().waiters.is_empty());
        assert_eq!(shared.settle(result_event(&id)), Some(result_event(&id)));
    }
}
