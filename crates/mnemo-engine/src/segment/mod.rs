//! The segment engine (`-o engine=segment`), in the spirit of Pelikan's
//! Segcache (NSDI'21): objects appended with compact headers
//! (`object.rs`, 15 bytes for a small item with CAS) to fixed-size
//! segments chained per TTL bucket (`segs.rs`), found through a
//! bulk-chaining hash table with tag bits (`index.rs`). Expired memory
//! comes back a whole segment at a time; eviction merges the oldest
//! segments of a bucket, keeping the objects read since they were
//! written (`evict.rs`).
//!
//! Locking, as in the slab engine: a key's index shard lock makes every
//! operation on the key atomic and keeps the objects the shard points to
//! in place; the evictor and merger take that lock before dropping or
//! moving an object. Appending takes the TTL bucket's lock for an offset
//! bump only; the object is written without any lock and linked under the
//! shard lock. The one rule that keeps this free of deadlock: nothing
//! that may evict runs while holding a shard lock (the evictor takes
//! shard locks while holding the evict lock); an operation that needs
//! space while its key is locked either unlocks first (`SegSlot`'s
//! `&mut` operations, which then look the key up again) or takes only
//! space that needs no eviction.

mod admin;
mod apply;
mod evict;
mod handles;
mod iface_impl;
mod index;
mod object;
mod ops;
mod segs;
mod settings;
mod slot;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

pub use handles::{SegPinned, SegReserved};
pub use ops::SegItem;
pub use slot::SegSlot;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::stats::ThreadStats;
use index::{Index, Loc};
use object::{Obj, Shape};
use segs::Segs;

/// Smallest segment: Segcache's default, and memcached's page size.
const MIN_SEG_SIZE: usize = 1 << 20;
/// Fewest segments, whatever `-m` says: one open per bucket in use plus
/// room to evict.
const MIN_SEGS: usize = 4;

/// Event counters of the segment engine (its own `stats` lines).
#[derive(Default)]
pub(crate) struct SegCounters {
    pub expired_segments: AtomicU64,
    pub expired_objects: AtomicU64,
    pub evicted_segments: AtomicU64,
    pub evicted_objects: AtomicU64,
    pub evicted_nonzero: AtomicU64,
    pub evicted_unfetched: AtomicU64,
    pub merges: AtomicU64,
    /// Merges that kept every live object (garbage collection).
    pub compactions: AtomicU64,
    pub merged_objects: AtomicU64,
    pub outofmemory: AtomicU64,
    pub reclaimed: AtomicU64,
    pub relocations: AtomicU64,
}

pub struct SegmentEngine {
    pub(crate) cfg: Config,
    pub(crate) clock: Clock,
    pub(crate) segs: Segs,
    pub(crate) index: Index,
    pub(crate) cas_id: AtomicU64,
    pub(crate) oldest_live: AtomicU32,
    pub(crate) oldest_cas: AtomicU64,
    pub(crate) curr_items: AtomicU64,
    pub(crate) total_items: AtomicU64,
    pub(crate) live_bytes: AtomicU64,
    /// Header bytes of live objects (`live_bytes` less keys and values).
    pub(crate) live_meta: AtomicU64,
    pub(crate) c: SegCounters,
    pub(crate) threads: Mutex<Vec<Arc<ThreadStats>>>,
    /// One eviction, merge or expiry pass at a time.
    pub(crate) evict_lock: Mutex<()>,
    /// Key locks, striped by hash: a `SegSlot` holds its key's for its
    /// whole life, also while it lets go of the shard to make room.
    /// Eviction takes shards, never these, so the order (key, then
    /// shard, then eviction's) has no cycle.
    pub(crate) key_locks: Box<[Mutex<()>]>,
    pub(crate) pinned: AtomicU64,
    pub(crate) this: Weak<SegmentEngine>,
    pub(crate) hlc: OnceLock<crate::version::Hlc>,
    pub(crate) settings: settings::Settings,
    pub(crate) evlog: crate::evlog::EvictionLog,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
    bg: Mutex<Vec<JoinHandle<()>>>,
}

/// Key lock stripes (a power of two).
pub(crate) const KEY_LOCKS: usize = 4096;

/// Space taken for one object, counted as a pending write in its segment
/// until linked or abandoned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Space {
    pub loc: Loc,
    pub obj: Obj,
}

impl SegmentEngine {
    /// Segment size for a configuration: 1 MB, or `-I` when larger (an
    /// item `item_size_ok` accepts takes less than `-I` here: its header
    /// is smaller than the slab engine's, which `-I` is counted with).
    pub fn segment_size(cfg: &Config) -> usize {
        cfg.item_size_max.next_multiple_of(64).max(MIN_SEG_SIZE)
    }

    pub fn new(cfg: Config) -> Result<Arc<SegmentEngine>, ConfigError> {
        cfg.validate()?;
        if cfg.memory_file.is_some() {
            return Err(ConfigError(
                "the segment engine has no memory file (-e)".into(),
            ));
        }
        let seg_size = Self::segment_size(&cfg);
        if seg_size > index::MAX_SEG_SIZE {
            return Err(ConfigError("item size too large for segments".into()));
        }
        let nsegs = (cfg.mem_limit / seg_size).clamp(MIN_SEGS, index::MAX_SEGS);
        // Room in the table for `cache_memlimit` to raise the limit.
        let table = (nsegs * 4).min(index::MAX_SEGS);
        Ok(Arc::new_cyclic(|this| SegmentEngine {
            clock: Clock::new(),
            segs: Segs::new(table, nsegs, seg_size),
            index: Index::new(cfg.shards, cfg.hashpower_init),
            cas_id: AtomicU64::new(0),
            oldest_live: AtomicU32::new(0),
            oldest_cas: AtomicU64::new(0),
            curr_items: AtomicU64::new(0),
            total_items: AtomicU64::new(0),
            live_bytes: AtomicU64::new(0),
            live_meta: AtomicU64::new(0),
            c: SegCounters::default(),
            threads: Mutex::new(Vec::new()),
            evict_lock: Mutex::new(()),
            key_locks: (0..KEY_LOCKS).map(|_| Mutex::new(())).collect(),
            pinned: AtomicU64::new(0),
            this: this.clone(),
            hlc: OnceLock::new(),
            settings: settings::Settings::new(&cfg),
            evlog: Default::default(),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            bg: Mutex::new(Vec::new()),
            cfg,
        }))
    }

    /// Starts the clock and the expiry thread, which drops expired
    /// segments once a second.
    pub fn start(self: &Arc<Self>) {
        let mut bg = self.bg.lock();
        let e = Arc::clone(self);
        bg.push(spawn("mnemo-clock", move || {
            while !e.stop.load(Relaxed) {
                e.clock.tick();
                e.sleep(Duration::from_millis(250));
            }
        }));
        let e = Arc::clone(self);
        bg.push(spawn("mnemo-segexp", move || {
            while !e.stop.load(Relaxed) {
                e.expire_segments(e.clock.now());
                e.sleep(Duration::from_secs(1));
            }
        }));
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Relaxed);
        self.wake.1.notify_all();
        let handles: Vec<_> = self.bg.lock().drain(..).collect();
        for h in handles {
            let _ = h.join();
        }
    }

    fn sleep(&self, d: Duration) {
        let mut g = self.wake.0.lock();
        if !self.stop.load(Relaxed) {
            self.wake.1.wait_for(&mut g, d);
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn new_thread_stats(&self) -> Arc<ThreadStats> {
        let ts = Arc::new(ThreadStats::new());
        self.threads.lock().push(Arc::clone(&ts));
        ts
    }

    /// The shape of an object, with this engine's CAS setting.
    pub(crate) fn shape(&self, nkey: usize, flags: u32, exp: u32, nbytes: usize) -> Shape {
        Shape {
            nkey,
            nbytes,
            flags,
            exptime: exp,
            cas: self.cfg.use_cas,
        }
    }

    /// Whether an item of this shape can be stored at all (`-I`). The
    /// sizes accepted are the slab engine's: a 28-byte header (with CAS)
    /// plus key, value and the "\r\n" memcached counts.
    pub fn item_size_ok(&self, nkey: usize, flags: u32, nbytes: usize) -> bool {
        let header = if self.cfg.use_cas { 28 } else { 20 } + if flags != 0 { 4 } else { 0 };
        header + nkey + nbytes + 2 <= self.cfg.item_size_max && nkey <= crate::MAX_STORED_KEY
    }

    #[inline]
    pub(crate) fn next_cas(&self) -> u64 {
        if !self.cfg.use_cas {
            return 0;
        }
        if let Some(h) = self.hlc.get() {
            return h.next(crate::version::wall_unix_ms()).0;
        }
        self.cas_id.fetch_add(1, Relaxed) + 1
    }

    pub fn draw_cas(&self) -> u64 {
        self.next_cas()
    }

    /// Space for an object, evicting (or, under `-M`, reclaiming only
    /// dead objects) when no segment is free. Must not be called with a
    /// shard lock held (see the module doc); `evict` false takes only
    /// space that needs no eviction, which is safe under one.
    pub(crate) fn alloc(
        &self,
        key: &[u8],
        flags: u32,
        exp: u32,
        nbytes: usize,
        evict: bool,
    ) -> Option<Space> {
        let shape = self.shape(key.len(), flags, exp, nbytes);
        let size = shape.size();
        if size > self.segs.seg_size {
            return None;
        }
        let now = self.clock.now();
        let bucket = segs::bucket_for(exp, now);
        for _ in 0..8 {
            if let Some(loc) = self.segs.append(bucket, size, exp, now) {
                // SAFETY: `append` handed out `size` bytes at `loc` to this
                // caller alone (a pending write).
                let obj = unsafe { object::write_header(self.segs.ptr(loc), &shape, key, now) };
                return Some(Space { loc, obj });
            }
            if !evict || !self.make_room(now) {
                break;
            }
        }
        self.c.outofmemory.fetch_add(1, Relaxed);
        None
    }

    /// Copies `parts` into a fresh object's value.
    pub(crate) fn fill(&self, sp: Space, parts: &[&[u8]]) {
        let mut p = sp.obj.value_ptr();
        for part in parts {
            // SAFETY: the parts add up to the value length the space was
            // taken for, and the space is this caller's (pending write).
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), p, part.len());
                p = p.add(part.len());
            }
        }
    }

    /// Gives up a space without linking it: its bytes stay garbage until
    /// the segment goes.
    pub(crate) fn abandon(&self, sp: Space) {
        self.segs.done(sp.loc.seg);
    }

    /// The object at a location the caller keeps valid.
    #[inline]
    pub(crate) fn obj(&self, loc: Loc) -> Obj {
        // SAFETY: locations come from the index (under its shard lock), a
        // pin, a pending write or the evictor's walk, each of which keeps
        // the object's segment allocated and its header in place.
        unsafe { Obj::at(self.segs.ptr(loc)) }
    }

    /// The hash of the key stored at `loc` (for an index rehash).
    pub(crate) fn hash_at(&self, loc: Loc) -> u64 {
        crate::assoc::hash(self.obj(loc).key())
    }

    /// Counts object `loc` (of `size` bytes) in or out of the live totals.
    pub(crate) fn account(&self, loc: Loc, size: usize, add: bool) {
        let seg = self.segs.seg(loc.seg);
        let meta = self.obj(loc).header_len() as u64;
        if add {
            self.live_meta.fetch_add(meta, Relaxed);
            seg.live_items.fetch_add(1, Relaxed);
            seg.live_bytes.fetch_add(size as u64, Relaxed);
            self.curr_items.fetch_add(1, Relaxed);
            self.live_bytes.fetch_add(size as u64, Relaxed);
        } else {
            self.live_meta.fetch_sub(meta, Relaxed);
            seg.live_items.fetch_sub(1, Relaxed);
            seg.live_bytes.fetch_sub(size as u64, Relaxed);
            self.curr_items.fetch_sub(1, Relaxed);
            self.live_bytes.fetch_sub(size as u64, Relaxed);
        }
    }

    /// Expired, or invalidated by `flush_all`.
    #[inline]
    pub(crate) fn is_dead(&self, o: Obj, now: u32) -> bool {
        let exp = o.exptime();
        (exp != 0 && exp <= now) || self.is_flushed(o, now)
    }

    #[inline]
    pub(crate) fn is_flushed(&self, o: Obj, now: u32) -> bool {
        let oldest = self.oldest_live.load(Relaxed);
        if oldest == 0 || oldest > now {
            return false;
        }
        let oldest_cas = self.oldest_cas.load(Relaxed);
        let cas = o.cas();
        o.atime() <= oldest || (oldest_cas != 0 && cas != 0 && cas < oldest_cas)
    }

    /// Items pinned by replies right now.
    pub fn pinned_items(&self) -> u64 {
        self.pinned.load(Relaxed)
    }

    /// Every linked item, by walking the index (tests and checks).
    #[doc(hidden)]
    pub fn count_linked(&self) -> u64 {
        (0..self.index.nshards())
            .map(|i| self.index.lock_shard(i).len() as u64)
            .sum()
    }

    /// Checks the accounting: every index entry points at an object whose
    /// segment counts it, and the totals match. Tests call it.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let _ev = self.evict_lock.lock();
        let mut per = vec![(0u64, 0u64); self.segs.segs.len()];
        let mut n = 0u64;
        for i in 0..self.index.nshards() {
            let shard = self.index.lock_shard(i);
            for loc in shard.locs() {
                let o = self.obj(loc);
                let h = crate::assoc::hash(o.key());
                if shard.find_loc(h, loc).is_none() {
                    return Err(format!("entry {loc:?} not found by its own key"));
                }
                if loc.off as usize + o.size() > self.segs.seg(loc.seg).write.load(Relaxed) as usize
                {
                    return Err(format!("entry {loc:?} past its segment's end"));
                }
                per[loc.seg as usize].0 += 1;
                per[loc.seg as usize].1 += o.size() as u64;
                n += 1;
            }
        }
        for (s, (items, bytes)) in per.iter().enumerate() {
            let seg = &self.segs.segs[s];
            let (li, lb) = (seg.live_items.load(Relaxed), seg.live_bytes.load(Relaxed));
            if u64::from(li) != *items || lb != *bytes {
                return Err(format!(
                    "segment {s}: counts {li} items {lb} bytes, index {items} items {bytes} bytes"
                ));
            }
        }
        let curr = self.curr_items.load(Relaxed);
        if curr != n {
            return Err(format!("curr_items {curr}, index holds {n}"));
        }
        Ok(())
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("spawn engine thread")
}

impl Drop for SegmentEngine {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

// Handles move between threads.
const _: () = {
    const fn send<T: Send + Sync>() {}
    send::<SegmentEngine>();
};
