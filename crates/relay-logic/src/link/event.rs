//! An APP-PROTOCOL event as it leaves the component: its kind and the facts a
//! host acts on, typed, next to the finished line. A sidecar writes `line` as it
//! is; nobody parses it to learn what happened or whom it concerns.

use serde_json::Value;

use crate::session::{AppEvent, LinkState};

/// Which APP-PROTOCOL event a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    State,
    Ready,
    Descriptor,
    Message,
    Interrupt,
    OutboundResult,
    PromptStale,
    Idle,
}

impl EventKind {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "state" => EventKind::State,
            "ready" => EventKind::Ready,
            "descriptor" => EventKind::Descriptor,
            "message" => EventKind::Message,
            "interrupt" => EventKind::Interrupt,
            "outbound_result" => EventKind::OutboundResult,
            "prompt_stale" => EventKind::PromptStale,
            "idle" => EventKind::Idle,
            _ => return None,
        })
    }
}

/// One event for the application.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// For `state`: the new state.
    pub state: Option<LinkState>,
    /// For `outbound_result`: the application's id from its `outbound` command.
    pub id: Option<String>,
    /// For `message`: the buffer id to `ack`, when the delivery is buffered.
    pub buffer_id: Option<String>,
    /// For `idle`: whether the connector acknowledged.
    pub acked: Option<bool>,
    /// The complete APP-PROTOCOL line (compact JSON, no newline), with `tenant`
    /// right after `event` when the link has one.
    pub line: String,
}

/// Renders `event` for a link whose tenant is `tenant`; `None` for a value that
/// is no APP-PROTOCOL event (a bug: the caller logs it).
pub fn render(event: &AppEvent, tenant: Option<&str>) -> Option<Event> {
    let text = event.to_json_string();
    let kind = EventKind::of(event.name())?;
    let line = match tenant {
        Some(t) => {
            // `tenant` right after `event`, as the sidecar has always written it.
            let head = format!("{{\"event\":\"{}\"", event.name());
            let mut line = String::with_capacity(text.len() + t.len() + 16);
            match text.strip_prefix(head.as_str()) {
                Some(rest) => {
                    line.push_str(&head);
                    line.push_str(",\"tenant\":");
                    crate::json::write_str(&mut line, t);
                    line.push_str(rest);
                }
                None => {
                    line.push_str("{\"tenant\":");
                    crate::json::write_str(&mut line, t);
                    line.push(',');
                    line.push_str(text.get(1..).unwrap_or_default());
                }
            }
            line
        }
        None => text,
    };
    let (mut state, mut id, mut buffer_id, mut acked) = (None, None, None, None);
    match event {
        AppEvent::Message(m) => buffer_id = m.buffer_id.clone(),
        AppEvent::Json(v) => match kind {
            EventKind::State => {
                state = v
                    .get("state")
                    .and_then(Value::as_str)
                    .and_then(LinkState::from_name)
            }
            EventKind::OutboundResult => {
                id = v.get("id").and_then(Value::as_str).map(str::to_string)
            }
            EventKind::Idle => acked = v.get("acked").and_then(Value::as_bool),
            _ => {}
        },
    }
    Some(Event {
        kind,
        state,
        id,
        buffer_id,
        acked,
        line,
    })
}
