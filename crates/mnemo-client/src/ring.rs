//! Server placement: ketama (weighted, as libmemcached's KETAMA_WEIGHTED and
//! twemproxy compute it), modula and random, plus the key hashing and hash
//! tags that twemproxy applies before dispatching.

use crate::hash::{md5_digest_word, Hash};
use md5::{Digest, Md5};
use std::cell::Cell;

/// Points per server for an average weight; each MD5 gives 4 of them.
const POINTS_PER_SERVER: u32 = 160;
const POINTS_PER_HASH: u32 = 4;

/// How keys are spread over servers (`distribution:` in twemproxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    Ketama,
    Modula,
    Random,
}

impl Distribution {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "ketama" => Some(Distribution::Ketama),
            "modula" => Some(Distribution::Modula),
            "random" => Some(Distribution::Random),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ketama => "ketama",
            Distribution::Modula => "modula",
            Distribution::Random => "random",
        }
    }
}

/// A server as the ring sees it: the string its points are derived from and
/// its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub weight: u32,
}

/// The ketama identity of a server: libmemcached and twemproxy leave the port
/// out when it is memcached's default, so a farm keeps its placement whether
/// or not the port is spelled out.
pub fn ketama_name(host: &str, port: u16) -> String {
    if port == 11211 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

#[derive(Debug, Clone, Copy)]
struct Point {
    value: u32,
    server: u32,
}

/// A continuum built over the live servers of a pool.
#[derive(Debug, Clone)]
pub struct Ring {
    dist: Distribution,
    points: Vec<Point>,
}

impl Ring {
    /// Build the ring over the servers for which `live(i)` is true; indices
    /// returned by [`Ring::dispatch`] index `nodes`.
    pub fn new(dist: Distribution, nodes: &[Node], live: impl Fn(usize) -> bool) -> Ring {
        let mut points = Vec::new();
        let live_idx: Vec<usize> = (0..nodes.len()).filter(|&i| live(i)).collect();
        match dist {
            Distribution::Ketama => {
                let total: u32 = live_idx.iter().map(|&i| nodes[i].weight).sum();
                let nlive = live_idx.len() as f32;
                for &i in &live_idx {
                    let n = &nodes[i];
                    // The float steps below mirror the C expression exactly
                    // (float division, then a double add, then floorf), since
                    // a different rounding moves points and therefore keys.
                    let pct = n.weight as f32 / total as f32;
                    let scaled = pct * POINTS_PER_SERVER as f32 / 4.0 * nlive;
                    let per_server = ((scaled as f64 + 0.000_000_000_1) as f32).floor() as u32 * 4;
                    let mut label = Vec::with_capacity(n.name.len() + 11);
                    for h in 0..per_server / POINTS_PER_HASH {
                        label.clear();
                        label.extend_from_slice(n.name.as_bytes());
                        label.push(b'-');
                        label.extend_from_slice(h.to_string().as_bytes());
                        let d = Md5::digest(&label);
                        for a in 0..POINTS_PER_HASH as usize {
                            points.push(Point {
                                value: md5_digest_word(&d, a),
                                server: i as u32,
                            });
                        }
                    }
                }
                points.sort_by_key(|p| p.value);
            }
            Distribution::Modula => {
                // One slot per unit of weight. twemproxy lays the slots out
                // in the order its config validation leaves the servers:
                // sorted by name, shorter names first, then bytewise.
                let mut order = live_idx.clone();
                order.sort_by(|&a, &b| {
                    let (x, y) = (nodes[a].name.as_bytes(), nodes[b].name.as_bytes());
                    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                });
                for &i in &order {
                    for _ in 0..nodes[i].weight {
                        points.push(Point {
                            value: 0,
                            server: i as u32,
                        });
                    }
                }
            }
            Distribution::Random => {
                for &i in &live_idx {
                    points.push(Point {
                        value: 0,
                        server: i as u32,
                    });
                }
            }
        }
        Ring { dist, points }
    }

    pub fn distribution(&self) -> Distribution {
        self.dist
    }

    /// True when no server is live.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The server for a key hash, or None when no server is live.
    pub fn dispatch(&self, hash: u32) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = match self.dist {
            Distribution::Ketama => {
                // First point at or after the hash, wrapping to the start.
                let i = self.points.partition_point(|p| p.value < hash);
                if i == self.points.len() {
                    0
                } else {
                    i
                }
            }
            Distribution::Modula => hash as usize % self.points.len(),
            Distribution::Random => next_random() as usize % self.points.len(),
        };
        Some(self.points[i].server as usize)
    }

    /// Up to `n` distinct servers for a key hash: the one [`Ring::dispatch`]
    /// picks, then the next distinct ones walking the continuum clockwise
    /// (the next slots for modula and random), as replicated and
    /// erasure-coded placement needs. Fewer when fewer servers are live.
    pub fn walk(&self, hash: u32, n: usize, out: &mut Vec<usize>) {
        out.clear();
        if self.points.is_empty() || n == 0 {
            return;
        }
        let len = self.points.len();
        let start = match self.dist {
            Distribution::Ketama => {
                let i = self.points.partition_point(|p| p.value < hash);
                if i == len {
                    0
                } else {
                    i
                }
            }
            Distribution::Modula => hash as usize % len,
            Distribution::Random => next_random() as usize % len,
        };
        for step in 0..len {
            let s = self.points[(start + step) % len].server as usize;
            if !out.contains(&s) {
                out.push(s);
                if out.len() == n {
                    break;
                }
            }
        }
    }

    /// The continuum point a hash lands on (ketama only; for tests and
    /// diagnostics).
    pub fn point_for(&self, hash: u32) -> Option<u32> {
        if self.dist != Distribution::Ketama || self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|p| p.value < hash);
        Some(self.points[if i == self.points.len() { 0 } else { i }].value)
    }

    /// Number of points (ketama), slots (modula) or servers (random).
    pub fn len(&self) -> usize {
        self.points.len()
    }
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// xorshift64*, seeded per thread from the clock and the thread's stack
/// address; random placement needs spread, not cryptographic quality.
fn next_random() -> u32 {
    RNG.with(|s| {
        let mut x = s.get();
        if x == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            x = t ^ (&x as *const u64 as u64) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    })
}

/// A pool's whole placement function: key hash, optional hash tag and ring.
#[derive(Debug, Clone)]
pub struct Placement {
    hash: Hash,
    tag: Option<[u8; 2]>,
    nodes: Vec<Node>,
    ring: Ring,
}

impl Placement {
    /// All servers live.
    pub fn new(hash: Hash, dist: Distribution, tag: Option<[u8; 2]>, nodes: Vec<Node>) -> Self {
        let ring = Ring::new(dist, &nodes, |_| true);
        Placement {
            hash,
            tag,
            nodes,
            ring,
        }
    }

    /// Rebuild over the servers for which `live(i)` is true, as twemproxy and
    /// libmemcached do when a server is ejected or comes back.
    pub fn rebuild(&mut self, live: impl Fn(usize) -> bool) {
        self.ring = Ring::new(self.ring.distribution(), &self.nodes, live);
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn hash_kind(&self) -> Hash {
        self.hash
    }

    /// The part of `key` that is hashed: between the two hash-tag
    /// characters when both are present with something between them.
    pub fn hashed_part<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        if let Some([open, close]) = self.tag {
            if let Some(s) = memchr_byte(open, key) {
                if let Some(e) = memchr_byte(close, &key[s + 1..]) {
                    if e > 0 {
                        return &key[s + 1..s + 1 + e];
                    }
                }
            }
        }
        key
    }

    /// The key's hash as twemproxy computes it (empty keys hash to 0).
    pub fn key_hash(&self, key: &[u8]) -> u32 {
        let k = self.hashed_part(key);
        if k.is_empty() {
            0
        } else {
            self.hash.hash(k)
        }
    }

    /// Up to `n` distinct servers for `key`, the first being
    /// [`Placement::server_for`]'s (see [`Ring::walk`]).
    pub fn servers_for(&self, key: &[u8], n: usize, out: &mut Vec<usize>) {
        self.ring.walk(self.key_hash(key), n, out);
    }

    /// The server index for `key`, or None if no server is live. A pool of
    /// one server always answers that server, as twemproxy does.
    pub fn server_for(&self, key: &[u8]) -> Option<usize> {
        if self.nodes.len() == 1 {
            return Some(0);
        }
        self.ring.dispatch(self.key_hash(key))
    }
}

fn memchr_byte(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_gives_distinct_servers_starting_at_the_dispatched_one() {
        let nodes = vector_pool();
        for dist in [Distribution::Ketama, Distribution::Modula] {
            let p = Placement::new(Hash::Fnv1a_64, dist, None, nodes.clone());
            let mut out = Vec::new();
            for i in 0..500u32 {
                let key = format!("key:{i}");
                p.servers_for(key.as_bytes(), 5, &mut out);
                assert_eq!(out.len(), 5);
                assert_eq!(Some(out[0]), p.server_for(key.as_bytes()));
                let mut d = out.clone();
                d.sort_unstable();
                d.dedup();
                assert_eq!(d.len(), 5, "{out:?}");
            }
            p.servers_for(b"k", 100, &mut out);
            assert_eq!(out.len(), nodes.len());
        }
        let mut p = Placement::new(Hash::Fnv1a_64, Distribution::Ketama, None, nodes.clone());
        p.rebuild(|i| i < 2);
        let mut out = Vec::new();
        p.servers_for(b"k", 5, &mut out);
        assert_eq!(out.len(), 2);
        // Walking clockwise is stable: the first 3 of a 5-walk are a 3-walk.
        let p = Placement::new(Hash::Fnv1a_64, Distribution::Ketama, None, nodes);
        let mut three = Vec::new();
        p.servers_for(b"stable", 5, &mut out);
        p.servers_for(b"stable", 3, &mut three);
        assert_eq!(&out[..3], &three[..]);
    }

    fn vector_pool() -> Vec<Node> {
        let weights = [600, 300, 200, 350, 1000, 800, 950, 100];
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Node {
                name: ketama_name(&format!("10.0.1.{}", i + 1), 11211),
                weight: w,
            })
            .collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// All 99 libmemcached KETAMA_WEIGHTED vectors: key hash, the continuum
    /// point it lands on, and the server.
    #[test]
    fn ketama_weighted_vectors() {
        let tsv = include_str!("../tests/ketama-weighted-vectors.tsv");
        let p = Placement::new(Hash::Md5, Distribution::Ketama, None, vector_pool());
        let mut n = 0;
        for line in tsv.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 4, "{line}");
            let key = unhex(f[0]);
            let hash: u32 = f[1].parse().expect("hash");
            let point: u32 = f[2].parse().expect("point");
            assert_eq!(p.key_hash(&key), hash, "{line}");
            assert_eq!(p.ring().point_for(hash), Some(point), "{line}");
            let s = p.server_for(&key).expect("live");
            assert_eq!(p.nodes()[s].name, f[3], "{line}");
            n += 1;
        }
        assert_eq!(n, 99);
    }

    #[test]
    fn ketama_point_counts() {
        // 8 servers: 160*8 points in total before flooring; each server gets
        // a multiple of 4 proportional to its weight.
        let r = Ring::new(Distribution::Ketama, &vector_pool(), |_| true);
        assert!(r.len() <= 160 * 8 && r.len() > 160 * 7, "{}", r.len());
        assert_eq!(r.len() % 4, 0);
        let equal: Vec<Node> = (0..3)
            .map(|i| Node {
                name: format!("h{i}"),
                weight: 1,
            })
            .collect();
        assert_eq!(Ring::new(Distribution::Ketama, &equal, |_| true).len(), 480);
    }

    #[test]
    fn ejection_moves_only_the_dead_servers_keys() {
        let mut p = Placement::new(Hash::Fnv1a_64, Distribution::Ketama, None, vector_pool());
        let keys: Vec<String> = (0..2000).map(|i| format!("key:{i}")).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| p.server_for(k.as_bytes()).unwrap())
            .collect();
        p.rebuild(|i| i != 4);
        for k in &keys {
            assert_ne!(p.server_for(k.as_bytes()), Some(4));
        }
        // Weights are renormalised over the live servers, so a few keys move
        // between live servers too; most must stay.
        let stayed = keys
            .iter()
            .zip(&before)
            .filter(|(k, &b)| b != 4 && p.server_for(k.as_bytes()) == Some(b))
            .count();
        let alive = before.iter().filter(|&&b| b != 4).count();
        assert!(stayed * 10 >= alive * 8, "{stayed} of {alive}");
        p.rebuild(|_| true);
        for (k, &b) in keys.iter().zip(&before) {
            assert_eq!(p.server_for(k.as_bytes()), Some(b));
        }
        p.rebuild(|_| false);
        assert_eq!(p.server_for(b"x"), None);
    }

    #[test]
    fn modula_and_random() {
        let nodes = vec![
            Node {
                name: "a".into(),
                weight: 1,
            },
            Node {
                name: "b".into(),
                weight: 2,
            },
        ];
        let p = Placement::new(Hash::Crc32a, Distribution::Modula, None, nodes.clone());
        for k in ["x", "y", "zz", "key:77"] {
            let h = Hash::Crc32a.hash(k.as_bytes());
            let want = if h.is_multiple_of(3) { 0 } else { 1 };
            assert_eq!(p.server_for(k.as_bytes()), Some(want));
        }
        let p = Placement::new(Hash::Md5, Distribution::Random, None, nodes);
        let mut seen = [0; 2];
        for _ in 0..200 {
            seen[p.server_for(b"k").unwrap()] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn modula_slots_follow_twemproxys_name_order() {
        // Listed b:2 then aa:1; twemproxy orders by (length, bytes): b, aa.
        let nodes = vec![
            Node {
                name: "aa".into(),
                weight: 1,
            },
            Node {
                name: "b".into(),
                weight: 2,
            },
        ];
        let r = Ring::new(Distribution::Modula, &nodes, |_| true);
        assert_eq!(r.dispatch(0), Some(1));
        assert_eq!(r.dispatch(1), Some(1));
        assert_eq!(r.dispatch(2), Some(0));
    }

    #[test]
    fn hash_tags() {
        let nodes: Vec<Node> = (0..5)
            .map(|i| Node {
                name: format!("s{i}"),
                weight: 1,
            })
            .collect();
        let p = Placement::new(Hash::Fnv1a_64, Distribution::Ketama, Some(*b"{}"), nodes);
        assert_eq!(p.hashed_part(b"user:{42}:name"), b"42");
        assert_eq!(p.hashed_part(b"user:{}:name"), b"user:{}:name");
        assert_eq!(p.hashed_part(b"user:{42"), b"user:{42");
        for i in 0..50 {
            let a = format!("a{i}:{{tag}}");
            assert_eq!(p.server_for(a.as_bytes()), p.server_for(b"tag"));
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn nodes(ws: &[u32]) -> Vec<Node> {
            ws.iter()
                .enumerate()
                .map(|(i, &w)| Node {
                    name: format!("10.1.{}.{}:{}", i / 250, i % 250, 11000 + i),
                    weight: w,
                })
                .collect()
        }

        proptest! {
            // Every key lands on a live server, whatever the weights, the
            // distribution and the set of live servers.
            #[test]
            fn dispatch_only_to_live_servers(
                ws in proptest::collection::vec(1u32..1000, 1..12),
                dead in proptest::collection::vec(any::<bool>(), 12),
                keys in proptest::collection::vec("[a-z0-9:]{1,40}", 1..50),
                dist in prop_oneof![Just(Distribution::Ketama), Just(Distribution::Modula), Just(Distribution::Random)],
            ) {
                let n = nodes(&ws);
                let live = |i: usize| !dead[i];
                let ring = Ring::new(dist, &n, live);
                let any_live = (0..n.len()).any(live);
                prop_assert_eq!(ring.is_empty(), !any_live);
                for k in &keys {
                    match ring.dispatch(Hash::Md5.hash(k.as_bytes())) {
                        Some(s) => prop_assert!(s < n.len() && live(s)),
                        None => prop_assert!(!any_live),
                    }
                }
            }

            // Ketama: each server owns a multiple of 4 points, its share of
            // 160 points per server rounded down to a multiple of 4.
            #[test]
            fn ketama_points_follow_weights(ws in proptest::collection::vec(1u32..100, 2..10)) {
                let n = nodes(&ws);
                let ring = Ring::new(Distribution::Ketama, &n, |_| true);
                let total: u32 = ws.iter().sum();
                let mut owned = vec![0usize; n.len()];
                for p in &ring.points {
                    owned[p.server as usize] += 1;
                }
                for (i, &w) in ws.iter().enumerate() {
                    prop_assert_eq!(owned[i] % 4, 0);
                    let share = f64::from(w) / f64::from(total) * 160.0 * n.len() as f64;
                    prop_assert!((owned[i] as f64) <= share + 1e-6 && (owned[i] as f64) > share - 4.0 - 1e-6,
                        "server {} weight {} owns {} for a share of {}", i, w, owned[i], share);
                }
            }
        }
    }
}
