//! The tombstones of replication (docs/REPLICATION.md section 3) as the
//! node keeps them: 16 tables of `mnemo_engine::tombstones` by key, each
//! behind its own lock, with the horizon readable without one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use mnemo_engine::tombstones::Tombstones;
use mnemo_engine::version::Version;
use parking_lot::Mutex;

/// Shards of the tombstone table: every replicated write looks for a
/// tombstone to supersede, and workers must not all wait on one lock.
const TOMB_SHARDS: usize = 16;

/// One shard of the tombstones, with its count outside its lock, so that
/// the write path (which supersedes a tombstone on every write) takes no
/// lock while the shard holds none.
struct TombShard {
    inner: Mutex<Tombstones>,
    len: AtomicUsize,
}

/// The tombstones in [`TOMB_SHARDS`] shards by key, each with its share
/// of the memory bound.
pub(super) struct TombTable {
    shards: Box<[TombShard]>,
    /// The greatest `Tombstones::forgotten` of any shard, or learned from
    /// a peer, readable without a lock: every incoming write is checked
    /// against it.
    forgotten: AtomicU64,
}

impl TombTable {
    pub fn new(ttl_ms: u64, max_bytes: usize) -> TombTable {
        let share = max_bytes.div_ceil(TOMB_SHARDS);
        TombTable {
            shards: (0..TOMB_SHARDS)
                .map(|_| TombShard {
                    inner: Mutex::new(Tombstones::new(ttl_ms, share)),
                    len: AtomicUsize::new(0),
                })
                .collect(),
            forgotten: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8]) -> &TombShard {
        &self.shards[super::shard_of(key, TOMB_SHARDS)]
    }

    pub fn get(&self, key: &[u8]) -> Option<Version> {
        let sh = self.shard(key);
        if sh.len.load(Relaxed) == 0 {
            return None;
        }
        sh.inner.lock().get(key)
    }

    pub fn insert(&self, key: &[u8], version: Version, now_ms: u64) -> bool {
        let sh = self.shard(key);
        let mut t = sh.inner.lock();
        let r = t.insert(key, version, now_ms);
        self.publish(sh, &t);
        r
    }

    /// Under `sh`'s lock, after `t` changed: its count and the horizon.
    fn publish(&self, sh: &TombShard, t: &Tombstones) {
        sh.len.store(t.len(), Relaxed);
        self.forgotten.fetch_max(t.forgotten().0, Relaxed);
    }

    /// The greatest version of a delete forgotten here, 0 for none.
    pub fn forgotten(&self) -> u64 {
        self.forgotten.load(Relaxed)
    }

    pub fn learn_forgotten(&self, v: Version) {
        self.forgotten.fetch_max(v.0, Relaxed);
    }

    pub fn supersede(&self, key: &[u8], version: Version) {
        let sh = self.shard(key);
        if sh.len.load(Relaxed) == 0 {
            return;
        }
        let mut t = sh.inner.lock();
        t.supersede(key, version);
        self.publish(sh, &t);
    }

    pub fn expire(&self, now_ms: u64) {
        for sh in self.shards.iter().filter(|sh| sh.len.load(Relaxed) > 0) {
            let mut t = sh.inner.lock();
            t.expire(now_ms);
            self.publish(sh, &t);
        }
    }

    /// Calls `f` with each shard's tombstones, under its lock in turn.
    pub fn each(&self, mut f: impl FnMut(&Tombstones)) {
        for sh in self.shards.iter() {
            f(&sh.inner.lock());
        }
    }
}
