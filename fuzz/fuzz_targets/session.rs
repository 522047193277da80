//! Arbitrary call sequences → `session::Connection`, the way a host drives it.
//!
//! Steps: open; closed (codes incl. 4401 with and without "expired"); receive of
//! arbitrary bytes and of well-formed frames (descriptor, inbound and
//! passthrough_forward with buffer ids from a small set, outbound_result for the
//! request ids issued so far, going_idle_ack, interrupt_inbound, overlong lines),
//! split across messages at arbitrary points; timer_fired for armed, stale and
//! made-up timer ids; time advancing with the due timers fired in order;
//! outbound/interrupt/ack/going_idle as direct calls and as command objects; raw
//! command objects.
//!
//! Invariants: nothing panics; every outbound is answered exactly once (never an
//! answer for an id that was not issued); no buffer id is delivered twice as a
//! `message` while the buffer-id memory is large enough to remember the whole set;
//! `usage()` stays within `caps()` and its timer count equals the host's view;
//! timer ids are never reused and never cancelled when not armed; nothing is
//! written after `revoked` or while no socket is being served; every written
//! frame is one JSON line; every event's JSON text equals its `Value` text; a
//! final close answers what is still waiting and leaves no timers; and the same
//! calls give the same effects.
#![no_main]

use std::collections::{HashMap, HashSet};

use arbitrary::{Result, Unstructured};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use relay_logic::session::{Caps, Config, Connection, Effect, Identity, LinkState};
use relay_logic_fuzz::{any, inbound_event, interaction, Doc};
use serde_json::{json, Value};

const MAX_STEPS: usize = 64;
/// Buffer-id memory at least this large never forgets an id of the pool below.
const NO_EVICTION: usize = 16;
const BUFFERS: &[&str] = &["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"];
const PROMPTS: &[&str] = &["n0.0", "n0.1", "n0.2", "n0.3", "zz.1", "legacy1"];

/// The host's view and the invariants, checked on every effect.
#[derive(Default)]
struct Checker {
    now: u64,
    /// Armed timers as the host sees them: (due, set order, id).
    timers: Vec<(u64, u64, u64)>,
    set_seq: u64,
    timer_ids: HashSet<u64>,
    /// Application ids of every outbound issued, and how often each was answered.
    issued: Vec<String>,
    answers: HashMap<String, u32>,
    delivered: HashSet<String>,
    check_dedup: bool,
    /// Request ids of every `outbound` frame written.
    request_ids: Vec<String>,
    revoked: bool,
    next_app_id: u64,
    log: Vec<Effect>,
}

fn serving(state: LinkState) -> bool {
    matches!(
        state,
        LinkState::Handshaking | LinkState::Ready | LinkState::Idle
    )
}

impl Checker {
    fn fresh_app_id(&mut self) -> String {
        self.next_app_id += 1;
        format!("a{}", self.next_app_id)
    }

    /// `may_write`: the call is `open`, or a socket was being served before it.
    fn absorb(&mut self, conn: &Connection, effects: Vec<Effect>, may_write: bool) {
        for e in effects {
            match &e {
                Effect::Send { line, .. } => {
                    assert!(!self.revoked, "wrote after revoked: {line}");
                    assert!(may_write, "wrote with no socket served: {line}");
                    let body = line
                        .strip_suffix('\n')
                        .expect("a write without its newline");
                    assert!(!body.contains('\n'), "two lines in one write");
                    let v: Value = serde_json::from_str(body).expect("a write that is not JSON");
                    assert!(v["type"].is_string(), "a frame without a type: {body}");
                    if v["type"] == "outbound" {
                        let rid = v["requestId"].as_str().expect("outbound without requestId");
                        assert!(
                            rid.len() == 32 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
                            "bad request id {rid}"
                        );
                        assert!(
                            !self.request_ids.iter().any(|r| r == rid),
                            "request id {rid} reused"
                        );
                        self.request_ids.push(rid.to_string());
                    }
                }
                Effect::Emit(ev) => {
                    let text = ev.to_json_string();
                    let v = ev.to_value();
                    assert_eq!(text, v.to_string(), "event text differs from its value");
                    let name = ev.name();
                    assert!(!name.is_empty(), "event without a name: {text}");
                    match name {
                        "outbound_result" => {
                            let id = v["id"].as_str().expect("result without id").to_string();
                            assert!(self.issued.contains(&id), "answer for unknown id {id}");
                            let n = self.answers.entry(id.clone()).or_default();
                            *n += 1;
                            assert!(*n == 1, "{id} answered twice");
                        }
                        "message" => {
                            if let Some(b) = v["buffer_id"].as_str() {
                                assert!(
                                    self.delivered.insert(b.to_string()) || !self.check_dedup,
                                    "buffer id {b} delivered twice"
                                );
                            }
                        }
                        "state" if v["state"] == "revoked" => self.revoked = true,
                        _ => {}
                    }
                }
                Effect::SetTimer { id, at_ms } => {
                    assert!(self.timer_ids.insert(*id), "timer id {id} reused");
                    assert!(*at_ms >= self.now, "timer {id} set in the past");
                    self.set_seq += 1;
                    self.timers.push((*at_ms, self.set_seq, *id));
                }
                Effect::CancelTimer(id) => {
                    let before = self.timers.len();
                    self.timers.retain(|t| t.2 != *id);
                    assert!(self.timers.len() < before, "cancelled timer {id} not armed");
                }
                Effect::Redial | Effect::Reconnect(_) => {
                    assert!(!self.revoked, "dial decision after revoked")
                }
                _ => {}
            }
            self.log.push(e);
        }
        let u = conn.usage();
        let caps = conn.caps();
        assert!(
            u.pending_requests <= caps.pending_requests
                && u.buffer_ids <= caps.buffer_ids
                && u.prompts <= caps.prompts
                && u.answered_prompts <= caps.answered_prompts
                && u.egress_chats <= caps.egress_chats
                && u.timers <= u.pending_requests + 2,
            "caps exceeded: {u:?} > {caps:?}"
        );
        assert_eq!(
            u.timers,
            self.timers.len(),
            "timer count differs from the host's"
        );
    }

    fn fire(&mut self, conn: &mut Connection, id: u64) {
        self.timers.retain(|t| t.2 != id);
        let may_write = serving(conn.state());
        let e = conn.timer_fired(self.now, id);
        self.absorb(conn, e, may_write);
    }

    /// Fires every due timer, earliest first (ties in arming order), as a host does.
    fn fire_due(&mut self, conn: &mut Connection) {
        while let Some(&(_, _, id)) = self
            .timers
            .iter()
            .filter(|t| t.0 <= self.now)
            .min_by_key(|t| (t.0, t.1))
        {
            self.fire(conn, id);
        }
    }
}

fn buffer_id(u: &mut Unstructured<'_>) -> Result<Doc> {
    Ok(match u.int_in_range(0u8..=12)? {
        0..=7 => Doc::str(BUFFERS[usize::from(u.int_in_range(0u8..=7)?)]),
        8 => Doc::raw("3"),
        9 => Doc::raw("0"),
        10 => Doc::str(""),
        _ => Doc::raw("null"),
    })
}

fn chat(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(format!("c{}", u.int_in_range(0u8..=5)?))
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// One line the connector could send.
fn frame(u: &mut Unstructured<'_>, c: &Checker, max_line: usize) -> Result<String> {
    let doc = match u.int_in_range(0u8..=15)? {
        0 | 1 => {
            let full = json!({"type": "descriptor", "descriptor": {"contract_version": 1,
                "platform": "discord", "label": "D", "max_message_length": 2000,
                "supports_draft_streaming": false, "supports_edit": true,
                "supports_threads": true, "markdown_dialect": "discord", "len_unit": "chars"}});
            return Ok(match u.int_in_range(0u8..=3)? {
                0 => r#"{"type":"descriptor","descriptor":{"platform":"discord"}}"#.into(),
                1 => Doc::obj(vec![
                    ("type", Doc::str("descriptor")),
                    ("descriptor", any(u, 2)?),
                ])
                .to_text(),
                _ => full.to_string(),
            });
        }
        2..=4 => {
            let rid = if !c.request_ids.is_empty() && u.ratio(7u8, 8)? {
                Doc::Str(u.choose(&c.request_ids)?.clone())
            } else {
                Doc::str("0123456789abcdef0123456789abcdef")
            };
            let result = match u.int_in_range(0u8..=3)? {
                0 => Doc::raw(r#"{"success":true,"message_id":"m1"}"#),
                1 => Doc::raw(r#"{"success":false,"error":"nope"}"#),
                2 => Doc::raw(r#"{"success":true,"name":"general","type":"group"}"#),
                _ => any(u, 2)?,
            };
            let mut m = vec![("type", Doc::str("outbound_result")), ("requestId", rid)];
            if u.ratio(7u8, 8)? {
                m.push(("result", result));
            }
            Doc::obj(m)
        }
        5..=7 => {
            let prompt = if u.ratio(1u8, 3)? {
                Some(u.choose(PROMPTS)?.to_string())
            } else {
                None
            };
            let chat = chat(u)?;
            let event = inbound_event(u, chat, prompt)?;
            Doc::obj(vec![
                ("type", Doc::str("inbound")),
                ("event", event),
                ("bufferId", buffer_id(u)?),
            ])
        }
        8..=10 => {
            let body = if u.ratio(1u8, 8)? {
                {
                    let n = u.int_in_range(0..=16usize)?.min(u.len());
                    Doc::Str(String::from_utf8_lossy(u.bytes(n)?).into())
                }
            } else {
                let chat = chat(u)?;
                Doc::Str(b64(&interaction(u, Some(chat))?.to_text()))
            };
            let platform = *u.choose(&["discord", "discord", "discord", "twilio", ""])?;
            let forward = Doc::obj(vec![("platform", Doc::str(platform)), ("bodyB64", body)]);
            Doc::obj(vec![
                ("type", Doc::str("passthrough_forward")),
                ("forward", forward),
                ("bufferId", buffer_id(u)?),
            ])
        }
        11 => Doc::obj(vec![("type", Doc::str("going_idle_ack"))]),
        12 => Doc::obj(vec![
            ("type", Doc::str("interrupt_inbound")),
            ("session_key", Doc::str("s")),
            ("chat_id", Doc::Str(chat(u)?)),
        ]),
        13 => {
            // Over the limit: skipped, and the next line still handled.
            return Ok(format!(
                "{{\"type\":\"inbound\",\"event\":{{\"text\":\"{}\"}}}}",
                "x".repeat(max_line.min(1 << 16))
            ));
        }
        14 => any(u, 3)?,
        _ => {
            let s: String = u.arbitrary()?;
            return Ok(s.replace('\n', " "));
        }
    };
    Ok(doc.to_text())
}

fn action(u: &mut Unstructured<'_>) -> Result<Value> {
    let chat = chat(u)?;
    Ok(match u.int_in_range(0u8..=4)? {
        0 => json!({"op": "send", "chat_id": chat, "content": "x"}),
        1 => json!({"op": "get_chat_info", "chat_id": chat}),
        2 => json!({"op": "prompt", "chat_id": chat,
            "prompt_id": *u.choose(PROMPTS)?, "timeout_s": u.int_in_range(0u16..=600)?}),
        3 => {
            let text = any(u, 3)?.to_text();
            serde_json::from_str(&text).unwrap_or(Value::Null)
        }
        _ => json!({"op": "send", "chat_id": chat, "metadata": {"thread_id": "t"}}),
    })
}

/// One call (or one advance of time) chosen by the fuzzer.
fn step(
    u: &mut Unstructured<'_>,
    conn: &mut Connection,
    c: &mut Checker,
    max_line: usize,
) -> Result<()> {
    let now = c.now;
    let may_write = serving(conn.state());
    let effects = match u.int_in_range(0u8..=19)? {
        0 => {
            let e = conn.open(now);
            c.absorb(conn, e, true);
            return Ok(());
        }
        1 => {
            let code = *u.choose(&[
                None,
                Some(1000),
                Some(1006),
                Some(4401),
                Some(4401),
                Some(4403),
            ])?;
            let reason = match u.int_in_range(0u8..=3)? {
                0 => String::new(),
                1 => "expired".into(),
                2 => "unauthorized".into(),
                _ => u.arbitrary()?,
            };
            conn.closed(now, code, &reason)
        }
        2 => {
            let len = u.int_in_range(0..=64usize)?.min(u.len());
            let bytes = u.bytes(len)?.to_vec();
            conn.receive(now, &bytes)
        }
        3..=7 => {
            let mut text = String::new();
            for _ in 0..u.int_in_range(1..=3)? {
                text.push_str(&frame(u, c, max_line)?);
                text.push_str(*u.choose(&["\n", "\n", "\n", "\r\n", "\n \n"])?);
            }
            let bytes = text.into_bytes();
            // Split into up to three WebSocket messages, anywhere (also inside
            // a multi-byte character).
            let a = u.int_in_range(0..=bytes.len())?;
            let b = u.int_in_range(a..=bytes.len())?;
            let mut e = conn.receive(now, &bytes[..a]);
            e.extend(conn.receive(now, &bytes[a..b]));
            e.extend(conn.receive(now, &bytes[b..]));
            e
        }
        8 => {
            if c.timers.is_empty() {
                return Ok(());
            }
            let id = u.choose(&c.timers)?.2;
            c.fire(conn, id);
            return Ok(());
        }
        9 => {
            let id = u.int_in_range(0..=c.timer_ids.len() as u64 + 2)?;
            c.fire(conn, id);
            return Ok(());
        }
        10 | 11 => {
            let step = u64::from(u.arbitrary::<u16>()?) * u64::from(*u.choose(&[1u8, 10])?);
            c.now = c.now.saturating_add(step);
            if u.ratio(7u8, 8)? {
                c.fire_due(conn);
            }
            return Ok(());
        }
        12..=14 => {
            let id = c.fresh_app_id();
            let action = action(u)?;
            let platform = match u.int_in_range(0u8..=4)? {
                0 => Some("discord".to_string()),
                1 => Some("slack".to_string()),
                2 => Some(String::new()),
                _ => None,
            };
            if u.arbitrary()? {
                c.issued.push(id.clone());
                conn.outbound(now, &id, action, platform)
            } else {
                let mut cmd = json!({"op": "outbound", "id": id, "action": action});
                if let Some(p) = platform {
                    cmd["platform"] = p.into();
                }
                match conn.command(now, &cmd) {
                    Ok(e) => {
                        c.issued.push(id);
                        e
                    }
                    Err(_) => {
                        assert!(!cmd["action"].is_object(), "outbound command refused");
                        Vec::new()
                    }
                }
            }
        }
        15 => {
            if u.arbitrary()? {
                conn.interrupt(now, "s", Some("stop".into()))
            } else {
                conn.command(now, &json!({"op": "interrupt", "session_key": "s"}))
                    .expect("interrupt command refused")
            }
        }
        16 => {
            let b = *u.choose(BUFFERS)?;
            if u.arbitrary()? {
                conn.ack(now, b)
            } else {
                conn.command(now, &json!({"op": "ack", "buffer_id": b}))
                    .expect("ack command refused")
            }
        }
        17 => conn.going_idle(now),
        18 => {
            // A raw command object; an outbound one gets a fresh id to track.
            let mut cmd: Value = serde_json::from_str(&any(u, 3)?.to_text()).unwrap_or(Value::Null);
            let op = *u.choose(&["outbound", "ack", "interrupt", "going_idle", "status"])?;
            let outbound = op == "outbound";
            let id = c.fresh_app_id();
            if let Some(o) = cmd.as_object_mut() {
                o.insert("op".into(), op.into());
                if outbound {
                    o.insert("id".into(), id.clone().into());
                }
            }
            match conn.command(now, &cmd) {
                Ok(e) => {
                    if outbound {
                        c.issued.push(id);
                    }
                    e
                }
                Err(_) => Vec::new(),
            }
        }
        _ => {
            let _ = conn.stats();
            let _ = conn.authorization(1_700_000_000);
            let _ = conn.descriptor().map(|d| d.to_json());
            return Ok(());
        }
    };
    c.absorb(conn, effects, may_write);
    Ok(())
}

/// Runs one sequence; returns every effect (for the determinism check).
fn run(data: &[u8]) -> Result<Vec<Effect>> {
    let mut u = Unstructured::new(data);
    let identities = vec![
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
    ];
    let mut cfg = Config::new(identities);
    cfg.seed = u.arbitrary()?;
    cfg.prompt_nonce = "n0".into();
    cfg.max_line_bytes = *u.choose(&[64, 2048, 1 << 20])?;
    cfg.outbound_timeout_ms = u.int_in_range(1..=20_000)?;
    cfg.handshake_timeout_ms = u.int_in_range(1..=20_000)?;
    cfg.going_idle_timeout_ms = u.int_in_range(1..=20_000)?;
    cfg.reconnect_jitter_percent = u.int_in_range(0..=20)?;
    if u.arbitrary()? {
        cfg.gateway_id = Some("g1".into());
        cfg.secret = Some("s3cret".into());
    }
    let caps = Caps {
        pending_requests: u.int_in_range(0..=5)?,
        buffer_ids: *u.choose(&[1, 3, NO_EVICTION, 64])?,
        prompts: u.int_in_range(0..=4)?,
        answered_prompts: u.int_in_range(0..=4)?,
        egress_chats: u.int_in_range(0..=4)?,
        message_ids: *u.choose(&[1, 3, NO_EVICTION, 64])?,
    };
    let max_line = cfg.max_line_bytes;
    let mut conn = Connection::with_caps(cfg, caps).expect("a valid config was refused");
    let mut c = Checker {
        check_dedup: conn.caps().buffer_ids >= NO_EVICTION,
        ..Checker::default()
    };

    for _ in 0..MAX_STEPS {
        // Running out of input mid-step just ends the sequence.
        if u.is_empty() || step(&mut u, &mut conn, &mut c, max_line).is_err() {
            break;
        }
    }

    // A final close answers whatever still waits and leaves nothing armed.
    let may_write = serving(conn.state());
    let e = conn.closed(c.now, None, "end");
    c.absorb(&conn, e, may_write);
    for id in &c.issued {
        assert_eq!(
            c.answers.get(id),
            Some(&1),
            "{id} not answered exactly once"
        );
    }
    let usage = conn.usage();
    assert_eq!(usage.pending_requests, 0, "left over after the final close");
    assert_eq!(usage.timers, 0, "timers left after the final close");
    Ok(c.log)
}

fuzz_target!(|data: &[u8]| {
    let first = run(data);
    if let Ok(log) = first {
        let again = run(data).expect("second run failed");
        assert!(log == again, "the same calls gave different effects");
    }
});
