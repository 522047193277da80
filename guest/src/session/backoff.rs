//! Reconnect delays (PORT-DECISIONS D11, vectors rule 10): 1 s doubling to 30 s per
//! consecutive failure, plus seeded jitter of 0..=`jitter_percent` %, reset when a
//! connection completes its handshake.

use super::rng::SplitMix64;

/// The first delay.
pub const BASE_DELAY_MS: u64 = 1000;
/// The largest delay before jitter.
pub const MAX_DELAY_MS: u64 = 30_000;

/// Consecutive-failure counter and jitter source.
#[derive(Debug)]
pub(crate) struct Backoff {
    failures: u32,
    jitter_percent: u8,
    rng: SplitMix64,
}

impl Backoff {
    pub(crate) fn new(seed: u64, jitter_percent: u8) -> Self {
        Backoff {
            failures: 0,
            jitter_percent,
            rng: SplitMix64::new(seed),
        }
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts one more failure and returns the delay before the next dial:
    /// `min(1000 × 2^(n−1), 30000)` plus `0..=jitter` % of it.
    pub(crate) fn next_delay(&mut self) -> u64 {
        self.failures = self.failures.saturating_add(1);
        let shift = (self.failures - 1).min(16);
        let base = (BASE_DELAY_MS << shift).min(MAX_DELAY_MS);
        if self.jitter_percent == 0 {
            return base;
        }
        let pct = self.rng.up_to(u64::from(self.jitter_percent));
        base + base * pct / 100
    }

    /// A handshake completed: the next failure starts from the base delay again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_resets() {
        let mut b = Backoff::new(0, 0);
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
    fn jitter_is_bounded_and_seeded() {
        let mut a = Backoff::new(5, 20);
        let mut b = Backoff::new(5, 20);
        for _ in 0..50 {
            let (x, y) = (a.next_delay(), b.next_delay());
            assert_eq!(x, y);
            let base = (BASE_DELAY_MS << (a.failures() - 1).min(16)).min(MAX_DELAY_MS);
            assert!((base..=base + base / 5).contains(&x), "{x} vs {base}");
        }
    }
}
