//! A key held locked for a compound operation: the meta commands read an
//! item, decide on its flags (stale, win token, CAS, TTL) and then store,
//! touch, delete or count, all as one atomic step under the key's shard
//! lock. The plain text commands use the single-call operations instead.

use parking_lot::MutexGuard;

use crate::assoc::{hash, Shard};
use crate::engine::SlabEngine;
use crate::item::{ItemRef, Raw, STALE, WIN_SENT};
use crate::ops::{ArithOutcome, StoreMode, StoreOutcome};
use crate::reserve::{Reserved, Src};
use crate::slabs::ChunkId;
use crate::stats::ThreadStats;

/// The locked key. Dropping it releases the lock.
pub struct KeySlot<'a> {
    e: &'a SlabEngine,
    shard: MutexGuard<'a, Shard>,
    h: u64,
    key: &'a [u8],
    id: Option<ChunkId>,
    ts: &'a ThreadStats,
}

impl SlabEngine {
    /// Locks `key` and looks it up; an expired or flushed item is dropped
    /// first and counted as memcached counts it.
    pub fn lock_key<'a>(&'a self, key: &'a [u8], ts: &'a ThreadStats) -> KeySlot<'a> {
        self.lock_hashed(key, hash(key), ts)
    }

    /// As `lock_key`, for a key whose hash `h` the caller has already.
    pub(crate) fn lock_hashed<'a>(
        &'a self,
        key: &'a [u8],
        h: u64,
        ts: &'a ThreadStats,
    ) -> KeySlot<'a> {
        let now = self.clock.now();
        let mut shard = self.index.lock(h);
        let id = self.live(&mut shard, h, key, ts, now);
        KeySlot {
            e: self,
            shard,
            h,
            key,
            id,
            ts,
        }
    }
}

impl<'a> KeySlot<'a> {
    /// The live item under the key, viewed for as long as `self` (which
    /// owns the shard guard) is borrowed.
    fn raw(&self) -> Option<Raw<'_>> {
        let id = self.id?;
        // SAFETY: `self.id` is only ever the live item found, stored or
        // kept under this slot's shard lock, whose guard `self` owns: the
        // item stays linked, and its chunks allocated, while it is held.
        Some(unsafe { self.e.slabs.raw_held(id, &*self.shard) })
    }

    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The item as it is now (before any bump this slot makes).
    pub fn item(&self) -> Option<ItemRef<'_>> {
        let raw = self.raw()?;
        self.id
            .map(|id| ItemRef::new(id, raw, self.e, self.e.slabs.class_of(id) as u32 + 1))
    }

    /// Relative time now.
    pub fn now(&self) -> u32 {
        self.e.clock.now()
    }

    /// Counts a read as `get` does (hit per class, or miss).
    pub fn count_get(&self) {
        match self.id {
            Some(id) => {
                let c = &self.ts.class[self.e.slabs.class_of(id) + 1];
                if let Some(raw) = self.raw() {
                    c.hits_to[raw.seg() as usize].incr();
                }
                c.get_hits.incr();
            }
            None => self.ts.get_misses.incr(),
        }
    }

    /// Counts a touch as `touch` does.
    pub fn count_touch(&self) {
        match self.id {
            Some(id) => self.ts.class[self.e.slabs.class_of(id) + 1]
                .touch_hits
                .incr(),
            None => self.ts.touch_misses.incr(),
        }
    }

    /// Records an access now (FETCHED, then ACTIVE), as a get does.
    pub fn bump(&self) {
        if let (Some(id), Some(raw)) = (self.id, self.raw()) {
            // As a plain get does: memcached's do_item_bump only marks
            // items ACTIVE with the segmented LRU.
            if self.e.tuning.segmented() {
                raw.touch_access(self.now());
            } else {
                self.e.touch_flat(id, raw, self.now());
            }
        }
    }

    /// Sets the expiry from a client exptime (0 never, negative expired,
    /// over 30 days absolute).
    pub fn set_exptime(&self, exptime: i64) {
        if let Some(raw) = self.raw() {
            raw.set_exptime(self.e.clock.realtime(exptime));
        }
    }

    pub fn set_stale(&self, on: bool) {
        if let Some(raw) = self.raw() {
            raw.set_exp_bits(STALE, on);
        }
    }

    pub fn set_win_sent(&self, on: bool) {
        if let Some(raw) = self.raw() {
            raw.set_exp_bits(WIN_SENT, on);
        }
    }

    pub fn set_cas(&self, cas: u64) {
        if let Some(raw) = self.raw() {
            raw.set_cas(cas);
        }
    }

    /// A fresh CAS value (0 with -C).
    pub fn next_cas(&self) -> u64 {
        self.e.next_cas()
    }

    /// Stores under the lock. `cas` is compared for `StoreMode::Cas` and,
    /// when non-zero, for append/prepend; `new_cas` replaces the generated
    /// CAS (meta `E`). Afterwards the slot refers to the stored item.
    pub fn store(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        self.store_inner(mode, flags, exptime, Src::Bytes(value), cas, new_cas, true)
    }

    /// As `store`, with the value already read into a reserved item (whose
    /// flags and expiry were given to `SlabEngine::reserve`).
    pub fn store_reserved(
        &mut self,
        mode: StoreMode,
        value: Reserved,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        let (flags, exptime) = (value.flags(), 0);
        self.store_inner(mode, flags, exptime, Src::Item(value), cas, new_cas, true)
    }

    /// Creates an empty item on a miss (meta `N`), which memcached does
    /// not count as a set.
    pub fn vivify(&mut self, flags: u32, exptime: i64, new_cas: Option<u64>) -> StoreOutcome {
        self.store_inner(
            StoreMode::Add,
            flags,
            exptime,
            Src::Bytes(b""),
            0,
            new_cas,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn store_inner(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: Src<'_>,
        cas: u64,
        new_cas: Option<u64>,
        counted: bool,
    ) -> StoreOutcome {
        if self.key.is_empty() {
            return StoreOutcome::NotStored;
        }
        if !self.e.item_size_ok(self.key.len(), flags, value.len()) {
            return StoreOutcome::TooLarge;
        }
        match mode {
            StoreMode::Append | StoreMode::Prepend => {
                if counted {
                    self.e.count_set(self.key.len(), 0, value.len(), self.ts);
                }
                let mut parts: Vec<&[u8]> = Vec::with_capacity(2);
                match &value {
                    Src::Bytes(b) => parts.push(b),
                    Src::Item(r) => r.for_each_part(|p| parts.push(p)),
                }
                self.concat(mode, &parts, cas, new_cas)
                // A reserved item's bytes were copied; dropping it frees it.
            }
            _ => {
                let new = match value {
                    Src::Bytes(value) => {
                        let exp = self.e.clock.realtime(exptime);
                        let Some(new) = self.e.alloc_item(self.key, flags, exp, value.len()) else {
                            return StoreOutcome::OutOfMemory;
                        };
                        self.e.fill_value(new.1, &[value]);
                        new.0
                    }
                    Src::Item(r) => r.into_item(),
                };
                if counted {
                    self.e.ts_count_set_in(new, self.ts);
                }
                self.link_whole(mode, new, cas, new_cas)
            }
        }
    }

    /// Decides a set/add/replace/cas against the live item, with the new
    /// item `new_id` already filled: links it or frees it. Afterwards the
    /// slot refers to the item under the key.
    pub(crate) fn link_whole(
        &mut self,
        mode: StoreMode,
        new_id: ChunkId,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        let (e, ts, old) = (self.e, self.ts, self.id);
        // SAFETY: the new item is filled but unlinked: it is this call's
        // alone until `link` publishes it or `free_item` takes it back.
        let raw = unsafe { e.slabs.raw(new_id) };
        let ci = e.slabs.class_of(new_id);
        let old_raw = self.raw();
        let outcome = match (mode, old) {
            (StoreMode::Add, Some(_)) => {
                // memcached bumps an item that an add found present.
                if let Some(o) = old_raw {
                    o.set_atime(e.clock.now());
                }
                StoreOutcome::NotStored
            }
            (StoreMode::Replace, None) => StoreOutcome::NotStored,
            (StoreMode::Cas, None) => {
                ts.cas_misses.incr();
                StoreOutcome::NotFound
            }
            // A cas of 0 never matches, as in memcached (also under -C,
            // where every item's CAS is 0).
            (StoreMode::Cas, Some(old)) if cas == 0 || old_raw.map_or(0, |o| o.cas()) != cas => {
                ts.class[e.slabs.class_of(old) + 1].cas_badval.incr();
                StoreOutcome::Exists
            }
            (_, old) => {
                if mode == StoreMode::Cas {
                    ts.class[ci + 1].cas_hits.incr();
                }
                let c = new_cas.unwrap_or_else(|| e.next_cas());
                raw.set_cas(c);
                e.link(&mut self.shard, self.h, new_id, old);
                self.id = Some(new_id);
                return StoreOutcome::Stored { cas: c };
            }
        };
        e.free_item(new_id);
        outcome
    }

    /// append/prepend of `value` onto the live item. Afterwards the slot
    /// refers to the item under the key.
    fn concat(
        &mut self,
        mode: StoreMode,
        value: &[&[u8]],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        let (e, key) = (self.e, self.key);
        let Some(old_id) = self.id else {
            return StoreOutcome::NotStored;
        };
        let Some(old) = self.raw() else {
            return StoreOutcome::NotStored;
        };
        if cas != 0 && old.cas() != cas {
            return StoreOutcome::Exists;
        }
        let flags = old.flags();
        let total = old.value_len() + value.iter().map(|p| p.len()).sum::<usize>();
        if !e.item_size_ok(key.len(), flags, total) {
            return StoreOutcome::TooLarge;
        }
        // The new item keeps the old one's flags and expiry, as memcached's.
        let Some((new_id, raw)) = e.alloc_item(key, flags, old.exptime(), total) else {
            return StoreOutcome::OutOfMemory;
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(4);
        if mode == StoreMode::Prepend {
            parts.extend_from_slice(value);
        }
        e.for_each_value_part(old, |s| parts.push(s));
        if mode == StoreMode::Append {
            parts.extend_from_slice(value);
        }
        e.fill_value(raw, &parts);
        let c = new_cas.unwrap_or_else(|| e.next_cas());
        raw.set_cas(c);
        drop(parts);
        e.link(&mut self.shard, self.h, new_id, Some(old_id));
        self.id = Some(new_id);
        StoreOutcome::Stored { cas: c }
    }

    /// Marks the item's key as stored base64-decoded (meta `b`).
    pub fn set_key_binary(&self, on: bool) {
        if let Some(raw) = self.raw() {
            raw.set_meta_bits(crate::item::KEY_BINARY, on);
        }
    }

    /// Counts a delete miss (meta `md` refused on a CAS mismatch counts one
    /// in memcached).
    pub fn count_delete_miss(&self) {
        self.ts.delete_misses.incr();
    }

    /// Deletes the item; false when there was none.
    pub fn delete(&mut self) -> bool {
        let hit = self
            .e
            .delete_locked(&mut self.shard, self.h, self.id, self.ts);
        self.id = None;
        hit
    }

    /// incr/decr under the lock, with an optional explicit new CAS.
    pub fn arith(&mut self, incr: bool, delta: u64, new_cas: Option<u64>) -> ArithOutcome {
        let (outcome, id) = self.e.arith_locked(
            &mut self.shard,
            self.h,
            self.key,
            self.id,
            incr,
            delta,
            new_cas,
            self.ts,
        );
        self.id = id;
        outcome
    }
}
