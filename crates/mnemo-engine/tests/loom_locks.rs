//! loom model of the engine's lock order (`src/lib.rs`): shard, then
//! class, then the global page pool; paths that start from a class
//! (eviction, maintainer, crawler, page mover) only `try_lock` a shard;
//! the page mover takes its own lock first and gives a page back to the
//! pool only after dropping the class lock. Run with scripts/loom.sh.
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
    /// The mover takes the pool lock, then a class lock: pool -> class
    /// against the store's class -> pool.
    MoverPoolBeforeClass,
}

struct Model {
    shard: Lock<u32>,
    class: Lock<u32>,
    /// `Slabs::pool`: pages no class owns.
    pool: Lock<u32>,
    /// `Mover::busy`: one page move at a time.
    mover: Lock<()>,
    bug: Bug,
}

impl Model {
    /// A store: `lock_key`, `alloc_chunk` (class lock; `take_page` takes
    /// the pool lock inside it when the class needs a page), `link`.
    fn store(&self) {
        let mut shard = self.shard.lock();
        let mut class = self.class.lock();
        *self.pool.lock() += 1;
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
    /// most two (the code gives up after 1000, about a second); then the
    /// page goes back to the pool (`release_page`) after the class lock
    /// is dropped.
    fn mover_thread(&self) {
        let _one = self.mover.lock();
        for _ in 0..2 {
            let mut class = self.class.lock();
            if let Some(mut shard) = self.shard.try_lock() {
                *shard += 1;
                drop(shard);
                if self.bug == Bug::MoverPoolBeforeClass {
                    drop(class);
                    let mut pool = self.pool.lock();
                    *self.class.lock() += 1;
                    *pool += 1;
                } else {
                    *class += 1;
                    drop(class);
                    *self.pool.lock() += 1;
                }
                return;
            }
            drop(class);
            thread::yield_now();
        }
    }
}

fn run(bug: Bug, a: fn(&Model), b: fn(&Model)) {
    loom::model(move || {
        let m = Arc::new(Model {
            shard: Lock::new(0),
            class: Lock::new(0),
            pool: Lock::new(0),
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

fn store_against_mover(bug: Bug) {
    run(bug, Model::store, Model::mover_thread);
}

#[test]
fn a_store_and_a_class_side_walk_never_deadlock() {
    store_against_class_side(Bug::None);
}

#[test]
fn a_store_and_the_mover_never_deadlock() {
    store_against_mover(Bug::None);
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
fn broken_mover_taking_pool_before_class_is_caught() {
    must_fail(
        "broken_mover_taking_pool_before_class_is_caught",
        Bug::MoverPoolBeforeClass,
        store_against_mover,
    );
}
