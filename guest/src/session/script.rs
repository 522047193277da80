//! The sessions.json step driver (spec/vectors/README.md, "sessions.json"),
//! native only. It keeps the timers the machine asks for, fires due ones on
//! `advance` (in due order, ties in set order), turns each action's effects into
//! the frames written and the events emitted, and checks them with the shared
//! comparison rule. Anything implementing [`Machine`] can be driven: the native
//! [`Connection`] here, or a host's wrapper around the compiled component.

use base64::Engine as _;
use serde_json::{json, Value};

use super::{Config, Connection, Effect, Identity};
use crate::conformance::{compare, short, Bindings};
use crate::error::DecodeError;

/// The calls a session script makes.
pub trait Machine {
    fn open(&mut self, now_ms: u64) -> Vec<Effect>;
    fn receive(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Effect>;
    fn timer_fired(&mut self, now_ms: u64, id: u64) -> Vec<Effect>;
    fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Effect>, DecodeError>;
    fn closed(&mut self, now_ms: u64, code: Option<u16>, reason: &str) -> Vec<Effect>;
    fn write_failed(&mut self, now_ms: u64, frame: u64, reason: &str) -> Vec<Effect>;
    fn stop(&mut self, now_ms: u64) -> Vec<Effect>;
}

impl Machine for Connection {
    fn open(&mut self, now_ms: u64) -> Vec<Effect> {
        Connection::open(self, now_ms)
    }
    fn receive(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Effect> {
        Connection::receive(self, now_ms, bytes)
    }
    fn timer_fired(&mut self, now_ms: u64, id: u64) -> Vec<Effect> {
        Connection::timer_fired(self, now_ms, id)
    }
    fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Effect>, DecodeError> {
        Connection::command(self, now_ms, command)
    }
    fn closed(&mut self, now_ms: u64, code: Option<u16>, reason: &str) -> Vec<Effect> {
        Connection::closed(self, now_ms, code, reason)
    }
    fn write_failed(&mut self, now_ms: u64, frame: u64, reason: &str) -> Vec<Effect> {
        Connection::write_failed(self, now_ms, frame, reason)
    }
    fn stop(&mut self, now_ms: u64) -> Vec<Effect> {
        Connection::stop(self, now_ms)
    }
}

/// A case's `config` object → [`Config`] (jitter off, as conformance requires).
pub fn config_from_case(config: &Value) -> Result<Config, String> {
    let ids = config
        .get("identities")
        .and_then(Value::as_array)
        .ok_or("config.identities: not a list")?;
    let mut identities = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let field = |k: &str| {
            id.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(format!("config.identities[{i}].{k}: not a string"))
        };
        identities.push(Identity {
            platform: field("platform")?,
            bot_id: field("bot_id")?,
            command_manifest: id.get("command_manifest").filter(|v| !v.is_null()).cloned(),
        });
    }
    let mut c = Config::new(identities);
    let num = |k: &str| config.get(k).and_then(Value::as_u64);
    if let Some(v) = num("handshake_timeout_ms") {
        c.handshake_timeout_ms = v;
    }
    if let Some(v) = num("outbound_timeout_ms") {
        c.outbound_timeout_ms = v;
    }
    if let Some(v) = num("going_idle_timeout_ms") {
        c.going_idle_timeout_ms = v;
    }
    if let Some(v) = num("max_line_bytes") {
        c.max_line_bytes = usize::try_from(v).map_err(|_| "config.max_line_bytes too large")?;
    }
    if let Some(v) = num("seed") {
        c.seed = v;
    }
    if let Some(v) = num("stable_connection_ms") {
        c.stable_connection_ms = v;
    }
    if let Some(v) = num("backoff_base_ms") {
        c.backoff_base_ms = v;
    }
    if let Some(v) = num("backoff_max_ms") {
        c.backoff_max_ms = v;
    }
    if let Some(v) = config.get("prompt_nonce").and_then(Value::as_str) {
        c.prompt_nonce = v.to_string();
    }
    c.gateway_id = config
        .get("gateway_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    c.secret = config
        .get("secret")
        .and_then(Value::as_str)
        .map(str::to_string);
    c.reconnect_jitter_percent = num("reconnect_jitter")
        .and_then(|j| u8::try_from(j).ok())
        .unwrap_or(0);
    Ok(c)
}

/// What one action step produced, as the vectors see it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    /// Every frame written, parsed as JSON.
    pub sent: Vec<Value>,
    /// Every application event.
    pub events: Vec<Value>,
    /// All effects, in order (logs and timers included).
    pub effects: Vec<Effect>,
}

/// A failed case: the step index (0-based in `steps`) and what differed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub step: usize,
    pub message: String,
}

/// Drives one machine through steps.
pub struct Script<M> {
    machine: M,
    /// Armed timers: (due, set order, id).
    timers: Vec<(u64, u64, u64)>,
    set_seq: u64,
    now: u64,
    bindings: Bindings,
    /// Numbers of the frames the latest action that wrote anything wrote.
    last_written: Vec<u64>,
}

impl<M: Machine> Script<M> {
    pub fn new(machine: M) -> Self {
        Script {
            machine,
            timers: Vec::new(),
            set_seq: 0,
            now: 0,
            bindings: Bindings::default(),
            last_written: Vec::new(),
        }
    }

    /// The machine, for inspection between steps.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The placeholder bindings so far.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// Runs a whole case; `Err` names the first failing step.
    pub fn run(&mut self, steps: &[Value]) -> Result<(), Failure> {
        let mut last: Option<Output> = None;
        for (i, step) in steps.iter().enumerate() {
            let fail = |message: String| Failure { step: i, message };
            if step.get("do").is_some() {
                last = Some(self.act(step).map_err(fail)?);
                continue;
            }
            let out = last
                .as_ref()
                .ok_or_else(|| fail("expectation before any action".into()))?;
            if let Some(exp) = step.get("expect_sent") {
                compare(exp, &Value::Array(out.sent.clone()), &mut self.bindings).map_err(|e| {
                    fail(format!("expect_sent {e}\n  sent: {}", short_all(&out.sent)))
                })?;
            }
            if let Some(exp) = step.get("expect_events") {
                compare(exp, &Value::Array(out.events.clone()), &mut self.bindings).map_err(
                    |e| {
                        fail(format!(
                            "expect_events {e}\n  events: {}",
                            short_all(&out.events)
                        ))
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Performs one action step and collects what it produced.
    pub fn act(&mut self, step: &Value) -> Result<Output, String> {
        let now = step
            .get("now_ms")
            .and_then(Value::as_u64)
            .ok_or("action without a numeric now_ms")?;
        if now < self.now {
            return Err(format!("now_ms went back from {} to {now}", self.now));
        }
        self.now = now;
        let mut out = Output::default();
        let action = step.get("do").and_then(Value::as_str).unwrap_or("");
        // Timers due by now fire first (the vectors never need this outside
        // `advance`, but a real host would do the same).
        self.fire_due(now, &mut out)?;
        let effects = match action {
            "advance" => Vec::new(),
            "open" => self.machine.open(now),
            "receive" => {
                let bytes = if let Some(t) = step.get("text").and_then(Value::as_str) {
                    self.bindings.substitute(t).into_bytes()
                } else if let Some(b) = step.get("b64").and_then(Value::as_str) {
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| format!("bad b64: {e}"))?
                } else {
                    return Err("receive without text or b64".into());
                };
                self.machine.receive(now, &bytes)
            }
            "app" => {
                let cmd = step.get("command").ok_or("app step without command")?;
                match self.machine.command(now, cmd) {
                    Ok(e) => e,
                    Err(e) => vec![Effect::Emit(
                        json!({
                            "event": "error",
                            "error": {"kind": e.kind.as_str(), "message": e.message},
                        })
                        .into(),
                    )],
                }
            }
            "close" => {
                let code = match step.get("code") {
                    None | Some(Value::Null) => None,
                    Some(c) => Some(
                        c.as_u64()
                            .and_then(|c| u16::try_from(c).ok())
                            .ok_or("close code is not a u16")?,
                    ),
                };
                let reason = step.get("reason").and_then(Value::as_str).unwrap_or("");
                self.machine.closed(now, code, reason)
            }
            // Project steps beyond sessions.json: the host could not write the
            // first frame of the latest action that wrote (or frame `frame`), and
            // the application stops the link.
            "write_failed" => {
                let frame = match step.get("frame").and_then(Value::as_u64) {
                    Some(f) => f,
                    None => *self
                        .last_written
                        .first()
                        .ok_or("write_failed before anything was written")?,
                };
                let reason = step.get("reason").and_then(Value::as_str).unwrap_or("");
                self.machine.write_failed(now, frame, reason)
            }
            "stop" => self.machine.stop(now),
            other => return Err(format!("unknown action {other:?}")),
        };
        self.absorb(effects, &mut out)?;
        Ok(out)
    }

    fn fire_due(&mut self, now: u64, out: &mut Output) -> Result<(), String> {
        loop {
            let next = self
                .timers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.0 <= now)
                .min_by_key(|(_, t)| (t.0, t.1))
                .map(|(i, _)| i);
            let Some(i) = next else { return Ok(()) };
            let (_, _, id) = self.timers.remove(i);
            let effects = self.machine.timer_fired(now, id);
            self.absorb(effects, out)?;
        }
    }

    fn absorb(&mut self, effects: Vec<Effect>, out: &mut Output) -> Result<(), String> {
        if effects.iter().any(|e| matches!(e, Effect::Send { .. })) {
            self.last_written.clear();
        }
        for e in effects {
            match &e {
                Effect::Send { line, frame } => {
                    self.last_written.push(*frame);
                    let body = line
                        .strip_suffix('\n')
                        .ok_or_else(|| format!("sent line without its newline: {line:?}"))?;
                    if body.contains('\n') {
                        return Err(format!("one write holds several lines: {line:?}"));
                    }
                    let v: Value = serde_json::from_str(body)
                        .map_err(|err| format!("sent line is not JSON ({err}): {line:?}"))?;
                    out.sent.push(v);
                }
                Effect::Emit(v) => out.events.push(v.to_value()),
                Effect::SetTimer { id, at_ms } => {
                    self.timers.retain(|t| t.2 != *id);
                    self.set_seq += 1;
                    self.timers.push((*at_ms, self.set_seq, *id));
                }
                Effect::CancelTimer(id) => self.timers.retain(|t| t.2 != *id),
                Effect::CloseLink(_)
                | Effect::Reconnect(_)
                | Effect::Redial
                | Effect::GiveUp(_)
                | Effect::Log(..) => {}
            }
            out.effects.push(e);
        }
        Ok(())
    }
}

fn short_all(v: &[Value]) -> String {
    short(&Value::Array(v.to_vec()))
}

/// Runs one sessions.json case against a native [`Connection`].
pub fn run_case(case: &Value) -> Result<(), Failure> {
    let setup = |message: String| Failure { step: 0, message };
    let config = config_from_case(case.get("config").unwrap_or(&Value::Null)).map_err(setup)?;
    let conn = Connection::new(config).map_err(|e| setup(format!("config rejected: {e}")))?;
    let steps = case
        .get("steps")
        .and_then(Value::as_array)
        .ok_or_else(|| setup("case without steps".into()))?;
    Script::new(conn).run(steps)
}
