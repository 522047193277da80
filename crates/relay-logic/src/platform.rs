//! Platform lookup (PROTOCOL.md §10.1, D7).

/// The built-in platform values.
pub const PLATFORMS: [&str; 24] = [
    "local",
    "telegram",
    "discord",
    "whatsapp",
    "whatsapp_cloud",
    "slack",
    "signal",
    "mattermost",
    "matrix",
    "homeassistant",
    "email",
    "sms",
    "dingtalk",
    "api_server",
    "webhook",
    "msgraph_webhook",
    "feishu",
    "wecom",
    "wecom_callback",
    "weixin",
    "bluebubbles",
    "qqbot",
    "yuanbao",
    "relay",
];

/// Exact value, else trimmed + lower-cased value, else `relay` (D7).
pub fn lookup(raw: &str) -> &'static str {
    if let Some(p) = PLATFORMS.iter().find(|p| **p == raw) {
        return p;
    }
    let folded = crate::json::py_strip(raw).to_lowercase();
    PLATFORMS
        .iter()
        .find(|p| **p == folded)
        .copied()
        .unwrap_or("relay")
}
