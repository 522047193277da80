//! What one tenant is configured with, independent of where the configuration came
//! from (flags, a TOML file, or a program embedding the host).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::link::{self, DialOptions, TlsError};
use crate::sandbox::Limits;
use crate::secret::Secret;

/// One identity the tenant fronts (one `hello`); the first is the default.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentitySpec {
    /// The chat platform this identity is on (e.g. `discord`), as `hello` names it.
    pub platform: String,
    /// The bot's id on that platform, sent in `hello` with the platform.
    pub bot_id: String,
    /// Slash-command manifest as JSON text (a JSON array), sent in `hello`.
    pub command_manifest: Option<String>,
}

/// Deadlines of one tenant. `None` leaves a setting to the component, whose
/// defaults are the only ones (wit/relay.wit `options`); only the dial deadline,
/// which is I/O, is the host's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// No descriptor within this after the socket opened: handshake failed.
    pub handshake: Option<Duration>,
    /// No `outbound_result` within this: the request is answered as timed out.
    pub outbound: Option<Duration>,
    /// No `going_idle_ack` within this: `idle` with `acked: false`.
    pub going_idle: Option<Duration>,
    /// TCP + TLS + WebSocket upgrade must finish within this (30 s by default).
    pub dial: Duration,
    /// A WebSocket ping is sent this often while the socket is up.
    pub ping_interval: Option<Duration>,
    /// No pong within this after a ping: the link is dead.
    pub pong_timeout: Option<Duration>,
    /// The first reconnect delay; it doubles per failure (D11).
    pub backoff_base: Option<Duration>,
    /// The largest reconnect delay before jitter (D11).
    pub backoff_max: Option<Duration>,
    /// A connection this long past its handshake restarts the backoff ladder.
    pub stable_connection: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: None,
            outbound: None,
            going_idle: None,
            dial: Duration::from_secs(30),
            ping_interval: None,
            pong_timeout: None,
            backoff_base: None,
            backoff_max: None,
            stable_connection: None,
        }
    }
}

/// Everything a tenant needs. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    /// The `tenant` of every event and command.
    pub id: String,
    /// The connector base URL as configured; the component derives the dial URL.
    pub url: String,
    /// The identities this tenant fronts, one `hello` each; the first is the
    /// default. The component refuses a tenant with none.
    pub identities: Vec<IdentitySpec>,
    /// Upgrade credentials: a token is presented only when both are set.
    pub gateway_id: Option<String>,
    /// The shared secret the upgrade token is signed with (see `gateway_id`);
    /// kept as a [`Secret`] so it never reaches a log.
    pub secret: Option<Secret>,
    /// Lifetime of an upgrade token, in seconds (the component's default: 300);
    /// the component mints a fresh token for each dial.
    pub token_ttl_seconds: Option<i64>,
    /// This gateway's prompt-owner nonce (the component's default: "").
    pub prompt_nonce: Option<String>,
    /// Seed of request ids and backoff jitter (fixed for reproducible runs).
    pub seed: u64,
    /// Backoff jitter: a delay d is drawn from `[d − d·p/100, d]` (the
    /// component's default is D11's 50; 0 = exact delays).
    pub reconnect_jitter_percent: Option<u8>,
    /// D12: longest frame line accepted (the component's default: 1 MiB).
    pub max_line_bytes: Option<u32>,
    /// Largest WebSocket message accepted, bounding host memory per socket (the
    /// component's default: four lines, at least 4 MiB).
    pub max_message_bytes: Option<u32>,
    /// The tenant's deadlines and backoff timings.
    pub timeouts: Timeouts,
    /// Memory cap and CPU deadline of the tenant's sandbox.
    pub limits: Limits,
    /// TLS trust for `wss://` (webpki roots plus any extra roots).
    pub tls: Arc<rustls::ClientConfig>,
    /// A component file (`.wasm`) to run instead of the embedded one; tenants
    /// naming the same file share one compiled runtime.
    pub component: Option<PathBuf>,
}

impl TenantSpec {
    /// A spec with the protocol's defaults, trusting the webpki roots only. Its
    /// `tls` is the one an earlier spec of the same id still uses, if any (so a
    /// spec made again compares equal, [`TenantSpec::differences`]). Its `seed`
    /// is random: set it, or copy the running spec's, for a reload to see no change.
    pub fn new(
        id: impl Into<String>,
        url: impl Into<String>,
        identities: Vec<IdentitySpec>,
    ) -> Result<Self, TlsError> {
        let id = id.into();
        Ok(TenantSpec {
            tls: link::tenant_client_config(&id, &[])?,
            id,
            url: url.into(),
            identities,
            gateway_id: None,
            secret: None,
            token_ttl_seconds: None,
            prompt_nonce: None,
            seed: default_seed(),
            reconnect_jitter_percent: None,
            max_line_bytes: None,
            max_message_bytes: None,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            component: None,
        })
    }

    /// The names of the fields in which `other` differs from `self`, in
    /// declaration order; empty when a reload keeps the tenant running as it is
    /// (docs/CONFIG.md, "Reloading"). Every field counts, the secret by value (only
    /// the name `secret` is ever reported, never a value); `tls` by identity (the
    /// same `Arc`: the configuration loader hands an unchanged tenant the
    /// `ClientConfig` it already runs with), `component` by path (the host also
    /// compares the file's contents).
    pub fn differences(&self, other: &TenantSpec) -> Vec<&'static str> {
        let mut diff = Vec::new();
        let mut check = |same: bool, name: &'static str| {
            if !same {
                diff.push(name);
            }
        };
        check(self.id == other.id, "id");
        check(self.url == other.url, "url");
        check(self.identities == other.identities, "identities");
        check(self.gateway_id == other.gateway_id, "gateway_id");
        check(self.secret == other.secret, "secret");
        check(
            self.token_ttl_seconds == other.token_ttl_seconds,
            "token_ttl_seconds",
        );
        check(self.prompt_nonce == other.prompt_nonce, "prompt_nonce");
        check(self.seed == other.seed, "seed");
        check(
            self.reconnect_jitter_percent == other.reconnect_jitter_percent,
            "reconnect_jitter_percent",
        );
        check(
            self.max_line_bytes == other.max_line_bytes,
            "max_line_bytes",
        );
        check(
            self.max_message_bytes == other.max_message_bytes,
            "max_message_bytes",
        );
        check(self.timeouts == other.timeouts, "timeouts");
        check(
            self.limits.memory_bytes == other.limits.memory_bytes
                && self.limits.cpu_per_call == other.limits.cpu_per_call,
            "limits",
        );
        check(Arc::ptr_eq(&self.tls, &other.tls), "tls");
        check(self.component == other.component, "component");
        diff
    }

    /// How the tenant dials; the message limit is the component's setting.
    pub(crate) fn dial_options(&self, max_message_bytes: usize) -> DialOptions {
        DialOptions {
            tls: self.tls.clone(),
            timeout: self.timeouts.dial,
            max_message_bytes,
        }
    }
}

/// A seed that differs between runs (request ids should not repeat across restarts
/// of the process); configure `seed` for reproducible runs.
fn default_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
