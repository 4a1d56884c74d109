//! The operations a protocol calls: get, store, delete, touch, arithmetic
//! and flush, each atomic per key under the key's shard lock.

use std::sync::atomic::Ordering::Relaxed;

use crate::assoc::{hash, Shard};
use crate::engine::SlabEngine;
use crate::item::ItemRef;
use crate::slabs::ChunkId;
use crate::stats::ThreadStats;

/// How a read treats the item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetMode {
    /// `get`/`gets`: counts get_hits.
    Get,
    /// `gat`/`gats`: sets a new exptime (client value) and counts touch_hits.
    Touch(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored { cas: u64 },
    NotStored,
    Exists,
    NotFound,
    TooLarge,
    OutOfMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    Value(u64),
    NotFound,
    NonNumeric,
    OutOfMemory,
}

impl SlabEngine {
    /// Looks `key` up in a locked shard, dropping it if expired or flushed.
    /// memcached counts those only as get_expired / get_flushed:
    /// `reclaimed` is for memory reused from expired items at allocation.
    pub(crate) fn live(
        &self,
        shard: &mut Shard,
        h: u64,
        key: &[u8],
        ts: &ThreadStats,
        now: u32,
    ) -> Option<ChunkId> {
        let id = self.find(shard, h, key)?;
        // SAFETY: `id` was just found in the locked `shard`: linked, so allocated
        // and unchanged while the caller holds that lock.
        let raw = unsafe { self.slabs.raw(id) };
        let exp = raw.exptime();
        if exp != 0 && exp <= now {
            ts.get_expired.incr();
            self.unlink(shard, h, id);
            return None;
        }
        if self.is_flushed(raw, now) {
            ts.get_flushed.incr();
            self.unlink(shard, h, id);
            return None;
        }
        Some(id)
    }

    /// Reads `key`. `f` runs while the item is locked and gets what the
    /// item looked like before this read (fetched bit, last access).
    #[inline]
    pub fn get<R>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        let h = hash(key);
        let now = self.clock.now();
        let mut shard = self.index.lock(h);
        let Some(id) = self.live(&mut shard, h, key, ts, now) else {
            match mode {
                GetMode::Get => ts.get_misses.incr(),
                GetMode::Touch(_) => ts.touch_misses.incr(),
            }
            return None;
        };
        // SAFETY: `id` is live in the locked `shard`; the view (and the
        // ItemRef built on it) borrows the guard, so it cannot outlive the lock.
        let raw = unsafe { self.slabs.raw_held(id, &*shard) };
        let ci = self.slabs.class_of(id);
        ts.class[ci + 1].hits_to[raw.seg() as usize].incr();
        match mode {
            GetMode::Get => ts.class[ci + 1].get_hits.incr(),
            GetMode::Touch(exp) => {
                raw.set_exptime(self.clock.realtime(exp));
                ts.class[ci + 1].touch_hits.incr();
            }
        }
        let item = ItemRef::new(id, raw, self, ci as u32 + 1);
        if self.tuning.segmented() {
            raw.touch_access(now);
        } else {
            self.touch_flat(id, raw, now);
        }
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
        let h = hash(key);
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
        // Allocate and fill before taking the shard lock: the copy and any
        // eviction happen without blocking readers of this shard.
        let Some(new) = self.alloc_item(key, flags, exp, value.len()) else {
            if mode == StoreMode::Set {
                self.unlink_key(key);
            }
            return StoreOutcome::OutOfMemory;
        };
        self.fill_value(new.1, &[value]);
        ts.class[self.slabs.class_of(new.0) + 1].cmd_set.incr();
        self.lock_hashed(key, h, ts)
            .link_whole(mode, new.0, cas, None)
    }

    /// Counts a storage command in the class its item would take, as
    /// memcached counts `set_cmds` once the request's item is allocated and
    /// its data read, whatever the outcome (also for a bad data chunk).
    pub fn count_set(&self, nkey: usize, flags: u32, nbytes: usize, ts: &ThreadStats) {
        let size = self.slabs.layout.item_size(nkey, flags, nbytes);
        let ci = self.slabs.class_for(size).unwrap_or(self.slabs.largest());
        ts.class[ci + 1].cmd_set.incr();
    }

    /// `delete`: true when the key was there.
    pub fn delete(&self, key: &[u8], ts: &ThreadStats) -> bool {
        self.lock_key(key, ts).delete()
    }

    pub(crate) fn delete_locked(
        &self,
        shard: &mut Shard,
        h: u64,
        id: Option<ChunkId>,
        ts: &ThreadStats,
    ) -> bool {
        match id {
            Some(id) => {
                ts.class[self.slabs.class_of(id) + 1].delete_hits.incr();
                self.unlink(shard, h, id);
                true
            }
            None => {
                ts.delete_misses.incr();
                false
            }
        }
    }

    /// `touch`: sets a new exptime; true when the key was there.
    pub fn touch(&self, key: &[u8], exptime: i64, ts: &ThreadStats) -> bool {
        self.get(key, GetMode::Touch(exptime), ts, |_| ()).is_some()
    }

    /// `incr` / `decr`.
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome {
        self.lock_key(key, ts).arith(incr, delta, None)
    }

    /// incr/decr on the live item `id`, under its shard lock. Returns the
    /// outcome and the id now under the key.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn arith_locked(
        &self,
        shard: &mut Shard,
        h: u64,
        key: &[u8],
        id: Option<ChunkId>,
        incr: bool,
        delta: u64,
        new_cas: Option<u64>,
        ts: &ThreadStats,
    ) -> (ArithOutcome, Option<ChunkId>) {
        let Some(id) = id else {
            if incr {
                ts.incr_misses.incr();
            } else {
                ts.decr_misses.incr();
            }
            return (ArithOutcome::NotFound, None);
        };
        // SAFETY: `id` is the live item under the caller's shard lock, held
        // for the whole operation (including the in-place write below).
        let raw = unsafe { self.slabs.raw(id) };
        if raw.is_chained() || raw.value_len() == 0 {
            return (ArithOutcome::NonNumeric, Some(id));
        }
        let len = raw.nbytes_here();
        let cur = raw.value_part();
        // memcached's safe_strtoull; the value's end stands for its "\r\n".
        let Some(v) = crate::numeric::parse_u64(cur) else {
            return (ArithOutcome::NonNumeric, Some(id));
        };
        let v = if incr {
            v.wrapping_add(delta)
        } else {
            v.saturating_sub(delta)
        };
        let ci = self.slabs.class_of(id);
        if incr {
            ts.class[ci + 1].incr_hits.incr();
        } else {
            ts.class[ci + 1].decr_hits.incr();
        }
        let mut buf = [0u8; 20];
        let digits = crate::numeric::format_u64(v, &mut buf);
        let cas = new_cas.unwrap_or_else(|| self.next_cas());
        if digits.len() <= len && !self.is_pinned(id) {
            // In place, padded with spaces to the old length: memcached's
            // behaviour, visible to clients as trailing spaces.
            // SAFETY: within the value; we hold the key's shard lock,
            // readers copy values only under that lock, and no reply
            // references this item (not pinned, checked just above).
            unsafe {
                std::ptr::copy_nonoverlapping(digits.as_ptr(), raw.data_ptr(), digits.len());
                std::ptr::write_bytes(raw.data_ptr().add(digits.len()), b' ', len - digits.len());
            }
            raw.set_cas(cas);
            raw.set_atime(self.clock.now());
            return (ArithOutcome::Value(v), Some(id));
        }
        let Some((new_id, new)) = self.alloc_item(key, raw.flags(), raw.exptime(), digits.len())
        else {
            return (ArithOutcome::OutOfMemory, Some(id));
        };
        self.fill_value(new, &[digits]);
        new.set_cas(cas);
        self.link(shard, h, new_id, Some(id));
        (ArithOutcome::Value(v), Some(new_id))
    }

    /// `flush_all [delay]`: everything stored before the flush time is
    /// dead from then on. Nothing is walked; reads and the crawler drop
    /// flushed items as they meet them.
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
}
