//! Reconnect delays (PORT-DECISIONS D11 as revised, vectors rule 10): `base`
//! doubling to `max` per failure since the last *stable* connection, and with
//! jitter on a seeded draw from `[d − d·p/100, d]` (D11's `[d/2, d]` is p = 50).
//! The ladder restarts only when a stable connection ends, never at a bare
//! handshake: a connector that answers the hello and drops keeps climbing.

use super::rng::SplitMix64;

/// The first delay unless the config says otherwise (PROTOCOL defaults).
pub const BASE_DELAY_MS: u64 = 1000;
/// The largest delay before jitter unless the config says otherwise.
pub const MAX_DELAY_MS: u64 = 30_000;
/// How long a connection must have lasted past its handshake to restart the ladder.
pub const STABLE_CONNECTION_MS: u64 = 60_000;
/// D11's jitter: the delay is drawn from `[d/2, d]`.
pub const DEFAULT_JITTER_PERCENT: u8 = 50;

/// Failure counter and jitter source.
#[derive(Debug)]
pub(crate) struct Backoff {
    failures: u32,
    base_ms: u64,
    max_ms: u64,
    jitter_percent: u8,
    rng: SplitMix64,
}

impl Backoff {
    pub(crate) fn new(seed: u64, jitter_percent: u8, base_ms: u64, max_ms: u64) -> Self {
        Backoff {
            failures: 0,
            base_ms,
            max_ms,
            jitter_percent,
            rng: SplitMix64::new(seed),
        }
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts one more failure and returns the delay before the next dial:
    /// `min(base × 2^(n−1), max)`, less a seeded `0..=p` % of it with jitter on.
    pub(crate) fn next_delay(&mut self) -> u64 {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(63);
        let d = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms);
        if self.jitter_percent == 0 {
            return d;
        }
        let span = (u128::from(d) * u128::from(self.jitter_percent) / 100) as u64;
        d - self.rng.up_to(span)
    }

    /// A stable connection ended: the next failure starts from the base again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_resets() {
        let mut b = Backoff::new(0, 0, BASE_DELAY_MS, MAX_DELAY_MS);
        let d: Vec<u64> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(d, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(), 1000);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), 30000);
    }

    #[test]
    fn configurable_base_and_cap() {
        let mut b = Backoff::new(0, 0, 50, 300);
        let d: Vec<u64> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(d, [50, 100, 200, 300, 300, 300]);
    }

    #[test]
    fn jitter_is_bounded_to_the_upper_half_and_seeded() {
        let mut a = Backoff::new(5, DEFAULT_JITTER_PERCENT, BASE_DELAY_MS, MAX_DELAY_MS);
        let mut b = Backoff::new(5, DEFAULT_JITTER_PERCENT, BASE_DELAY_MS, MAX_DELAY_MS);
        let mut below_full = false;
        for _ in 0..50 {
            let (x, y) = (a.next_delay(), b.next_delay());
            assert_eq!(x, y);
            let d = (BASE_DELAY_MS << (a.failures() - 1).min(16)).min(MAX_DELAY_MS);
            assert!((d / 2..=d).contains(&x), "{x} vs {d}");
            below_full |= x < d;
        }
        assert!(below_full, "jitter never drew below the full delay");
    }
}
