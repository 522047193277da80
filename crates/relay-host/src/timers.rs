//! The timers a component asked for (`set-timer` / `cancel-timer`), and the
//! monotonic clock their deadlines are measured on.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Monotonic milliseconds since a fixed origin: the `now-ms` of every guest call.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting at 0 now.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Milliseconds since the origin.
    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// The instant of a monotonic millisecond value (for `sleep_until`).
    pub fn instant(&self, at_ms: u64) -> Instant {
        self.origin + Duration::from_millis(at_ms)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The most timers one guest may have armed. The relay component needs one per
/// pending request (at most 4096) plus two deadlines; a guest arming more is
/// treated as failing, so no guest can grow the host's memory with timers.
pub const MAX_TIMERS: usize = 8192;

/// A guest asked for more than [`MAX_TIMERS`] timers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the guest armed more than {MAX_TIMERS} timers")]
pub struct TooManyTimers;

/// Armed timers, fired in due order; ties fire in the order they were set.
/// Setting an id again re-arms it.
#[derive(Debug, Default)]
pub struct Timers {
    seq: u64,
    by_due: BTreeMap<(u64, u64), u64>,
    by_id: HashMap<u64, (u64, u64)>,
}

impl Timers {
    /// Arms (or re-arms) timer `id` for monotonic `at_ms`; refuses a new one
    /// beyond [`MAX_TIMERS`].
    pub fn set(&mut self, id: u64, at_ms: u64) -> Result<(), TooManyTimers> {
        self.cancel(id);
        if self.by_id.len() >= MAX_TIMERS {
            return Err(TooManyTimers);
        }
        self.seq += 1;
        self.by_due.insert((at_ms, self.seq), id);
        self.by_id.insert(id, (at_ms, self.seq));
        Ok(())
    }

    /// Forgets timer `id` (unknown ids are ignored).
    pub fn cancel(&mut self, id: u64) {
        if let Some(key) = self.by_id.remove(&id) {
            self.by_due.remove(&key);
        }
    }

    /// When the earliest timer is due.
    pub fn next_due(&self) -> Option<u64> {
        self.by_due.keys().next().map(|&(at, _)| at)
    }

    /// Removes and returns the earliest timer due at or before `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<u64> {
        let (&key, &id) = self.by_due.iter().next()?;
        if key.0 > now_ms {
            return None;
        }
        self.by_due.remove(&key);
        self.by_id.remove(&id);
        Some(id)
    }

    /// Forgets everything (the instance that set them is gone).
    pub fn clear(&mut self) {
        self.by_due.clear();
        self.by_id.clear();
    }

    /// No timer is armed.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{Timers, TooManyTimers, MAX_TIMERS};

    #[test]
    fn capped_but_rearming_is_free() {
        let mut t = Timers::default();
        for id in 0..MAX_TIMERS as u64 {
            t.set(id, id).unwrap();
        }
        assert_eq!(t.set(u64::MAX, 1), Err(TooManyTimers));
        assert_eq!(
            t.set(7, 99),
            Ok(()),
            "re-arming an armed timer is not a new one"
        );
        t.cancel(0);
        assert_eq!(t.set(u64::MAX, 1), Ok(()));
    }

    #[test]
    fn due_order_ties_and_rearm() {
        let mut t = Timers::default();
        let mut set = |id, at| t.set(id, at).unwrap();
        set(1, 50);
        set(2, 10);
        set(3, 10);
        set(4, 70);
        set(1, 60); // re-armed
        t.cancel(4);
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(5), None);
        assert_eq!(t.pop_due(100), Some(2));
        assert_eq!(t.pop_due(100), Some(3));
        assert_eq!(t.pop_due(100), Some(1));
        assert_eq!(t.pop_due(100), None);
        assert!(t.is_empty());
    }
}
