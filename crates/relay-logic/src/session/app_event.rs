//! The payload of [`Effect::Emit`](super::Effect::Emit): an APP-PROTOCOL event.
//!
//! Every host only ever wants an event's JSON text, and a delivered `message` is
//! the one event on the hot path (one per inbound frame). Building it as a
//! `serde_json::Value` first would allocate and hash every key of the message only
//! to serialise the tree at once; so a message is kept typed and written straight
//! to text, and the rare events stay plain values.

use serde::Serialize;
use serde_json::{json, Value};

use crate::event::MessageEvent;

/// An APP-PROTOCOL event for the application (without `tenant`).
#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    /// Any event built as a JSON value (states, results, idle, interrupts, ...).
    Json(Value),
    /// `{"event": "message", "message": ..., "buffer_id": ...}`.
    Message(Box<MessageDelivery>),
}

/// A delivered message: the canonical event and its buffer id, when buffered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageDelivery {
    pub message: MessageEvent,
    pub buffer_id: Option<String>,
}

impl AppEvent {
    /// A delivered message.
    pub fn message(message: MessageEvent, buffer_id: Option<String>) -> Self {
        AppEvent::Message(Box::new(MessageDelivery { message, buffer_id }))
    }

    /// The compact JSON text (exactly `self.to_value().to_string()`).
    pub fn to_json_string(&self) -> String {
        match self {
            AppEvent::Json(v) => v.to_string(),
            AppEvent::Message(m) => {
                let mut out = String::with_capacity(m.message.text.len() + 640);
                out.push_str(r#"{"event":"message","message":"#);
                m.message.write_json(&mut out);
                out.push_str(r#","buffer_id":"#);
                match &m.buffer_id {
                    Some(id) => crate::json::write_str(&mut out, id),
                    None => out.push_str("null"),
                }
                out.push('}');
                out
            }
        }
    }

    /// The event as a JSON value (tests and tools; hosts use `to_json_string`).
    pub fn to_value(&self) -> Value {
        match self {
            AppEvent::Json(v) => v.clone(),
            AppEvent::Message(m) => json!({
                "event": "message",
                "message": m.message.to_json(),
                "buffer_id": m.buffer_id,
            }),
        }
    }

    /// The `event` name.
    pub fn name(&self) -> &str {
        match self {
            AppEvent::Json(v) => v.get("event").and_then(Value::as_str).unwrap_or(""),
            AppEvent::Message(_) => "message",
        }
    }
}

impl From<Value> for AppEvent {
    fn from(v: Value) -> Self {
        AppEvent::Json(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::event_from_wire;

    #[test]
    fn message_text_is_the_value_text() {
        for (event, buffer_id) in [
            (
                json!({"text": "hi \"there\"\n", "source": {"chat_id": "c"}}),
                None,
            ),
            (
                json!({"text": "ü", "prompt_response": {"prompt_id": "p"}}),
                Some("b\u{1}".to_string()),
            ),
        ] {
            let ev = AppEvent::message(event_from_wire(&event).unwrap(), buffer_id);
            assert_eq!(ev.to_json_string(), ev.to_value().to_string());
            assert_eq!(ev.name(), "message");
        }
        let other = AppEvent::from(json!({"event": "idle", "acked": true}));
        assert_eq!(other.to_json_string(), r#"{"event":"idle","acked":true}"#);
        assert_eq!(other.name(), "idle");
    }
}
