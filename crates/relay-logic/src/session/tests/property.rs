//! Property test: 2,000 seeded random step sequences (no external crates). For
//! each: nothing panics; every outbound is answered exactly once; no buffer id is
//! delivered twice; the caps hold after every call; timer ids are never reused;
//! nothing is written after `revoked`; the same sequence gives the same effects.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::session::rng::SplitMix64;
use crate::session::{Caps, Config, Connection, Effect, Identity};

const SEQUENCES: u64 = 2000;
const BUFFER_POOL: u64 = 20;
const CAPS: Caps = Caps {
    pending_requests: 4,
    buffer_ids: 64, // above BUFFER_POOL: no eviction, so exactly-once must hold
    prompts: 4,
    answered_prompts: 4,
    egress_chats: 4,
    message_ids: 64,
};

struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.up_to(n.saturating_sub(1))
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// The invariants, checked on every effect.
#[derive(Default)]
struct Checker {
    now: u64,
    timers: Vec<(u64, u64, u64)>,
    set_seq: u64,
    timer_ids: HashSet<u64>,
    issued: Vec<String>,
    answers: HashMap<String, u32>,
    delivered: HashSet<String>,
    request_ids: Vec<String>,
    revoked: bool,
    log: Vec<Effect>,
}

impl Checker {
    fn absorb(&mut self, conn: &Connection, effects: Vec<Effect>) -> Result<(), String> {
        for e in effects {
            match &e {
                Effect::Send { line, .. } => {
                    if self.revoked {
                        return Err(format!("wrote after revoked: {line}"));
                    }
                    let body = line.strip_suffix('\n').ok_or("no newline")?;
                    if body.contains('\n') {
                        return Err("two lines in one write".into());
                    }
                    let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
                    if v["type"] == "outbound" {
                        let rid = v["requestId"].as_str().ok_or("no requestId")?.to_string();
                        if rid.len() != 32 || self.request_ids.contains(&rid) {
                            return Err(format!("bad or reused request id {rid}"));
                        }
                        self.request_ids.push(rid);
                    }
                }
                Effect::Emit(ev) => {
                    let v = ev.to_value();
                    match v["event"].as_str() {
                        Some("outbound_result") => {
                            let id = v["id"].as_str().ok_or("result without id")?.to_string();
                            let n = self.answers.entry(id.clone()).or_default();
                            *n += 1;
                            if *n > 1 {
                                return Err(format!("{id} answered twice"));
                            }
                        }
                        Some("message") => {
                            if let Some(b) = v["buffer_id"].as_str() {
                                if !self.delivered.insert(b.to_string()) {
                                    return Err(format!("buffer id {b} delivered twice"));
                                }
                            }
                        }
                        Some("state") if v["state"] == "revoked" => self.revoked = true,
                        Some(_) => {}
                        None => return Err(format!("event without a name: {v}")),
                    }
                }
                Effect::SetTimer { id, at_ms } => {
                    if !self.timer_ids.insert(*id) {
                        return Err(format!("timer id {id} reused"));
                    }
                    if *at_ms < self.now {
                        return Err(format!("timer {id} set in the past"));
                    }
                    self.set_seq += 1;
                    self.timers.push((*at_ms, self.set_seq, *id));
                }
                Effect::CancelTimer(id) => self.timers.retain(|t| t.2 != *id),
                Effect::Redial | Effect::Reconnect(_) if self.revoked => {
                    return Err("dial decision after revoked".into())
                }
                _ => {}
            }
            self.log.push(e);
        }
        let u = conn.usage();
        let caps = conn.caps();
        if u.pending_requests > caps.pending_requests
            || u.buffer_ids > caps.buffer_ids
            || u.prompts > caps.prompts
            || u.answered_prompts > caps.answered_prompts
            || u.egress_chats > caps.egress_chats
            || u.timers > u.pending_requests + 2
        {
            return Err(format!("caps exceeded: {u:?}"));
        }
        Ok(())
    }

    fn fire_due(&mut self, conn: &mut Connection) -> Result<(), String> {
        while let Some(i) = (0..self.timers.len())
            .filter(|i| self.timers[*i].0 <= self.now)
            .min_by_key(|i| (self.timers[*i].0, self.timers[*i].1))
        {
            let (_, _, id) = self.timers.remove(i);
            let e = conn.timer_fired(self.now, id);
            self.absorb(conn, e)?;
        }
        Ok(())
    }
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(crate::json::compact(v))
}

fn random_frame(r: &mut Rng, c: &Checker) -> String {
    let buffer = |r: &mut Rng| -> Value {
        if r.chance(60) {
            json!(format!("b{}", r.below(BUFFER_POOL)))
        } else {
            Value::Null
        }
    };
    let prompt_id = |r: &mut Rng| -> String {
        let owner = *r.pick(&["n0", "n0", "zz", ""]);
        let suffix = r.below(6);
        if owner.is_empty() {
            format!("legacy{suffix}")
        } else {
            format!("{owner}.{suffix}")
        }
    };
    let chat = |r: &mut Rng| format!("c{}", r.below(8));
    let frame = match r.below(12) {
        0 => {
            json!({"type": "descriptor", "descriptor": {"contract_version": 1, "platform": "discord",
            "label": "D", "max_message_length": 2000, "supports_draft_streaming": false,
            "supports_edit": true, "supports_threads": true, "markdown_dialect": "discord", "len_unit": "chars"}})
        }
        1 => json!({"type": "descriptor", "descriptor": {"platform": "discord"}}),
        2 => {
            let rid = if !c.request_ids.is_empty() && r.chance(85) {
                r.pick(&c.request_ids).clone()
            } else {
                "0123456789abcdef0123456789abcdef".into()
            };
            json!({"type": "outbound_result", "requestId": rid, "result": {"success": true}})
        }
        3 => json!({"type": "inbound", "event": {"text": "hi", "source": {"platform": "discord",
            "chat_id": chat(r), "user_id": "u"}}, "bufferId": buffer(r)}),
        4 => {
            json!({"type": "inbound", "event": {"text": "/x", "source": {"platform": "telegram", "chat_id": chat(r)},
            "prompt_response": {"prompt_id": prompt_id(r), "option_id": "x"}}, "bufferId": buffer(r)})
        }
        5 => {
            let body =
                json!({"id": "1", "type": 2, "channel_id": chat(r), "data": {"name": "new"}});
            json!({"type": "passthrough_forward", "forward": {"platform": "discord", "bodyB64": b64(&body)}, "bufferId": buffer(r)})
        }
        6 => {
            let body = json!({"id": "2", "type": 3, "channel_id": chat(r),
                "data": {"custom_id": format!("hp1:{}:ok", prompt_id(r))}, "message": {"id": "m"}});
            json!({"type": "passthrough_forward", "forward": {"platform": "discord", "bodyB64": b64(&body)}, "bufferId": buffer(r)})
        }
        7 => {
            let body = json!({"id": "3", "type": *r.pick(&[1, 4, 9])});
            let platform = *r.pick(&["discord", "twilio"]);
            json!({"type": "passthrough_forward", "forward": {"platform": platform, "bodyB64": b64(&body)}, "bufferId": buffer(r)})
        }
        8 => json!({"type": "interrupt_inbound", "session_key": "s", "chat_id": chat(r)}),
        9 => json!({"type": "going_idle_ack"}),
        10 => {
            return r
                .pick(&[
                    "{oops",
                    "[1]",
                    "{\"type\": \"hello\"}",
                    "{\"type\": \"inbound\", \"event\": null, \"bufferId\": \"b1\"}",
                    "\u{7f}\u{0}",
                ])
                .to_string()
        }
        _ => {
            return format!(
                "{{\"type\": \"inbound\", \"event\": {{\"text\": \"{}\"}}}}",
                "x".repeat(3000)
            )
        }
    };
    crate::json::compact(&frame)
}

fn random_command(r: &mut Rng, c: &mut Checker, n: &mut u64) -> Value {
    let chat = format!("c{}", r.below(8));
    match r.below(8) {
        0..=2 => {
            *n += 1;
            let id = format!("a{n}");
            c.issued.push(id.clone());
            let action = match r.below(3) {
                0 => json!({"op": "send", "chat_id": chat, "content": "x"}),
                1 => json!({"op": "get_chat_info", "chat_id": chat}),
                _ => {
                    json!({"op": "prompt", "chat_id": chat, "prompt_id": format!("n0.{}", r.below(6)), "timeout_s": r.below(120)})
                }
            };
            let mut cmd = json!({"op": "outbound", "id": id, "action": action});
            if r.chance(30) {
                cmd["platform"] = json!(*r.pick(&["discord", "slack", ""]));
            }
            cmd
        }
        3 => json!({"op": "ack", "buffer_id": format!("b{}", r.below(BUFFER_POOL))}),
        4 => json!({"op": "going_idle"}),
        5 => json!({"op": "interrupt", "session_key": "s"}),
        6 => json!({"op": *r.pick(&["dance", "status"])}),
        _ => json!({"op": "outbound", "id": 5}),
    }
}

/// Runs one random sequence; returns every effect for the determinism check.
fn run_sequence(seed: u64) -> Result<Vec<Effect>, String> {
    let mut r = Rng(SplitMix64::new(seed));
    let mut cfg = Config::new(vec![
        Identity {
            platform: "discord".into(),
            bot_id: "d".into(),
            command_manifest: None,
        },
        Identity {
            platform: "telegram".into(),
            bot_id: "t".into(),
            command_manifest: None,
        },
    ]);
    cfg.seed = seed;
    cfg.prompt_nonce = "n0".into();
    cfg.max_line_bytes = 2048;
    cfg.outbound_timeout_ms = 1 + r.below(20_000);
    cfg.handshake_timeout_ms = 1 + r.below(20_000);
    cfg.going_idle_timeout_ms = 1 + r.below(20_000);
    cfg.reconnect_jitter_percent = r.below(21) as u8;
    let mut conn = Connection::with_caps(cfg, CAPS).map_err(|e| e.to_string())?;
    let mut c = Checker::default();
    let mut n = 0;
    let steps = 20 + r.below(80);
    for _ in 0..steps {
        c.now += r.below(3000);
        c.fire_due(&mut conn)?;
        let now = c.now;
        let effects = match r.below(20) {
            0 | 1 => conn.open(now),
            2 => {
                let code = *r.pick(&[None, Some(1000), Some(1006), Some(4401), Some(4401)]);
                let reason = *r.pick(&["", "expired", "unauthorized"]);
                conn.closed(now, code, reason)
            }
            3..=8 => {
                let mut text = String::new();
                for _ in 0..1 + r.below(3) {
                    text.push_str(&random_frame(&mut r, &c));
                    text.push('\n');
                }
                let mut bytes = text.into_bytes();
                if r.chance(5) {
                    // Arbitrary bytes, newlines included.
                    bytes = (0..r.below(64)).map(|_| r.below(256) as u8).collect();
                }
                if r.chance(30) {
                    let cut = r.below(bytes.len() as u64 + 1) as usize;
                    let mut e = conn.receive(now, &bytes[..cut]);
                    e.extend(conn.receive(now, &bytes[cut..]));
                    e
                } else {
                    conn.receive(now, &bytes)
                }
            }
            9..=16 => {
                let cmd = random_command(&mut r, &mut c, &mut n);
                conn.command(now, &cmd).unwrap_or_default()
            }
            17 | 18 => {
                c.now += r.below(40_000);
                c.fire_due(&mut conn)?;
                Vec::new()
            }
            _ => conn.timer_fired(now, r.below(50)),
        };
        c.absorb(&conn, effects)?;
        let _ = conn.stats();
    }
    // A final close answers whatever is still waiting.
    let e = conn.closed(c.now, None, "end");
    c.absorb(&conn, e)?;
    for id in &c.issued {
        if c.answers.get(id) != Some(&1) {
            return Err(format!("{id} answered {:?} times", c.answers.get(id)));
        }
    }
    if conn.usage().pending_requests != 0 || conn.usage().timers != 0 {
        return Err(format!(
            "left over after the final close: {:?}",
            conn.usage()
        ));
    }
    Ok(c.log)
}

#[test]
fn random_sequences_keep_the_invariants() {
    let mut failures = Vec::new();
    let mut seen: HashMap<&'static str, u32> = HashMap::new();
    for seed in 0..SEQUENCES {
        match std::panic::catch_unwind(|| run_sequence(seed)) {
            Ok(Ok(effects)) => {
                for e in &effects {
                    *seen.entry(coverage_key(e)).or_default() += 1;
                }
                if seed % 50 == 0 && run_sequence(seed).ok() != Some(effects) {
                    failures.push(format!("seed {seed}: not deterministic"));
                }
            }
            Ok(Err(e)) => failures.push(format!("seed {seed}: {e}")),
            Err(_) => failures.push(format!("seed {seed}: panicked")),
        }
    }
    for f in failures.iter().take(20) {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {SEQUENCES} sequences failed",
        failures.len()
    );
    // The random walk must actually reach the interesting paths.
    for key in [
        "ready",
        "message",
        "message_buffered",
        "inbound_ack",
        "prompt_stale",
        "interrupt",
        "result_ok",
        "result_timeout",
        "result_lost",
        "result_not_connected",
        "result_cap",
        "idle_true",
        "idle_false",
        "handshake_failed",
        "backoff",
        "redial",
        "revoked",
    ] {
        let n = seen.get(key).copied().unwrap_or(0);
        assert!(n >= 5, "path {key} reached only {n} times: {seen:?}");
    }
}

fn coverage_key(e: &Effect) -> &'static str {
    match e {
        Effect::Send { line: l, .. } if l.contains("\"inbound_ack\"") => "inbound_ack",
        Effect::Emit(ev) => {
            let v = ev.to_value();
            match (v["event"].as_str(), v["result"]["error"].as_str()) {
                (Some("ready"), _) => "ready",
                (Some("message"), _) if v["buffer_id"].is_string() => "message_buffered",
                (Some("message"), _) => "message",
                (Some("prompt_stale"), _) => "prompt_stale",
                (Some("interrupt"), _) => "interrupt",
                (Some("outbound_result"), None) => "result_ok",
                (Some("outbound_result"), Some(t)) if t.contains("timed out") => "result_timeout",
                (Some("outbound_result"), Some(t)) if t.contains("lost") => "result_lost",
                (Some("outbound_result"), Some(t)) if t.contains("not connected") => {
                    "result_not_connected"
                }
                (Some("outbound_result"), Some(t)) if t.contains("too many") => "result_cap",
                (Some("idle"), _) if v["acked"] == true => "idle_true",
                (Some("idle"), _) => "idle_false",
                (Some("state"), _) => match v["state"].as_str() {
                    Some("handshake_failed") => "handshake_failed",
                    Some("backoff") => "backoff",
                    Some("redial") => "redial",
                    Some("revoked") => "revoked",
                    _ => "other",
                },
                _ => "other",
            }
        }
        _ => "other",
    }
}

/// The checker must be able to fail: a double answer is caught.
#[test]
fn checker_catches_a_double_answer() {
    let conn = Connection::new(Config::new(vec![Identity {
        platform: "p".into(),
        bot_id: "b".into(),
        command_manifest: None,
    }]))
    .unwrap();
    let mut c = Checker::default();
    let ev = || Effect::Emit(json!({"event": "outbound_result", "id": "a", "result": {}}).into());
    assert!(c.absorb(&conn, vec![ev()]).is_ok());
    assert!(c.absorb(&conn, vec![ev()]).is_err());
}
