//! The engine interface: what the server (its three protocols, `stats`,
//! the crawler and dump commands, warm restart, replication) asks of a
//! storage engine, written as the contract every engine keeps.
//!
//! memcached's 1.3 engine API (info, init, shutdown, stats, allocate,
//! store, get, delete, release, touch, arithmetic, flush) is the model;
//! mnemo's version adds what its server grew since: locked per-key
//! compound steps for the meta protocol ([`KeySlotOps`]), zero-copy reads
//! ([`PinnedValue`]) and stores ([`ReservedValue`]), and the admin
//! commands memcached 1.6.18 has for its slab engine.
//!
//! The server never names an engine: it uses the facade
//! [`crate::Engine`], an enum over the engines that implements
//! [`CacheEngine`] by static dispatch (`facade/`). Every engine keeps
//! the rules below; they are what the differential tests against
//! memcached check, so an engine that keeps them passes the same suite.
//!
//! # Rules every engine keeps
//!
//! - **Atomic per key.** Each call that names a key (get, store, delete,
//!   touch, arith, the versioned writes) is one atomic step for that key:
//!   no other call on the key sees a half-done state. A [`KeySlotOps`]
//!   holds the key for a whole compound step (read, decide, write) and
//!   nothing else can read or change that key until it is dropped.
//!   Operations on different keys never wait for each other's values
//!   (engines may share locks between keys, never hold one while waiting
//!   on a client). A slot must be dropped before the same thread asks
//!   the engine about another key.
//! - **Expiry** is memcached's: an exptime of 0 never expires; a negative
//!   one is already expired; up to 30 days (2,592,000 s) is relative to
//!   now; above that an absolute unix time (`Clock::realtime`). An item
//!   whose time has come is never returned, even if it still occupies
//!   memory; reads that meet one count `get_expired`, one older than the
//!   last `flush_all` counts `get_flushed`. `flush_all(delay)` kills
//!   every item stored before now + delay (when that time comes); items
//!   stored later live.
//! - **CAS.** Every stored item gets a fresh CAS from one engine-wide
//!   counter (or the replication clock once [`CacheEngine::enable_versions`]
//!   ran), greater than any handed out before; with `use_cas` off every
//!   CAS is 0. `cas` with 0 never matches. append/prepend with a non-zero
//!   `cas` compare it too (meta). `new_cas` (meta `E`) replaces the fresh
//!   value. incr/decr give the item a fresh CAS.
//! - **Memory.** Items count against `Config::mem_limit`; a store that
//!   does not fit evicts (unless `evict_to_free` is off, then answers
//!   `OutOfMemory`, memcached's `-M`). Values up to `item_size_max`
//!   (`-I`) must be storable; `item_size_ok` says which sizes are.
//! - **Counting.** The engine counts what memcached counts per request
//!   in the caller's [`ThreadStats`]: hits and misses per class id (an
//!   engine without classes uses one id, 1, for every item), `cas_*`,
//!   `touch_*`, `incr_*`/`decr_*`, `delete_*`, expired and flushed reads.
//!   `EngineStats` carries the engine-wide figures of the general `stats`.
//! - **No panics** on anything a client sends: keys are 1..=250 bytes
//!   (an empty key stores nothing), values any bytes.
//!
//! # Admin commands of the slab engine
//!
//! memcached 1.6.18's `slabs reassign`, `slabs automove`, `lru tune`,
//! `lru mode`, `lru_crawler` and `stats cachedump` act on slab classes.
//! They stay in the trait so the server needs no engine test; each
//! method's doc says what an engine without slab classes answers, always
//! an answer memcached itself can give (never a fake success that claims
//! a page moved). Settings those commands change are kept and shown by
//! [`CacheEngine::config`] (so `stats settings` reads as memcached's)
//! even where the engine has nothing they act on.

use std::sync::Arc;

use crate::apply::ApplyOutcome;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::crawler::CrawlerCommandError;
use crate::dump::{ItemRecord, MetadumpCursor, MetadumpTarget};
use crate::evlog::Eviction;
use crate::mover::ReassignError;
use crate::ops::{ArithOutcome, GetMode, StoreMode, StoreOutcome};
use crate::restart::RestartOutcome;
use crate::slabs::SlabClassInfo;
use crate::stats::{EngineStats, ThreadStats};
use crate::tuning::LruTuneError;
use crate::version::{Hlc, NodeId, Version};

/// One item seen by a reader while its key is held (inside
/// [`CacheEngine::get`]'s callback or through [`KeySlotOps::item`]). The
/// view cannot outlive the hold; its bytes are the item's as stored.
pub trait ItemView {
    /// What [`ItemView::pin`] gives out.
    type Pinned;

    fn key(&self) -> &[u8];
    fn flags(&self) -> u32;
    fn cas(&self) -> u64;
    fn value_len(&self) -> usize;
    /// Relative expiry time (engine clock), 0 for never.
    fn exptime(&self) -> u32;
    /// Relative time of the last access before this read.
    fn last_access(&self) -> u32;
    /// Whether the item had been read before this read.
    fn fetched(&self) -> bool;
    /// The id `stats items`, cachedump and the per-class counters use
    /// (a slab class id, 1-based); an engine without classes says 1.
    fn class_id(&self) -> u32;
    /// Marked stale by a meta invalidation (`md I`, `mg` after it).
    fn stale(&self) -> bool;
    /// The key was stored base64-decoded (meta `b`).
    fn key_binary(&self) -> bool;
    /// A recache win token was already handed out (meta `W`/`Z`).
    fn win_sent(&self) -> bool;
    /// Appends the value bytes to `out`.
    fn write_value(&self, out: &mut Vec<u8>);
    /// Calls `f` with the value's bytes in order, in one or more parts.
    fn for_each_value_part(&self, f: impl FnMut(&[u8]));
    /// Holds the value for a reply that writes it after the key is
    /// released, instead of copying it. `None` only while the engine is
    /// being torn down (the caller then copies).
    fn pin(&self) -> Option<Self::Pinned>;
}

/// A value held for a reply. While it lives its bytes stay exactly as
/// they were when pinned, whatever happens to the key meanwhile (delete,
/// overwrite, expiry, eviction, flush, incr, a page or segment move):
/// the engine frees or reuses the memory only after the last pin of it is
/// dropped. It keeps the engine alive (it holds an `Arc` to it) and can be
/// sent to and dropped on any thread. Pins are meant to be short-lived
/// (one reply); memory they hold counts against the limit.
pub trait PinnedValue: Send + std::fmt::Debug {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` with the value's bytes in order; slices live as long as
    /// the borrow of `self`.
    fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8]));
}

/// Room for a value being read from a socket, taken before the value
/// arrives (memcached's `conn_nread`). It is counted against the memory
/// limit from `reserve` on, belongs to no key and is seen by no reader
/// until stored; dropping it (client gone, bad data chunk) gives the
/// memory back. Like a pin it holds the engine alive and is `Send`.
pub trait ReservedValue: Send + std::fmt::Debug {
    /// Value bytes the reservation holds (the `nbytes` reserved).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Where value byte `offset` goes: the rest of the contiguous part
    /// holding it, empty once `offset` reaches `len`. Filling every byte
    /// in `0..len` through successive calls fills the value.
    fn unfilled(&mut self, offset: usize) -> &mut [u8];
    /// Calls `f` with the value's bytes in order.
    fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8]));
}

/// One key held for a compound step ([`CacheEngine::lock_key`]): the meta
/// protocol reads the item, decides on its flags and then stores,
/// touches, deletes or counts, all atomically. Dropping the slot releases
/// the key. After a store, vivify or arith that succeeded the slot refers
/// to the new item; after a delete to none.
pub trait KeySlotOps<'a> {
    type Item<'s>: ItemView<Pinned = Self::Pinned>
    where
        Self: 's;
    type Pinned;
    type Reserved;

    /// Whether a live item is under the key (expired or flushed ones were
    /// dropped when the slot was taken, and counted).
    fn exists(&self) -> bool;
    /// The live item as it is now.
    fn item(&self) -> Option<Self::Item<'_>>;
    /// The engine clock's relative time.
    fn now(&self) -> u32;
    /// Counts a read as `get` does (hit per class id, or miss).
    fn count_get(&self);
    /// Counts a touch as `touch` does.
    fn count_touch(&self);
    /// Records an access now, as a get does (for the engine's eviction
    /// policy and `last_access`/`fetched`).
    fn bump(&self);
    /// Sets the expiry from a client exptime (rules in the module doc).
    fn set_exptime(&self, exptime: i64);
    fn set_stale(&self, on: bool);
    fn set_win_sent(&self, on: bool);
    fn set_cas(&self, cas: u64);
    /// A fresh CAS value (0 with CAS off).
    fn next_cas(&self) -> u64;
    /// Stores under the hold; `cas` is compared for `StoreMode::Cas` and,
    /// when non-zero, for append/prepend; `new_cas` replaces the fresh CAS.
    fn store(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome;
    /// As `store`, with the value already read into a reservation of this
    /// engine (flags and expiry as given to `reserve`). A reservation that
    /// is not stored is freed.
    fn store_reserved(
        &mut self,
        mode: StoreMode,
        value: Self::Reserved,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome;
    /// Creates an empty item on a miss (meta `N`); not counted as a set.
    fn vivify(&mut self, flags: u32, exptime: i64, new_cas: Option<u64>) -> StoreOutcome;
    /// Marks the key as stored base64-decoded (meta `b`).
    fn set_key_binary(&self, on: bool);
    /// Counts a delete miss (meta `md` refused on a CAS mismatch).
    fn count_delete_miss(&self);
    /// Deletes the item; false when there was none.
    fn delete(&mut self) -> bool;
    /// incr/decr under the hold, with an optional explicit new CAS.
    fn arith(&mut self, incr: bool, delta: u64, new_cas: Option<u64>) -> ArithOutcome;
}

/// A storage engine. See the module doc for the rules every method keeps.
pub trait CacheEngine: Send + Sync + Sized + 'static {
    type Item<'a>: ItemView<Pinned = Self::Pinned>
    where
        Self: 'a;
    type Slot<'a>: KeySlotOps<'a, Pinned = Self::Pinned, Reserved = Self::Reserved>
    where
        Self: 'a;
    type Pinned: PinnedValue;
    type Reserved: ReservedValue;

    // ---- life cycle ----

    /// Builds the engine from `cfg` (already checked by
    /// `Config::validate` or checked here with memcached's messages).
    /// With `cfg.memory_file` an engine that cannot restart from it says
    /// so in its error rather than ignoring `-e`.
    fn new(cfg: Config) -> Result<Arc<Self>, ConfigError>;
    /// Starts the engine's background threads (clock tick, maintenance).
    fn start(self: &Arc<Self>);
    /// Stops and joins them; the engine still answers calls afterwards.
    fn shutdown(&self);
    /// The configuration in force (`cache_memlimit` changes `mem_limit`).
    fn config(&self) -> Config;
    /// The engine's clock: relative seconds since start, as memcached's
    /// `current_time`; also what converts client exptimes.
    fn clock(&self) -> &Clock;
    /// A per-worker counter block, registered so `stats` sums it.
    fn new_thread_stats(&self) -> Arc<ThreadStats>;
    /// Walks every internal structure and reports the first inconsistency
    /// (tests and fuzzing; may be slow, never on the request path).
    fn check_invariants(&self) -> Result<(), String>;
    /// How the memory file (`-e`) was found at start. An engine without
    /// warm restart answers `NoFile` (and refuses `-e` in `new`).
    fn restart_outcome(&self) -> &RestartOutcome;
    /// Graceful stop with `-e`: makes the memory file restartable.
    /// Without `-e` nothing happens and the answer is `Ok`.
    fn save_memory_file(&self) -> Result<(), String>;
    /// `cache_memlimit`: the new limit in bytes. Refused with memcached's
    /// message when the engine cannot change it (as with `-e`).
    fn set_mem_limit(&self, bytes: usize) -> Result<(), ConfigError>;

    // ---- sizes ----

    /// Whether an item of this key length, flags and value length can be
    /// stored at all (`-I`, the engine's item format). The server refuses
    /// larger values before reading them.
    fn item_size_ok(&self, nkey: usize, flags: u32, nbytes: usize) -> bool;
    /// The class id such an item would be counted under (`watch`,
    /// per-class `stats`): a slab class, or 1 for an engine without.
    fn class_id_for(&self, nkey: usize, flags: u32, nbytes: usize) -> u32;
    /// Counts a set of an item this size in `ts` without storing one
    /// (a set refused before the engine saw it, as memcached counts it).
    fn count_set(&self, nkey: usize, flags: u32, nbytes: usize, ts: &ThreadStats);

    // ---- whole-key operations ----

    /// Reads `key`; `f` runs while the key is held and sees the item as
    /// it was before this read (`fetched`, `last_access`). `GetMode::Touch`
    /// also sets a new expiry (gat). `None` on a miss (counted).
    fn get<R>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        f: impl FnOnce(&Self::Item<'_>) -> R,
    ) -> Option<R>;
    /// set / add / replace / append / prepend / cas. A set that fails
    /// (too large, out of memory) removes the key's old item, as
    /// memcached does.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome;
    /// Deletes `key`; false when it was not there.
    fn delete(&self, key: &[u8], ts: &ThreadStats) -> bool;
    /// Sets a new expiry; false on a miss.
    fn touch(&self, key: &[u8], exptime: i64, ts: &ThreadStats) -> bool;
    /// incr/decr with memcached's rules (64-bit wrap on incr, floor 0 on
    /// decr, a value that is not a number is `NonNumeric`).
    fn arith(&self, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome;
    /// `flush_all [delay]` (expiry rules in the module doc). Need not walk
    /// the items; reads must never return a flushed one.
    fn flush_all(&self, delay: i64);
    /// Removes `key` without counting anything (a failed set's old item).
    fn unlink_key(&self, key: &[u8]);
    /// Takes room for a `mode` store of `nbytes` under `key` (see
    /// [`ReservedValue`]); fails as `store` would (`TooLarge`,
    /// `OutOfMemory`) and, for a set, then removes the key's old item.
    fn reserve(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        nbytes: usize,
    ) -> Result<Self::Reserved, StoreOutcome>;
    /// Stores a filled reservation (append/prepend copy its bytes).
    fn store_reserved(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: Self::Reserved,
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome;
    /// Holds `key` for a compound step; an expired or flushed item is
    /// dropped first and counted as a read would count it.
    fn lock_key<'a>(&'a self, key: &'a [u8], ts: &'a ThreadStats) -> Self::Slot<'a>;

    // ---- stats ----

    /// The engine's part of the general `stats`.
    fn stats(&self) -> EngineStats;
    /// `stats items`: (name, value) lines in memcached's order, per class
    /// id; an engine without classes reports its items under class 1.
    fn stats_items(&self) -> Vec<(String, String)>;
    /// `stats slabs`: per-class lines then `active_slabs` and
    /// `total_malloced`. An engine without slab classes answers its
    /// own figures under its own names (and the two totals), or only the
    /// totals; never invented slab classes.
    fn stats_slabs(&self) -> Vec<(String, String)>;
    /// `stats sizes`: items per 32-byte size bucket with a CAS at or above
    /// `min_cas` (memcached's histogram; any engine can compute it).
    fn stats_sizes(&self, min_cas: u64) -> Vec<(String, String)>;
    /// Draws a CAS so `stats sizes_enable` counts only items stored later.
    fn draw_cas(&self) -> u64;
    /// `stats reset`: the engine's resettable counters.
    fn stats_reset(&self);
    /// The engine's own lines at the end of the general `stats`: figures
    /// memcached has no name for (the segment engine's segments, merges,
    /// metadata bytes). None by default: the slab engine adds nothing.
    fn engine_stats(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Items currently pinned by replies (tests check it drops to 0).
    fn pinned_items(&self) -> u64;
    /// Items linked right now (`curr_items` without the lazy expiry).
    fn count_linked(&self) -> u64;
    /// The slab classes `-vv` prints at start; empty without classes.
    fn slab_classes(&self) -> Vec<SlabClassInfo>;
    /// The relative time before which everything is flushed (`stats
    /// items`' and `stats`' `oldest` helper); 0 when no flush happened.
    fn oldest_live(&self) -> u32;

    // ---- admin: slab classes and LRUs ----

    /// `slabs reassign src dst`. An engine without slab pages checks as
    /// memcached does first (`Same` for src == dst, `BadClass` for an id
    /// outside -1..=63, memcached's class range) and then answers
    /// `NoSpare`: no class has a page to spare.
    fn slabs_reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError>;
    /// `slabs automove 0|1|2`: an engine without pages keeps the mode
    /// for `stats settings` and moves nothing.
    fn set_automove(&self, mode: u32);
    /// `-o slab_automove_ratio` at run time; kept, unused, without pages.
    fn set_automove_ratio(&self, ratio: f64);
    /// `lru tune`: the checks (and errors) are memcached's whatever the
    /// engine; an engine without HOT/WARM LRUs validates and keeps the
    /// values for `stats settings` without acting on them.
    fn lru_tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError>;
    /// `lru mode segmented|flat`; kept (`lru_segmented`) by an engine with
    /// its own eviction policy, which it does not change.
    fn set_lru_segmented(&self, segmented: bool);
    /// `lru temp_ttl` (negative: TEMP LRU off); kept as `temp_lru` and
    /// `temporary_ttl` by an engine without a TEMP LRU.
    fn lru_temp_ttl(&self, ttl: i64);

    // ---- crawler and dumps ----

    /// `lru_crawler enable`: false when it was already on. An engine that
    /// reclaims expired items another way (whole segments) still keeps the
    /// on/off state, sleep and tocrawl for `stats settings`.
    fn lru_crawler_enable(&self) -> bool;
    /// `lru_crawler disable`: false when it was already off.
    fn lru_crawler_disable(&self) -> bool;
    fn lru_crawler_set_sleep(&self, usecs: u32);
    fn lru_crawler_set_tocrawl(&self, n: u32);
    /// `lru_crawler crawl <classes|all>`: reclaims expired items now. An
    /// engine without classes accepts `all` and answers `BadClass` for a
    /// list naming any class but 1.
    fn lru_crawler_crawl(&self, classes: &str) -> Result<(), CrawlerCommandError>;
    /// `stats cachedump class limit`: up to `limit` items (0: all) of the
    /// class, newest first, until `f` returns false. Without classes,
    /// class 1 is every item and other ids list nothing.
    fn cachedump(&self, class_id: u32, limit: u32, f: impl FnMut(&ItemRecord<'_>) -> bool);
    /// `lru_crawler metadump` in one go (tests and tools).
    fn lru_crawler_metadump(
        &self,
        target: MetadumpTarget,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<(), CrawlerCommandError>;
    /// One bounded step of `lru_crawler metadump` (the server interleaves
    /// steps with its other work): true once the walk is done. Every
    /// item live through the whole walk is reported exactly once.
    fn lru_crawler_metadump_step(
        &self,
        cursor: &mut MetadumpCursor,
        f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<bool, CrawlerCommandError>;

    // ---- eviction log (`watch evictions`) ----

    /// Installs the hook called for each eviction while logging is on
    /// (once; later calls are ignored). Called with the key held.
    fn set_eviction_hook(&self, f: impl Fn(&Eviction) + Send + Sync + 'static);
    /// Switches eviction logging; off costs one relaxed load an eviction.
    fn log_evictions(&self, on: bool);

    // ---- replication (CAS words as hybrid-clock versions) ----

    /// Makes every CAS from now on an HLC version of `node`; false when
    /// versions were already on. Called before any client or peer write.
    fn enable_versions(&self, node: NodeId) -> bool;
    /// The version clock, once enabled.
    fn versions(&self) -> Option<&Hlc>;
    /// Applies a peer's write if `version` is newer than the key's
    /// (its CAS): last writer wins, atomically per key.
    #[allow(clippy::too_many_arguments)]
    fn apply_versioned(
        &self,
        key: &[u8],
        version: Version,
        flags: u32,
        exptime_unix: u64,
        value: &[u8],
        ts: &ThreadStats,
    ) -> ApplyOutcome;
    /// Applies a peer's delete if `version` is newer than the key's item.
    fn delete_versioned(&self, key: &[u8], version: Version, ts: &ThreadStats) -> ApplyOutcome;
}
