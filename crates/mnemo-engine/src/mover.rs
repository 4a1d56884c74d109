//! The page mover: takes a page from one class, rescues or evicts what it
//! holds, and gives it to another class or to the global page pool (or
//! takes one from the pool). Runs for `slabs reassign`, for the automover
//! (`automove.rs`), and to shed pages after `cache_memlimit` is lowered.
//! As memcached's slab mover, it never takes a class below one page.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::assoc::hash;
use crate::automove::Window;
use crate::config::Config;
use crate::engine::SlabEngine;
use crate::item::{is_chain_chunk, LINKED};
use crate::slabs::ChunkId;
use crate::stats::EngineStats;

/// Why `slabs reassign` was refused; Display is memcached's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReassignError {
    Busy,
    BadClass,
    NoSpare,
    Same,
}

impl fmt::Display for ReassignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReassignError::Busy => "BUSY currently processing reassign request",
            ReassignError::BadClass => "BADCLASS invalid src or dst class id",
            ReassignError::NoSpare => "NOSPARE source class has no spare pages",
            ReassignError::Same => "SAME src and dst class are identical",
        })
    }
}

#[derive(Default)]
struct Counters {
    rescues: AtomicU64,
    evictions_nomem: AtomicU64,
    inline_reclaim: AtomicU64,
    busy_items: AtomicU64,
    slabs_moved: AtomicU64,
}

pub(crate) struct MoverState {
    pub automove: AtomicU32,
    /// One page move at a time: a draining page has exactly one owner.
    busy: Mutex<()>,
    running: AtomicU32,
    /// (src, dst) class indexes; None is the global page pool.
    request: Mutex<Option<(Option<usize>, Option<usize>)>>,
    c: Counters,
    /// The automover's (mode 1) window; the mover thread's alone.
    pub(crate) window: Mutex<Option<Window>>,
    /// Set when `cache_memlimit` is lowered: the mover hands pages back
    /// until the pages fit the new limit.
    pub(crate) shed: std::sync::atomic::AtomicBool,
    /// memcached's `slabs_reassign_pick_any` cursor: the class id it
    /// looked at last, so `-1` sources go round the classes.
    pick_cursor: AtomicU32,
}

impl MoverState {
    pub fn new(cfg: &Config) -> MoverState {
        MoverState {
            automove: AtomicU32::new(if cfg.slab_reassign {
                cfg.slab_automove
            } else {
                0
            }),
            busy: Mutex::new(()),
            running: AtomicU32::new(0),
            request: Mutex::new(None),
            c: Counters::default(),
            window: Mutex::new(None),
            pick_cursor: AtomicU32::new(0),
            shed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn fill_stats(&self, s: &mut EngineStats) {
        s.slab_reassign_rescues = self.c.rescues.load(Relaxed);
        s.slab_reassign_evictions_nomem = self.c.evictions_nomem.load(Relaxed);
        s.slab_reassign_inline_reclaim = self.c.inline_reclaim.load(Relaxed);
        s.slab_reassign_busy_items = self.c.busy_items.load(Relaxed);
        s.slab_reassign_running = self.running.load(Relaxed);
        s.slabs_moved = self.c.slabs_moved.load(Relaxed);
    }

    pub fn reset_stats(&self) {
        for c in [
            &self.c.rescues,
            &self.c.evictions_nomem,
            &self.c.inline_reclaim,
            &self.c.busy_items,
            &self.c.slabs_moved,
        ] {
            c.store(0, Relaxed);
        }
    }
}

/// How clearing one chunk went.
enum Clear {
    Done,
    Busy,
}

impl SlabEngine {
    /// `slabs reassign <src> <dst>`: queues a page move, checked in
    /// memcached's order. Class 0 is the global page pool, as source or
    /// destination; `src` -1 picks a class with a page to spare.
    pub fn slabs_reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        let mut req = self.mover.request.lock();
        if req.is_some() || self.mover.running.load(Relaxed) != 0 {
            return Err(ReassignError::Busy);
        }
        let (src, dst) = self.reassign_check(src, dst)?;
        *req = Some((src, dst));
        drop(req);
        self.wake.1.notify_all();
        Ok(())
    }

    /// memcached's `do_slabs_reassign` checks after BUSY: the class
    /// indexes to move between (None: the pool).
    fn reassign_check(
        &self,
        src: i32,
        dst: i32,
    ) -> Result<(Option<usize>, Option<usize>), ReassignError> {
        let n = self.slabs.classes.len() as i32;
        if src == dst {
            return Err(ReassignError::Same);
        }
        let src = if src == -1 {
            self.pick_any_source(dst)
        } else {
            src
        };
        if src < 0 || src > n || dst < 0 || dst > n {
            return Err(ReassignError::BadClass);
        }
        let index = |id: i32| (id > 0).then(|| id as usize - 1);
        let (src, dst) = (index(src), index(dst));
        // The pool, like a class, must keep a page: memcached checks both
        // with the same `slabs < 2`.
        let pages = match src {
            Some(si) => self.slabs.classes[si].state.lock().pages.len(),
            None => self.slabs.pool_pages(),
        };
        if pages < 2 {
            return Err(ReassignError::NoSpare);
        }
        Ok((src, dst))
    }

    /// The next class after the last one picked, round the classes, with
    /// more than one page and not `dst`; -1 when none has.
    fn pick_any_source(&self, dst: i32) -> i32 {
        let n = self.slabs.classes.len() as u32;
        let mut cur = self.mover.pick_cursor.load(Relaxed);
        for _ in 0..n {
            cur = if cur >= n { 1 } else { cur + 1 };
            if cur as i32 == dst {
                continue;
            }
            if self.slabs.classes[cur as usize - 1]
                .state
                .lock()
                .pages
                .len()
                > 1
            {
                self.mover.pick_cursor.store(cur, Relaxed);
                return cur as i32;
            }
        }
        self.mover.pick_cursor.store(cur, Relaxed);
        -1
    }

    /// A reassignment the automover decided, run at once on the mover
    /// thread; false when memcached's checks refuse it or the move fails.
    pub(crate) fn reassign_now(&self, src: i32, dst: i32) -> bool {
        match self.reassign_check(src, dst) {
            Ok((src, dst)) => self.move_page_from(src, dst),
            Err(_) => false,
        }
    }

    /// `slabs automove 0|1|2`.
    pub fn set_automove(&self, mode: u32) {
        self.mover.automove.store(mode, Relaxed);
    }

    /// Moves a page from class `src` or, when None, from the global pool.
    fn move_page_from(&self, src: Option<usize>, dst: Option<usize>) -> bool {
        match (src, dst) {
            (Some(si), _) => self.move_page(si, dst),
            (None, Some(di)) => {
                let _one = self.mover.busy.lock();
                let Some(page) = self.slabs.take_pool_page() else {
                    return false;
                };
                let mut st = self.slabs.classes[di].state.lock();
                self.slabs.carve(di, &mut st, page);
                self.mover.c.slabs_moved.fetch_add(1, Relaxed);
                true
            }
            (None, None) => false,
        }
    }

    /// Empties one page of class `si` and hands it to `dst` (or the global
    /// pool). Gives up after a while if items stay busy.
    pub(crate) fn move_page(&self, si: usize, dst: Option<usize>) -> bool {
        let _one = self.mover.busy.lock();
        self.mover.running.store(1, Relaxed);
        let moved = self.move_page_inner(si, dst);
        self.mover.running.store(0, Relaxed);
        moved
    }

    fn move_page_inner(&self, si: usize, dst: Option<usize>) -> bool {
        let class = &self.slabs.classes[si];
        let page = {
            let st = class.state.lock();
            // The page with the most free chunks costs the least to clear.
            let Some(&page) = st.pages.iter().max_by_key(|&&p| {
                self.slabs
                    .chunk_ids(si, p)
                    // SAFETY: chunks of `p`, a page of class `si` whose lock (`st`) is held.
                    .filter(|&id| unsafe { self.slabs.raw(id) }.meta() == 0)
                    .count()
            }) else {
                return false;
            };
            page
        };
        let ids: Vec<ChunkId> = self.slabs.chunk_ids(si, page).collect();
        {
            let mut st = class.state.lock();
            if !st.pages.contains(&page) {
                return false;
            }
            self.slabs.set_draining(si, &mut st, page, true);
        }
        for attempt in 0..1000 {
            let mut st = class.state.lock();
            // Free chunks of a draining page are never on the free list,
            // so rescues below cannot land in it.
            let mut busy = 0;
            for &id in &ids {
                // SAFETY: `id` is a chunk of the page being drained, which the mover
                // owns; class lock (`st`) held.
                if unsafe { self.slabs.raw(id) }.meta() == 0 {
                    continue;
                }
                if let Clear::Busy = self.clear_chunk(&mut st, id) {
                    busy += 1;
                }
            }
            if busy == 0 {
                st.pages.retain(|&p| p != page);
                drop(st);
                match dst {
                    Some(di) => {
                        let mut dst_st = self.slabs.classes[di].state.lock();
                        self.slabs.carve(di, &mut dst_st, page);
                    }
                    None => {
                        self.slabs.set_page_unowned(page);
                        self.slabs.release_page(page);
                    }
                }
                self.mover.c.slabs_moved.fetch_add(1, Relaxed);
                return true;
            }
            self.mover.c.busy_items.fetch_add(busy, Relaxed);
            drop(st);
            if self.stop.load(Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_micros(if attempt < 10 { 50 } else { 1000 }));
        }
        let mut st = class.state.lock();
        self.slabs.set_draining(si, &mut st, page, false);
        false
    }

    /// Rescues (copies to a free chunk of the same class elsewhere) or
    /// evicts the item in chunk `id`.
    fn clear_chunk(&self, st: &mut crate::slabs::ClassState, id: ChunkId) -> Clear {
        // SAFETY: a chunk of the draining page (mover's own); class lock held.
        let raw = unsafe { self.slabs.raw(id) };
        let m = raw.meta();
        let head_id = if is_chain_chunk(m) { raw.prev() } else { id };
        // SAFETY: a chain chunk's `prev` is its head, in the same (largest)
        // class, allocated while the chain chunk is; class lock held.
        let head = unsafe { self.slabs.raw(head_id) };
        if head.meta() & LINKED == 0 || st.pins.contains_key(&head_id) {
            // Being allocated or written by a request, or still sent by a
            // reply (pinned): try again shortly.
            return Clear::Busy;
        }
        let h = hash(head.key());
        let Some(mut shard) = self.index.try_lock(h) else {
            return Clear::Busy;
        };
        let now = self.clock.now();
        if self.is_dead(head_id, now) {
            self.unlink_class_side(&mut shard, st, h, head_id);
            st.c.reclaimed += 1;
            self.mover.c.inline_reclaim.fetch_add(1, Relaxed);
            return Clear::Done;
        }
        if !head.is_chained() {
            if let Some(new_id) = self.slabs.free_pop(st) {
                // SAFETY: just taken off this class's free list: free and ours, class
                // lock held.
                let new = unsafe { self.slabs.raw(new_id) };
                let size = self.charged_size(raw);
                let seg = raw.seg();
                // SAFETY: same class, so the same chunk size; the old item
                // is locked by its shard and class, the new chunk is free.
                unsafe { raw.copy_to(&new, size) };
                shard.replace(h, id, new_id);
                self.slabs.lru_unlink(st, id, size as u64);
                self.slabs.lru_link(st, new_id, seg, size as u64);
                raw.set_meta(0);
                self.mover.c.rescues.fetch_add(1, Relaxed);
                return Clear::Done;
            }
        }
        // Counted as memcached counts it: in slab_reassign_evictions_nomem
        // only, not in the class's evictions the automover reads.
        self.mover.c.evictions_nomem.fetch_add(1, Relaxed);
        self.unlink_class_side(&mut shard, st, h, head_id);
        Clear::Done
    }

    /// Moves a page at once, on the calling thread (tests); 0 is the pool.
    #[doc(hidden)]
    pub fn move_page_now(&self, src: u32, dst: u32) -> bool {
        let n = self.slabs.classes.len() as u32;
        if src > n || dst > n || src == dst {
            return false;
        }
        let index = |id: u32| (id > 0).then(|| id as usize - 1);
        self.move_page_from(index(src), index(dst))
    }

    pub(crate) fn mover_loop(&self) {
        let mut next_automove = Instant::now() + Duration::from_secs(1);
        // memcached's maintainer runs the automover again after 1 ms, not
        // a second, while it is returning pages to the pool, and its
        // mode 2 reassigns on every eviction: both drain at once.
        let mut hurry = false;
        self.automove_reset();
        while !self.stop.load(Relaxed) {
            self.sleep(Duration::from_millis(if hurry { 1 } else { 100 }));
            hurry = false;
            if self.stop.load(Relaxed) {
                break;
            }
            let req = {
                let mut r = self.mover.request.lock();
                // Running from before the request leaves the queue, so a
                // `slabs reassign` meanwhile is BUSY, as in memcached.
                let req = r.take();
                if req.is_some() {
                    self.mover.running.store(1, Relaxed);
                }
                req
            };
            if let Some((src, dst)) = req {
                self.move_page_from(src, dst);
                self.mover.running.store(0, Relaxed);
                continue;
            }
            // Shed pages after cache_memlimit was lowered. Only then: pages
            // over the limit are otherwise classes' first pages, which
            // memcached keeps.
            if self.mover.shed.load(Relaxed) {
                let over = {
                    let pool = self.slabs.pool.lock();
                    pool.allocated > pool.limit
                };
                self.slabs.trim_spare();
                match self.class_with_most_pages() {
                    Some(si) if over => {
                        self.move_page(si, None);
                    }
                    _ => self.mover.shed.store(false, Relaxed),
                }
                continue;
            }
            match self.mover.automove.load(Relaxed) {
                1 if self.cfg.lru_maintainer && Instant::now() >= next_automove => {
                    if self.automove_window_step() {
                        hurry = true;
                    } else {
                        next_automove = Instant::now() + Duration::from_secs(1);
                    }
                }
                2 => hurry = self.automove_on_evictions(),
                _ => {}
            }
        }
    }

    /// The class with the most pages, if it can spare one.
    fn class_with_most_pages(&self) -> Option<usize> {
        self.slabs
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.state.lock().pages.len(), i))
            .filter(|&(p, _)| p > 1)
            .max()
            .map(|(_, i)| i)
    }
}
