//! The line codec: one line ⇄ one typed frame (PROTOCOL.md §3–4, D2, D12).
//!
//! Decoding never panics and never gives up on the stream: every failure is a
//! typed [`DecodeError`] for that line alone.

use serde_json::{Map, Value};

use crate::descriptor::{self, Descriptor};
use crate::error::{DecodeError, ErrorKind};
use crate::event::{self, EventWire, MessageEvent};
use crate::forward::{self, Forward, ForwardWire};
use crate::json;
use crate::wire::{self, wire_object, Field, Obj};

/// The default frame-size limit (D12): 1 MiB, the reference library's default.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// A frame the connector sends, decoded and normalised.
// A frame lives only from decoding a line to handling it, so the inline
// MessageEvent's size costs nothing; boxing it would only change the API.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorFrame {
    Descriptor(Descriptor),
    Inbound {
        event: MessageEvent,
        buffer_id: Option<String>,
    },
    OutboundResult {
        request_id: String,
        result: Value,
    },
    InterruptInbound {
        session_key: String,
        chat_id: String,
    },
    GoingIdleAck,
    PassthroughForward {
        forward: Forward,
        buffer_id: Option<String>,
    },
}

impl ConnectorFrame {
    /// The frame as JSON under its wire names, documents normalised.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let ty = match self {
            ConnectorFrame::Descriptor(_) => "descriptor",
            ConnectorFrame::Inbound { .. } => "inbound",
            ConnectorFrame::OutboundResult { .. } => "outbound_result",
            ConnectorFrame::InterruptInbound { .. } => "interrupt_inbound",
            ConnectorFrame::GoingIdleAck => "going_idle_ack",
            ConnectorFrame::PassthroughForward { .. } => "passthrough_forward",
        };
        m.insert("type".into(), ty.into());
        match self {
            ConnectorFrame::Descriptor(d) => {
                m.insert("descriptor".into(), d.to_json());
            }
            ConnectorFrame::Inbound { event, buffer_id } => {
                m.insert("event".into(), event.to_json());
                m.insert("bufferId".into(), opt_value(buffer_id));
            }
            ConnectorFrame::OutboundResult { request_id, result } => {
                m.insert("requestId".into(), request_id.clone().into());
                m.insert("result".into(), result.clone());
            }
            ConnectorFrame::InterruptInbound {
                session_key,
                chat_id,
            } => {
                m.insert("session_key".into(), session_key.clone().into());
                m.insert("chat_id".into(), chat_id.clone().into());
            }
            ConnectorFrame::GoingIdleAck => {}
            ConnectorFrame::PassthroughForward { forward, buffer_id } => {
                m.insert("forward".into(), forward.to_json());
                m.insert("bufferId".into(), opt_value(buffer_id));
            }
        }
        Value::Object(m)
    }
}

fn opt_value(s: &Option<String>) -> Value {
    s.clone().map(Value::String).unwrap_or(Value::Null)
}

/// A frame the gateway sends.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayFrame {
    Hello {
        platform: String,
        bot_id: String,
        command_manifest: Option<Value>,
    },
    Outbound {
        request_id: String,
        action: Value,
        platform: Option<String>,
        bot_id: Option<String>,
    },
    Interrupt {
        session_key: String,
        reason: Option<String>,
    },
    GoingIdle,
    InboundAck(String),
}

impl GatewayFrame {
    /// The frame as a JSON object, keys in the reference's order.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        match self {
            GatewayFrame::Hello {
                platform,
                bot_id,
                command_manifest,
            } => {
                m.insert("type".into(), "hello".into());
                m.insert("platform".into(), platform.clone().into());
                m.insert("botId".into(), bot_id.clone().into());
                if let Some(manifest) = command_manifest {
                    m.insert("command_manifest".into(), manifest.clone());
                }
            }
            GatewayFrame::Outbound {
                request_id,
                action,
                platform,
                bot_id,
            } => {
                m.insert("type".into(), "outbound".into());
                m.insert("requestId".into(), request_id.clone().into());
                m.insert("action".into(), action.clone());
                if let Some(p) = platform {
                    m.insert("platform".into(), p.clone().into());
                }
                if let Some(b) = bot_id {
                    m.insert("botId".into(), b.clone().into());
                }
            }
            GatewayFrame::Interrupt {
                session_key,
                reason,
            } => {
                m.insert("type".into(), "interrupt".into());
                m.insert("session_key".into(), session_key.clone().into());
                m.insert("reason".into(), opt_value(reason));
            }
            GatewayFrame::GoingIdle => {
                m.insert("type".into(), "going_idle".into());
            }
            GatewayFrame::InboundAck(id) => {
                m.insert("type".into(), "inbound_ack".into());
                m.insert("bufferId".into(), id.clone().into());
            }
        }
        Value::Object(m)
    }

    /// Reads a gateway frame from its JSON form (the inverse of `to_json`).
    pub fn from_json(v: &Value) -> Result<GatewayFrame, DecodeError> {
        let o = v
            .as_object()
            .ok_or_else(|| DecodeError::not_object("frame"))?;
        let s = |k: &str| -> Result<String, DecodeError> {
            match o.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                None | Some(Value::Null) => Err(DecodeError::missing(k)),
                Some(_) => Err(DecodeError::invalid(k, "not a string")),
            }
        };
        let opt = |k: &str| -> Result<Option<String>, DecodeError> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(DecodeError::invalid(k, "not a string")),
            }
        };
        match s("type")?.as_str() {
            "hello" => Ok(GatewayFrame::Hello {
                platform: s("platform")?,
                bot_id: s("botId")?,
                command_manifest: o.get("command_manifest").filter(|v| !v.is_null()).cloned(),
            }),
            "outbound" => Ok(GatewayFrame::Outbound {
                request_id: s("requestId")?,
                action: o
                    .get("action")
                    .cloned()
                    .ok_or_else(|| DecodeError::missing("action"))?,
                platform: opt("platform")?,
                bot_id: opt("botId")?,
            }),
            "interrupt" => Ok(GatewayFrame::Interrupt {
                session_key: s("session_key")?,
                reason: opt("reason")?,
            }),
            "going_idle" => Ok(GatewayFrame::GoingIdle),
            "inbound_ack" => Ok(GatewayFrame::InboundAck(s("bufferId")?)),
            other => Err(DecodeError::new(
                ErrorKind::UnknownType,
                format!("`{}` is not a gateway frame type", truncate(other)),
            )),
        }
    }
}

/// Encodes a gateway frame as one line of JSON without the newline, in the
/// reference's `json.dumps` form (byte-identical to what it writes).
pub fn encode(frame: &GatewayFrame) -> String {
    json::python_dumps(&frame.to_json())
}

/// Decodes one line (without its `\n`; a trailing `\r` is JSON whitespace).
pub fn decode(line: &[u8], max_line_bytes: usize) -> Result<ConnectorFrame, DecodeError> {
    check_size(line.len(), max_line_bytes)?;
    let text = crate::wire::utf8(line)
        .map_err(|e| DecodeError::malformed(format!("line is not valid UTF-8 ({e})")))?;
    decode_text(text)
}

/// [`decode`] of a line already known to be UTF-8 (from a WebSocket text message).
pub fn decode_str(line: &str, max_line_bytes: usize) -> Result<ConnectorFrame, DecodeError> {
    check_size(line.len(), max_line_bytes)?;
    decode_text(line)
}

fn check_size(len: usize, max_line_bytes: usize) -> Result<(), DecodeError> {
    if len > max_line_bytes {
        return Err(DecodeError::new(
            ErrorKind::TooLarge,
            format!("line of {len} bytes exceeds the limit of {max_line_bytes}"),
        ));
    }
    Ok(())
}

wire_object! {
    /// The keys of a connector frame; which ones count depends on `type`, which
    /// may come last, so each is read in the one pass over the line.
    struct Envelope<'a> {
        "type" => ty: Field<'a>,
        "descriptor" => descriptor: Value,
        "event" => event: Obj<EventWire<'a>>,
        "forward" => forward: Obj<ForwardWire<'a>>,
        "requestId" => request_id: Field<'a>,
        "result" => result: Value,
        "session_key" => session_key: Field<'a>,
        "chat_id" => chat_id: Field<'a>,
        "bufferId" => buffer_id: Field<'a>,
    }
}

/// One typed pass over the line: it accepts exactly the texts a `Value` parse
/// accepts (see `wire`), and the frame rules below are those of [`decode_value`].
fn decode_text(text: &str) -> Result<ConnectorFrame, DecodeError> {
    let mut frame: Obj<Envelope<'_>> = crate::wire::from_str(text)
        .map_err(|e| DecodeError::malformed(format!("line is not JSON ({e})")))?;
    // Fields are taken from the envelope in place (it is large; see event.rs).
    let o = match &mut frame {
        Obj::Object { fields, .. } => fields,
        Obj::Other(_) => return Err(DecodeError::not_object("frame")),
    };
    let ty = match &o.ty {
        None | Some(Field::Null) => return Err(DecodeError::missing("type")),
        Some(Field::Str(s)) => s.as_ref(),
        Some(_) => return Err(DecodeError::invalid("type", "not a string")),
    };
    match ty {
        "descriptor" => {
            let d = o
                .descriptor
                .take()
                .unwrap_or_else(|| Value::Object(Map::new()));
            Ok(ConnectorFrame::Descriptor(descriptor::parse(&d)?))
        }
        "inbound" => {
            // A document field: absent → `{}`, explicit `null` → error (D2).
            let event = match &mut o.event {
                None => event::event_from_fields(&mut EventWire::default())?,
                Some(Obj::Other(Field::Null)) => {
                    return Err(DecodeError::invalid("event", "is null"))
                }
                Some(Obj::Other(_)) => return Err(DecodeError::not_object("event")),
                Some(Obj::Object { fields, .. }) => event::event_from_fields(fields)?,
            };
            Ok(ConnectorFrame::Inbound {
                event,
                buffer_id: buffer_id(o.buffer_id.take()),
            })
        }
        "outbound_result" => {
            let request_id = match o.request_id.take() {
                None | Some(Field::Null) => return Err(DecodeError::missing("requestId")),
                Some(Field::Str(s)) => s.into_owned(),
                Some(_) => return Err(DecodeError::invalid("requestId", "not a string")),
            };
            let result = o.result.take().unwrap_or_else(|| Value::Object(Map::new()));
            Ok(ConnectorFrame::OutboundResult { request_id, result })
        }
        "interrupt_inbound" => Ok(ConnectorFrame::InterruptInbound {
            session_key: wire::opt_str(o.session_key.take()).unwrap_or_default(),
            chat_id: wire::opt_str(o.chat_id.take()).unwrap_or_default(),
        }),
        "going_idle_ack" => Ok(ConnectorFrame::GoingIdleAck),
        "passthrough_forward" => {
            let forward = match &mut o.forward {
                None => forward::forward_from_fields(&mut ForwardWire::default()),
                Some(Obj::Other(Field::Null)) => {
                    return Err(DecodeError::invalid("forward", "is null"))
                }
                Some(Obj::Other(_)) => return Err(DecodeError::not_object("forward")),
                Some(Obj::Object { fields, .. }) => forward::forward_from_fields(fields),
            };
            Ok(ConnectorFrame::PassthroughForward {
                forward,
                buffer_id: buffer_id(o.buffer_id.take()),
            })
        }
        other => Err(DecodeError::new(
            ErrorKind::UnknownType,
            format!("unknown or gateway-bound frame type `{}`", truncate(other)),
        )),
    }
}

/// Decodes an already-parsed frame object (by its text: one implementation of
/// the frame rules).
pub fn decode_value(value: &Value) -> Result<ConnectorFrame, DecodeError> {
    decode_text(&value.to_string())
}

/// A buffer id in text form (`17` → `"17"`); falsy means none.
fn buffer_id(v: Option<Field<'_>>) -> Option<String> {
    v.filter(Field::truthy).and_then(Field::into_scalar_str)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_are_typed() {
        let kind = |line: &str| decode(line.as_bytes(), 1000).unwrap_err().kind;
        assert_eq!(kind("{}"), ErrorKind::MissingField);
        assert_eq!(kind(r#"{"type": 3}"#), ErrorKind::InvalidField);
        assert_eq!(kind(r#"{"type": "hello"}"#), ErrorKind::UnknownType);
        assert_eq!(kind("[]"), ErrorKind::NotObject);
        assert_eq!(kind(""), ErrorKind::MalformedJson);
        assert_eq!(
            decode(b"{\"type\":\"going_idle_ack\"}", 10)
                .unwrap_err()
                .kind,
            ErrorKind::TooLarge
        );
        assert_eq!(
            decode(b"\xff\xfe", 10).unwrap_err().kind,
            ErrorKind::MalformedJson
        );
    }

    /// One frames.json case: decode cases compare `frame.to_json()` with
    /// `expected.frame` by the comparison rule (an expected error is met by any
    /// error); encode cases compare the produced and expected lines, parsed, exactly.
    fn run_frame_case(input: &Value, expected: &Value) -> Result<(), String> {
        use base64::Engine;
        if let Some(frame) = input.get("encode") {
            let frame = GatewayFrame::from_json(frame).map_err(|e| format!("from_json: {e}"))?;
            let line = encode(&frame);
            let produced: Value = serde_json::from_str(line.trim_end_matches('\n'))
                .map_err(|e| format!("encoded line is not JSON: {e}"))?;
            let want: Value = expected["line"]
                .as_str()
                .and_then(|l| serde_json::from_str(l).ok())
                .ok_or("expected.line is not a JSON text")?;
            return if produced == want {
                Ok(())
            } else {
                Err(format!("encode: expected {want}, got {produced}"))
            };
        }
        let bytes = match (input.get("decode"), input.get("decode_b64")) {
            (Some(Value::String(text)), _) => text.as_bytes().to_vec(),
            (_, Some(Value::String(b64))) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("vector base64: {e}"))?,
            _ => return Err("case without decode, decode_b64 or encode".into()),
        };
        let limit = input
            .get("max_line_bytes")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_MAX_LINE_BYTES, |n| n as usize);
        match (expected.get("error"), decode(&bytes, limit)) {
            (Some(_), Err(_)) => Ok(()),
            (Some(kind), Ok(frame)) => Err(format!(
                "expected error {kind}, got {}",
                relay_testkit::compare::short(&frame.to_json())
            )),
            (None, Ok(frame)) => relay_testkit::compare::compare(
                &expected["frame"],
                &frame.to_json(),
                &mut Default::default(),
            ),
            (None, Err(e)) => Err(format!("unexpected error {e}")),
        }
    }

    #[test]
    fn conformance_vectors() {
        let file = "frames.json";
        let cases =
            relay_testkit::vectors::load_cases(&relay_testkit::vectors::vectors_dir().join(file))
                .unwrap();
        assert!(!cases.is_empty());
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|case| {
                let name = case["name"].as_str().unwrap_or("?");
                run_frame_case(&case["input"], &case["expected"])
                    .err()
                    .map(|diff| format!("{name}: {diff}"))
            })
            .collect();
        for f in &failures {
            println!("FAIL {file} {f}");
        }
        println!(
            "{file}: {}/{} passed",
            cases.len() - failures.len(),
            cases.len()
        );
        assert!(
            failures.is_empty(),
            "{file}: {} failing cases",
            failures.len()
        );
    }

    #[test]
    fn encode_matches_reference_spacing() {
        let f = GatewayFrame::Interrupt {
            session_key: "s".into(),
            reason: None,
        };
        assert_eq!(
            encode(&f),
            r#"{"type": "interrupt", "session_key": "s", "reason": null}"#
        );
        let back = GatewayFrame::from_json(&f.to_json()).unwrap();
        assert_eq!(back, f);
    }
}
