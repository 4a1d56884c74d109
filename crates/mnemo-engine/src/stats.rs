//! Counters. Request counters live per worker thread (one writer, so a
//! relaxed load+store, no locked instruction) and are summed when a client
//! asks for `stats`, as memcached sums its per-thread stats.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::slabs::MAX_CLASSES;

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Only the owning thread calls this, so no read-modify-write is needed.
    #[inline]
    pub fn incr(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_add(1), Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    fn reset(&self) {
        self.0.store(0, Relaxed);
    }
}

/// Per-class request counters (memcached's `slab_stats`).
#[derive(Default)]
pub(crate) struct ClassReq {
    pub get_hits: Counter,
    pub cmd_set: Counter,
    pub delete_hits: Counter,
    pub incr_hits: Counter,
    pub decr_hits: Counter,
    pub cas_hits: Counter,
    pub cas_badval: Counter,
    pub touch_hits: Counter,
    /// Reads that found the item in HOT, WARM, COLD, TEMP.
    pub hits_to: [Counter; 4],
}

/// One worker thread's engine counters. Get one from
/// `SlabEngine::new_thread_stats` and pass it to every operation.
pub struct ThreadStats {
    pub(crate) class: Box<[ClassReq]>,
    pub(crate) get_misses: Counter,
    pub(crate) get_expired: Counter,
    pub(crate) get_flushed: Counter,
    pub(crate) delete_misses: Counter,
    pub(crate) incr_misses: Counter,
    pub(crate) decr_misses: Counter,
    pub(crate) cas_misses: Counter,
    pub(crate) touch_misses: Counter,
}

impl ThreadStats {
    /// Reads this thread dropped so far because their item had expired,
    /// and because it had been flushed: a caller comparing them around a
    /// read learns why it missed (memcached's `watch fetchers` status).
    pub fn expired_flushed(&self) -> (u64, u64) {
        (self.get_expired.get(), self.get_flushed.get())
    }

    pub(crate) fn new() -> ThreadStats {
        ThreadStats {
            class: (0..MAX_CLASSES).map(|_| ClassReq::default()).collect(),
            get_misses: Counter::default(),
            get_expired: Counter::default(),
            get_flushed: Counter::default(),
            delete_misses: Counter::default(),
            incr_misses: Counter::default(),
            decr_misses: Counter::default(),
            cas_misses: Counter::default(),
            touch_misses: Counter::default(),
        }
    }

    pub(crate) fn reset(&self) {
        for c in self.class.iter() {
            for x in [
                &c.get_hits,
                &c.cmd_set,
                &c.delete_hits,
                &c.incr_hits,
                &c.decr_hits,
                &c.cas_hits,
                &c.cas_badval,
                &c.touch_hits,
                &c.hits_to[0],
                &c.hits_to[1],
                &c.hits_to[2],
                &c.hits_to[3],
            ] {
                x.reset();
            }
        }
        for x in [
            &self.get_misses,
            &self.get_expired,
            &self.get_flushed,
            &self.delete_misses,
            &self.incr_misses,
            &self.decr_misses,
            &self.cas_misses,
            &self.touch_misses,
        ] {
            x.reset();
        }
    }
}

/// Summed per-class request counters, for `stats slabs`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClassReqSum {
    pub get_hits: u64,
    pub cmd_set: u64,
    pub delete_hits: u64,
    pub incr_hits: u64,
    pub decr_hits: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub hits_to: [u64; 4],
}

/// Item events memcached counts per class (its `itemstats_t`): kept per
/// class under the class lock for `stats items`, summed for `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemCounters {
    pub evicted: u64,
    pub evicted_nonzero: u64,
    pub evicted_time: u32,
    pub outofmemory: u64,
    pub tailrepairs: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub evicted_active: u64,
    pub crawler_reclaimed: u64,
    pub crawler_items_checked: u64,
    pub lrutail_reflocked: u64,
    pub moves_to_cold: u64,
    pub moves_to_warm: u64,
    pub moves_within_lru: u64,
    pub direct_reclaims: u64,
}

impl ItemCounters {
    /// Adds another class's counts (the latest eviction age for `evicted_time`).
    pub(crate) fn add(&mut self, o: &ItemCounters) {
        self.evicted += o.evicted;
        self.evicted_nonzero += o.evicted_nonzero;
        self.evicted_time = self.evicted_time.max(o.evicted_time);
        self.outofmemory += o.outofmemory;
        self.tailrepairs += o.tailrepairs;
        self.reclaimed += o.reclaimed;
        self.expired_unfetched += o.expired_unfetched;
        self.evicted_unfetched += o.evicted_unfetched;
        self.evicted_active += o.evicted_active;
        self.crawler_reclaimed += o.crawler_reclaimed;
        self.crawler_items_checked += o.crawler_items_checked;
        self.lrutail_reflocked += o.lrutail_reflocked;
        self.moves_to_cold += o.moves_to_cold;
        self.moves_to_warm += o.moves_to_warm;
        self.moves_within_lru += o.moves_within_lru;
        self.direct_reclaims += o.direct_reclaims;
    }
}

/// The engine's part of the general `stats` block.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_misses: u64,
    pub delete_hits: u64,
    pub incr_misses: u64,
    pub incr_hits: u64,
    pub decr_misses: u64,
    pub decr_hits: u64,
    pub cas_misses: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    pub cmd_set: u64,
    pub limit_maxbytes: u64,
    pub hash_power_level: u32,
    pub hash_bytes: u64,
    pub hash_is_expanding: u32,
    pub slab_reassign_rescues: u64,
    pub slab_reassign_chunk_rescues: u64,
    pub slab_reassign_evictions_nomem: u64,
    pub slab_reassign_inline_reclaim: u64,
    pub slab_reassign_busy_items: u64,
    pub slab_reassign_busy_deletes: u64,
    pub slab_reassign_running: u32,
    pub slabs_moved: u64,
    pub lru_crawler_running: u32,
    pub lru_crawler_starts: u64,
    pub lru_maintainer_juggles: u64,
    pub malloc_fails: u64,
    pub total_malloced: u64,
    /// Pages in the global pool, no class's.
    pub slab_global_page_pool: u64,
    pub bytes: u64,
    pub curr_items: u64,
    pub total_items: u64,
    /// Item events summed over the classes.
    pub items: ItemCounters,
    pub lru_bumps_dropped: u64,
}

impl EngineStats {
    /// memcached 1.6.18's general-block lines that come from the engine,
    /// in its order. The server interleaves them with its own as
    /// memcached's `server_stats` does: the first part follows
    /// `cmd_touch`-era request counters, the rest follows `threads`.
    pub fn request_lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("get_hits", self.get_hits.to_string()),
            ("get_misses", self.get_misses.to_string()),
            ("get_expired", self.get_expired.to_string()),
            ("get_flushed", self.get_flushed.to_string()),
            ("delete_misses", self.delete_misses.to_string()),
            ("delete_hits", self.delete_hits.to_string()),
            ("incr_misses", self.incr_misses.to_string()),
            ("incr_hits", self.incr_hits.to_string()),
            ("decr_misses", self.decr_misses.to_string()),
            ("decr_hits", self.decr_hits.to_string()),
            ("cas_misses", self.cas_misses.to_string()),
            ("cas_hits", self.cas_hits.to_string()),
            ("cas_badval", self.cas_badval.to_string()),
            ("touch_hits", self.touch_hits.to_string()),
            ("touch_misses", self.touch_misses.to_string()),
        ]
    }

    /// The lines after `threads`/`conn_yields` in memcached's order:
    /// hash table, slab mover, LRU and item totals.
    pub fn storage_lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hash_power_level", self.hash_power_level.to_string()),
            ("hash_bytes", self.hash_bytes.to_string()),
            ("hash_is_expanding", self.hash_is_expanding.to_string()),
            (
                "slab_reassign_rescues",
                self.slab_reassign_rescues.to_string(),
            ),
            (
                "slab_reassign_chunk_rescues",
                self.slab_reassign_chunk_rescues.to_string(),
            ),
            (
                "slab_reassign_evictions_nomem",
                self.slab_reassign_evictions_nomem.to_string(),
            ),
            (
                "slab_reassign_inline_reclaim",
                self.slab_reassign_inline_reclaim.to_string(),
            ),
            (
                "slab_reassign_busy_items",
                self.slab_reassign_busy_items.to_string(),
            ),
            (
                "slab_reassign_busy_deletes",
                self.slab_reassign_busy_deletes.to_string(),
            ),
            (
                "slab_reassign_running",
                self.slab_reassign_running.to_string(),
            ),
            ("slabs_moved", self.slabs_moved.to_string()),
            ("lru_crawler_running", self.lru_crawler_running.to_string()),
            ("lru_crawler_starts", self.lru_crawler_starts.to_string()),
            (
                "lru_maintainer_juggles",
                self.lru_maintainer_juggles.to_string(),
            ),
            ("malloc_fails", self.malloc_fails.to_string()),
            ("log_worker_dropped", "0".to_string()),
            ("log_worker_written", "0".to_string()),
            ("log_watcher_skipped", "0".to_string()),
            ("log_watcher_sent", "0".to_string()),
            ("log_watchers", "0".to_string()),
            ("unexpected_napi_ids", "0".to_string()),
            ("round_robin_fallback", "0".to_string()),
            ("bytes", self.bytes.to_string()),
            ("curr_items", self.curr_items.to_string()),
            ("total_items", self.total_items.to_string()),
            (
                "slab_global_page_pool",
                self.slab_global_page_pool.to_string(),
            ),
            (
                "expired_unfetched",
                self.items.expired_unfetched.to_string(),
            ),
            (
                "evicted_unfetched",
                self.items.evicted_unfetched.to_string(),
            ),
            ("evicted_active", self.items.evicted_active.to_string()),
            ("evictions", self.items.evicted.to_string()),
            ("reclaimed", self.items.reclaimed.to_string()),
            (
                "crawler_reclaimed",
                self.items.crawler_reclaimed.to_string(),
            ),
            (
                "crawler_items_checked",
                self.items.crawler_items_checked.to_string(),
            ),
            (
                "lrutail_reflocked",
                self.items.lrutail_reflocked.to_string(),
            ),
            ("moves_to_cold", self.items.moves_to_cold.to_string()),
            ("moves_to_warm", self.items.moves_to_warm.to_string()),
            ("moves_within_lru", self.items.moves_within_lru.to_string()),
            ("direct_reclaims", self.items.direct_reclaims.to_string()),
            ("lru_bumps_dropped", self.lru_bumps_dropped.to_string()),
        ]
    }
}
