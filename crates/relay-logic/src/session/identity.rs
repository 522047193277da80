//! Message identity (PORT-DECISIONS D16, vectors rule 4): the (platform, chat id,
//! message id) of messages already delivered, so a message delivered live and
//! replayed later from the connector's buffer under a new buffer id reaches the
//! application once (upstream it reached users two to five times).

use std::hash::Hasher as _;

use super::lru::BoundedMap;
use super::rng::SplitMix64;
use crate::event::MessageEvent;

/// The key of one delivered message: two keyed SipHash-2-4 values over its three
/// length-prefixed parts. A fixed-size key keeps the ordered map's comparisons in
/// its nodes (with the three strings themselves every comparison chased heap
/// pointers: remembering a message cost 2.3 µs natively). SipHash, not SHA-256:
/// wasm has no SHA instructions, and SHA-256 made each frame through the component
/// about 2 µs slower. The keys derive from the config's seed, which a connector
/// does not know, so it cannot craft two messages that share a key.
pub(crate) type MessageKey = u128;

/// Bounded LRU memory of delivered message identities, across reconnects.
#[derive(Debug)]
pub(crate) struct DeliveredMessages {
    keys: BoundedMap<MessageKey, ()>,
    sip: [(u64, u64); 2],
}

impl DeliveredMessages {
    pub(crate) fn new(cap: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0xD16D_16D1_6D16_D16D);
        let mut pair = || (rng.next_u64(), rng.next_u64());
        DeliveredMessages {
            keys: BoundedMap::new(cap),
            sip: [pair(), pair()],
        }
    }

    /// The identity of an event, when it has one: platform, chat id and message
    /// id all non-empty (no message id → none).
    pub(crate) fn key_of(&self, event: &MessageEvent) -> Option<MessageKey> {
        let message_id = event.message_id.as_deref().filter(|m| !m.is_empty())?;
        let s = &event.source;
        if s.platform.is_empty() || s.chat_id.is_empty() {
            return None;
        }
        let parts = [s.platform.as_str(), s.chat_id.as_str(), message_id];
        let [a, b] = self.sip.map(|(k0, k1)| {
            // The one keyed hash std offers; SipHash-2-4, a fixed algorithm.
            #[allow(deprecated)]
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            for part in parts {
                h.write(&(part.len() as u64).to_le_bytes());
                h.write(part.as_bytes());
            }
            h.finish()
        });
        Some(u128::from(a) << 64 | u128::from(b))
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when a message with this identity was delivered before.
    pub(crate) fn seen(&mut self, key: &MessageKey) -> bool {
        let seen = self.keys.get(key).is_some();
        if seen {
            self.keys.touch(key);
        }
        seen
    }

    pub(crate) fn remember(&mut self, key: MessageKey) {
        self.keys.insert(key, ());
    }

    /// A `nack` released the delivery: its next arrival is delivered again.
    pub(crate) fn forget(&mut self, key: &MessageKey) {
        self.keys.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(p: &str, c: &str, m: Option<&str>) -> MessageEvent {
        let mut v = serde_json::json!({"text": "x", "source": {"platform": p, "chat_id": c}});
        if let Some(m) = m {
            v["message_id"] = m.into();
        }
        crate::event::event_from_wire(&v).unwrap()
    }

    fn key(m: &str) -> MessageKey {
        DeliveredMessages::new(1, 7)
            .key_of(&event("discord", "c1", Some(m)))
            .unwrap()
    }

    #[test]
    fn keys_need_all_three_parts_and_tell_them_apart() {
        let d = DeliveredMessages::new(1, 7);
        let k = |p: &str, c: &str, m: Option<&str>| d.key_of(&event(p, c, m));
        assert_eq!(k("discord", "c1", None), None);
        assert_eq!(k("discord", "", Some("m")), None);
        assert_eq!(k("discord", "c1", Some("")), None);
        let a = k("discord", "c1", Some("m1")).unwrap();
        assert_eq!(k("discord", "c1", Some("m1")), Some(a));
        assert_ne!(k("discord", "c1", Some("m2")), Some(a));
        assert_ne!(k("slack", "c1", Some("m1")), Some(a));
        // Length prefixes: moving a character between parts is another message.
        assert_ne!(
            k("discord", "c1m", Some("1")),
            k("discord", "c1", Some("m1"))
        );
    }

    #[test]
    fn remembers_forgets_and_is_bounded() {
        let mut d = DeliveredMessages::new(2, 7);
        assert!(!d.seen(&key("a")));
        d.remember(key("a"));
        d.remember(key("b"));
        assert!(d.seen(&key("a")));
        d.remember(key("c")); // evicts b, the least recently seen
        assert!(!d.seen(&key("b")));
        assert!(d.seen(&key("a")));
        d.forget(&key("a"));
        assert!(!d.seen(&key("a")));
        assert_eq!(d.len(), 1);
    }
}
