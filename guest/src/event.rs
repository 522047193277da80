//! Inbound `event` object → canonical MessageEvent (PROTOCOL.md §9, D3, D8).
//!
//! The struct serialises to exactly the canonical JSON shape of the vectors
//! (inbound_event.json), which is also the `message` field of APP-PROTOCOL events.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::DecodeError;

/// Where a message came from: the session identity the agent keys its turn on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSource {
    pub platform: String,
    pub chat_id: String,
    pub chat_type: String,
    pub chat_name: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub thread_id: Option<String>,
    pub chat_topic: Option<String>,
    pub user_id_alt: Option<String>,
    pub chat_id_alt: Option<String>,
    pub scope_id: Option<String>,
    pub parent_chat_id: Option<String>,
    pub message_id: Option<String>,
    pub profile: Option<String>,
    pub auto_thread_created: bool,
    pub auto_thread_initial_name: Option<String>,
    pub prospective_thread_id: Option<String>,
}

/// The canonical message event handed to the application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEvent {
    pub text: String,
    pub message_type: String,
    pub message_id: Option<String>,
    pub reply_to_message_id: Option<String>,
    pub reply_to_text: Option<String>,
    pub reply_to_author_name: Option<String>,
    pub reply_to_is_own_message: bool,
    pub media_urls: Vec<String>,
    pub media_types: Vec<String>,
    pub channel_context: Option<String>,
    /// Shallow copy of the wire object (may carry keys beyond prompt_id/option_id).
    pub prompt_response: Option<Map<String, Value>>,
    pub metadata: Map<String, Value>,
    /// The whole provider payload where the conversion keeps it (Discord modals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_message: Option<Value>,
    pub source: SessionSource,
}

impl MessageEvent {
    /// The canonical JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `(prompt_id, option_id)` when this event is a prompt press: a
    /// `prompt_response` with non-empty string `prompt_id` and `option_id`.
    pub fn prompt_press(&self) -> Option<(String, String)> {
        let pr = self.prompt_response.as_ref()?;
        let pid = pr
            .get("prompt_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        let oid = pr
            .get("option_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        Some((pid.to_string(), oid.to_string()))
    }
}

/// Rebuilds an inbound `event` object. Non-object input, or a truthy non-object
/// `source`/`reply_to`, is a typed error (D2) rather than a dead reader.
pub fn event_from_wire(v: &Value) -> Result<MessageEvent, DecodeError> {
    let _ = v;
    todo!("event_from_wire")
}
