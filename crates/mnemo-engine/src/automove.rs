//! The slab automover's decisions, as memcached 1.6.18 makes them.
//!
//! Mode 1 (`slab_automove=1`, the default) is memcached's window policy
//! (`slab_automove.c`), sampled once a second: a class whose free chunks
//! exceed 2.5 pages and which was not "dirty" (evicting, out of memory or
//! growing) at any sample of the window gives a page to the global pool,
//! and the step runs again a millisecond later, so idle memory drains to
//! the pool all at once; classes then take pool pages as they need them.
//! Otherwise a class that keeps evicting and whose COLD tail is much
//! younger than the oldest class's gets a page from that class. Mode 2
//! reassigns a page to a class each time it evicts, from any class with a
//! page to spare (memcached's `slabs_reassign(-1, id)` on eviction).

use std::sync::atomic::Ordering::Relaxed;

use crate::engine::SlabEngine;
use crate::item::Seg;
use crate::slabs::ChunkId;

/// memcached's MIN_PAGES_FOR_SOURCE: a class-to-class source keeps more.
const MIN_PAGES_FOR_SOURCE: usize = 2;
/// memcached's MIN_PAGES_FOR_RECLAIM: free chunks worth this many pages
/// make a class give one to the pool.
const MIN_PAGES_FOR_RECLAIM: f64 = 2.5;

/// One class at one sample.
#[derive(Clone, Copy, Default)]
pub(crate) struct Snap {
    evicted: u64,
    outofmemory: u64,
    /// Age of COLD's tail, 0 when COLD is empty.
    age: u32,
    free_chunks: u64,
    pages: usize,
    perslab: usize,
}

/// One class's entry of the window.
#[derive(Clone, Copy, Default)]
struct Slot {
    age: u64,
    dirty: bool,
    evicted_ratio: f32,
    evicted_seen: u64,
}

/// The automover's memory between samples.
pub(crate) struct Window {
    size: usize,
    cur: u64,
    ratio: f64,
    /// `size` slots per class.
    slots: Vec<Slot>,
    before: Vec<Snap>,
}

impl Window {
    pub(crate) fn new(size: usize, ratio: f64, before: Vec<Snap>) -> Window {
        let size = size.max(1);
        Window {
            size,
            cur: 0,
            ratio,
            slots: vec![Slot::default(); size * before.len()],
            before,
        }
    }

    /// memcached's `slab_automove_run`: (src, dst) class ids, 0 being
    /// the global pool, or None.
    fn run(&mut self, after: Vec<Snap>) -> Option<(i32, i32)> {
        let evicted_total: u64 = after
            .iter()
            .zip(&self.before)
            .map(|(a, b)| a.evicted.saturating_sub(b.evicted))
            .sum();
        self.cur += 1;
        let size = self.size;
        let mut decision = None;
        let mut oldest: Option<(usize, u64)> = None;
        let mut youngest: Option<(usize, u64, bool)> = None;
        for (ci, (a, b)) in after.iter().zip(&self.before).enumerate() {
            let window = &mut self.slots[ci * size..(ci + 1) * size];
            let cur = (self.cur % size as u64) as usize;
            let mut slot = Slot::default();
            let evicted = a.evicted.saturating_sub(b.evicted);
            if evicted > 0 {
                slot.evicted_ratio = evicted as f32 / evicted_total as f32;
                slot.evicted_seen = 1;
                slot.dirty = true;
            }
            if a.outofmemory > b.outofmemory || a.pages > b.pages {
                slot.dirty = true;
            }
            slot.age = u64::from(a.age);
            window[cur] = slot;
            let dirty = window.iter().any(|s| s.dirty);
            let age = window.iter().map(|s| s.age).sum::<u64>() / size as u64;
            let seen: u64 = window.iter().map(|s| s.evicted_seen).sum();
            let ratio: f32 = window.iter().map(|s| s.evicted_ratio).sum();
            if a.free_chunks as f64 > a.perslab as f64 * MIN_PAGES_FOR_RECLAIM && !dirty {
                decision = Some((ci as i32 + 1, 0));
                oldest = None;
                youngest = None;
                break;
            }
            if age > oldest.map_or(0, |o| o.1) && a.pages > MIN_PAGES_FOR_SOURCE {
                oldest = Some((ci, age));
            }
            if age < youngest.map_or(u64::MAX, |y| y.1)
                && (seen > (size / 2) as u64 || ratio / size as f32 > 0.25)
            {
                youngest = Some((ci, age, slot.evicted_seen > 0));
            }
        }
        self.before = after;
        if let (Some((young, young_age, evicting)), Some((old, old_age))) = (youngest, oldest) {
            if self.cur > size as u64
                && (young_age as f64) < old_age as f64 * self.ratio
                && evicting
            {
                decision = Some((old as i32 + 1, young as i32 + 1));
            }
        }
        decision
    }
}

impl SlabEngine {
    /// What the window policy looks at, per class.
    pub(crate) fn automove_snapshot(&self) -> Vec<Snap> {
        let now = self.clock.now();
        self.slabs
            .classes
            .iter()
            .map(|class| {
                let st = class.state.lock();
                let tail = st.lru[Seg::Cold as usize].tail;
                let age = if tail == ChunkId::NIL {
                    0
                } else {
                    // SAFETY: COLD's tail, an item of this class; class lock held.
                    now.saturating_sub(unsafe { self.slabs.raw(tail) }.atime())
                };
                Snap {
                    evicted: st.c.evicted,
                    outofmemory: st.c.outofmemory,
                    age,
                    free_chunks: st.free_count,
                    pages: st.pages.len(),
                    perslab: class.perslab,
                }
            })
            .collect()
    }

    /// Starts the window afresh, as memcached does at start and when the
    /// ratio changes.
    pub(crate) fn automove_reset(&self) {
        let w = Window::new(
            self.cfg.slab_automove_window as usize,
            self.tuning.automove_ratio(),
            self.automove_snapshot(),
        );
        *self.mover.window.lock() = Some(w);
    }

    /// One mode-1 step. True when it sent a page to the global pool, so
    /// the next step should follow at once.
    pub(crate) fn automove_window_step(&self) -> bool {
        let ratio = self.tuning.automove_ratio();
        let stale = self
            .mover
            .window
            .lock()
            .as_ref()
            .is_none_or(|w| w.ratio.to_bits() != ratio.to_bits());
        if stale {
            self.automove_reset();
        }
        let after = self.automove_snapshot();
        let decision = match self.mover.window.lock().as_mut() {
            Some(w) => w.run(after),
            None => None,
        };
        match decision {
            Some((src, dst)) => {
                self.reassign_now(src, dst);
                dst == 0
            }
            None => false,
        }
    }

    /// One mode-2 step: a page for every class that evicted since the
    /// last step. True when a page moved.
    pub(crate) fn automove_on_evictions(&self) -> bool {
        let mut moved = false;
        for (ci, class) in self.slabs.classes.iter().enumerate() {
            let evicted = {
                let mut st = class.state.lock();
                let n = st.c.evicted.saturating_sub(st.automove_seen_evictions);
                st.automove_seen_evictions = st.c.evicted;
                n
            };
            if evicted > 0 && self.mover.automove.load(Relaxed) == 2 {
                moved |= self.reassign_now(-1, ci as i32 + 1);
            }
        }
        moved
    }
}
