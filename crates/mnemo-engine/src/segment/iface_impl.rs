//! The segment engine behind the engine interface (`iface.rs`): trait
//! methods call the inherent ones of the same name; the slab-only admin
//! commands get the answers the interface documents for an engine
//! without slab classes.

use std::sync::Arc;

use super::{SegItem, SegPinned, SegReserved, SegSlot, SegmentEngine};
use crate::apply::ApplyOutcome;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::crawler::CrawlerCommandError;
use crate::dump::{ItemRecord, MetadumpCursor, MetadumpTarget};
use crate::evlog::Eviction;
use crate::iface::{CacheEngine, ItemView, KeySlotOps, PinnedValue, ReservedValue};
use crate::mover::ReassignError;
use crate::ops::{ArithOutcome, GetMode, StoreMode, StoreOutcome};
use crate::restart::RestartOutcome;
use crate::slabs::SlabClassInfo;
use crate::stats::{EngineStats, ThreadStats};
use crate::tuning::LruTuneError;
use crate::version::{Hlc, NodeId, Version};

static NO_FILE: RestartOutcome = RestartOutcome::NoFile;

impl ItemView for SegItem<'_> {
    type Pinned = SegPinned;
    #[inline]
    fn key(&self) -> &[u8] {
        SegItem::key(self)
    }
    #[inline]
    fn flags(&self) -> u32 {
        SegItem::flags(self)
    }
    #[inline]
    fn cas(&self) -> u64 {
        SegItem::cas(self)
    }
    #[inline]
    fn value_len(&self) -> usize {
        SegItem::value_len(self)
    }
    #[inline]
    fn exptime(&self) -> u32 {
        SegItem::exptime(self)
    }
    #[inline]
    fn last_access(&self) -> u32 {
        SegItem::last_access(self)
    }
    #[inline]
    fn fetched(&self) -> bool {
        SegItem::fetched(self)
    }
    #[inline]
    fn class_id(&self) -> u32 {
        1
    }
    #[inline]
    fn stale(&self) -> bool {
        SegItem::stale(self)
    }
    #[inline]
    fn key_binary(&self) -> bool {
        SegItem::key_binary(self)
    }
    #[inline]
    fn win_sent(&self) -> bool {
        SegItem::win_sent(self)
    }
    #[inline]
    fn write_value(&self, out: &mut Vec<u8>) {
        SegItem::write_value(self, out)
    }
    #[inline]
    fn for_each_value_part(&self, f: impl FnMut(&[u8])) {
        SegItem::for_each_value_part(self, f)
    }
    #[inline]
    fn pin(&self) -> Option<SegPinned> {
        SegItem::pin(self)
    }
}

impl PinnedValue for SegPinned {
    fn len(&self) -> usize {
        SegPinned::len(self)
    }
    fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        SegPinned::for_each_part(self, f)
    }
}

impl ReservedValue for SegReserved {
    fn len(&self) -> usize {
        SegReserved::len(self)
    }
    fn unfilled(&mut self, offset: usize) -> &mut [u8] {
        SegReserved::unfilled(self, offset)
    }
    fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        SegReserved::for_each_part(self, f)
    }
}

impl<'a> KeySlotOps<'a> for SegSlot<'a> {
    type Item<'s>
        = SegItem<'s>
    where
        Self: 's;
    type Pinned = SegPinned;
    type Reserved = SegReserved;

    fn exists(&self) -> bool {
        SegSlot::exists(self)
    }
    fn item(&self) -> Option<SegItem<'_>> {
        SegSlot::item(self)
    }
    fn now(&self) -> u32 {
        SegSlot::now(self)
    }
    fn count_get(&self) {
        SegSlot::count_get(self)
    }
    fn count_touch(&self) {
        SegSlot::count_touch(self)
    }
    fn bump(&self) {
        SegSlot::bump(self)
    }
    fn set_exptime(&self, exptime: i64) {
        SegSlot::set_exptime(self, exptime)
    }
    fn set_stale(&self, on: bool) {
        SegSlot::set_stale(self, on)
    }
    fn set_win_sent(&self, on: bool) {
        SegSlot::set_win_sent(self, on)
    }
    fn set_cas(&self, cas: u64) {
        SegSlot::set_cas(self, cas)
    }
    fn next_cas(&self) -> u64 {
        SegSlot::next_cas(self)
    }
    fn store(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        SegSlot::store(self, mode, flags, exptime, value, cas, new_cas)
    }
    fn store_reserved(
        &mut self,
        mode: StoreMode,
        value: SegReserved,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        SegSlot::store_reserved(self, mode, value, cas, new_cas)
    }
    fn vivify(&mut self, flags: u32, exptime: i64, new_cas: Option<u64>) -> StoreOutcome {
        SegSlot::vivify(self, flags, exptime, new_cas)
    }
    fn set_key_binary(&self, on: bool) {
        SegSlot::set_key_binary(self, on)
    }
    fn count_delete_miss(&self) {
        SegSlot::count_delete_miss(self)
    }
    fn delete(&mut self) -> bool {
        SegSlot::delete(self)
    }
    fn arith(&mut self, incr: bool, delta: u64, new_cas: Option<u64>) -> ArithOutcome {
        SegSlot::arith(self, incr, delta, new_cas)
    }
}

impl CacheEngine for SegmentEngine {
    type Item<'a> = SegItem<'a>;
    type Slot<'a> = SegSlot<'a>;
    type Pinned = SegPinned;
    type Reserved = SegReserved;

    fn new(cfg: Config) -> Result<Arc<Self>, ConfigError> {
        SegmentEngine::new(cfg)
    }
    fn start(self: &Arc<Self>) {
        SegmentEngine::start(self)
    }
    fn shutdown(&self) {
        SegmentEngine::shutdown(self)
    }
    fn config(&self) -> Config {
        SegmentEngine::config(self)
    }
    fn clock(&self) -> &Clock {
        SegmentEngine::clock(self)
    }
    fn new_thread_stats(&self) -> Arc<ThreadStats> {
        SegmentEngine::new_thread_stats(self)
    }
    fn check_invariants(&self) -> Result<(), String> {
        SegmentEngine::check_invariants(self)
    }
    fn restart_outcome(&self) -> &RestartOutcome {
        &NO_FILE
    }
    fn save_memory_file(&self) -> Result<(), String> {
        Ok(())
    }
    fn set_mem_limit(&self, bytes: usize) -> Result<(), ConfigError> {
        SegmentEngine::set_mem_limit(self, bytes)
    }
    #[inline]
    fn item_size_ok(&self, nkey: usize, flags: u32, nbytes: usize) -> bool {
        SegmentEngine::item_size_ok(self, nkey, flags, nbytes)
    }
    fn class_id_for(&self, _nkey: usize, _flags: u32, _nbytes: usize) -> u32 {
        1
    }
    fn count_set(&self, nkey: usize, flags: u32, nbytes: usize, ts: &ThreadStats) {
        SegmentEngine::count_set(self, nkey, flags, nbytes, ts)
    }
    #[inline]
    fn get<R>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        f: impl FnOnce(&SegItem<'_>) -> R,
    ) -> Option<R> {
        SegmentEngine::get(self, key, mode, ts, f)
    }
    #[inline]
    fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        SegmentEngine::store(self, mode, key, flags, exptime, value, cas, ts)
    }
    fn delete(&self, key: &[u8], ts: &ThreadStats) -> bool {
        SegmentEngine::delete(self, key, ts)
    }
    fn touch(&self, key: &[u8], exptime: i64, ts: &ThreadStats) -> bool {
        SegmentEngine::touch(self, key, exptime, ts)
    }
    fn arith(&self, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome {
        SegmentEngine::arith(self, key, incr, delta, ts)
    }
    fn flush_all(&self, delay: i64) {
        SegmentEngine::flush_all(self, delay)
    }
    fn unlink_key(&self, key: &[u8]) {
        SegmentEngine::unlink_key(self, key)
    }
    fn reserve(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        nbytes: usize,
    ) -> Result<SegReserved, StoreOutcome> {
        SegmentEngine::reserve(self, mode, key, flags, exptime, nbytes)
    }
    fn store_reserved(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: SegReserved,
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        SegmentEngine::store_reserved(self, mode, key, value, cas, ts)
    }
    fn lock_key<'a>(&'a self, key: &'a [u8], ts: &'a ThreadStats) -> SegSlot<'a> {
        SegmentEngine::lock_key(self, key, ts)
    }
    fn stats(&self) -> EngineStats {
        SegmentEngine::stats(self)
    }
    fn stats_items(&self) -> Vec<(String, String)> {
        SegmentEngine::stats_items(self)
    }
    fn stats_slabs(&self) -> Vec<(String, String)> {
        SegmentEngine::stats_slabs(self)
    }
    fn stats_sizes(&self, min_cas: u64) -> Vec<(String, String)> {
        SegmentEngine::stats_sizes(self, min_cas)
    }
    fn draw_cas(&self) -> u64 {
        SegmentEngine::draw_cas(self)
    }
    fn stats_reset(&self) {
        SegmentEngine::stats_reset(self)
    }
    fn engine_stats(&self) -> Vec<(&'static str, String)> {
        SegmentEngine::segment_stats(self)
    }
    fn pinned_items(&self) -> u64 {
        SegmentEngine::pinned_items(self)
    }
    fn count_linked(&self) -> u64 {
        SegmentEngine::count_linked(self)
    }
    fn slab_classes(&self) -> Vec<SlabClassInfo> {
        Vec::new()
    }
    fn oldest_live(&self) -> u32 {
        SegmentEngine::oldest_live(self)
    }
    /// No pages to move: memcached's first check (the same class twice)
    /// answers as memcached does, every other pair names no class.
    fn slabs_reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        if src == dst {
            return Err(ReassignError::Same);
        }
        Err(ReassignError::BadClass)
    }
    fn set_automove(&self, mode: u32) {
        SegmentEngine::set_automove(self, mode)
    }
    fn set_automove_ratio(&self, ratio: f64) {
        SegmentEngine::set_automove_ratio(self, ratio)
    }
    fn lru_tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError> {
        SegmentEngine::lru_tune(self, hot_pct, warm_pct, hot_factor, warm_factor)
    }
    fn set_lru_segmented(&self, on: bool) {
        SegmentEngine::set_lru_segmented(self, on)
    }
    fn lru_temp_ttl(&self, ttl: i64) {
        SegmentEngine::lru_temp_ttl(self, ttl)
    }
    fn lru_crawler_enable(&self) -> bool {
        SegmentEngine::lru_crawler_enable(self)
    }
    fn lru_crawler_disable(&self) -> bool {
        SegmentEngine::lru_crawler_disable(self)
    }
    fn lru_crawler_set_sleep(&self, usecs: u32) {
        SegmentEngine::lru_crawler_set_sleep(self, usecs)
    }
    fn lru_crawler_set_tocrawl(&self, n: u32) {
        SegmentEngine::lru_crawler_set_tocrawl(self, n)
    }
    fn lru_crawler_crawl(&self, classes: &str) -> Result<(), CrawlerCommandError> {
        SegmentEngine::lru_crawler_crawl(self, classes)
    }
    fn cachedump(&self, class_id: u32, limit: u32, f: impl FnMut(&ItemRecord<'_>) -> bool) {
        SegmentEngine::cachedump(self, class_id, limit, f)
    }
    fn lru_crawler_metadump(
        &self,
        target: MetadumpTarget,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<(), CrawlerCommandError> {
        SegmentEngine::lru_crawler_metadump(self, target, f)
    }
    fn lru_crawler_metadump_step(
        &self,
        cursor: &mut MetadumpCursor,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<bool, CrawlerCommandError> {
        SegmentEngine::lru_crawler_metadump_step(self, cursor, f)
    }
    fn set_eviction_hook(&self, f: impl Fn(&Eviction) + Send + Sync + 'static) {
        SegmentEngine::set_eviction_hook(self, f)
    }
    fn log_evictions(&self, on: bool) {
        SegmentEngine::log_evictions(self, on)
    }
    fn enable_versions(&self, node: NodeId) -> bool {
        SegmentEngine::enable_versions(self, node)
    }
    fn versions(&self) -> Option<&Hlc> {
        SegmentEngine::versions(self)
    }
    fn apply_versioned(
        &self,
        key: &[u8],
        version: Version,
        flags: u32,
        exptime_unix: u64,
        value: &[u8],
        ts: &ThreadStats,
    ) -> ApplyOutcome {
        SegmentEngine::apply_versioned(self, key, version, flags, exptime_unix, value, ts)
    }
    fn delete_versioned(&self, key: &[u8], version: Version, ts: &ThreadStats) -> ApplyOutcome {
        SegmentEngine::delete_versioned(self, key, version, ts)
    }
    fn apply_flush(&self, version: Version) -> ApplyOutcome {
        SegmentEngine::apply_flush(self, version)
    }
}
