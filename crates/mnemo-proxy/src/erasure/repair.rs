//! Repair on read: rewriting the shards a read found missing, stale or
//! corrupt, once the read has decided which write is current.
//!
//! Repairs carry no reply (`noreply`) and never undo a newer write: a
//! position that held nothing gets `add`, one that held something gets
//! `cas` against the CAS unique its `mg` returned, so a write that lands
//! between the read and the repair wins. A read answers the client as soon
//! as it can (see `read`), often before every server has answered; such a
//! read leaves a `Tail` that collects the late answers and repairs what
//! they show once all are in (or have failed).

use super::codec::{self, Geometry};
use super::ops::{ttl_exptime, EcCmd};
use super::read::{Answer, Fix, Got, KeyRead, Outcome};
use super::shard::Kind;
use crate::client::{ReplyTo, SlotKind};
use crate::worker::Worker;
use mnemo_protocol::client::{self as pclient, StoreCmd};
use std::sync::atomic::Ordering::Relaxed;

/// Most bytes of values that reads answered early may hold, per pool and
/// worker, for repairs of their late answers. A stalled server leaves a
/// tail behind every read until its timeout; past this, reads keep none
/// and the servers are repaired by later reads or `repair` instead.
const MAX_TAIL_BYTES: usize = 32 << 20;

/// A read answered early, waiting for its other servers.
pub(crate) struct Tail {
    key: Vec<u8>,
    servers: Vec<usize>,
    read: KeyRead,
    outcome: Outcome,
    /// Positions that had answered when the read was decided (and were
    /// repaired then if they needed it).
    seen: Vec<bool>,
}

impl Tail {
    fn size(&self) -> usize {
        let value = match &self.outcome {
            Outcome::Hit { data, .. } => data.len(),
            _ => 0,
        };
        value + self.key.len() + 64 * self.read.answers.len()
    }
}

/// The items to write back for the winner of a read, by position, and the
/// exptime to write them with; None when the outcome is not a value or a
/// tombstone.
pub(crate) fn shards_for(key: &[u8], outcome: &Outcome) -> Option<(Vec<Vec<u8>>, i64)> {
    match outcome {
        Outcome::Hit {
            version,
            flags,
            data,
            ttl,
            header,
        } => {
            // Rewrite in the form the write chose (coded or whole copies).
            let min = if header.kind == Kind::Coded {
                0
            } else {
                usize::MAX
            };
            let g = Geometry::new(usize::from(header.k), usize::from(header.m), min)?;
            let shards = codec::encode_value(&g, key, *version, *flags, data).ok()?;
            Some((shards, ttl_exptime(*ttl)))
        }
        Outcome::Deleted {
            version,
            ttl,
            header,
        } => {
            let g = Geometry::new(usize::from(header.k), usize::from(header.m), 0)?;
            let stones = (0..g.n())
                .map(|i| codec::tombstone(&g, key, *version, i))
                .collect();
            Some((stones, ttl_exptime(*ttl)))
        }
        Outcome::Miss | Outcome::Undecodable => None,
    }
}

impl Worker {
    /// Send the repairs `fixes` of `key` (positions into `servers`).
    pub(crate) fn ec_repair(
        &mut self,
        pool: usize,
        key: &[u8],
        servers: &[usize],
        fixes: &[(usize, Fix)],
        shards: &[Vec<u8>],
        exptime: i64,
    ) {
        let mut req = Vec::new();
        for &(pos, fix) in fixes {
            let (Some(&s), Some(shard)) = (servers.get(pos), shards.get(pos)) else {
                continue;
            };
            if self.pools[pool].servers[s].health.is_ejected() {
                continue;
            }
            req.clear();
            match fix {
                Fix::Add => {
                    pclient::encode_store(&mut req, StoreCmd::Add, key, 0, exptime, shard, true)
                }
                Fix::Replace { cas } => {
                    pclient::encode_cas(&mut req, key, 0, exptime, shard, cas, true)
                }
            }
            if self.send(pool, s, &req, None).is_ok() {
                self.stats.pools[pool].ec.repairs.fetch_add(1, Relaxed);
            }
        }
    }

    /// The request `to` is being answered: keep each of its reads that
    /// found a winner before every server answered, so that the late
    /// answers can still be repaired. Reads followed by a write of their
    /// own (and deletes, whose tombstones went to every server) need none.
    pub(crate) fn ec_keep_tails(&mut self, to: ReplyTo) {
        let Some(pool) = self.client_pool(to) else {
            return;
        };
        let mut tails = Vec::new();
        if let Some(SlotKind::Ec(op)) = self.slot_kind(to) {
            if matches!(op.cmd, EcCmd::Delete(_)) {
                return;
            }
            for (ki, ek) in op.keys.iter_mut().enumerate() {
                if ek.write.is_some() {
                    continue;
                }
                if !matches!(
                    ek.outcome,
                    Some(Outcome::Hit { .. } | Outcome::Deleted { .. })
                ) {
                    continue;
                }
                let Some(mut read) = ek.read.take_if(|r| r.answered() < r.answers.len()) else {
                    continue;
                };
                // The answer is written already: the value moves here.
                let Some(outcome) = ek.outcome.take() else {
                    continue;
                };
                // Repairs need only the headers and CAS uniques of what
                // came in; the value is in the outcome.
                for a in &mut read.answers {
                    if let Answer::Shard { item, .. } = a {
                        *item = Vec::new();
                    }
                }
                let seen = read.answers.iter().map(|a| !a.waiting()).collect();
                tails.push((
                    ki as u32,
                    Tail {
                        key: ek.key.clone(),
                        servers: ek.servers.clone(),
                        read,
                        outcome,
                        seen,
                    },
                ));
            }
        }
        if let Some(ec) = self.pools.get_mut(pool).and_then(|p| p.ec.as_mut()) {
            for (ki, t) in tails {
                let size = t.size();
                if ec.tail_bytes + size > MAX_TAIL_BYTES {
                    break;
                }
                ec.tail_bytes += size;
                ec.tails.insert((to.client, to.seq, ki), t);
            }
        }
    }

    /// A late answer to a read already answered.
    pub(crate) fn ec_tail_answer(&mut self, to: ReplyTo, ki: u32, pos: usize, got: Got<'_>) {
        let id = (to.client, to.seq, ki);
        let Some(pool) = self
            .pools
            .iter()
            .position(|p| p.ec.as_ref().is_some_and(|e| e.tails.contains_key(&id)))
        else {
            return;
        };
        let done = {
            let Some(t) = self.pools[pool]
                .ec
                .as_mut()
                .and_then(|e| e.tails.get_mut(&id))
            else {
                return;
            };
            t.read.take(pos, got);
            t.read.answered() == t.read.answers.len()
        };
        if !done {
            return;
        }
        let Some(t) = self.pools[pool].ec.as_mut().and_then(|e| {
            let t = e.tails.remove(&id)?;
            e.tail_bytes = e.tail_bytes.saturating_sub(t.size());
            Some(t)
        }) else {
            return;
        };
        let version = match &t.outcome {
            Outcome::Hit { version, .. } | Outcome::Deleted { version, .. } => *version,
            _ => return,
        };
        let fixes: Vec<(usize, Fix)> = t
            .read
            .repairs(version)
            .into_iter()
            .filter(|(pos, _)| !t.seen.get(*pos).copied().unwrap_or(true))
            .collect();
        if fixes.is_empty() {
            return;
        }
        if let Some((shards, exptime)) = shards_for(&t.key, &t.outcome) {
            self.ec_repair(pool, &t.key, &t.servers, &fixes, &shards, exptime);
        }
    }
}
