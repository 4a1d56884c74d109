//! A key held locked for a compound operation (the meta commands): the
//! segment engine's `KeySlot`, with the same operations.
//!
//! Operations that need new space while the key is locked (`&mut self`:
//! store, append, arithmetic) unlock the shard for the allocation, which
//! may evict, then lock it again and look the key up anew. The slot's
//! key lock (`SegmentEngine::key_locks`) stays held, so no other write
//! of the key comes between: what the holder read before is what it
//! writes over (replication's counters read, increment and record under
//! one slot). Eviction may still drop the key's object meanwhile, and
//! then the operation decides again on what the key holds now. `set_exptime` (`&self`) moves an object that
//! has no expiry field into one that has, with space that needs no
//! eviction; failing that the object is dropped, as an eviction would.

use std::cell::{Cell, RefCell};

use parking_lot::MutexGuard;

use super::handles::SegReserved;
use super::index::{Loc, Pos, Shard};
use super::object::{KEY_BINARY, STALE, WIN_SENT};
use super::ops::SegItem;
use super::{segs, SegmentEngine, Space};
use crate::assoc::hash;
use crate::ops::{ArithOutcome, StoreMode, StoreOutcome};
use crate::stats::ThreadStats;

/// Rounds of unlock, allocate, relock before giving up with OutOfMemory
/// (each lost only to another write of the same key).
const RETRIES: usize = 16;

pub struct SegSlot<'a> {
    e: &'a SegmentEngine,
    // Declared before `_key`, so dropped first: the shard is let go
    // before the key lock.
    shard: RefCell<MutexGuard<'a, Shard>>,
    _key: MutexGuard<'a, ()>,
    h: u64,
    key: &'a [u8],
    found: Cell<Option<(Pos, Loc)>>,
    ts: &'a ThreadStats,
}

impl SegmentEngine {
    /// Locks `key` and looks it up; an expired or flushed item is dropped
    /// first and counted as memcached counts it.
    pub fn lock_key<'a>(&'a self, key: &'a [u8], ts: &'a ThreadStats) -> SegSlot<'a> {
        let h = hash(key);
        // The high bits: the shards use the low ones.
        let stripe = self.key_locks[(h >> 40) as usize & (super::KEY_LOCKS - 1)].lock();
        let now = self.clock.now();
        let mut shard = self.index.lock(h);
        let found = self.live(&mut shard, h, key, ts, now);
        SegSlot {
            e: self,
            shard: RefCell::new(shard),
            _key: stripe,
            h,
            key,
            found: Cell::new(found),
            ts,
        }
    }
}

impl<'a> SegSlot<'a> {
    pub(crate) fn loc(&self) -> Option<Loc> {
        self.found.get().map(|(_, l)| l)
    }

    pub fn exists(&self) -> bool {
        self.found.get().is_some()
    }

    /// The item as it is now.
    pub fn item(&self) -> Option<SegItem<'_>> {
        self.loc().map(|loc| SegItem::new(self.e, loc))
    }

    pub fn now(&self) -> u32 {
        self.e.clock.now()
    }

    pub fn count_get(&self) {
        if self.exists() {
            self.ts.class[1].hits_to[2].incr();
            self.ts.class[1].get_hits.incr();
        } else {
            self.ts.get_misses.incr();
        }
    }

    pub fn count_touch(&self) {
        if self.exists() {
            self.ts.class[1].touch_hits.incr();
        } else {
            self.ts.touch_misses.incr();
        }
    }

    /// Records an access now, as a get does.
    pub fn bump(&self) {
        if let Some(loc) = self.loc() {
            self.e.touch_access(loc, self.e.obj(loc), self.now());
        }
    }

    /// Sets the expiry from a client exptime. In place when the object
    /// has the field; else the object moves to space with one.
    pub fn set_exptime(&self, exptime: i64) {
        let Some((pos, loc)) = self.found.get() else {
            return;
        };
        let exp = self.e.clock.realtime(exptime);
        let o = self.e.obj(loc);
        let seg = self.e.segs.seg(loc.seg);
        if o.has_exp_field() {
            o.set_exptime(exp);
            // The segment may not expire before its objects do.
            seg.expire_at.fetch_max(
                if exp == 0 { segs::NEVER } else { exp },
                std::sync::atomic::Ordering::Relaxed,
            );
            return;
        }
        if exp == 0 {
            return;
        }
        let mut shard = self.shard.borrow_mut();
        // No eviction under the shard lock (module doc of `segment`).
        match self.e.alloc(self.key, o.flags(), exp, o.nbytes(), false) {
            Some(sp) => {
                self.e.fill(sp, &[o.value()]);
                sp.obj.set_cas(o.cas());
                sp.obj.set_atime(o.atime());
                sp.obj.set_bits(o.bits() & !super::object::FIXED_BITS, true);
                let pos = self.e.link(&mut shard, self.h, sp, Some((pos, loc)));
                // A move, not a store: memcached's touch links nothing.
                self.e
                    .total_items
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                self.e
                    .c
                    .relocations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.found.set(Some((pos, sp.loc)));
            }
            None => {
                self.e.unlink(&mut shard, pos, loc);
                self.e
                    .c
                    .evicted_objects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.found.set(None);
            }
        }
    }

    pub fn set_stale(&self, on: bool) {
        if let Some(loc) = self.loc() {
            self.e.obj(loc).set_bits(STALE, on);
        }
    }

    pub fn set_win_sent(&self, on: bool) {
        if let Some(loc) = self.loc() {
            self.e.obj(loc).set_bits(WIN_SENT, on);
        }
    }

    pub fn set_key_binary(&self, on: bool) {
        if let Some(loc) = self.loc() {
            self.e.obj(loc).set_bits(KEY_BINARY, on);
        }
    }

    pub fn set_cas(&self, cas: u64) {
        if let Some(loc) = self.loc() {
            self.e.obj(loc).set_cas(cas);
        }
    }

    pub fn next_cas(&self) -> u64 {
        self.e.next_cas()
    }

    pub fn count_delete_miss(&self) {
        self.ts.delete_misses.incr();
    }

    /// Space taken with the shard unlocked (so it may evict); the key is
    /// looked up again afterwards.
    fn alloc_unlocked(&mut self, flags: u32, exp: u32, nbytes: usize) -> Option<Space> {
        let (e, key) = (self.e, self.key);
        let sp = MutexGuard::unlocked(self.shard.get_mut(), || {
            e.alloc(key, flags, exp, nbytes, true)
        });
        let now = e.clock.now();
        let found = e.live(self.shard.get_mut(), self.h, key, self.ts, now);
        self.found.set(found);
        sp
    }

    pub fn store(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        self.store_bytes(mode, flags, exptime, value, cas, new_cas, true)
    }

    /// Creates an empty item on a miss (meta `N`), not counted as a set.
    pub fn vivify(&mut self, flags: u32, exptime: i64, new_cas: Option<u64>) -> StoreOutcome {
        self.store_bytes(StoreMode::Add, flags, exptime, b"", 0, new_cas, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn store_bytes(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: &[u8],
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
        if matches!(mode, StoreMode::Append | StoreMode::Prepend) {
            if counted {
                self.ts.class[1].cmd_set.incr();
            }
            return self.concat(mode, &[value], cas, new_cas);
        }
        let exp = self.e.clock.realtime(exptime);
        let Some(sp) = self.alloc_unlocked(flags, exp, value.len()) else {
            return StoreOutcome::OutOfMemory;
        };
        self.e.fill(sp, &[value]);
        if counted {
            self.ts.class[1].cmd_set.incr();
        }
        self.link_whole(mode, sp, cas, new_cas)
    }

    /// As `store`, with the value already read into a reservation.
    pub fn store_reserved(
        &mut self,
        mode: StoreMode,
        value: SegReserved,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        self.ts.class[1].cmd_set.incr();
        match mode {
            StoreMode::Append | StoreMode::Prepend => {
                let v = value.bytes();
                // The reservation's bytes are copied; dropping it ends its write.
                self.concat(mode, &[v], cas, new_cas)
            }
            _ => {
                let sp = value.into_space();
                self.link_whole(mode, sp, cas, new_cas)
            }
        }
    }

    /// Decides a set/add/replace/cas against what the key holds, with the
    /// new object filled: links it or abandons it.
    pub(crate) fn link_whole(
        &mut self,
        mode: StoreMode,
        sp: Space,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        let (e, ts) = (self.e, self.ts);
        let old = self.found.get();
        let outcome = match (mode, old) {
            (StoreMode::Add, Some((_, loc))) => {
                // memcached bumps an item that an add found present.
                e.obj(loc).set_atime(e.clock.now());
                StoreOutcome::NotStored
            }
            (StoreMode::Replace, None) => StoreOutcome::NotStored,
            (StoreMode::Cas, None) => {
                ts.cas_misses.incr();
                StoreOutcome::NotFound
            }
            (StoreMode::Cas, Some((_, loc))) if cas == 0 || e.obj(loc).cas() != cas => {
                ts.class[1].cas_badval.incr();
                StoreOutcome::Exists
            }
            _ => {
                if mode == StoreMode::Cas {
                    ts.class[1].cas_hits.incr();
                }
                let c = new_cas.unwrap_or_else(|| e.next_cas());
                sp.obj.set_cas(c);
                let pos = e.link(self.shard.get_mut(), self.h, sp, old);
                self.found.set(Some((pos, sp.loc)));
                return StoreOutcome::Stored { cas: c };
            }
        };
        e.abandon(sp);
        outcome
    }

    /// append/prepend onto what the key holds.
    fn concat(
        &mut self,
        mode: StoreMode,
        value: &[&[u8]],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        let e = self.e;
        let add: usize = value.iter().map(|p| p.len()).sum();
        for _ in 0..RETRIES {
            let Some((_, old_loc)) = self.found.get() else {
                return StoreOutcome::NotStored;
            };
            let old = e.obj(old_loc);
            if cas != 0 && old.cas() != cas {
                return StoreOutcome::Exists;
            }
            let (flags, exp) = (old.flags(), old.exptime());
            let total = old.nbytes() + add;
            if !e.item_size_ok(self.key.len(), flags, total) {
                return StoreOutcome::TooLarge;
            }
            let Some(sp) = self.alloc_unlocked(flags, exp, total) else {
                return StoreOutcome::OutOfMemory;
            };
            if self.loc() != Some(old_loc) {
                // Changed while unlocked: decide again on the new state.
                e.abandon(sp);
                continue;
            }
            // Still linked and locked: its bytes are in place.
            let old = e.obj(old_loc);
            let mut parts: Vec<&[u8]> = Vec::with_capacity(value.len() + 1);
            if mode == StoreMode::Prepend {
                parts.extend_from_slice(value);
            }
            parts.push(old.value());
            if mode == StoreMode::Append {
                parts.extend_from_slice(value);
            }
            e.fill(sp, &parts);
            let c = new_cas.unwrap_or_else(|| e.next_cas());
            sp.obj.set_cas(c);
            let old_found = self.found.get();
            let pos = e.link(self.shard.get_mut(), self.h, sp, old_found);
            self.found.set(Some((pos, sp.loc)));
            return StoreOutcome::Stored { cas: c };
        }
        StoreOutcome::OutOfMemory
    }

    pub fn delete(&mut self) -> bool {
        match self.found.take() {
            Some((pos, loc)) => {
                self.ts.class[1].delete_hits.incr();
                self.e.unlink(self.shard.get_mut(), pos, loc);
                true
            }
            None => {
                self.ts.delete_misses.incr();
                false
            }
        }
    }

    /// incr/decr, with an optional explicit new CAS. The result is always
    /// a new object (a pinned value never changes); when the digits fit
    /// the old length they are padded with spaces to it, as memcached's
    /// in-place rewrite shows clients.
    pub fn arith(&mut self, incr: bool, delta: u64, new_cas: Option<u64>) -> ArithOutcome {
        let e = self.e;
        for _ in 0..RETRIES {
            let Some((_, old_loc)) = self.found.get() else {
                if incr {
                    self.ts.incr_misses.incr();
                } else {
                    self.ts.decr_misses.incr();
                }
                return ArithOutcome::NotFound;
            };
            let old = e.obj(old_loc);
            let cur = old.value();
            if cur.is_empty() {
                return ArithOutcome::NonNumeric;
            }
            let Some(v) = crate::numeric::parse_u64(cur) else {
                return ArithOutcome::NonNumeric;
            };
            let v = if incr {
                v.wrapping_add(delta)
            } else {
                v.saturating_sub(delta)
            };
            let mut buf = [0u8; 20];
            let digits = crate::numeric::format_u64(v, &mut buf);
            let cur_len = cur.len();
            let len = if digits.len() <= cur.len() {
                cur.len()
            } else {
                digits.len()
            };
            let (flags, exp) = (old.flags(), old.exptime());
            let Some(sp) = self.alloc_unlocked(flags, exp, len) else {
                return ArithOutcome::OutOfMemory;
            };
            if self.loc() != Some(old_loc) {
                e.abandon(sp);
                continue;
            }
            let old = e.obj(old_loc);
            e.fill(sp, &[digits]);
            e.fill_spaces(sp, digits.len(), len - digits.len());
            if digits.len() <= cur_len {
                // What memcached's in-place rewrite keeps: the item's
                // flags (stale, win token, key format, fetched).
                sp.obj
                    .set_bits(old.bits() & !super::object::FIXED_BITS, true);
            }
            sp.obj.set_atime(e.clock.now());
            if incr {
                self.ts.class[1].incr_hits.incr();
            } else {
                self.ts.class[1].decr_hits.incr();
            }
            let c = new_cas.unwrap_or_else(|| e.next_cas());
            sp.obj.set_cas(c);
            let old_found = self.found.get();
            let pos = e.link(self.shard.get_mut(), self.h, sp, old_found);
            if digits.len() <= cur_len {
                // memcached rewrites this case in place, linking nothing.
                e.total_items
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.found.set(Some((pos, sp.loc)));
            return ArithOutcome::Value(v);
        }
        ArithOutcome::OutOfMemory
    }
}
