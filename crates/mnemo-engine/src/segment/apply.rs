//! Replication's hooks (docs/REPLICATION.md), as the slab engine's
//! `apply.rs`: with versions on, every CAS is an HLC version, and a
//! peer's write is stored only if newer than what the key holds.

use super::SegmentEngine;
use crate::apply::ApplyOutcome;
use crate::ops::StoreMode;
use crate::stats::ThreadStats;
use crate::version::{wall_unix_ms, Hlc, NodeId, Version};

impl SegmentEngine {
    /// Makes every CAS from now on an HLC version of node `node`; false
    /// under `-C` or when already on.
    pub fn enable_versions(&self, node: NodeId) -> bool {
        if !self.cfg.use_cas {
            return false;
        }
        let resume = Version(self.cas_id.load(std::sync::atomic::Ordering::Relaxed));
        self.hlc.set(Hlc::new(node, resume)).is_ok()
    }

    pub fn versions(&self) -> Option<&Hlc> {
        self.hlc.get()
    }

    /// Stores a peer's item state under `version` if newer than the live
    /// item's (see the slab engine's `apply_versioned`).
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
        let exp = match exptime_unix {
            0 => 0,
            t => self.clock.realtime(i64::try_from(t).unwrap_or(i64::MAX)),
        };
        let Some(sp) = self.alloc(key, flags, exp, value.len(), true) else {
            return ApplyOutcome::OutOfMemory;
        };
        self.fill(sp, &[value]);
        let mut slot = self.lock_key(key, ts);
        if slot.item().is_some_and(|i| i.cas() >= version.0) {
            drop(slot);
            self.abandon(sp);
            return ApplyOutcome::Stale;
        }
        slot.link_whole(StoreMode::Set, sp, 0, Some(version.0));
        ApplyOutcome::Applied
    }

    /// A `flush_all` barrier at `version`, as the slab engine's
    /// `apply_flush`: objects of older versions are dead from now on; the
    /// barrier only rises, and the time rule is set to relative second 1
    /// only so that the version rule is consulted at all.
    pub fn apply_flush(&self, version: Version) -> ApplyOutcome {
        use std::sync::atomic::Ordering::Relaxed;
        if self.hlc.get().is_none() {
            return ApplyOutcome::NotEnabled;
        }
        self.oldest_cas.fetch_max(version.0, Relaxed);
        let _ = self.oldest_live.compare_exchange(0, 1, Relaxed, Relaxed);
        ApplyOutcome::Applied
    }

    /// A peer's delete at `version`: removes the live item if older.
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
            None => ApplyOutcome::Applied,
        }
    }
}
