//! The single-call operations (get, store, delete, touch, arithmetic,
//! flush) and the steps they share: looking a key up, linking and
//! unlinking objects.

use std::sync::atomic::Ordering::Relaxed;

use super::index::{Loc, Pos, Shard};
use super::object::{Obj, ACTIVE, FETCHED, KEY_BINARY, STALE, WIN_SENT};
use super::{SegmentEngine, Space};
use crate::assoc::hash;
use crate::ops::{ArithOutcome, GetMode, StoreMode, StoreOutcome};
use crate::stats::ThreadStats;

/// What a reader gets for one item while its key is locked (the segment
/// engine's `ItemRef`).
#[derive(Clone, Copy)]
pub struct SegItem<'a> {
    pub(crate) e: &'a SegmentEngine,
    pub(crate) loc: Loc,
    pub(crate) obj: Obj,
    /// Bits and access time before this read.
    pub(crate) before_bits: u8,
    pub(crate) before_atime: u32,
    key: &'a [u8],
    value: &'a [u8],
    pub(crate) _lock: std::marker::PhantomData<&'a Shard>,
}

impl<'a> SegItem<'a> {
    pub(crate) fn new(e: &'a SegmentEngine, loc: Loc) -> SegItem<'a> {
        let obj = e.obj(loc);
        let (key, value) = obj.key_value();
        SegItem {
            e,
            loc,
            obj,
            key,
            value,
            before_bits: obj.bits(),
            before_atime: obj.atime(),
            _lock: std::marker::PhantomData,
        }
    }
    pub fn key(&self) -> &[u8] {
        self.key
    }
    pub fn flags(&self) -> u32 {
        self.obj.flags()
    }
    pub fn cas(&self) -> u64 {
        self.obj.cas()
    }
    pub fn value_len(&self) -> usize {
        self.value.len()
    }
    /// Relative expiry time, 0 for never.
    pub fn exptime(&self) -> u32 {
        self.obj.exptime()
    }
    /// Relative time of the last access before this one.
    pub fn last_access(&self) -> u32 {
        self.before_atime
    }
    /// Whether the item had been read before this read.
    pub fn fetched(&self) -> bool {
        self.before_bits & FETCHED != 0
    }
    /// Segments have no slab classes; every item reports class 1.
    pub fn class_id(&self) -> u32 {
        1
    }
    pub fn stale(&self) -> bool {
        self.obj.bits() & STALE != 0
    }
    pub fn key_binary(&self) -> bool {
        self.obj.bits() & KEY_BINARY != 0
    }
    pub fn win_sent(&self) -> bool {
        self.obj.bits() & WIN_SENT != 0
    }
    pub fn value(&self) -> &[u8] {
        self.value
    }
    pub fn write_value(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.value);
    }
    pub fn for_each_value_part(&self, mut f: impl FnMut(&[u8])) {
        f(self.value)
    }
    /// Holds the value for a reply sent after the key's lock is released.
    pub fn pin(&self) -> Option<super::SegPinned> {
        self.e.pin(self.loc, self.obj)
    }
}

impl SegmentEngine {
    /// Finds `key` in a locked shard.
    #[inline]
    pub(crate) fn find(&self, shard: &Shard, h: u64, key: &[u8]) -> Option<(Pos, Loc)> {
        shard.find(h, |loc| self.obj(loc).key() == key)
    }

    /// Looks `key` up, dropping it if expired or flushed (counted as
    /// memcached counts those reads).
    pub(crate) fn live(
        &self,
        shard: &mut Shard,
        h: u64,
        key: &[u8],
        ts: &ThreadStats,
        now: u32,
    ) -> Option<(Pos, Loc)> {
        let (pos, loc) = self.find(shard, h, key)?;
        let o = self.obj(loc);
        let exp = o.exptime();
        if exp != 0 && exp <= now {
            ts.get_expired.incr();
            self.unlink(shard, pos, loc);
            return None;
        }
        if self.is_flushed(o, now) {
            ts.get_flushed.incr();
            self.unlink(shard, pos, loc);
            return None;
        }
        Some((pos, loc))
    }

    pub(crate) fn unlink(&self, shard: &mut Shard, pos: Pos, loc: Loc) {
        shard.remove(pos);
        self.account(loc, self.obj(loc).size(), false);
    }

    /// Links filled space `sp` under the key, replacing `old`, and ends
    /// its pending write.
    /// Returns the slot now holding it.
    pub(crate) fn link(
        &self,
        shard: &mut Shard,
        h: u64,
        sp: Space,
        old: Option<(Pos, Loc)>,
    ) -> Pos {
        let pos = match old {
            Some((pos, loc)) => {
                shard.replace(pos, h, sp.loc);
                self.account(loc, self.obj(loc).size(), false);
                pos
            }
            None => shard.insert(h, sp.loc, |l| self.hash_at(l)),
        };
        self.account(sp.loc, sp.obj.size(), true);
        self.total_items.fetch_add(1, Relaxed);
        self.segs.done(sp.loc.seg);
        pos
    }

    /// Writes `n` spaces into a fresh object's value from byte `from`.
    pub(crate) fn fill_spaces(&self, sp: Space, from: usize, n: usize) {
        debug_assert!(from + n <= sp.obj.nbytes());
        // SAFETY: inside the value of space that is this caller's alone.
        unsafe { std::ptr::write_bytes(sp.obj.value_ptr().add(from), b' ', n) }
    }

    /// Marks a read: FETCHED, ACTIVE (read since written or merged, what
    /// a merge keeps) and the access time.
    #[inline]
    pub(crate) fn touch_access(&self, loc: Loc, o: Obj, now: u32) {
        let bits = o.bits();
        if bits & (FETCHED | ACTIVE) != FETCHED | ACTIVE {
            o.set_bits(FETCHED | ACTIVE, true);
            if bits & ACTIVE == 0 {
                self.segs.seg(loc.seg).active.fetch_add(1, Relaxed);
            }
        }
        if o.atime() != now {
            o.set_atime(now);
        }
    }

    /// Reads `key`; `f` runs while the key is locked.
    #[inline]
    pub fn get<R>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        f: impl FnOnce(&SegItem<'_>) -> R,
    ) -> Option<R> {
        if let GetMode::Touch(exp) = mode {
            return self.get_touch(key, exp, ts, f);
        }
        // The plain read: no slot, one lookup under the shard lock.
        let h = hash(key);
        let now = self.clock.now();
        let mut shard = self.index.lock(h);
        let Some((_, loc)) = self.live(&mut shard, h, key, ts, now) else {
            ts.get_misses.incr();
            return None;
        };
        ts.class[1].hits_to[2].incr();
        ts.class[1].get_hits.incr();
        let item = SegItem::new(self, loc);
        self.touch_access(loc, item.obj, now);
        let r = f(&item);
        drop(shard);
        Some(r)
    }

    /// gat/gats: a touch may move the object, so it runs on a slot.
    fn get_touch<R>(
        &self,
        key: &[u8],
        exp: i64,
        ts: &ThreadStats,
        f: impl FnOnce(&SegItem<'_>) -> R,
    ) -> Option<R> {
        let slot = self.lock_key(key, ts);
        if !slot.exists() {
            ts.touch_misses.incr();
            return None;
        }
        ts.class[1].hits_to[2].incr();
        slot.set_exptime(exp);
        ts.class[1].touch_hits.incr();
        // The touch may have moved the object (or, out of room, dropped it).
        let loc = slot.loc()?;
        let item = SegItem::new(self, loc);
        self.touch_access(loc, item.obj, slot.now());
        Some(f(&item))
    }

    /// set / add / replace / append / prepend / cas.
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        if key.is_empty() {
            return StoreOutcome::NotStored;
        }
        if !self.item_size_ok(key.len(), flags, value.len()) {
            if mode == StoreMode::Set {
                self.unlink_key(key);
            }
            return StoreOutcome::TooLarge;
        }
        if matches!(mode, StoreMode::Append | StoreMode::Prepend) {
            return self.lock_key(key, ts).store(mode, 0, 0, value, cas, None);
        }
        let exp = self.clock.realtime(exptime);
        // Space taken and filled before the key is locked, as the slab
        // engine does: the copy and any eviction block no reader.
        let Some(sp) = self.alloc(key, flags, exp, value.len(), true) else {
            if mode == StoreMode::Set {
                self.unlink_key(key);
            }
            return StoreOutcome::OutOfMemory;
        };
        self.fill(sp, &[value]);
        ts.class[1].cmd_set.incr();
        self.lock_key(key, ts).link_whole(mode, sp, cas, None)
    }

    /// Counts a storage command as `store` would (memcached counts
    /// `cmd_set` once the data is read, whatever the outcome).
    pub fn count_set(&self, _nkey: usize, _flags: u32, _nbytes: usize, ts: &ThreadStats) {
        ts.class[1].cmd_set.incr();
    }

    pub fn delete(&self, key: &[u8], ts: &ThreadStats) -> bool {
        self.lock_key(key, ts).delete()
    }

    pub fn touch(&self, key: &[u8], exptime: i64, ts: &ThreadStats) -> bool {
        self.get(key, GetMode::Touch(exptime), ts, |_| ()).is_some()
    }

    pub fn arith(&self, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome {
        self.lock_key(key, ts).arith(incr, delta, None)
    }

    /// Removes `key` without counting it (memcached's unlink after a
    /// failed `set`).
    pub fn unlink_key(&self, key: &[u8]) {
        let h = hash(key);
        let mut shard = self.index.lock(h);
        if let Some((pos, loc)) = self.find(&shard, h, key) {
            self.unlink(&mut shard, pos, loc);
        }
    }

    /// `flush_all [delay]`: as the slab engine, nothing is walked; reads
    /// drop flushed objects, and eviction and merges skip them.
    pub fn flush_all(&self, delay: i64) {
        let now = self.clock.now();
        let new_oldest = if delay > 0 {
            self.clock.realtime(delay)
        } else {
            now
        };
        if self.cfg.use_cas {
            let oldest = new_oldest.saturating_sub(1);
            self.oldest_live.store(oldest, Relaxed);
            if oldest <= now {
                self.oldest_cas.store(self.next_cas(), Relaxed);
            }
        } else {
            self.oldest_live.store(new_oldest, Relaxed);
        }
    }

    pub fn oldest_live(&self) -> u32 {
        self.oldest_live.load(Relaxed)
    }
}
