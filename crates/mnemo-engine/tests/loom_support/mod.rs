//! What the loom models share: a mutex with a real `try_lock`, and a way
//! to check that a deliberately broken model fails.
//!
//! loom 0.7's own `Mutex::try_lock` marks threads waiting in `try_lock`
//! as blocked when another thread takes the lock, so a class-side walk
//! that only tries a shard lock shows up as a false deadlock. This lock is
//! an `AtomicBool` taken with an Acquire compare-exchange and released
//! with a Release store, spinning with `yield_now` (which loom schedules).
#![allow(dead_code)]

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

use loom::sync::atomic::AtomicBool;
use loom::sync::atomic::Ordering::{Acquire, Relaxed, Release};

pub struct Lock<T> {
    held: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is reached only through a `Guard`, of which the `held`
// flag admits one at a time (Acquire on taking, Release on giving back).
unsafe impl<T: Send> Sync for Lock<T> {}

pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    pub fn new(v: T) -> Lock<T> {
        Lock {
            held: AtomicBool::new(false),
            data: UnsafeCell::new(v),
        }
    }

    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        self.held
            .compare_exchange(false, true, Acquire, Relaxed)
            .ok()
            .map(|_| Guard { lock: self })
    }

    pub fn lock(&self) -> Guard<'_, T> {
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            loom::thread::yield_now();
        }
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock, and `&mut self` is unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.held.store(false, Release);
    }
}

/// Runs `model(variant)` in a child process of this test binary (which
/// reruns test `test` with MNEMO_LOOM_BROKEN set), and checks that it
/// fails: loom reports some failures by aborting the process (a race
/// found while a lock is held), which no `should_panic` can catch.
/// Returns the failure's first line.
pub fn must_fail<V: std::fmt::Debug>(test: &str, variant: V, model: fn(V)) -> String {
    if std::env::var("MNEMO_LOOM_BROKEN").as_deref() == Ok(test) {
        model(variant);
        return String::new();
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env("MNEMO_LOOM_BROKEN", test)
        .output()
        .expect("run the test binary");
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the model missed {variant:?}:\n{log}"
    );
    let mut lines = log.lines();
    let first = lines.find(|l| l.contains("panicked at")).unwrap_or("");
    let why = lines.next().unwrap_or("");
    let caught = format!("{variant:?} caught: {first} {why}");
    eprintln!("{caught}");
    caught
}
