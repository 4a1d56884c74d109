//! The hash index: key -> chunk id.
//!
//! Split into shards by the hash's low bits, each shard an open-addressing
//! table of 8-byte slots (32-bit tag from the hash's high bits, 32-bit
//! chunk id) behind its own mutex. A shard doubles on its own when it
//! passes 7/8 full, so growth never stops the other shards: the pause is
//! one shard's rehash, 1/`shards` of the index. Slots keep the tag the
//! bucket position is derived from, so rehashing never rereads keys.
//!
//! The shard mutex is also the per-key lock that makes a get, store,
//! arithmetic or cas on one key atomic.

use parking_lot::{Mutex, MutexGuard};

use crate::slabs::ChunkId;

const EMPTY: u64 = u64::MAX;
const MIN_SHARD_SLOTS: usize = 16;

/// 64-bit hash of a key: a multiply-fold per 8 bytes and a murmur3 finish.
/// Written here rather than pulled in because it sits on every request and
/// the index depends on its high and low bits being independent.
#[inline]
pub fn hash(key: &[u8]) -> u64 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    #[inline]
    fn fold(a: u64, b: u64) -> u64 {
        let m = (a as u128).wrapping_mul(b as u128);
        (m as u64) ^ ((m >> 64) as u64)
    }
    let mut h = K0 ^ (key.len() as u64).wrapping_mul(K1);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = fold(h ^ w, K1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = fold(h ^ u64::from_le_bytes(buf), K0);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

pub(crate) struct Shard {
    slots: Vec<u64>,
    count: usize,
}

#[inline]
fn tag_of(h: u64) -> u32 {
    (h >> 32) as u32
}

/// A slot holding `id` under `tag`.
#[inline]
fn slot(tag: u32, id: ChunkId) -> u64 {
    ((tag as u64) << 32) | id.to_word() as u64
}

/// The id an occupied slot holds.
#[inline]
fn slot_id(s: u64) -> ChunkId {
    // SAFETY: slots are written only by `slot`, from a ChunkId.
    unsafe { ChunkId::from_word(s as u32) }
}

impl Shard {
    fn new(n: usize) -> Shard {
        Shard {
            slots: vec![EMPTY; n],
            count: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Walks the probe run of hash `h` from its home bucket; the position
    /// of the first occupied slot `hit` accepts, or None at the run's end.
    #[inline]
    fn probe(&self, h: u64, mut hit: impl FnMut(u64) -> bool) -> Option<usize> {
        let mask = self.mask();
        let mut i = tag_of(h) as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if hit(s) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Finds the slot of `key`; `is_key(id)` compares the stored item's key.
    #[inline]
    pub fn find(&self, h: u64, mut is_key: impl FnMut(ChunkId) -> bool) -> Option<ChunkId> {
        // The lookup of every request: its own loop, returning the id it
        // already holds, rather than `probe` and a second indexed load.
        let tag = tag_of(h);
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == tag && is_key(slot_id(s)) {
                return Some(slot_id(s));
            }
            i = (i + 1) & mask;
        }
    }

    /// Inserts an id whose key is known to be absent.
    pub fn insert(&mut self, h: u64, id: ChunkId) {
        if (self.count + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        self.put(slot(tag_of(h), id));
        self.count += 1;
    }

    fn put(&mut self, s: u64) {
        let mask = self.mask();
        let mut i = (s >> 32) as usize & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = s;
    }

    /// Points the slot holding `old` at `new` (same key, replaced item).
    pub fn replace(&mut self, h: u64, old: ChunkId, new: ChunkId) -> bool {
        let Some(i) = self.probe(h, |s| slot_id(s) == old) else {
            return false;
        };
        self.slots[i] = slot(tag_of(h), new);
        true
    }

    /// Removes the slot holding `id`, shifting later probes back so no
    /// tombstones are left behind.
    pub fn remove(&mut self, h: u64, id: ChunkId) -> bool {
        let Some(i) = self.probe(h, |s| slot_id(s) == id) else {
            return false;
        };
        let mask = self.mask();
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = (s >> 32) as usize & mask;
            // Move s into the hole if its home is not cyclically in (hole, j].
            let in_range = if hole <= j {
                home > hole && home <= j
            } else {
                home > hole || home <= j
            };
            if !in_range {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.count -= 1;
        true
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for s in old {
            if s != EMPTY {
                self.put(s);
            }
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Every id in this shard (crawler's hash walk, consistency checks).
    pub fn ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.slots
            .iter()
            .filter(|&&s| s != EMPTY)
            .map(|&s| slot_id(s))
            .filter(|&id| id != ChunkId::NIL)
    }
}

pub(crate) struct Index {
    shards: Box<[crossbeam_pad::Padded<Mutex<Shard>>]>,
    shift_mask: u64,
}

impl Index {
    pub fn new(nshards: usize, hashpower: u32) -> Index {
        let total = 1usize << hashpower.clamp(4, 32);
        let per = (total / nshards).max(MIN_SHARD_SLOTS).next_power_of_two();
        Index {
            shards: (0..nshards)
                .map(|_| crossbeam_pad::Padded(Mutex::new(Shard::new(per))))
                .collect(),
            shift_mask: nshards as u64 - 1,
        }
    }

    #[inline]
    pub fn shard_of(&self, h: u64) -> usize {
        (h & self.shift_mask) as usize
    }

    #[inline]
    pub fn lock(&self, h: u64) -> MutexGuard<'_, Shard> {
        self.shards[self.shard_of(h)].0.lock()
    }

    #[inline]
    pub fn try_lock(&self, h: u64) -> Option<MutexGuard<'_, Shard>> {
        self.shards[self.shard_of(h)].0.try_lock()
    }

    pub fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i].0.lock()
    }

    pub fn nshards(&self) -> usize {
        self.shards.len()
    }

    /// (total slots, items) across shards.
    pub fn size(&self) -> (usize, usize) {
        let mut slots = 0;
        let mut items = 0;
        for s in self.shards.iter() {
            let g = s.0.lock();
            slots += g.capacity();
            items += g.len();
        }
        (slots, items)
    }
}

/// Keeps each shard's mutex on its own cache line so threads working on
/// neighbouring shards do not bounce one line between cores.
mod crossbeam_pad {
    #[repr(align(64))]
    pub struct Padded<T>(pub T);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn hash_spreads_short_keys() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            assert!(seen.insert(hash(format!("key:{i}").as_bytes())));
        }
        assert_ne!(hash(b""), hash(b"\0"));
    }

    proptest! {
        // The shard behaves like a map under any sequence of inserts and
        // removes, including the backward shifts of deletion.
        #[test]
        fn shard_matches_a_map(ops in prop::collection::vec((0u32..200, any::<bool>()), 1..2000)) {
            let mut shard = Shard::new(16);
            let mut model: HashMap<u32, ChunkId> = HashMap::new();
            // SAFETY: a shard only stores and compares ids, never follows
            // them to memory, so any word will do here.
            let id_of = |n: u32| unsafe { ChunkId::from_word(n) };
            let mut next_id = 0;
            for (k, insert) in ops {
                // Few distinct hashes force long probe runs and collisions.
                let h = hash(&k.to_le_bytes()) & 0xFFFF_000F_FFFF_FFFF | ((k as u64 % 7) << 36);
                let keyed = |id: ChunkId, model: &HashMap<u32, ChunkId>| model.get(&k) == Some(&id);
                let found = shard.find(h, |id| keyed(id, &model));
                prop_assert_eq!(found, model.get(&k).copied());
                if insert {
                    match found {
                        Some(old) => { prop_assert!(shard.replace(h, old, id_of(next_id))); }
                        None => shard.insert(h, id_of(next_id)),
                    }
                    model.insert(k, id_of(next_id));
                    next_id += 1;
                } else if let Some(old) = found {
                    prop_assert!(shard.remove(h, old));
                    model.remove(&k);
                }
                prop_assert_eq!(shard.len(), model.len());
            }
            for (k, id) in &model {
                let h = hash(&k.to_le_bytes()) & 0xFFFF_000F_FFFF_FFFF | ((*k as u64 % 7) << 36);
                prop_assert_eq!(shard.find(h, |x| x == *id), Some(*id));
            }
        }
    }
}
