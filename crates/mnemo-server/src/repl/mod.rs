//! Active-active replication between mnemo servers (issue #13). The
//! design is docs/REPLICATION.md; the pure parts live in the engine
//! (`version`, `counter`, `tombstones`, `apply`) and the protocol crate
//! (`repl`). This module is the server's side:
//!
//! - `node`, `counters`, `flush`: a node's apply rule over engine,
//!   tombstones, counters, barriers and backlog, and the recording of
//!   client writes;
//! - `hooks`: the out-of-line calls the protocol paths make after a write
//!   when replication is on (one untaken branch per write when it is off);
//! - `link`: one thread per `--peer`, pulling that peer's stream;
//! - `sender`: one thread per peer that pulls from us (a client
//!   connection that sent `mn_repl HELLO`), with the full resync;
//! - `stats`: `stats replication`;
//! - `options`: the command line.

pub mod counters;
pub mod flush;
pub mod hooks;
pub mod link;
pub mod node;
pub mod options;
pub mod sender;
pub mod stats;
mod tombs;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use mnemo_engine::version::NodeId;
use mnemo_engine::Engine;
use parking_lot::Mutex;

use node::Node;
use options::{PeerAddr, ReplSettings};

/// Which of `n` (at most 2^16) shards of a side table (tombstones,
/// counters) `key` is in: FNV-1a, then a Fibonacci multiply, whose top
/// bits are the shard. (FNV-1a's own high bits barely depend on a key's
/// last bytes: "d0" to "d999" fell 99% into one shard of 16.)
pub(crate) fn shard_of(key: &[u8], n: usize) -> usize {
    let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    ((h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as usize * n) >> 16
}

#[cfg(test)]
mod tests {
    /// Keys that differ only in their last characters, as most do,
    /// spread evenly over the shards.
    #[test]
    fn keys_spread_over_the_shards() {
        for pattern in ["d", "key:", "user:42:session:"] {
            let mut count = [0usize; 16];
            for i in 0..16_000 {
                count[super::shard_of(format!("{pattern}{i}").as_bytes(), 16)] += 1;
            }
            let (lo, hi) = (count.iter().min(), count.iter().max());
            assert!(
                lo.is_some_and(|&l| l > 800) && hi.is_some_and(|&h| h < 1200),
                "{pattern}: {count:?}"
            );
        }
    }
}

/// A HELLO a client connection sent, as the worker hands the
/// connection to a sender thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub hello: mnemo_protocol::repl::hello::Hello,
    /// A binary HELLO (under `-S`): the request's opaque, for the
    /// binary response that carries the answer line.
    pub binary_opaque: Option<u32>,
}

/// A link's state, as `stats replication` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    Connecting = 0,
    Handshake,
    FullResync,
    Streaming,
    Down,
}

impl LinkState {
    pub fn text(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::FullResync => "full_resync",
            LinkState::Streaming => "streaming",
            LinkState::Down => "down",
        }
    }

    fn from_u8(v: u8) -> LinkState {
        match v {
            0 => LinkState::Connecting,
            1 => LinkState::Handshake,
            2 => LinkState::FullResync,
            3 => LinkState::Streaming,
            _ => LinkState::Down,
        }
    }
}

/// Counters of one link, either side; written by its thread only.
#[derive(Default)]
pub struct LinkStats {
    state: AtomicU8,
    pub node_id: AtomicU8,
    pub lag_ops: AtomicU64,
    pub lag_ms: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub partial_resyncs: AtomicU64,
    pub full_resyncs: AtomicU64,
    /// Frames that changed this node (receiving side).
    pub applied: AtomicU64,
    /// Frames already known here (receiving side).
    pub ignored: AtomicU64,
}

impl LinkStats {
    pub fn set_state(&self, s: LinkState) {
        self.state.store(s as u8, Relaxed);
    }

    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Relaxed))
    }
}

/// One `--peer`: the link that pulls its stream.
pub struct Peer {
    pub addr: PeerAddr,
    pub stats: LinkStats,
}

/// A peer pulling from us, for `stats replication`.
pub struct Replica {
    /// The connection's address (`tcp:127.0.0.1:5000`).
    pub addr: String,
    pub stats: LinkStats,
}

pub struct Repl {
    pub node: Node,
    pub settings: ReplSettings,
    pub peers: Vec<Arc<Peer>>,
    pub replicas: Mutex<Vec<Arc<Replica>>>,
    /// The largest value this node stores (`-I`): frames are bounded by it.
    pub max_value: usize,
}

/// A random 64-bit stream id, never 0 (0 means "no stream followed").
fn draw_replid() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(mnemo_engine::version::wall_unix_ms());
    h.write_u32(std::process::id());
    h.finish().max(1)
}

impl Repl {
    /// Turns versions on in `engine`; None if it cannot carry them.
    pub fn new(settings: ReplSettings, engine: Arc<Engine>) -> Option<Repl> {
        let id = NodeId::new(settings.node_id)?;
        let max_value = engine.config().item_size_max;
        let node = Node::new(
            id,
            engine,
            draw_replid(),
            settings.backlog_bytes,
            settings.tombstone_ttl_s.saturating_mul(1000),
            settings.tombstone_bytes,
        )?;
        let peers = settings
            .peers
            .iter()
            .map(|a| {
                Arc::new(Peer {
                    addr: a.clone(),
                    stats: LinkStats::default(),
                })
            })
            .collect();
        Some(Repl {
            node,
            settings,
            peers,
            replicas: Mutex::new(Vec::new()),
            max_value,
        })
    }
}
