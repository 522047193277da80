//! A map with a hard size cap that forgets its least recently touched entry.
//!
//! Every piece of memory the connection keeps across frames (buffer ids, egress
//! records, prompts) sits in one of these, so a hostile or buggy connector can
//! never grow the component's memory without bound.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A bounded LRU map. `insert` and `touch` make an entry the most recent;
/// `get` does not. O(log n) per operation. Entries sit in a hash map (an ordered
/// map of string keys made every frame through the component about 25 % slower:
/// string comparisons and node allocations in wasm); its order never reaches an
/// output, because eviction follows `order`. Its hash keys come from the
/// instance's random seed, so a connector cannot choose colliding keys.
#[derive(Debug, Clone)]
pub(crate) struct BoundedMap<K, V> {
    cap: usize,
    clock: u64,
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Eq + Hash + Clone, V> BoundedMap<K, V> {
    /// A map holding at most `cap` entries (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        BoundedMap {
            cap: cap.max(1),
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.entries.get(k).map(|(v, _)| v)
    }

    /// Makes `k` the most recent entry, if present.
    pub(crate) fn touch(&mut self, k: &K) {
        self.clock += 1;
        let clock = self.clock;
        if let Some((_, stamp)) = self.entries.get_mut(k) {
            self.order.remove(stamp);
            *stamp = clock;
            self.order.insert(clock, k.clone());
        }
    }

    /// Inserts or replaces `k` as the most recent entry; returns the entry evicted
    /// to stay within the cap, if any.
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<(K, V)> {
        self.clock += 1;
        let clock = self.clock;
        if let Some((old_v, stamp)) = self.entries.get_mut(&k) {
            *old_v = v;
            self.order.remove(stamp);
            *stamp = clock;
            self.order.insert(clock, k);
            return None;
        }
        let evicted = if self.entries.len() >= self.cap {
            self.pop_oldest()
        } else {
            None
        };
        self.order.insert(clock, k.clone());
        self.entries.insert(k, (v, clock));
        evicted
    }

    /// Updates the entry for `k` in place with `f` and makes it the most recent,
    /// like `insert`: an absent `k` starts from `V::default()` (evicting the least
    /// recently touched entry when full). Unlike a `get`, clone and `insert`, the
    /// value is never copied and the key is cloned only for a new entry.
    pub(crate) fn update(&mut self, k: &K, f: impl FnOnce(&mut V))
    where
        V: Default,
    {
        self.clock += 1;
        let clock = self.clock;
        match self.entries.get_mut(k) {
            Some((v, stamp)) => {
                if let Some(key) = self.order.remove(stamp) {
                    self.order.insert(clock, key);
                }
                *stamp = clock;
                f(v);
            }
            None => {
                if self.entries.len() >= self.cap {
                    self.pop_oldest();
                }
                let mut v = V::default();
                f(&mut v);
                self.order.insert(clock, k.clone());
                self.entries.insert(k.clone(), (v, clock));
            }
        }
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let (v, stamp) = self.entries.remove(k)?;
        self.order.remove(&stamp);
        Some(v)
    }

    /// Removes and returns the least recently touched entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, k) = self.order.pop_first()?;
        let (v, _) = self.entries.remove(&k)?;
        Some((k, v))
    }

    /// Keeps only the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|k, (v, stamp)| {
            let kept = keep(k, v);
            if !kept {
                order.remove(stamp);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_touched() {
        let mut m = BoundedMap::new(2);
        assert!(m.insert("a", 1).is_none());
        assert!(m.insert("b", 2).is_none());
        m.touch(&"a");
        assert_eq!(m.insert("c", 3), Some(("b", 2)));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&"a"), Some(&1));
        assert!(m.insert("a", 9).is_none(), "replacing never evicts");
        assert_eq!(m.pop_oldest(), Some(("c", 3)));
        m.retain(|_, v| *v != 9);
        assert_eq!(m.len(), 0);
        assert!(m.pop_oldest().is_none());
    }

    #[test]
    fn update_touches_like_insert() {
        let mut m = BoundedMap::new(2);
        m.update(&"a", |v| *v += 1);
        m.update(&"b", |v| *v += 2);
        m.update(&"a", |v| *v += 10);
        m.update(&"c", |v| *v += 3);
        assert_eq!(m.get(&"b"), None, "b was the least recent");
        assert_eq!((m.get(&"a"), m.get(&"c")), (Some(&11), Some(&3)));
        assert_eq!(m.pop_oldest(), Some(("a", 11)));
        assert_eq!(m.len(), 1);
    }
}
