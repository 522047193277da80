//! One tenant's live guest: a fresh sandbox, its `connection` resource and the URL
//! the component says to dial. Rebuilt from scratch after the guest dies.

use crate::sandbox::{
    ConnectionHandle, DecodeError, Identity, Runtime, Sandbox, SandboxError, SessionConfig,
};
use crate::spec::TenantSpec;

/// Why an instance could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The component refused the configuration (no identity, zero limits, ...).
    #[error("the component rejected the configuration: {0}")]
    Config(String),
    /// The dial URL cannot be dialed.
    #[error("{0}")]
    Url(String),
    /// The instance died while being set up.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// A sandbox with its connection.
pub struct Instance {
    pub sandbox: Sandbox,
    pub conn: ConnectionHandle,
    /// The WebSocket URL (the component's `dial-url` of the base URL).
    pub url: String,
}

impl Instance {
    /// Instantiates the component and creates the connection. `generation` varies
    /// the seed, so a rebuilt instance never reuses its predecessor's request ids.
    pub fn build(
        runtime: &Runtime,
        spec: &TenantSpec,
        generation: u64,
    ) -> Result<Instance, BuildError> {
        let mut sandbox = runtime.instantiate(spec.limits)?;
        let url = sandbox.dial_url(&spec.url)?;
        crate::link::check_url(&url).map_err(|e| BuildError::Url(e.0))?;
        // Built here and handed straight to the guest: it holds the secret, so it
        // is never logged or kept.
        let config = SessionConfig {
            identities: spec
                .identities
                .iter()
                .map(|i| Identity {
                    platform: i.platform.clone(),
                    bot_id: i.bot_id.clone(),
                    command_manifest: i.command_manifest.clone(),
                })
                .collect(),
            handshake_timeout_ms: millis(spec.timeouts.handshake),
            outbound_timeout_ms: millis(spec.timeouts.outbound),
            going_idle_timeout_ms: millis(spec.timeouts.going_idle),
            max_line_bytes: spec.max_line_bytes,
            prompt_nonce: spec.prompt_nonce.clone(),
            seed: spec
                .seed
                .wrapping_add(generation.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            reconnect_jitter_percent: spec.reconnect_jitter_percent,
            backoff_base_ms: millis(spec.timeouts.backoff_base),
            backoff_max_ms: millis(spec.timeouts.backoff_max),
            stable_connection_ms: millis(spec.timeouts.stable_connection),
            gateway_id: spec.gateway_id.clone(),
            secret: spec.secret.as_ref().map(|s| s.expose().to_string()),
            token_ttl_seconds: spec.token_ttl_seconds,
        };
        let conn = sandbox
            .create_connection(&config)?
            .map_err(|e: DecodeError| BuildError::Config(e.message))?;
        Ok(Instance { sandbox, conn, url })
    }
}

fn millis(d: std::time::Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
