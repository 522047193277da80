//! What the emulator observed and did, as typed values and as NDJSON lines.
//!
//! Tests match on the typed [`Observed`]; the CLI prints [`Observed::to_json`], one
//! object per line, so a script in any language can follow a session.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

/// Which side ended a connection, for the `disconnected` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The gateway sent a close frame.
    Gateway,
    /// The emulator closed it (script, auth rejection or shutdown).
    Connector,
    /// The TCP stream ended or failed without a close handshake.
    Transport,
}

impl Initiator {
    fn as_str(self) -> &'static str {
        match self {
            Initiator::Gateway => "gateway",
            Initiator::Connector => "connector",
            Initiator::Transport => "transport",
        }
    }
}

/// A frame received from the gateway (the `seen` reports).
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// `hello`: one per identity the gateway fronts.
    Hello {
        platform: String,
        bot_id: String,
        command_manifest: Option<Value>,
    },
    /// `outbound`: an action the gateway wants performed.
    Outbound {
        request_id: Value,
        action: Value,
        platform: Option<Value>,
        bot_id: Option<Value>,
    },
    /// `interrupt`: a gateway-side stop for a session.
    Interrupt { session_key: Value, reason: Value },
    /// `going_idle`: switch to buffered-only delivery.
    GoingIdle,
    /// `inbound_ack`: `known` says whether the id was pending in the replay buffer.
    InboundAck { buffer_id: Value, known: bool },
    /// A well-formed object whose `type` the connector side does not handle.
    Unknown { frame_type: Value, frame: Value },
    /// A line that is not a JSON object (skipped, the reader carries on).
    Malformed { line: String, error: String },
}

/// A frame or action the emulator produced (the `sent` and `did` reports).
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// Answer to a `hello`.
    Descriptor { platform: String },
    /// Answer to an `outbound`.
    OutboundResult { request_id: Value, result: Value },
    /// An inbound event; `replay` marks a re-delivery of a buffered one.
    Inbound {
        buffer_id: Option<String>,
        replay: bool,
    },
    /// A passthrough forward; `replay` marks a re-delivery of a buffered one.
    Passthrough {
        buffer_id: Option<String>,
        replay: bool,
    },
    /// `interrupt_inbound` to the gateway.
    InterruptInbound { session_key: Value, chat_id: Value },
    /// Answer to `going_idle`.
    GoingIdleAck,
    /// A close frame.
    Close { code: u16, reason: String },
    /// A scripted raw text (or binary) message.
    Raw { line: String },
}

/// One observation, in the order the emulator made them.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The listener is bound (always the first report of a run).
    Listening { addr: SocketAddr },
    /// A gateway completed the WebSocket upgrade and passed authentication.
    Connected {
        conn: u64,
        peer: SocketAddr,
        gateway_id: Option<String>,
    },
    /// The upgrade succeeded but the token did not: closed with `code`.
    Rejected {
        conn: u64,
        peer: SocketAddr,
        code: u16,
        reason: String,
        detail: String,
        gateway_id: Option<String>,
    },
    /// An HTTP request that never became a relay connection (wrong path, not a
    /// WebSocket upgrade, handshake timeout).
    Refused { peer: SocketAddr, error: String },
    /// A connection ended.
    Disconnected {
        conn: u64,
        code: Option<u16>,
        reason: String,
        initiator: Initiator,
    },
    /// A frame received from the gateway.
    Seen { conn: u64, frame: Seen },
    /// A frame the emulator wrote.
    Sent { conn: u64, frame: Sent },
    /// The TCP stream was dropped without a close frame (`drop` command, `kill`).
    Dropped { conn: u64 },
    /// A buffered item had no live connection; it waits for the next hello.
    Queued { buffer_id: String },
    /// An `outbound` left unanswered on purpose (a `silent` rule).
    Withheld { conn: u64, request_id: Value },
    /// A write to the gateway failed (the connection is going away).
    SendFailed { conn: u64, error: String },
    /// The connection is not read for `ms` milliseconds (`stall`): its pings
    /// go unanswered.
    Stalled { conn: u64, ms: u64 },
    /// A stall ended: the connection is read again.
    Resumed { conn: u64 },
}

impl Observed {
    /// The NDJSON form printed by the CLI (see docs/CONNECTOR.md).
    pub fn to_json(&self) -> Value {
        match self {
            Observed::Listening { addr } => json!({"listening": addr.to_string()}),
            Observed::Connected {
                conn,
                peer,
                gateway_id,
            } => json!({"connected": conn, "peer": peer.to_string(), "gateway_id": gateway_id}),
            Observed::Rejected {
                conn,
                peer,
                code,
                reason,
                detail,
                gateway_id,
            } => json!({
                "rejected": conn, "peer": peer.to_string(), "code": code, "reason": reason,
                "detail": detail, "gateway_id": gateway_id,
            }),
            Observed::Refused { peer, error } => {
                json!({"refused": peer.to_string(), "error": error})
            }
            Observed::Disconnected {
                conn,
                code,
                reason,
                initiator,
            } => json!({
                "disconnected": conn, "code": code, "reason": reason,
                "initiator": initiator.as_str(),
            }),
            Observed::Seen { conn, frame } => seen_json(*conn, frame),
            Observed::Sent { conn, frame } => sent_json(*conn, frame),
            Observed::Dropped { conn } => json!({"did": "drop", "conn": conn}),
            Observed::Queued { buffer_id } => json!({"did": "queue", "bufferId": buffer_id}),
            Observed::Withheld { conn, request_id } => {
                json!({"did": "withhold", "conn": conn, "requestId": request_id})
            }
            Observed::SendFailed { conn, error } => {
                json!({"did": "send_failed", "conn": conn, "error": error})
            }
            Observed::Stalled { conn, ms } => json!({"did": "stall", "conn": conn, "ms": ms}),
            Observed::Resumed { conn } => json!({"did": "resume", "conn": conn}),
        }
    }
}

fn seen_json(conn: u64, frame: &Seen) -> Value {
    let mut m = Map::new();
    let kind = match frame {
        Seen::Hello { .. } => "hello",
        Seen::Outbound { .. } => "outbound",
        Seen::Interrupt { .. } => "interrupt",
        Seen::GoingIdle => "going_idle",
        Seen::InboundAck { .. } => "inbound_ack",
        Seen::Unknown { .. } => "unknown",
        Seen::Malformed { .. } => "malformed",
    };
    m.insert("seen".into(), kind.into());
    m.insert("conn".into(), conn.into());
    match frame {
        Seen::Hello {
            platform,
            bot_id,
            command_manifest,
        } => {
            m.insert("platform".into(), platform.clone().into());
            m.insert("botId".into(), bot_id.clone().into());
            if let Some(manifest) = command_manifest {
                m.insert("command_manifest".into(), manifest.clone());
            }
        }
        Seen::Outbound {
            request_id,
            action,
            platform,
            bot_id,
        } => {
            m.insert("requestId".into(), request_id.clone());
            let op = action.get("op").cloned().unwrap_or(Value::Null);
            m.insert("op".into(), op);
            m.insert("action".into(), action.clone());
            if let Some(p) = platform {
                m.insert("platform".into(), p.clone());
            }
            if let Some(b) = bot_id {
                m.insert("botId".into(), b.clone());
            }
        }
        Seen::Interrupt {
            session_key,
            reason,
        } => {
            m.insert("session_key".into(), session_key.clone());
            m.insert("reason".into(), reason.clone());
        }
        Seen::GoingIdle => {}
        Seen::InboundAck { buffer_id, known } => {
            m.insert("bufferId".into(), buffer_id.clone());
            m.insert("known".into(), (*known).into());
        }
        Seen::Unknown { frame_type, frame } => {
            m.insert("type".into(), frame_type.clone());
            m.insert("frame".into(), frame.clone());
        }
        Seen::Malformed { line, error } => {
            m.insert("line".into(), line.clone().into());
            m.insert("error".into(), error.clone().into());
        }
    }
    Value::Object(m)
}

fn sent_json(conn: u64, frame: &Sent) -> Value {
    match frame {
        Sent::Descriptor { platform } => {
            json!({"sent": "descriptor", "conn": conn, "platform": platform})
        }
        Sent::OutboundResult { request_id, result } => json!({
            "sent": "outbound_result", "conn": conn, "requestId": request_id, "result": result,
        }),
        Sent::Inbound { buffer_id, replay } => json!({
            "sent": "inbound", "conn": conn, "bufferId": buffer_id, "replay": replay,
        }),
        Sent::Passthrough { buffer_id, replay } => json!({
            "sent": "passthrough_forward", "conn": conn, "bufferId": buffer_id, "replay": replay,
        }),
        Sent::InterruptInbound {
            session_key,
            chat_id,
        } => json!({
            "sent": "interrupt_inbound", "conn": conn, "session_key": session_key,
            "chat_id": chat_id,
        }),
        Sent::GoingIdleAck => json!({"sent": "going_idle_ack", "conn": conn}),
        Sent::Close { code, reason } => {
            json!({"sent": "close", "conn": conn, "code": code, "reason": reason})
        }
        Sent::Raw { line } => json!({"sent": "raw", "conn": conn, "line": line}),
    }
}
