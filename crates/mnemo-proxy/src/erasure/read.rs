//! Reading one key from its K+M servers: what each server answered, when
//! enough has come in to answer the client, which version wins, and which
//! servers then need their shard rewritten. Pure: the worker feeds answers
//! in and acts on the outcome.
//!
//! Rules:
//! - Only valid shards count; a corrupt or foreign item is a missing one.
//! - The newest version that can be decoded wins (K of its shards, or one
//!   whole copy, or one tombstone, which makes the key a miss). Newer
//!   versions with too few shards are writes still landing or writes that
//!   lost a race (see `ops`), and are passed over, never mixed in; if no
//!   version can be decoded the read is a miss and counts as a decode
//!   failure.
//! - A read answers as soon as K of the K+M servers have answered with
//!   items of one write (K coded shards; or, for a small value, whole
//!   copies and stubs with at least one copy among them; or tombstones),
//!   provided that write is the newest decodable one seen so far and
//!   K >= M. Why that is safe: a write is acknowledged once K+1 of its
//!   K+M items are stored, and nothing writes an older version over a
//!   newer one (repairs are `add` or `cas` against what the read saw), so
//!   at most M-1 servers hold nothing as new as an acknowledged write W.
//!   K servers that all hold one version V older than W would all be among
//!   them, which K >= M rules out: V is W or newer (a write still landing,
//!   which a concurrent read may return). A single whole copy or tombstone
//!   decodes but proves nothing (it may sit on one of those M-1 servers),
//!   hence K items of the version, stubs included, whatever decodes it.
//!   Servers that come back empty hold no version at all, so they never
//!   make an old version look current either. The worker applies this
//!   rule once its batch of events is in (`Worker::ec_run_later`), so that
//!   answers arriving together are all used.
//! - Otherwise (K < M, or the newest decodable version has fewer than K
//!   items in) the read waits until all servers but one have answered (a
//!   dead server fails at once, so only a stalled one is waited for, and
//!   one is not): K+M-1 answers include at least K items of the newest
//!   acknowledged write, so it is always decodable from what came in.
//!   Answering on the first decodable answer would let one stale whole
//!   copy outvote a delete. The price of answering early is robustness
//!   beyond the quorum's guarantee: K servers rolled back to an old write
//!   (by hand, say) can now answer for it, where K+M-1 answers would still
//!   have shown the newer one on all but K+M-2 of them. A newer version whose
//!   decodable items are still short of K (one tombstone, one copy) thus
//!   still wins over an older one with K shards in: the read waits for it.
//! - Late answers of a read answered early still feed repair (see
//!   `repair`); a newer version among them is a concurrent write and is
//!   left alone. Conditional writes (add, replace, cas) wait for every
//!   server, since they need each one's CAS unique.

use super::codec::{self, Decoded};
use super::shard::{self, Header};

/// One server's answer, by position in the key's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not in yet.
    Waiting,
    /// The server failed or timed out: nothing known, nothing to repair.
    Failed,
    /// The server has no item for the key.
    Missing,
    /// An item that is not a valid shard (`cas` so it can be replaced
    /// without clobbering a newer write).
    Corrupt { cas: u64 },
    /// A valid shard: the whole stored item, its remaining TTL (-1:
    /// none) and CAS unique.
    Shard {
        header: Header,
        item: Vec<u8>,
        ttl: i64,
        cas: u64,
    },
}

impl Answer {
    pub fn waiting(&self) -> bool {
        matches!(self, Answer::Waiting)
    }
}

/// One server's answer as the worker hands it over.
#[derive(Clone, Copy, Debug)]
pub enum Got<'a> {
    Item { item: &'a [u8], ttl: i64, cas: u64 },
    Missing,
    Failed,
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Hit {
        version: u64,
        flags: u32,
        data: Vec<u8>,
        /// The remaining TTL of the shards (-1: none), for repairs.
        ttl: i64,
        header: Header,
    },
    /// Newest version is a tombstone.
    Deleted {
        version: u64,
        ttl: i64,
        header: Header,
    },
    /// No server holds anything for the key.
    Miss,
    /// A newest version was seen but could not be decoded.
    Undecodable,
}

/// What a conditional write knows of a position from the read before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// No item: write with `add`.
    Absent,
    /// This item: write with `cas` against its unique.
    Cas(u64),
    /// The server did not answer: nothing is written there.
    Unknown,
}

/// What a position needs after a read that found version `v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Holds no item: `add` its shard.
    Add,
    /// Holds an older, corrupt or misplaced item: replace it with `cas` so
    /// that a newer write landing meanwhile is not overwritten.
    Replace { cas: u64 },
}

pub struct KeyRead {
    pub key: Vec<u8>,
    pub answers: Vec<Answer>,
    /// K, and whether K items of one write may decide before K+M-1
    /// answers are in (K >= M; see the module's rules).
    k: usize,
    early: bool,
}

impl KeyRead {
    pub fn new(key: &[u8], k: usize, m: usize) -> KeyRead {
        KeyRead {
            key: key.to_vec(),
            answers: vec![Answer::Waiting; k + m],
            k,
            early: k >= m,
        }
    }

    /// Record position `pos`'s reply: `item` is the stored bytes (None for
    /// a miss).
    pub fn absorb(&mut self, pos: usize, item: Option<&[u8]>, ttl: i64, cas: u64) {
        let Some(slot) = self.answers.get_mut(pos) else {
            return;
        };
        *slot = match item {
            None => Answer::Missing,
            Some(b) => match shard::parse(b, &self.key) {
                Ok((header, _)) => Answer::Shard {
                    header,
                    item: b.to_vec(),
                    ttl,
                    cas,
                },
                Err(_) => Answer::Corrupt { cas },
            },
        };
    }

    pub fn take(&mut self, pos: usize, got: Got<'_>) {
        match got {
            Got::Item { item, ttl, cas } => self.absorb(pos, Some(item), ttl, cas),
            Got::Missing => self.absorb(pos, None, -1, 0),
            Got::Failed => self.fail(pos),
        }
    }

    pub fn fail(&mut self, pos: usize) {
        if let Some(a) = self.answers.get_mut(pos) {
            *a = Answer::Failed;
        }
    }

    pub fn answered(&self) -> usize {
        self.answers.iter().filter(|a| !a.waiting()).count()
    }

    /// One header per version seen, newest first.
    fn versions(&self) -> Vec<Header> {
        let mut v: Vec<Header> = Vec::new();
        for a in &self.answers {
            if let Answer::Shard { header, .. } = a {
                if !v.iter().any(|h| h.version == header.version) {
                    v.push(*header);
                }
            }
        }
        v.sort_by_key(|h| std::cmp::Reverse(h.version));
        v
    }

    /// Decode version `want` from what came in: None if too few of its
    /// shards are in, Undecodable if they do not make its value (two
    /// writes sharing the version, a value checksum that fails).
    fn try_version(&self, want: &Header) -> Option<Outcome> {
        let mut parts: Vec<(Header, &[u8])> = Vec::new();
        let mut ttl = -1;
        let mut collision = false;
        for a in &self.answers {
            if let Answer::Shard {
                header,
                item,
                ttl: t,
                ..
            } = a
            {
                if header.version != want.version {
                    continue;
                }
                if !codec::same_write(header, want) {
                    collision = true;
                } else if let Ok(p) = shard::parse(item, &self.key) {
                    parts.push(p);
                    ttl = *t;
                }
            }
        }
        if collision {
            return Some(Outcome::Undecodable);
        }
        match codec::decode(&parts) {
            Ok(Decoded::Value { flags, data }) => Some(Outcome::Hit {
                version: want.version,
                flags,
                data,
                ttl,
                header: *want,
            }),
            Ok(Decoded::Deleted) => Some(Outcome::Deleted {
                version: want.version,
                ttl,
                header: *want,
            }),
            Err(codec::CodecError::NotEnough) => None,
            Err(_) => Some(Outcome::Undecodable),
        }
    }

    /// The answer of a plain read (see the module's rules).
    #[cfg(test)]
    pub fn outcome(&self) -> Option<Outcome> {
        self.decide(false, true)
    }

    /// Servers that answered with an item of `want`'s write, whatever its
    /// kind (shard, copy, stub, tombstone).
    fn holders(&self, want: &Header) -> usize {
        self.answers
            .iter()
            .filter(
                |a| matches!(a, Answer::Shard { header, .. } if codec::same_write(header, want)),
            )
            .count()
    }

    /// Enough answers are in for `decide` with `early` to try K items
    /// of one write before the quorum.
    pub fn may_decide_early(&self, wait_all: bool) -> bool {
        let answered = self.answered();
        !wait_all && self.early && answered >= self.k && answered + 1 < self.answers.len()
    }

    /// As `outcome`, but with `wait_all` only once every server answered,
    /// and without `early` only at the quorum.
    pub fn decide(&self, wait_all: bool, early: bool) -> Option<Outcome> {
        let answered = self.answered();
        let all = answered == self.answers.len();
        let quorum = if wait_all {
            all
        } else {
            answered + 1 >= self.answers.len()
        };
        let early = early && !wait_all && self.early && answered >= self.k;
        if !quorum && !early {
            return None;
        }
        let versions = self.versions();
        for h in &versions {
            if let Some(o @ (Outcome::Hit { .. } | Outcome::Deleted { .. })) = self.try_version(h) {
                // The newest decodable version: it wins, now or once
                // enough servers have answered to rule out a newer one.
                return (quorum || self.holders(h) >= self.k).then_some(o);
            }
        }
        if !all {
            return None;
        }
        Some(if versions.is_empty() {
            Outcome::Miss
        } else {
            Outcome::Undecodable
        })
    }

    /// What a conditional write may assume about each position: its CAS
    /// unique if it held an item, absent if it held none, unknown if it
    /// did not answer.
    pub fn conditions(&self) -> Vec<Cond> {
        self.answers
            .iter()
            .map(|a| match a {
                Answer::Missing => Cond::Absent,
                Answer::Corrupt { cas } | Answer::Shard { cas, .. } => Cond::Cas(*cas),
                Answer::Waiting | Answer::Failed => Cond::Unknown,
            })
            .collect()
    }

    /// Positions whose item should be rewritten now that `version` won.
    pub fn repairs(&self, version: u64) -> Vec<(usize, Fix)> {
        let mut out = Vec::new();
        for (pos, a) in self.answers.iter().enumerate() {
            let fix = match a {
                Answer::Missing => Some(Fix::Add),
                Answer::Corrupt { cas } => Some(Fix::Replace { cas: *cas }),
                Answer::Shard { header, cas, .. } => {
                    let stale = header.version < version;
                    let misplaced = header.version == version && header.index as usize != pos;
                    (stale || misplaced).then_some(Fix::Replace { cas: *cas })
                }
                Answer::Waiting | Answer::Failed => None,
            };
            if let Some(f) = fix {
                out.push((pos, f));
            }
        }
        out
    }

    /// The newest version any position holds an item of (0: none).
    pub fn newest(&self) -> u64 {
        self.newer_than(0).unwrap_or(0)
    }

    /// The newest version above `version` some position holds an item
    /// of: a write still landing, or one abandoned part way.
    pub fn newer_than(&self, version: u64) -> Option<u64> {
        self.answers
            .iter()
            .filter_map(|a| match a {
                Answer::Shard { header, .. } if header.version > version => Some(header.version),
                _ => None,
            })
            .max()
    }

    /// Some position answered without a usable shard of the winner.
    pub fn degraded(&self, version: u64) -> bool {
        self.answers.iter().any(|a| match a {
            Answer::Shard { header, .. } => header.version != version,
            Answer::Waiting => false,
            _ => true,
        })
    }

    /// Shards that were valid, for the stats.
    pub fn shards_read(&self) -> u64 {
        self.answers
            .iter()
            .filter(|a| matches!(a, Answer::Shard { .. }))
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::codec::{encode_value, tombstone, Geometry};

    fn g() -> Geometry {
        Geometry::new(3, 2, 16).unwrap()
    }

    #[test]
    fn decodes_from_k_of_the_newest_and_ignores_older() {
        let old = encode_value(&g(), b"k", 1, 0, &[1u8; 100]).unwrap();
        let new = encode_value(&g(), b"k", 2, 7, &[2u8; 100]).unwrap();
        let mut r = KeyRead::new(b"k", 3, 2);
        r.absorb(0, Some(&old[0]), -1, 10);
        assert_eq!(r.outcome(), None);
        r.absorb(1, Some(&new[1]), -1, 11);
        r.absorb(2, Some(&new[2]), -1, 12);
        assert_eq!(r.outcome(), None, "two shards of the newest are not enough");
        r.absorb(4, Some(&new[4]), 30, 13);
        match r.outcome() {
            Some(Outcome::Hit {
                version,
                flags,
                data,
                ttl,
                ..
            }) => {
                assert_eq!((version, flags, ttl), (2, 7, 30));
                assert_eq!(data, vec![2u8; 100]);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(r.repairs(2), vec![(0, Fix::Replace { cas: 10 })]);
        assert!(r.degraded(2));
    }

    #[test]
    fn a_newer_partial_write_is_reported_beside_the_winner() {
        let old = encode_value(&g(), b"k", 5, 0, &[1u8; 100]).unwrap();
        let new = encode_value(&g(), b"k", 9, 0, &[2u8; 100]).unwrap();
        let mut r = KeyRead::new(b"k", 3, 2);
        assert_eq!((r.newest(), r.newer_than(0)), (0, None));
        for (i, s) in old.iter().enumerate().skip(1) {
            r.absorb(i, Some(s), -1, 0);
        }
        assert_eq!((r.newest(), r.newer_than(5)), (5, None));
        // The lead position already holds a racing write's item.
        r.absorb(0, Some(&new[0]), -1, 0);
        assert!(matches!(
            r.decide(true, false),
            Some(Outcome::Hit { version: 5, .. })
        ));
        assert_eq!(
            (r.newest(), r.newer_than(5), r.newer_than(9)),
            (9, Some(9), None)
        );
    }

    #[test]
    fn an_undecodable_newer_version_yields_to_the_newest_decodable_one() {
        let old = encode_value(&g(), b"k", 1, 0, &[1u8; 100]).unwrap();
        let new = encode_value(&g(), b"k", 2, 0, &[2u8; 100]).unwrap();
        let mut r = KeyRead::new(b"k", 3, 2);
        for (i, s) in old.iter().enumerate().take(3) {
            r.absorb(i, Some(s), -1, 0);
        }
        r.absorb(3, Some(&new[3]), -1, 0);
        match r.outcome() {
            Some(Outcome::Hit { version, data, .. }) => {
                assert_eq!((version, data), (1, vec![1u8; 100]))
            }
            o => panic!("{o:?}"),
        }
        // The newer shard may be a write still landing: left alone.
        assert_eq!(r.repairs(1), vec![]);
        // Nothing decodable at all: a miss that counts as a failure.
        let mut r = KeyRead::new(b"k", 3, 2);
        r.absorb(0, Some(&old[0]), -1, 0);
        r.absorb(3, Some(&new[3]), -1, 0);
        r.absorb(4, Some(&new[4]), -1, 0);
        r.fail(1);
        assert_eq!(r.outcome(), None);
        r.fail(2);
        assert_eq!(r.outcome(), Some(Outcome::Undecodable));
        // A conditional write waits for every answer.
        let mut r = KeyRead::new(b"k", 3, 2);
        for (i, s) in new.iter().enumerate().take(4) {
            r.absorb(i, Some(s), -1, 7);
        }
        assert!(r.outcome().is_some());
        assert_eq!(r.decide(true, true), None);
        r.absorb(4, None, -1, 0);
        assert!(r.decide(true, true).is_some());
        assert_eq!(
            r.conditions(),
            vec![
                Cond::Cas(7),
                Cond::Cas(7),
                Cond::Cas(7),
                Cond::Cas(7),
                Cond::Absent
            ]
        );
    }

    #[test]
    fn tombstones_win_and_corrupt_items_count_as_missing() {
        let old = encode_value(&g(), b"k", 1, 0, b"small").unwrap();
        let mut r = KeyRead::new(b"k", 3, 2);
        r.absorb(0, Some(&old[0]), -1, 1);
        r.absorb(1, Some(&tombstone(&g(), b"k", 2, 1)), -1, 2);
        r.absorb(
            2,
            Some(&encode_value(&g(), b"other key", 3, 0, b"small").unwrap()[2]),
            -1,
            3,
        );
        r.absorb(3, None, -1, 0);
        assert!(matches!(
            r.outcome(),
            Some(Outcome::Deleted { version: 2, .. })
        ));
        assert_eq!(
            r.repairs(2),
            vec![
                (0, Fix::Replace { cas: 1 }),
                (2, Fix::Replace { cas: 3 }),
                (3, Fix::Add)
            ]
        );
    }

    #[test]
    fn nothing_anywhere_is_a_miss_after_every_answer() {
        let mut r = KeyRead::new(b"k", 3, 2);
        for i in 0..4 {
            r.absorb(i, None, -1, 0);
        }
        assert_eq!(r.outcome(), None);
        r.fail(4);
        assert_eq!(r.outcome(), Some(Outcome::Miss));
    }

    fn hit_version(o: Option<Outcome>) -> Option<u64> {
        match o {
            Some(Outcome::Hit { version, .. }) => Some(version),
            _ => None,
        }
    }

    #[test]
    fn k_coded_shards_of_the_newest_version_decide_before_the_quorum() {
        let old = encode_value(&g(), b"k", 1, 0, &[1u8; 100]).unwrap();
        let new = encode_value(&g(), b"k", 2, 0, &[2u8; 100]).unwrap();
        // Two servers stalled: three answers are all there will be.
        let mut r = KeyRead::new(b"k", 3, 2);
        r.absorb(4, Some(&new[4]), -1, 0);
        r.absorb(0, Some(&new[0]), -1, 0);
        assert_eq!(r.outcome(), None);
        r.absorb(2, Some(&new[2]), -1, 0);
        assert_eq!(hit_version(r.outcome()), Some(2));
        // Not before the worker's batch of events is in.
        assert_eq!(r.decide(false, false), None);
        assert!(r.may_decide_early(false));
        assert!(!r.may_decide_early(true));
        // Stale shards first (the servers that missed the write): they
        // are fewer than K, so the read waits for the newest.
        let mut r = KeyRead::new(b"k", 3, 2);
        r.absorb(3, Some(&old[3]), -1, 0);
        r.absorb(4, Some(&old[4]), -1, 0);
        r.absorb(0, Some(&new[0]), -1, 0);
        assert_eq!(r.outcome(), None);
        r.absorb(1, Some(&new[1]), -1, 0);
        assert_eq!(r.outcome(), None, "quorum in, nothing decodable yet");
        r.absorb(2, Some(&new[2]), -1, 0);
        assert_eq!(hit_version(r.outcome()), Some(2));
        // Failures are not answers of a version.
        let mut r = KeyRead::new(b"k", 3, 2);
        r.fail(0);
        r.absorb(2, Some(&new[2]), -1, 0);
        r.absorb(3, Some(&new[3]), -1, 0);
        assert_eq!(r.outcome(), None);
        // Conditional writes still wait for every server.
        let mut r = KeyRead::new(b"k", 3, 2);
        for (i, s) in new.iter().enumerate().take(3) {
            r.absorb(i, Some(s), -1, 0);
        }
        assert_eq!(r.decide(true, true), None);
    }

    #[test]
    fn a_newer_version_seen_wins_or_holds_the_read_back() {
        // 3+3: the quorum is 5 answers, so K = 3 decide well before it.
        let g = Geometry::new(3, 3, 16).unwrap();
        let old = encode_value(&g, b"k", 1, 0, &[1u8; 100]).unwrap();
        let mut r = KeyRead::new(b"k", 3, 3);
        r.absorb(5, Some(&tombstone(&g, b"k", 2, 5)), -1, 0);
        for (i, s) in old.iter().enumerate().take(3) {
            r.absorb(i, Some(s), -1, 0);
        }
        // K shards of the old value, but a newer tombstone decodes: one
        // tombstone proves too little to answer on, so the read waits.
        assert_eq!(r.outcome(), None);
        r.absorb(3, None, -1, 0);
        assert!(matches!(
            r.outcome(),
            Some(Outcome::Deleted { version: 2, .. })
        ));
        // K tombstones decide at once.
        let mut r = KeyRead::new(b"k", 3, 3);
        r.absorb(0, Some(&old[0]), -1, 0);
        for i in [1, 4, 5] {
            r.absorb(i, Some(&tombstone(&g, b"k", 2, i)), -1, 0);
        }
        assert!(matches!(
            r.outcome(),
            Some(Outcome::Deleted { version: 2, .. })
        ));
        // A newer write with fewer than K shards in is still landing (an
        // acknowledged one would be on K+1 servers, leaving at most M-1
        // = 2 without it, not the K = 3 that hold the old one): passed
        // over, as at the quorum.
        let new = encode_value(&g, b"k", 3, 0, &[3u8; 100]).unwrap();
        let mut r = KeyRead::new(b"k", 3, 3);
        r.absorb(5, Some(&new[5]), -1, 0);
        for (i, s) in old.iter().enumerate().take(3) {
            r.absorb(i, Some(s), -1, 0);
        }
        assert_eq!(hit_version(r.outcome()), Some(1));
        assert_eq!(r.repairs(1), vec![], "the newer shard is left alone");
    }

    #[test]
    fn whole_copies_decide_early_only_with_k_items_of_their_write() {
        let old = encode_value(&g(), b"k", 1, 0, b"old").unwrap();
        let new = encode_value(&g(), b"k", 2, 0, b"new").unwrap();
        // One copy decodes, but a stale copy would too: not enough.
        let mut r = KeyRead::new(b"k", 3, 2);
        r.absorb(0, Some(&new[0]), -1, 0);
        assert_eq!(r.outcome(), None);
        // Its stubs count: K servers hold the write.
        r.absorb(3, Some(&new[3]), -1, 0);
        assert_eq!(r.outcome(), None);
        r.absorb(4, Some(&new[4]), -1, 0);
        assert_eq!(hit_version(r.outcome()), Some(2));
        // Stale copies first, then a stub of the newer write: the old
        // value decodes but has only two holders, and must not be
        // answered; the quorum shows the new copy.
        let mut r = KeyRead::new(b"k", 3, 2);
        r.absorb(0, Some(&old[0]), -1, 0);
        r.absorb(1, Some(&old[1]), -1, 0);
        r.absorb(3, Some(&new[3]), -1, 0);
        assert_eq!(r.outcome(), None);
        r.absorb(2, Some(&new[2]), -1, 0);
        assert_eq!(hit_version(r.outcome()), Some(2));
    }

    #[test]
    fn with_fewer_data_than_parity_shards_the_quorum_rule_stays() {
        // 2+3: two servers that missed a write could hold K = 2 shards of
        // the old one, so K shards prove nothing.
        let g = Geometry::new(2, 3, 16).unwrap();
        let new = encode_value(&g, b"k", 2, 0, &[2u8; 100]).unwrap();
        let mut r = KeyRead::new(b"k", 2, 3);
        for (i, s) in new.iter().enumerate().take(3) {
            r.absorb(i, Some(s), -1, 0);
        }
        assert_eq!(r.outcome(), None);
        r.absorb(3, None, -1, 0);
        assert_eq!(hit_version(r.outcome()), Some(2));
    }
}
