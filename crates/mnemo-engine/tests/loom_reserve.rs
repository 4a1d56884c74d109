//! loom model of reservations (`src/reserve.rs`): a large value is read
//! from the socket straight into an allocated, unlinked item with no lock
//! held, while the page mover drains the page that item lives in. Run with
//! scripts/loom.sh.
//!
//! As in tests/loom_pin.rs, the protocol is restated with the code's
//! locks, order and states (the engine is too big to build under loom);
//! the chunk's bytes are a loom `UnsafeCell`, so the mover touching them
//! while the client fills them is a reported race. What must hold: a chunk
//! taken off the free list is busy to the mover (meta `RESERVED`, neither
//! free nor linked) until the filled item is linked, and the reservation
//! count returns to zero.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

mod loom_support;
use loom_support::{must_fail, Lock};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bug {
    None,
    /// A chunk taken off the free list keeps meta 0 until its header is
    /// written (no `RESERVED` sentinel), so the mover takes it for free.
    NoReservedSentinel,
    /// The item is linked before its value is in.
    LinkBeforeFill,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Meta {
    Free,
    Reserved,
    Linked,
}

struct Class {
    meta: Meta,
    /// On the class's free list (a draining page's free chunks are not).
    free_listed: bool,
    /// `ClassState::reserved`.
    reserved: u64,
}

struct Model {
    /// The key's shard: whether the key maps to the chunk.
    shard: Lock<bool>,
    class: Lock<Class>,
    chunk: UnsafeCell<u64>,
    bug: Bug,
}

const VALUE: u64 = 42;

impl Model {
    /// `Engine::reserve` → `alloc_chunk` / `free_pop` (meta `RESERVED`
    /// under the class lock) and `count_reserved`.
    fn reserve(&self) -> bool {
        let mut c = self.class.lock();
        if !c.free_listed {
            return false;
        }
        c.free_listed = false;
        if self.bug != Bug::NoReservedSentinel {
            c.meta = Meta::Reserved;
        }
        c.reserved += 1;
        true
    }

    /// `Reserved::unfilled`: the socket's bytes, no lock held.
    fn fill(&self) {
        // SAFETY: loom's cell checks that nothing races this write; that
        // is what the model is about.
        self.chunk.with_mut(|p| unsafe { *p = VALUE });
    }

    /// `Reserved::into_item` (`count_reserved`), then `Engine::link`:
    /// shard lock, then class lock for the LINKED bit.
    fn store(&self) {
        self.class.lock().reserved -= 1;
        let mut shard = self.shard.lock();
        let mut c = self.class.lock();
        c.meta = Meta::Linked;
        *shard = true;
    }

    fn client(&self) {
        if !self.reserve() {
            return;
        }
        if self.bug == Bug::LinkBeforeFill {
            self.store();
            self.fill();
        } else {
            self.fill();
            self.store();
        }
    }

    /// `move_page_inner`, one pass over a one-chunk page: a free chunk
    /// is taken off the free list and, the page being empty, given to
    /// another class, whose allocator writes it; a reserved chunk is
    /// busy; a linked one is rescued (read) under its shard's try_lock.
    fn mover(&self) {
        let mut c = self.class.lock();
        match c.meta {
            Meta::Free => {
                c.free_listed = false;
                drop(c);
                // SAFETY: checked by loom (see `fill`).
                self.chunk.with_mut(|p| unsafe { *p = 0xDEAD });
            }
            Meta::Reserved => {}
            Meta::Linked => {
                if let Some(shard) = self.shard.try_lock() {
                    // SAFETY: checked by loom (see `fill`).
                    let v = self.chunk.with(|p| unsafe { *p });
                    assert_eq!(v, VALUE, "rescued an unfilled item");
                    drop(shard);
                }
            }
        }
    }
}

fn reservation_against_mover(bug: Bug) {
    loom::model(move || {
        let m = Arc::new(Model {
            shard: Lock::new(false),
            class: Lock::new(Class {
                meta: Meta::Free,
                free_listed: true,
                reserved: 0,
            }),
            chunk: UnsafeCell::new(0),
            bug,
        });
        let client = {
            let m = m.clone();
            thread::spawn(move || m.client())
        };
        m.mover();
        client.join().unwrap();
        let c = m.class.lock();
        assert_eq!(c.reserved, 0, "a reservation left counted");
        if *m.shard.lock() {
            assert_eq!(c.meta, Meta::Linked);
        }
    });
}

#[test]
fn a_reserved_item_is_busy_to_the_mover_until_linked() {
    reservation_against_mover(Bug::None);
}

#[test]
fn broken_reservation_without_sentinel_is_caught() {
    must_fail(
        "broken_reservation_without_sentinel_is_caught",
        Bug::NoReservedSentinel,
        reservation_against_mover,
    );
}

#[test]
fn broken_link_before_fill_is_caught() {
    must_fail(
        "broken_link_before_fill_is_caught",
        Bug::LinkBeforeFill,
        reservation_against_mover,
    );
}
