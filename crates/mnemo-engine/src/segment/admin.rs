//! What the segment engine answers to the slab engine's admin and dump
//! commands: `stats items`/`slabs`/`sizes` over its one "class" 1,
//! `stats cachedump 1`, `lru_crawler metadump` and `crawl` (a sweep of
//! dead objects), the eviction log hook.

use std::sync::atomic::Ordering::Relaxed;

use super::index::Loc;
use super::object::FETCHED;
use super::SegmentEngine;
use crate::crawler::{parse_class_list, CrawlerCommandError};
use crate::dump::{ItemRecord, MetadumpCursor, MetadumpTarget};

impl SegmentEngine {
    /// The dump record of the linked object at `loc` (its shard locked).
    fn record(&self, loc: Loc) -> ItemRecord<'_> {
        let o = self.obj(loc);
        let started = self.clock.process_started();
        let header = if self.cfg.use_cas { 28 } else { 20 } + if o.flags() != 0 { 4 } else { 0 };
        ItemRecord {
            key: o.key(),
            exptime: match o.exptime() {
                0 => None,
                exp => Some(u64::from(exp) + started),
            },
            last_access: u64::from(o.atime()) + started,
            cas: o.cas(),
            fetched: o.bits() & FETCHED != 0,
            class_id: 1,
            value_len: o.nbytes(),
            // memcached's ITEM_ntotal, as the slab engine reports it.
            total_size: header + o.nkey() + o.nbytes() + 2,
        }
    }

    /// Calls `f` with every live item of index shard `i`.
    fn each_live_in_shard(&self, i: usize, f: &mut impl FnMut(&ItemRecord<'_>)) {
        let shard = self.index.lock_shard(i);
        let now = self.clock.now();
        for loc in shard.locs() {
            if !self.is_dead(self.obj(loc), now) {
                f(&self.record(loc));
            }
        }
    }

    /// `stats cachedump 1 limit`: live items, newest first (by segment
    /// age, then position); other class ids list nothing.
    pub fn cachedump(&self, class_id: u32, limit: u32, mut f: impl FnMut(&ItemRecord<'_>) -> bool) {
        if class_id != 1 {
            return;
        }
        // Newest first needs a sort, hence a snapshot: (segment age,
        // location, shard, key hash), each checked again under its
        // shard's lock before its bytes are read.
        let mut locs: Vec<(u32, Loc, usize, u64)> = Vec::new();
        for i in 0..self.index.nshards() {
            let shard = self.index.lock_shard(i);
            for loc in shard.locs() {
                let h = crate::assoc::hash(self.obj(loc).key());
                locs.push((self.segs.seg(loc.seg).create_at.load(Relaxed), loc, i, h));
            }
        }
        locs.sort_unstable_by_key(|a| std::cmp::Reverse((a.0, a.1.seg, a.1.off)));
        let now = self.clock.now();
        let mut shown = 0;
        for (_, loc, i, h) in locs {
            if limit != 0 && shown >= limit {
                break;
            }
            let shard = self.index.lock_shard(i);
            if shard.find_loc(h, loc).is_none() || self.is_dead(self.obj(loc), now) {
                continue;
            }
            if !f(&self.record(loc)) {
                break;
            }
            shown += 1;
        }
    }

    /// `lru_crawler metadump`: every live item.
    pub fn lru_crawler_metadump(
        &self,
        target: MetadumpTarget,
        mut f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<(), CrawlerCommandError> {
        let mut cursor = MetadumpCursor::new(target);
        while !self.lru_crawler_metadump_step(&mut cursor, &mut f)? {}
        Ok(())
    }

    /// One step of a metadump: one index shard's live items (one shard
    /// locked at a time, never across steps); true once every shard is
    /// listed. Refused only at the first step, when the crawler is off.
    pub fn lru_crawler_metadump_step(
        &self,
        cursor: &mut MetadumpCursor,
        mut f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<bool, CrawlerCommandError> {
        let (first, shard) = cursor.index_walk();
        if first && !self.settings.crawler_on.load(Relaxed) {
            return Err(CrawlerCommandError::Disabled);
        }
        let Some(shard) = shard else {
            return Ok(true);
        };
        if *shard < self.index.nshards() {
            self.each_live_in_shard(*shard, &mut f);
            *shard += 1;
        }
        if *shard >= self.index.nshards() {
            cursor.finish();
            return Ok(true);
        }
        Ok(false)
    }

    /// `lru_crawler crawl all|1`: drops expired segments and sweeps the
    /// index for dead objects now.
    pub fn lru_crawler_crawl(&self, classes: &str) -> Result<(), CrawlerCommandError> {
        if !self.settings.crawler_on.load(Relaxed) {
            return Err(CrawlerCommandError::Disabled);
        }
        if classes != "all" && parse_class_list(classes)?.iter().any(|&c| c != 1) {
            return Err(CrawlerCommandError::BadClass);
        }
        let now = self.clock.now();
        self.expire_segments(now);
        for i in 0..self.index.nshards() {
            let mut shard = self.index.lock_shard(i);
            let dead: Vec<Loc> = shard
                .locs()
                .filter(|&l| self.is_dead(self.obj(l), now))
                .collect();
            for loc in dead {
                let h = crate::assoc::hash(self.obj(loc).key());
                if let Some(pos) = shard.find_loc(h, loc) {
                    self.c.reclaimed.fetch_add(1, Relaxed);
                    self.unlink(&mut shard, pos, loc);
                }
            }
        }
        Ok(())
    }

    /// `stats items`: every item under class 1, with the names (and
    /// the conditions for them) memcached's slab engine uses; figures of
    /// LRU segments this engine does not have are 0, and all items count
    /// as COLD.
    pub fn stats_items(&self) -> Vec<(String, String)> {
        let n = self.curr_items.load(Relaxed);
        if n == 0 && self.segs.allocated.load(Relaxed) == 0 {
            return Vec::new();
        }
        let cfg = self.config();
        let (maintainer, temp_lru) = (cfg.lru_maintainer, cfg.temp_lru);
        let mut hits = 0;
        for t in self.threads.lock().iter() {
            hits += t.class[1].get_hits.get();
        }
        let c = &self.c;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed).to_string();
        let zero = || "0".to_string();
        let mut out = Vec::new();
        let mut put = |k: &str, v: String| out.push((format!("items:1:{k}"), v));
        put("number", n.to_string());
        if maintainer {
            put("number_hot", zero());
            put("number_warm", zero());
            put("number_cold", n.to_string());
            if temp_lru {
                put("number_temp", zero());
            }
            put("age_hot", zero());
            put("age_warm", zero());
        }
        put("age", zero());
        put("mem_requested", self.live_bytes.load(Relaxed).to_string());
        put("evicted", g(&c.evicted_objects));
        put("evicted_nonzero", g(&c.evicted_nonzero));
        put("evicted_time", zero());
        put("outofmemory", g(&c.outofmemory));
        put("tailrepairs", zero());
        put(
            "reclaimed",
            (c.reclaimed.load(Relaxed) + c.expired_objects.load(Relaxed)).to_string(),
        );
        put("expired_unfetched", zero());
        put("evicted_unfetched", g(&c.evicted_unfetched));
        if maintainer {
            put("evicted_active", zero());
        }
        put("crawler_reclaimed", zero());
        put("crawler_items_checked", zero());
        put("lrutail_reflocked", zero());
        if maintainer {
            put("moves_to_cold", zero());
            put("moves_to_warm", zero());
            put("moves_within_lru", zero());
            put("direct_reclaims", zero());
            put("hits_to_hot", zero());
            put("hits_to_warm", zero());
            put("hits_to_cold", hits.to_string());
            put("hits_to_temp", zero());
        }
        out
    }

    /// `stats slabs`: no slab classes; the two totals.
    pub fn stats_slabs(&self) -> Vec<(String, String)> {
        vec![
            ("active_slabs".into(), "0".into()),
            (
                "total_malloced".into(),
                (u64::from(self.segs.allocated.load(Relaxed)) * self.segs.seg_size as u64)
                    .to_string(),
            ),
        ]
    }

    /// `stats sizes`: live items with a CAS of at least `min_cas`, per
    /// 32 bytes of memcached's item size.
    pub fn stats_sizes(&self, min_cas: u64) -> Vec<(String, String)> {
        let mut hist = std::collections::BTreeMap::<usize, u64>::new();
        for i in 0..self.index.nshards() {
            self.each_live_in_shard(i, &mut |r: &ItemRecord<'_>| {
                if r.cas >= min_cas {
                    *hist.entry(r.total_size.div_ceil(32) * 32).or_default() += 1;
                }
            });
        }
        hist.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn set_eviction_hook(&self, f: impl Fn(&crate::Eviction) + Send + Sync + 'static) {
        self.evlog.set_hook(Box::new(f));
    }

    pub fn log_evictions(&self, on: bool) {
        self.evlog.set_on(on);
    }
}
