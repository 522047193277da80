//! `relay-host conform FILE...`: runs conformance vectors through the compiled
//! component (never the native code), one line per failing case, then a summary.
//!
//! Each file is recognised by its name (`dial_url.json`, `frames.json`, ...). The
//! comparison rule and the session step driver are relay-testkit's (the same
//! ones the native tests use); everything that produces an actual value is a
//! call into the sandboxed component.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use relay_testkit::compare::{compare, short, Bindings};
use relay_testkit::script::{CallError, CaseConfig, Machine, Message, Script, View};
use relay_testkit::transcripts::CapCounts;
use relay_testkit::vectors::{deviation, load_cases};
use serde_json::{json, Map, Value};

use crate::sandbox::{
    Caps, ConnectorFrame, Effect, GatewayFrame, HelloFrame, Identity, InterruptFrame, Limits,
    LinkConfig, LinkHandle, Options, OutboundFrame, Sandbox,
};

pub use relay_testkit::vectors::KNOWN_DEVIATIONS;

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The component's value matched the expected one.
    Passed,
    /// It did not (or the sandbox died); the text says where.
    Failed(String),
    /// A known deviation (docs/DEVIATIONS.md): not counted as passed or failed.
    Deviation(String),
}

/// Totals over every file run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Cases whose actual value matched (known deviations aside).
    pub passed: usize,
    /// Cases that did not match, or whose sandbox died (known deviations aside).
    pub failed: usize,
    /// Cases listed as known deviations, whatever their outcome.
    pub deviations: usize,
    /// `(file, case, message)` of each failure or deviation, in order.
    pub lines: Vec<String>,
}

impl Summary {
    /// The closing line the CI reads.
    pub fn closing_line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs every case of the given files through a fresh sandbox per file.
pub fn run_files(
    files: &[impl AsRef<Path>],
    sandbox: &mut dyn FnMut() -> anyhow::Result<Sandbox>,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    for file in files {
        let path = file.as_ref();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let cases = load_cases(path).map_err(anyhow::Error::msg)?;
        let mut sb = sandbox()?;
        for case in &cases {
            let case_name = case
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
                .to_string();
            let mut outcome = match run_case(&name, case, &mut sb) {
                Ok(Ok(())) => Outcome::Passed,
                Ok(Err(diff)) => Outcome::Failed(diff),
                Err(e) => {
                    // The instance died: report and continue with a fresh one.
                    sb = sandbox()?;
                    Outcome::Failed(format!("sandbox error: {e:#}"))
                }
            };
            if let Some(why) = deviation(&name, &case_name) {
                outcome = Outcome::Deviation(why.to_string());
            }
            match outcome {
                Outcome::Passed => summary.passed += 1,
                Outcome::Failed(diff) => {
                    summary.failed += 1;
                    summary
                        .lines
                        .push(format!("FAIL {name}::{case_name}: {diff}"));
                }
                Outcome::Deviation(why) => {
                    summary.deviations += 1;
                    summary
                        .lines
                        .push(format!("DEVIATION {name}::{case_name}: {why}"));
                }
            }
        }
    }
    Ok(summary)
}

/// The outer error is a dead sandbox; the inner one a failing case.
pub type CaseResult = anyhow::Result<Result<(), String>>;

fn run_case(file: &str, case: &Value, sb: &mut Sandbox) -> CaseResult {
    let input = case.get("input").cloned().unwrap_or(Value::Null);
    let expected = case.get("expected").cloned().unwrap_or(Value::Null);
    match file {
        "dial_url.json" => {
            let got = crate::sandbox::block_on(sb.dial_url(input.as_str().unwrap_or_default()))?;
            Ok(check(&expected, &Value::String(got)))
        }
        "provision_url.json" => {
            let got =
                crate::sandbox::block_on(sb.provision_url(input.as_str().unwrap_or_default()))?;
            Ok(check(&expected, &Value::String(got)))
        }
        "upgrade_token.json" => upgrade_token(sb, &input, &expected),
        "descriptor.json" => {
            let got = crate::sandbox::block_on(sb.normalize_descriptor(&input.to_string()))?;
            Ok(check_result(&expected, got.map_err(|e| e.message)))
        }
        "inbound_event.json" => {
            let got = crate::sandbox::block_on(sb.inbound_event(&input.to_string()))?;
            Ok(check_result(&expected, got.map_err(|e| e.message)))
        }
        "passthrough_forward.json" => {
            let got = crate::sandbox::block_on(sb.passthrough_forward(&input.to_string()))?;
            Ok(check_result(&expected, got.map_err(|e| e.message)))
        }
        "discord_interaction.json" => discord(sb, &input, &expected),
        "frames.json" => frames(sb, &input, &expected),
        "sessions.json" => session(sb, case),
        other => Ok(Err(format!("unknown vector file `{other}`"))),
    }
}

fn check(expected: &Value, actual: &Value) -> Result<(), String> {
    compare(expected, actual, &mut Bindings::default())
}

/// An expected `{"error": kind}` passes on any error; an expected value needs Ok.
fn check_result(expected: &Value, actual: Result<String, String>) -> Result<(), String> {
    let wants_error = expected
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key("error"));
    match (wants_error, actual) {
        (true, Err(_)) => Ok(()),
        (true, Ok(v)) => Err(format!("expected an error, got {}", cut(&v))),
        (false, Err(e)) => Err(format!("unexpected error: {e}")),
        (false, Ok(v)) => {
            let actual: Value = serde_json::from_str(&v)
                .map_err(|e| format!("component returned bad JSON: {e}"))?;
            check(expected, &actual)
        }
    }
}

fn cut(s: &str) -> String {
    short(&Value::String(s.to_string()))
}

fn upgrade_token(sb: &mut Sandbox, input: &Value, expected: &Value) -> CaseResult {
    let s = |k: &str| {
        input
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let i = |k: &str| input.get(k).and_then(Value::as_i64).unwrap_or_default();
    if input.get("fn").and_then(Value::as_str) == Some("sign") {
        let sig = crate::sandbox::block_on(sb.sign(&s("payload"), &s("secret")))?;
        return Ok(check(expected, &json!({ "sig_hex": sig })));
    }
    let token = crate::sandbox::block_on(sb.upgrade_token(
        &s("gateway_id"),
        &s("secret"),
        i("ttl_seconds"),
        i("now_unix_s"),
    ))?;
    Ok(check(
        expected,
        &json!({ "token": token, "authorization": format!("Bearer {token}") }),
    ))
}

fn discord(sb: &mut Sandbox, input: &Value, expected: &Value) -> CaseResult {
    let fwd = input
        .get("forward")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Build the wire `forward` the connector would send: the body as `bodyB64`.
    let body: Vec<u8> = if let Some(i) = fwd.get("interaction") {
        serde_json::to_vec(i)?
    } else if let Some(t) = fwd.get("body_utf8").and_then(Value::as_str) {
        t.as_bytes().to_vec()
    } else if let Some(b) = fwd.get("body_b64").and_then(Value::as_str) {
        STANDARD.decode(b)?
    } else {
        Vec::new()
    };
    let mut wire = Map::new();
    for (k, v) in &fwd {
        if !matches!(k.as_str(), "interaction" | "body_utf8" | "body_b64") {
            wire.insert(k.clone(), v.clone());
        }
    }
    wire.insert("bodyB64".into(), STANDARD.encode(&body).into());
    let normalised =
        match crate::sandbox::block_on(sb.passthrough_forward(&Value::Object(wire).to_string()))? {
            Ok(n) => n,
            Err(e) => return Ok(Err(format!("forward rejected: {}", e.message))),
        };
    let outcome = match crate::sandbox::block_on(sb.discord_event(&normalised))? {
        Ok(Some(event)) => {
            json!({"outcome": "message", "event": serde_json::from_str::<Value>(&event)?})
        }
        Ok(None) => json!({"outcome": "dropped"}),
        Err(e) => return Ok(Err(format!("conversion error: {}", e.message))),
    };
    Ok(check(expected, &outcome))
}

fn frames(sb: &mut Sandbox, input: &Value, expected: &Value) -> CaseResult {
    if let Some(frame) = input.get("encode") {
        let Some(frame) = gateway_frame(frame) else {
            return Ok(Err(format!("cannot read encode input {}", short(frame))));
        };
        let line = crate::sandbox::block_on(sb.encode(&frame))?;
        let got: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Err(format!(
                    "encoded line is not JSON ({e}): {}",
                    cut(&line)
                )))
            }
        };
        let want: Value = serde_json::from_str(
            expected
                .get("line")
                .and_then(Value::as_str)
                .unwrap_or("null"),
        )?;
        return Ok(if got == want {
            Ok(())
        } else {
            Err(format!(
                "expected line {}, got {}",
                short(&want),
                short(&got)
            ))
        });
    }
    let bytes = if let Some(t) = input.get("decode").and_then(Value::as_str) {
        t.as_bytes().to_vec()
    } else if let Some(b) = input.get("decode_b64").and_then(Value::as_str) {
        STANDARD.decode(b)?
    } else {
        return Ok(Err("case has neither decode nor encode".into()));
    };
    let max = input
        .get("max_line_bytes")
        .and_then(Value::as_u64)
        .unwrap_or(1 << 20) as u32;
    let got = crate::sandbox::block_on(sb.decode(&bytes, max))?;
    let wants_error = expected.get("error").is_some();
    match got {
        Err(e) if wants_error => {
            let _ = e;
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(format!("unexpected error {:?}: {}", e.kind, e.message))),
        Ok(f) if wants_error => Ok(Err(format!(
            "expected an error, got {}",
            short(&frame_json(&f)?)
        ))),
        Ok(f) => Ok(check(
            expected.get("frame").unwrap_or(&Value::Null),
            &frame_json(&f)?,
        )),
    }
}

/// Renders a decoded frame under its wire names (test harness only).
fn frame_json(f: &ConnectorFrame) -> anyhow::Result<Value> {
    let doc = |s: &str| serde_json::from_str::<Value>(s);
    let opt = |s: &Option<String>| s.clone().map(Value::String).unwrap_or(Value::Null);
    Ok(match f {
        ConnectorFrame::Descriptor(d) => json!({"type": "descriptor", "descriptor": doc(d)?}),
        ConnectorFrame::Inbound(i) => {
            json!({"type": "inbound", "event": doc(&i.event)?, "bufferId": opt(&i.buffer_id)})
        }
        ConnectorFrame::OutboundResult(r) => {
            json!({"type": "outbound_result", "requestId": r.request_id, "result": doc(&r.result)?})
        }
        ConnectorFrame::InterruptInbound(i) => {
            json!({"type": "interrupt_inbound", "session_key": i.session_key, "chat_id": i.chat_id})
        }
        ConnectorFrame::GoingIdleAck => json!({"type": "going_idle_ack"}),
        ConnectorFrame::PassthroughForward(p) => {
            json!({"type": "passthrough_forward", "forward": doc(&p.forward)?, "bufferId": opt(&p.buffer_id)})
        }
    })
}

/// Reads a gateway frame given as JSON into the WIT variant (test harness only).
fn gateway_frame(v: &Value) -> Option<GatewayFrame> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some(match v.get("type")?.as_str()? {
        "hello" => GatewayFrame::Hello(HelloFrame {
            platform: s("platform")?,
            bot_id: s("botId")?,
            command_manifest: v.get("command_manifest").map(Value::to_string),
        }),
        "outbound" => GatewayFrame::Outbound(OutboundFrame {
            request_id: s("requestId")?,
            action: v.get("action")?.to_string(),
            platform: s("platform"),
            bot_id: s("botId"),
        }),
        "interrupt" => GatewayFrame::Interrupt(InterruptFrame {
            session_key: s("session_key")?,
            reason: s("reason"),
        }),
        "going_idle" => GatewayFrame::GoingIdle,
        "inbound_ack" => GatewayFrame::InboundAck(s("bufferId")?),
        _ => return None,
    })
}

/// The link config of a sessions.json case: what the case sets, `none` (the
/// component's default) for the rest; jitter as the case says (0 in the vectors),
/// keepalive off (vectors/README), no URL (this runner dials nothing).
pub fn session_config(config: &Value) -> LinkConfig {
    let case = CaseConfig::parse(config).unwrap_or_default();
    let identities = case
        .identities
        .into_iter()
        .map(|id| Identity {
            platform: id.platform,
            bot_id: id.bot_id,
            command_manifest: id.command_manifest.map(|m| m.to_string()),
        })
        .collect();
    LinkConfig {
        identities,
        url: String::new(),
        tenant: None,
        seed: case.seed.unwrap_or(0x5eed),
        unix_offset_ms: 0,
        gateway_id: case.gateway_id,
        secret: case.secret,
        options: Options {
            handshake_timeout_ms: case.handshake_timeout_ms,
            outbound_timeout_ms: case.outbound_timeout_ms,
            going_idle_timeout_ms: case.going_idle_timeout_ms,
            max_line_bytes: case.max_line_bytes.map(|n| n as u32),
            prompt_nonce: case.prompt_nonce,
            reconnect_jitter_percent: Some(case.reconnect_jitter_percent),
            backoff_base_ms: case.backoff_base_ms,
            backoff_max_ms: case.backoff_max_ms,
            stable_connection_ms: case.stable_connection_ms,
            token_ttl_seconds: None,
            ping_interval_ms: Some(0),
            pong_timeout_ms: None,
            dead_link_close_code: None,
            max_message_bytes: None,
            close_wait_ms: None,
            caps: None,
        },
    }
}

/// A `caps` object → the WIT record (absent fields: the component's defaults).
fn caps_from(value: &Value) -> Result<Caps, String> {
    let c = CapCounts::parse(value)?;
    Ok(Caps {
        pending_requests: c.pending_requests,
        buffer_ids: c.buffer_ids,
        prompts: c.prompts,
        answered_prompts: c.answered_prompts,
        egress_chats: c.egress_chats,
        message_ids: c.message_ids,
    })
}

/// One `link` resource of a sandboxed component, as a testkit machine.
struct ComponentSession<'a> {
    sandbox: &'a mut Sandbox,
    link: LinkHandle,
    /// Set when a call failed in the sandbox (a trap): the instance is gone.
    died: bool,
}

impl<'a> ComponentSession<'a> {
    /// Wraps a link created in `sandbox`.
    fn new(sandbox: &'a mut Sandbox, link: LinkHandle) -> Self {
        ComponentSession {
            sandbox,
            link,
            died: false,
        }
    }

    /// Whether a call trapped (the sandbox must be rebuilt).
    fn died(&self) -> bool {
        self.died
    }

    fn check<T>(&mut self, r: Result<T, crate::sandbox::SandboxError>) -> Result<T, CallError> {
        r.map_err(|e| {
            self.died = true;
            CallError::Died(format!("{e:#}"))
        })
    }
}

impl Machine for ComponentSession<'_> {
    type Effect = Effect;

    fn open(&mut self, now_ms: u64) -> Result<Vec<Effect>, CallError> {
        let r = crate::sandbox::block_on(self.sandbox.open(self.link, now_ms));
        self.check(r)
    }
    fn receive(&mut self, now_ms: u64, message: Message<'_>) -> Result<Vec<Effect>, CallError> {
        let r = match message {
            Message::Text(t) => {
                crate::sandbox::block_on(self.sandbox.receive_text(self.link, now_ms, t))
            }
            Message::Binary(b) => {
                crate::sandbox::block_on(self.sandbox.receive_binary(self.link, now_ms, b))
            }
        };
        self.check(r)
    }
    fn timer_fired(&mut self, _now_ms: u64, id: u64) -> Result<Vec<Effect>, CallError> {
        Err(CallError::Died(format!(
            "timer {id}: a 0.2 link keeps its own timers and never asks for one"
        )))
    }
    fn poll_timeout(&mut self) -> Result<Option<u64>, CallError> {
        let r = crate::sandbox::block_on(self.sandbox.poll_timeout(self.link));
        self.check(r)
    }
    fn handle_timeout(&mut self, now_ms: u64) -> Result<Vec<Effect>, CallError> {
        let r = crate::sandbox::block_on(self.sandbox.handle_timeout(self.link, now_ms));
        self.check(r)
    }
    fn command(&mut self, now_ms: u64, command: &Value) -> Result<Vec<Effect>, CallError> {
        let r = crate::sandbox::block_on(self.sandbox.command(
            self.link,
            now_ms,
            &command.to_string(),
        ));
        match self.check(r)? {
            Ok(effects) => Ok(effects),
            Err(e) => Err(CallError::Rejected {
                kind: crate::event::kind_name(e.kind).to_string(),
                message: e.message,
            }),
        }
    }
    fn closed(
        &mut self,
        now_ms: u64,
        code: Option<u16>,
        reason: &str,
    ) -> Result<Vec<Effect>, CallError> {
        let r = crate::sandbox::block_on(self.sandbox.closed(self.link, now_ms, code, reason));
        self.check(r)
    }
    fn write_failed(
        &mut self,
        now_ms: u64,
        frame: u64,
        reason: &str,
    ) -> Result<Vec<Effect>, CallError> {
        let r =
            crate::sandbox::block_on(self.sandbox.write_failed(self.link, now_ms, frame, reason));
        self.check(r)
    }
    fn stop(&mut self, now_ms: u64) -> Result<Vec<Effect>, CallError> {
        let r = crate::sandbox::block_on(self.sandbox.shutdown(self.link, now_ms, 0, None));
        self.check(r)
    }
    fn view(effect: &Effect) -> Result<View<'_>, String> {
        Ok(match effect {
            Effect::Send(o) => View::Send {
                line: &o.line,
                frame: o.number,
            },
            Effect::Emit(ev) => View::Emit(
                serde_json::from_slice(&ev.line)
                    .map_err(|err| format!("component emitted bad JSON ({err})"))?,
            ),
            _ => View::Other,
        })
    }
}

/// Drives one sessions.json-shaped case through a `link` resource of the
/// component. `Ok(Err(diff))` names the failing step; `Err` is a dead sandbox.
pub fn session(sb: &mut Sandbox, case: &Value) -> CaseResult {
    let mut config = session_config(case.get("config").unwrap_or(&Value::Null));
    // The project's transcripts may set memory caps (`caps`, field names of the
    // WIT record in snake_case); vector cases never do.
    if let Some(caps) = case.get("caps") {
        match caps_from(caps) {
            Ok(caps) => config.options.caps = Some(caps),
            Err(e) => return Ok(Err(e)),
        }
    }
    let link: LinkHandle = match crate::sandbox::block_on(sb.create_link(&config))? {
        Ok(l) => l,
        Err(e) => return Ok(Err(format!("config rejected: {}", e.message))),
    };
    let steps = case
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut script = Script::new(ComponentSession::new(sb, link));
    match script.run(&steps) {
        Ok(()) => Ok(Ok(())),
        Err(f) if script.machine().died() => Err(anyhow::anyhow!("{f}")),
        Err(f) => Ok(Err(f.to_string())),
    }
}

/// Default limits for conformance sandboxes.
pub fn limits() -> Limits {
    Limits::default()
}
