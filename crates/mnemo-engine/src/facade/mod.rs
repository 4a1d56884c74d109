//! The facade: `Engine` is what the server holds, the engine chosen by
//! `-o engine=` (an enum, `Imp`, over the engines) answering every call
//! by a `match` on which engine is inside (static dispatch: no vtable, no
//! box on the request path). Its handle types (`KeySlot`, `ItemRef`,
//! `Pinned`, `Reserved`, `handles.rs`) are enums of the same shape, so
//! the server uses one set of names whichever engine runs. Every method
//! is the engine's own, by `dispatch!`. The text get reply goes through
//! `Engine::get_visit` (`visit.rs`), compiled once per engine.
//!
//! Adding an engine `X` (its types implementing the traits of `iface.rs`):
//! - `dispatch!` below: one arm `$T::X($x) => $body,`;
//! - `Imp`: a variant `X(Arc<XEngine>)`, its arm in `Engine::new`,
//!   `Engine::kind` and the `store_reserved` pair match;
//! - `handles.rs`: a variant per handle enum and one `facade_from!` line
//!   per handle type (the `From` impls the dispatch bodies wrap results
//!   with). An engine's item view must be `Copy` (a view is re-wrapped
//!   by value for `get`'s callback);
//! - `visit.rs`: `EngineItem` for its item view.

mod handles;
mod traits;
mod visit;

use std::ptr::NonNull;
use std::sync::Arc;

pub use handles::{ItemRef, KeySlot, Pinned, Reserved};
pub use visit::{EngineItem, GetVisitor};

use crate::apply::ApplyOutcome;
use crate::clock::Clock;
use crate::config::{Config, ConfigError, EngineKind};
use crate::crawler::CrawlerCommandError;
use crate::dump::{ItemRecord, MetadumpCursor, MetadumpTarget};
use crate::engine::SlabEngine;
use crate::evlog::Eviction;
// Engine methods resolve to inherent ones first; with the trait in scope
// an engine implementing a method only through `CacheEngine` works too.
#[allow(unused_imports)]
use crate::iface::CacheEngine;
use crate::mover::ReassignError;
use crate::ops::{ArithOutcome, GetMode, StoreMode, StoreOutcome};
use crate::restart::RestartOutcome;
use crate::slabs::SlabClassInfo;
use crate::stats::{EngineStats, ThreadStats};
use crate::tuning::LruTuneError;
use crate::version::{Hlc, NodeId, Version};

/// `dispatch!(Enum, value, x => body)`: `body` with `x` bound to the
/// engine (or handle) inside `value`, whichever variant it is. Every
/// facade enum has the same variant names, so this one list of arms is
/// the only place that enumerates the engines.
macro_rules! dispatch {
    ($T:ident, $v:expr, $x:ident => $body:expr) => {
        match $v {
            $T::Slab($x) => $body,
            $T::Segment($x) => $body,
        }
    };
}
pub(crate) use dispatch;

/// The storage engine the server runs, chosen by `Config::engine`.
pub struct Engine {
    /// The engine's clock, which every request reads (`last_cmd`): kept
    /// as a pointer so that read needs no match on the engine (~4
    /// instructions a request).
    clock: NonNull<Clock>,
    imp: Imp,
}

/// Which engine `Engine` holds.
pub(crate) enum Imp {
    Slab(Arc<SlabEngine>),
    Segment(Arc<crate::segment::SegmentEngine>),
}

// SAFETY: `clock` points into the engine that `imp` owns (behind an Arc,
// so it never moves) and is only read as `&Clock`, which is Sync; `imp`
// itself is Send + Sync.
unsafe impl Send for Engine {}
// SAFETY: as for Send.
unsafe impl Sync for Engine {}

impl Engine {
    /// Builds the engine `cfg.engine` names.
    pub fn new(cfg: Config) -> Result<Arc<Engine>, ConfigError> {
        let imp = match cfg.engine {
            EngineKind::Slab => Imp::Slab(SlabEngine::new(cfg)?),
            EngineKind::Segment => Imp::Segment(crate::segment::SegmentEngine::new(cfg)?),
        };
        let clock = dispatch!(Imp, &imp, e => NonNull::from(e.clock()));
        Ok(Arc::new(Engine { clock, imp }))
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        match self.imp {
            Imp::Slab(_) => EngineKind::Slab,
            Imp::Segment(_) => EngineKind::Segment,
        }
    }

    /// The slab engine, when it is the one running (its own admin calls
    /// and tests).
    pub fn as_slab(&self) -> Option<&Arc<SlabEngine>> {
        match &self.imp {
            Imp::Slab(e) => Some(e),
            Imp::Segment(_) => None,
        }
    }

    pub fn start(self: &Arc<Self>) {
        dispatch!(Imp, &self.imp, e => e.start())
    }
    pub fn shutdown(&self) {
        dispatch!(Imp, &self.imp, e => e.shutdown())
    }
    pub fn config(&self) -> Config {
        dispatch!(Imp, &self.imp, e => e.config())
    }
    #[inline]
    pub fn clock(&self) -> &Clock {
        // SAFETY: `clock` points into the engine `self.imp` holds, alive
        // and unmoved (Arc) as long as `self`.
        unsafe { self.clock.as_ref() }
    }
    pub fn new_thread_stats(&self) -> Arc<ThreadStats> {
        dispatch!(Imp, &self.imp, e => e.new_thread_stats())
    }
    pub fn check_invariants(&self) -> Result<(), String> {
        dispatch!(Imp, &self.imp, e => e.check_invariants())
    }
    pub fn restart_outcome(&self) -> &RestartOutcome {
        dispatch!(Imp, &self.imp, e => e.restart_outcome())
    }
    pub fn save_memory_file(&self) -> Result<(), String> {
        dispatch!(Imp, &self.imp, e => e.save_memory_file())
    }
    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), ConfigError> {
        dispatch!(Imp, &self.imp, e => e.set_mem_limit(bytes))
    }

    #[inline]
    pub fn item_size_ok(&self, nkey: usize, flags: u32, nbytes: usize) -> bool {
        dispatch!(Imp, &self.imp, e => e.item_size_ok(nkey, flags, nbytes))
    }
    #[inline]
    pub fn class_id_for(&self, nkey: usize, flags: u32, nbytes: usize) -> u32 {
        dispatch!(Imp, &self.imp, e => e.class_id_for(nkey, flags, nbytes))
    }
    #[inline]
    pub fn count_set(&self, nkey: usize, flags: u32, nbytes: usize, ts: &ThreadStats) {
        dispatch!(Imp, &self.imp, e => e.count_set(nkey, flags, nbytes, ts))
    }

    #[inline]
    pub fn get<R>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        dispatch!(Imp, &self.imp, e => e.get(key, mode, ts, |it| f(&ItemRef::from(*it))))
    }
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        dispatch!(Imp, &self.imp, e => e.store(mode, key, flags, exptime, value, cas, ts))
    }
    #[inline]
    pub fn delete(&self, key: &[u8], ts: &ThreadStats) -> bool {
        dispatch!(Imp, &self.imp, e => e.delete(key, ts))
    }
    #[inline]
    pub fn touch(&self, key: &[u8], exptime: i64, ts: &ThreadStats) -> bool {
        dispatch!(Imp, &self.imp, e => e.touch(key, exptime, ts))
    }
    #[inline]
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome {
        dispatch!(Imp, &self.imp, e => e.arith(key, incr, delta, ts))
    }
    pub fn flush_all(&self, delay: i64) {
        dispatch!(Imp, &self.imp, e => e.flush_all(delay))
    }
    #[inline]
    pub fn unlink_key(&self, key: &[u8]) {
        dispatch!(Imp, &self.imp, e => e.unlink_key(key))
    }
    #[inline]
    pub fn reserve(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        nbytes: usize,
    ) -> Result<Reserved, StoreOutcome> {
        dispatch!(Imp, &self.imp, e => e.reserve(mode, key, flags, exptime, nbytes).map(Reserved::from))
    }
    /// A reservation from another engine than this one is dropped (freed)
    /// and answers `NotStored`; one process has one engine, so only a
    /// programming error could get there.
    #[inline]
    pub fn store_reserved(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: Reserved,
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        #[allow(unreachable_patterns)]
        match (&self.imp, value) {
            (Imp::Slab(e), Reserved::Slab(r)) => e.store_reserved(mode, key, r, cas, ts),
            (Imp::Segment(e), Reserved::Segment(r)) => e.store_reserved(mode, key, r, cas, ts),
            _ => StoreOutcome::NotStored,
        }
    }
    #[inline]
    pub fn lock_key<'a>(&'a self, key: &'a [u8], ts: &'a ThreadStats) -> KeySlot<'a> {
        dispatch!(Imp, &self.imp, e => KeySlot::from(e.lock_key(key, ts)))
    }

    pub fn stats(&self) -> EngineStats {
        dispatch!(Imp, &self.imp, e => e.stats())
    }
    pub fn stats_items(&self) -> Vec<(String, String)> {
        dispatch!(Imp, &self.imp, e => e.stats_items())
    }
    pub fn stats_slabs(&self) -> Vec<(String, String)> {
        dispatch!(Imp, &self.imp, e => e.stats_slabs())
    }
    pub fn stats_sizes(&self, min_cas: u64) -> Vec<(String, String)> {
        dispatch!(Imp, &self.imp, e => e.stats_sizes(min_cas))
    }
    pub fn draw_cas(&self) -> u64 {
        dispatch!(Imp, &self.imp, e => e.draw_cas())
    }
    /// The engine's own `stats` lines (see `CacheEngine::engine_stats`).
    pub fn engine_stats(&self) -> Vec<(&'static str, String)> {
        dispatch!(Imp, &self.imp, e => e.engine_stats())
    }
    pub fn stats_reset(&self) {
        dispatch!(Imp, &self.imp, e => e.stats_reset())
    }
    pub fn pinned_items(&self) -> u64 {
        dispatch!(Imp, &self.imp, e => e.pinned_items())
    }
    pub fn count_linked(&self) -> u64 {
        dispatch!(Imp, &self.imp, e => e.count_linked())
    }
    pub fn slab_classes(&self) -> Vec<SlabClassInfo> {
        dispatch!(Imp, &self.imp, e => e.slab_classes())
    }
    pub fn oldest_live(&self) -> u32 {
        dispatch!(Imp, &self.imp, e => e.oldest_live())
    }

    pub fn slabs_reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        dispatch!(Imp, &self.imp, e => e.slabs_reassign(src, dst))
    }
    pub fn set_automove(&self, mode: u32) {
        dispatch!(Imp, &self.imp, e => e.set_automove(mode))
    }
    pub fn set_automove_ratio(&self, ratio: f64) {
        dispatch!(Imp, &self.imp, e => e.set_automove_ratio(ratio))
    }
    pub fn lru_tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError> {
        dispatch!(Imp, &self.imp, e => e.lru_tune(hot_pct, warm_pct, hot_factor, warm_factor))
    }
    pub fn set_lru_segmented(&self, segmented: bool) {
        dispatch!(Imp, &self.imp, e => e.set_lru_segmented(segmented))
    }
    pub fn lru_temp_ttl(&self, ttl: i64) {
        dispatch!(Imp, &self.imp, e => e.lru_temp_ttl(ttl))
    }

    pub fn lru_crawler_enable(&self) -> bool {
        dispatch!(Imp, &self.imp, e => e.lru_crawler_enable())
    }
    pub fn lru_crawler_disable(&self) -> bool {
        dispatch!(Imp, &self.imp, e => e.lru_crawler_disable())
    }
    pub fn lru_crawler_set_sleep(&self, usecs: u32) {
        dispatch!(Imp, &self.imp, e => e.lru_crawler_set_sleep(usecs))
    }
    pub fn lru_crawler_set_tocrawl(&self, n: u32) {
        dispatch!(Imp, &self.imp, e => e.lru_crawler_set_tocrawl(n))
    }
    pub fn lru_crawler_crawl(&self, classes: &str) -> Result<(), CrawlerCommandError> {
        dispatch!(Imp, &self.imp, e => e.lru_crawler_crawl(classes))
    }
    pub fn cachedump(&self, class_id: u32, limit: u32, f: impl FnMut(&ItemRecord<'_>) -> bool) {
        dispatch!(Imp, &self.imp, e => e.cachedump(class_id, limit, f))
    }
    pub fn lru_crawler_metadump(
        &self,
        target: MetadumpTarget,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<(), CrawlerCommandError> {
        dispatch!(Imp, &self.imp, e => e.lru_crawler_metadump(target, f))
    }
    pub fn lru_crawler_metadump_step(
        &self,
        cursor: &mut MetadumpCursor,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<bool, CrawlerCommandError> {
        dispatch!(Imp, &self.imp, e => e.lru_crawler_metadump_step(cursor, f))
    }

    pub fn set_eviction_hook(&self, f: impl Fn(&Eviction) + Send + Sync + 'static) {
        dispatch!(Imp, &self.imp, e => e.set_eviction_hook(f))
    }
    pub fn log_evictions(&self, on: bool) {
        dispatch!(Imp, &self.imp, e => e.log_evictions(on))
    }

    pub fn enable_versions(&self, node: NodeId) -> bool {
        dispatch!(Imp, &self.imp, e => e.enable_versions(node))
    }
    pub fn versions(&self) -> Option<&Hlc> {
        dispatch!(Imp, &self.imp, e => e.versions())
    }
    #[allow(clippy::too_many_arguments)]
    pub fn apply_versioned(
        &self,
        key: &[u8],
        version: Version,
        flags: u32,
        exptime_unix: u64,
        value: &[u8],
        ts: &ThreadStats,
    ) -> ApplyOutcome {
        dispatch!(Imp, &self.imp, e => e.apply_versioned(key, version, flags, exptime_unix, value, ts))
    }
    pub fn delete_versioned(&self, key: &[u8], version: Version, ts: &ThreadStats) -> ApplyOutcome {
        dispatch!(Imp, &self.imp, e => e.delete_versioned(key, version, ts))
    }
    pub fn apply_flush(&self, version: Version) -> ApplyOutcome {
        dispatch!(Imp, &self.imp, e => e.apply_flush(version))
    }
}

#[cfg(test)]
mod tests;
