//! One node's replication state and its apply rule: local writes become
//! versioned frames in the node's backlog, and a peer's frame is merged
//! into the engine and the tombstones and, only if it changed something,
//! forwarded through the backlog (which is what keeps a write from
//! looping round a ring or mesh). The link (`link.rs`, `sender.rs`) moves
//! frames between backlogs; the tests here move them by hand, in any
//! order, over a mesh and a ring, and check that every node converges on
//! "newest wins".
//!
//! A client write is recorded as the state it left the key in, read back
//! under the key's lock once the protocol's own operation is done
//! ([`Node::record_state`]): one rule for set, add, replace, append,
//! prepend, cas, touch, gat and the meta and binary forms alike, whose
//! results the protocol code computes differently. Counters are the
//! exception (`counters.rs`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use mnemo_engine::version::{wall_unix_ms, Entry, NodeId, Version};
use mnemo_engine::{ApplyOutcome, Engine, KeySlot, StoreMode, StoreOutcome, ThreadStats};
use mnemo_protocol::repl::backlog::Backlog;
use mnemo_protocol::repl::{encode, Record};
use parking_lot::Mutex;

use super::counters::Counters;
use super::tombs::TombTable;

/// Why a peer's frame was not applied; the link logs it and closes.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// The engine refused it (too large, out of memory, clock skew).
    Engine(ApplyOutcome),
    /// A version with our node id that this node never drew.
    ForgedOwn(u64),
    /// A `flush_all` barrier further ahead than any delay can put it.
    FlushTooFar(u64),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Engine(ApplyOutcome::Skew(e)) => write!(f, "{e}"),
            ApplyError::Engine(o) => write!(f, "engine refused the write: {o:?}"),
            ApplyError::FlushTooFar(v) => {
                write!(f, "flush_all barrier {v} lies past 30 days ahead")
            }
            ApplyError::ForgedOwn(v) => {
                write!(
                    f,
                    "version {v} carries our node id but was never drawn here"
                )
            }
        }
    }
}

thread_local! {
    /// Encoding scratch: a frame is built here, then copied into the
    /// backlog under its lock, so the lock is held only for the copy.
    static FRAME: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static VALUE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// A worker's records of its current loop turn, appended to the
    /// backlog together by [`Node::flush_pending`]: one backlog lock per
    /// turn instead of one per write (a locked instruction after each
    /// copy into the ring stalled the worker on every write). Only on
    /// threads that called [`batch_records`]; elsewhere (UDP, links,
    /// tests) a record goes straight to the backlog.
    static PENDING: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Records this thread's writes into a buffer that its loop hands to
/// the backlog with [`Node::flush_pending`] before it next waits.
pub fn batch_records() {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_none() {
            *p = Some(Vec::with_capacity(PENDING_MAX));
        }
    });
}

/// Past this, a turn's records are flushed at once (a large value, or a
/// long turn): bounds the buffer and how late peers see them.
const PENDING_MAX: usize = 64 * 1024;

/// Counters `stats replication` shows for the node as a whole.
#[derive(Default)]
pub struct NodeStats {
    /// Incoming entries that lost the merge.
    pub conflicts: AtomicU64,
    /// Incoming writes of keys held nothing for, at or below the horizon:
    /// refused, and deleted everywhere at their version.
    pub horizon_refused: AtomicU64,
    /// Items dropped after a full copy whose sender had forgotten deletes
    /// at or above their versions and did not hold them.
    pub horizon_swept: AtomicU64,
}

pub struct Node {
    id: NodeId,
    engine: Arc<Engine>,
    ts: Arc<ThreadStats>,
    pub(super) tombs: TombTable,
    backlog: Mutex<Backlog>,
    pub(super) counters: Counters,
    /// The greatest `flush_all` barrier applied or made here.
    pub(super) barrier: AtomicU64,
    /// Delayed `flush_all` barriers not yet due (`flush.rs`).
    pub(super) pending_flushes: Mutex<std::collections::BTreeSet<u64>>,
    /// No version this run draws is below it: a record of our own at or
    /// above it is a write of this run come back round (in a mesh, every
    /// write returns once per peer), known without a lookup.
    born: u64,
    pub stats: NodeStats,
}

/// A client write that stored the request's value whole, as the
/// protocol saw it: the client's exptime, and the version the store drew.
#[derive(Clone, Copy)]
pub struct StoredWrite<'a> {
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i64,
    pub value: &'a [u8],
    pub cas: u64,
}

/// An item's state as read under its lock.
pub(super) struct ItemState {
    pub cas: u64,
    pub flags: u32,
    /// Absolute Unix seconds, 0 for never.
    pub exptime: u64,
}

impl Node {
    /// A node over `engine`, turning its CAS into versions. None if the
    /// engine cannot (CAS off, or versions already on).
    pub fn new(
        id: NodeId,
        engine: Arc<Engine>,
        replid: u64,
        backlog_bytes: usize,
        tombstone_ttl_ms: u64,
        tombstone_bytes: usize,
    ) -> Option<Node> {
        if !engine.enable_versions(id) {
            return None;
        }
        // Every version this run draws is at least this: the clock
        // resumes above what was saved and never runs behind the wall.
        let wall = wall_unix_ms().saturating_sub(mnemo_engine::version::EPOCH_UNIX_MS);
        let born = engine
            .versions()
            .map_or(0, |h| h.last().0)
            .max(Version::pack(wall, 0, id).0);
        let ts = engine.new_thread_stats();
        Some(Node {
            id,
            engine,
            ts,
            tombs: TombTable::new(tombstone_ttl_ms, tombstone_bytes),
            backlog: Mutex::new(Backlog::new(replid, backlog_bytes)),
            counters: Counters::default(),
            barrier: AtomicU64::new(0),
            pending_flushes: Mutex::new(std::collections::BTreeSet::new()),
            born,
            stats: NodeStats::default(),
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// No version this run draws is below it (a link's HELLO tells the
    /// peer, which then does not send this run's writes back).
    pub fn born(&self) -> u64 {
        self.born
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn backlog(&self) -> &Mutex<Backlog> {
        &self.backlog
    }

    pub fn ts(&self) -> &ThreadStats {
        &self.ts
    }

    /// Appends one record to the backlog (or, on a worker, to its turn's
    /// records).
    pub(super) fn log(&self, rec: &Record<'_>) {
        let batched = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let Some(buf) = p.as_mut() else {
                return false;
            };
            let start = buf.len();
            // As below: an encoding failure skips the frame.
            if encode(rec, buf).is_err() {
                buf.truncate(start);
            }
            if buf.len() >= PENDING_MAX {
                self.append_frames(buf);
            }
            true
        });
        if batched {
            return;
        }
        FRAME.with(|f| {
            let mut frame = f.borrow_mut();
            frame.clear();
            // Our own records: node id from the version, key and value
            // within the engine's limits, so encoding cannot fail; if it
            // somehow did, the frame is skipped rather than the write
            // refused (peers then converge on a later write or a resync).
            if encode(rec, &mut frame).is_ok() {
                self.backlog.lock().append(&frame);
            }
        });
    }

    /// Hands this thread's pending records to the backlog (a worker
    /// calls it once per loop turn, before it waits or sends replies).
    pub fn flush_pending(&self) {
        PENDING.with(|p| {
            if let Some(buf) = p.borrow_mut().as_mut() {
                if !buf.is_empty() {
                    self.append_frames(buf);
                }
            }
        });
    }

    /// Appends the whole frames in `buf` under one lock, and empties it.
    fn append_frames(&self, buf: &mut Vec<u8>) {
        let mut backlog = self.backlog.lock();
        let mut pos = 0;
        // Frames we encoded: a 4-byte little-endian length, then the body.
        while let Some(len) = buf.get(pos..pos + 4) {
            let mut l = [0u8; 4];
            l.copy_from_slice(len);
            let end = pos + 4 + u32::from_le_bytes(l) as usize;
            let Some(frame) = buf.get(pos..end) else {
                break;
            };
            backlog.append(frame);
            pos = end;
        }
        drop(backlog);
        buf.clear();
    }

    /// The item's state under `slot`, its value appended to `value`.
    pub(super) fn read_item(&self, slot: &KeySlot<'_>, value: &mut Vec<u8>) -> Option<ItemState> {
        let it = slot.item()?;
        it.write_value(value);
        Some(ItemState {
            cas: it.cas(),
            flags: it.flags(),
            exptime: self.unix_exptime(it.exptime()),
        })
    }

    /// An engine (relative) exptime as frames carry it: absolute Unix
    /// seconds, 0 for never.
    fn unix_exptime(&self, rel: u32) -> u64 {
        match rel {
            0 => 0,
            r => self.engine.clock().process_started() + u64::from(r),
        }
    }

    /// A client's write to `key` is done: records the state it left. With
    /// `bump` (touch, gat: writes that leave the CAS as it was) a version
    /// is first drawn for the new expiry, which goes out as a TOUCH.
    pub fn record_state(&self, key: &[u8], bump: bool, ts: &ThreadStats) {
        VALUE.with(|v| {
            let mut value = v.borrow_mut();
            value.clear();
            let slot = self.engine.lock_key(key, ts);
            if bump {
                self.draw_ttl_version(&slot, key);
            }
            let Some(st) = self.read_item(&slot, &mut value) else {
                // Gone already (expired, or deleted by a racing client
                // whose delete is recorded on its own).
                return;
            };
            drop(slot);
            let version = Version(st.cas);
            if let Some((ttl, base)) = self.counters.touched(key, st.cas) {
                // A new expiry alone: the value (a counter's totals) stays
                // as peers hold it (section 2).
                self.log(&Record::Touch {
                    origin: self.id.get(),
                    version: ttl,
                    key,
                    base,
                    exptime: st.exptime,
                });
                return;
            }
            self.tombs.supersede(key, version);
            self.counters.forget(key);
            self.log(&Record::Set {
                origin: self.id.get(),
                version: st.cas,
                key,
                flags: st.flags,
                exptime: st.exptime,
                value: &value,
            });
        });
    }

    /// A client's `set` (or add, replace, cas) stored its value whole:
    /// records that write from the request itself, without locking the
    /// key again to read it back. `now_before` is the engine clock read
    /// before the store: if it has moved since, the store may have turned
    /// a relative exptime into another second than this would, and the
    /// item is read back instead ([`Node::record_state`]), as it is for a
    /// negative exptime (the item is dead at once; nothing is sent).
    pub fn record_stored(&self, w: &StoredWrite<'_>, now_before: u32, ts: &ThreadStats) {
        let StoredWrite {
            key,
            flags,
            exptime,
            value,
            cas,
        } = *w;
        let clock = self.engine.clock();
        let rel = clock.realtime(exptime);
        if exptime < 0 || clock.now() != now_before {
            return self.record_state(key, false, ts);
        }
        if rel != 0 && rel <= now_before {
            // An absolute time already past: the item is dead at once, and
            // the read-back would find nothing to send either.
            return;
        }
        let version = Version(cas);
        self.tombs.supersede(key, version);
        self.counters.forget(key);
        self.log(&Record::Set {
            origin: self.id.get(),
            version: cas,
            key,
            flags,
            exptime: self.unix_exptime(rel),
            value,
        });
    }

    /// Draws the version of a TTL change (touch, gat, `T`) of the item
    /// under `slot`, before it is made: the side table keeps it as the
    /// expiry's version, and the item's CAS stays, as memcached's does.
    pub fn draw_ttl_version(&self, slot: &KeySlot<'_>, key: &[u8]) {
        if slot.exists() {
            self.counters.touch(slot, key, slot.next_cas());
        }
    }

    /// A client deleted `key` (the protocol's delete hit): records a
    /// tombstone. The version is drawn under the key's lock; if a racing
    /// client wrote the key again meanwhile, that write is recorded on
    /// its own and is the key's state, so no tombstone is needed.
    pub fn record_delete(&self, key: &[u8], ts: &ThreadStats) {
        let slot = self.engine.lock_key(key, ts);
        if slot.exists() {
            return;
        }
        let version = Version(slot.next_cas());
        drop(slot);
        self.counters.forget(key);
        self.tombs.insert(key, version, wall_unix_ms());
        self.log(&Record::Delete {
            origin: self.id.get(),
            version: version.0,
            key,
        });
    }

    /// A client's `set` on this node; its version, or None if the engine
    /// did not store it. (The tests' way in; the server records through
    /// [`Node::record_state`].)
    pub fn local_set(
        &self,
        key: &[u8],
        flags: u32,
        exptime_unix: u64,
        value: &[u8],
    ) -> Option<Version> {
        let exp = i64::try_from(exptime_unix).unwrap_or(i64::MAX);
        let StoreOutcome::Stored { cas } =
            self.engine
                .store(StoreMode::Set, key, flags, exp, value, 0, &self.ts)
        else {
            return None;
        };
        self.record_state(key, false, &self.ts);
        Some(Version(cas))
    }

    /// A client's `delete` on this node: a tombstone if the key was there.
    pub fn local_delete(&self, key: &[u8]) -> Option<Version> {
        if !self.engine.delete(key, &self.ts) {
            return None;
        }
        self.record_delete(key, &self.ts);
        self.tombs.get(key)
    }

    fn observe(&self, version: Version) -> Result<(), ApplyError> {
        match self.engine.versions() {
            Some(h) => h
                .observe(version, wall_unix_ms())
                .map_err(|e| ApplyError::Engine(ApplyOutcome::Skew(e))),
            None => Err(ApplyError::Engine(ApplyOutcome::NotEnabled)),
        }
    }

    /// A record carrying our node id must be one we drew: older than our
    /// clock (a write come back round, or from before a restart). One
    /// newer was never drawn here: a forgery, refused.
    fn observe_own(&self, own: bool, version: Version) -> Result<(), ApplyError> {
        if !own {
            return Ok(());
        }
        // Below the clock's last draw: ours (in a mesh, every write comes
        // back once per peer), known without reading the wall clock.
        let last = self.engine.versions().map_or(0, |h| h.last().0);
        if version.0 <= last {
            return Ok(());
        }
        // After a restart the clock has drawn nothing yet, but every
        // version of the earlier run lies before now.
        let now_ms = wall_unix_ms().saturating_sub(mnemo_engine::version::EPOCH_UNIX_MS);
        let now = Version::pack(now_ms, mnemo_engine::version::COUNTER_MAX, self.id).0;
        if version.0 > now {
            return Err(ApplyError::ForgedOwn(version.0));
        }
        Ok(())
    }

    /// An incoming entry that lost the merge (a conflict, unless it is
    /// our own write come back round).
    fn stale(&self, own: bool) -> Result<bool, ApplyError> {
        if !own {
            self.stats.conflicts.fetch_add(1, Relaxed);
        }
        Ok(false)
    }

    /// Merges a peer's frame. Ok(true): it changed this node and was
    /// forwarded; Ok(false): already known. Our own writes coming back
    /// round a ring are known and stop here by the same rule; after a
    /// restart with the same node id, our own earlier writes held by
    /// peers are news and are applied (with our earlier counter totals).
    pub fn apply(&self, rec: &Record<'_>) -> Result<bool, ApplyError> {
        let own = rec.origin() == self.id.get();
        let version = Version(rec.version());
        // A DELETE of ours is not skipped: a peer that refused one of our
        // writes past its horizon deletes it at its own version, and that
        // delete must reach us (our own deletes coming back find their
        // tombstone and stop).
        if own
            && version.0 >= self.born
            && !matches!(
                rec,
                Record::Ping { .. }
                    | Record::Ack { .. }
                    | Record::Skip { .. }
                    | Record::Delete { .. }
            )
        {
            self.observe_own(own, version)?;
            return Ok(false);
        }
        match *rec {
            Record::Set {
                key,
                flags,
                exptime,
                value,
                ..
            } => {
                self.observe_own(own, version)?;
                self.observe(version)?;
                if self.tombs.get(key).is_some_and(|t| t >= version) {
                    return self.stale(own);
                }
                if !self.engine.item_size_ok(key.len(), flags, value.len()) {
                    return Err(ApplyError::Engine(ApplyOutcome::TooLarge));
                }
                let mut slot = self.engine.lock_key(key, &self.ts);
                // What this write competes with: the item's version, or
                // for a counter the base its increments count on (a set
                // newer than the base resets the counter, section 4).
                // (version, whether it is a counter's base)
                let current = slot
                    .item()
                    .map(|i| match self.counters.base_of(key, i.cas()) {
                        Some(base) => (base, true),
                        None => (i.cas(), false),
                    });
                if current.is_none() && version.0 <= self.tombs.forgotten() {
                    drop(slot);
                    return self.refuse_forgotten(key, version);
                }
                let wins = match current {
                    None => true,
                    Some((c, _)) if c != version.0 => c < version.0,
                    // The counter's own base (a full copy sends it before
                    // the totals): already counted on.
                    Some((_, true)) => false,
                    // The same version (a duplicate, or a bug's or a
                    // forger's): the rest of the total order decides, so
                    // every node still ends with the same entry.
                    Some(_) => {
                        let mut held = Vec::new();
                        let st = self.read_item(&slot, &mut held);
                        let incoming = Entry {
                            version,
                            tombstone: false,
                            expiry: exptime,
                            flags,
                            value,
                        };
                        st.is_some_and(|st| {
                            let mine = Entry {
                                version,
                                tombstone: false,
                                expiry: st.exptime,
                                flags: st.flags,
                                value: &held,
                            };
                            incoming > mine
                        })
                    }
                };
                if !wins {
                    drop(slot);
                    return self.stale(own);
                }
                // A TTL change made on this write that came first (by
                // another path) is its expiry now (section 2).
                let keep = self.counters.early_ttl(key, version.0);
                let exptime = keep.map_or(exptime, |k| k.1);
                let exp = i64::try_from(exptime).unwrap_or(i64::MAX);
                match slot.store(StoreMode::Set, flags, exp, value, 0, Some(version.0)) {
                    StoreOutcome::Stored { .. } => {}
                    StoreOutcome::OutOfMemory => {
                        return Err(ApplyError::Engine(ApplyOutcome::OutOfMemory))
                    }
                    _ => return Err(ApplyError::Engine(ApplyOutcome::TooLarge)),
                }
                drop(slot);
                match keep {
                    Some((ttl, _)) => self.counters.rebase(key, version.0, value, ttl),
                    None => self.counters.superseded(key, version.0),
                }
                self.tombs.supersede(key, version);
                self.log(rec);
                Ok(true)
            }
            Record::Delete { key, .. } => {
                self.observe_own(own, version)?;
                self.observe(version)?;
                let mut slot = self.engine.lock_key(key, &self.ts);
                let current = slot
                    .item()
                    .map(|i| self.counters.base_of(key, i.cas()).unwrap_or(i.cas()));
                // A newer item: the delete lost. (On an equal version the
                // tombstone is the greater entry and wins.)
                if current.is_some_and(|c| c > version.0) {
                    drop(slot);
                    return self.stale(own);
                }
                slot.delete();
                drop(slot);
                self.counters.superseded(key, version.0);
                // Older item removed, or none: the tombstone decides
                // whether this is news.
                if self.tombs.insert(key, version, wall_unix_ms()) {
                    self.log(rec);
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            Record::Flush { .. } => self.apply_barrier(rec, version),
            Record::Touch {
                key, base, exptime, ..
            } => {
                self.observe_own(own, version)?;
                self.observe(version)?;
                let news = self.apply_touch(key, base, version.0, exptime)?;
                if news {
                    self.log(rec);
                }
                Ok(news)
            }
            Record::Counter { key, base, .. } => {
                self.observe_own(own, version)?;
                self.observe(version)?;
                // Totals on a base at or below the horizon, for a key held
                // nothing for: the base may be a write deleted here.
                if base <= self.tombs.forgotten()
                    && self.tombs.get(key).is_none_or(|t| t.0 < base)
                    && !self.engine.lock_key(key, &self.ts).exists()
                {
                    return self.refuse_forgotten(key, Version(base));
                }
                self.apply_counter(rec)
            }
            // Link-level frames carry no state.
            Record::Ping { .. } | Record::Ack { .. } | Record::Skip { .. } => Ok(false),
        }
    }

    /// The horizon rule (docs/REPLICATION.md, section 3): a write of a key
    /// this node holds nothing for, at or below a version whose deletes
    /// it has forgotten, may be one it deleted. It is refused, and deleted
    /// at exactly its own version here and on every peer, so that the
    /// nodes agree (a newer write of the key, anywhere, survives).
    fn refuse_forgotten(&self, key: &[u8], version: Version) -> Result<bool, ApplyError> {
        self.stats.horizon_refused.fetch_add(1, Relaxed);
        self.counters.forget(key);
        if !self.tombs.insert(key, version, wall_unix_ms()) {
            return Ok(false);
        }
        self.log(&Record::Delete {
            origin: version.0 as u8,
            version: version.0,
            key,
        });
        Ok(true)
    }

    /// After a full copy from a peer that had forgotten deletes up to
    /// `horizon`: drops (here only) every item at or below it that the
    /// copy did not carry (`copied`: the copy's keys hashed by `hasher`,
    /// sorted), since the peer may have deleted it; then takes the
    /// horizon as this node's own. Returns how many items went. (Two
    /// keys whose 64-bit hashes collide would keep a stale item: about
    /// one chance in 10^12 per item for a copy of ten million keys.)
    pub fn sweep_forgotten(
        &self,
        horizon: Version,
        copied: &[u64],
        hasher: &std::collections::hash_map::RandomState,
    ) -> Result<u64, String> {
        use std::hash::BuildHasher;
        // Our next writes are drawn above it, so none is swept.
        self.observe(horizon).map_err(|e| e.to_string())?;
        let mut cursor = mnemo_engine::MetadumpCursor::new(mnemo_engine::MetadumpTarget::Hash);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut swept = 0;
        loop {
            keys.clear();
            let done = self
                .engine
                .lru_crawler_metadump_step(&mut cursor, |r| keys.push(r.key.to_vec()))
                .map_err(|e| format!("cannot walk the items: {e:?}"))?;
            for k in &keys {
                if copied.binary_search(&hasher.hash_one(&k[..])).is_ok() {
                    continue;
                }
                let mut slot = self.engine.lock_key(k, &self.ts);
                if slot.item().is_some_and(|i| i.cas() <= horizon.0) {
                    slot.delete();
                    drop(slot);
                    self.counters.forget(k);
                    swept += 1;
                }
            }
            if done {
                break;
            }
        }
        self.tombs.learn_forgotten(horizon);
        self.stats.horizon_swept.fetch_add(swept, Relaxed);
        Ok(swept)
    }

    /// The greatest version of a delete this node has forgotten (0: none),
    /// after letting tombstones past their age go.
    pub fn horizon(&self) -> u64 {
        self.expire_tombstones();
        self.tombs.forgotten()
    }

    /// Appends `key`'s state to `out` as a full resync sends it: the item
    /// as a SET, or a counter as its base and each node's totals. Nothing
    /// if the key is gone.
    pub fn snapshot_key(&self, key: &[u8], out: &mut Vec<u8>) {
        let mut value = Vec::new();
        let slot = self.engine.lock_key(key, &self.ts);
        let Some(st) = self.read_item(&slot, &mut value) else {
            return;
        };
        let counter = self.counters.snapshot(key, st.cas);
        drop(slot);
        let Some(c) = counter else {
            let _ = encode(
                &Record::Set {
                    origin: st.cas as u8,
                    version: st.cas,
                    key,
                    flags: st.flags,
                    exptime: st.exptime,
                    value: &value,
                },
                out,
            );
            return;
        };
        let mut buf = itoa_buf(c.base_value);
        // A touched item no node has counted: its value is its base's.
        let base_value = if c.contrib.is_empty() {
            &value[..]
        } else {
            buf.as_bytes()
        };
        let _ = encode(
            &Record::Set {
                origin: c.base as u8,
                version: c.base,
                key,
                flags: st.flags,
                exptime: st.exptime,
                value: base_value,
            },
            out,
        );
        buf.clear();
        if let Some(ttl) = c.ttl {
            let _ = encode(
                &Record::Touch {
                    origin: ttl as u8,
                    version: ttl,
                    key,
                    base: c.base,
                    exptime: st.exptime,
                },
                out,
            );
        }
        for n in c.contrib {
            let _ = encode(
                &Record::Counter {
                    origin: n.node.get(),
                    version: n.version,
                    key,
                    base: c.base,
                    base_value: c.base_value,
                    p: n.p,
                    n: n.n,
                },
                out,
            );
        }
    }

    /// Appends every tombstone and the flush barrier, as a full resync
    /// ends.
    pub fn snapshot_tombstones(&self, out: &mut Vec<u8>) {
        self.tombs.each(|t| {
            for (key, v) in t.iter() {
                let _ = encode(
                    &Record::Delete {
                        origin: v.0 as u8,
                        version: v.0,
                        key,
                    },
                    out,
                );
            }
        });
        self.snapshot_barriers(out);
    }

    /// Tombstones held and their bytes, and how far back (ms) every
    /// delete is remembered.
    pub fn tombstone_stats(&self) -> (usize, usize, u64) {
        self.expire_tombstones();
        let now = wall_unix_ms();
        let (mut len, mut bytes, mut horizon) = (0, 0, u64::MAX);
        self.tombs.each(|t| {
            len += t.len();
            bytes += t.bytes();
            horizon = horizon.min(t.horizon_ms(now));
        });
        (len, bytes, horizon)
    }

    /// Drops tombstones past `--tombstone-ttl` (also done on every new
    /// tombstone; this is for a node that deletes nothing more).
    pub fn expire_tombstones(&self) {
        self.tombs.expire(wall_unix_ms());
    }
}

fn itoa_buf(v: u64) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests;
