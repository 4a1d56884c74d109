//! Getting segments back: expiry, eviction by merging, and under `-M`
//! reclaiming only dead objects. All of it runs under `evict_lock`, one
//! pass at a time, and only on sealed segments without pending writes.
//!
//! - Expiry: a sealed segment whose latest expiry has passed holds only
//!   dead objects; it is walked once to take its entries out of the index
//!   and goes back to the free list (or, if pinned, to the last unpin).
//! - Eviction: the victim is the oldest chain head of all buckets. A head
//!   none of whose objects was read since it was written is evicted
//!   whole: a write-only workload keeps every other segment full. A head
//!   with read objects is merged with the segments after it in its chain:
//!   the objects read since they were written (or last merged) are
//!   compacted, in place, at the start of the head, then copied after them
//!   from the following segments until the head is nearly full; everything
//!   else is evicted and the following segments are freed. So frequently
//!   read objects survive, and a merge frees several segments at once.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use super::index::Loc;
use super::object::{ACTIVE, FETCHED};
use super::segs::{BUCKETS, COMPACTING, NEVER};
use super::SegmentEngine;
use crate::assoc::hash;

/// Most segments one merge reads.
const MAX_MERGE: usize = 4;

/// Why a segment is emptied, for the counters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Expired,
    Evicted,
    Reclaimed,
}

impl SegmentEngine {
    /// Frees at least one segment (or finds one freed meanwhile); false
    /// when nothing can be freed.
    pub(crate) fn make_room(&self, now: u32) -> bool {
        let _g = self.evict_lock.lock();
        if self.segs.free_count() > 0 {
            return true;
        }
        if self.expire_locked(now) > 0 {
            return true;
        }
        if self.cfg.evict_to_free {
            self.evict_locked(now)
        } else {
            self.reclaim_flushed(now)
        }
    }

    /// Drops every sealed segment whose objects have all expired.
    pub(crate) fn expire_segments(&self, now: u32) -> usize {
        let _g = self.evict_lock.lock();
        self.expire_locked(now)
    }

    fn expire_locked(&self, now: u32) -> usize {
        let mut n = 0;
        for b in 0..BUCKETS {
            let mut victims = Vec::new();
            self.segs.buckets[b].lock().chain.retain(|&s| {
                let seg = self.segs.seg(s);
                let exp = seg.expire_at.load(Relaxed);
                let dead = exp != NEVER && exp <= now && seg.pending.load(Acquire) == 0;
                if dead {
                    victims.push(s);
                }
                !dead
            });
            for s in victims {
                self.clear(s, Why::Expired, now);
                self.c.expired_segments.fetch_add(1, Relaxed);
                self.segs.release(s);
                n += 1;
            }
        }
        n
    }

    /// Takes every linked object of sealed segment `s` out of the index.
    fn clear(&self, s: u32, why: Why, now: u32) {
        let seg = self.segs.seg(s);
        let end = seg.write.load(Relaxed) as usize;
        let mut off = 0;
        while off < end && seg.live_items.load(Relaxed) > 0 {
            let loc = Loc {
                seg: s,
                off: off as u32,
            };
            // Headers and keys are complete: no pending write here.
            let o = self.obj(loc);
            off += o.size();
            let h = hash(o.key());
            let mut shard = self.index.lock(h);
            let Some(pos) = shard.find_loc(h, loc) else {
                continue;
            };
            self.count_drop(o, why, now);
            self.unlink(&mut shard, pos, loc);
        }
    }

    fn count_drop(&self, o: super::object::Obj, why: Why, now: u32) {
        let dead = self.is_dead(o, now);
        match why {
            Why::Expired => self.c.expired_objects.fetch_add(1, Relaxed),
            _ if dead => self.c.reclaimed.fetch_add(1, Relaxed),
            Why::Reclaimed => self.c.reclaimed.fetch_add(1, Relaxed),
            Why::Evicted => {
                if o.exptime() != 0 {
                    self.c.evicted_nonzero.fetch_add(1, Relaxed);
                }
                if o.bits() & FETCHED == 0 {
                    self.c.evicted_unfetched.fetch_add(1, Relaxed);
                }
                if self.evlog.enabled() {
                    let exp = o.exptime();
                    self.evlog.emit(&crate::Eviction {
                        key: o.key(),
                        ttl: if exp > 0 {
                            i64::from(exp) - i64::from(now)
                        } else {
                            -1
                        },
                        last_access: now.wrapping_sub(o.atime()),
                        fetched: o.bits() & FETCHED != 0,
                        class_id: 1,
                        size: o.nbytes(),
                    });
                }
                self.c.evicted_objects.fetch_add(1, Relaxed)
            }
        };
    }

    /// The bucket whose chain head is oldest (and has no pending write).
    fn oldest_head(&self) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for b in 0..BUCKETS {
            let bk = self.segs.buckets[b].lock();
            if let Some(&s) = bk.chain.front() {
                let seg = self.segs.seg(s);
                let t = seg.create_at.load(Relaxed);
                if seg.pending.load(Acquire) == 0 && best.is_none_or(|(_, bt)| t < bt) {
                    best = Some((b, t));
                }
            }
        }
        best.map(|(b, _)| b)
    }

    /// How many segments from the head of bucket `b`'s chain (`s0`, just
    /// taken off it, then the chain's first ones) hold live bytes that
    /// fit one segment together.
    fn compactable(&self, b: usize, s0: u32) -> usize {
        let size = self.segs.seg_size as u64;
        let mut live = self.segs.seg(s0).live_bytes.load(Relaxed);
        let mut n = 1;
        let bk = self.segs.buckets[b].lock();
        for &s in bk.chain.iter().take(MAX_MERGE - 1) {
            let seg = self.segs.seg(s);
            live += seg.live_bytes.load(Relaxed);
            if seg.pending.load(Acquire) != 0 || live > size {
                break;
            }
            n += 1;
        }
        n
    }

    /// Frees a segment. First without dropping a live object while live
    /// data is under half of memory (overwrites and deletes
    /// leave garbage in a log, which a slab cache would simply reuse):
    /// head windows whose live objects fit one segment are compacted into
    /// it, and dense heads go to the back of their chain for later. Then,
    /// with memory really full, the oldest head is merged keeping what was
    /// read since written, or evicted whole.
    fn evict_locked(&self, now: u32) -> bool {
        let capacity = (self.segs.limit() * self.segs.seg_size) as u64;
        let sparse = self.live_bytes.load(Relaxed) * 2 < capacity;
        let rounds = if sparse { self.segs.limit() } else { 1 };
        for round in 0..rounds {
            let Some(b) = self.oldest_head() else {
                return false;
            };
            let Some(s0) = self.segs.buckets[b].lock().chain.pop_front() else {
                return false;
            };
            let n = self.compactable(b, s0);
            if n >= 2 && self.merge(b, s0, now, true, n) {
                return true;
            }
            if sparse && round + 1 < rounds {
                self.segs.buckets[b].lock().chain.push_back(s0);
                continue;
            }
            let merge = {
                let bk = self.segs.buckets[b].lock();
                !bk.chain.is_empty() && self.segs.seg(s0).active.load(Relaxed) > 0
            };
            if merge && self.merge(b, s0, now, false, MAX_MERGE) {
                return true;
            }
            self.clear(s0, Why::Evicted, now);
            self.c.evicted_segments.fetch_add(1, Relaxed);
            self.segs.release(s0);
            return true;
        }
        false
    }

    /// Merges from `s0` (taken off bucket `b`'s chain) and up to
    /// `sources - 1` segments after it into `s0`, keeping every live
    /// object (`keep_all`, when they are known to fit) or those read since
    /// written; false when `s0` is pinned and cannot be compacted.
    fn merge(&self, b: usize, s0: u32, now: u32, keep_all: bool, sources: usize) -> bool {
        let seg0 = self.segs.seg(s0);
        if seg0
            .refs
            .compare_exchange(0, COMPACTING, AcqRel, Relaxed)
            .is_err()
        {
            return false;
        }
        let size = self.segs.seg_size;
        let mut cursor = 0usize;
        let mut exp_max = 0u32;
        let mut freed = 0;
        let mut active = 0;
        let mut src = s0;
        for round in 0..sources {
            let seg = self.segs.seg(src);
            let end = seg.write.load(Relaxed) as usize;
            let mut off = 0;
            while off < end && seg.live_items.load(Relaxed) > 0 {
                let loc = Loc {
                    seg: src,
                    off: off as u32,
                };
                let o = self.obj(loc);
                let osize = o.size();
                off += osize;
                let h = hash(o.key());
                let mut shard = self.index.lock(h);
                let Some(pos) = shard.find_loc(h, loc) else {
                    continue;
                };
                let keep = (keep_all || o.bits() & ACTIVE != 0) && !self.is_dead(o, now);
                if !keep || cursor + osize > size {
                    self.count_drop(o, Why::Evicted, now);
                    self.unlink(&mut shard, pos, loc);
                    continue;
                }
                let to = Loc {
                    seg: s0,
                    off: cursor as u32,
                };
                if to != loc {
                    // SAFETY: both ranges lie in allocated segments; `to`
                    // is below every live object of `s0` not yet moved
                    // (and `s0` has no pins: COMPACTING), so only dead
                    // bytes and the object itself (hence `copy`) are
                    // overwritten; the key's lock is held.
                    unsafe { std::ptr::copy(self.segs.ptr(loc), self.segs.ptr(to), osize) };
                    shard.replace(pos, h, to);
                    self.account(loc, osize, false);
                    self.account(to, osize, true);
                }
                let moved = self.obj(to);
                if keep_all {
                    if moved.bits() & ACTIVE != 0 {
                        active += 1;
                    }
                } else {
                    moved.set_bits(ACTIVE, false);
                }
                let e = moved.exptime();
                exp_max = exp_max.max(if e == 0 { NEVER } else { e });
                cursor += osize;
                if !keep_all {
                    self.c.merged_objects.fetch_add(1, Relaxed);
                }
            }
            if src != s0 {
                self.segs.release(src);
                freed += 1;
            }
            // Walkers of `s0` (later evictions) stop at the last object
            // kept; appends to it are over (sealed).
            seg0.write.store(cursor as u32, Relaxed);
            if round + 1 == sources || (!keep_all && cursor * 10 >= size * 9) {
                break;
            }
            let next = {
                let mut bk = self.segs.buckets[b].lock();
                match bk.chain.front() {
                    Some(&s) if self.segs.seg(s).pending.load(Acquire) == 0 => bk.chain.pop_front(),
                    _ => None,
                }
            };
            let Some(next) = next else {
                break;
            };
            src = next;
        }
        seg0.active.store(active, Relaxed);
        seg0.expire_at.store(exp_max, Relaxed);
        seg0.refs.fetch_and(!COMPACTING, AcqRel);
        if keep_all {
            self.c.compactions.fetch_add(1, Relaxed);
        } else {
            self.c.merges.fetch_add(1, Relaxed);
        }
        if cursor == 0 {
            self.segs.release(s0);
            freed += 1;
        } else {
            self.segs.buckets[b].lock().chain.push_front(s0);
        }
        if freed == 0 {
            // Only `s0` was read and it kept something: evict a head
            // whole rather than loop here.
            return self.evict_plain(now);
        }
        true
    }

    /// Evicts the oldest chain head of any bucket whole.
    fn evict_plain(&self, now: u32) -> bool {
        for b in 0..BUCKETS {
            let s = {
                let mut bk = self.segs.buckets[b].lock();
                match bk.chain.front() {
                    Some(&s) if self.segs.seg(s).pending.load(Acquire) == 0 => bk.chain.pop_front(),
                    _ => None,
                }
            };
            if let Some(s) = s {
                self.clear(s, Why::Evicted, now);
                self.c.evicted_segments.fetch_add(1, Relaxed);
                self.segs.release(s);
                return true;
            }
        }
        false
    }

    /// Under `-M`: frees a sealed segment written before a `flush_all`
    /// that has taken effect, whose objects are all dead. Live objects are
    /// never dropped.
    fn reclaim_flushed(&self, now: u32) -> bool {
        let oldest = self.oldest_live.load(Relaxed);
        if oldest == 0 || oldest > now {
            return false;
        }
        for b in 0..BUCKETS {
            let candidates: Vec<u32> = self.segs.buckets[b].lock().chain.iter().copied().collect();
            for s in candidates {
                let seg = self.segs.seg(s);
                if seg.pending.load(Acquire) != 0 || !self.all_dead(s, now) {
                    continue;
                }
                let mut bk = self.segs.buckets[b].lock();
                let Some(i) = bk.chain.iter().position(|&x| x == s) else {
                    continue;
                };
                bk.chain.remove(i);
                drop(bk);
                self.clear(s, Why::Reclaimed, now);
                self.segs.release(s);
                return true;
            }
        }
        false
    }

    /// Whether every linked object of sealed segment `s` is dead.
    fn all_dead(&self, s: u32, now: u32) -> bool {
        let end = self.segs.seg(s).write.load(Relaxed) as usize;
        let mut off = 0;
        while off < end {
            let loc = Loc {
                seg: s,
                off: off as u32,
            };
            let o = self.obj(loc);
            off += o.size();
            let h = hash(o.key());
            let shard = self.index.lock(h);
            if shard.find_loc(h, loc).is_some() && !self.is_dead(o, now) {
                return false;
            }
        }
        true
    }
}
