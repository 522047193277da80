//! The seeded generator behind request ids and backoff jitter (determinism
//! contract: the same `Config::seed` and the same calls give the same effects).
//!
//! SplitMix64 needs no crate and no OS entropy, so the component stays free of
//! imports. Its output is a bijection of an internal counter that advances by an
//! odd constant, so one stream yields 2^64 pairwise distinct values before it
//! repeats: two request ids drawn from the same stream can never be equal.

/// SplitMix64 (Steele, Lea, Flood 2014), as used to seed xoshiro.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..=max` (modulo bias is irrelevant for jitter).
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }

    /// 32 lowercase hex characters, the shape of the reference's `uuid4().hex`.
    /// The first half is one fresh draw, so ids from one stream never collide.
    pub(crate) fn request_id(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        format!("{hi:016x}{lo:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ids_and_shape() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let id = a.request_id();
        assert_eq!(id, b.request_id());
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(id, a.request_id());
        assert_ne!(
            SplitMix64::new(8).request_id(),
            SplitMix64::new(7).request_id()
        );
    }

    #[test]
    fn up_to_stays_in_range() {
        let mut r = SplitMix64::new(1);
        assert!((0..1000).all(|_| r.up_to(20) <= 20));
        assert_eq!(r.up_to(0), 0);
        let _ = r.up_to(u64::MAX);
    }
}
