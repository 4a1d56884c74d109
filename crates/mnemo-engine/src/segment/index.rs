//! The segment engine's hash index: key hash -> object location, as a
//! bulk-chaining table (Segcache's): buckets of eight 8-byte slots, one
//! cache line each, a full bucket's last slot turned into a link to an
//! overflow bucket. A slot keeps 12 tag bits of the hash, so a lookup
//! compares keys only on a tag match (one in 4096 for a miss).
//!
//! The table is split into shards by the hash's low bits, each behind its
//! own mutex: as in the slab engine, a key's shard lock is what makes an
//! operation on that key atomic, and holding it keeps every object the
//! shard points to in place (the evictor and merger take the same lock
//! before they drop or move an object). A shard doubles on its own; the
//! rehash rereads keys through the caller, since the slots do not keep
//! enough hash bits.

use parking_lot::{Mutex, MutexGuard};

/// Where an object lives: segment and byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub seg: u32,
    pub off: u32,
}

const LINK: u64 = 1 << 63;
const USED: u64 = 1 << 62;
const TAG_SHIFT: u32 = 50;
const TAG_MASK: u64 = 0xfff;
const SEG_SHIFT: u32 = 30;
/// Segments are numbered in 20 bits.
pub(crate) const MAX_SEGS: usize = 1 << 20;
/// Offsets are 30 bits: segments up to 1 GB.
pub(crate) const MAX_SEG_SIZE: usize = 1 << 30;
const SLOTS: usize = 8;
const MIN_BUCKETS: usize = 8;

#[inline]
fn tag_of(h: u64) -> u64 {
    (h >> 52) & TAG_MASK
}

#[inline]
fn entry(h: u64, loc: Loc) -> u64 {
    USED | (tag_of(h) << TAG_SHIFT) | ((loc.seg as u64) << SEG_SHIFT) | loc.off as u64
}

#[inline]
fn loc_of(e: u64) -> Loc {
    Loc {
        seg: ((e >> SEG_SHIFT) & (MAX_SEGS as u64 - 1)) as u32,
        off: (e & (MAX_SEG_SIZE as u64 - 1)) as u32,
    }
}

/// A slot's position, valid while the shard stays locked and unchanged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pos(u32, u8);

pub(crate) struct Shard {
    buckets: Vec<[u64; SLOTS]>,
    primary: usize,
    count: usize,
}

impl Shard {
    fn new(primary: usize) -> Shard {
        Shard {
            buckets: Self::table(primary),
            primary,
            count: 0,
        }
    }

    /// `primary` empty buckets, with room for overflow buckets so that
    /// chaining one does not double the allocation.
    fn table(primary: usize) -> Vec<[u64; SLOTS]> {
        let mut v = Vec::with_capacity(primary + primary / 4);
        v.resize(primary, [0; SLOTS]);
        v
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        ((h >> 16) as usize) & (self.primary - 1)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Bytes of the shard's primary buckets (memcached's `hash_bytes`
    /// counts its bucket array the same way).
    pub fn primary_bytes(&self) -> usize {
        self.primary * SLOTS * 8
    }

    /// Bytes the shard's buckets take, overflow room included.
    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * SLOTS * 8
    }

    /// Finds the slot for hash `h` whose object `is_key` accepts.
    #[inline]
    pub fn find(&self, h: u64, mut is_key: impl FnMut(Loc) -> bool) -> Option<(Pos, Loc)> {
        let want = USED | (tag_of(h) << TAG_SHIFT);
        let mask = LINK | USED | (TAG_MASK << TAG_SHIFT);
        let mut b = self.home(h);
        loop {
            let bucket = &self.buckets[b];
            for (i, &e) in bucket.iter().enumerate() {
                if e & mask == want && is_key(loc_of(e)) {
                    return Some((Pos(b as u32, i as u8), loc_of(e)));
                }
            }
            let last = bucket[SLOTS - 1];
            if last & LINK == 0 {
                return None;
            }
            b = (last & !LINK) as usize;
        }
    }

    /// Finds the slot holding exactly `loc` (the evictor's lookup: it
    /// knows the location, so no key comparison is needed).
    pub fn find_loc(&self, h: u64, loc: Loc) -> Option<Pos> {
        self.find(h, |l| l == loc).map(|(p, _)| p)
    }

    /// Points slot `pos` at `loc` (same key, new object).
    #[inline]
    pub fn replace(&mut self, pos: Pos, h: u64, loc: Loc) {
        self.buckets[pos.0 as usize][pos.1 as usize] = entry(h, loc);
    }

    pub fn remove(&mut self, pos: Pos) {
        self.buckets[pos.0 as usize][pos.1 as usize] = 0;
        self.count -= 1;
    }

    /// Adds a key known to be absent. `hash_at` gives the hash of the key
    /// stored at a location, for a rehash.
    pub fn insert(&mut self, h: u64, loc: Loc, hash_at: impl Fn(Loc) -> u64) -> Pos {
        if self.count >= self.primary * (SLOTS - 1) {
            self.grow(&hash_at);
        }
        self.count += 1;
        self.put(h, entry(h, loc))
    }

    fn put(&mut self, h: u64, e: u64) -> Pos {
        let mut b = self.home(h);
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(i) = bucket.iter().position(|&s| s == 0) {
                bucket[i] = e;
                return Pos(b as u32, i as u8);
            }
            let last = bucket[SLOTS - 1];
            if last & LINK != 0 {
                b = (last & !LINK) as usize;
                continue;
            }
            // Chain a new bucket: the last slot's entry moves into it.
            let nb = self.buckets.len();
            let mut fresh = [0u64; SLOTS];
            fresh[0] = last;
            fresh[1] = e;
            if self.buckets.len() == self.buckets.capacity() {
                self.buckets.reserve_exact(self.primary / 4 + 1);
            }
            self.buckets.push(fresh);
            self.buckets[b][SLOTS - 1] = LINK | nb as u64;
            return Pos(nb as u32, 1);
        }
    }

    fn grow(&mut self, hash_at: &impl Fn(Loc) -> u64) {
        let old = std::mem::take(&mut self.buckets);
        self.primary *= 2;
        self.buckets = Self::table(self.primary);
        for bucket in &old {
            for &e in bucket {
                if e & USED != 0 && e & LINK == 0 {
                    let h = hash_at(loc_of(e));
                    self.put(h, e);
                }
            }
        }
    }

    /// Every location in the shard.
    pub fn locs(&self) -> impl Iterator<Item = Loc> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.iter())
            .filter(|&&e| e & USED != 0 && e & LINK == 0)
            .map(|&e| loc_of(e))
    }
}

pub(crate) struct Index {
    shards: Box<[Mutex<Shard>]>,
    mask: usize,
}

impl Index {
    pub fn new(shards: usize, hashpower: u32) -> Index {
        let shards = shards.max(1).next_power_of_two();
        let per = ((1usize << hashpower.min(30)) / SLOTS / shards)
            .max(MIN_BUCKETS)
            .next_power_of_two();
        Index {
            shards: (0..shards).map(|_| Mutex::new(Shard::new(per))).collect(),
            mask: shards - 1,
        }
    }

    #[inline]
    pub fn lock(&self, h: u64) -> MutexGuard<'_, Shard> {
        self.shards[h as usize & self.mask].lock()
    }

    pub fn nshards(&self) -> usize {
        self.shards.len()
    }

    pub fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i].lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn insert_find_remove_through_growth_and_chains() {
        let idx = Index::new(1, 0);
        let mut hashes: HashMap<Loc, u64> = HashMap::new();
        // Hashes with equal home bits force overflow chains too.
        let hash_of = |i: u64| {
            if i.is_multiple_of(3) {
                (i << 52) | 0x5
            } else {
                crate::assoc::hash(&i.to_le_bytes())
            }
        };
        for i in 0..5000u64 {
            let loc = Loc {
                seg: (i % 1000) as u32,
                off: i as u32,
            };
            let h = hash_of(i);
            hashes.insert(loc, h);
            let mut s = idx.lock(h);
            assert!(s.find_loc(h, loc).is_none());
            s.insert(h, loc, |l| hashes[&l]);
        }
        let mut s = idx.lock(0);
        assert_eq!(s.len(), 5000);
        assert_eq!(s.locs().count(), 5000);
        for (loc, &h) in &hashes {
            assert!(s.find_loc(h, *loc).is_some(), "{loc:?}");
        }
        for (loc, &h) in hashes.iter().filter(|(l, _)| l.off % 2 == 0) {
            let p = s.find_loc(h, *loc).unwrap();
            s.remove(p);
        }
        assert_eq!(s.len(), 2500);
        for (loc, &h) in &hashes {
            assert_eq!(s.find_loc(h, *loc).is_some(), loc.off % 2 == 1);
        }
    }
}
