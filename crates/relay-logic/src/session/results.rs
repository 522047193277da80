//! What an `outbound_result` event carries: the connector's result verbatim, or one
//! of the error results of PORT-DECISIONS D9 (exact texts), shaped for
//! `get_chat_info` as PROTOCOL.md §12 says.

use serde_json::{json, Map, Value};

/// No connection is open (before the first `open`, after a `close`, after `revoked`).
pub const NOT_CONNECTED: &str = "relay transport not connected";
/// The connection closed while the request waited for its result.
pub const CONNECTION_LOST: &str = "relay transport connection lost";
/// No result within `outbound_timeout_ms`; the action may or may not have happened.
pub const TIMED_OUT: &str = "relay outbound timed out";
/// Prefix of a request that could not be written (D9 `relay send failed: <reason>`).
pub const SEND_FAILED: &str = "relay send failed";
/// The application stopped the link on purpose (`stop`): nothing more is sent.
pub const TRANSPORT_CLOSED: &str = "relay transport closed";

/// `{"success": false, "error": text}`.
pub(crate) fn failure(text: &str) -> Value {
    json!({"success": false, "error": text})
}

/// D17: the frame had been written when the connection closed, so the connector
/// may have performed it: ambiguous, like a timeout.
pub(crate) fn connection_lost() -> Value {
    json!({"success": false, "error": CONNECTION_LOST, "ambiguous": true})
}

/// A request written before the application stopped the link: the reference fails
/// its wait with "relay transport closed", which its send path reports as
/// `relay send failed: relay transport closed`, ambiguous (the frame had left).
pub(crate) fn closed_while_pending() -> Value {
    json!({"success": false, "error": format!("{SEND_FAILED}: {TRANSPORT_CLOSED}"), "ambiguous": true})
}

/// The timeout result: ambiguous, because the connector may still have acted.
pub(crate) fn timed_out() -> Value {
    json!({"success": false, "error": TIMED_OUT, "ambiguous": true})
}

/// `relay send failed: <reason>`.
pub(crate) fn send_failed(reason: &str) -> Value {
    failure(&format!("{SEND_FAILED}: {reason}"))
}

/// For `get_chat_info` (`chat_id` = the action's chat id) adds `name` and `type`:
/// `info` = `result.chat_info` if truthy, else the result; `name` = `info.name` when
/// that key exists (even null), else the chat id; `type` = `info.type` when present,
/// else `"dm"`. The other keys of the result stay. Other ops pass through untouched.
pub(crate) fn shape(result: Value, chat_info_of: Option<&Value>) -> Value {
    let Some(chat_id) = chat_info_of else {
        return result;
    };
    let info = match result.get("chat_info") {
        Some(ci) if crate::json::truthy(ci) => ci,
        _ => &result,
    };
    let (name, ty) = match info.as_object() {
        Some(o) => (
            o.get("name").cloned().unwrap_or_else(|| chat_id.clone()),
            o.get("type").cloned().unwrap_or_else(|| "dm".into()),
        ),
        None => (chat_id.clone(), "dm".into()),
    };
    let mut out = match result {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.insert("name".into(), name);
    out.insert("type".into(), ty);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_info_mapping() {
        let c = json!("c9");
        let r = shape(
            json!({"chat_info": {"name": "g", "type": "group"}}),
            Some(&c),
        );
        assert_eq!(
            (r["name"].clone(), r["type"].clone()),
            (json!("g"), json!("group"))
        );
        let r = shape(json!({"name": null}), Some(&c));
        assert_eq!(
            (r["name"].clone(), r["type"].clone()),
            (json!(null), json!("dm"))
        );
        let r = shape(timed_out(), Some(&c));
        assert_eq!(r["name"], json!("c9"));
        assert_eq!(r["ambiguous"], json!(true));
        let r = shape(json!({"chat_info": "odd"}), Some(&c));
        assert_eq!(r["name"], json!("c9"));
        assert_eq!(shape(json!(7), Some(&c))["type"], json!("dm"));
        assert_eq!(shape(json!({"x": 1}), None), json!({"x": 1}));
    }
}
