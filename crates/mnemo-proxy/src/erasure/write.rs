//! Writes on an erasure-coded pool: a new version for each, every shard
//! to its position (`set`, or for add/replace/cas a conditional `add` or
//! `cas` against what the read before it found; see `ops` for what that
//! guarantees), and the tally of the servers' answers that decides
//! STORED, a lost race, or `SERVER_ERROR`.

use super::codec::{self, Geometry};
use super::ops::EcCmd;
use super::read::{Cond, KeyRead};
use super::shard::Versioner;
use crate::backend::{Pending, What};
use crate::client::{ReplyTo, SlotKind};
use crate::worker::Worker;
use mnemo_protocol::client::{self as pclient, StoreCmd};
use std::sync::atomic::Ordering::Relaxed;

/// A write's replies so far.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) sent: u32,
    pub(crate) replied: u32,
    pub(crate) stored: u32,
    pub(crate) need: u32,
    /// K: with fewer items stored, the write cannot be read.
    pub(crate) decodable: u32,
    /// Conditional writes refused (EXISTS, NOT_FOUND, NOT_STORED): another
    /// write got there first.
    pub(crate) conflicts: u32,
}

impl Tally {
    pub(crate) fn decided(&self) -> bool {
        self.stored >= self.need || self.replied >= self.sent
    }
    pub(crate) fn ok(&self) -> bool {
        self.stored >= self.need
    }
    /// Lost to another writer, and too little of it stored to be read:
    /// the request can be answered as not stored.
    pub(crate) fn lost(&self) -> bool {
        self.decided() && !self.ok() && self.conflicts > 0 && self.stored < self.decodable
    }
}

impl Worker {
    pub(crate) fn ec_version(&mut self, pool: usize) -> u64 {
        let now = Versioner::now_ms();
        match self.pools.get_mut(pool).and_then(|p| p.ec.as_mut()) {
            Some(e) => e.versions.next(now),
            None => 0,
        }
    }

    /// The shards of a store's value under a new version.
    pub(crate) fn ec_store_shards(&mut self, to: ReplyTo, pool: usize) -> (Vec<Vec<u8>>, i64) {
        let Some(g) = self.ec_geom(pool) else {
            return (Vec::new(), 0);
        };
        let version = self.ec_version(pool);
        let (shards, exptime, len) = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) => {
                op.written = version;
                match &op.cmd {
                    EcCmd::Store {
                        flags,
                        exptime,
                        data,
                        ..
                    } => (
                        op.keys
                            .first()
                            .and_then(|ek| {
                                codec::encode_value(&g, &ek.key, version, *flags, data).ok()
                            })
                            .unwrap_or_default(),
                        *exptime,
                        data.len(),
                    ),
                    _ => (Vec::new(), 0, 0),
                }
            }
            _ => (Vec::new(), 0, 0),
        };
        if g.codes(len) {
            let whole = (usize::from(g.m) + 1) * len;
            let coded = g.stored_bytes(len);
            self.stats.pools[pool]
                .ec
                .bytes_saved
                .fetch_add(whole.saturating_sub(coded) as u64, Relaxed);
        }
        (shards, exptime)
    }

    /// Tombstones of a new version for the request's key.
    pub(crate) fn ec_tombstones(&mut self, to: ReplyTo, pool: usize, g: &Geometry) -> Vec<Vec<u8>> {
        let version = self.ec_version(pool);
        match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) => {
                op.written = version;
                match op.keys.first() {
                    Some(ek) => (0..g.n())
                        .map(|i| codec::tombstone(g, &ek.key, version, i))
                        .collect(),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn ec_send_writes(
        &mut self,
        to: ReplyTo,
        pool: usize,
        ki: usize,
        shards: Vec<Vec<u8>>,
        exptime: i64,
    ) {
        let Some(g) = self.ec_geom(pool) else { return };
        let (k, n) = (u32::from(g.k), g.n() as u32);
        let (key, servers, conds) = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) => {
                let conditional = op.barrier;
                match op.keys.get_mut(ki) {
                    Some(ek) => {
                        // How many stored items make the write readable: K
                        // coded shards, or one whole copy or tombstone.
                        let coded = shards
                            .first()
                            .and_then(|b| super::shard::parse(b, &ek.key).ok())
                            .is_some_and(|(h, _)| h.kind == super::shard::Kind::Coded);
                        let decodable = if coded { k } else { 1 };
                        let conds = ek
                            .read
                            .as_ref()
                            .filter(|_| conditional)
                            .map(KeyRead::conditions);
                        // Two conditional writers racing from the same read
                        // win disjoint sets of servers: with a majority
                        // needed, at most one can succeed.
                        let need = match conds {
                            Some(_) => (k + 1).max(n / 2 + 1),
                            None => k + 1,
                        };
                        ek.write = Some(Tally {
                            sent: n,
                            need,
                            decodable,
                            ..Default::default()
                        });
                        (ek.key.clone(), ek.servers.clone(), conds)
                    }
                    None => return,
                }
            }
            _ => return,
        };
        let mut failed = 0;
        let mut req = Vec::new();
        for pos in 0..g.n() {
            let (Some(&s), Some(shard)) = (servers.get(pos), shards.get(pos)) else {
                failed += 1;
                continue;
            };
            if self.pools[pool].servers[s].health.is_ejected() {
                failed += 1;
                continue;
            }
            req.clear();
            match conds.as_ref().and_then(|c| c.get(pos)) {
                None => {
                    pclient::encode_store(&mut req, StoreCmd::Set, &key, 0, exptime, shard, false)
                }
                Some(Cond::Absent) => {
                    pclient::encode_store(&mut req, StoreCmd::Add, &key, 0, exptime, shard, false)
                }
                Some(Cond::Cas(u)) => {
                    pclient::encode_cas(&mut req, &key, 0, exptime, shard, *u, false)
                }
                Some(Cond::Unknown) => {
                    failed += 1;
                    continue;
                }
            }
            let what = What::Ec {
                key: ki as u32,
                pos: pos as u8,
                write: true,
            };
            if self
                .send(pool, s, &req, Some(Pending::new(to, what, None)))
                .is_err()
            {
                failed += 1;
            } else {
                self.stats.pools[pool]
                    .ec
                    .shards_written
                    .fetch_add(1, Relaxed);
            }
        }
        if let Some(SlotKind::Ec(op)) = self.slot_kind(to) {
            if let Some(t) = op.keys.get_mut(ki).and_then(|ek| ek.write.as_mut()) {
                t.replied += failed;
            }
        }
    }
}
