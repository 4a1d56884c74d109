//! Tombstones for replication (issue #13, docs/REPLICATION.md section 3):
//! which keys were deleted, at which version, so that an older write
//! arriving late cannot bring a deleted key back.
//!
//! They live outside the slabs so that eviction never drops one. Bounded
//! twice: by age (`--tombstone-ttl`) and by memory. When the memory bound
//! drops a tombstone before its time, the node's *horizon* (how far back
//! it remembers every delete) shrinks to that tombstone's age; a peer
//! away longer than the horizon must rejoin with a full copy. Pure: time
//! is passed in; the server keeps 16 tables, by key, each behind its own
//! lock with a sixteenth of the memory bound.

use std::collections::{HashMap, VecDeque};

use crate::version::Version;

/// Bytes charged per tombstone besides twice its key (map and queue):
/// the version twice, a timestamp, the containers' own words and the two
/// key allocations' malloc headers and rounding. Measured: 200,000
/// tombstones of short keys grew a node's RSS by about 150 bytes each.
const OVERHEAD: usize = 128;

#[derive(Debug)]
pub struct Tombstones {
    map: HashMap<Box<[u8]>, Version>,
    /// In insertion order: (made at, key, version). An entry whose key has
    /// since been given a newer tombstone, or none, is skipped when it
    /// reaches the front.
    queue: VecDeque<(u64, Box<[u8]>, Version)>,
    bytes: usize,
    max_bytes: usize,
    ttl_ms: u64,
    /// The newest time a tombstone was dropped before its age was up.
    forgot_up_to_ms: u64,
    dropped_early: u64,
    /// The greatest version of a delete this node no longer remembers
    /// (dropped by age or memory, or learned from a peer's full copy):
    /// a write at or below it, of a key the node holds nothing for, may
    /// be one that was deleted here (the horizon rule, section 3).
    forgotten: Version,
}

impl Tombstones {
    pub fn new(ttl_ms: u64, max_bytes: usize) -> Tombstones {
        Tombstones {
            map: HashMap::new(),
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
            ttl_ms,
            forgot_up_to_ms: 0,
            dropped_early: 0,
            forgotten: Version(0),
        }
    }

    fn charge(key: &[u8]) -> usize {
        2 * key.len() + OVERHEAD
    }

    /// The tombstone over `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Version> {
        self.map.get(key).copied()
    }

    /// Every tombstone held, in no particular order (a full resync sends
    /// them all).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Version)> {
        self.map.iter().map(|(k, &v)| (&k[..], v))
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes charged, at most the bound after every call.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Tombstones dropped by the memory bound before their time.
    pub fn dropped_early(&self) -> u64 {
        self.dropped_early
    }

    /// The greatest version of a delete no longer remembered here, 0 if
    /// none was ever forgotten.
    pub fn forgotten(&self) -> Version {
        self.forgotten
    }

    /// Takes a peer's forgotten deletes as this node's own: after a full
    /// copy from that peer, what this node holds at or below `v` is what
    /// the peer held, and the peer cannot say what it deleted there.
    pub fn learn_forgotten(&mut self, v: Version) {
        self.forgotten = self.forgotten.max(v);
    }

    /// How far back, in ms, every delete is still remembered.
    pub fn horizon_ms(&self, now_ms: u64) -> u64 {
        self.ttl_ms.min(now_ms.saturating_sub(self.forgot_up_to_ms))
    }

    /// Records a delete of `key` at `version`; false (and nothing kept) if
    /// a tombstone as new or newer is already there.
    pub fn insert(&mut self, key: &[u8], version: Version, now_ms: u64) -> bool {
        if self.map.get(key).is_some_and(|&v| v >= version) {
            return false;
        }
        // A replaced tombstone's queue entry stays charged until it is
        // popped; the new one is charged here.
        self.map.insert(key.into(), version);
        self.queue.push_back((now_ms, key.into(), version));
        self.bytes += Self::charge(key);
        self.expire(now_ms);
        while self.bytes > self.max_bytes {
            let Some(at) = self.pop_front() else { break };
            self.forgot_up_to_ms = self.forgot_up_to_ms.max(at);
            self.dropped_early += 1;
        }
        true
    }

    /// Drops the tombstone over `key` if it is older than `version`: the
    /// key was written again, and the write's version now decides.
    pub fn supersede(&mut self, key: &[u8], version: Version) {
        if self.map.get(key).is_some_and(|&v| v < version) {
            // Its queue entry goes (and is uncharged) when it reaches the
            // front.
            self.map.remove(key);
        }
    }

    /// Drops tombstones older than the TTL.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some(&(at, _, _)) = self.queue.front() {
            if now_ms.saturating_sub(at) <= self.ttl_ms {
                break;
            }
            self.pop_front();
        }
    }

    /// Pops the oldest queue entry, removing its key's tombstone if the
    /// entry is still the current one; returns when it was made.
    fn pop_front(&mut self) -> Option<u64> {
        let (at, key, version) = self.queue.pop_front()?;
        self.bytes -= Self::charge(&key);
        // Only a tombstone still current is forgotten: a superseded one
        // lost to a newer write, which the item itself now carries.
        if self.map.get(&key) == Some(&version) {
            self.map.remove(&key);
            self.forgotten = self.forgotten.max(version);
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::NodeId;
    use proptest::prelude::*;

    fn v(ms: u64) -> Version {
        Version::pack(ms, 0, NodeId::new(1).unwrap())
    }

    #[test]
    fn newest_tombstone_wins_and_a_write_supersedes_it() {
        let mut t = Tombstones::new(1000, 1 << 20);
        assert!(t.insert(b"k", v(5), 0));
        assert!(!t.insert(b"k", v(4), 0));
        assert!(!t.insert(b"k", v(5), 0));
        assert!(t.insert(b"k", v(6), 0));
        assert_eq!(t.get(b"k"), Some(v(6)));
        t.supersede(b"k", v(6));
        assert_eq!(t.get(b"k"), Some(v(6)));
        t.supersede(b"k", v(7));
        assert_eq!(t.get(b"k"), None);
    }

    #[test]
    fn tombstones_expire_after_the_ttl_and_stale_queue_entries_do_not_remove_newer_ones() {
        let mut t = Tombstones::new(100, 1 << 20);
        t.insert(b"a", v(1), 0);
        t.insert(b"b", v(2), 50);
        t.insert(b"a", v(3), 60);
        t.expire(120);
        // a's first entry (made at 0) went; a's newer tombstone stays.
        assert_eq!(t.get(b"a"), Some(v(3)));
        assert_eq!(t.get(b"b"), Some(v(2)));
        t.expire(151);
        assert_eq!(t.get(b"b"), None);
        t.expire(161);
        assert!(t.is_empty());
        assert_eq!(t.bytes(), 0);
        assert_eq!(t.horizon_ms(161), 100);
        // Both current tombstones went by age; a's first was replaced.
        assert_eq!(t.forgotten(), v(3));
    }

    #[test]
    fn a_superseded_tombstone_is_not_forgotten_and_a_learned_horizon_only_rises() {
        let mut t = Tombstones::new(100, 1 << 20);
        t.insert(b"a", v(7), 0);
        t.supersede(b"a", v(8));
        t.insert(b"b", v(2), 0);
        t.expire(200);
        assert!(t.is_empty());
        assert_eq!(t.forgotten(), v(2));
        t.learn_forgotten(v(9));
        t.learn_forgotten(v(4));
        assert_eq!(t.forgotten(), v(9));
    }

    #[test]
    fn the_memory_bound_drops_the_oldest_and_shrinks_the_horizon() {
        let per = Tombstones::charge(b"k1");
        let mut t = Tombstones::new(10_000, 2 * per);
        t.insert(b"k1", v(1), 100);
        t.insert(b"k2", v(2), 200);
        assert_eq!(t.horizon_ms(300), 300);
        t.insert(b"k3", v(3), 300);
        assert_eq!(t.get(b"k1"), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.dropped_early(), 1);
        assert_eq!(t.forgotten(), v(1));
        // Deletes after 100 are all remembered: the horizon is 200 ms at
        // 300, and grows back as time passes, up to the TTL.
        assert_eq!(t.horizon_ms(300), 200);
        assert_eq!(t.horizon_ms(20_000), 10_000);
    }

    proptest! {
        #[test]
        fn bounded_and_consistent(
            ops in prop::collection::vec((0u8..6, 0u64..20, 0u64..5, any::<bool>()), 0..80),
            max in 0usize..600,
        ) {
            let mut t = Tombstones::new(30, max);
            let mut now = 0;
            let (mut forgotten, mut inserted) = (Version(0), Version(0));
            for (k, ver, dt, sup) in ops {
                now += dt;
                let key = [b'k', k];
                if sup {
                    t.supersede(&key, v(ver));
                } else {
                    t.insert(&key, v(ver), now);
                    inserted = inserted.max(v(ver));
                }
                prop_assert!(t.bytes() <= max);
                prop_assert!(t.len() <= t.queue.len());
                let charged: usize = t.queue.iter().map(|(_, k, _)| Tombstones::charge(k)).sum();
                prop_assert_eq!(charged, t.bytes());
                prop_assert!(t.horizon_ms(now) <= 30);
                // The horizon only rises, and only to a delete recorded.
                prop_assert!(t.forgotten() >= forgotten);
                prop_assert!(t.forgotten() <= inserted);
                forgotten = t.forgotten();
            }
        }
    }
}
