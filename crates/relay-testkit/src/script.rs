//! The session step driver (spec/vectors/README.md, "sessions.json"): the one
//! in Rust. It keeps a virtual clock and the timers the machine asks for, fires
//! due ones before each action (in due order, ties in set order), turns each
//! action's effects into the frames written and the events emitted, and checks
//! them with the comparison rule.
//!
//! Anything implementing [`Machine`] can be driven: relay-logic's native
//! connection (its tests) or a host's wrapper around the compiled component
//! (`relay-host conform`, the end-to-end tests). The driver sees effects only
//! through [`Machine::view`], so each keeps its own effect type.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::compare::{compare, short, Bindings};

/// What the driver needs to know of one effect.
#[derive(Debug, Clone, PartialEq)]
pub enum View<'a> {
    /// A frame written to the connector: the line (with its newline) and its number.
    Send { line: &'a str, frame: u64 },
    /// An application event, as JSON.
    Emit(Value),
    /// Arm (or re-arm) timer `id` to fire at `at_ms`.
    SetTimer { id: u64, at_ms: u64 },
    /// Disarm timer `id`.
    CancelTimer(u64),
    /// Anything the vectors do not observe (logs, link control).
    Other,
}

/// One WebSocket message of a `receive` step: `text` arrives as a text
/// message, `b64` as a binary one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl Message<'_> {
    /// The message's bytes, whichever kind it is.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// Why a call produced no effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The machine refused an application command (the host turns this into an
    /// `error` event with this kind and message).
    Rejected { kind: String, message: String },
    /// The machine is gone (a trapped component); the case fails here.
    Died(String),
}

/// The calls a session script makes.
pub trait Machine {
    /// The machine's own effect type.
    type Effect;
    fn open(&mut self, now_ms: u64) -> Result<Vec<Self::Effect>, CallError>;
    fn receive(
        &mut self,
        now_ms: u64,
        message: Message<'_>,
    ) -> Result<Vec<Self::Effect>, CallError>;
    fn timer_fired(&mut self, now_ms: u64, id: u64) -> Result<Vec<Self::Effect>, CallError>;
    fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Self::Effect>, CallError>;
    fn closed(
        &mut self,
        now_ms: u64,
        code: Option<u16>,
        reason: &str,
    ) -> Result<Vec<Self::Effect>, CallError>;
    fn write_failed(
        &mut self,
        now_ms: u64,
        frame: u64,
        reason: &str,
    ) -> Result<Vec<Self::Effect>, CallError>;
    fn stop(&mut self, now_ms: u64) -> Result<Vec<Self::Effect>, CallError>;
    /// A machine that keeps its own timers (contract 0.2's `link`): when it is
    /// due next. Machines that ask for timers with `SetTimer` keep `None`.
    fn poll_timeout(&mut self) -> Result<Option<u64>, CallError> {
        Ok(None)
    }
    /// Time passed (for a machine that keeps its own timers).
    fn handle_timeout(&mut self, now_ms: u64) -> Result<Vec<Self::Effect>, CallError> {
        let _ = now_ms;
        Ok(Vec::new())
    }
    /// How the driver reads an effect (`Err` if it cannot be read, e.g. an event
    /// that is not JSON).
    fn view(effect: &Self::Effect) -> Result<View<'_>, String>;
}

/// What one action step produced, as the vectors see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output<E> {
    /// Every frame written, parsed as JSON.
    pub sent: Vec<Value>,
    /// Every application event.
    pub events: Vec<Value>,
    /// All effects, in order (logs and timers included).
    pub effects: Vec<E>,
}

impl<E> Default for Output<E> {
    fn default() -> Self {
        Output {
            sent: Vec::new(),
            events: Vec::new(),
            effects: Vec::new(),
        }
    }
}

/// A failed case: the step index (0-based in `steps`) and what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub step: usize,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {}: {}", self.step, self.message)
    }
}

/// Drives one machine through steps.
pub struct Script<M: Machine> {
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

    /// Runs a whole case's steps; `Err` names the first failing step.
    pub fn run(&mut self, steps: &[Value]) -> Result<(), Failure> {
        let mut last: Option<Output<M::Effect>> = None;
        for (i, step) in steps.iter().enumerate() {
            let fail = |message: String| Failure { step: i, message };
            if step.get("do").is_some() {
                last = Some(self.act(step).map_err(fail)?);
                continue;
            }
            let out = last
                .as_ref()
                .ok_or_else(|| fail("expectation before any action".into()))?;
            let mut checked = false;
            if let Some(exp) = step.get("expect_sent") {
                checked = true;
                compare(exp, &Value::Array(out.sent.clone()), &mut self.bindings).map_err(|e| {
                    fail(format!("expect_sent {e}\n  sent: {}", short_all(&out.sent)))
                })?;
            }
            if let Some(exp) = step.get("expect_events") {
                checked = true;
                compare(exp, &Value::Array(out.events.clone()), &mut self.bindings).map_err(
                    |e| {
                        fail(format!(
                            "expect_events {e}\n  events: {}",
                            short_all(&out.events)
                        ))
                    },
                )?;
            }
            if !checked {
                return Err(fail("step has neither `do` nor an expectation".into()));
            }
        }
        Ok(())
    }

    /// Performs one action step and collects what it produced.
    pub fn act(&mut self, step: &Value) -> Result<Output<M::Effect>, String> {
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
        let result = match action {
            "advance" => Ok(Vec::new()),
            "open" => self.machine.open(now),
            "receive" => {
                if let Some(t) = step.get("text").and_then(Value::as_str) {
                    let text = self.bindings.substitute(t);
                    self.machine.receive(now, Message::Text(&text))
                } else if let Some(b) = step.get("b64").and_then(Value::as_str) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| format!("bad b64: {e}"))?;
                    self.machine.receive(now, Message::Binary(&bytes))
                } else {
                    return Err("receive without text or b64".into());
                }
            }
            "app" => {
                let cmd = step.get("command").ok_or("app step without command")?;
                match self.machine.command(now, cmd) {
                    // A host answers a refused command with an `error` event.
                    Err(CallError::Rejected { kind, message }) => {
                        out.events.push(json!({
                            "event": "error",
                            "error": {"kind": kind, "message": message},
                        }));
                        Ok(Vec::new())
                    }
                    other => other,
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
        let effects = result.map_err(describe)?;
        self.absorb(effects, &mut out)?;
        Ok(out)
    }

    fn fire_due(&mut self, now: u64, out: &mut Output<M::Effect>) -> Result<(), String> {
        loop {
            let next = self
                .timers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.0 <= now)
                .min_by_key(|(_, t)| (t.0, t.1))
                .map(|(i, _)| i);
            let Some(i) = next else {
                return self.fire_machine_timeouts(now, out);
            };
            let (_, _, id) = self.timers.remove(i);
            let effects = self.machine.timer_fired(now, id).map_err(describe)?;
            self.absorb(effects, out)?;
        }
    }

    /// A machine with its own timers fires everything due by `now` itself.
    fn fire_machine_timeouts(
        &mut self,
        now: u64,
        out: &mut Output<M::Effect>,
    ) -> Result<(), String> {
        for _ in 0..10_000 {
            match self.machine.poll_timeout().map_err(describe)? {
                Some(at) if at <= now => {
                    let effects = self.machine.handle_timeout(now).map_err(describe)?;
                    self.absorb(effects, out)?;
                }
                _ => return Ok(()),
            }
        }
        Err(format!(
            "the machine stays due at {now} ms after 10000 handle_timeout calls"
        ))
    }

    fn absorb(
        &mut self,
        effects: Vec<M::Effect>,
        out: &mut Output<M::Effect>,
    ) -> Result<(), String> {
        let mut wrote = false;
        for e in effects {
            match M::view(&e)? {
                View::Send { line, frame } => {
                    if !wrote {
                        self.last_written.clear();
                        wrote = true;
                    }
                    self.last_written.push(frame);
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
                // The vectors never see the host's bookkeeping states
                // (vectors/README: connecting, handshaking, ready, ...); a 0.2
                // component announces them itself.
                View::Emit(v) if is_bookkeeping_state(&v) => {}
                View::Emit(v) => out.events.push(v),
                View::SetTimer { id, at_ms } => {
                    self.timers.retain(|t| t.2 != id);
                    self.set_seq += 1;
                    self.timers.push((at_ms, self.set_seq, id));
                }
                View::CancelTimer(id) => self.timers.retain(|t| t.2 != id),
                View::Other => {}
            }
            out.effects.push(e);
        }
        Ok(())
    }
}

fn describe(e: CallError) -> String {
    match e {
        CallError::Rejected { kind, message } => format!("refused ({kind}): {message}"),
        CallError::Died(why) => format!("the machine died: {why}"),
    }
}

fn short_all(v: &[Value]) -> String {
    short(&Value::Array(v.to_vec()))
}

/// One identity of a case's `config`.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseIdentity {
    pub platform: String,
    pub bot_id: String,
    pub command_manifest: Option<Value>,
}

/// A case's `config` object, read once for every machine: absent fields stay
/// `None`, so each machine applies its own defaults (jitter defaults to 0, as
/// conformance requires).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseConfig {
    pub identities: Vec<CaseIdentity>,
    pub handshake_timeout_ms: Option<u64>,
    pub outbound_timeout_ms: Option<u64>,
    pub going_idle_timeout_ms: Option<u64>,
    pub max_line_bytes: Option<u64>,
    pub seed: Option<u64>,
    pub stable_connection_ms: Option<u64>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub prompt_nonce: Option<String>,
    pub gateway_id: Option<String>,
    pub secret: Option<String>,
    pub reconnect_jitter_percent: u8,
}

impl CaseConfig {
    /// Reads a case's `config`; the error names the field.
    pub fn parse(config: &Value) -> Result<Self, String> {
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
            identities.push(CaseIdentity {
                platform: field("platform")?,
                bot_id: field("bot_id")?,
                command_manifest: id.get("command_manifest").filter(|v| !v.is_null()).cloned(),
            });
        }
        let num = |k: &str| config.get(k).and_then(Value::as_u64);
        let text = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(CaseConfig {
            identities,
            handshake_timeout_ms: num("handshake_timeout_ms"),
            outbound_timeout_ms: num("outbound_timeout_ms"),
            going_idle_timeout_ms: num("going_idle_timeout_ms"),
            max_line_bytes: num("max_line_bytes"),
            seed: num("seed"),
            stable_connection_ms: num("stable_connection_ms"),
            backoff_base_ms: num("backoff_base_ms"),
            backoff_max_ms: num("backoff_max_ms"),
            prompt_nonce: text("prompt_nonce"),
            gateway_id: text("gateway_id"),
            secret: text("secret"),
            reconnect_jitter_percent: num("reconnect_jitter")
                .and_then(|j| u8::try_from(j).ok())
                .unwrap_or(0),
        })
    }
}

/// The steps of a case (`Err` when it has none).
pub fn case_steps(case: &Value) -> Result<&[Value], Failure> {
    case.get("steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| Failure {
            step: 0,
            message: "case without steps".into(),
        })
}

/// A `state` event the vectors leave out: `connecting`, `handshaking`, `ready`,
/// `idle` and `stopped` are APP-PROTOCOL states no session case observes.
pub fn is_bookkeeping_state(event: &Value) -> bool {
    event.get("event").and_then(Value::as_str) == Some("state")
        && matches!(
            event.get("state").and_then(Value::as_str),
            Some("connecting" | "handshaking" | "ready" | "idle" | "stopped")
        )
}
