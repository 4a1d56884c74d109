//! The engine's replication hook points (issue #13, docs/REPLICATION.md):
//! turning CAS words into HLC versions, and storing a peer's item state
//! only if it is newer than what the key holds.
//!
//! Nothing here runs unless [`Engine::enable_versions`] was called, which
//! only replication does; until then `next_cas` is memcached's counter
//! and the request path is as it was (one branch on an unset cell per
//! write).

use crate::assoc::hash;
use crate::engine::Engine;
use crate::ops::StoreMode;
use crate::stats::ThreadStats;
use crate::version::{wall_unix_ms, Hlc, NodeId, SkewError, Version};

/// What applying a peer's write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Stored (or, for a delete, the older item removed): forward it.
    Applied,
    /// The key already holds this version or a newer one: drop it, do
    /// not forward it (what ends a write's trip round a ring or mesh).
    Stale,
    /// Past this node's `-I`.
    TooLarge,
    OutOfMemory,
    /// Versions are not on: the engine cannot order the write.
    NotEnabled,
    /// The version is too far ahead of our clock; nothing was changed.
    Skew(SkewError),
}

impl Engine {
    /// Makes every CAS from now on an HLC version of node `node`, resuming
    /// above the last CAS drawn. Call once, before any client or peer
    /// write; false if CAS is off (`-C`) or versions are on already.
    pub fn enable_versions(&self, node: NodeId) -> bool {
        if !self.cfg.use_cas {
            return false;
        }
        let resume = Version(self.cas_id.load(std::sync::atomic::Ordering::Relaxed));
        self.hlc.set(Hlc::new(node, resume)).is_ok()
    }

    /// The clock, when versions are on.
    pub fn versions(&self) -> Option<&Hlc> {
        self.hlc.get()
    }

    /// Stores a peer's item state (value, flags, absolute expiry in Unix
    /// seconds, 0 for never) under `version`, if that is newer than the
    /// live item's. The item keeps `version` as its CAS, so the merge is
    /// the same on every node. A version below the `flush_all` barrier is
    /// stored and at once invisible, as the barrier says.
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
        let Some(hlc) = self.hlc.get() else {
            return ApplyOutcome::NotEnabled;
        };
        if key.is_empty() || !self.item_size_ok(key.len(), flags, value.len()) {
            return ApplyOutcome::TooLarge;
        }
        if let Err(e) = hlc.observe(version, wall_unix_ms()) {
            return ApplyOutcome::Skew(e);
        }
        // Absolute times are always past memcached's 30-day relative
        // window, so `realtime` reads them as absolute; one before this
        // process started is already past, as for a client.
        let exp = match exptime_unix {
            0 => 0,
            t => self.clock.realtime(i64::try_from(t).unwrap_or(i64::MAX)),
        };
        let h = hash(key);
        // As `store`: allocate and copy before taking the shard lock.
        let Some((new_id, new)) = self.alloc_item(key, flags, exp, value.len()) else {
            return ApplyOutcome::OutOfMemory;
        };
        self.fill_value(new, &[value]);
        let mut slot = self.lock_hashed(key, h, ts);
        if slot.item().is_some_and(|i| i.cas() >= version.0) {
            drop(slot);
            self.free_item(new_id);
            return ApplyOutcome::Stale;
        }
        slot.link_whole(StoreMode::Set, new_id, 0, Some(version.0));
        ApplyOutcome::Applied
    }

    /// A `flush_all` barrier at `version` (a peer's, or this node's own
    /// once drawn): every item whose version is older is dead from now
    /// on, items written after it (newer versions, wherever they were
    /// drawn) stay. Only ever raises the barrier. The engine's time-based
    /// rule (`oldest_live`) is left as it was, except that it must be set
    /// for the version rule to be consulted at all.
    pub fn apply_flush(&self, version: Version) -> ApplyOutcome {
        use std::sync::atomic::Ordering::Relaxed;
        if self.hlc.get().is_none() {
            return ApplyOutcome::NotEnabled;
        }
        self.oldest_cas.fetch_max(version.0, Relaxed);
        // Relative time 1 is before any item's access time, so only the
        // version decides which items the barrier kills.
        let _ = self.oldest_live.compare_exchange(0, 1, Relaxed, Relaxed);
        ApplyOutcome::Applied
    }

    /// A peer's delete at `version`: removes the live item if it is older.
    /// The tombstone itself is the replication module's to keep.
    pub fn delete_versioned(&self, key: &[u8], version: Version, ts: &ThreadStats) -> ApplyOutcome {
        let Some(hlc) = self.hlc.get() else {
            return ApplyOutcome::NotEnabled;
        };
        if let Err(e) = hlc.observe(version, wall_unix_ms()) {
            return ApplyOutcome::Skew(e);
        }
        let mut slot = self.lock_key(key, ts);
        match slot.item().map(|i| i.cas()) {
            Some(cas) if cas >= version.0 => ApplyOutcome::Stale,
            Some(_) => {
                slot.delete();
                ApplyOutcome::Applied
            }
            // Nothing to remove; the tombstone still has to be kept and
            // forwarded, which is the caller's decision.
            None => ApplyOutcome::Applied,
        }
    }
}

#[cfg(test)]
mod tests;
