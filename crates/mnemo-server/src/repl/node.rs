//! One node's replication state and its apply rule, without the link:
//! local writes become versioned frames in the node's backlog, and a
//! peer's frame is merged into the engine and the tombstones and, only
//! if it changed something, forwarded through the backlog (which is what
//! keeps a write from looping). The link will move frames between
//! backlogs; the tests here move them by hand, in any order, over a mesh
//! and a ring, and check that every node converges on "newest wins".
//!
//! Covered so far: SET and DELETE. FLUSH and COUNTER frames are refused
//! (`ApplyError::Unsupported`) until their engine paths exist.

// Nothing outside the tests calls this until the link exists; replication
// options are refused on the command line meanwhile.
#![cfg_attr(not(test), allow(dead_code))]

use std::sync::Arc;

use mnemo_engine::tombstones::Tombstones;
use mnemo_engine::version::{wall_unix_ms, NodeId, Version};
use mnemo_engine::{ApplyOutcome, Engine, StoreMode, StoreOutcome, ThreadStats};
use mnemo_protocol::repl::backlog::Backlog;
use mnemo_protocol::repl::{encode, Record};
use parking_lot::Mutex;

/// Why a peer's frame was not applied; the link logs it and closes.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// A frame kind this build does not apply yet.
    Unsupported,
    /// The engine refused it (too large, out of memory, clock skew).
    Engine(ApplyOutcome),
}

pub struct Node {
    id: NodeId,
    engine: Arc<Engine>,
    ts: Arc<ThreadStats>,
    tombs: Mutex<Tombstones>,
    backlog: Mutex<Backlog>,
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
        let ts = engine.new_thread_stats();
        Some(Node {
            id,
            engine,
            ts,
            tombs: Mutex::new(Tombstones::new(tombstone_ttl_ms, tombstone_bytes)),
            backlog: Mutex::new(Backlog::new(replid, backlog_bytes)),
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn backlog(&self) -> &Mutex<Backlog> {
        &self.backlog
    }

    fn log(&self, rec: &Record<'_>) {
        let mut frame = Vec::new();
        // Our own records: node id from the version, key and value within
        // the engine's limits, so encoding cannot fail; if it somehow did,
        // the frame is skipped rather than the write refused (peers then
        // converge on a later write or a full resync).
        if encode(rec, &mut frame).is_ok() {
            self.backlog.lock().append(&frame);
        }
    }

    /// A client's `set` on this node; its version, or None if the engine
    /// did not store it.
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
        let version = Version(cas);
        self.tombs.lock().supersede(key, version);
        self.log(&Record::Set {
            origin: self.id.get(),
            version: version.0,
            key,
            flags,
            exptime: exptime_unix,
            value,
        });
        Some(version)
    }

    /// A client's `delete` on this node: a tombstone if the key was there.
    /// The version is drawn under the key's lock, so no write to the key
    /// can fall between the delete and its version.
    pub fn local_delete(&self, key: &[u8]) -> Option<Version> {
        let mut slot = self.engine.lock_key(key, &self.ts);
        if !slot.exists() {
            slot.count_delete_miss();
            return None;
        }
        let version = Version(slot.next_cas());
        slot.delete();
        drop(slot);
        self.tombs.lock().insert(key, version, wall_unix_ms());
        self.log(&Record::Delete {
            origin: self.id.get(),
            version: version.0,
            key,
        });
        Some(version)
    }

    /// Merges a peer's frame. Ok(true): it changed this node and was
    /// forwarded; Ok(false): already known (or our own, come back round).
    pub fn apply(&self, rec: &Record<'_>) -> Result<bool, ApplyError> {
        if rec.origin() == self.id.get() {
            return Ok(false);
        }
        let version = Version(rec.version());
        match *rec {
            Record::Set {
                key,
                flags,
                exptime,
                value,
                ..
            } => {
                if self.tombs.lock().get(key).is_some_and(|t| t >= version) {
                    return Ok(false);
                }
                match self
                    .engine
                    .apply_versioned(key, version, flags, exptime, value, &self.ts)
                {
                    ApplyOutcome::Applied => {
                        self.tombs.lock().supersede(key, version);
                        self.log(rec);
                        Ok(true)
                    }
                    ApplyOutcome::Stale => Ok(false),
                    other => Err(ApplyError::Engine(other)),
                }
            }
            Record::Delete { key, .. } => {
                match self.engine.delete_versioned(key, version, &self.ts) {
                    // A newer item: the delete lost.
                    ApplyOutcome::Stale => Ok(false),
                    ApplyOutcome::Applied => {
                        // Older item removed, or none: the tombstone
                        // decides whether this is news.
                        if self.tombs.lock().insert(key, version, wall_unix_ms()) {
                            self.log(rec);
                            Ok(true)
                        } else {
                            Ok(false)
                        }
                    }
                    other => Err(ApplyError::Engine(other)),
                }
            }
            // Link-level frames carry no state.
            Record::Ping { .. } | Record::Ack { .. } => Ok(false),
            Record::Flush { .. } | Record::Counter { .. } => Err(ApplyError::Unsupported),
        }
    }
}

#[cfg(test)]
mod tests;
