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

use std::sync::atomic::Ordering::Relaxed;

use crate::engine::Engine;
use crate::item::{ItemId, Seg, ACTIVE, NIL};
use crate::slabs::{ClassState, Slabs};

impl Slabs {
    pub(crate) fn lru_link(&self, st: &mut ClassState, id: ItemId, seg: Seg, size: u64) {
        let raw = self.raw(id);
        let l = &mut st.lru[seg as usize];
        raw.set_seg(seg);
        raw.set_prev(NIL);
        raw.set_next(l.head);
        if l.head != NIL {
            self.raw(l.head).set_prev(id);
        }
        l.head = id;
        if l.tail == NIL {
            l.tail = id;
        }
        l.count += 1;
        l.bytes += size;
    }

    pub(crate) fn lru_unlink(&self, st: &mut ClassState, id: ItemId, size: u64) {
        let raw = self.raw(id);
        let l = &mut st.lru[raw.seg() as usize];
        let (prev, next) = (raw.prev(), raw.next());
        if prev != NIL {
            self.raw(prev).set_next(next);
        } else {
            l.head = next;
        }
        if next != NIL {
            self.raw(next).set_prev(prev);
        } else {
            l.tail = prev;
        }
        l.count -= 1;
        l.bytes -= size;
        raw.set_prev(NIL);
        raw.set_next(NIL);
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

impl Engine {
    /// Keeps one class's HOT and WARM within their limits and sends
    /// active COLD tails to WARM. Returns how many items it moved or freed.
    pub(crate) fn juggle(&self, ci: usize, budget: usize) -> usize {
        let mut st = self.slabs.classes[ci].state.lock();
        let now = self.clock.now();
        let total = st.items();
        if total == 0 {
            return 0;
        }
        let hot_limit = total * u64::from(self.tuning.hot_pct.load(Relaxed)) / 100;
        let warm_limit = total * u64::from(self.tuning.warm_pct.load(Relaxed)) / 100;
        let cold_age = self.tail_age(&st, Seg::Cold, now);
        let mut done = 0;

        // HOT.
        let mut tries = 0;
        while tries < budget {
            tries += 1;
            let l = st.lru[Seg::Hot as usize];
            if l.tail == NIL {
                break;
            }
            let age = now.saturating_sub(self.slabs.raw(l.tail).atime());
            let over_age =
                cold_age > 0 && f64::from(age) > f64::from(cold_age) * self.tuning.hot_factor();
            if l.count <= hot_limit.max(1) && !over_age && !self.is_dead(l.tail, now) {
                break;
            }
            match self.tail_step(&mut st, ci, Seg::Hot, now) {
                TailAction::Busy => break,
                _ => done += 1,
            }
        }
        // WARM.
        tries = 0;
        while tries < budget {
            tries += 1;
            let l = st.lru[Seg::Warm as usize];
            if l.tail == NIL {
                break;
            }
            let age = now.saturating_sub(self.slabs.raw(l.tail).atime());
            let over_age =
                cold_age > 0 && f64::from(age) > f64::from(cold_age) * self.tuning.warm_factor();
            if l.count <= warm_limit && !over_age && !self.is_dead(l.tail, now) {
                break;
            }
            match self.tail_step(&mut st, ci, Seg::Warm, now) {
                TailAction::Busy => break,
                _ => done += 1,
            }
        }
        // COLD: active tails go to WARM; dead ones are reclaimed.
        tries = 0;
        while tries < budget {
            tries += 1;
            let tail = st.lru[Seg::Cold as usize].tail;
            if tail == NIL {
                break;
            }
            let raw = self.slabs.raw(tail);
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

    fn tail_age(&self, st: &ClassState, seg: Seg, now: u32) -> u32 {
        let t = st.lru[seg as usize].tail;
        if t == NIL {
            0
        } else {
            now.saturating_sub(self.slabs.raw(t).atime())
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
        let id = st.lru[seg as usize].tail;
        let raw = self.slabs.raw(id);
        if self.is_dead(id, now) {
            return if self.reclaim(st, ci, id, true) {
                TailAction::Reclaimed
            } else {
                TailAction::Busy
            };
        }
        let size = self.charged_size(raw) as u64;
        let active = raw.access_bits() & ACTIVE != 0;
        let to = match (seg, active) {
            (Seg::Hot, true) => Seg::Warm,
            (Seg::Hot, false) => Seg::Cold,
            (Seg::Warm, true) => Seg::Warm,
            (Seg::Warm, false) => Seg::Cold,
            (Seg::Cold, true) => Seg::Warm,
            (Seg::Cold, false) => Seg::Cold,
            (Seg::Temp, _) => Seg::Temp,
        };
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
    pub(crate) fn evict_one(&self, st: &mut ClassState, ci: usize, now: u32) -> bool {
        // memcached walks at most a few items up the tail looking for one
        // it can lock; so do we, but across segments in eviction order.
        for _ in 0..32 {
            let seg = if st.lru[Seg::Cold as usize].tail != NIL {
                Seg::Cold
            } else if st.lru[Seg::Hot as usize].tail != NIL {
                Seg::Hot
            } else if st.lru[Seg::Warm as usize].tail != NIL {
                Seg::Warm
            } else {
                return false;
            };
            let mut id = st.lru[seg as usize].tail;
            let mut walked = 0;
            while id != NIL && walked < 5 {
                let raw = self.slabs.raw(id);
                if self.is_dead(id, now) {
                    if self.reclaim(st, ci, id, true) {
                        return true;
                    }
                } else if seg == Seg::Cold && raw.access_bits() & ACTIVE != 0 {
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
}

#[cfg(test)]
mod tests {
    use crate::{Config, Engine, GetMode, StoreMode};

    fn count(e: &Engine, name: &str) -> u64 {
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
        let e = Engine::new(Config {
            lru_maintainer: false,
            ..Config::default()
        })
        .unwrap();
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
}
