//! One tenant's live guest: a fresh sandbox, its `link` resource and the settings
//! the component says are in force. Rebuilt from scratch after the guest dies.

use crate::clock::Clock;
use crate::sandbox::{
    DecodeError, Identity, LinkConfig, LinkHandle, Options, Runtime, Sandbox, SandboxError,
    Settings,
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

/// A sandbox with its link.
pub struct Instance {
    pub sandbox: Sandbox,
    pub link: LinkHandle,
    /// The settings in force (the component's defaults applied).
    pub settings: Settings,
}

impl Instance {
    /// Instantiates the component and creates the connection. `generation` varies
    /// the seed, so a rebuilt instance never reuses its predecessor's request ids.
    pub async fn build(
        runtime: &Runtime,
        spec: &TenantSpec,
        generation: u64,
        clock: Clock,
    ) -> Result<Instance, BuildError> {
        let mut sandbox = runtime.instantiate(spec.limits)?;
        // Built here and handed straight to the guest: it holds the secret, so it
        // is never logged or kept. What the spec leaves unset is the component's
        // to default (wit/relay.wit `options`).
        let config = LinkConfig {
            identities: spec
                .identities
                .iter()
                .map(|i| Identity {
                    platform: i.platform.clone(),
                    bot_id: i.bot_id.clone(),
                    command_manifest: i.command_manifest.clone(),
                })
                .collect(),
            url: spec.url.clone(),
            tenant: Some(spec.id.clone()),
            seed: spec
                .seed
                .wrapping_add(generation.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            unix_offset_ms: clock.unix_offset_ms(),
            gateway_id: spec.gateway_id.clone(),
            secret: spec.secret.as_ref().map(|s| s.expose().to_string()),
            options: Options {
                handshake_timeout_ms: spec.timeouts.handshake.map(millis),
                outbound_timeout_ms: spec.timeouts.outbound.map(millis),
                going_idle_timeout_ms: spec.timeouts.going_idle.map(millis),
                max_line_bytes: spec.max_line_bytes,
                prompt_nonce: spec.prompt_nonce.clone(),
                reconnect_jitter_percent: spec.reconnect_jitter_percent,
                backoff_base_ms: spec.timeouts.backoff_base.map(millis),
                backoff_max_ms: spec.timeouts.backoff_max.map(millis),
                stable_connection_ms: spec.timeouts.stable_connection.map(millis),
                token_ttl_seconds: spec.token_ttl_seconds,
                ping_interval_ms: spec.timeouts.ping_interval.map(millis),
                pong_timeout_ms: spec.timeouts.pong_timeout.map(millis),
                dead_link_close_code: None,
                max_message_bytes: spec.max_message_bytes,
                close_wait_ms: None,
                caps: None,
            },
        };
        let link = sandbox
            .create_link(&config)
            .await?
            .map_err(|e: DecodeError| BuildError::Config(e.message))?;
        let settings = sandbox.settings(link).await?;
        crate::link::check_url(&settings.dial_url).map_err(|e| BuildError::Url(e.0))?;
        Ok(Instance {
            sandbox,
            link,
            settings,
        })
    }
}

fn millis(d: std::time::Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
