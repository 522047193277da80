//! APP-PROTOCOL events the host itself builds (the component builds the rest).

use serde_json::{json, Map, Value};

use crate::sandbox::ErrorKind;

/// Adds `tenant` to an event, keeping `event` first so lines read naturally.
pub fn for_tenant(tenant: &str, mut event: Map<String, Value>) -> Value {
    let mut out = Map::with_capacity(event.len() + 1);
    if let Some(name) = event.remove("event") {
        out.insert("event".into(), name);
    }
    out.insert("tenant".into(), Value::String(tenant.to_string()));
    out.extend(event);
    Value::Object(out)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `{"event": "state", "state", "reason"?}`.
pub fn state(state: &str, reason: Option<&str>) -> Map<String, Value> {
    let mut m = object(json!({"event": "state", "state": state}));
    if let Some(reason) = reason {
        m.insert("reason".into(), Value::String(reason.to_string()));
    }
    m
}

/// `{"event": "error", "error": {kind, message}}`.
pub fn error(kind: &str, message: &str) -> Map<String, Value> {
    object(json!({"event": "error", "error": {"kind": kind, "message": message}}))
}

/// An `outbound_result` the host answers itself (the guest cannot).
pub fn outbound_failure(id: &str, error: &str) -> Map<String, Value> {
    let mut result = json!({"success": false, "error": error});
    // D17: a lost connection may have carried the frame, so the outcome is unknown.
    if error == crate::tenant::CONNECTION_LOST {
        result["ambiguous"] = json!(true);
    }
    object(json!({
        "event": "outbound_result",
        "id": id,
        "result": result,
    }))
}

/// The answer to a command for a tenant that no longer runs (APP-PROTOCOL:
/// every `outbound` gets its `outbound_result`, every `going_idle` its `idle`).
pub fn answer_when_stopped(tenant: &str, command: &Map<String, Value>) -> Map<String, Value> {
    let op = command.get("op").and_then(Value::as_str).unwrap_or("");
    match (op, command.get("id").and_then(Value::as_str)) {
        ("outbound", Some(id)) => outbound_failure(id, crate::tenant::TRANSPORT_CLOSED),
        ("going_idle", _) => idle(false),
        _ => {
            let mut e = error("stopped", &format!("tenant `{tenant}` is stopped"));
            if let Some(id) = command.get("id") {
                e.insert("id".into(), id.clone());
            }
            e
        }
    }
}

/// The answer to a command for a tenant whose queue is full: at once, so the
/// shared reader never waits. An `outbound` still gets its one `outbound_result`
/// (D9 `relay send failed`, nothing was written), a `going_idle` its `idle`;
/// anything else an `error` of kind `busy`.
pub fn answer_when_busy(tenant: &str, command: &Map<String, Value>) -> Map<String, Value> {
    let op = command.get("op").and_then(Value::as_str).unwrap_or("");
    match (op, command.get("id").and_then(Value::as_str)) {
        ("outbound", Some(id)) => outbound_failure(id, QUEUE_FULL),
        ("going_idle", _) => idle(false),
        _ => {
            let mut e = error(
                "busy",
                &format!("tenant `{tenant}` has too many commands queued; try again later"),
            );
            if let Some(id) = command.get("id") {
                e.insert("id".into(), id.clone());
            }
            e
        }
    }
}

/// The result text of an outbound refused because its tenant's queue is full.
pub const QUEUE_FULL: &str = "relay send failed: too many commands queued for this tenant";

/// `{"event": "idle", "acked"}`.
pub fn idle(acked: bool) -> Map<String, Value> {
    object(json!({"event": "idle", "acked": acked}))
}

/// The wire name of a decode error kind (as the conformance vectors spell it).
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::MalformedJson => "malformed_json",
        ErrorKind::NotObject => "not_object",
        ErrorKind::MissingField => "missing_field",
        ErrorKind::InvalidField => "invalid_field",
        ErrorKind::TooLarge => "too_large",
        ErrorKind::UnknownType => "unknown_type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_follows_event() {
        let v = for_tenant("t1", state("ready", None));
        assert_eq!(
            v.to_string(),
            r#"{"event":"state","tenant":"t1","state":"ready"}"#
        );
    }
}
