//! The `hermes:relay` exports (wit/relay.wit) mapped onto `relay-logic`: WIT
//! values in, the logic's calls, WIT values out. No decision is made here.

use std::cell::RefCell;

use serde_json::Value;

use relay_logic::codec::{ConnectorFrame, GatewayFrame};
use relay_logic::error::{DecodeError, ErrorKind};
use relay_logic::link::{self, Effect, EventKind};
use relay_logic::session::{self, Caps, Level, LinkState};

wit_bindgen::generate!({
    world: "relay",
    path: "../../wit",
    // The WASI interfaces the world imports (stderr and its wasi:io types).
    generate_all,
});

use exports::hermes::relay::codec::Guest as CodecGuest;
use exports::hermes::relay::session as wsession;
use exports::hermes::relay::types as wtypes;

struct Component;

export!(Component);

/// The component is built for wasm32-unknown-unknown (it imports no WASI it
/// does not use), where a panic aborts without a word; this hook first writes
/// the message to the one import the component has, stderr (at most 2 KiB),
/// so the operator learns why the instance trapped.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let mut text = format!("relay component panicked: {info}\n");
            if text.len() > 2048 {
                let mut end = 2048;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            let stderr = wasi::cli::stderr::get_stderr();
            let _ = stderr.blocking_write_and_flush(text.as_bytes());
        }));
    });
}

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
        install_panic_hook();
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

/// The exported resource: a native `link::Link` behind a `RefCell` (component
/// resources are shared references; calls never re-enter).
pub struct LinkResource {
    inner: RefCell<link::Link>,
}

fn level_to_wit(level: Level) -> wsession::LogLevel {
    match level {
        Level::Trace => wsession::LogLevel::Trace,
        Level::Debug => wsession::LogLevel::Debug,
        Level::Info => wsession::LogLevel::Info,
        Level::Warn => wsession::LogLevel::Warn,
        Level::Error => wsession::LogLevel::Error,
    }
}

fn state_to_wit(state: LinkState) -> wsession::LinkState {
    match state {
        LinkState::Connecting => wsession::LinkState::Connecting,
        LinkState::Handshaking => wsession::LinkState::Handshaking,
        LinkState::Ready => wsession::LinkState::Ready,
        LinkState::Idle => wsession::LinkState::Idle,
        LinkState::HandshakeFailed => wsession::LinkState::HandshakeFailed,
        LinkState::Backoff => wsession::LinkState::Backoff,
        LinkState::Redial => wsession::LinkState::Redial,
        LinkState::Revoked => wsession::LinkState::Revoked,
        LinkState::Closing => wsession::LinkState::Closing,
        LinkState::Stopped => wsession::LinkState::Stopped,
    }
}

fn kind_to_wit(kind: EventKind) -> wsession::EventKind {
    match kind {
        EventKind::State => wsession::EventKind::State,
        EventKind::Ready => wsession::EventKind::Ready,
        EventKind::Descriptor => wsession::EventKind::Descriptor,
        EventKind::Message => wsession::EventKind::Message,
        EventKind::Interrupt => wsession::EventKind::Interrupt,
        EventKind::OutboundResult => wsession::EventKind::OutboundResult,
        EventKind::PromptStale => wsession::EventKind::PromptStale,
        EventKind::Idle => wsession::EventKind::Idle,
    }
}

fn effects_to_wit(effects: Vec<Effect>) -> Vec<wsession::Effect> {
    effects
        .into_iter()
        .map(|e| match e {
            Effect::Send { number, line } => {
                wsession::Effect::Send(wsession::Outgoing { number, line })
            }
            Effect::SendPing => wsession::Effect::SendPing,
            Effect::Emit(ev) => wsession::Effect::Emit(wsession::Event {
                kind: kind_to_wit(ev.kind),
                state: ev.state.map(state_to_wit),
                id: ev.id,
                buffer_id: ev.buffer_id,
                acked: ev.acked,
                line: ev.line.into_bytes(),
            }),
            Effect::CloseLink { code, reason } => {
                wsession::Effect::CloseLink(wsession::CloseRequest { code, reason })
            }
            Effect::Dial { url, authorization } => {
                wsession::Effect::Dial(wsession::DialRequest { url, authorization })
            }
            Effect::Log(level, message) => wsession::Effect::Log(wsession::LogRecord {
                level: level_to_wit(level),
                message,
            }),
        })
        .collect()
}

fn caps_from_wit(c: wsession::Caps) -> Result<Caps, wtypes::DecodeError> {
    let mut caps = Caps::default();
    let set = |slot: &mut usize, v: Option<u32>, field: &str| match v {
        Some(0) => Err(werr(DecodeError::invalid(field, "must be at least 1"))),
        Some(n) => {
            *slot = n as usize;
            Ok(())
        }
        None => Ok(()),
    };
    set(
        &mut caps.pending_requests,
        c.pending_requests,
        "caps.pending_requests",
    )?;
    set(&mut caps.buffer_ids, c.buffer_ids, "caps.buffer_ids")?;
    set(&mut caps.prompts, c.prompts, "caps.prompts")?;
    set(
        &mut caps.answered_prompts,
        c.answered_prompts,
        "caps.answered_prompts",
    )?;
    set(&mut caps.egress_chats, c.egress_chats, "caps.egress_chats")?;
    set(&mut caps.message_ids, c.message_ids, "caps.message_ids")?;
    Ok(caps)
}

fn config_from_wit(c: wsession::Config) -> Result<link::LinkConfig, wtypes::DecodeError> {
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
    let o = c.options;
    Ok(link::LinkConfig {
        identities,
        url: c.url,
        tenant: c.tenant,
        seed: c.seed,
        unix_offset_ms: c.unix_offset_ms,
        gateway_id: c.gateway_id,
        secret: c.secret,
        options: link::Options {
            handshake_timeout_ms: o.handshake_timeout_ms,
            outbound_timeout_ms: o.outbound_timeout_ms,
            going_idle_timeout_ms: o.going_idle_timeout_ms,
            max_line_bytes: o.max_line_bytes,
            prompt_nonce: o.prompt_nonce,
            reconnect_jitter_percent: o.reconnect_jitter_percent,
            backoff_base_ms: o.backoff_base_ms,
            backoff_max_ms: o.backoff_max_ms,
            stable_connection_ms: o.stable_connection_ms,
            token_ttl_seconds: o.token_ttl_seconds,
            ping_interval_ms: o.ping_interval_ms,
            pong_timeout_ms: o.pong_timeout_ms,
            dead_link_close_code: o.dead_link_close_code,
            max_message_bytes: o.max_message_bytes,
            close_wait_ms: o.close_wait_ms,
            caps: o.caps.map(caps_from_wit).transpose()?,
        },
    })
}

impl wsession::Guest for Component {
    type Link = LinkResource;
}

impl LinkResource {
    fn with(&self, f: impl FnOnce(&mut link::Link) -> Vec<Effect>) -> Vec<wsession::Effect> {
        effects_to_wit(f(&mut self.inner.borrow_mut()))
    }
}

impl wsession::GuestLink for LinkResource {
    fn create(config: wsession::Config) -> Result<wsession::Link, wtypes::DecodeError> {
        install_panic_hook();
        let link = link::Link::new(config_from_wit(config)?).map_err(werr)?;
        Ok(wsession::Link::new(LinkResource {
            inner: RefCell::new(link),
        }))
    }

    fn settings(&self) -> wsession::Settings {
        let link = self.inner.borrow();
        let s = link.settings();
        wsession::Settings {
            dial_url: s.dial_url.clone(),
            max_message_bytes: s.max_message_bytes,
            close_wait_ms: s.close_wait_ms,
            ping_interval_ms: s.ping_interval_ms,
            pong_timeout_ms: s.pong_timeout_ms,
            summary: s.to_json().to_string(),
        }
    }

    fn start(&self, now_ms: u64) -> Vec<wsession::Effect> {
        self.with(|l| l.start(now_ms))
    }

    fn open(&self, now_ms: u64) -> Vec<wsession::Effect> {
        self.with(|l| l.open(now_ms))
    }

    fn receive_text(&self, now_ms: u64, text: String) -> Vec<wsession::Effect> {
        self.with(|l| l.receive_text(now_ms, &text))
    }

    fn receive_binary(&self, now_ms: u64, bytes: Vec<u8>) -> Vec<wsession::Effect> {
        self.with(|l| l.receive(now_ms, &bytes))
    }

    fn pong(&self, now_ms: u64) -> Vec<wsession::Effect> {
        self.with(|l| l.pong(now_ms))
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.inner.borrow().poll_timeout()
    }

    fn handle_timeout(&self, now_ms: u64) -> Vec<wsession::Effect> {
        self.with(|l| l.handle_timeout(now_ms))
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
        self.with(|l| l.outbound(now_ms, &id, action, platform))
    }

    fn interrupt(
        &self,
        now_ms: u64,
        session_key: String,
        reason: Option<String>,
    ) -> Vec<wsession::Effect> {
        self.with(|l| l.interrupt(now_ms, &session_key, reason))
    }

    fn ack(&self, now_ms: u64, buffer_id: String) -> Vec<wsession::Effect> {
        self.with(|l| l.ack(now_ms, &buffer_id))
    }

    fn nack(&self, now_ms: u64, buffer_id: String) -> Vec<wsession::Effect> {
        self.with(|l| l.nack(now_ms, &buffer_id))
    }

    fn going_idle(&self, now_ms: u64) -> Vec<wsession::Effect> {
        self.with(|l| l.going_idle(now_ms))
    }

    fn hold_redial(&self, now_ms: u64) -> Vec<wsession::Effect> {
        self.with(|l| l.hold_redial(now_ms))
    }

    fn release_redial(&self, now_ms: u64) -> Vec<wsession::Effect> {
        self.with(|l| l.release_redial(now_ms))
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

    fn write_failed(&self, now_ms: u64, number: u64, reason: String) -> Vec<wsession::Effect> {
        self.with(|l| l.write_failed(now_ms, number, &reason))
    }

    fn shutdown(
        &self,
        now_ms: u64,
        grace_ms: u64,
        reason: Option<String>,
    ) -> Vec<wsession::Effect> {
        self.with(|l| l.shutdown(now_ms, grace_ms, reason))
    }

    fn closed(&self, now_ms: u64, code: Option<u16>, reason: String) -> Vec<wsession::Effect> {
        self.with(|l| l.closed(now_ms, code, &reason))
    }

    fn recover(&self, now_ms: u64, recovery: wsession::Recovery) -> Vec<wsession::Effect> {
        let owed = recovery
            .owed
            .into_iter()
            .map(|o| (o.id, o.action.and_then(|a| serde_json::from_str(&a).ok())))
            .collect();
        let recovery = link::Recovery {
            owed,
            in_flight: recovery.in_flight,
            idle_owed: recovery.idle_owed,
            dial_after_ms: recovery.dial_after_ms,
            revoked: recovery.revoked,
            reason: recovery.reason,
        };
        self.with(|l| l.recover(now_ms, recovery))
    }

    fn stats(&self) -> wsession::Stats {
        let s = self.inner.borrow().stats();
        wsession::Stats {
            state: state_to_wit(s.state),
            connected: s.connected,
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            pending_outbound: s.pending_outbound,
            consecutive_failures: s.consecutive_failures,
        }
    }

    fn descriptors(&self) -> String {
        self.inner.borrow().descriptors_json().to_string()
    }
}
