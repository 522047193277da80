//! The connection state machine (sans-IO): bytes, time and application calls in,
//! effects out. See docs/ARCHITECTURE.md for the state diagram.
//!
//! Rules: PROTOCOL.md §5, §6, §11.5, §11.6, §12; PORT-DECISIONS D2, D9–D13; and the
//! settled points of ../shared/vectors/README.md (sessions.json).

use serde_json::Value;

use crate::error::DecodeError;

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
    /// Backoff jitter in percent (D11: up to 20); 0 gives exact delays.
    pub reconnect_jitter_percent: u8,
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
            reconnect_jitter_percent: 20,
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

/// What the host must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write this frame (one line ending in `\n`) as one WebSocket text message.
    Send(String),
    /// Deliver this APP-PROTOCOL event (without `tenant`) to the application.
    Emit(Value),
    /// Call `timer_fired(id)` at monotonic time `at_ms`.
    SetTimer { id: u64, at_ms: u64 },
    /// Forget timer `id`.
    CancelTimer(u64),
    /// Close the socket (the reason is for logs); the host then reports `closed`.
    CloseLink(String),
    /// Dial again after this many milliseconds.
    Reconnect(u64),
    /// Dial again at once with a fresh token (D11's one re-dial).
    Redial,
    /// Never dial again.
    GiveUp(String),
    /// A log record; never contains secrets or tokens.
    Log(Level, String),
}

/// One link to the connector across all its re-dials.
#[derive(Debug)]
pub struct Connection {
    config: Config,
}

impl Connection {
    /// Validates the config (at least one identity, non-zero limits).
    pub fn new(config: Config) -> Result<Self, DecodeError> {
        Ok(Connection { config })
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

    /// The socket is up.
    pub fn open(&mut self, now_ms: u64) -> Vec<Effect> {
        let _ = now_ms;
        todo!()
    }

    /// One WebSocket message (text or binary: the bytes go into the same buffer).
    pub fn receive(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Effect> {
        let _ = (now_ms, bytes);
        todo!()
    }

    /// A timer is due.
    pub fn timer_fired(&mut self, now_ms: u64, id: u64) -> Vec<Effect> {
        let _ = (now_ms, id);
        todo!()
    }

    /// The application's `outbound` command.
    pub fn outbound(
        &mut self,
        now_ms: u64,
        id: &str,
        action: Value,
        platform: Option<String>,
    ) -> Vec<Effect> {
        let _ = (now_ms, id, action, platform);
        todo!()
    }

    /// The application's `interrupt` command.
    pub fn interrupt(
        &mut self,
        now_ms: u64,
        session_key: &str,
        reason: Option<String>,
    ) -> Vec<Effect> {
        let _ = (now_ms, session_key, reason);
        todo!()
    }

    /// The application durably took a buffered delivery.
    pub fn ack(&mut self, now_ms: u64, buffer_id: &str) -> Vec<Effect> {
        let _ = (now_ms, buffer_id);
        todo!()
    }

    /// The application's `going_idle` command.
    pub fn going_idle(&mut self, now_ms: u64) -> Vec<Effect> {
        let _ = now_ms;
        todo!()
    }

    /// An APP-PROTOCOL command object (without `tenant`): `outbound`, `interrupt`,
    /// `ack`, `going_idle`. Unknown ops and missing fields are typed errors.
    pub fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Effect>, DecodeError> {
        let _ = (now_ms, command);
        todo!()
    }

    /// The socket ended (or a dial failed: a close with no `open` since the last).
    pub fn closed(&mut self, now_ms: u64, code: Option<u16>, reason: &str) -> Vec<Effect> {
        let _ = (now_ms, code, reason);
        todo!()
    }

    /// Counters for the host's `status` answer.
    pub fn stats(&self) -> Value {
        todo!()
    }
}
