//! What a [`Link`](super::Link) is built from, and every default in one place:
//! a host passes what its operator configured and leaves the rest `None`, so one
//! configuration behaves the same in every host (contract 0.2, wit/relay.wit).

use serde_json::Value;

use crate::error::DecodeError;
use crate::session::{self, backoff, Caps, Identity};

/// A WebSocket ping is sent this often while a socket is up.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 30_000;
/// No pong this long after the first unanswered ping: the link is dead.
pub const DEFAULT_PONG_TIMEOUT_MS: u64 = 60_000;
/// The close code a host sends when the component declares the link dead
/// (RFC 6455: 1011, the endpoint met an unexpected condition).
pub const DEFAULT_DEAD_LINK_CLOSE_CODE: u16 = 1011;
/// The largest WebSocket message a host accepts from the connector, unless
/// `max_line_bytes` asks for more (then four lines' worth).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 4 << 20;
/// How long `shutdown` waits for the connector's `going_idle_ack` by default.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// How long a host lets a close handshake take before it drops the socket.
pub const DEFAULT_CLOSE_WAIT_MS: u64 = 2_000;

/// Every optional field of a link's configuration; `None` takes the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub handshake_timeout_ms: Option<u64>,
    pub outbound_timeout_ms: Option<u64>,
    pub going_idle_timeout_ms: Option<u64>,
    pub max_line_bytes: Option<u32>,
    pub prompt_nonce: Option<String>,
    pub reconnect_jitter_percent: Option<u8>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub stable_connection_ms: Option<u64>,
    pub token_ttl_seconds: Option<i64>,
    pub ping_interval_ms: Option<u64>,
    pub pong_timeout_ms: Option<u64>,
    pub dead_link_close_code: Option<u16>,
    pub max_message_bytes: Option<u32>,
    pub close_wait_ms: Option<u64>,
    pub caps: Option<Caps>,
}

/// A link's configuration as a host hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub identities: Vec<Identity>,
    /// The connector's base URL as configured (`https://…`, `wss://…`); the
    /// component derives the WebSocket URL to dial from it. Empty: the host dials
    /// nothing itself (conformance runners, in-memory tests).
    pub url: String,
    /// Written as `"tenant"` into every event line (the sidecar's events), or none.
    pub tenant: Option<String>,
    /// Request ids and backoff jitter come from this: hosts pass random bits in
    /// production and a fixed value for reproducible runs.
    pub seed: u64,
    /// Unix time in ms minus the monotonic `now_ms` the host passes, so upgrade
    /// tokens (which expire in wall time) can be minted without a clock.
    pub unix_offset_ms: i64,
    pub gateway_id: Option<String>,
    pub secret: Option<String>,
    pub options: Options,
}

/// The settings in force: the configuration with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub connection: session::Config,
    pub caps: Caps,
    pub url: String,
    pub dial_url: String,
    pub tenant: Option<String>,
    pub unix_offset_ms: i64,
    /// 0 switches keepalive off.
    pub ping_interval_ms: u64,
    pub pong_timeout_ms: u64,
    pub dead_link_close_code: u16,
    pub max_message_bytes: u32,
    pub close_wait_ms: u64,
}

impl Settings {
    /// Applies the defaults; fails on what no link can run with.
    pub fn new(config: LinkConfig) -> Result<Self, DecodeError> {
        let o = config.options;
        let mut c = session::Config::new(config.identities);
        c.handshake_timeout_ms = o.handshake_timeout_ms.unwrap_or(c.handshake_timeout_ms);
        c.outbound_timeout_ms = o.outbound_timeout_ms.unwrap_or(c.outbound_timeout_ms);
        c.going_idle_timeout_ms = o.going_idle_timeout_ms.unwrap_or(c.going_idle_timeout_ms);
        c.max_line_bytes = o.max_line_bytes.map_or(c.max_line_bytes, |n| n as usize);
        c.prompt_nonce = o.prompt_nonce.unwrap_or_default();
        c.seed = config.seed;
        c.reconnect_jitter_percent = o
            .reconnect_jitter_percent
            .unwrap_or(backoff::DEFAULT_JITTER_PERCENT);
        c.backoff_base_ms = o.backoff_base_ms.unwrap_or(c.backoff_base_ms);
        c.backoff_max_ms = o.backoff_max_ms.unwrap_or(c.backoff_max_ms);
        c.stable_connection_ms = o.stable_connection_ms.unwrap_or(c.stable_connection_ms);
        c.token_ttl_seconds = o.token_ttl_seconds.unwrap_or(c.token_ttl_seconds);
        c.gateway_id = config.gateway_id;
        c.secret = config.secret;
        if c.reconnect_jitter_percent > 100 {
            return Err(DecodeError::invalid(
                "reconnect_jitter_percent",
                "must be at most 100",
            ));
        }
        if c.backoff_max_ms < c.backoff_base_ms {
            return Err(DecodeError::invalid(
                "backoff_max_ms",
                "must be at least backoff_base_ms",
            ));
        }
        // Room for a full line plus framing: four lines, at least the default.
        let max_message_bytes = o.max_message_bytes.unwrap_or_else(|| {
            u32::try_from(c.max_line_bytes.saturating_mul(4))
                .unwrap_or(u32::MAX)
                .max(DEFAULT_MAX_MESSAGE_BYTES)
        });
        if max_message_bytes == 0 {
            return Err(DecodeError::invalid(
                "max_message_bytes",
                "must be positive",
            ));
        }
        let pong_timeout_ms = o.pong_timeout_ms.unwrap_or(DEFAULT_PONG_TIMEOUT_MS);
        let ping_interval_ms = o.ping_interval_ms.unwrap_or(DEFAULT_PING_INTERVAL_MS);
        if ping_interval_ms > 0 && pong_timeout_ms == 0 {
            return Err(DecodeError::invalid(
                "pong_timeout_ms",
                "must be positive while keepalive is on",
            ));
        }
        let dial_url = if config.url.is_empty() {
            String::new()
        } else {
            crate::url::dial_url(&config.url)
        };
        Ok(Settings {
            connection: c,
            caps: o.caps.unwrap_or_default(),
            url: config.url,
            dial_url,
            tenant: config.tenant,
            unix_offset_ms: config.unix_offset_ms,
            ping_interval_ms,
            pong_timeout_ms,
            dead_link_close_code: o
                .dead_link_close_code
                .unwrap_or(DEFAULT_DEAD_LINK_CLOSE_CODE),
            max_message_bytes,
            close_wait_ms: o.close_wait_ms.unwrap_or(DEFAULT_CLOSE_WAIT_MS),
        })
    }

    /// The settings as JSON (for a host's `--print-config` or logs; no secret).
    pub fn to_json(&self) -> Value {
        let c = &self.connection;
        serde_json::json!({
            "identities": c.identities.iter().map(|i| serde_json::json!({
                "platform": i.platform, "bot_id": i.bot_id,
            })).collect::<Vec<_>>(),
            "url": self.url,
            "dial_url": self.dial_url,
            "tenant": self.tenant,
            "handshake_timeout_ms": c.handshake_timeout_ms,
            "outbound_timeout_ms": c.outbound_timeout_ms,
            "going_idle_timeout_ms": c.going_idle_timeout_ms,
            "max_line_bytes": c.max_line_bytes,
            "reconnect_jitter_percent": c.reconnect_jitter_percent,
            "backoff_base_ms": c.backoff_base_ms,
            "backoff_max_ms": c.backoff_max_ms,
            "stable_connection_ms": c.stable_connection_ms,
            "token_ttl_seconds": c.token_ttl_seconds,
            "ping_interval_ms": self.ping_interval_ms,
            "pong_timeout_ms": self.pong_timeout_ms,
            "dead_link_close_code": self.dead_link_close_code,
            "max_message_bytes": self.max_message_bytes,
            "close_wait_ms": self.close_wait_ms,
            "credentials": c.gateway_id.is_some() && c.secret.is_some(),
        })
    }
}
