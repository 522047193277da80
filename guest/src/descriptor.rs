//! The connector's capability descriptor (PROTOCOL.md §8, D4).

use serde::Serialize;
use serde_json::Value;

use crate::error::DecodeError;

/// The ops assumed when a descriptor lists none.
pub const LEGACY_OPS: [&str; 4] = ["send", "edit", "typing", "follow_up"];

/// A normalised descriptor: every field present and of its declared type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Descriptor {
    pub contract_version: Value,
    pub platform: String,
    pub label: String,
    pub max_message_length: u64,
    pub supports_draft_streaming: bool,
    pub supports_edit: bool,
    pub supports_threads: bool,
    pub markdown_dialect: String,
    pub len_unit: String,
    pub emoji: String,
    pub platform_hint: String,
    pub pii_safe: bool,
    pub supports_context: bool,
    pub supports_inchannel_continuable: bool,
    pub supports_block_formatting: bool,
    pub supported_ops: Vec<String>,
}

impl Descriptor {
    /// Whether the connector implements `op` (legacy set when the list is empty).
    pub fn supports_op(&self, op: &str) -> bool {
        if self.supported_ops.is_empty() {
            LEGACY_OPS.contains(&op)
        } else {
            self.supported_ops.iter().any(|o| o == op)
        }
    }

    /// The canonical JSON value (16 fields).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Parses and normalises a descriptor object.
pub fn parse(v: &Value) -> Result<Descriptor, DecodeError> {
    let _ = v;
    todo!("descriptor::parse")
}
