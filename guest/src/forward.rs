//! `passthrough_forward` → PassthroughForward (PROTOCOL.md §7, D3, D5, D14).

use serde_json::Value;

use crate::error::DecodeError;

/// A forwarded provider request, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub platform: String,
    pub bot_id: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The decoded body bytes (empty when `bodyB64` was absent or invalid).
    pub body: Vec<u8>,
    pub profile: Option<String>,
}

impl Forward {
    /// Canonical JSON: `{platform, bot_id, method, path, headers, body_b64, profile}`
    /// with the body re-encoded as standard padded base64.
    pub fn to_json(&self) -> Value {
        todo!("Forward::to_json")
    }

    /// Parses the canonical JSON form back (what `to_json` produced).
    pub fn from_json(v: &Value) -> Result<Forward, DecodeError> {
        let _ = v;
        todo!("Forward::from_json")
    }
}

/// Rebuilds a `forward` object. `null` or a non-object is a typed error (D2).
pub fn forward_from_wire(v: &Value) -> Result<Forward, DecodeError> {
    let _ = v;
    todo!("forward_from_wire")
}
