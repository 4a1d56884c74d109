//! loom model of the engine's lock order (`src/lib.rs`): shard then
//! class; paths that start from a class (eviction, maintainer, crawler,
//! page mover) only `try_lock` a shard; the page mover's own lock is
//! taken first by the mover thread and only tried by a store that steals
//! a page (`Engine::steal_page_for`). Run with scripts/loom.sh.
//!
//! The paths are restated with the code's lock sequence (the engine is
//! too big to build under loom). Every interleaving must finish: a cycle
//! of waiters shows up as threads spinning on each other until loom gives
//! up on the execution, which the broken variants check it does.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;

mod loom_support;
use loom_support::{must_fail, Lock};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bug {
    None,
    /// A class-side walk waits for the shard lock instead of trying it.
    ClassSideWaitsForShard,
    /// A store stealing a page waits for the mover's lock (before issue
    /// #15 it ran the whole `move_page`, waiting for busy items).
    StealWaitsForMover,
}

struct Model {
    shard: Lock<u32>,
    class: Lock<u32>,
    /// `Mover::busy`: one page move at a time.
    mover: Lock<()>,
    bug: Bug,
}

impl Model {
    /// A store: `lock_key`, then `link` takes the class lock.
    fn store(&self) {
        let mut shard = self.shard.lock();
        let mut class = self.class.lock();
        *shard += 1;
        *class += 1;
    }

    /// `evict` / `reclaim` / the maintainer: class lock, then only try
    /// the shard; skip the item if it is held.
    fn class_side_walk(&self) {
        let mut class = self.class.lock();
        let shard = if self.bug == Bug::ClassSideWaitsForShard {
            Some(self.shard.lock())
        } else {
            self.shard.try_lock()
        };
        if let Some(mut shard) = shard {
            *shard += 1;
            *class += 1;
        }
    }

    /// The mover thread's `move_page`: its own lock, then passes over the
    /// page (class lock, try each item's shard) until nothing is busy, at
    /// most `passes` (the code gives up after 1000, about a second).
    fn move_page(&self, passes: Option<u32>) {
        let _one = self.mover.lock();
        let mut pass = 0;
        while pass < passes.unwrap_or(u32::MAX) {
            let mut class = self.class.lock();
            if let Some(mut shard) = self.shard.try_lock() {
                *shard += 1;
                *class += 1;
                return;
            }
            drop(class);
            thread::yield_now();
            pass += 1;
        }
    }

    fn mover_thread(&self) {
        self.move_page(Some(2));
    }

    /// A mover whose item stays busy until the store that holds its shard
    /// goes on (in the code: an item pinned by a reply the storing worker
    /// has yet to write), so a store waiting for the mover waits for
    /// itself: a cycle here, a one-second stall per store in the code.
    fn mover_waiting_for_the_store(&self) {
        self.move_page(None);
    }

    /// A store that needs a page from another class: under its shard
    /// lock, `alloc_chunk` → `steal_page_for`: try the mover's lock, one
    /// pass over the page (an item of the held shard stays busy).
    fn store_stealing_a_page(&self) {
        let mut shard = self.shard.lock();
        let one = if self.bug == Bug::StealWaitsForMover {
            Some(self.mover.lock())
        } else {
            self.mover.try_lock()
        };
        if let Some(_one) = one {
            let class = self.class.lock();
            drop(class);
        }
        *shard += 1;
    }
}

fn run(bug: Bug, a: fn(&Model), b: fn(&Model)) {
    loom::model(move || {
        let m = Arc::new(Model {
            shard: Lock::new(0),
            class: Lock::new(0),
            mover: Lock::new(()),
            bug,
        });
        let t = {
            let m = m.clone();
            thread::spawn(move || a(&m))
        };
        b(&m);
        t.join().unwrap();
    });
}

fn store_against_class_side(bug: Bug) {
    run(bug, Model::store, Model::class_side_walk);
}

fn steal_against_mover(bug: Bug) {
    run(
        bug,
        Model::store_stealing_a_page,
        Model::mover_waiting_for_the_store,
    );
}

#[test]
fn a_store_and_a_class_side_walk_never_deadlock() {
    store_against_class_side(Bug::None);
}

#[test]
fn a_store_and_the_mover_never_deadlock() {
    run(Bug::None, Model::store, Model::mover_thread);
}

#[test]
fn a_store_stealing_a_page_never_waits_on_the_mover() {
    steal_against_mover(Bug::None);
}

#[test]
fn broken_class_side_waiting_for_shard_is_caught() {
    must_fail(
        "broken_class_side_waiting_for_shard_is_caught",
        Bug::ClassSideWaitsForShard,
        store_against_class_side,
    );
}

#[test]
fn broken_steal_waiting_for_mover_is_caught() {
    must_fail(
        "broken_steal_waiting_for_mover_is_caught",
        Bug::StealWaitsForMover,
        steal_against_mover,
    );
}
