//! The facade implements the engine interface too, each method being
//! its own inherent one (`mod.rs`, `handles.rs`), so code written against
//! `CacheEngine` takes the facade as readily as one engine.

use std::sync::Arc;

use super::{Engine, ItemRef, KeySlot, Pinned, Reserved};
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

impl ItemView for ItemRef<'_> {
    type Pinned = Pinned;

    #[inline]
    fn key(&self) -> &[u8] {
        ItemRef::key(self)
    }
    #[inline]
    fn flags(&self) -> u32 {
        ItemRef::flags(self)
    }
    #[inline]
    fn cas(&self) -> u64 {
        ItemRef::cas(self)
    }
    #[inline]
    fn value_len(&self) -> usize {
        ItemRef::value_len(self)
    }
    #[inline]
    fn exptime(&self) -> u32 {
        ItemRef::exptime(self)
    }
    #[inline]
    fn last_access(&self) -> u32 {
        ItemRef::last_access(self)
    }
    #[inline]
    fn fetched(&self) -> bool {
        ItemRef::fetched(self)
    }
    #[inline]
    fn class_id(&self) -> u32 {
        ItemRef::class_id(self)
    }
    #[inline]
    fn stale(&self) -> bool {
        ItemRef::stale(self)
    }
    #[inline]
    fn key_binary(&self) -> bool {
        ItemRef::key_binary(self)
    }
    #[inline]
    fn win_sent(&self) -> bool {
        ItemRef::win_sent(self)
    }
    #[inline]
    fn write_value(&self, out: &mut Vec<u8>) {
        ItemRef::write_value(self, out)
    }
    #[inline]
    fn for_each_value_part(&self, f: impl FnMut(&[u8])) {
        ItemRef::for_each_value_part(self, f)
    }
    #[inline]
    fn pin(&self) -> Option<Pinned> {
        ItemRef::pin(self)
    }
}

impl PinnedValue for Pinned {
    #[inline]
    fn len(&self) -> usize {
        Pinned::len(self)
    }
    #[inline]
    fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        Pinned::for_each_part(self, f)
    }
}

impl ReservedValue for Reserved {
    #[inline]
    fn len(&self) -> usize {
        Reserved::len(self)
    }
    #[inline]
    fn unfilled(&mut self, offset: usize) -> &mut [u8] {
        Reserved::unfilled(self, offset)
    }
    #[inline]
    fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        Reserved::for_each_part(self, f)
    }
}

impl<'a> KeySlotOps<'a> for KeySlot<'a> {
    type Item<'s>
        = ItemRef<'s>
    where
        Self: 's;
    type Pinned = Pinned;
    type Reserved = Reserved;

    #[inline]
    fn exists(&self) -> bool {
        KeySlot::exists(self)
    }
    #[inline]
    fn item(&self) -> Option<ItemRef<'_>> {
        KeySlot::item(self)
    }
    #[inline]
    fn now(&self) -> u32 {
        KeySlot::now(self)
    }
    #[inline]
    fn count_get(&self) {
        KeySlot::count_get(self)
    }
    #[inline]
    fn count_touch(&self) {
        KeySlot::count_touch(self)
    }
    #[inline]
    fn bump(&self) {
        KeySlot::bump(self)
    }
    #[inline]
    fn set_exptime(&self, exptime: i64) {
        KeySlot::set_exptime(self, exptime)
    }
    #[inline]
    fn set_stale(&self, on: bool) {
        KeySlot::set_stale(self, on)
    }
    #[inline]
    fn set_win_sent(&self, on: bool) {
        KeySlot::set_win_sent(self, on)
    }
    #[inline]
    fn set_cas(&self, cas: u64) {
        KeySlot::set_cas(self, cas)
    }
    #[inline]
    fn next_cas(&self) -> u64 {
        KeySlot::next_cas(self)
    }
    #[inline]
    fn store(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        KeySlot::store(self, mode, flags, exptime, value, cas, new_cas)
    }
    #[inline]
    fn store_reserved(
        &mut self,
        mode: StoreMode,
        value: Reserved,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        KeySlot::store_reserved(self, mode, value, cas, new_cas)
    }
    #[inline]
    fn vivify(&mut self, flags: u32, exptime: i64, new_cas: Option<u64>) -> StoreOutcome {
        KeySlot::vivify(self, flags, exptime, new_cas)
    }
    #[inline]
    fn set_key_binary(&self, on: bool) {
        KeySlot::set_key_binary(self, on)
    }
    #[inline]
    fn count_delete_miss(&self) {
        KeySlot::count_delete_miss(self)
    }
    #[inline]
    fn delete(&mut self) -> bool {
        KeySlot::delete(self)
    }
    #[inline]
    fn arith(&mut self, incr: bool, delta: u64, new_cas: Option<u64>) -> ArithOutcome {
        KeySlot::arith(self, incr, delta, new_cas)
    }
}

impl CacheEngine for Engine {
    type Item<'a> = ItemRef<'a>;
    type Slot<'a> = KeySlot<'a>;
    type Pinned = Pinned;
    type Reserved = Reserved;

    fn new(cfg: Config) -> Result<Arc<Self>, ConfigError> {
        Engine::new(cfg)
    }
    fn start(self: &Arc<Self>) {
        Engine::start(self)
    }
    fn shutdown(&self) {
        Engine::shutdown(self)
    }
    fn config(&self) -> Config {
        Engine::config(self)
    }
    #[inline]
    fn clock(&self) -> &Clock {
        Engine::clock(self)
    }
    fn new_thread_stats(&self) -> Arc<ThreadStats> {
        Engine::new_thread_stats(self)
    }
    fn check_invariants(&self) -> Result<(), String> {
        Engine::check_invariants(self)
    }
    fn restart_outcome(&self) -> &RestartOutcome {
        Engine::restart_outcome(self)
    }
    fn save_memory_file(&self) -> Result<(), String> {
        Engine::save_memory_file(self)
    }
    fn set_mem_limit(&self, bytes: usize) -> Result<(), ConfigError> {
        Engine::set_mem_limit(self, bytes)
    }

    #[inline]
    fn item_size_ok(&self, nkey: usize, flags: u32, nbytes: usize) -> bool {
        Engine::item_size_ok(self, nkey, flags, nbytes)
    }
    #[inline]
    fn class_id_for(&self, nkey: usize, flags: u32, nbytes: usize) -> u32 {
        Engine::class_id_for(self, nkey, flags, nbytes)
    }
    #[inline]
    fn count_set(&self, nkey: usize, flags: u32, nbytes: usize, ts: &ThreadStats) {
        Engine::count_set(self, nkey, flags, nbytes, ts)
    }

    #[inline]
    fn get<R>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        Engine::get(self, key, mode, ts, f)
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
        Engine::store(self, mode, key, flags, exptime, value, cas, ts)
    }
    #[inline]
    fn delete(&self, key: &[u8], ts: &ThreadStats) -> bool {
        Engine::delete(self, key, ts)
    }
    #[inline]
    fn touch(&self, key: &[u8], exptime: i64, ts: &ThreadStats) -> bool {
        Engine::touch(self, key, exptime, ts)
    }
    #[inline]
    fn arith(&self, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome {
        Engine::arith(self, key, incr, delta, ts)
    }
    fn flush_all(&self, delay: i64) {
        Engine::flush_all(self, delay)
    }
    #[inline]
    fn unlink_key(&self, key: &[u8]) {
        Engine::unlink_key(self, key)
    }
    #[inline]
    fn reserve(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        nbytes: usize,
    ) -> Result<Reserved, StoreOutcome> {
        Engine::reserve(self, mode, key, flags, exptime, nbytes)
    }
    #[inline]
    fn store_reserved(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: Reserved,
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        Engine::store_reserved(self, mode, key, value, cas, ts)
    }
    #[inline]
    fn lock_key<'a>(&'a self, key: &'a [u8], ts: &'a ThreadStats) -> KeySlot<'a> {
        Engine::lock_key(self, key, ts)
    }

    fn stats(&self) -> EngineStats {
        Engine::stats(self)
    }
    fn stats_items(&self) -> Vec<(String, String)> {
        Engine::stats_items(self)
    }
    fn stats_slabs(&self) -> Vec<(String, String)> {
        Engine::stats_slabs(self)
    }
    fn stats_sizes(&self, min_cas: u64) -> Vec<(String, String)> {
        Engine::stats_sizes(self, min_cas)
    }
    fn draw_cas(&self) -> u64 {
        Engine::draw_cas(self)
    }
    fn engine_stats(&self) -> Vec<(&'static str, String)> {
        Engine::engine_stats(self)
    }
    fn stats_reset(&self) {
        Engine::stats_reset(self)
    }
    fn pinned_items(&self) -> u64 {
        Engine::pinned_items(self)
    }
    fn count_linked(&self) -> u64 {
        Engine::count_linked(self)
    }
    fn slab_classes(&self) -> Vec<SlabClassInfo> {
        Engine::slab_classes(self)
    }
    fn oldest_live(&self) -> u32 {
        Engine::oldest_live(self)
    }

    fn slabs_reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        Engine::slabs_reassign(self, src, dst)
    }
    fn set_automove(&self, mode: u32) {
        Engine::set_automove(self, mode)
    }
    fn set_automove_ratio(&self, ratio: f64) {
        Engine::set_automove_ratio(self, ratio)
    }
    fn lru_tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError> {
        Engine::lru_tune(self, hot_pct, warm_pct, hot_factor, warm_factor)
    }
    fn set_lru_segmented(&self, segmented: bool) {
        Engine::set_lru_segmented(self, segmented)
    }
    fn lru_temp_ttl(&self, ttl: i64) {
        Engine::lru_temp_ttl(self, ttl)
    }

    fn lru_crawler_enable(&self) -> bool {
        Engine::lru_crawler_enable(self)
    }
    fn lru_crawler_disable(&self) -> bool {
        Engine::lru_crawler_disable(self)
    }
    fn lru_crawler_set_sleep(&self, usecs: u32) {
        Engine::lru_crawler_set_sleep(self, usecs)
    }
    fn lru_crawler_set_tocrawl(&self, n: u32) {
        Engine::lru_crawler_set_tocrawl(self, n)
    }
    fn lru_crawler_crawl(&self, classes: &str) -> Result<(), CrawlerCommandError> {
        Engine::lru_crawler_crawl(self, classes)
    }
    fn cachedump(&self, class_id: u32, limit: u32, f: impl FnMut(&ItemRecord<'_>) -> bool) {
        Engine::cachedump(self, class_id, limit, f)
    }
    fn lru_crawler_metadump(
        &self,
        target: MetadumpTarget,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<(), CrawlerCommandError> {
        Engine::lru_crawler_metadump(self, target, f)
    }
    fn lru_crawler_metadump_step(
        &self,
        cursor: &mut MetadumpCursor,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<bool, CrawlerCommandError> {
        Engine::lru_crawler_metadump_step(self, cursor, f)
    }

    fn set_eviction_hook(&self, f: impl Fn(&Eviction) + Send + Sync + 'static) {
        Engine::set_eviction_hook(self, f)
    }
    fn log_evictions(&self, on: bool) {
        Engine::log_evictions(self, on)
    }

    fn enable_versions(&self, node: NodeId) -> bool {
        Engine::enable_versions(self, node)
    }
    fn versions(&self) -> Option<&Hlc> {
        Engine::versions(self)
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
        Engine::apply_versioned(self, key, version, flags, exptime_unix, value, ts)
    }
    fn delete_versioned(&self, key: &[u8], version: Version, ts: &ThreadStats) -> ApplyOutcome {
        Engine::delete_versioned(self, key, version, ts)
    }
    fn apply_flush(&self, version: Version) -> ApplyOutcome {
        Engine::apply_flush(self, version)
    }
}
