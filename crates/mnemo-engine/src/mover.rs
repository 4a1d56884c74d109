//! The page mover: takes a page from one class, rescues or evicts what it
//! holds, and gives it to another class (or the spare pool). Runs for
//! `slabs reassign`, for the automover, for a class that must store an item
//! when memory is full and it has no page, and to shed pages after
//! `cache_memlimit` is lowered.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

use crate::assoc::hash;
use crate::config::Config;
use crate::engine::Engine;
use crate::item::{is_chain_chunk, Seg, LINKED};
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

/// One automover sample of a class.
#[derive(Clone, Copy, Default)]
struct Sample {
    evicted: u64,
    free_chunks: u64,
    age: u32,
    pages: usize,
}

pub(crate) struct MoverState {
    pub automove: AtomicU32,
    /// One page move at a time: a draining page has exactly one owner.
    busy: Mutex<()>,
    running: AtomicU32,
    /// (src class index, dst class index or None for the spare pool).
    request: Mutex<Option<(usize, Option<usize>)>>,
    c: Counters,
    window: Mutex<Vec<VecDeque<Sample>>>,
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
            window: Mutex::new(Vec::new()),
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

impl Engine {
    /// `slabs reassign <src> <dst>`: queues a page move. `src` -1 picks a
    /// class; `dst` 0 is the spare pool.
    pub fn slabs_reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        let n = self.slabs.classes.len() as i32;
        let mut req = self.mover.request.lock();
        if req.is_some() || self.mover.running.load(Relaxed) != 0 {
            return Err(ReassignError::Busy);
        }
        if src == dst {
            return Err(ReassignError::Same);
        }
        let src = if src == -1 {
            self.pick_any_source(dst)
        } else {
            src
        };
        if src < 1 || src > n || dst < 0 || dst > n {
            return Err(ReassignError::BadClass);
        }
        let si = src as usize - 1;
        if self.slabs.classes[si].state.lock().pages.len() < 2 {
            return Err(ReassignError::NoSpare);
        }
        *req = Some((
            si,
            if dst == 0 {
                None
            } else {
                Some(dst as usize - 1)
            },
        ));
        drop(req);
        self.wake.1.notify_all();
        Ok(())
    }

    fn pick_any_source(&self, dst: i32) -> i32 {
        self.slabs
            .classes
            .iter()
            .filter(|c| c.id as i32 != dst)
            .map(|c| (c.state.lock().pages.len(), c.id as i32))
            .filter(|&(pages, _)| pages > 1)
            .max()
            .map(|(_, id)| id)
            .unwrap_or(-1)
    }

    /// `slabs automove 0|1|2`.
    pub fn set_automove(&self, mode: u32) {
        self.mover.automove.store(mode, Relaxed);
    }

    /// Empties one page of class `si` and hands it to `dst` (or the spare
    /// pool). Gives up after a while if items stay busy.
    pub(crate) fn move_page(&self, si: usize, dst: Option<usize>) -> bool {
        let _one = self.mover.busy.lock();
        self.mover.running.store(1, Relaxed);
        let moved = self.move_page_inner(si, dst, 1000);
        self.mover.running.store(0, Relaxed);
        moved
    }

    /// Passes over the page until its busy items are gone, at most
    /// `attempts`, sleeping between them.
    fn move_page_inner(&self, si: usize, dst: Option<usize>, attempts: u32) -> bool {
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
        for attempt in 0..attempts {
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
            if self.stop.load(Relaxed) || attempt + 1 == attempts {
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
        st.c.evicted += 1;
        self.mover.c.evictions_nomem.fetch_add(1, Relaxed);
        self.unlink_class_side(&mut shard, st, h, head_id);
        Clear::Done
    }

    /// Moves a page at once, on the calling thread (tests).
    #[doc(hidden)]
    pub fn move_page_now(&self, src: u32, dst: u32) -> bool {
        let n = self.slabs.classes.len() as u32;
        if src == 0 || src > n || dst > n || src == dst {
            return false;
        }
        self.move_page(
            src as usize - 1,
            if dst == 0 {
                None
            } else {
                Some(dst as usize - 1)
            },
        )
    }

    /// A class with no items and no free chunk needs a page while memory
    /// is full: take one from the class with the most pages.
    pub(crate) fn steal_page_for(&self, ci: usize) -> bool {
        let src = self
            .slabs
            .classes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != ci)
            .map(|(i, c)| (c.state.lock().pages.len(), i))
            .filter(|&(pages, _)| pages > 0)
            .max();
        let Some((_, si)) = src else {
            return false;
        };
        // This runs on a worker thread, often under a key's shard lock, and
        // busy items are mostly pinned by replies that same worker has yet
        // to write: waiting for them (or for the mover, which may be
        // waiting for them) stalls the worker for nothing. One pass, no
        // wait; the store fails as out of memory if the page is busy.
        let Some(_one) = self.mover.busy.try_lock() else {
            return false;
        };
        self.mover.running.store(1, Relaxed);
        let moved = self.move_page_inner(si, Some(ci), 1);
        self.mover.running.store(0, Relaxed);
        moved
    }

    pub(crate) fn mover_loop(&self) {
        let mut tick = 0u64;
        while !self.stop.load(Relaxed) {
            self.sleep(Duration::from_millis(100));
            if self.stop.load(Relaxed) {
                break;
            }
            let req = self.mover.request.lock().take();
            if let Some((si, dst)) = req {
                self.move_page(si, dst);
                continue;
            }
            // Shed pages after cache_memlimit was lowered.
            let over = {
                let pool = self.slabs.pool.lock();
                pool.allocated > pool.limit
            };
            if over {
                self.slabs.trim_spare();
                if let Some(si) = self.class_with_most_pages() {
                    self.move_page(si, None);
                }
                continue;
            }
            tick += 1;
            if tick.is_multiple_of(10) {
                let mode = self.mover.automove.load(Relaxed);
                if mode > 0 {
                    self.automove_step(mode);
                }
            }
        }
    }

    fn class_with_most_pages(&self) -> Option<usize> {
        self.slabs
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.state.lock().pages.len(), i))
            .filter(|&(p, _)| p > 0)
            .max()
            .map(|(_, i)| i)
    }

    /// One automover decision, once a second. Mode 1 is memcached's
    /// window policy: a class that has had free memory for the whole
    /// window gives a page back to the pool; a class that is evicting and
    /// whose oldest item is much younger than another class's gets a page
    /// from that class. Mode 2 moves to any evicting class at once.
    fn automove_step(&self, mode: u32) {
        let now = self.clock.now();
        let window_len = self.cfg.slab_automove_window.max(1) as usize;
        let n = self.slabs.classes.len();
        let mut win = self.mover.window.lock();
        if win.len() != n {
            *win = vec![VecDeque::new(); n];
        }
        for (ci, class) in self.slabs.classes.iter().enumerate() {
            let mut st = class.state.lock();
            let evicted = st.c.evicted - st.automove_seen_evictions;
            st.automove_seen_evictions = st.c.evicted;
            let tail = st.lru[Seg::Cold as usize].tail;
            let age = if tail == ChunkId::NIL {
                0
            } else {
                // SAFETY: COLD's tail, an item of this class; class lock held.
                now.saturating_sub(unsafe { self.slabs.raw(tail) }.atime())
            };
            let w = &mut win[ci];
            w.push_back(Sample {
                evicted,
                free_chunks: st.free_count,
                age,
                pages: st.pages.len(),
            });
            while w.len() > window_len {
                w.pop_front();
            }
        }
        let full = win.iter().all(|w| w.len() >= window_len) || mode == 2;
        if !full {
            return;
        }
        // Free memory sitting idle in one class goes back to the pool.
        for (ci, w) in win.iter().enumerate() {
            let perslab = self.slabs.classes[ci].perslab as u64;
            let last = w.back().copied().unwrap_or_default();
            if last.pages > 2 && w.iter().all(|s| s.free_chunks * 2 > perslab * 5) {
                drop(win);
                self.move_page(ci, None);
                return;
            }
        }
        let evicting = |w: &VecDeque<Sample>| {
            if mode == 2 {
                w.back().map(|s| s.evicted > 0).unwrap_or(false)
            } else {
                w.iter().any(|s| s.evicted > 0)
            }
        };
        let youngest = win
            .iter()
            .enumerate()
            .filter(|(_, w)| evicting(w))
            .min_by_key(|(_, w)| w.back().map(|s| s.age).unwrap_or(0))
            .map(|(i, w)| (i, w.back().map(|s| s.age).unwrap_or(0)));
        let oldest = win
            .iter()
            .enumerate()
            .filter(|(_, w)| w.back().map(|s| s.pages > 2).unwrap_or(false))
            .max_by_key(|(_, w)| w.back().map(|s| s.age).unwrap_or(0))
            .map(|(i, w)| (i, w.back().map(|s| s.age).unwrap_or(0)));
        if let (Some((dst, young)), Some((src, old))) = (youngest, oldest) {
            let ratio = self.tuning.automove_ratio();
            if src != dst && (mode == 2 || f64::from(young) < f64::from(old) * ratio) {
                for w in win.iter_mut() {
                    w.clear();
                }
                drop(win);
                self.move_page(src, Some(dst));
            }
        }
    }
}
