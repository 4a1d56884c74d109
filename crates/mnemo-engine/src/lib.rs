//! mnemo's storage engine: memory for the cache, with no I/O besides the
//! memory file of a restartable cache (`-e`, `restart.rs`).
//!
//! The design is memcached's (slab classes over 1 MB pages, a hash index,
//! a segmented LRU per class, lazy expiry plus a crawler, a page mover),
//! with a tighter item: 28 bytes of header including the 64-bit CAS, where
//! memcached spends 56. See `item.rs` for the layout.
//!
//! Concurrency: the hash index is split into shards, each behind its own
//! mutex; a key's shard lock is what makes get/store/arith/cas atomic per
//! key. Each slab class has its own mutex for its free list and LRU lists.
//! Lock order is shard -> class; paths that start from a class (eviction,
//! crawler, maintainer, page mover) only `try_lock` a shard and skip the
//! item on failure, so there is no cycle. Gets never take a class lock:
//! they set the item's ACTIVE bit and the maintainer moves it later.
//!
//! The engine interface (`iface.rs`, [`CacheEngine`]) is memcached's
//! engine API (info, init, shutdown, stats, allocate/store, get, delete,
//! touch, arithmetic, flush) grown to what mnemo's server uses; its docs
//! are the contract every engine keeps. Two engines implement it: the
//! slab engine above ([`SlabEngine`], the default) and the segment engine
//! (`segment/`, `-o engine=segment`, Segcache's design). The server holds
//! [`Engine`], the facade that dispatches to whichever was chosen.

mod apply;
mod arena;
mod assoc;
mod automove;
mod check;
mod clock;
mod config;
pub mod counter;
mod crawler;
mod dump;
mod evlog;
mod facade;
mod iface;
mod item;
mod lru;
mod mover;
mod numeric;
mod ops;
mod pin;
mod reserve;
mod restart;
mod slab_impl;
mod slabs;
mod slot;
mod stats;
mod sync;
pub mod tombstones;
mod tuning;
pub mod version;

pub use apply::ApplyOutcome;
pub use clock::Clock;
pub use config::{Config, ConfigError};
pub use crawler::CrawlerCommandError;
pub use dump::{ItemRecord, MetadumpCursor, MetadumpTarget};
pub use evlog::Eviction;
pub use mover::ReassignError;
pub use ops::{ArithOutcome, GetMode, StoreMode, StoreOutcome};
pub use restart::RestartOutcome;
pub use slabs::SlabClassInfo;
pub use stats::{EngineStats, ItemCounters, ThreadStats};
pub use tuning::LruTuneError;

mod engine;
pub use config::EngineKind;
pub use engine::SlabEngine;
// What the server uses: the facade over the engines, and the interface.
pub use facade::{Engine, EngineItem, GetVisitor, ItemRef, KeySlot, Pinned, Reserved};
pub use iface::{CacheEngine, ItemView, KeySlotOps, PinnedValue, ReservedValue};

/// The slab engine's own handle types, for tests of slab internals (the
/// server uses the facade's of the same names).
pub mod slab {
    pub use crate::engine::SlabEngine;
    pub use crate::item::ItemRef;
    pub use crate::pin::Pinned;
    pub use crate::reserve::Reserved;
    pub use crate::slot::KeySlot;
}

mod segment;
pub use segment::{SegItem, SegPinned, SegReserved, SegSlot, SegmentEngine};

/// Longest key an item can hold: its header keeps the key length in one
/// byte. This is the storage format's capacity; which keys a client may
/// send is the protocol's rule (`mnemo_protocol::MAX_KEY_LEN`, 250), which
/// the server checks fits under this one.
pub const MAX_STORED_KEY: usize = 0xFF;

// Handles a server moves between threads are Send because they hold a
// chunk id and the engine, not a pointer into a page: checked here, at
// compile time, so no unsafe impl comes back.
const _: () = {
    const fn send<T: Send>() {}
    send::<Pinned>();
    send::<Reserved>();
};
