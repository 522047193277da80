//! The native connection as a `relay_testkit::script::Machine`, so the one step
//! driver runs it; and the case config mapped onto [`Config`] and [`Caps`].

use relay_testkit::script::{CallError, CaseConfig, Failure, Machine, Message, Script, View};
use relay_testkit::transcripts::{CapCounts, Transcript};
use serde_json::Value;

use crate::link::{self, Link, LinkConfig, Options};
use crate::session::{Caps, Config, Connection, Effect, Identity};

/// The native connection, driven by the testkit.
pub struct Native(pub Connection);

impl Machine for Native {
    type Effect = Effect;

    fn open(&mut self, now_ms: u64) -> Result<Vec<Effect>, CallError> {
        Ok(self.0.open(now_ms))
    }
    fn receive(&mut self, now_ms: u64, message: Message<'_>) -> Result<Vec<Effect>, CallError> {
        Ok(self.0.receive(now_ms, message.bytes()))
    }
    fn timer_fired(&mut self, now_ms: u64, id: u64) -> Result<Vec<Effect>, CallError> {
        Ok(self.0.timer_fired(now_ms, id))
    }
    fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Effect>, CallError> {
        self.0
            .command(now_ms, command)
            .map_err(|e| CallError::Rejected {
                kind: e.kind.as_str().to_string(),
                message: e.message,
            })
    }
    fn closed(
        &mut self,
        now_ms: u64,
        code: Option<u16>,
        reason: &str,
    ) -> Result<Vec<Effect>, CallError> {
        Ok(self.0.closed(now_ms, code, reason))
    }
    fn write_failed(
        &mut self,
        now_ms: u64,
        frame: u64,
        reason: &str,
    ) -> Result<Vec<Effect>, CallError> {
        Ok(self.0.write_failed(now_ms, frame, reason))
    }
    fn stop(&mut self, now_ms: u64) -> Result<Vec<Effect>, CallError> {
        Ok(self.0.stop(now_ms))
    }
    fn view(effect: &Effect) -> Result<View<'_>, String> {
        Ok(match effect {
            Effect::Send { frame, line } => View::Send {
                line,
                frame: *frame,
            },
            Effect::Emit(ev) => View::Emit(ev.to_value()),
            Effect::SetTimer { id, at_ms } => View::SetTimer {
                id: *id,
                at_ms: *at_ms,
            },
            Effect::CancelTimer(id) => View::CancelTimer(*id),
            _ => View::Other,
        })
    }
}

/// A case's `config` → [`Config`] (the logic's defaults where a field is absent).
pub fn config_from_case(config: &Value) -> Result<Config, String> {
    let case = CaseConfig::parse(config)?;
    let identities = case
        .identities
        .into_iter()
        .map(|id| Identity {
            platform: id.platform,
            bot_id: id.bot_id,
            command_manifest: id.command_manifest,
        })
        .collect();
    let mut c = Config::new(identities);
    let set = |slot: &mut u64, v: Option<u64>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut c.handshake_timeout_ms, case.handshake_timeout_ms);
    set(&mut c.outbound_timeout_ms, case.outbound_timeout_ms);
    set(&mut c.going_idle_timeout_ms, case.going_idle_timeout_ms);
    set(&mut c.seed, case.seed);
    set(&mut c.stable_connection_ms, case.stable_connection_ms);
    set(&mut c.backoff_base_ms, case.backoff_base_ms);
    set(&mut c.backoff_max_ms, case.backoff_max_ms);
    if let Some(v) = case.max_line_bytes {
        c.max_line_bytes = usize::try_from(v).map_err(|_| "config.max_line_bytes too large")?;
    }
    if let Some(v) = case.prompt_nonce {
        c.prompt_nonce = v;
    }
    c.gateway_id = case.gateway_id;
    c.secret = case.secret;
    c.reconnect_jitter_percent = case.reconnect_jitter_percent;
    Ok(c)
}

/// A transcript's `caps` object (field names of [`Caps`]) over the defaults.
pub fn caps_from(value: Option<&Value>) -> Result<Caps, String> {
    let d = Caps::default();
    let Some(value) = value else { return Ok(d) };
    let c = CapCounts::parse(value)?;
    let or = |n: Option<u32>, default: usize| n.map_or(default, |n| n as usize);
    Ok(Caps {
        pending_requests: or(c.pending_requests, d.pending_requests),
        buffer_ids: or(c.buffer_ids, d.buffer_ids),
        prompts: or(c.prompts, d.prompts),
        answered_prompts: or(c.answered_prompts, d.answered_prompts),
        egress_chats: or(c.egress_chats, d.egress_chats),
        message_ids: or(c.message_ids, d.message_ids),
    })
}

/// Runs one sessions.json case against a native [`Connection`].
pub fn run_case(case: &Value) -> Result<(), Failure> {
    let setup = |message: String| Failure { step: 0, message };
    let config = config_from_case(case.get("config").unwrap_or(&Value::Null)).map_err(setup)?;
    let conn = Connection::new(config).map_err(|e| setup(format!("config rejected: {e}")))?;
    Script::new(Native(conn)).run(relay_testkit::script::case_steps(case)?)
}

/// Runs one of the project's transcripts natively; the error names the step.
pub fn run_transcript(t: &Transcript) -> Result<(), String> {
    let cfg = config_from_case(&t.config)?;
    let caps = caps_from(t.caps.as_ref())?;
    let conn = Connection::with_caps(cfg, caps).map_err(|e| e.message)?;
    Script::new(Native(conn))
        .run(&t.steps)
        .map_err(|f| t.describe(&f))
}

/// The native link (contract 0.2: it keeps its own timers), driven by the testkit.
pub struct NativeLink(pub Link);

impl Machine for NativeLink {
    type Effect = link::Effect;

    fn open(&mut self, now_ms: u64) -> Result<Vec<link::Effect>, CallError> {
        Ok(self.0.open(now_ms))
    }
    fn receive(
        &mut self,
        now_ms: u64,
        message: Message<'_>,
    ) -> Result<Vec<link::Effect>, CallError> {
        Ok(match message {
            Message::Text(t) => self.0.receive_text(now_ms, t),
            Message::Binary(b) => self.0.receive(now_ms, b),
        })
    }
    fn timer_fired(&mut self, _now_ms: u64, id: u64) -> Result<Vec<link::Effect>, CallError> {
        Err(CallError::Died(format!(
            "timer {id}: a link never asks for one"
        )))
    }
    fn poll_timeout(&mut self) -> Result<Option<u64>, CallError> {
        Ok(self.0.poll_timeout())
    }
    fn handle_timeout(&mut self, now_ms: u64) -> Result<Vec<link::Effect>, CallError> {
        Ok(self.0.handle_timeout(now_ms))
    }
    fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<link::Effect>, CallError> {
        self.0
            .command(now_ms, command)
            .map_err(|e| CallError::Rejected {
                kind: e.kind.as_str().to_string(),
                message: e.message,
            })
    }
    fn closed(
        &mut self,
        now_ms: u64,
        code: Option<u16>,
        reason: &str,
    ) -> Result<Vec<link::Effect>, CallError> {
        Ok(self.0.closed(now_ms, code, reason))
    }
    fn write_failed(
        &mut self,
        now_ms: u64,
        frame: u64,
        reason: &str,
    ) -> Result<Vec<link::Effect>, CallError> {
        Ok(self.0.write_failed(now_ms, frame, reason))
    }
    fn stop(&mut self, now_ms: u64) -> Result<Vec<link::Effect>, CallError> {
        Ok(self.0.shutdown(now_ms, 0, None))
    }
    fn view(effect: &link::Effect) -> Result<View<'_>, String> {
        Ok(match effect {
            link::Effect::Send { number, line } => View::Send {
                line,
                frame: *number,
            },
            link::Effect::Emit(ev) => View::Emit(
                serde_json::from_str(&ev.line).map_err(|e| format!("bad event line: {e}"))?,
            ),
            _ => View::Other,
        })
    }
}

/// A case's config as a link's: what the case sets, keepalive off, no URL.
pub fn link_config_from_case(config: &Value, caps: Caps) -> Result<LinkConfig, String> {
    let c = config_from_case(config)?;
    Ok(LinkConfig {
        identities: c.identities,
        url: String::new(),
        tenant: None,
        seed: c.seed,
        unix_offset_ms: 0,
        gateway_id: c.gateway_id,
        secret: c.secret,
        options: Options {
            handshake_timeout_ms: Some(c.handshake_timeout_ms),
            outbound_timeout_ms: Some(c.outbound_timeout_ms),
            going_idle_timeout_ms: Some(c.going_idle_timeout_ms),
            max_line_bytes: Some(c.max_line_bytes as u32),
            prompt_nonce: Some(c.prompt_nonce),
            reconnect_jitter_percent: Some(c.reconnect_jitter_percent),
            backoff_base_ms: Some(c.backoff_base_ms),
            backoff_max_ms: Some(c.backoff_max_ms),
            stable_connection_ms: Some(c.stable_connection_ms),
            token_ttl_seconds: Some(c.token_ttl_seconds),
            ping_interval_ms: Some(0),
            caps: Some(caps),
            ..Options::default()
        },
    })
}

/// Runs one sessions.json case against a native [`Link`].
pub fn run_case_through_link(case: &Value) -> Result<(), Failure> {
    let setup = |message: String| Failure { step: 0, message };
    let config = link_config_from_case(case.get("config").unwrap_or(&Value::Null), Caps::default())
        .map_err(setup)?;
    let link = Link::new(config).map_err(|e| setup(format!("config rejected: {e}")))?;
    Script::new(NativeLink(link)).run(relay_testkit::script::case_steps(case)?)
}

/// Runs one of the project's transcripts through a native [`Link`].
pub fn run_transcript_through_link(t: &Transcript) -> Result<(), String> {
    let caps = caps_from(t.caps.as_ref())?;
    let config = link_config_from_case(&t.config, caps)?;
    let link = Link::new(config).map_err(|e| e.message)?;
    Script::new(NativeLink(link))
        .run(&t.steps)
        .map_err(|f| t.describe(&f))
}
