//! The atomics of the engine's lock-free parts, from one place, so that a
//! `--cfg loom` build runs the real code under the loom model checker
//! (tests/loom_clock.rs); any other build gets std's, unchanged.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU32};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU32};
