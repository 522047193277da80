//! Buffer-id memory (D10, vectors rule 4): which buffered deliveries were handed to
//! the application and which it acknowledged, for the life of the connection
//! resource (across reconnects), within a fixed number of ids. A delivery in
//! flight (delivered, not acknowledged) can be released with `nack` (D10 revised).

use super::identity::MessageKey;
use super::lru::BoundedMap;

/// What the component remembers about one buffer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BufferState {
    /// Delivered as a `message`; the application has not acknowledged it yet.
    /// Keeps the message's identity (D16), which a `nack` releases too.
    Delivered(Option<MessageKey>),
    /// Acknowledged (by the application, or at once because it never became a message).
    Acked,
}

/// Bounded LRU memory of buffer ids. When full, the least recently seen id is
/// forgotten: a redelivery of it would then be handled as new (the memory bound
/// wins over exactly-once for ids older than the last `cap` distinct ones).
#[derive(Debug)]
pub(crate) struct BufferLedger {
    ids: BoundedMap<String, BufferState>,
}

impl BufferLedger {
    pub(crate) fn new(cap: usize) -> Self {
        BufferLedger {
            ids: BoundedMap::new(cap),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The remembered state of `id` (refreshes its place in the LRU order).
    pub(crate) fn seen(&mut self, id: &str) -> Option<BufferState> {
        let key = id.to_string();
        let state = self.ids.get(&key).cloned();
        if state.is_some() {
            self.ids.touch(&key);
        }
        state
    }

    pub(crate) fn mark_delivered(&mut self, id: &str, message: Option<MessageKey>) {
        self.ids
            .insert(id.to_string(), BufferState::Delivered(message));
    }

    /// `nack`: forgets an in-flight id so its next arrival is delivered again.
    /// `Some(identity)` when it was in flight; `None` when unknown or acknowledged.
    pub(crate) fn release(&mut self, id: &str) -> Option<Option<MessageKey>> {
        let key = id.to_string();
        match self.ids.get(&key) {
            Some(BufferState::Delivered(_)) => match self.ids.remove(&key) {
                Some(BufferState::Delivered(message)) => Some(message),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn mark_acked(&mut self, id: &str) {
        self.ids.insert(id.to_string(), BufferState::Acked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_cap() {
        let mut l = BufferLedger::new(2);
        assert_eq!(l.seen("a"), None);
        l.mark_delivered("a", None);
        assert_eq!(l.seen("a"), Some(BufferState::Delivered(None)));
        l.mark_acked("a");
        l.mark_acked("b");
        assert_eq!(l.seen("a"), Some(BufferState::Acked));
        l.mark_acked("c"); // evicts b, the least recently seen
        assert_eq!(l.len(), 2);
        assert_eq!(l.seen("b"), None);
        assert_eq!(l.seen("a"), Some(BufferState::Acked));
    }

    #[test]
    fn release_only_in_flight() {
        let mut l = BufferLedger::new(4);
        let k: MessageKey = 42;
        l.mark_delivered("a", Some(k));
        l.mark_acked("b");
        assert_eq!(l.release("b"), None);
        assert_eq!(l.release("zz"), None);
        assert_eq!(l.release("a"), Some(Some(k)));
        assert_eq!(l.seen("a"), None);
        assert_eq!(l.seen("b"), Some(BufferState::Acked));
    }
}
