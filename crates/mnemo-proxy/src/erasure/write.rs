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
    /// A new version for request `to`'s write: newer than any its read
    /// saw. Versions are clocks, and another worker or proxy may draw a
    /// larger one in the same millisecond; a `cas` made on top of a write
    /// must still win over it, or that write's leftovers (an item a race
    /// left on one server) would look newer than the `cas` forever.
    pub(crate) fn ec_version(&mut self, to: ReplyTo, pool: usize) -> u64 {
        let seen = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) => op
                .keys
                .first()
                .and_then(|ek| ek.read.as_ref())
                .map_or(0, KeyRead::newest),
            _ => 0,
        };
        let now = Versioner::now_ms();
        match self.pools.get_mut(pool).and_then(|p| p.ec.as_mut()) {
            Some(e) => {
                e.versions.observe(seen);
                e.versions.next(now)
            }
            None => 0,
        }
    }

    /// The shards of a store's value under a new version.
    pub(crate) fn ec_store_shards(&mut self, to: ReplyTo, pool: usize) -> (Vec<Vec<u8>>, i64) {
        let Some(g) = self.ec_geom(pool) else {
            return (Vec::new(), 0);
        };
        let version = self.ec_version(to, pool);
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
        let version = self.ec_version(to, pool);
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
                        // cannot both win a majority of the servers.
                        let need = match conds {
                            Some(_) => (k + 1).max(n / 2 + 1),
                            None => k + 1,
                        };
                        ek.write = Some(Tally {
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
        let held = Held {
            n: n as usize,
            key,
            servers,
            shards,
            exptime,
            conds,
            lead: 0,
        };
        if held.conds.is_some() {
            self.ec_lead(to, pool, ki, held, 0);
        } else {
            self.ec_put_all(to, pool, ki, &held);
        }
    }

    /// Send a conditional write's item to the first position from `from`
    /// on that answered its read, and hold the others until it is stored
    /// there. Writers racing from one read all start at the same position
    /// and only one of them can win it (the server compares the CAS unique
    /// or refuses the `add`), so the losers write nowhere: sent to every
    /// server at once, three racing writers could win two, two and one of
    /// five servers, none of them readable, and the value they all read
    /// would be gone (the erasure test's racing `cas` found it so).
    pub(crate) fn ec_lead(
        &mut self,
        to: ReplyTo,
        pool: usize,
        ki: usize,
        mut held: Held,
        from: usize,
    ) {
        let mut req = Vec::new();
        let mut lead = None;
        for pos in from..held.n {
            if held.encode(pos, &mut req).is_some() && self.ec_put(to, pool, ki, &held, pos, &req) {
                lead = Some(pos);
                break;
            }
        }
        if let Some(SlotKind::Ec(op)) = self.slot_kind(to) {
            if let Some(ek) = op.keys.get_mut(ki) {
                if let Some(pos) = lead {
                    held.lead = pos;
                    if let Some(t) = ek.write.as_mut() {
                        t.sent += 1;
                    }
                    ek.held = Some(Box::new(held));
                } else {
                    // No server left to lead: the tally decides as it is.
                    ek.held = None;
                }
            }
        }
    }

    /// A reply (`stored`, `refused`) or a failure (neither) at a held
    /// write's lead position: send the rest, give up, or lead on from the
    /// next position (the outcome at this one is unknown).
    pub(crate) fn ec_lead_answered(
        &mut self,
        to: ReplyTo,
        ki: usize,
        pos: usize,
        stored: bool,
        refused: bool,
    ) {
        let Some(pool) = self.client_pool(to) else {
            return;
        };
        let held = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) => match op.keys.get_mut(ki) {
                Some(ek) if ek.held.as_ref().is_some_and(|h| h.lead == pos) => ek.held.take(),
                _ => None,
            },
            _ => None,
        };
        let Some(held) = held else { return };
        if stored {
            self.ec_put_all(to, pool, ki, &held);
        } else if !refused {
            self.ec_lead(to, pool, ki, *held, pos + 1);
        }
    }

    /// Send every position's item (but a held write's lead, sent already).
    fn ec_put_all(&mut self, to: ReplyTo, pool: usize, ki: usize, held: &Held) {
        let mut req = Vec::new();
        let (mut sent, mut failed) = (0, 0);
        let skip = held.conds.as_ref().map(|_| held.lead);
        for pos in (0..held.n).filter(|&p| Some(p) != skip) {
            sent += 1;
            if held.encode(pos, &mut req).is_none() || !self.ec_put(to, pool, ki, held, pos, &req) {
                failed += 1;
            }
        }
        if let Some(SlotKind::Ec(op)) = self.slot_kind(to) {
            if let Some(t) = op.keys.get_mut(ki).and_then(|ek| ek.write.as_mut()) {
                t.sent += sent;
                t.replied += failed;
            }
        }
    }

    /// Queue `req`, position `pos`'s write: false if its server is ejected
    /// or its connection failed.
    fn ec_put(
        &mut self,
        to: ReplyTo,
        pool: usize,
        ki: usize,
        held: &Held,
        pos: usize,
        req: &[u8],
    ) -> bool {
        let Some(&s) = held.servers.get(pos) else {
            return false;
        };
        if self.pools[pool].servers[s].health.is_ejected() {
            return false;
        }
        let what = What::Ec {
            key: ki as u32,
            pos: pos as u8,
            write: true,
        };
        if self
            .send(pool, s, req, Some(Pending::new(to, what, None)))
            .is_err()
        {
            return false;
        }
        self.stats.pools[pool]
            .ec
            .shards_written
            .fetch_add(1, Relaxed);
        true
    }
}

/// A write's items, and for a conditional one what its read found at each
/// position and which position leads (see `ec_lead`).
pub(crate) struct Held {
    /// K+M.
    n: usize,
    key: Vec<u8>,
    servers: Vec<usize>,
    shards: Vec<Vec<u8>>,
    exptime: i64,
    conds: Option<Vec<Cond>>,
    lead: usize,
}

impl Held {
    /// Position `pos`'s request: `set`, or `add`/`cas` as its read found
    /// it; None where the read did not hear from it.
    fn encode(&self, pos: usize, req: &mut Vec<u8>) -> Option<()> {
        let shard = self.shards.get(pos)?;
        req.clear();
        let (key, e) = (&self.key[..], self.exptime);
        match self.conds.as_ref().map(|c| c.get(pos)) {
            None => pclient::encode_store(req, StoreCmd::Set, key, 0, e, shard, false),
            Some(Some(Cond::Absent)) => {
                pclient::encode_store(req, StoreCmd::Add, key, 0, e, shard, false)
            }
            Some(Some(Cond::Cas(u))) => pclient::encode_cas(req, key, 0, e, shard, *u, false),
            Some(Some(Cond::Unknown) | None) => return None,
        }
        Some(())
    }
}
