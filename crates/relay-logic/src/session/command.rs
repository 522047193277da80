//! APP-PROTOCOL commands (without `tenant`) parsed into typed calls, so every host
//! that forwards the application's JSON gets the same validation and error kinds.

use serde_json::{Map, Value};

use crate::error::{DecodeError, ErrorKind};

/// One application command the connection handles.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send an action; answered by exactly one `outbound_result` with `id`.
    Outbound {
        id: String,
        action: Value,
        platform: Option<String>,
    },
    /// Stop a running turn on the connector side.
    Interrupt {
        session_key: String,
        reason: Option<String>,
    },
    /// Durable hand-off of a buffered delivery.
    Ack { buffer_id: String },
    /// The application could not take a buffered delivery: its next arrival is
    /// delivered again (D10 revised).
    Nack { buffer_id: String },
    /// Park re-dialling (a brokered suspend is in flight), for at most
    /// [`super::REDIAL_HOLD_MAX_MS`].
    HoldRedial,
    /// Let re-dialling go on (the suspend did not happen).
    ReleaseRedial,
    /// Ask the connector to switch this instance to buffered delivery.
    GoingIdle,
}

fn required_str(o: &Map<String, Value>, key: &str) -> Result<String, DecodeError> {
    match o.get(key) {
        None | Some(Value::Null) => Err(DecodeError::missing(key)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(DecodeError::invalid(key, "not a string")),
    }
}

fn optional_str(o: &Map<String, Value>, key: &str) -> Result<Option<String>, DecodeError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DecodeError::invalid(key, "not a string")),
    }
}

/// A non-empty buffer id, in text form (`17` → `"17"`, as the frames carry it).
fn buffer_id(o: &Map<String, Value>) -> Result<String, DecodeError> {
    let buffer_id = match o.get("buffer_id") {
        None | Some(Value::Null) => return Err(DecodeError::missing("buffer_id")),
        Some(v @ (Value::String(_) | Value::Number(_))) => {
            crate::json::scalar_str(v).unwrap_or_default()
        }
        Some(_) => return Err(DecodeError::invalid("buffer_id", "not a string")),
    };
    if buffer_id.is_empty() {
        return Err(DecodeError::invalid("buffer_id", "is empty"));
    }
    Ok(buffer_id)
}

/// Parses a command object. Unknown ops (including the host-level `status` and
/// `shutdown`) are `unknown_type`; missing or mistyped fields are typed errors.
pub fn parse(v: &Value) -> Result<Command, DecodeError> {
    let o = v
        .as_object()
        .ok_or_else(|| DecodeError::not_object("command"))?;
    match required_str(o, "op")?.as_str() {
        "outbound" => {
            let id = required_str(o, "id")?;
            let action = match o.get("action") {
                None | Some(Value::Null) => return Err(DecodeError::missing("action")),
                Some(a @ Value::Object(_)) => a.clone(),
                Some(_) => return Err(DecodeError::invalid("action", "not an object")),
            };
            let platform = optional_str(o, "platform")?.filter(|p| !p.is_empty());
            Ok(Command::Outbound {
                id,
                action,
                platform,
            })
        }
        "interrupt" => Ok(Command::Interrupt {
            session_key: required_str(o, "session_key")?,
            reason: optional_str(o, "reason")?,
        }),
        "ack" => Ok(Command::Ack {
            buffer_id: buffer_id(o)?,
        }),
        "nack" => Ok(Command::Nack {
            buffer_id: buffer_id(o)?,
        }),
        "going_idle" => Ok(Command::GoingIdle),
        "hold_redial" => Ok(Command::HoldRedial),
        "release_redial" => Ok(Command::ReleaseRedial),
        other => Err(DecodeError::new(
            ErrorKind::UnknownType,
            format!(
                "`{}` is not a connection command",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(v: Value) -> ErrorKind {
        parse(&v).unwrap_err().kind
    }

    #[test]
    fn typed_errors() {
        assert_eq!(kind(json!([])), ErrorKind::NotObject);
        assert_eq!(kind(json!({})), ErrorKind::MissingField);
        assert_eq!(kind(json!({"op": 1})), ErrorKind::InvalidField);
        assert_eq!(kind(json!({"op": "status"})), ErrorKind::UnknownType);
        assert_eq!(
            kind(json!({"op": "outbound", "action": {}})),
            ErrorKind::MissingField
        );
        assert_eq!(
            kind(json!({"op": "outbound", "id": "a"})),
            ErrorKind::MissingField
        );
        assert_eq!(
            kind(json!({"op": "outbound", "id": "a", "action": "send"})),
            ErrorKind::InvalidField
        );
        assert_eq!(kind(json!({"op": "interrupt"})), ErrorKind::MissingField);
        assert_eq!(
            kind(json!({"op": "interrupt", "session_key": "s", "reason": 3})),
            ErrorKind::InvalidField
        );
        assert_eq!(kind(json!({"op": "ack"})), ErrorKind::MissingField);
        assert_eq!(
            kind(json!({"op": "ack", "buffer_id": ""})),
            ErrorKind::InvalidField
        );
        assert_eq!(
            kind(json!({"op": "ack", "buffer_id": [1]})),
            ErrorKind::InvalidField
        );
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse(&json!({"op": "ack", "buffer_id": 17, "tenant": "t"})).unwrap(),
            Command::Ack {
                buffer_id: "17".into()
            }
        );
        assert_eq!(
            parse(&json!({"op": "outbound", "id": "a", "action": {}, "platform": ""})).unwrap(),
            Command::Outbound {
                id: "a".into(),
                action: json!({}),
                platform: None
            }
        );
        assert_eq!(
            parse(&json!({"op": "going_idle"})).unwrap(),
            Command::GoingIdle
        );
        assert_eq!(
            parse(&json!({"op": "nack", "buffer_id": "b1"})).unwrap(),
            Command::Nack {
                buffer_id: "b1".into()
            }
        );
        assert_eq!(kind(json!({"op": "nack"})), ErrorKind::MissingField);
        assert_eq!(
            parse(&json!({"op": "hold_redial"})).unwrap(),
            Command::HoldRedial
        );
        assert_eq!(
            parse(&json!({"op": "release_redial"})).unwrap(),
            Command::ReleaseRedial
        );
    }
}
