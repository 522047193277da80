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
        "ack" => {
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
            Ok(Command::Ack { buffer_id })
        }
        "going_idle" => Ok(Command::GoingIdle),
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
    }
}
