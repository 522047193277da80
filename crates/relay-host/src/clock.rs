//! The monotonic clock every guest call is given (`now-ms`). The component keeps
//! its own timers (contract 0.2): the host only asks `poll-timeout` when to wake.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Monotonic milliseconds since a fixed origin: the `now-ms` of every guest call.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// The process's clock: it started at 0 when the first one was made, so
    /// every clock of the process (and every instance's `unix-offset-ms`) agrees.
    pub fn new() -> Self {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        Clock {
            origin: *ORIGIN.get_or_init(Instant::now),
        }
    }

    /// Milliseconds since the origin.
    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Unix time in ms minus `now_ms()`: the component mints upgrade tokens
    /// (wall-clock expiry) from `now-ms` and this offset.
    pub fn unix_offset_ms(&self) -> i64 {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        unix_ms - self.now_ms() as i64
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
