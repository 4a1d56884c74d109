//! The engine: slabs + index + LRU, the allocation and unlink paths every
//! operation shares, background threads and stats.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::assoc::{hash, Index, Shard};
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::crawler::CrawlerState;
use crate::item::{
    Layout, Raw, Seg, ACTIVE, CHAINED, CHAIN_CHUNK, FETCHED, HAS_FLAGS, LINKED, NKEY_SHIFT,
};
use crate::mover::MoverState;
use crate::slabs::ChunkId;
use crate::slabs::{ClassState, SlabClassInfo, Slabs};
use crate::stats::{ClassReqSum, EngineStats, ThreadStats};

pub struct SlabEngine {
    pub(crate) cfg: Config,
    pub(crate) clock: Clock,
    pub(crate) slabs: Slabs,
    pub(crate) index: Index,
    pub(crate) cas_id: AtomicU64,
    pub(crate) oldest_live: AtomicU32,
    pub(crate) oldest_cas: AtomicU64,
    pub(crate) total_items: AtomicU64,
    pub(crate) mem_limit: AtomicU64,
    pub(crate) threads: Mutex<Vec<Arc<ThreadStats>>>,
    pub(crate) juggles: AtomicU64,
    pub(crate) crawler: CrawlerState,
    pub(crate) mover: MoverState,
    pub(crate) tuning: crate::tuning::Tuning,
    pub(crate) stop: AtomicBool,
    /// Wakes background threads early (shutdown, crawl requests).
    pub(crate) wake: (Mutex<()>, Condvar),
    bg: Mutex<Vec<JoinHandle<()>>>,
    /// Items pinned by `ItemRef::pin` right now, all classes.
    pub(crate) pinned: AtomicU64,
    /// This engine, for the handles `ItemRef::pin` gives out.
    pub(crate) this: std::sync::Weak<SlabEngine>,
    /// Where evictions are reported for `watch evictions`.
    pub(crate) evlog: crate::evlog::EvictionLog,
    /// How the memory file (`-e`) was found at start.
    pub(crate) restart: crate::restart::RestartOutcome,
    /// Set only under replication (`apply.rs`): CAS words are then HLC
    /// versions. Unset, `next_cas` is memcached's counter.
    pub(crate) hlc: std::sync::OnceLock<crate::version::Hlc>,
}

/// The slab engine's name before the engine interface, still used by
/// `apply.rs` (the replication work's file this session); drop it once
/// that file says `SlabEngine`.
pub(crate) use self::SlabEngine as Engine;

impl SlabEngine {
    /// Builds an engine; no memory is taken until items arrive.
    pub fn new(cfg: Config) -> Result<Arc<SlabEngine>, ConfigError> {
        cfg.validate()?;
        let layout = Layout::new(cfg.use_cas);
        let fresh = || {
            let slabs = Slabs::new(
                layout,
                cfg.page_size,
                cfg.growth_factor,
                cfg.chunk_size,
                cfg.chunk_max(),
                cfg.mem_limit,
                cfg.huge_pages && cfg.memory_file.is_none(),
            );
            (slabs, Index::new(cfg.shards, cfg.hashpower_init))
        };
        let (mut slabs, mut index) = fresh();
        let (restart, resumed) = match &cfg.memory_file {
            Some(path) => crate::restart::open(&cfg, path, &mut slabs, &mut index, fresh)?,
            None => (crate::restart::RestartOutcome::NoFile, None),
        };
        let (clock, cas_id, oldest_live, oldest_cas) = match resumed {
            Some(r) => (r.clock, r.cas_id, r.oldest_live, r.oldest_cas),
            None => (Clock::new(), 0, 0, 0),
        };
        Ok(Arc::new_cyclic(|this| SlabEngine {
            pinned: AtomicU64::new(0),
            this: this.clone(),
            evlog: Default::default(),
            clock,
            slabs,
            index,
            cas_id: AtomicU64::new(cas_id),
            oldest_live: AtomicU32::new(oldest_live),
            oldest_cas: AtomicU64::new(oldest_cas),
            restart,
            total_items: AtomicU64::new(0),
            mem_limit: AtomicU64::new(cfg.mem_limit as u64),
            threads: Mutex::new(Vec::new()),
            juggles: AtomicU64::new(0),
            crawler: CrawlerState::new(&cfg),
            mover: MoverState::new(&cfg),
            tuning: crate::tuning::Tuning::new(&cfg),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            bg: Mutex::new(Vec::new()),
            hlc: std::sync::OnceLock::new(),
            cfg,
        }))
    }

    /// Starts the clock, and the LRU maintainer, crawler and page mover
    /// threads the configuration asks for.
    pub fn start(self: &Arc<Self>) {
        let mut bg = self.bg.lock();
        let e = Arc::clone(self);
        bg.push(spawn("mnemo-clock", move || {
            while !e.stop.load(Relaxed) {
                e.clock.tick();
                e.sleep(Duration::from_millis(250));
            }
        }));
        if self.cfg.lru_maintainer {
            let e = Arc::clone(self);
            bg.push(spawn("mnemo-lru", move || e.maintainer_loop()));
        }
        let e = Arc::clone(self);
        bg.push(spawn("mnemo-crawler", move || e.crawler_loop()));
        let e = Arc::clone(self);
        bg.push(spawn("mnemo-slabmove", move || e.mover_loop()));
    }

    /// Stops and joins the background threads.
    pub fn shutdown(&self) {
        self.stop.store(true, Relaxed);
        self.wake.1.notify_all();
        let handles: Vec<_> = self.bg.lock().drain(..).collect();
        for h in handles {
            let _ = h.join();
        }
    }

    /// Sleeps up to `d`, returning early on shutdown or a wake-up.
    pub(crate) fn sleep(&self, d: Duration) {
        let mut g = self.wake.0.lock();
        if !self.stop.load(Relaxed) {
            self.wake.1.wait_for(&mut g, d);
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The settings in force, with run-time changes applied.
    pub fn config(&self) -> Config {
        let mut c = self.cfg.clone();
        c.mem_limit = self.mem_limit.load(Relaxed) as usize;
        c.slab_automove = self.mover.automove.load(Relaxed);
        c.lru_crawler = self.crawler.enabled.load(Relaxed);
        c.lru_crawler_sleep = self.crawler.sleep_us.load(Relaxed);
        c.lru_crawler_tocrawl = self.crawler.tocrawl.load(Relaxed);
        self.tuning.write_into(&mut c);
        c
    }

    pub fn slab_classes(&self) -> Vec<SlabClassInfo> {
        self.slabs.info()
    }

    pub fn new_thread_stats(&self) -> Arc<ThreadStats> {
        let ts = Arc::new(ThreadStats::new());
        self.threads.lock().push(Arc::clone(&ts));
        ts
    }

    /// Whether an item of this shape can be stored at all (`-I`).
    pub fn item_size_ok(&self, nkey: usize, flags: u32, nbytes: usize) -> bool {
        // memcached counts the value's "\r\n" against -I; so do we, so the
        // same sizes are accepted and refused.
        self.slabs.layout.item_size(nkey, flags, nbytes + 2) <= self.cfg.item_size_max
            && nkey <= crate::MAX_STORED_KEY
    }

    #[inline]
    pub(crate) fn next_cas(&self) -> u64 {
        if self.cfg.use_cas {
            if let Some(h) = self.hlc.get() {
                return Self::next_version(h);
            }
            self.cas_id.fetch_add(1, Relaxed) + 1
        } else {
            0
        }
    }

    /// The one place a write's replication version is drawn. Out of line
    /// so that the clock read and compare-exchange loop are not inlined
    /// into every store path; replication off, `next_cas` costs one load
    /// and branch more than before (2 instructions a set, callgrind).
    #[inline(never)]
    fn next_version(h: &crate::version::Hlc) -> u64 {
        h.next(crate::version::wall_unix_ms()).0
    }

    /// Expired, or invalidated by `flush_all`.
    #[inline]
    pub(crate) fn is_dead(&self, id: ChunkId, now: u32) -> bool {
        // SAFETY: fresh from `alloc_chunk`: unlinked and ours alone until linked or freed.
        // SAFETY: every caller holds either the shard lock under which
        // `id` is live or the class lock of `id`'s class with `id` on its LRU or
        // in its page: either keeps the chunk allocated for this call.
        let raw = unsafe { self.slabs.raw(id) };
        let exp = raw.exptime();
        (exp != 0 && exp <= now) || self.is_flushed(raw, now)
    }

    #[inline]
    pub(crate) fn is_flushed(&self, raw: Raw<'_>, now: u32) -> bool {
        let oldest = self.oldest_live.load(Relaxed);
        if oldest == 0 || oldest > now {
            return false;
        }
        let oldest_cas = self.oldest_cas.load(Relaxed);
        let cas = raw.cas();
        raw.atime() <= oldest || (oldest_cas != 0 && cas != 0 && cas < oldest_cas)
    }

    /// Bytes an item is charged in `bytes` and `mem_requested`.
    pub(crate) fn charged_size(&self, raw: Raw<'_>) -> usize {
        self.slabs.layout.charged_size(raw)
    }

    // ---- allocation ---------------------------------------------------

    /// A chunk of class `ci`: from its free list, a new page, an eviction,
    /// or a page taken from another class. None means out of memory.
    pub(crate) fn alloc_chunk(&self, ci: usize) -> Option<ChunkId> {
        let class = &self.slabs.classes[ci];
        let mut st = class.state.lock();
        let now = self.clock.now();
        let flat = !self.tuning.segmented();
        for _ in 0..16 {
            if flat {
                self.reclaim_cold_tail(&mut st, ci, now);
            }
            if let Some(id) = self.slabs.free_pop(&mut st) {
                return Some(id);
            }
            if let Some(page) = self.slabs.take_page(st.pages.is_empty()) {
                self.slabs.carve(ci, &mut st, page);
                continue;
            }
            // memcached's direct_reclaims: a request had to free memory
            // itself rather than find it free.
            if self.cfg.evict_to_free {
                if self.evict_one(&mut st, ci, now) {
                    st.c.direct_reclaims += 1;
                    continue;
                }
            } else if self.reclaim_dead_tail(&mut st, ci, now) {
                st.c.direct_reclaims += 1;
                continue;
            }
            // Nothing of our own to give up. As in memcached, no page is
            // taken from another class on the request path: every class
            // gets its first page even past the limit (`take_page`), and
            // the automover brings more from the global pool.
            break;
        }
        st.c.outofmemory += 1;
        None
    }

    /// With `-M`: frees expired items at the tails, never live ones.
    fn reclaim_dead_tail(&self, st: &mut ClassState, ci: usize, now: u32) -> bool {
        for seg in [Seg::Cold, Seg::Hot, Seg::Warm, Seg::Temp] {
            let mut id = st.lru[seg as usize].tail;
            let mut n = 0;
            while id != ChunkId::NIL && n < 5 {
                // SAFETY: `id` is on this class's LRU and its class lock (`st`) is held.
                let prev = unsafe { self.slabs.raw(id) }.prev();
                if self.is_dead(id, now) && self.reclaim(st, ci, id, true) {
                    return true;
                }
                id = prev;
                n += 1;
            }
        }
        false
    }

    /// Allocates and fills the header of an unlinked item. The value is
    /// left for the caller to write with `fill_value`.
    pub(crate) fn alloc_item(
        &self,
        key: &[u8],
        flags: u32,
        exptime: u32,
        nbytes: usize,
    ) -> Option<(ChunkId, Raw<'_>)> {
        let l = self.slabs.layout;
        let size = l.item_size(key.len(), flags, nbytes);
        let chunk_max = self.cfg.chunk_max();
        let flags_bits = if flags != 0 { HAS_FLAGS } else { 0 };
        let nkey_bits = (key.len() as u32) << NKEY_SHIFT;
        let (id, raw) = if size <= chunk_max {
            let ci = self.slabs.class_for(size)?;
            let id = self.alloc_chunk(ci)?;
            // SAFETY: fresh from `alloc_chunk`: unlinked and ours alone until the
            // caller links or frees it.
            let raw = unsafe { self.slabs.raw(id) };
            raw.set_meta(nbytes as u32 | nkey_bits | flags_bits);
            (id, raw)
        } else {
            let ci = self.slabs.largest();
            let fixed = l.item_size(key.len(), flags, 0) + 8;
            let per_chunk = chunk_max - l.header();
            // Smallest n with head room + n chunks >= nbytes.
            let mut n = 0usize;
            loop {
                let head_room = chunk_max.checked_sub(fixed + 4 * n)?;
                if head_room + n * per_chunk >= nbytes {
                    break;
                }
                n += 1;
            }
            let head_room = chunk_max - fixed - 4 * n;
            let head_id = self.alloc_chunk(ci)?;
            // SAFETY: fresh from `alloc_chunk`: unlinked and ours alone.
            let head = unsafe { self.slabs.raw(head_id) };
            head.set_meta(nkey_bits | flags_bits | CHAINED | nbytes.min(head_room) as u32);
            let mut ids = Vec::with_capacity(n);
            let mut left = nbytes.saturating_sub(head_room);
            for _ in 0..n {
                let Some(cid) = self.alloc_chunk(ci) else {
                    let mut st = self.slabs.classes[ci].state.lock();
                    for id in ids {
                        self.slabs.free_push(&mut st, id);
                    }
                    self.slabs.free_push(&mut st, head_id);
                    return None;
                };
                // SAFETY: fresh from `alloc_chunk`: ours alone, like its head.
                let c = unsafe { self.slabs.raw(cid) };
                let here = left.min(per_chunk);
                left -= here;
                c.set_prev(head_id);
                c.set_meta(CHAIN_CHUNK | here as u32);
                ids.push(cid);
            }
            // Key first: the chain table's position depends on nkey.
            // SAFETY: the chunk is ours until linked; sizes checked above.
            unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), head.key_ptr(), key.len()) };
            head.set_chain_word(0, nbytes as u32);
            head.set_chain_word(1, n as u32);
            for (i, id) in ids.iter().enumerate() {
                head.set_chain_id(i, *id);
            }
            (head_id, head)
        };
        raw.set_cas(0);
        raw.init_exptime(exptime);
        raw.init_access(self.clock.now());
        if flags != 0 {
            raw.init_flags(flags);
        }
        // SAFETY: the chunk is ours until linked; room for the key checked.
        unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), raw.key_ptr(), key.len()) };
        Some((id, raw))
    }

    /// Calls `f` with each stored part of an item's value, in order; the
    /// parts live as long as the item's view.
    pub(crate) fn for_each_value_part<'g>(&self, raw: Raw<'g>, mut f: impl FnMut(&'g [u8])) {
        f(raw.value_part());
        if raw.is_chained() {
            for i in 0..raw.chain_len() {
                f(self.slabs.chain_chunk(raw, i).value_part());
            }
        }
    }

    /// Calls `f` with a pointer to and the length of each value part.
    pub(crate) fn for_each_value_part_ptr(&self, raw: Raw<'_>, mut f: impl FnMut(*mut u8, usize)) {
        let (p, n) = raw.value_part_ptr();
        f(p, n);
        if raw.is_chained() {
            for i in 0..raw.chain_len() {
                let (p, n) = self.slabs.chain_chunk(raw, i).value_part_ptr();
                f(p, n);
            }
        }
    }

    /// Writes the concatenation of `sources` into an unlinked item's value.
    pub(crate) fn fill_value(&self, raw: Raw<'_>, sources: &[&[u8]]) {
        let mut sources = sources.iter().copied();
        let mut src: &[u8] = sources.next().unwrap_or(&[]);
        self.for_each_value_part_ptr(raw, |p, len| {
            let mut off = 0;
            while off < len {
                while src.is_empty() {
                    match sources.next() {
                        Some(s) => src = s,
                        None => return,
                    }
                }
                let n = (len - off).min(src.len());
                // SAFETY: `off + n <= len`, inside this part of an item that
                // is unlinked and private to the caller; `src` is another
                // allocation (a client's bytes or another item's value).
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p.add(off), n) };
                src = &src[n..];
                off += n;
            }
        });
    }

    /// Returns an unlinked item's chunks to their class.
    pub(crate) fn free_item(&self, id: ChunkId) {
        let ci = self.slabs.class_of(id);
        let mut st = self.slabs.classes[ci].state.lock();
        self.free_item_locked(&mut st, id);
    }

    /// As `free_item`, with the item's class already locked. Chain chunks
    /// live in the same (largest) class as their head.
    pub(crate) fn free_item_locked(&self, st: &mut ClassState, id: ChunkId) {
        if let Some(pin) = (!st.pins.is_empty())
            .then(|| st.pins.get_mut(&id))
            .flatten()
        {
            // A reply still sends these bytes: the chunks stay as they are
            // (neither free nor linked, so the page mover waits) until the
            // last `Pinned` is dropped.
            pin.unlinked = true;
            return;
        }
        // SAFETY: the caller holds the class lock (`st`) and the item is
        // unlinked and now unreferenced: nothing else reads its chunks.
        let raw = unsafe { self.slabs.raw(id) };
        if raw.is_chained() {
            for i in 0..raw.chain_len() {
                self.slabs.free_push(st, raw.chain_id(i));
            }
        }
        self.slabs.free_push(st, id);
    }

    // ---- link / unlink --------------------------------------------------

    /// Links a filled item into the index (replacing `old` if given) and
    /// the LRU. The caller holds the key's shard lock.
    pub(crate) fn link(&self, shard: &mut Shard, h: u64, id: ChunkId, old: Option<ChunkId>) {
        // SAFETY: the item is filled and unlinked, ours until this call
        // publishes it under the shard lock the caller holds.
        let raw = unsafe { self.slabs.raw(id) };
        let size = self.charged_size(raw) as u64;
        match old {
            Some(o) => {
                shard.replace(h, o, id);
                self.unlink_from_lru_and_free(o);
            }
            None => shard.insert(h, id),
        }
        // In flat mode COLD is the only LRU besides TEMP, as in memcached.
        let plain = if self.tuning.segmented() {
            Seg::Hot
        } else {
            Seg::Cold
        };
        let seg = if self.tuning.temp_lru.load(Relaxed) {
            let exp = raw.exptime();
            if exp != 0
                && exp.saturating_sub(self.clock.now()) <= self.tuning.temp_ttl.load(Relaxed)
            {
                Seg::Temp
            } else {
                plain
            }
        } else {
            plain
        };
        let ci = self.slabs.class_of(id);
        let mut st = self.slabs.classes[ci].state.lock();
        raw.set_meta_bits(LINKED, true);
        self.slabs.lru_link(&mut st, id, seg, size);
        st.requested += size;
        drop(st);
        self.total_items.fetch_add(1, Relaxed);
    }

    /// Takes an item out of the index and frees it. The caller holds the
    /// key's shard lock.
    pub(crate) fn unlink(&self, shard: &mut Shard, h: u64, id: ChunkId) {
        shard.remove(h, id);
        self.unlink_from_lru_and_free(id);
    }

    fn unlink_from_lru_and_free(&self, id: ChunkId) {
        // SAFETY: `id` is linked under the shard lock the caller holds.
        let raw = unsafe { self.slabs.raw(id) };
        let ci = self.slabs.class_of(id);
        let mut st = self.slabs.classes[ci].state.lock();
        let size = self.charged_size(raw) as u64;
        self.slabs.lru_unlink(&mut st, id, size);
        st.requested -= size;
        raw.set_meta_bits(LINKED, false);
        self.free_item_locked(&mut st, id);
    }

    /// From a class-side walk: removes an expired or flushed item if its
    /// shard can be locked without waiting.
    pub(crate) fn reclaim(
        &self,
        st: &mut ClassState,
        _ci: usize,
        id: ChunkId,
        _tail: bool,
    ) -> bool {
        // SAFETY: `id` is on this class's LRU (or page) and its class lock (`st`)
        // is held, so the chunk stays allocated; the key is read before the
        // shard is locked, which is fine: it cannot change while allocated.
        let raw = unsafe { self.slabs.raw(id) };
        let h = hash(raw.key());
        let Some(mut shard) = self.index.try_lock(h) else {
            return false;
        };
        let fetched = raw.access_bits() & FETCHED != 0;
        self.unlink_class_side(&mut shard, st, h, id);
        st.c.reclaimed += 1;
        if !fetched {
            st.c.expired_unfetched += 1;
        }
        true
    }

    /// From a class-side walk: evicts a live item if its shard can be
    /// locked without waiting.
    pub(crate) fn evict(&self, st: &mut ClassState, _ci: usize, id: ChunkId, now: u32) -> bool {
        // SAFETY: as in `reclaim`: on this class's LRU, class lock held.
        let raw = unsafe { self.slabs.raw(id) };
        let h = hash(raw.key());
        let Some(mut shard) = self.index.try_lock(h) else {
            return false;
        };
        let bits = raw.access_bits();
        st.c.evicted += 1;
        st.c.evicted_time = now.saturating_sub(raw.atime());
        if raw.exptime() != 0 {
            st.c.evicted_nonzero += 1;
        }
        if bits & FETCHED == 0 {
            st.c.evicted_unfetched += 1;
        }
        if bits & ACTIVE != 0 {
            st.c.evicted_active += 1;
        }
        if self.evlog.enabled() {
            let exp = raw.exptime();
            self.evlog.emit(&crate::Eviction {
                key: raw.key(),
                ttl: if exp > 0 {
                    i64::from(exp) - i64::from(now)
                } else {
                    -1
                },
                last_access: now.wrapping_sub(raw.atime()),
                fetched: bits & FETCHED != 0,
                class_id: self.slabs.class_of(id) as u32 + 1,
                size: raw.value_len(),
            });
        }
        self.unlink_class_side(&mut shard, st, h, id);
        true
    }

    /// Unlinks with both the shard and the item's class locked.
    pub(crate) fn unlink_class_side(
        &self,
        shard: &mut Shard,
        st: &mut ClassState,
        h: u64,
        id: ChunkId,
    ) {
        // SAFETY: the caller holds the item's shard lock (`shard`) and its class
        // lock (`st`), and the item is linked.
        let raw = unsafe { self.slabs.raw(id) };
        shard.remove(h, id);
        let size = self.charged_size(raw) as u64;
        self.slabs.lru_unlink(st, id, size);
        st.requested -= size;
        raw.set_meta_bits(LINKED, false);
        self.free_item_locked(st, id);
    }

    /// Counts a set in the class of an allocated item.
    pub(crate) fn ts_count_set_in(&self, id: ChunkId, ts: &ThreadStats) {
        ts.class[self.slabs.class_of(id) + 1].cmd_set.incr();
    }

    /// Finds `key` in a locked shard.
    #[inline]
    pub(crate) fn find(&self, shard: &Shard, h: u64, key: &[u8]) -> Option<ChunkId> {
        // SAFETY: ids in a locked shard (`&Shard` exists only under its guard)
        // are linked items, allocated while the lock is held.
        shard.find(h, |id| unsafe { self.slabs.raw(id) }.key() == key)
    }

    // ---- stats ------------------------------------------------------------

    fn sum_threads(&self) -> (EngineStats, Vec<ClassReqSum>) {
        let mut s = EngineStats::default();
        let mut per = vec![ClassReqSum::default(); self.slabs.classes.len() + 1];
        for t in self.threads.lock().iter() {
            s.get_misses += t.get_misses.get();
            s.get_expired += t.get_expired.get();
            s.get_flushed += t.get_flushed.get();
            s.delete_misses += t.delete_misses.get();
            s.incr_misses += t.incr_misses.get();
            s.decr_misses += t.decr_misses.get();
            s.cas_misses += t.cas_misses.get();
            s.touch_misses += t.touch_misses.get();
            for (ci, p) in per.iter_mut().enumerate().skip(1) {
                let c = &t.class[ci];
                p.get_hits += c.get_hits.get();
                p.cmd_set += c.cmd_set.get();
                p.delete_hits += c.delete_hits.get();
                p.incr_hits += c.incr_hits.get();
                p.decr_hits += c.decr_hits.get();
                p.cas_hits += c.cas_hits.get();
                p.cas_badval += c.cas_badval.get();
                p.touch_hits += c.touch_hits.get();
                for (sum, h) in p.hits_to.iter_mut().zip(&c.hits_to) {
                    *sum += h.get();
                }
            }
        }
        for p in &per {
            s.get_hits += p.get_hits;
            s.cmd_set += p.cmd_set;
            s.delete_hits += p.delete_hits;
            s.incr_hits += p.incr_hits;
            s.decr_hits += p.decr_hits;
            s.cas_hits += p.cas_hits;
            s.cas_badval += p.cas_badval;
            s.touch_hits += p.touch_hits;
        }
        (s, per)
    }

    /// The engine's part of the general `stats` block.
    pub fn stats(&self) -> EngineStats {
        let (mut s, _) = self.sum_threads();
        for class in &self.slabs.classes {
            let st = class.state.lock();
            s.curr_items += st.items();
            s.bytes += st.lru.iter().map(|l| l.bytes).sum::<u64>();
            s.items.add(&st.c);
        }
        let (slots, _) = self.index.size();
        s.hash_power_level = usize::BITS - 1 - slots.leading_zeros();
        s.hash_bytes = (slots * 8) as u64;
        s.hash_is_expanding = 0;
        s.total_items = self.total_items.load(Relaxed);
        s.limit_maxbytes = self.mem_limit.load(Relaxed);
        s.malloc_fails = self.slabs.malloc_fails.load(Relaxed);
        s.total_malloced = self.slabs.total_malloced.load(Relaxed);
        s.slab_global_page_pool = self.slabs.pool_pages() as u64;
        s.lru_maintainer_juggles = self.juggles.load(Relaxed);
        self.crawler.fill_stats(&mut s);
        self.mover.fill_stats(&mut s);
        s
    }

    /// `stats items`, in memcached's names and order. Like memcached, the
    /// per-segment lines appear only with the LRU maintainer, and
    /// `number_temp` only while the TEMP LRU is on.
    pub fn stats_items(&self) -> Vec<(String, String)> {
        let (_, per) = self.sum_threads();
        let now = self.clock.now();
        let maintainer = self.cfg.lru_maintainer;
        let temp_lru = self.tuning.temp_lru.load(Relaxed);
        let mut out = Vec::new();
        for (ci, class) in self.slabs.classes.iter().enumerate() {
            let st = class.state.lock();
            let n = st.items();
            if n == 0 && st.pages.is_empty() {
                continue;
            }
            let hits_to = per[ci + 1].hits_to;
            let age = |seg: Seg| {
                let t = st.lru[seg as usize].tail;
                if t == ChunkId::NIL {
                    0
                } else {
                    // SAFETY: the tail of one of this class's LRUs, class lock (`st`) held.
                    now.saturating_sub(unsafe { self.slabs.raw(t) }.atime())
                }
            };
            let id = class.id;
            let mut put = |k: &str, v: String| out.push((format!("items:{id}:{k}"), v));
            put("number", n.to_string());
            if maintainer {
                put("number_hot", st.lru[Seg::Hot as usize].count.to_string());
                put("number_warm", st.lru[Seg::Warm as usize].count.to_string());
                put("number_cold", st.lru[Seg::Cold as usize].count.to_string());
                if temp_lru {
                    put("number_temp", st.lru[Seg::Temp as usize].count.to_string());
                }
                put("age_hot", age(Seg::Hot).to_string());
                put("age_warm", age(Seg::Warm).to_string());
            }
            put("age", age(Seg::Cold).to_string());
            put("mem_requested", st.requested.to_string());
            put("evicted", st.c.evicted.to_string());
            put("evicted_nonzero", st.c.evicted_nonzero.to_string());
            put("evicted_time", st.c.evicted_time.to_string());
            put("outofmemory", st.c.outofmemory.to_string());
            put("tailrepairs", st.c.tailrepairs.to_string());
            put("reclaimed", st.c.reclaimed.to_string());
            put("expired_unfetched", st.c.expired_unfetched.to_string());
            put("evicted_unfetched", st.c.evicted_unfetched.to_string());
            if maintainer {
                put("evicted_active", st.c.evicted_active.to_string());
            }
            put("crawler_reclaimed", st.c.crawler_reclaimed.to_string());
            put(
                "crawler_items_checked",
                st.c.crawler_items_checked.to_string(),
            );
            put("lrutail_reflocked", st.c.lrutail_reflocked.to_string());
            if !maintainer {
                continue;
            }
            put("moves_to_cold", st.c.moves_to_cold.to_string());
            put("moves_to_warm", st.c.moves_to_warm.to_string());
            put("moves_within_lru", st.c.moves_within_lru.to_string());
            put("direct_reclaims", st.c.direct_reclaims.to_string());
            put("hits_to_hot", hits_to[Seg::Hot as usize].to_string());
            put("hits_to_warm", hits_to[Seg::Warm as usize].to_string());
            put("hits_to_cold", hits_to[Seg::Cold as usize].to_string());
            put("hits_to_temp", hits_to[Seg::Temp as usize].to_string());
        }
        out
    }

    /// `stats slabs`, in memcached's names and order.
    pub fn stats_slabs(&self) -> Vec<(String, String)> {
        let (_, per) = self.sum_threads();
        let mut out = Vec::new();
        let mut active = 0;
        for (ci, class) in self.slabs.classes.iter().enumerate() {
            let st = class.state.lock();
            if st.pages.is_empty() {
                continue;
            }
            active += 1;
            let id = class.id;
            let total_chunks = st.pages.len() * class.perslab;
            let used = total_chunks as u64 - st.free_count;
            let p = per[ci + 1];
            let mut put = |k: &str, v: String| out.push((format!("{id}:{k}"), v));
            put("chunk_size", class.size.to_string());
            put("chunks_per_page", class.perslab.to_string());
            put("total_pages", st.pages.len().to_string());
            put("total_chunks", total_chunks.to_string());
            put("used_chunks", used.to_string());
            put("free_chunks", st.free_count.to_string());
            put("free_chunks_end", "0".to_string());
            put("get_hits", p.get_hits.to_string());
            put("cmd_set", p.cmd_set.to_string());
            put("delete_hits", p.delete_hits.to_string());
            put("incr_hits", p.incr_hits.to_string());
            put("decr_hits", p.decr_hits.to_string());
            put("cas_hits", p.cas_hits.to_string());
            put("cas_badval", p.cas_badval.to_string());
            put("touch_hits", p.touch_hits.to_string());
        }
        out.push(("active_slabs".into(), active.to_string()));
        out.push((
            "total_malloced".into(),
            self.slabs.total_malloced.load(Relaxed).to_string(),
        ));
        out
    }

    /// Draws a CAS unique as a store would (0 without CAS). memcached's
    /// `stats sizes_enable` draws one to mark where its histogram starts.
    pub fn draw_cas(&self) -> u64 {
        self.next_cas()
    }

    /// `stats sizes`: items by their size rounded up to 32 bytes, as
    /// memcached's histogram buckets them. Only items whose CAS is at
    /// least `min_cas` count: memcached's histogram counts items as they
    /// are linked after it is switched on, and knows them by their CAS.
    pub fn stats_sizes(&self, min_cas: u64) -> Vec<(String, String)> {
        let mut hist = std::collections::BTreeMap::<usize, u64>::new();
        for class in &self.slabs.classes {
            let st = class.state.lock();
            for seg in Seg::ALL {
                let mut id = st.lru[seg as usize].head;
                while id != ChunkId::NIL {
                    // SAFETY: on this class's LRU, class lock (`st`) held.
                    let raw = unsafe { self.slabs.raw(id) };
                    if raw.cas() >= min_cas {
                        let size = self.charged_size(raw) + 2;
                        *hist.entry(size.div_ceil(32) * 32).or_default() += 1;
                    }
                    id = raw.next();
                }
            }
        }
        hist.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `stats reset`: the request counters and per-class event counters.
    pub fn stats_reset(&self) {
        for t in self.threads.lock().iter() {
            t.reset();
        }
        for class in &self.slabs.classes {
            let mut st = class.state.lock();
            st.c = Default::default();
        }
        self.total_items.store(0, Relaxed);
        self.juggles.store(0, Relaxed);
        self.mover.reset_stats();
        self.crawler.reset_stats();
    }

    /// `cache_memlimit`: raises or lowers the page budget. Lowering frees
    /// spare pages at once and makes the mover hand back pages until the
    /// pool fits.
    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), ConfigError> {
        // memcached cannot resize memory it preallocated, which `-e` implies.
        if self.cfg.memory_file.is_some() {
            return Err(ConfigError("memory file in use".into()));
        }
        let pages = bytes / self.cfg.page_size;
        if pages > crate::slabs::MAX_PAGES || pages == 0 {
            return Err(ConfigError("memory limit out of range".into()));
        }
        self.slabs.pool.lock().limit = pages;
        self.mem_limit.store(bytes as u64, Relaxed);
        self.slabs.trim_spare();
        self.mover.shed.store(true, Relaxed);
        self.wake.1.notify_all();
        Ok(())
    }

    /// Removes `key` without counting it anywhere (memcached's unlink after
    /// a failed `set`, which must not leave the old value readable).
    pub fn unlink_key(&self, key: &[u8]) {
        let h = hash(key);
        let mut shard = self.index.lock(h);
        if let Some(id) = self.find(&shard, h, key) {
            self.unlink(&mut shard, h, id);
        }
    }

    /// Every linked item, by walking the index (tests and consistency checks).
    #[doc(hidden)]
    pub fn count_linked(&self) -> u64 {
        let mut n = 0;
        for i in 0..self.index.nshards() {
            n += self.index.lock_shard(i).ids().count() as u64;
        }
        n
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("spawn engine thread")
}

impl Drop for SlabEngine {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}
