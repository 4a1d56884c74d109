//! loom models of pinned values (`src/pin.rs`) against what else may
//! happen to the item meanwhile: unlink and reuse of its chunk, incr/decr
//! in place, and the page mover's rescue. Run with scripts/loom.sh.
//!
//! The engine's pin bookkeeping lives inside `Engine` (slab classes, index
//! shards, parking_lot mutexes), too much to build under loom, so each
//! model restates the protocol with the same locks, the same order and the
//! same atomics and orderings as the code, named after the functions it
//! mirrors. The item's bytes are a loom `UnsafeCell`: a write that is not
//! ordered after every read of a pinned value (or the other way round) is
//! a data race loom reports, whatever the values.
//!
//! Each protocol step has a deliberately broken variant (`Bug`); the
//! `broken_*` tests check that the model catches it.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use loom::sync::Arc;
use loom::thread;

mod loom_support;
use loom_support::{must_fail, Lock};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bug {
    None,
    /// `free_item_locked` frees a pinned item at once.
    FreeWhilePinned,
    /// `Engine::pin` counts `pinned` after the shard lock is released.
    CountAfterShardUnlock,
    /// The mover rescues an item without looking at its pins.
    MoverIgnoresPins,
    /// `unpin` and `is_pinned` use Relaxed on `pinned` (as before issue
    /// #15): incr may then rewrite bytes a finished reply read without
    /// anything ordering the two.
    RelaxedPinnedCount,
}

/// One item's chunk as its class lock sees it (`ClassState::pins` and the
/// free list, reduced to one chunk).
#[derive(Default)]
struct Class {
    /// `Pin::count`.
    pins: u32,
    /// `Pin::unlinked`: freed while pinned; the last unpin frees it.
    unlinked: bool,
    /// On the free list.
    free: bool,
    /// The LINKED meta bit.
    linked: bool,
}

struct Model {
    /// The key's index shard: which chunk the key maps to (0: none,
    /// 1: `chunk`, 2: `spare`, where the mover's rescue puts it).
    shard: Lock<u8>,
    class: Lock<Class>,
    /// `Engine::pinned`, the fast path of `is_pinned`.
    pinned: AtomicU64,
    /// The chunk's header and value bytes.
    chunk: UnsafeCell<u64>,
    /// A free chunk of the same class elsewhere (the rescue's target).
    spare: UnsafeCell<u64>,
    bug: Bug,
}

const VALUE: u64 = 7;

impl Model {
    fn new(bug: Bug) -> Arc<Model> {
        Arc::new(Model {
            shard: Lock::new(1),
            class: Lock::new(Class {
                linked: true,
                ..Class::default()
            }),
            pinned: AtomicU64::new(0),
            chunk: UnsafeCell::new(VALUE),
            spare: UnsafeCell::new(0),
            bug,
        })
    }

    /// `Engine::get` + `ItemRef::pin`: under the shard lock, with the item
    /// linked, count a pin in its class and in `pinned`. Returns the
    /// chunk pinned; only `chunk`'s pins are modelled (the mover drains
    /// its page), a pin of the rescued copy is just a read under the lock.
    fn get_and_pin(&self) -> u8 {
        let shard = self.shard.lock();
        if *shard != 1 {
            return *shard;
        }
        self.class.lock().pins += 1;
        if self.bug == Bug::CountAfterShardUnlock {
            drop(shard);
            self.pinned.fetch_add(1, Relaxed);
        } else {
            self.pinned.fetch_add(1, Relaxed);
            drop(shard);
        }
        1
    }

    /// `Pinned::for_each_part`: no lock, only the pin.
    fn read_pinned(&self) -> u64 {
        // SAFETY: loom's cell checks that no write races this read; that
        // is what the model is about.
        self.chunk.with(|p| unsafe { *p })
    }

    /// `Engine::unpin`.
    fn unpin(&self) {
        let mut c = self.class.lock();
        c.pins -= 1;
        if c.pins == 0 && c.unlinked {
            c.unlinked = false;
            c.free = true;
        }
        drop(c);
        let order = if self.bug == Bug::RelaxedPinnedCount {
            Relaxed
        } else {
            Release
        };
        self.pinned.fetch_sub(1, order);
    }

    /// `Engine::free_item_locked`.
    fn free_item_locked(&self, c: &mut Class) {
        if c.pins > 0 && self.bug != Bug::FreeWhilePinned {
            c.unlinked = true;
        } else {
            c.free = true;
        }
    }

    /// `Engine::unlink` (delete, overwrite, eviction, flush): shard lock,
    /// then class lock.
    fn delete(&self) {
        let mut shard = self.shard.lock();
        if *shard == 1 {
            *shard = 0;
            let mut c = self.class.lock();
            c.linked = false;
            self.free_item_locked(&mut c);
        }
    }

    /// `alloc_chunk` then `fill_value`: the chunk, once off the free list,
    /// is the allocator's alone and written without a lock.
    fn alloc_and_fill(&self, v: u64) -> bool {
        let mut c = self.class.lock();
        if !c.free {
            return false;
        }
        c.free = false;
        drop(c);
        // SAFETY: checked by loom (see `read_pinned`).
        self.chunk.with_mut(|p| unsafe { *p = v });
        true
    }

    /// `Engine::is_pinned`, the caller holding the shard lock.
    fn is_pinned(&self) -> bool {
        let order = if self.bug == Bug::RelaxedPinnedCount {
            Relaxed
        } else {
            Acquire
        };
        if self.pinned.load(order) == 0 {
            return false;
        }
        self.class.lock().pins > 0
    }

    /// `KeySlot::arith` rewriting a value in place when it is not pinned.
    fn incr_in_place(&self) {
        let shard = self.shard.lock();
        if *shard == 1 && !self.is_pinned() {
            // SAFETY: checked by loom (see `read_pinned`).
            self.chunk.with_mut(|p| unsafe { *p += 1 });
        }
        drop(shard);
    }

    /// `Engine::clear_chunk`'s rescue: class lock, busy unless linked and
    /// unpinned, `try_lock` of the shard, copy out, clear the old chunk's
    /// meta, free it. Returns whether it moved the item.
    fn mover_rescue(&self) -> bool {
        let mut c = self.class.lock();
        if !c.linked || (c.pins > 0 && self.bug != Bug::MoverIgnoresPins) {
            return false;
        }
        let Some(mut shard) = self.shard.try_lock() else {
            return false;
        };
        // SAFETY: checked by loom (see `read_pinned`).
        let v = self.chunk.with(|p| unsafe { *p });
        // SAFETY: the spare chunk is the mover's (off the free list).
        self.spare.with_mut(|p| unsafe { *p = v });
        *shard = 2;
        // SAFETY: checked by loom: `raw.set_meta(0)` on the old chunk.
        self.chunk.with_mut(|p| unsafe { *p = 0 });
        c.linked = false;
        c.free = true;
        drop(shard);
        true
    }
}

/// Every interleaving: two threads and a few steps each, so no
/// preemption bound is needed.
fn model(f: impl Fn() + Sync + Send + 'static) {
    loom::model(f);
}

/// A reply pins and sends the value while another client deletes the key
/// and a store reuses the chunk: the reply sees the value whole, the
/// chunk is reused only after the last unpin, and it is neither leaked
/// nor freed twice.
fn pin_against_delete_and_reuse(bug: Bug) {
    model(move || {
        let m = Model::new(bug);
        let reader = {
            let m = m.clone();
            thread::spawn(move || {
                if m.get_and_pin() != 1 {
                    return VALUE;
                }
                let v = m.read_pinned();
                m.unpin();
                v
            })
        };
        m.delete();
        let reused = m.alloc_and_fill(99);
        // Asserted here, not in the reader: a panic in a loom thread that
        // the main thread waits for ends the whole run.
        assert_eq!(reader.join().unwrap(), VALUE, "a pinned value changed");
        let c = m.class.lock();
        assert_eq!((c.pins, m.pinned.load(Relaxed)), (0, 0), "pins left");
        assert!(!c.unlinked && !c.linked);
        assert!(reused != c.free, "chunk leaked or handed out while free");
    });
}

/// A reply pins the value while incr rewrites values in place: incr must
/// see the pin (through the `pinned` fast path) and leave the bytes alone.
fn pin_against_incr_in_place(bug: Bug) {
    model(move || {
        let m = Model::new(bug);
        let reader = {
            let m = m.clone();
            thread::spawn(move || {
                if m.get_and_pin() != 1 {
                    return VALUE;
                }
                let v = m.read_pinned();
                m.unpin();
                v
            })
        };
        m.incr_in_place();
        let v = reader.join().unwrap();
        assert!(v == VALUE || v == VALUE + 1, "torn value {v}");
        assert_eq!(m.pinned.load(Relaxed), 0);
    });
}

/// A reply pins the value while the page mover drains its page: the mover
/// must treat the item as busy, not copy it away and clear its chunk.
fn pin_against_mover(bug: Bug) {
    model(move || {
        let m = Model::new(bug);
        let reader = {
            let m = m.clone();
            thread::spawn(move || {
                if m.get_and_pin() != 1 {
                    return VALUE;
                }
                let v = m.read_pinned();
                m.unpin();
                v
            })
        };
        let moved = m.mover_rescue();
        assert_eq!(reader.join().unwrap(), VALUE, "a pinned value was moved");
        if moved {
            // SAFETY: every thread is joined.
            let copy = m.spare.with(|p| unsafe { *p });
            assert_eq!(copy, VALUE, "rescue copied a torn value");
        }
    });
}

#[test]
fn pin_holds_against_delete_and_reuse() {
    pin_against_delete_and_reuse(Bug::None);
}

#[test]
fn pin_holds_against_incr_in_place() {
    pin_against_incr_in_place(Bug::None);
}

#[test]
fn pin_holds_against_the_mover() {
    pin_against_mover(Bug::None);
}

#[test]
fn broken_free_while_pinned_is_caught() {
    must_fail(
        "broken_free_while_pinned_is_caught",
        Bug::FreeWhilePinned,
        pin_against_delete_and_reuse,
    );
}

#[test]
fn broken_pin_counted_after_shard_unlock_is_caught() {
    must_fail(
        "broken_pin_counted_after_shard_unlock_is_caught",
        Bug::CountAfterShardUnlock,
        pin_against_incr_in_place,
    );
}

#[test]
fn broken_mover_ignoring_pins_is_caught() {
    must_fail(
        "broken_mover_ignoring_pins_is_caught",
        Bug::MoverIgnoresPins,
        pin_against_mover,
    );
}

#[test]
fn broken_relaxed_pinned_count_is_caught() {
    must_fail(
        "broken_relaxed_pinned_count_is_caught",
        Bug::RelaxedPinnedCount,
        pin_against_incr_in_place,
    );
}
