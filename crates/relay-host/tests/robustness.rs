//! Hostile and random input through the compiled component: no trap, ever, and
//! framing that does not depend on how the bytes were chunked.
//!
//! Inputs come from a seeded generator (reproducible failures) and from mutating
//! the real vector inputs, so the random cases reach deep into the decoders.

use relay_host::conform;
use relay_host::sandbox::{Allocation, Effect, LinkHandle, Runtime, Sandbox};
use serde_json::{json, Map, Value};

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn runtime() -> Runtime {
    Runtime::new(Allocation::OnDemand, conform::limits()).expect("component loads")
}

fn vectors(file: &str) -> Vec<Value> {
    let path = relay_testkit::vectors::vectors_dir().join(file);
    relay_testkit::vectors::load_cases(&path).expect("vector file loads")
}

fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => serde_json::from_str("1e400").unwrap_or(Value::Null),
        4 => json!(-0.000001),
        5 => serde_json::from_str("123456789012345678901234567890").unwrap(),
        6 => json!(""),
        7 => json!("hp1:a.b:c"),
        _ => json!("x\u{0}\u{202e}😀\u{a0}"),
    }
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    if depth == 0 || rng.below(3) == 0 {
        return random_scalar(rng);
    }
    match rng.below(2) {
        0 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "type",
                "data",
                "options",
                "value",
                "name",
                "custom_id",
                "components",
                "id",
                "source",
                "event",
            ];
            let mut m = Map::new();
            for _ in 0..rng.below(5) {
                m.insert(
                    keys[rng.below(keys.len())].to_string(),
                    random_value(rng, depth - 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// Replaces one random node of `v` by a random value.
fn mutate(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() && rng.below(4) != 0 => {
            let key = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(child) = m.get_mut(&key) {
                mutate(rng, child);
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(a.len());
            mutate(rng, &mut a[i]);
        }
        other => *other = random_value(rng, 3),
    }
}

fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.push(rng.next() as u8);
            continue;
        }
        let i = rng.below(bytes.len());
        match rng.below(3) {
            0 => bytes[i] = rng.next() as u8,
            1 => {
                bytes.remove(i);
            }
            _ => {
                const SPECIAL: &[u8] = b"{}[]\",:\\\n\xff";
                bytes.insert(i, SPECIAL[rng.below(SPECIAL.len())])
            }
        }
    }
}

#[test]
fn random_and_mutated_lines_never_trap() {
    let rt = runtime();
    let mut sb = rt.instantiate(conform::limits()).unwrap();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let lines: Vec<Vec<u8>> = vectors("frames.json")
        .iter()
        .filter_map(|c| c["input"]["decode"].as_str().map(|s| s.as_bytes().to_vec()))
        .collect();
    let (mut ok, mut rejected) = (0, 0);
    for i in 0..3000 {
        let line = match i % 3 {
            0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut l = lines[rng.below(lines.len())].clone();
                mutate_bytes(&mut rng, &mut l);
                l
            }
            _ => {
                // Malformed vector lines have no tree to mutate: use a random one.
                let mut v: Value = serde_json::from_slice(&lines[rng.below(lines.len())])
                    .unwrap_or_else(|_| random_value(&mut rng, 4));
                mutate(&mut rng, &mut v);
                v.to_string().into_bytes()
            }
        };
        match relay_host::sandbox::block_on(sb.decode(&line, 1 << 20)) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.message.is_empty(), "a typed error explains itself");
                rejected += 1
            }
            Err(trap) => panic!(
                "decode trapped on {:?}: {trap}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
    // Both outcomes were exercised, so the test is not vacuous.
    assert!(ok > 100 && rejected > 100, "ok {ok}, rejected {rejected}");
}

#[test]
fn random_json_through_every_conversion_never_traps() {
    let rt = runtime();
    let mut sb = rt.instantiate(conform::limits()).unwrap();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let interactions: Vec<Value> = vectors("discord_interaction.json")
        .iter()
        .filter_map(|c| c["input"]["forward"].get("interaction").cloned())
        .collect();
    let events: Vec<Value> = vectors("inbound_event.json")
        .iter()
        .map(|c| c["input"].clone())
        .collect();
    let mut messages = 0;
    for i in 0..2000 {
        // Discord conversion over mutated real interactions.
        let mut interaction = interactions[rng.below(interactions.len())].clone();
        if i % 5 != 0 {
            mutate(&mut rng, &mut interaction);
        }
        let body = base64_std(interaction.to_string().as_bytes());
        let forward = json!({"platform": "discord", "botId": "b", "method": "POST", "path": "/i", "headers": [], "bodyB64": body});
        let normalised =
            relay_host::sandbox::block_on(sb.passthrough_forward(&forward.to_string()))
                .expect("no trap")
                .expect("valid forward");
        if relay_host::sandbox::block_on(sb.discord_event(&normalised))
            .expect("no trap")
            .expect("normalised forward")
            .is_some()
        {
            messages += 1;
        }
        // Inbound events and descriptors, mutated and random.
        let mut event = events[rng.below(events.len())].clone();
        mutate(&mut rng, &mut event);
        let _ =
            relay_host::sandbox::block_on(sb.inbound_event(&event.to_string())).expect("no trap");
        let _ = relay_host::sandbox::block_on(
            sb.normalize_descriptor(&random_value(&mut rng, 4).to_string()),
        )
        .expect("no trap");
        let _ = relay_host::sandbox::block_on(
            sb.passthrough_forward(&random_value(&mut rng, 4).to_string()),
        )
        .expect("no trap");
    }
    assert!(
        messages > 200,
        "mutations must still reach the conversion: {messages}"
    );
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const DESCRIPTOR: &str = r#"{"type": "descriptor", "descriptor": {"contract_version": 1, "platform": "discord", "label": "Discord", "max_message_length": 2000, "supports_draft_streaming": false, "supports_edit": true, "supports_threads": true, "markdown_dialect": "discord", "len_unit": "chars"}}"#;

/// What a connection did with a sequence of messages: frames written and events.
fn drive(sb: &mut Sandbox, pieces: &[&[u8]], binary: bool) -> Vec<String> {
    let config =
        conform::session_config(&json!({"identities": [{"platform": "discord", "bot_id": "b"}]}));
    let conn: LinkHandle = relay_host::sandbox::block_on(sb.create_link(&config))
        .expect("no trap")
        .expect("valid config");
    let mut out = Vec::new();
    let mut record = |effects: Vec<Effect>| {
        for e in effects {
            match e {
                Effect::Send(o) => out.push(format!("send {}", o.line)),
                Effect::Emit(b) => {
                    let s = String::from_utf8(b.line).expect("the component writes UTF-8");
                    out.push(format!("emit {s}"));
                }
                _ => {}
            }
        }
    };
    record(relay_host::sandbox::block_on(sb.open(conn, 0)).expect("no trap"));
    for p in pieces {
        let effects = if binary {
            relay_host::sandbox::block_on(sb.receive_binary(conn, 1, p))
        } else {
            relay_host::sandbox::block_on(sb.receive_text(
                conn,
                1,
                std::str::from_utf8(p).expect("text pieces are whole characters"),
            ))
        };
        record(effects.expect("no trap"));
    }
    out
}

fn multi_frame_input() -> Vec<u8> {
    let mut s = String::new();
    s.push_str(DESCRIPTOR);
    s.push_str("\r\n\n   \n");
    s.push_str(r#"{"type": "inbound", "event": {"text": "grüße 👋", "source": {"platform": "discord", "chat_id": "c1"}}, "bufferId": "b1"}"#);
    s.push('\n');
    s.push_str("{not json}\n");
    s.push_str(r#"{"type": "interrupt_inbound", "session_key": "k", "chat_id": "c1"}"#);
    s.push('\n');
    s.push_str(r#"{"type": "inbound", "event": {"text": "second"}}"#);
    s.push_str("\npartial line never completed");
    s.into_bytes()
}

#[test]
fn chunking_never_changes_the_outcome() {
    let rt = runtime();
    let mut sb = rt.instantiate(conform::limits()).unwrap();
    let input = multi_frame_input();
    let whole = drive(&mut sb, &[&input], false);
    assert_eq!(
        whole.iter().filter(|l| l.starts_with("emit")).count(),
        6, // handshaking, ready, the ready state, 2 messages, 1 interrupt
        "{whole:#?}"
    );
    // Every split into two binary messages (splitting multi-byte characters too).
    for i in 0..=input.len() {
        let got = drive(&mut sb, &[&input[..i], &input[i..]], true);
        assert_eq!(got, whole, "split at {i}");
    }
    // One byte per message.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(&mut sb, &bytes, true), whole);
    // Random three-way splits.
    let mut rng = Rng(42);
    for _ in 0..300 {
        let mut a = rng.below(input.len() + 1);
        let mut b = rng.below(input.len() + 1);
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        assert_eq!(
            drive(&mut sb, &[&input[..a], &input[a..b], &input[b..]], true),
            whole,
            "splits {a},{b}"
        );
    }
}
