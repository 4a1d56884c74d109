//! The segment engine's figures: the general `stats` block in the slab
//! engine's names where they apply, and its own lines (segments, merges,
//! expired and evicted objects, metadata bytes) where they do not.

use std::sync::atomic::Ordering::Relaxed;

use super::segs::BUCKETS;
use super::SegmentEngine;
use crate::stats::EngineStats;

impl SegmentEngine {
    /// The engine's part of the general `stats` block.
    pub fn stats(&self) -> EngineStats {
        let mut s = EngineStats::default();
        for t in self.threads.lock().iter() {
            s.get_misses += t.get_misses.get();
            s.get_expired += t.get_expired.get();
            s.get_flushed += t.get_flushed.get();
            s.delete_misses += t.delete_misses.get();
            s.incr_misses += t.incr_misses.get();
            s.decr_misses += t.decr_misses.get();
            s.cas_misses += t.cas_misses.get();
            s.touch_misses += t.touch_misses.get();
            let c = &t.class[1];
            s.get_hits += c.get_hits.get();
            s.cmd_set += c.cmd_set.get();
            s.delete_hits += c.delete_hits.get();
            s.incr_hits += c.incr_hits.get();
            s.decr_hits += c.decr_hits.get();
            s.cas_hits += c.cas_hits.get();
            s.cas_badval += c.cas_badval.get();
            s.touch_hits += c.touch_hits.get();
        }
        let (mut buckets_bytes, mut slots) = (0usize, 0usize);
        for i in 0..self.index.nshards() {
            let sh = self.index.lock_shard(i);
            buckets_bytes += sh.primary_bytes();
            slots += sh.primary_bytes() / 8;
        }
        s.hash_power_level = usize::BITS - 1 - slots.max(1).leading_zeros();
        s.hash_bytes = buckets_bytes as u64;
        s.curr_items = self.curr_items.load(Relaxed);
        s.total_items = self.total_items.load(Relaxed);
        s.bytes = self.live_bytes.load(Relaxed);
        s.limit_maxbytes = self.cfg.mem_limit as u64;
        s.total_malloced = u64::from(self.segs.allocated.load(Relaxed)) * self.segs.seg_size as u64;
        s.items.evicted = self.c.evicted_objects.load(Relaxed);
        s.items.evicted_nonzero = self.c.evicted_nonzero.load(Relaxed);
        s.items.evicted_unfetched = self.c.evicted_unfetched.load(Relaxed);
        s.items.reclaimed = self.c.reclaimed.load(Relaxed) + self.c.expired_objects.load(Relaxed);
        s.items.outofmemory = self.c.outofmemory.load(Relaxed);
        s
    }

    /// The segment engine's own `stats` lines: names memcached and the
    /// slab engine do not have, under mnemo's `mnemo_` prefix (which
    /// comparisons with memcached leave out).
    pub fn segment_stats(&self) -> Vec<(&'static str, String)> {
        let c = &self.c;
        let nsegs = self.segs.limit();
        let free = self.segs.free_count();
        let mut open = 0;
        let mut sealed = 0;
        for b in 0..BUCKETS {
            let bk = self.segs.buckets[b].lock();
            open += usize::from(bk.open.is_some());
            sealed += bk.chain.len();
        }
        let mut hash_bytes = 0;
        for i in 0..self.index.nshards() {
            hash_bytes += self.index.lock_shard(i).bytes();
        }
        let items = self.curr_items.load(Relaxed);
        let meta = self.live_meta.load(Relaxed);
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed).to_string();
        vec![
            ("mnemo_segment_size", self.segs.seg_size.to_string()),
            ("mnemo_segments_total", nsegs.to_string()),
            ("mnemo_segments_free", free.to_string()),
            ("mnemo_segments_open", open.to_string()),
            ("mnemo_segments_sealed", sealed.to_string()),
            ("mnemo_segment_merges", g(&c.merges)),
            ("mnemo_segment_merged_objects", g(&c.merged_objects)),
            ("mnemo_segment_compactions", g(&c.compactions)),
            ("mnemo_segments_expired", g(&c.expired_segments)),
            ("mnemo_segment_expired_objects", g(&c.expired_objects)),
            ("mnemo_segments_evicted", g(&c.evicted_segments)),
            ("mnemo_segment_evicted_objects", g(&c.evicted_objects)),
            ("mnemo_segment_relocations", g(&c.relocations)),
            ("mnemo_segment_object_metadata_bytes", meta.to_string()),
            ("mnemo_segment_index_bytes", hash_bytes.to_string()),
            (
                "mnemo_segment_metadata_bytes_per_item",
                if items == 0 {
                    "0".to_string()
                } else {
                    format!("{:.2}", (meta + hash_bytes as u64) as f64 / items as f64)
                },
            ),
        ]
    }

    /// `stats reset`.
    pub fn stats_reset(&self) {
        for t in self.threads.lock().iter() {
            t.reset();
        }
        self.total_items.store(0, Relaxed);
        let c = &self.c;
        for a in [
            &c.expired_segments,
            &c.expired_objects,
            &c.evicted_segments,
            &c.evicted_objects,
            &c.evicted_nonzero,
            &c.evicted_unfetched,
            &c.merges,
            &c.compactions,
            &c.merged_objects,
            &c.outofmemory,
            &c.reclaimed,
            &c.relocations,
        ] {
            a.store(0, Relaxed);
        }
    }
}
