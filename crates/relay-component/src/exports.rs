//! The `hermes:relay` exports (wit/relay.wit) mapped onto `relay-logic`: WIT
//! values in, the logic's calls, WIT values out. No decision is made here.

use std::cell::RefCell;

use serde_json::Value;

use relay_logic::codec::{ConnectorFrame, GatewayFrame};
use relay_logic::error::{DecodeError, ErrorKind};
use relay_logic::session::{self, Effect, Level};

wit_bindgen::generate!({
    world: "relay",
    path: "../../wit",
});

use exports::hermes::relay::codec::Guest as CodecGuest;
use exports::hermes::relay::session as wsession;
use exports::hermes::relay::types as wtypes;

struct Component;

export!(Component);

fn werr(e: DecodeError) -> wtypes::DecodeError {
    let kind = match e.kind {
        ErrorKind::MalformedJson => wtypes::ErrorKind::MalformedJson,
        ErrorKind::NotObject => wtypes::ErrorKind::NotObject,
        ErrorKind::MissingField => wtypes::ErrorKind::MissingField,
        ErrorKind::InvalidField => wtypes::ErrorKind::InvalidField,
        ErrorKind::TooLarge => wtypes::ErrorKind::TooLarge,
        ErrorKind::UnknownType => wtypes::ErrorKind::UnknownType,
    };
    wtypes::DecodeError {
        kind,
        message: e.message,
    }
}

fn parse_json(text: &str, what: &str) -> Result<Value, wtypes::DecodeError> {
    serde_json::from_str(text)
        .map_err(|e| werr(DecodeError::malformed(format!("{what} is not JSON ({e})"))))
}

fn frame_to_wit(frame: ConnectorFrame) -> wtypes::ConnectorFrame {
    match frame {
        ConnectorFrame::Descriptor(d) => {
            wtypes::ConnectorFrame::Descriptor(d.to_json().to_string())
        }
        ConnectorFrame::Inbound { event, buffer_id } => {
            wtypes::ConnectorFrame::Inbound(wtypes::InboundFrame {
                event: {
                    // The typed writer: byte-identical to the Value rendering.
                    let mut out = String::with_capacity(event.text.len() + 640);
                    event.write_json(&mut out);
                    out
                },
                buffer_id,
            })
        }
        ConnectorFrame::OutboundResult { request_id, result } => {
            wtypes::ConnectorFrame::OutboundResult(wtypes::OutboundResultFrame {
                request_id,
                result: result.to_string(),
            })
        }
        ConnectorFrame::InterruptInbound {
            session_key,
            chat_id,
        } => wtypes::ConnectorFrame::InterruptInbound(wtypes::InterruptInboundFrame {
            session_key,
            chat_id,
        }),
        ConnectorFrame::GoingIdleAck => wtypes::ConnectorFrame::GoingIdleAck,
        ConnectorFrame::PassthroughForward { forward, buffer_id } => {
            wtypes::ConnectorFrame::PassthroughForward(wtypes::PassthroughFrame {
                forward: forward.to_json().to_string(),
                buffer_id,
            })
        }
    }
}

fn frame_from_wit(frame: wtypes::GatewayFrame) -> GatewayFrame {
    // An unparsable embedded JSON document is carried as a JSON string rather
    // than dropped, so the frame is still well-formed on the wire.
    let doc = |text: String| serde_json::from_str(&text).unwrap_or(Value::String(text));
    match frame {
        wtypes::GatewayFrame::Hello(h) => GatewayFrame::Hello {
            platform: h.platform,
            bot_id: h.bot_id,
            command_manifest: h.command_manifest.map(doc),
        },
        wtypes::GatewayFrame::Outbound(o) => GatewayFrame::Outbound {
            request_id: o.request_id,
            action: doc(o.action),
            platform: o.platform,
            bot_id: o.bot_id,
        },
        wtypes::GatewayFrame::Interrupt(i) => GatewayFrame::Interrupt {
            session_key: i.session_key,
            reason: i.reason,
        },
        wtypes::GatewayFrame::GoingIdle => GatewayFrame::GoingIdle,
        wtypes::GatewayFrame::InboundAck(id) => GatewayFrame::InboundAck(id),
    }
}

impl CodecGuest for Component {
    fn decode(
        line: Vec<u8>,
        max_line_bytes: u32,
    ) -> Result<wtypes::ConnectorFrame, wtypes::DecodeError> {
        relay_logic::codec::decode(&line, max_line_bytes as usize)
            .map(frame_to_wit)
            .map_err(werr)
    }

    fn encode(frame: wtypes::GatewayFrame) -> String {
        relay_logic::codec::encode(&frame_from_wit(frame))
    }

    fn dial_url(base: String) -> String {
        relay_logic::url::dial_url(&base)
    }

    fn provision_url(base: String) -> String {
        relay_logic::url::provision_url(&base)
    }

    fn upgrade_token(
        gateway_id: String,
        secret: String,
        ttl_seconds: i64,
        now_unix_s: i64,
    ) -> String {
        relay_logic::auth::upgrade_token(&gateway_id, &secret, ttl_seconds, now_unix_s)
    }

    fn sign(payload: String, secret: String) -> String {
        relay_logic::auth::sign(&payload, &secret)
    }

    fn normalize_descriptor(descriptor: String) -> Result<String, wtypes::DecodeError> {
        let v = parse_json(&descriptor, "descriptor")?;
        let d = relay_logic::descriptor::parse(&v).map_err(werr)?;
        let mut json = d.to_json();
        if let Value::Object(m) = &mut json {
            let supports: serde_json::Map<String, Value> = relay_logic::descriptor::PROBED_OPS
                .iter()
                .map(|op| (op.to_string(), Value::Bool(d.supports_op(op))))
                .collect();
            m.insert("supports_op".into(), Value::Object(supports));
        }
        Ok(json.to_string())
    }

    fn inbound_event(event: String) -> Result<String, wtypes::DecodeError> {
        // Text that is not JSON is `malformed_json` ("event is not JSON (...)").
        relay_logic::event::event_from_str(&event)
            .map(|e| {
                let mut out = String::with_capacity(e.text.len() + 512);
                e.write_json(&mut out);
                out
            })
            .map_err(werr)
    }

    fn passthrough_forward(forward: String) -> Result<String, wtypes::DecodeError> {
        // Text that is not JSON is `malformed_json` ("forward is not JSON (...)").
        relay_logic::forward::forward_from_str(&forward)
            .map(|f| f.to_json().to_string())
            .map_err(werr)
    }

    fn discord_event(forward: String) -> Result<Option<String>, wtypes::DecodeError> {
        let v = parse_json(&forward, "forward")?;
        let f = relay_logic::forward::Forward::from_json(&v).map_err(werr)?;
        Ok(relay_logic::discord::interaction_to_event(&f)
            .ok()
            .map(|e| e.to_json().to_string()))
    }
}

/// The exported resource: a native `session::Connection` behind a `RefCell`
/// (component resources are shared references; calls never re-enter).
pub struct ConnectionResource {
    inner: RefCell<session::Connection>,
}

fn effects_to_wit(effects: Vec<Effect>) -> Vec<wsession::Effect> {
    effects
        .into_iter()
        .map(|e| match e {
            Effect::Send { frame, line } => wsession::Effect::Send(wsession::Outgoing {
                number: frame,
                line,
            }),
            Effect::Emit(v) => wsession::Effect::Emit(v.to_json_string().into_bytes()),
            Effect::SetTimer { id, at_ms } => {
                wsession::Effect::SetTimer(wsession::Timer { id, at_ms })
            }
            Effect::CancelTimer(id) => wsession::Effect::CancelTimer(id),
            Effect::CloseLink(r) => wsession::Effect::CloseLink(r),
            Effect::Reconnect(ms) => wsession::Effect::Reconnect(ms),
            Effect::Redial => wsession::Effect::Redial,
            Effect::GiveUp(r) => wsession::Effect::GiveUp(r),
            Effect::Log(level, message) => wsession::Effect::Log(wsession::LogRecord {
                level: match level {
                    Level::Trace => wsession::LogLevel::Trace,
                    Level::Debug => wsession::LogLevel::Debug,
                    Level::Info => wsession::LogLevel::Info,
                    Level::Warn => wsession::LogLevel::Warn,
                    Level::Error => wsession::LogLevel::Error,
                },
                message,
            }),
        })
        .collect()
}

fn config_from_wit(c: wsession::Config) -> Result<session::Config, wtypes::DecodeError> {
    let mut identities = Vec::with_capacity(c.identities.len());
    for id in c.identities {
        let command_manifest = match id.command_manifest {
            Some(text) => Some(parse_json(&text, "command_manifest")?),
            None => None,
        };
        identities.push(session::Identity {
            platform: id.platform,
            bot_id: id.bot_id,
            command_manifest,
        });
    }
    Ok(session::Config {
        identities,
        handshake_timeout_ms: c.handshake_timeout_ms,
        outbound_timeout_ms: c.outbound_timeout_ms,
        going_idle_timeout_ms: c.going_idle_timeout_ms,
        max_line_bytes: c.max_line_bytes as usize,
        prompt_nonce: c.prompt_nonce,
        seed: c.seed,
        reconnect_jitter_percent: c.reconnect_jitter_percent,
        backoff_base_ms: c.backoff_base_ms,
        backoff_max_ms: c.backoff_max_ms,
        stable_connection_ms: c.stable_connection_ms,
        gateway_id: c.gateway_id,
        secret: c.secret,
        token_ttl_seconds: c.token_ttl_seconds,
    })
}

impl wsession::Guest for Component {
    type Connection = ConnectionResource;
}

impl wsession::GuestConnection for ConnectionResource {
    fn create(config: wsession::Config) -> Result<wsession::Connection, wtypes::DecodeError> {
        let conn = session::Connection::new(config_from_wit(config)?).map_err(werr)?;
        Ok(wsession::Connection::new(ConnectionResource {
            inner: RefCell::new(conn),
        }))
    }

    fn authorization(&self, now_unix_s: i64) -> Option<String> {
        self.inner.borrow().authorization(now_unix_s)
    }

    fn open(&self, now_ms: u64) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().open(now_ms))
    }

    fn receive_text(&self, now_ms: u64, text: String) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().receive_text(now_ms, &text))
    }

    fn receive_binary(&self, now_ms: u64, bytes: Vec<u8>) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().receive(now_ms, &bytes))
    }

    fn timer_fired(&self, now_ms: u64, id: u64) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().timer_fired(now_ms, id))
    }

    fn outbound(
        &self,
        now_ms: u64,
        id: String,
        action: String,
        platform: Option<String>,
    ) -> Vec<wsession::Effect> {
        // A non-JSON action is still answered (the session reports it), never lost.
        let action = serde_json::from_str(&action).unwrap_or(Value::String(action));
        effects_to_wit(
            self.inner
                .borrow_mut()
                .outbound(now_ms, &id, action, platform),
        )
    }

    fn interrupt(
        &self,
        now_ms: u64,
        session_key: String,
        reason: Option<String>,
    ) -> Vec<wsession::Effect> {
        effects_to_wit(
            self.inner
                .borrow_mut()
                .interrupt(now_ms, &session_key, reason),
        )
    }

    fn ack(&self, now_ms: u64, buffer_id: String) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().ack(now_ms, &buffer_id))
    }

    fn nack(&self, now_ms: u64, buffer_id: String) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().nack(now_ms, &buffer_id))
    }

    fn hold_redial(&self, now_ms: u64) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().hold_redial(now_ms))
    }

    fn release_redial(&self, now_ms: u64) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().release_redial(now_ms))
    }

    fn write_failed(&self, now_ms: u64, number: u64, reason: String) -> Vec<wsession::Effect> {
        effects_to_wit(
            self.inner
                .borrow_mut()
                .write_failed(now_ms, number, &reason),
        )
    }

    fn stop(&self, now_ms: u64) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().stop(now_ms))
    }

    fn going_idle(&self, now_ms: u64) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().going_idle(now_ms))
    }

    fn command(
        &self,
        now_ms: u64,
        command: String,
    ) -> Result<Vec<wsession::Effect>, wtypes::DecodeError> {
        let v = parse_json(&command, "command")?;
        self.inner
            .borrow_mut()
            .command(now_ms, &v)
            .map(effects_to_wit)
            .map_err(werr)
    }

    fn closed(&self, now_ms: u64, code: Option<u16>, reason: String) -> Vec<wsession::Effect> {
        effects_to_wit(self.inner.borrow_mut().closed(now_ms, code, &reason))
    }

    fn stats(&self) -> String {
        self.inner.borrow().stats().to_string()
    }

    fn descriptors(&self) -> String {
        self.inner.borrow().descriptors_json().to_string()
    }
}
