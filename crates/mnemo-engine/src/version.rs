//! Versions for replication (issue #13, docs/REPLICATION.md): a hybrid
//! logical clock packed into the 64-bit CAS word, and the merge rule
//! "newest version wins" over item states.
//!
//! Pure: the wall clock is passed in, so skew and clocks going backwards
//! are tested by handing in whatever time a test likes. Nothing here is
//! used unless replication is on; without `--peer` the CAS stays
//! memcached's plain counter.
//!
//! Layout, high to low bits: 41 bits of milliseconds since
//! [`EPOCH_UNIX_MS`], 15 bits of logical counter, 8 bits of node id. The
//! node id in the low bits makes versions unique across nodes while
//! leaving the order decided by time and counter.

use std::sync::atomic::{AtomicU64, Ordering};

/// 2024-01-01T00:00:00Z: 41 bits of milliseconds from here last to 2093.
pub const EPOCH_UNIX_MS: u64 = 1_704_067_200_000;
/// Bits of node id at the bottom of a version.
pub const NODE_BITS: u32 = 8;
/// Bits of logical counter above the node id.
pub const COUNTER_BITS: u32 = 15;
/// Bits of milliseconds at the top.
pub const TIME_BITS: u32 = 64 - NODE_BITS - COUNTER_BITS;
/// Largest logical counter; one more and the clock's time part advances.
pub const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
/// Largest time part.
pub const TIME_MAX: u64 = (1 << TIME_BITS) - 1;
/// How far ahead of our wall clock a peer's version may be. Further, and
/// one bad clock (or a forged record) would win every later conflict.
pub const MAX_DRIFT_MS: u64 = 60_000;

/// A node's id on replication links, 1..=255: 0 means "replication off"
/// and is what a version with no node in it would carry, so it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u8);

impl NodeId {
    /// `None` for 0.
    pub fn new(id: u8) -> Option<NodeId> {
        (id != 0).then_some(NodeId(id))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// An item's version; ordered as the u64 it is, which orders by time,
/// then counter, then node id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

impl Version {
    pub fn pack(ms: u64, counter: u64, node: NodeId) -> Version {
        Version(
            (ms.min(TIME_MAX) << (COUNTER_BITS + NODE_BITS))
                | (counter.min(COUNTER_MAX) << NODE_BITS)
                | u64::from(node.0),
        )
    }

    /// Milliseconds since [`EPOCH_UNIX_MS`].
    pub fn ms(self) -> u64 {
        self.0 >> (COUNTER_BITS + NODE_BITS)
    }

    pub fn counter(self) -> u64 {
        (self.0 >> NODE_BITS) & COUNTER_MAX
    }

    /// The node that drew this version; `None` if the id bits are 0,
    /// which no node draws.
    pub fn node(self) -> Option<NodeId> {
        NodeId::new(self.0 as u8)
    }

    /// Time and counter only: what the clock orders by.
    fn logical(self) -> u64 {
        self.0 >> NODE_BITS
    }
}

/// A peer's version too far in our future.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkewError {
    /// By how much the version is ahead of our wall clock, in ms.
    pub ahead_ms: u64,
}

impl std::fmt::Display for SkewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peer version {} ms ahead of our clock (limit {MAX_DRIFT_MS} ms)",
            self.ahead_ms
        )
    }
}

/// The wall clock in Unix milliseconds; 0 if it reads before 1970.
pub fn wall_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Wall-clock Unix milliseconds as a version's time part.
fn wall_part(wall_unix_ms: u64) -> u64 {
    wall_unix_ms.saturating_sub(EPOCH_UNIX_MS).min(TIME_MAX)
}

/// A node's hybrid logical clock. Draws happen under different shard
/// locks at once, so the last version is one atomic word advanced by
/// compare-exchange; no lock.
#[derive(Debug)]
pub struct Hlc {
    node: NodeId,
    /// Time and counter of the greatest version drawn or observed, in
    /// [`Version::logical`] form.
    last: AtomicU64,
}

impl Hlc {
    /// A clock that will draw only versions above `resume` (the CAS word a
    /// warm restart saved, or 0).
    pub fn new(node: NodeId, resume: Version) -> Hlc {
        Hlc {
            node,
            last: AtomicU64::new(resume.logical()),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The next version: above every version this clock drew or observed,
    /// and as close to the wall clock as that allows. A wall clock going
    /// backwards only makes the counter go on from where it was.
    pub fn next(&self, wall_unix_ms: u64) -> Version {
        let wall = wall_part(wall_unix_ms) << COUNTER_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // `last + 1` carries a full counter into the time part, which
            // is the "run ahead of the wall, let it catch up" rule. At the
            // very end of time (2093) the clock stops advancing.
            let next = wall.max(last.saturating_add(1)).min(u64::MAX >> NODE_BITS);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Version((next << NODE_BITS) | u64::from(self.node.0)),
                Err(seen) => last = seen,
            }
        }
    }

    /// Takes in a version applied from a peer, so that every later local
    /// draw is newer than it. Refuses one too far in the future, leaving
    /// the clock as it was.
    pub fn observe(&self, remote: Version, wall_unix_ms: u64) -> Result<(), SkewError> {
        let wall = wall_part(wall_unix_ms);
        if remote.ms() > wall.saturating_add(MAX_DRIFT_MS) {
            return Err(SkewError {
                ahead_ms: remote.ms() - wall,
            });
        }
        self.last.fetch_max(remote.logical(), Ordering::Relaxed);
        Ok(())
    }

    /// The greatest version drawn or observed, with our node id.
    pub fn last(&self) -> Version {
        Version((self.last.load(Ordering::Relaxed) << NODE_BITS) | u64::from(self.node.0))
    }
}

/// One key's replicated state. The field order is the merge order: the
/// version decides, and since versions are unique per write the rest only
/// makes the order total, so two entries a bug or a forger gave the same
/// version still merge the same way everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry<'a> {
    pub version: Version,
    /// A delete: the key is absent as of `version`.
    pub tombstone: bool,
    /// Absolute Unix seconds, 0 for never; replicas expire by it alone.
    pub expiry: u64,
    pub flags: u32,
    pub value: &'a [u8],
}

impl<'a> Entry<'a> {
    pub fn tombstone(version: Version) -> Entry<'a> {
        Entry {
            version,
            tombstone: true,
            expiry: 0,
            flags: 0,
            value: &[],
        }
    }

    /// Whether a `flush_all` barrier (the greatest one seen) kills it.
    pub fn flushed_by(&self, barrier: Version) -> bool {
        self.version < barrier
    }
}

/// Newest wins: the greater of two states. Maximum under a total order,
/// hence commutative, associative and idempotent: any delivery order,
/// duplicates included, converges.
pub fn merge<'a>(a: Entry<'a>, b: Entry<'a>) -> Entry<'a> {
    a.max(b)
}

/// Whether `incoming` replaces what a node holds (`None`: nothing, not
/// even a tombstone). Only a replacement is applied and forwarded, which
/// is what stops a write from looping round a ring or mesh.
pub fn replaces(incoming: &Entry<'_>, current: Option<&Entry<'_>>) -> bool {
    match current {
        None => true,
        Some(c) => incoming > c,
    }
}

#[cfg(test)]
mod tests;
