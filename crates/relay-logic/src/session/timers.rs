//! Timers the host keeps for the component. Ids are never reused for the life of the
//! connection resource, so a timer that fires after its connection closed (or after
//! its request was answered) matches nothing and is ignored.

use std::collections::BTreeMap;

use super::Effect;

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// The handshake deadline of connection number `conn`.
    Handshake { conn: u64 },
    /// The result deadline of one outbound request.
    Outbound { request_id: String },
    /// The `going_idle_ack` deadline of connection number `conn`.
    GoingIdle { conn: u64 },
}

/// Armed timers. At most one per pending request plus two, so bounded by the
/// pending-request cap.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    last_id: u64,
    armed: BTreeMap<u64, TimerKind>,
}

impl Timers {
    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }

    /// Arms a timer due at `at_ms`; returns its id and the effect for the host.
    pub(crate) fn arm(&mut self, kind: TimerKind, at_ms: u64) -> (u64, Effect) {
        self.last_id += 1;
        let id = self.last_id;
        self.armed.insert(id, kind);
        (id, Effect::SetTimer { id, at_ms })
    }

    /// Forgets timer `id`; the effect tells the host to do the same.
    pub(crate) fn cancel(&mut self, id: u64) -> Option<Effect> {
        self.armed.remove(&id).map(|_| Effect::CancelTimer(id))
    }

    /// The timer fired: what it was for, if it is still armed.
    pub(crate) fn fire(&mut self, id: u64) -> Option<TimerKind> {
        self.armed.remove(&id)
    }
}
