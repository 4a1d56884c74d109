//! Segments and TTL buckets: where objects are appended.
//!
//! Memory is `-m` cut into segments of one size (1 MB, or more when `-I`
//! needs it), allocated on first use and never returned to the system.
//! A segment belongs to the free list or to one TTL bucket: each bucket
//! appends to its one open segment and keeps its sealed segments oldest
//! first, so a segment holds objects written at about the same time with
//! about the same TTL, and expires as a whole once its latest expiry has
//! passed (`expire_at`).
//!
//! Per segment, atomics tell the evictor what it may do:
//! - `pending`: writes that have space here but are not yet linked or
//!   abandoned (a reservation being filled). A segment with any is not
//!   evicted, so its headers are always complete when it is walked.
//! - `refs`: pinned readers, plus the DRAINING bit (emptied, to be freed
//!   by the last unpin) and the COMPACTING bit (being merged in place:
//!   a pin taken then copies the value instead).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

use parking_lot::Mutex;

use super::index::Loc;

pub(crate) const DRAINING: u32 = 1 << 31;
pub(crate) const COMPACTING: u32 = 1 << 30;
pub(crate) const PIN_COUNT: u32 = COMPACTING - 1;
/// `expire_at` of a segment holding an object that never expires.
pub(crate) const NEVER: u32 = u32::MAX;
/// TTL buckets: 0 for objects without expiry, then one per power of two
/// of seconds to live.
pub(crate) const BUCKETS: usize = 24;

pub(crate) struct Segment {
    data: AtomicPtr<u8>,
    /// Bytes appended; changed under the bucket lock while open, by the
    /// merger while it owns the segment.
    pub write: AtomicU32,
    pub pending: AtomicU32,
    pub refs: AtomicU32,
    pub live_items: AtomicU32,
    pub live_bytes: AtomicU64,
    pub expire_at: AtomicU32,
    pub create_at: AtomicU32,
    /// Objects read (ACTIVE set) since written or last merged.
    pub active: AtomicU32,
    pub bucket: AtomicU8,
}

impl Segment {
    fn new() -> Segment {
        Segment {
            data: AtomicPtr::new(std::ptr::null_mut()),
            write: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            refs: AtomicU32::new(0),
            live_items: AtomicU32::new(0),
            live_bytes: AtomicU64::new(0),
            expire_at: AtomicU32::new(0),
            create_at: AtomicU32::new(0),
            active: AtomicU32::new(0),
            bucket: AtomicU8::new(0),
        }
    }
}

#[derive(Default)]
pub(crate) struct Bucket {
    pub open: Option<u32>,
    /// Sealed segments, oldest first.
    pub chain: VecDeque<u32>,
}

pub(crate) struct Segs {
    pub segs: Box<[Segment]>,
    pub seg_size: usize,
    pub buckets: Box<[Mutex<Bucket>]>,
    pub free: Mutex<Vec<u32>>,
    /// Segments whose memory has been allocated.
    pub allocated: AtomicU32,
    /// How many segments may be out of the free list (`-m`, then
    /// `cache_memlimit`), and how many are.
    limit: AtomicUsize,
    in_use: AtomicUsize,
}

/// The bucket for an object expiring at `exp` (relative), now `now`.
pub(crate) fn bucket_for(exp: u32, now: u32) -> usize {
    if exp == 0 {
        return 0;
    }
    let ttl = exp.saturating_sub(now).max(1);
    (1 + (u32::BITS - ttl.leading_zeros()) as usize).min(BUCKETS - 1)
}

impl Segs {
    /// A table of `table` segments of which `limit` may be used.
    pub fn new(table: usize, limit: usize, seg_size: usize) -> Segs {
        let nsegs = table.max(limit);
        Segs {
            limit: AtomicUsize::new(limit),
            in_use: AtomicUsize::new(0),
            segs: (0..nsegs).map(|_| Segment::new()).collect(),
            seg_size,
            buckets: (0..BUCKETS)
                .map(|_| Mutex::new(Bucket::default()))
                .collect(),
            // Popped from the end: lowest numbers first.
            free: Mutex::new((0..nsegs as u32).rev().collect()),
            allocated: AtomicU32::new(0),
        }
    }

    #[inline]
    pub fn seg(&self, s: u32) -> &Segment {
        &self.segs[s as usize]
    }

    /// Address of byte `loc.off` of segment `loc.seg`, which has memory.
    #[inline]
    pub fn ptr(&self, loc: Loc) -> *mut u8 {
        let base = self.seg(loc.seg).data.load(Acquire);
        debug_assert!(!base.is_null());
        // SAFETY: offsets handed out are below `seg_size`, the size the
        // segment's memory was allocated with.
        unsafe { base.add(loc.off as usize) }
    }

    fn layout(&self) -> std::alloc::Layout {
        // Segment sizes are checked at engine creation (at most 1 GB, a
        // multiple of 64), so this cannot fail; a fallback keeps the type.
        std::alloc::Layout::from_size_align(self.seg_size, 64)
            .unwrap_or(std::alloc::Layout::new::<u64>())
    }

    /// Takes a free segment for `bucket`, giving it memory on first use.
    fn take_free(&self, bucket: usize, now: u32) -> Option<u32> {
        let s = {
            let mut free = self.free.lock();
            if self.in_use.load(Relaxed) >= self.limit.load(Relaxed) {
                return None;
            }
            let s = free.pop()?;
            self.in_use.fetch_add(1, Relaxed);
            s
        };
        let seg = self.seg(s);
        if seg.data.load(Acquire).is_null() {
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { std::alloc::alloc(self.layout()) };
            if p.is_null() {
                self.put_free(s);
                return None;
            }
            seg.data.store(p, Release);
            self.allocated.fetch_add(1, Relaxed);
        }
        seg.write.store(0, Relaxed);
        seg.live_items.store(0, Relaxed);
        seg.live_bytes.store(0, Relaxed);
        seg.active.store(0, Relaxed);
        seg.expire_at.store(0, Relaxed);
        seg.create_at.store(now, Relaxed);
        seg.bucket.store(bucket as u8, Relaxed);
        seg.refs.store(0, Relaxed);
        Some(s)
    }

    /// Space for `size` bytes in the open segment of `bucket`, counted as
    /// a pending write there. None when no free segment is left.
    pub fn append(&self, bucket: usize, size: usize, exp: u32, now: u32) -> Option<Loc> {
        let mut b = self.buckets[bucket].lock();
        loop {
            if let Some(s) = b.open {
                let seg = self.seg(s);
                let w = seg.write.load(Relaxed) as usize;
                if w + size <= self.seg_size {
                    seg.write.store((w + size) as u32, Relaxed);
                    seg.pending.fetch_add(1, Relaxed);
                    seg.expire_at
                        .fetch_max(if exp == 0 { NEVER } else { exp }, Relaxed);
                    return Some(Loc {
                        seg: s,
                        off: w as u32,
                    });
                }
            }
            let s = self.take_free(bucket, now)?;
            if let Some(old) = b.open.replace(s) {
                b.chain.push_back(old);
            }
        }
    }

    /// Ends a pending write (linked or abandoned). Release: the object's
    /// bytes are complete before the evictor, reading `pending` with
    /// Acquire, may walk them.
    #[inline]
    pub fn done(&self, s: u32) {
        self.seg(s).pending.fetch_sub(1, Release);
    }

    /// Puts an emptied segment back on the free list, or leaves that to
    /// the last pin. The caller has unlinked every object in it.
    pub fn release(&self, s: u32) {
        let seg = self.seg(s);
        let prev = seg.refs.fetch_or(DRAINING, AcqRel);
        if prev & PIN_COUNT == 0 {
            self.put_free(s);
        }
    }

    fn put_free(&self, s: u32) {
        let mut free = self.free.lock();
        free.push(s);
        self.in_use.fetch_sub(1, Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    pub fn set_limit(&self, n: usize) {
        let _free = self.free.lock();
        self.limit.store(n, Relaxed);
    }

    /// Drops a pin; the last one on a drained segment frees it.
    pub fn unpin(&self, s: u32) {
        let prev = self.seg(s).refs.fetch_sub(1, AcqRel);
        if prev & DRAINING != 0 && prev & PIN_COUNT == 1 {
            self.put_free(s);
        }
    }

    /// Pins segment `s` for a reader; false while it is being compacted.
    pub fn pin(&self, s: u32) -> bool {
        let prev = self.seg(s).refs.fetch_add(1, AcqRel);
        if prev & COMPACTING != 0 {
            self.seg(s).refs.fetch_sub(1, AcqRel);
            return false;
        }
        true
    }

    /// Segments that can be taken now.
    pub fn free_count(&self) -> usize {
        let free = self.free.lock();
        let room = self
            .limit
            .load(Relaxed)
            .saturating_sub(self.in_use.load(Relaxed));
        free.len().min(room)
    }
}

impl Drop for Segs {
    fn drop(&mut self) {
        let layout = self.layout();
        for seg in self.segs.iter() {
            let p = seg.data.load(Acquire);
            if !p.is_null() {
                // SAFETY: allocated in `take_free` with this layout, once.
                unsafe { std::alloc::dealloc(p, layout) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_ttl() {
        assert_eq!(bucket_for(0, 100), 0);
        assert_eq!(bucket_for(101, 100), 2);
        assert_eq!(bucket_for(50, 100), 2);
        assert!(bucket_for(u32::MAX, 100) < BUCKETS);
    }

    #[test]
    fn appends_fill_then_seal_then_run_out() {
        let s = Segs::new(2, 2, 1024);
        let a = s.append(0, 600, 0, 1).unwrap();
        let b = s.append(0, 600, 0, 1).unwrap();
        assert_ne!(a.seg, b.seg);
        assert!(s.append(0, 600, 0, 1).is_none());
        let bk = s.buckets[0].lock();
        assert_eq!(bk.chain.len(), 1);
        drop(bk);
        s.done(a.seg);
        s.done(b.seg);
        assert!(s.pin(a.seg));
        s.release(a.seg);
        assert_eq!(s.free_count(), 0);
        s.unpin(a.seg);
        assert_eq!(s.free_count(), 1);
    }
}
