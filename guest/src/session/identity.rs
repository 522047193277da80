//! Message identity (PORT-DECISIONS D16, vectors rule 4): the (platform, chat id,
//! message id) of messages already delivered, so a message delivered live and
//! replayed later from the connector's buffer under a new buffer id reaches the
//! application once (upstream it reached users two to five times).

use super::lru::BoundedMap;
use crate::event::MessageEvent;

/// The key of one delivered message: all three parts non-empty.
pub(crate) type MessageKey = (String, String, String);

/// The identity of an event, when it has one (no message id → none).
pub(crate) fn key_of(event: &MessageEvent) -> Option<MessageKey> {
    let message_id = event.message_id.as_deref().filter(|m| !m.is_empty())?;
    let s = &event.source;
    if s.platform.is_empty() || s.chat_id.is_empty() {
        return None;
    }
    Some((
        s.platform.clone(),
        s.chat_id.clone(),
        message_id.to_string(),
    ))
}

/// Bounded LRU memory of delivered message identities, across reconnects.
#[derive(Debug)]
pub(crate) struct DeliveredMessages {
    keys: BoundedMap<MessageKey, ()>,
}

impl DeliveredMessages {
    pub(crate) fn new(cap: usize) -> Self {
        DeliveredMessages {
            keys: BoundedMap::new(cap),
        }
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

    fn key(m: &str) -> MessageKey {
        ("discord".into(), "c1".into(), m.into())
    }

    #[test]
    fn remembers_forgets_and_is_bounded() {
        let mut d = DeliveredMessages::new(2);
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
