//! Random step sequences through the `link` resource of the compiled
//! component: no trap, and the invariants of the session hold — every outbound gets
//! exactly one result, no buffer id is delivered twice, the counters stay within
//! the caps, nothing is written after `revoked`.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use relay_host::conform;
use relay_host::sandbox::{Allocation, Effect, LinkHandle, Runtime, Sandbox};
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const DESCRIPTOR: &str = r#"{"type": "descriptor", "descriptor": {"contract_version": 1, "platform": "discord", "label": "Discord", "max_message_length": 2000, "supports_draft_streaming": false, "supports_edit": true, "supports_threads": true, "markdown_dialect": "discord", "len_unit": "chars"}}"#;

/// The model the invariants are checked against.
#[derive(Default)]
struct World {
    now: u64,
    request_ids: Vec<String>,
    outbound_ids: Vec<String>,
    answers: HashMap<String, u32>,
    delivered: HashSet<String>,
    revoked: bool,
    written_after_revoked: usize,
    events: usize,
}

impl World {
    fn absorb(&mut self, effects: Vec<Effect>) -> Result<(), String> {
        for e in effects {
            match e {
                Effect::Send(out) => {
                    let line = out.line;
                    if self.revoked {
                        self.written_after_revoked += 1;
                    }
                    let v: Value = serde_json::from_str(line.trim_end())
                        .map_err(|e| format!("bad frame: {e}"))?;
                    if v["type"] == "outbound" {
                        self.request_ids
                            .push(v["requestId"].as_str().unwrap_or_default().to_string());
                    }
                }
                Effect::Emit(event) => {
                    self.events += 1;
                    let v: Value = serde_json::from_slice(&event.line)
                        .map_err(|e| format!("bad event: {e}"))?;
                    match v["event"].as_str() {
                        Some("outbound_result") => {
                            let id = v["id"].as_str().unwrap_or_default().to_string();
                            let n = self.answers.entry(id.clone()).or_default();
                            *n += 1;
                            if *n > 1 {
                                return Err(format!("outbound {id} answered twice"));
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
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn interaction(rng: &mut Rng) -> String {
    let body = match rng.below(4) {
        0 => json!({"type": 2, "id": "i1", "channel_id": "c1", "data": {"name": "new"}}),
        1 => {
            json!({"type": 3, "id": "i2", "channel_id": "c1", "data": {"custom_id": "hp1:n0nce.p1:ok"}})
        }
        2 => json!({"type": 1}),
        _ => json!({"type": 5, "id": "i3", "channel_id": "c1", "data": {"components": []}}),
    };
    base64::engine::general_purpose::STANDARD.encode(body.to_string())
}

fn step(
    rng: &mut Rng,
    sb: &mut Sandbox,
    conn: LinkHandle,
    w: &mut World,
) -> anyhow::Result<Result<(), String>> {
    w.now += rng.below(3_000);
    // What is due fires first (the component keeps its timers).
    if relay_host::sandbox::block_on(sb.poll_timeout(conn))?.is_some_and(|at| at <= w.now) {
        let effects = relay_host::sandbox::block_on(sb.handle_timeout(conn, w.now))?;
        if let Err(e) = w.absorb(effects) {
            return Ok(Err(e));
        }
    }
    let buffer = |rng: &mut Rng| {
        if rng.below(3) == 0 {
            Value::Null
        } else {
            json!(format!("b{}", rng.below(6)))
        }
    };
    let now = w.now;
    let effects = match rng.below(14) {
        0 => relay_host::sandbox::block_on(sb.open(conn, now))?,
        1 => {
            let code =
                [None, Some(1000), Some(1006), Some(4401), Some(4000)][rng.below(5) as usize];
            let reason = if rng.below(2) == 0 { "expired" } else { "" };
            relay_host::sandbox::block_on(sb.closed(conn, now, code, reason))?
        }
        2 => relay_host::sandbox::block_on(sb.receive_text(conn, now, &format!("{DESCRIPTOR}\n")))?,
        3 | 4 => {
            let line = json!({"type": "inbound", "bufferId": buffer(rng),
                              "event": {"text": "hi", "source": {"platform": "discord", "chat_id": "c1"}}});
            relay_host::sandbox::block_on(sb.receive_text(conn, now, &format!("{line}\n")))?
        }
        5 => {
            let line = json!({"type": "passthrough_forward", "bufferId": buffer(rng),
                              "forward": {"platform": "discord", "bodyB64": interaction(rng)}});
            relay_host::sandbox::block_on(sb.receive_text(conn, now, &format!("{line}\n")))?
        }
        6 => {
            let rid = if w.request_ids.is_empty() || rng.below(4) == 0 {
                "unknown".to_string()
            } else {
                w.request_ids[rng.below(w.request_ids.len() as u64) as usize].clone()
            };
            let line =
                json!({"type": "outbound_result", "requestId": rid, "result": {"success": true}});
            relay_host::sandbox::block_on(sb.receive_text(conn, now, &format!("{line}\n")))?
        }
        7 => {
            let garbage: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
            relay_host::sandbox::block_on(sb.receive_binary(conn, now, &garbage))?
        }
        8 | 9 => {
            let id = format!("o{}", w.outbound_ids.len());
            w.outbound_ids.push(id.clone());
            let action = if rng.below(3) == 0 {
                json!({"op": "prompt", "chat_id": "c1", "prompt_id": "n0nce.p1", "timeout_s": 60})
            } else {
                json!({"op": "send", "chat_id": "c1", "content": "x"})
            };
            match relay_host::sandbox::block_on(sb.command(
                conn,
                now,
                &json!({"op": "outbound", "id": id, "action": action}).to_string(),
            ))? {
                Ok(e) => e,
                Err(e) => return Ok(Err(format!("a valid outbound was rejected: {}", e.message))),
            }
        }
        10 => {
            let b = format!("b{}", rng.below(6));
            relay_host::sandbox::block_on(sb.command(
                conn,
                now,
                &json!({"op": "ack", "buffer_id": b}).to_string(),
            ))?
            .unwrap_or_default()
        }
        11 => relay_host::sandbox::block_on(sb.command(
            conn,
            now,
            &json!({"op": "going_idle"}).to_string(),
        ))?
        .unwrap_or_default(),
        12 => relay_host::sandbox::block_on(sb.receive_text(
            conn,
            now,
            "{\"type\": \"going_idle_ack\"}\n",
        ))?,
        _ => relay_host::sandbox::block_on(sb.command(
            conn,
            now,
            &json!({"op": "interrupt", "session_key": "k"}).to_string(),
        ))?
        .unwrap_or_default(),
    };
    if let Err(e) = w.absorb(effects) {
        return Ok(Err(e));
    }
    let stats = relay_host::sandbox::block_on(sb.stats(conn))?;
    if stats.pending_outbound > 4096 {
        return Ok(Err(format!("pending over its cap: {stats:?}")));
    }
    Ok(Ok(()))
}

#[test]
fn random_sequences_keep_the_invariants_through_the_component() {
    let runtime = Runtime::new(Allocation::OnDemand, conform::limits()).expect("component loads");
    let config = conform::session_config(
        &json!({"identities": [{"platform": "discord", "bot_id": "app1"}], "prompt_nonce": "n0nce"}),
    );
    let mut totals = (0, 0, 0);
    for seed in 1..=150u64 {
        let mut rng = Rng(seed);
        let mut sb = runtime.instantiate(conform::limits()).expect("instance");
        let conn = relay_host::sandbox::block_on(sb.create_link(&config))
            .expect("no trap")
            .expect("valid config");
        let mut w = World::default();
        for i in 0..120 {
            match step(&mut rng, &mut sb, conn, &mut w) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("seed {seed}, step {i}: {e}"),
                Err(trap) => panic!("seed {seed}, step {i}: the component trapped: {trap:#}"),
            }
        }
        // Close, then let every deadline pass: every outbound must be answered.
        w.now += 1;
        let effects =
            relay_host::sandbox::block_on(sb.closed(conn, w.now, Some(1006), "")).expect("no trap");
        w.absorb(effects)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        w.now += 10 * 60_000;
        let effects =
            relay_host::sandbox::block_on(sb.handle_timeout(conn, w.now)).expect("no trap");
        w.absorb(effects)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for id in &w.outbound_ids {
            assert_eq!(
                w.answers.get(id),
                Some(&1),
                "seed {seed}: outbound {id} answered {:?} times",
                w.answers.get(id)
            );
        }
        assert_eq!(
            w.written_after_revoked, 0,
            "seed {seed}: frames written after revoked"
        );
        totals.0 += w.outbound_ids.len();
        totals.1 += w.delivered.len();
        totals.2 += w.events;
    }
    // The sequences reached the interesting paths (the test is not vacuous).
    assert!(
        totals.0 > 1000 && totals.1 > 200 && totals.2 > 3000,
        "{totals:?}"
    );
}
