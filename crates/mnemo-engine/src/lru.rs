//! Segmented LRU per slab class: HOT, WARM, COLD and TEMP, as memcached's
//! `lru_maintainer` keeps them (shared/reference/memcached-new_lru.txt).
//!
//! New items enter HOT (TEMP for short TTLs when enabled). Reads never
//! touch the lists: they set FETCHED, then ACTIVE, on the item. Items move
//! only as they reach a tail: HOT's tail goes to WARM if active, else to
//! COLD; WARM's tail stays in WARM if active, else goes to COLD; an active
//! item at COLD's tail goes to WARM instead of being evicted. HOT and WARM
//! are capped by their share of the class's items and by age relative to
//! COLD's tail.
//!
//! Flat mode (memcached's `lru_segmented = no`, its 1.4-style LRU): new
//! items enter COLD (TEMP still applies), a read sets only FETCHED and
//! moves the item to the head of its list at most once per
//! `item_update_interval`, evictions take COLD's tail whatever its access
//! bits, and the maintainer drains whatever HOT and WARM still hold into
//! COLD.

use std::sync::atomic::Ordering::Relaxed;

use crate::engine::SlabEngine;
use crate::item::{Raw, Seg, ACTIVE};
use crate::slabs::ChunkId;
use crate::slabs::{ClassState, Slabs};

impl Slabs {
    pub(crate) fn lru_link(&self, st: &mut ClassState, id: ChunkId, seg: Seg, size: u64) {
        // SAFETY: `id` is an item of this class being linked by a holder of
        // its class lock (`st`); free list and LRU words change only under it.
        let raw = unsafe { self.raw(id) };
        let l = &mut st.lru[seg as usize];
        raw.set_seg(seg);
        raw.set_prev(ChunkId::NIL);
        raw.set_next(l.head);
        if l.head != ChunkId::NIL {
            // SAFETY: the list's head, an item of this class; class lock held.
            unsafe { self.raw(l.head) }.set_prev(id);
        }
        l.head = id;
        if l.tail == ChunkId::NIL {
            l.tail = id;
        }
        l.count += 1;
        l.bytes += size;
    }

    pub(crate) fn lru_unlink(&self, st: &mut ClassState, id: ChunkId, size: u64) {
        // SAFETY: `id` is on one of this class's LRUs; class lock (`st`) held.
        let raw = unsafe { self.raw(id) };
        let l = &mut st.lru[raw.seg() as usize];
        let (prev, next) = (raw.prev(), raw.next());
        if prev != ChunkId::NIL {
            // SAFETY: its LRU neighbour, same class, class lock held.
            unsafe { self.raw(prev) }.set_next(next);
        } else {
            l.head = next;
        }
        if next != ChunkId::NIL {
            // SAFETY: its LRU neighbour, same class, class lock held.
            unsafe { self.raw(next) }.set_prev(prev);
        } else {
            l.tail = prev;
        }
        l.count -= 1;
        l.bytes -= size;
        raw.set_prev(ChunkId::NIL);
        raw.set_next(ChunkId::NIL);
    }
}

/// What to do with the item at a tail.
pub(crate) enum TailAction {
    /// Moved within or between lists; the walk goes on.
    Moved,
    /// Expired or flushed and removed.
    Reclaimed,
    /// Could not be locked right now.
    Busy,
}

impl SlabEngine {
    /// Keeps one class's HOT and WARM within their limits and sends
    /// active COLD tails to WARM. Returns how many items it moved or freed.
    ///
    /// The limits are memcached's (`lru_maintainer_juggle` and
    /// `lru_pull_tail`): HOT and WARM are each capped at their percentage
    /// of the bytes in HOT, WARM and COLD together, and at an age of their
    /// factor times COLD's tail age (0 while COLD is empty); an ACTIVE tail
    /// is moved on at once (HOT's to WARM, WARM's back to WARM's head)
    /// whatever the limits. In bytes rather than items, a lone item is over
    /// any share below 100% and goes to COLD on the first pass, where
    /// `stats cachedump` finds it, as in memcached.
    pub(crate) fn juggle(&self, ci: usize, budget: usize) -> usize {
        let mut st = self.slabs.classes[ci].state.lock();
        let now = self.clock.now();
        if st.items() == 0 {
            return 0;
        }
        if !self.tuning.segmented() {
            return self.drain_to_cold(&mut st, ci, now, budget);
        }
        let total_bytes: u64 = [Seg::Hot, Seg::Warm, Seg::Cold]
            .iter()
            .map(|&seg| st.lru[seg as usize].bytes)
            .sum();
        // `lru tune` takes any u32 whose sum with the other wraps to <= 80.
        let share = |pct: u32| total_bytes.saturating_mul(u64::from(pct)) / 100;
        let warm_limit = share(self.tuning.warm_pct.load(Relaxed));
        // memcached falls back to WARM's share when HOT's comes to 0.
        let hot_limit = match share(self.tuning.hot_pct.load(Relaxed)) {
            0 => warm_limit,
            limit => limit,
        };
        let cold_age = self.tail_age(&st, Seg::Cold, now);
        // memcached keeps these in whole seconds (the product truncated).
        let hot_age = (f64::from(cold_age) * self.tuning.hot_factor()) as u32;
        let warm_age = (f64::from(cold_age) * self.tuning.warm_factor()) as u32;
        let mut done = 0;

        for (seg, limit, max_age) in [
            (Seg::Hot, hot_limit, hot_age),
            (Seg::Warm, warm_limit, warm_age),
        ] {
            for _ in 0..budget {
                let l = st.lru[seg as usize];
                if l.tail == ChunkId::NIL {
                    break;
                }
                // SAFETY: the segment's tail, an item of this class; class
                // lock (`st`) held.
                let raw = unsafe { self.slabs.raw(l.tail) };
                let active = raw.access_bits() & ACTIVE != 0;
                let age = now.saturating_sub(raw.atime());
                if !active && l.bytes <= limit && age <= max_age && !self.is_dead(l.tail, now) {
                    break;
                }
                match self.tail_step(&mut st, ci, seg, now) {
                    TailAction::Busy => break,
                    _ => done += 1,
                }
            }
        }
        // COLD: active tails go to WARM; dead ones are reclaimed.
        let mut tries = 0;
        while tries < budget {
            tries += 1;
            let tail = st.lru[Seg::Cold as usize].tail;
            if tail == ChunkId::NIL {
                break;
            }
            // SAFETY: COLD's tail, an item of this class; class lock (`st`) held.
            let raw = unsafe { self.slabs.raw(tail) };
            if raw.access_bits() & ACTIVE == 0 && !self.is_dead(tail, now) {
                break;
            }
            match self.tail_step(&mut st, ci, Seg::Cold, now) {
                TailAction::Busy => break,
                _ => done += 1,
            }
        }
        done
    }

    /// Flat mode's juggle: memcached gives HOT and WARM a max age of 0
    /// there, so each of their tails goes to COLD (or is reclaimed if
    /// dead), and COLD is not juggled. memcached would still send a HOT
    /// tail marked ACTIVE (from before the switch) to WARM first; here
    /// ACTIVE is ignored, because mnemo's meta reads keep setting it in
    /// flat mode and WARM would then never empty.
    fn drain_to_cold(&self, st: &mut ClassState, ci: usize, now: u32, budget: usize) -> usize {
        let mut done = 0;
        for seg in [Seg::Hot, Seg::Warm] {
            for _ in 0..budget {
                if st.lru[seg as usize].tail == ChunkId::NIL {
                    break;
                }
                match self.tail_step_to(st, ci, seg, now, Some(Seg::Cold)) {
                    TailAction::Busy => break,
                    _ => done += 1,
                }
            }
        }
        done
    }

    fn tail_age(&self, st: &ClassState, seg: Seg, now: u32) -> u32 {
        let t = st.lru[seg as usize].tail;
        if t == ChunkId::NIL {
            0
        } else {
            // SAFETY: a tail of this class's LRU; class lock (`st`) held.
            now.saturating_sub(unsafe { self.slabs.raw(t) }.atime())
        }
    }

    /// Handles the tail of `seg` once, without evicting live items.
    pub(crate) fn tail_step(
        &self,
        st: &mut ClassState,
        ci: usize,
        seg: Seg,
        now: u32,
    ) -> TailAction {
        self.tail_step_to(st, ci, seg, now, None)
    }

    /// As `tail_step`; a live tail goes to `forced` when given, whatever
    /// its access bits, instead of where the segmented rules send it.
    fn tail_step_to(
        &self,
        st: &mut ClassState,
        ci: usize,
        seg: Seg,
        now: u32,
        forced: Option<Seg>,
    ) -> TailAction {
        let id = st.lru[seg as usize].tail;
        // SAFETY: `seg`'s tail, an item of this class; class lock (`st`) held.
        let raw = unsafe { self.slabs.raw(id) };
        if self.is_dead(id, now) {
            return if self.reclaim(st, ci, id, true) {
                TailAction::Reclaimed
            } else {
                TailAction::Busy
            };
        }
        let size = self.charged_size(raw) as u64;
        let active = raw.access_bits() & ACTIVE != 0;
        let to = forced.unwrap_or(match (seg, active) {
            (Seg::Hot, true) => Seg::Warm,
            (Seg::Hot, false) => Seg::Cold,
            (Seg::Warm, true) => Seg::Warm,
            (Seg::Warm, false) => Seg::Cold,
            (Seg::Cold, true) => Seg::Warm,
            (Seg::Cold, false) => Seg::Cold,
            (Seg::Temp, _) => Seg::Temp,
        });
        if active {
            raw.clear_active();
        }
        match (seg, to) {
            (Seg::Warm, Seg::Warm) => st.c.moves_within_lru += 1,
            (_, Seg::Cold) => st.c.moves_to_cold += 1,
            (_, Seg::Warm) => st.c.moves_to_warm += 1,
            _ => {}
        }
        self.slabs.lru_unlink(st, id, size);
        self.slabs.lru_link(st, id, to, size);
        TailAction::Moved
    }

    /// Frees a chunk from the COLD tail (or HOT when COLD is empty) to make
    /// room in class `ci`. Expired items go first; active COLD items are
    /// moved to WARM rather than evicted. Returns true when a chunk was freed.
    /// In flat mode only COLD is evicted from and ACTIVE saves nothing, as
    /// in memcached (which answers out of memory while COLD is empty).
    pub(crate) fn evict_one(&self, st: &mut ClassState, ci: usize, now: u32) -> bool {
        let flat = !self.tuning.segmented();
        // memcached walks at most a few items up the tail looking for one
        // it can lock; so do we, but across segments in eviction order.
        for _ in 0..32 {
            let seg = if st.lru[Seg::Cold as usize].tail != ChunkId::NIL {
                Seg::Cold
            } else if flat {
                return false;
            } else if st.lru[Seg::Hot as usize].tail != ChunkId::NIL {
                Seg::Hot
            } else if st.lru[Seg::Warm as usize].tail != ChunkId::NIL {
                Seg::Warm
            } else {
                return false;
            };
            let mut id = st.lru[seg as usize].tail;
            let mut walked = 0;
            while id != ChunkId::NIL && walked < 5 {
                // SAFETY: on this class's LRU (walking up from a tail); class lock held.
                let raw = unsafe { self.slabs.raw(id) };
                if self.is_dead(id, now) {
                    if self.reclaim(st, ci, id, true) {
                        return true;
                    }
                } else if !flat && seg == Seg::Cold && raw.access_bits() & ACTIVE != 0 {
                    raw.clear_active();
                    let size = self.charged_size(raw) as u64;
                    self.slabs.lru_unlink(st, id, size);
                    self.slabs.lru_link(st, id, Seg::Warm, size);
                    st.c.moves_to_warm += 1;
                    break; // the tail changed; look again
                } else if self.evict(st, ci, id, now) {
                    return true;
                } else {
                    st.c.lrutail_reflocked += 1;
                }
                id = raw.prev();
                walked += 1;
            }
            if walked == 5 {
                return false;
            }
        }
        false
    }

    /// Flat mode, before each allocation attempt: memcached pulls COLD's
    /// tail without evicting, which frees the expired or flushed items
    /// there (up to five, stepping past ones it cannot lock) and stops at
    /// the first live one.
    pub(crate) fn reclaim_cold_tail(&self, st: &mut ClassState, ci: usize, now: u32) {
        let mut id = st.lru[Seg::Cold as usize].tail;
        let mut tries = 0;
        while id != ChunkId::NIL && tries < 5 {
            // SAFETY: on COLD's LRU of this class; class lock (`st`) held.
            let prev = unsafe { self.slabs.raw(id) }.prev();
            if !self.is_dead(id, now) {
                break;
            }
            self.reclaim(st, ci, id, true);
            id = prev;
            tries += 1;
        }
    }

    /// A read in flat mode, as memcached's `do_item_update`: FETCHED is set
    /// (never ACTIVE), and an item whose time is older than
    /// `item_update_interval` takes the current time and goes back to the
    /// head of its list. Between those moves its time is left alone, so it
    /// stays the time of the last move, as memcached's does. The caller
    /// holds the key's shard lock, so the item stays linked.
    pub(crate) fn touch_flat(&self, id: ChunkId, raw: Raw, now: u32) {
        let old = raw.atime();
        let was_active = raw.access_bits() & ACTIVE != 0;
        let relink = old < now.saturating_sub(self.cfg.item_update_interval);
        raw.touch_access(if relink { now } else { old });
        if !was_active {
            raw.clear_active();
        }
        if relink {
            let ci = self.slabs.class_of(id);
            let mut st = self.slabs.classes[ci].state.lock();
            let size = self.charged_size(raw) as u64;
            let seg = raw.seg();
            self.slabs.lru_unlink(&mut st, id, size);
            self.slabs.lru_link(&mut st, id, seg, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, GetMode, SlabEngine, StoreMode};

    fn count(e: &SlabEngine, name: &str) -> u64 {
        e.stats_items()
            .iter()
            .find(|(k, _)| k == &format!("items:1:{name}"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0)
    }

    /// HOT keeps its share, inactive tails flow to COLD, items read twice
    /// (active) go to WARM from HOT's tail and from COLD's, and reads are
    /// counted by the segment they hit.
    #[test]
    fn segments_move_as_memcached_describes() {
        // Never started, so only the test's own juggles move items; the
        // maintainer setting stays on for `stats items` to show segments.
        let e = SlabEngine::new(Config::default()).unwrap();
        let ts = e.new_thread_stats();
        for i in 0..100u32 {
            e.store(
                StoreMode::Set,
                format!("k{i:03}").as_bytes(),
                0,
                0,
                b"v",
                0,
                &ts,
            );
        }
        assert_eq!(count(&e, "number_hot"), 100);
        // The two oldest, read twice while still in HOT, are active when
        // they reach HOT's tail.
        for k in [b"k000", b"k001"] {
            for _ in 0..2 {
                e.get(k, GetMode::Get, &ts, |_| ());
            }
        }
        e.juggle(0, 1000);
        assert!(count(&e, "number_hot") <= 20, "{}", count(&e, "number_hot"));
        assert_eq!(count(&e, "number_warm"), 2);
        assert_eq!(count(&e, "moves_to_warm"), 2);
        assert!(count(&e, "moves_to_cold") >= 78);
        assert_eq!(count(&e, "hits_to_hot"), 4);
        // A COLD item read twice goes to WARM on the next pass.
        let cold_key = b"k010";
        for _ in 0..2 {
            e.get(cold_key, GetMode::Get, &ts, |_| ());
        }
        assert_eq!(count(&e, "hits_to_cold"), 2);
        // Bring it to COLD's tail: everything older than it is already gone
        // to WARM, so a pass over COLD's tail finds it active.
        for i in 2..10u32 {
            e.delete(format!("k{i:03}").as_bytes(), &ts);
        }
        e.juggle(0, 1000);
        assert_eq!(count(&e, "number_warm"), 3);
        e.check_invariants().unwrap();
    }

    /// HOT is sized in bytes, as memcached sizes it: a lone item is over
    /// HOT's 20% share and goes to COLD on the first pass (where `stats
    /// cachedump` lists it). Of five equal items one fits the share and
    /// stays, until it is older than HOT's age limit: COLD's tail age
    /// times 0.2, truncated to whole seconds as memcached keeps it.
    #[test]
    fn hot_is_limited_by_bytes_and_age_as_in_memcached() {
        let e = SlabEngine::new(Config::default()).unwrap();
        let ts = e.new_thread_stats();
        set(&e, &ts, "lone", 0);
        e.juggle(0, 1000);
        assert_eq!(count(&e, "number_hot"), 0);
        assert_eq!(count(&e, "number_cold"), 1);

        let e = SlabEngine::new(Config::default()).unwrap();
        let ts = e.new_thread_stats();
        for i in 0..5u32 {
            set(&e, &ts, &format!("k{i}"), 0);
        }
        e.juggle(0, 1000);
        assert_eq!(count(&e, "number_hot"), 1);
        e.clock().advance(1);
        e.juggle(0, 1000);
        assert_eq!(count(&e, "number_hot"), 0);
        assert_eq!(count(&e, "number_cold"), 5);
        e.check_invariants().unwrap();
    }

    /// A flat engine whose threads are never started: only the test's own
    /// juggles run.
    fn flat(cfg: Config) -> std::sync::Arc<SlabEngine> {
        SlabEngine::new(Config {
            lru_segmented: false,
            ..cfg
        })
        .unwrap()
    }

    fn set(e: &SlabEngine, ts: &crate::ThreadStats, key: &str, exptime: i64) {
        e.store(StoreMode::Set, key.as_bytes(), 0, exptime, b"v", 0, ts);
    }

    /// Flat mode: new items go to COLD (short TTLs still to TEMP), reads
    /// leave them there, and a juggle moves nothing.
    #[test]
    fn flat_mode_links_into_cold_and_hits_stay_there() {
        let e = flat(Config {
            temp_lru: true,
            temporary_ttl: 61,
            ..Config::default()
        });
        let ts = e.new_thread_stats();
        for i in 0..50u32 {
            set(&e, &ts, &format!("k{i:03}"), 0);
        }
        set(&e, &ts, "short", 30);
        assert_eq!(count(&e, "number"), 51);
        assert_eq!(count(&e, "number_cold"), 50);
        assert_eq!(count(&e, "number_hot"), 0);
        for _ in 0..3 {
            e.get(b"k000", GetMode::Get, &ts, |_| ());
        }
        e.get(b"short", GetMode::Get, &ts, |_| ());
        assert_eq!(count(&e, "hits_to_cold"), 3);
        assert_eq!(count(&e, "hits_to_temp"), 1);
        e.juggle(0, 1000);
        assert_eq!(count(&e, "number_cold"), 50);
        assert_eq!(count(&e, "number_warm"), 0);
        assert_eq!(count(&e, "moves_to_warm"), 0);
        assert!(!e.config().lru_segmented);
        e.check_invariants().unwrap();
    }

    /// `lru mode flat` on a segmented LRU: the next juggle empties HOT and
    /// WARM into COLD, active items included, and new items go to COLD.
    #[test]
    fn switching_to_flat_drains_hot_and_warm_into_cold() {
        let e = SlabEngine::new(Config::default()).unwrap();
        let ts = e.new_thread_stats();
        for i in 0..100u32 {
            set(&e, &ts, &format!("k{i:03}"), 0);
        }
        for k in [b"k000", b"k001", b"k099"] {
            for _ in 0..2 {
                e.get(k, GetMode::Get, &ts, |_| ());
            }
        }
        e.juggle(0, 1000);
        assert_eq!(count(&e, "number_warm"), 2);
        assert!(count(&e, "number_hot") > 0);
        e.set_lru_segmented(false);
        e.juggle(0, 1000);
        assert_eq!(count(&e, "number_hot"), 0);
        assert_eq!(count(&e, "number_warm"), 0);
        assert_eq!(count(&e, "number_cold"), 100);
        set(&e, &ts, "new", 0);
        assert_eq!(count(&e, "number_cold"), 101);
        e.check_invariants().unwrap();
        // And back: new items enter HOT again.
        e.set_lru_segmented(true);
        set(&e, &ts, "newer", 0);
        assert_eq!(count(&e, "number_hot"), 1);
        e.check_invariants().unwrap();
    }

    fn fill_until_evicted(e: &SlabEngine, ts: &crate::ThreadStats) {
        for i in 0..1_000_000u32 {
            e.store(
                StoreMode::Set,
                format!("f{i:06}").as_bytes(),
                0,
                0,
                &[b'x'; 100],
                0,
                ts,
            );
            if e.stats().items.evicted > 0 {
                return;
            }
        }
        panic!("no eviction");
    }

    /// Flat eviction takes COLD's tail even when it is ACTIVE (no rescue
    /// to WARM), and a read of an item older than item_update_interval
    /// moves it to COLD's head, so the next-oldest goes first. Keys are all
    /// seven bytes so every item shares one slab class.
    #[test]
    fn flat_mode_evicts_cold_tail_and_reads_refresh_position() {
        let cfg = Config {
            mem_limit: 1 << 20,
            ..Config::default()
        };
        let big = [b'x'; 100];
        // The tail is evicted even after two meta-style reads, which in
        // flat mode leave it FETCHED but not ACTIVE (memcached's
        // do_item_bump without lru_segmented).
        let e = flat(cfg.clone());
        let ts = e.new_thread_stats();
        for k in [b"k00000a", b"k00000b"] {
            e.store(StoreMode::Set, k, 0, 0, &big, 0, &ts);
        }
        for _ in 0..2 {
            e.lock_key(b"k00000a", &ts).bump();
        }
        fill_until_evicted(&e, &ts);
        assert!(e.get(b"k00000a", GetMode::Get, &ts, |_| ()).is_none());
        assert!(e.get(b"k00000b", GetMode::Get, &ts, |_| ()).is_some());
        assert_eq!(count(&e, "moves_to_warm"), 0);
        let evicted_active: u64 = e
            .stats_items()
            .iter()
            .filter(|(k, _)| k.ends_with(":evicted_active"))
            .map(|(_, v)| v.parse::<u64>().unwrap())
            .sum();
        assert_eq!(evicted_active, 0);
        e.check_invariants().unwrap();

        // A read after the update interval moves the oldest ahead of the next.
        let e = flat(cfg);
        let ts = e.new_thread_stats();
        for k in [b"k00000a", b"k00000b"] {
            e.store(StoreMode::Set, k, 0, 0, &big, 0, &ts);
        }
        e.clock().advance(61);
        e.get(b"k00000a", GetMode::Get, &ts, |_| ());
        fill_until_evicted(&e, &ts);
        assert!(e.get(b"k00000b", GetMode::Get, &ts, |_| ()).is_none());
        assert!(e.get(b"k00000a", GetMode::Get, &ts, |_| ()).is_some());
        e.check_invariants().unwrap();
    }

    /// Expired items at COLD's tail are reclaimed before a flat-mode
    /// allocation, even with free memory, as memcached's pull does.
    #[test]
    fn flat_mode_reclaims_expired_cold_tail_on_alloc() {
        let e = flat(Config::default());
        let ts = e.new_thread_stats();
        set(&e, &ts, "old", 10);
        e.clock().advance(11);
        set(&e, &ts, "new", 0);
        assert_eq!(count(&e, "reclaimed"), 1);
        assert_eq!(count(&e, "number"), 1);
        e.check_invariants().unwrap();
    }

    /// `stats items` prints the segment lines only with the maintainer,
    /// and `number_temp` only with the TEMP LRU, as memcached does.
    #[test]
    fn stats_items_lines_follow_the_maintainer() {
        let names = |cfg: Config| -> Vec<String> {
            let e = SlabEngine::new(cfg).unwrap();
            let ts = e.new_thread_stats();
            set(&e, &ts, "k", 0);
            e.stats_items()
                .into_iter()
                .map(|(k, _)| k.trim_start_matches("items:1:").to_string())
                .collect()
        };
        let with = names(Config::default());
        assert!(with.iter().any(|k| k == "number_cold"));
        assert!(with.iter().any(|k| k == "hits_to_temp"));
        assert!(!with.iter().any(|k| k == "number_temp"));
        let temp = names(Config {
            temp_lru: true,
            ..Config::default()
        });
        let at = temp.iter().position(|k| k == "number_temp");
        assert_eq!(at, Some(4), "{temp:?}");
        let without = names(Config {
            lru_maintainer: false,
            lru_segmented: false,
            ..Config::default()
        });
        assert_eq!(
            without,
            [
                "number",
                "age",
                "mem_requested",
                "evicted",
                "evicted_nonzero",
                "evicted_time",
                "outofmemory",
                "tailrepairs",
                "reclaimed",
                "expired_unfetched",
                "evicted_unfetched",
                "crawler_reclaimed",
                "crawler_items_checked",
                "lrutail_reflocked",
            ]
        );
    }
}
