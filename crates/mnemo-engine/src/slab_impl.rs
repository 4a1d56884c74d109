//! The slab engine behind the engine interface (`iface.rs`): every trait
//! method is the slab engine's own method of the same name, so the
//! interface changes nothing of its behaviour. Kept apart from the
//! engine's files so they stay about slabs.

use std::sync::Arc;

use crate::apply::ApplyOutcome;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::crawler::CrawlerCommandError;
use crate::dump::{ItemRecord, MetadumpCursor, MetadumpTarget};
use crate::engine::SlabEngine;
use crate::evlog::Eviction;
use crate::iface::{CacheEngine, ItemView, KeySlotOps, PinnedValue, ReservedValue};
use crate::item::ItemRef;
use crate::mover::ReassignError;
use crate::ops::{ArithOutcome, GetMode, StoreMode, StoreOutcome};
use crate::pin::Pinned;
use crate::reserve::Reserved;
use crate::restart::RestartOutcome;
use crate::slabs::SlabClassInfo;
use crate::slot::KeySlot;
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
    // Its own closure, not `ItemRef::write_value`'s: generic callers
    // (the server's per-engine get reply) then have an instance of the
    // part walk to themselves, which LLVM inlines; one shared with the
    // facade's `write_value` stays an out-of-line call (~60 instructions
    // a get).
    #[inline(always)]
    fn write_value(&self, out: &mut Vec<u8>) {
        ItemRef::for_each_value_part(self, |s| out.extend_from_slice(s))
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

impl CacheEngine for SlabEngine {
    type Item<'a> = ItemRef<'a>;
    type Slot<'a> = KeySlot<'a>;
    type Pinned = Pinned;
    type Reserved = Reserved;

    fn new(cfg: Config) -> Result<Arc<Self>, ConfigError> {
        SlabEngine::new(cfg)
    }
    fn start(self: &Arc<Self>) {
        SlabEngine::start(self)
    }
    fn shutdown(&self) {
        SlabEngine::shutdown(self)
    }
    fn config(&self) -> Config {
        SlabEngine::config(self)
    }
    #[inline]
    fn clock(&self) -> &Clock {
        SlabEngine::clock(self)
    }
    fn new_thread_stats(&self) -> Arc<ThreadStats> {
        SlabEngine::new_thread_stats(self)
    }
    fn check_invariants(&self) -> Result<(), String> {
        SlabEngine::check_invariants(self)
    }
    fn restart_outcome(&self) -> &RestartOutcome {
        SlabEngine::restart_outcome(self)
    }
    fn save_memory_file(&self) -> Result<(), String> {
        SlabEngine::save_memory_file(self)
    }
    fn set_mem_limit(&self, bytes: usize) -> Result<(), ConfigError> {
        SlabEngine::set_mem_limit(self, bytes)
    }

    #[inline]
    fn item_size_ok(&self, nkey: usize, flags: u32, nbytes: usize) -> bool {
        SlabEngine::item_size_ok(self, nkey, flags, nbytes)
    }
    #[inline]
    fn class_id_for(&self, nkey: usize, flags: u32, nbytes: usize) -> u32 {
        SlabEngine::class_id_for(self, nkey, flags, nbytes)
    }
    #[inline]
    fn count_set(&self, nkey: usize, flags: u32, nbytes: usize, ts: &ThreadStats) {
        SlabEngine::count_set(self, nkey, flags, nbytes, ts)
    }

    #[inline]
    fn get<R>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Option<R> {
        SlabEngine::get(self, key, mode, ts, f)
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
        SlabEngine::store(self, mode, key, flags, exptime, value, cas, ts)
    }
    #[inline]
    fn delete(&self, key: &[u8], ts: &ThreadStats) -> bool {
        SlabEngine::delete(self, key, ts)
    }
    #[inline]
    fn touch(&self, key: &[u8], exptime: i64, ts: &ThreadStats) -> bool {
        SlabEngine::touch(self, key, exptime, ts)
    }
    #[inline]
    fn arith(&self, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome {
        SlabEngine::arith(self, key, incr, delta, ts)
    }
    fn flush_all(&self, delay: i64) {
        SlabEngine::flush_all(self, delay)
    }
    #[inline]
    fn unlink_key(&self, key: &[u8]) {
        SlabEngine::unlink_key(self, key)
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
        SlabEngine::reserve(self, mode, key, flags, exptime, nbytes)
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
        SlabEngine::store_reserved(self, mode, key, value, cas, ts)
    }
    #[inline]
    fn lock_key<'a>(&'a self, key: &'a [u8], ts: &'a ThreadStats) -> KeySlot<'a> {
        SlabEngine::lock_key(self, key, ts)
    }

    fn stats(&self) -> EngineStats {
        SlabEngine::stats(self)
    }
    fn stats_items(&self) -> Vec<(String, String)> {
        SlabEngine::stats_items(self)
    }
    fn stats_slabs(&self) -> Vec<(String, String)> {
        SlabEngine::stats_slabs(self)
    }
    fn stats_sizes(&self, min_cas: u64) -> Vec<(String, String)> {
        SlabEngine::stats_sizes(self, min_cas)
    }
    fn draw_cas(&self) -> u64 {
        SlabEngine::draw_cas(self)
    }
    fn stats_reset(&self) {
        SlabEngine::stats_reset(self)
    }
    fn pinned_items(&self) -> u64 {
        SlabEngine::pinned_items(self)
    }
    fn count_linked(&self) -> u64 {
        SlabEngine::count_linked(self)
    }
    fn slab_classes(&self) -> Vec<SlabClassInfo> {
        SlabEngine::slab_classes(self)
    }
    fn oldest_live(&self) -> u32 {
        SlabEngine::oldest_live(self)
    }

    fn slabs_reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        SlabEngine::slabs_reassign(self, src, dst)
    }
    fn set_automove(&self, mode: u32) {
        SlabEngine::set_automove(self, mode)
    }
    fn set_automove_ratio(&self, ratio: f64) {
        SlabEngine::set_automove_ratio(self, ratio)
    }
    fn lru_tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError> {
        SlabEngine::lru_tune(self, hot_pct, warm_pct, hot_factor, warm_factor)
    }
    fn set_lru_segmented(&self, segmented: bool) {
        SlabEngine::set_lru_segmented(self, segmented)
    }
    fn lru_temp_ttl(&self, ttl: i64) {
        SlabEngine::lru_temp_ttl(self, ttl)
    }

    fn lru_crawler_enable(&self) -> bool {
        SlabEngine::lru_crawler_enable(self)
    }
    fn lru_crawler_disable(&self) -> bool {
        SlabEngine::lru_crawler_disable(self)
    }
    fn lru_crawler_set_sleep(&self, usecs: u32) {
        SlabEngine::lru_crawler_set_sleep(self, usecs)
    }
    fn lru_crawler_set_tocrawl(&self, n: u32) {
        SlabEngine::lru_crawler_set_tocrawl(self, n)
    }
    fn lru_crawler_crawl(&self, classes: &str) -> Result<(), CrawlerCommandError> {
        SlabEngine::lru_crawler_crawl(self, classes)
    }
    fn cachedump(&self, class_id: u32, limit: u32, f: impl FnMut(&ItemRecord<'_>) -> bool) {
        SlabEngine::cachedump(self, class_id, limit, f)
    }
    fn lru_crawler_metadump(
        &self,
        target: MetadumpTarget,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<(), CrawlerCommandError> {
        SlabEngine::lru_crawler_metadump(self, target, f)
    }
    fn lru_crawler_metadump_step(
        &self,
        cursor: &mut MetadumpCursor,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<bool, CrawlerCommandError> {
        SlabEngine::lru_crawler_metadump_step(self, cursor, f)
    }

    fn set_eviction_hook(&self, f: impl Fn(&Eviction) + Send + Sync + 'static) {
        SlabEngine::set_eviction_hook(self, f)
    }
    fn log_evictions(&self, on: bool) {
        SlabEngine::log_evictions(self, on)
    }

    fn enable_versions(&self, node: NodeId) -> bool {
        SlabEngine::enable_versions(self, node)
    }
    fn versions(&self) -> Option<&Hlc> {
        SlabEngine::versions(self)
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
        SlabEngine::apply_versioned(self, key, version, flags, exptime_unix, value, ts)
    }
    fn delete_versioned(&self, key: &[u8], version: Version, ts: &ThreadStats) -> ApplyOutcome {
        SlabEngine::delete_versioned(self, key, version, ts)
    }
    fn apply_flush(&self, version: Version) -> ApplyOutcome {
        SlabEngine::apply_flush(self, version)
    }
}
