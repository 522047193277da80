//! Which tenants one process serves when the tenants of one configuration file are
//! spread over N processes (`relay-host run --config FILE --shard K/N`).
//!
//! Rendezvous (highest-random-weight) hashing of the tenant id: for each shard
//! `k` in `0..N` the score is the first 8 bytes, read big-endian, of
//! SHA-256 over the UTF-8 bytes of `"<tenant id>\n<k>"` (`k` in decimal ASCII, no
//! leading zeros); the tenant belongs to the shard with the highest score, the
//! lowest `k` on a tie. The hash depends on nothing but those bytes (no seed, no
//! platform word size or byte order), so every process, on every machine and in
//! every release, puts a tenant on the same shard. Going from N to N+1 shards moves
//! only the tenants whose new shard is N: every other tenant keeps its highest
//! score. docs/DEPLOY.md describes a re-shard.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The largest shard count accepted. Finding a tenant's shard costs one SHA-256
/// per shard, so the bound keeps a typo (`0/1000000`) from stalling the start.
pub const MAX_SHARDS: u32 = 1024;

/// One shard of N: `index` is 0-based (a Kubernetes StatefulSet pod ordinal), and
/// `index < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a `K/N` shard is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not two decimal numbers separated by `/`.
    #[error("expected K/N, two decimal numbers such as 0/3 (K is 0-based, 0 <= K < N)")]
    Syntax,
    /// N is zero.
    #[error("the shard count N must be at least 1")]
    NoShards,
    /// N is above [`MAX_SHARDS`].
    #[error("the shard count N must be at most {MAX_SHARDS}")]
    TooManyShards,
    /// K is not below N.
    #[error(
        "the shard index {index} is not below the shard count {count} (K is 0-based: 0 <= K < N)"
    )]
    IndexOutOfRange {
        /// The K given.
        index: u32,
        /// The N given.
        count: u32,
    },
}

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if count > MAX_SHARDS {
            return Err(ShardError::TooManyShards);
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// K: this shard's 0-based index.
    pub fn index(self) -> u32 {
        self.index
    }

    /// N: how many shards there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this shard serves `tenant_id`.
    pub fn owns(self, tenant_id: &str) -> bool {
        shard_of(tenant_id, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// `K/N`, e.g. `0/3`: decimal digits only (no sign, no spaces).
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let (k, n) = s.split_once('/').ok_or(ShardError::Syntax)?;
        let number = |t: &str| -> Result<u32, ShardError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ShardError::Syntax);
            }
            // All digits: only an overflow can fail, and such an N is too many.
            t.parse().map_err(|_| ShardError::TooManyShards)
        };
        let (index, count) = (number(k)?, number(n)?);
        Shard::new(index, count)
    }
}

/// The score of `tenant_id` on shard `k`: the first 8 bytes, big-endian, of
/// SHA-256(`"<tenant id>\n<k>"`).
pub fn score(tenant_id: &str, k: u32) -> u64 {
    let digest = Sha256::new()
        .chain_update(tenant_id.as_bytes())
        .chain_update(b"\n")
        .chain_update(k.to_string().as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The shard in `0..count` that serves `tenant_id`: the highest [`score`], the
/// lowest `k` on a tie. `count` 0 is treated as 1.
pub fn shard_of(tenant_id: &str, count: u32) -> u32 {
    let mut best = (0, score(tenant_id, 0));
    for k in 1..count {
        let s = score(tenant_id, k);
        // Strictly greater: on a tie the lower k, found first, stays.
        if s > best.1 {
            best = (k, s);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("tenant-{i:04}")).collect()
    }

    /// These assignments must never change: a change would move tenants between
    /// the processes of every deployment that upgrades.
    #[test]
    fn stable_assignments() {
        // Computed independently (Python's hashlib) from the rule in the module
        // docs. Never edit this table: a change would move tenants between the
        // processes of every deployment that upgrades.
        assert_eq!(score("acme", 0), 0x7e0c_0833_f14a_dd3d);
        assert_eq!(score("acme", 2), 0xe492_d363_cf46_cfb3);
        let table: [(&str, [u32; 6]); 12] = [
            // id, then its shard of N = 1, 2, 3, 4, 5, 10
            ("acme", [0, 0, 2, 2, 2, 9]),
            ("beta", [0, 1, 2, 3, 3, 3]),
            ("globex", [0, 1, 1, 1, 1, 9]),
            ("initech", [0, 0, 2, 2, 4, 9]),
            ("default", [0, 0, 0, 0, 0, 0]),
            ("tenant-0000", [0, 0, 2, 2, 4, 4]),
            ("tenant-0001", [0, 0, 0, 0, 0, 0]),
            ("tenant-0042", [0, 1, 1, 1, 1, 1]),
            ("t00", [0, 1, 1, 1, 4, 4]),
            ("t29", [0, 0, 0, 0, 0, 0]),
            ("\u{fc}n\u{ef}code", [0, 1, 1, 1, 1, 1]),
            ("gw:with:colons", [0, 1, 1, 1, 1, 1]),
        ];
        for (id, shards) in table {
            for (n, want) in [1, 2, 3, 4, 5, 10].into_iter().zip(shards) {
                assert_eq!(shard_of(id, n), want, "{id:?} of {n} shards");
            }
        }
        // tests/shard.rs runs t00..t29 on three processes.
        let t: Vec<u32> = (0..30).map(|i| shard_of(&format!("t{i:02}"), 3)).collect();
        assert_eq!(
            t,
            [
                1, 2, 2, 2, 0, 0, 0, 2, 0, 1, 0, 2, 2, 2, 2, 0, 2, 1, 1, 2, 2, 2, 1, 2, 2, 1, 0, 2,
                1, 0
            ]
        );
    }

    #[test]
    fn every_tenant_to_exactly_one_shard() {
        for count in [1, 2, 3, 5, 8] {
            for id in ids(200) {
                let owners: Vec<u32> = (0..count)
                    .filter(|&k| Shard::new(k, count).unwrap().owns(&id))
                    .collect();
                assert_eq!(owners.len(), 1, "{id} over {count} shards: {owners:?}");
                assert_eq!(owners[0], shard_of(&id, count));
            }
        }
    }

    #[test]
    fn roughly_even_over_a_thousand_ids() {
        for count in [2u32, 3, 4, 7, 10] {
            let mut per = vec![0usize; count as usize];
            for id in ids(1000) {
                per[shard_of(&id, count) as usize] += 1;
            }
            let even = 1000.0 / f64::from(count);
            for (k, &n) in per.iter().enumerate() {
                // Binomial spread: within about 4 standard deviations of even.
                let sd = (even * (1.0 - 1.0 / f64::from(count))).sqrt();
                assert!(
                    (n as f64 - even).abs() <= 4.0 * sd,
                    "shard {k}/{count} got {n} of 1000 (even: {even:.0}): {per:?}"
                );
            }
        }
    }

    #[test]
    fn one_more_shard_moves_only_tenants_to_the_new_shard() {
        for count in 1..=9u32 {
            let mut moved = 0;
            for id in ids(1000) {
                let (before, after) = (shard_of(&id, count), shard_of(&id, count + 1));
                if before != after {
                    assert_eq!(
                        after,
                        count,
                        "{id}: {before}/{count} -> {after}/{}",
                        count + 1
                    );
                    moved += 1;
                }
            }
            // About 1000 / (count + 1) move, never everything.
            let expected = 1000.0 / f64::from(count + 1);
            assert!(
                (f64::from(moved) - expected).abs() <= 4.0 * expected.sqrt() + 5.0,
                "{moved} of 1000 moved from {count} to {} shards",
                count + 1
            );
        }
    }

    #[test]
    fn one_shard_takes_everything() {
        for id in ids(50) {
            assert_eq!(shard_of(&id, 1), 0);
            assert!(Shard::new(0, 1).unwrap().owns(&id));
        }
    }

    #[test]
    fn parses_k_of_n() {
        assert_eq!("0/3".parse(), Shard::new(0, 3));
        assert_eq!(
            "2/3".parse::<Shard>().map(|s| (s.index(), s.count())),
            Ok((2, 3))
        );
        assert_eq!("0/1".parse::<Shard>().unwrap().to_string(), "0/1");
        assert_eq!(
            "3/3".parse::<Shard>(),
            Err(ShardError::IndexOutOfRange { index: 3, count: 3 })
        );
        assert_eq!("0/0".parse::<Shard>(), Err(ShardError::NoShards));
        assert_eq!("0/1025".parse::<Shard>(), Err(ShardError::TooManyShards));
        assert_eq!(
            "0/99999999999999999999".parse::<Shard>(),
            Err(ShardError::TooManyShards)
        );
        for bad in [
            "a/b", "1", "", "/3", "1/", "-1/3", "+1/3", " 1/3", "1/3 ", "1/3/4", "1.0/3",
        ] {
            assert_eq!(bad.parse::<Shard>(), Err(ShardError::Syntax), "{bad:?}");
        }
        assert_eq!(
            ShardError::IndexOutOfRange { index: 3, count: 3 }.to_string(),
            "the shard index 3 is not below the shard count 3 (K is 0-based: 0 <= K < N)"
        );
    }
}
