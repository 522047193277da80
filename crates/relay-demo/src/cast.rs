//! Who plays in the demo: three tenants on three platforms (acme fronts a second
//! one), each with its own gateway id and upgrade secret, and the connector
//! emulator that knows them.
//!
//! The secrets are generated when the demo starts, live only in memory (wrapped
//! in [`Secret`], whose `Debug` and `Display` are redacted) and are never printed.

use serde_json::{json, Value};

use relay_connector::ConnectorOptions;
use relay_host::link::TlsError;
use relay_host::secret::Secret;
use relay_host::spec::{IdentitySpec, TenantSpec};

/// One bot identity a tenant fronts: one `hello` and one descriptor each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub platform: &'static str,
    pub bot_id: &'static str,
}

/// One tenant of the demo and the chat it talks in.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub tenant: &'static str,
    /// The platform of the tenant's chat, fronted by its first identity.
    pub platform: &'static str,
    pub bot_id: &'static str,
    /// Further identities on the same connection (D15: the first descriptor gives
    /// `ready`, each later one a `descriptor` event).
    pub more: &'static [Identity],
    /// Presented in the signed upgrade token.
    pub gateway_id: &'static str,
    /// Fixed so request ids repeat from run to run.
    pub seed: u64,
    pub chat_id: &'static str,
    pub chat_type: &'static str,
    pub user_id: &'static str,
    pub user_name: &'static str,
    /// The first thing the user says.
    pub greeting: &'static str,
}

/// The three tenants, in the order every step visits them.
pub const CAST: [Member; 3] = [
    Member {
        tenant: "acme",
        platform: "discord",
        bot_id: "acme-bot",
        // A platform no other tenant uses: the emulator replays a buffered item
        // to the first connection that says hello for its platform, whoever's.
        more: &[Identity {
            platform: "whatsapp",
            bot_id: "acme-wa",
        }],
        gateway_id: "gw-acme",
        seed: 1,
        chat_id: "900100",
        chat_type: "group",
        user_id: "7001",
        user_name: "Ada",
        greeting: "hello from discord",
    },
    Member {
        tenant: "globex",
        platform: "telegram",
        bot_id: "globex_bot",
        more: &[],
        gateway_id: "gw-globex",
        seed: 2,
        chat_id: "-1001200",
        chat_type: "group",
        user_id: "4242",
        user_name: "Bo",
        greeting: "hello from telegram",
    },
    Member {
        tenant: "initech",
        platform: "slack",
        bot_id: "B0INITECH",
        more: &[],
        gateway_id: "gw-initech",
        seed: 3,
        chat_id: "C0INIT01",
        chat_type: "group",
        user_id: "U0PETER",
        user_name: "peter",
        greeting: "hello from slack",
    },
];

impl Member {
    /// Every identity, the chat's first, in the order the hellos go out.
    pub fn identities(&self) -> Vec<Identity> {
        let first = Identity {
            platform: self.platform,
            bot_id: self.bot_id,
        };
        std::iter::once(first)
            .chain(self.more.iter().copied())
            .collect()
    }

    /// The fronted platforms, in hello order (`discord+whatsapp`).
    pub fn platforms(&self) -> String {
        self.identities()
            .iter()
            .map(|i| i.platform)
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// The Discord guild of acme's channel.
pub const GUILD_ID: &str = "900001";

/// The member playing `tenant`.
pub fn member(tenant: &str) -> &'static Member {
    CAST.iter().find(|m| m.tenant == tenant).unwrap_or(&CAST[0])
}

/// The tenant ids, in order.
pub fn tenant_ids() -> Vec<&'static str> {
    CAST.iter().map(|m| m.tenant).collect()
}

/// The slash commands acme's Discord bot registers (sent in its `hello`).
fn discord_manifest() -> Value {
    json!([{
        "name": "skill",
        "description": "Run a skill",
        "options": [{
            "type": 2, "name": "run", "description": "Run a skill",
            "options": [{
                "type": 1, "name": "deploy", "description": "Deploy the service",
                "options": [{"type": 3, "name": "env", "description": "Target environment",
                             "required": true}],
            }],
        }],
    }])
}

/// One fresh secret per tenant (128 bits each from the process's random hasher
/// keys and the clock; a demo needs no more).
pub fn secrets() -> Vec<Secret> {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    CAST.iter()
        .enumerate()
        .map(|(i, m)| {
            let mut text = String::with_capacity(32);
            for half in 0..2u64 {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(nanos);
                h.write_u64(i as u64 * 2 + half);
                h.write(m.tenant.as_bytes());
                text.push_str(&format!("{:016x}", h.finish()));
            }
            Secret::new(text)
        })
        .collect()
}

/// The emulator, accepting a token signed with any tenant's secret.
pub fn connector_options(secrets: &[Secret]) -> ConnectorOptions {
    secrets
        .iter()
        .fold(ConnectorOptions::default(), |o, s| o.secret(s.expose()))
}

/// The tenants' specs: every identity of each (the Discord one with its slash
/// commands), credentials, fixed seeds, no jitter (so the first reconnect comes
/// after exactly 1000 ms).
pub fn specs(url: &str, secrets: &[Secret]) -> Result<Vec<TenantSpec>, TlsError> {
    CAST.iter()
        .zip(secrets)
        .map(|(m, secret)| {
            let identities = m
                .identities()
                .iter()
                .map(|i| IdentitySpec {
                    platform: i.platform.into(),
                    bot_id: i.bot_id.into(),
                    command_manifest: (i.platform == "discord")
                        .then(|| discord_manifest().to_string()),
                })
                .collect();
            let mut spec = TenantSpec::new(m.tenant, url, identities)?;
            spec.gateway_id = Some(m.gateway_id.into());
            spec.secret = Some(secret.clone());
            spec.prompt_nonce = Some(m.tenant.into());
            spec.seed = m.seed;
            spec.reconnect_jitter_percent = Some(0);
            Ok(spec)
        })
        .collect()
}

/// The `inbound` event a user's message becomes at the connector.
pub fn inbound_event(m: &Member, text: &str) -> Value {
    json!({
        "text": text,
        "message_type": "text",
        "source": {
            "platform": m.platform,
            "chat_id": m.chat_id,
            "chat_type": m.chat_type,
            "user_id": m.user_id,
            "user_name": m.user_name,
        },
    })
}

/// The same with the platform's message id: the message's identity (D16) is
/// (source platform, source chat id, message id).
pub fn identified_event(m: &Member, text: &str, message_id: &str) -> Value {
    let mut event = inbound_event(m, text);
    if let Some(obj) = event.as_object_mut() {
        obj.insert("message_id".into(), message_id.into());
    }
    event
}

/// A Discord interaction in acme's channel (`kind` 2: slash command, 3: component).
pub fn discord_interaction(id: &str, kind: u8, data: Value, message: Option<Value>) -> Value {
    let m = member("acme");
    let mut interaction = json!({
        "id": id,
        "application_id": m.bot_id,
        "type": kind,
        // The connector keeps this in its vault; the forward never carries it.
        "token": "interaction-token-kept-by-the-connector",
        "channel_id": m.chat_id,
        "guild_id": GUILD_ID,
        "member": {"user": {"id": m.user_id, "username": "ada", "global_name": m.user_name}},
        "version": 1,
        "data": data,
    });
    if let (Some(message), Some(obj)) = (message, interaction.as_object_mut()) {
        obj.insert("message".into(), message);
    }
    interaction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_and_stay_hidden() {
        let s = secrets();
        assert_eq!(s.len(), CAST.len());
        assert_ne!(s[0], s[1]);
        assert!(s.iter().all(|s| s.expose().len() == 32));
        assert_eq!(format!("{:?}", s[0]), "<redacted>");
    }

    #[test]
    fn specs_carry_credentials_and_fixed_seeds() {
        let specs = specs("ws://127.0.0.1:9/relay", &secrets()).unwrap();
        assert_eq!(specs.len(), 3);
        assert!(specs
            .iter()
            .all(|s| s.gateway_id.is_some() && s.reconnect_jitter_percent == Some(0)));
        assert!(specs[0].identities[0].command_manifest.is_some());
        assert!(specs[1].identities[0].command_manifest.is_none());
        // acme fronts Discord and WhatsApp: two hellos, the slash commands on the
        // Discord one only.
        let acme: Vec<(&str, &str)> = specs[0]
            .identities
            .iter()
            .map(|i| (i.platform.as_str(), i.bot_id.as_str()))
            .collect();
        assert_eq!(acme, [("discord", "acme-bot"), ("whatsapp", "acme-wa")]);
        assert!(specs[0].identities[1].command_manifest.is_none());
        assert_eq!(member("acme").platforms(), "discord+whatsapp");
        assert_eq!(specs[1].identities.len(), 1);
    }
}
