//! The benchmark corpus: connector→gateway lines generated from a fixed seed, in a
//! fixed mix, so every run (and every implementation given the same file through
//! `--corpus`) measures the same bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

/// Deterministic generator (xorshift64*), so the corpus is identical across runs.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "relay",
    "gateway",
    "grüße",
    "naïve",
    "café",
    "日本語",
    "テスト",
    "👋",
    "🚀",
    "hello",
    "world",
    "message",
    "connector",
    "Ωmega",
    "ÆØÅ",
    "résumé",
    "данные",
    "数据",
    "λ",
    "agent",
    "turn",
    "stream",
    "∑",
    "emoji😀",
];

fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.range(0, WORDS.len() - 1)]);
    }
    s
}

fn inbound(rng: &mut Rng, i: usize) -> Value {
    let len = rng.range(200, 4000);
    json!({
        "type": "inbound",
        "event": {
            "text": text(rng, len),
            "message_type": "text",
            "message_id": format!("m{i}"),
            "source": {
                "platform": "discord", "chat_id": format!("c{}", rng.range(1, 50)), "chat_type": "group",
                "user_id": format!("u{}", rng.range(1, 500)), "user_name": "ben", "scope_id": "g1",
                "message_id": format!("m{i}")
            }
        }
    })
}

fn interaction(rng: &mut Rng, i: usize) -> Value {
    let len = rng.range(700, 2500);
    let filler = text(rng, len);
    if rng.range(0, 1) == 0 {
        json!({
            "type": 2, "id": format!("{}", 1_000_000_000_000u64 + i as u64), "application_id": "app",
            "channel_id": "c1", "guild_id": "g1", "channel": {"id": "c1", "type": 0},
            "member": {"nick": "Ben", "user": {"id": "u1", "username": "ben", "global_name": "Ben B"}},
            "data": {"name": "skill", "options": [{"type": 1, "name": "run", "options": [
                {"type": 3, "name": "what", "value": filler},
                {"type": 4, "name": "n", "value": rng.range(1, 99)},
                {"type": 5, "name": "dry", "value": true}
            ]}]}
        })
    } else {
        json!({
            "type": 3, "id": format!("{}", 2_000_000_000_000u64 + i as u64), "channel_id": "c2",
            "user": {"id": "u2", "username": "ana"},
            "message": {"id": "m9", "content": filler},
            "data": {"custom_id": "approve", "component_type": 2}
        })
    }
}

fn forward(rng: &mut Rng, i: usize) -> Value {
    let body = serde_json::to_vec(&interaction(rng, i)).unwrap_or_default();
    json!({
        "type": "passthrough_forward",
        "forward": {
            "platform": "discord", "botId": "app", "method": "POST", "path": "/interactions",
            "headers": [["content-type", "application/json"]], "bodyB64": STANDARD.encode(body)
        }
    })
}

/// `n` lines in the fixed mix: 50 % inbound, 20 % outbound_result, 20 % passthrough
/// forward, 10 % interrupt. Lines carry no trailing newline.
pub fn generate(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let frame = match i % 10 {
                0..=4 => inbound(&mut rng, i),
                5 | 6 => json!({"type": "outbound_result", "requestId": format!("{:032x}", rng.next_u64()),
                                "result": {"success": true, "message_id": format!("m{i}")}}),
                7 | 8 => forward(&mut rng, i),
                _ => json!({"type": "interrupt_inbound", "session_key": format!("agent:main:discord:group:c{i}"),
                            "chat_id": "c1"}),
            };
            frame.to_string()
        })
        .collect()
}

/// Reads an NDJSON corpus: one connector→gateway line per line, blanks skipped.
pub fn load(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// Events one link emits for the first and for the second round of a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    pub first: usize,
    pub second: usize,
}

impl Replay {
    /// Whether a round after the first is delivered like the first (no line
    /// meets a message identity the link still remembers, D16).
    pub fn delivers_all(&self) -> bool {
        self.second >= self.first
    }
}

/// Feeds `lines` twice to one native link (the relay logic the component is
/// built from) and counts the events each round emits: a benchmark that replays
/// the corpus on one link times the duplicate path when the second is smaller.
pub fn replay_check(lines: &[String]) -> anyhow::Result<Replay> {
    use relay_logic::session::{Connection, Effect};
    let mut link = Connection::new(crate::throughput::native_config())
        .map_err(|e| anyhow::anyhow!(e.message))?;
    link.open(0);
    link.receive_text(0, crate::throughput::DESCRIPTOR_LINE);
    let mut round = |now: u64| {
        lines
            .iter()
            .map(|l| {
                link.receive_text(now, &format!("{l}\n"))
                    .iter()
                    .filter(|e| matches!(e, Effect::Emit(_)))
                    .count()
            })
            .sum::<usize>()
    };
    let first = round(1);
    let second = round(2);
    Ok(Replay { first, second })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_corpus_is_delivered_again_in_a_second_round() {
        let r = replay_check(&generate(crate::CORPUS_SEED, crate::CORPUS_LINES)).unwrap();
        assert!(r.first > 0);
        assert!(r.delivers_all(), "{r:?}");
    }

    #[test]
    fn a_small_corpus_is_seen_to_replay_duplicates() {
        // 5,000 lines hold 3,500 message identities, fewer than the 4,096 a link
        // remembers: the second round's messages are all duplicates.
        let r = replay_check(&generate(crate::CORPUS_SEED, 5_000)).unwrap();
        assert!(!r.delivers_all(), "{r:?}");
    }
}
