//! Client requests on an erasure-coded pool, as the worker runs them.
//!
//! Every key has K+M positions: the distinct servers of its ring walk.
//! Reads send `mg <key> v t c` (plus `T<exptime>` for gat/gats/touch) to
//! all of them and decide with `read::KeyRead`; writes send one
//! `set <key> 0 <exptime> <len>` per position with that position's shard.
//!
//! What a client may assume:
//! - `STORED`/`DELETED` means at least K+1 of the K+M servers stored the
//!   write's item, so the value survives the loss of any one of them and,
//!   once reads have repaired it, of any M. A write that reaches fewer
//!   answers `SERVER_ERROR` and may or may not be seen by later reads
//!   (as with a memcached timeout), but never mixed with another write.
//! - set/delete/touch/gets go out at once; add, replace and cas (and meta
//!   `md` with `C`) read the key from every server first, then write
//!   conditionally: `cas` against each server's own CAS unique from that
//!   read, `add` where the server held nothing, nothing where it did not
//!   answer. A write landing in between on a server makes that server
//!   refuse, and success needs a majority (at least K+1) of the K+M, so of
//!   two such requests racing from the same read at most one succeeds:
//!   `cas` is as atomic as memcached's. The first position that answered
//!   the read is written first and the others only once it stored the
//!   item (`write::ec_lead`), so the losers of such a race write nothing;
//!   and a read that shows part of a newer write waits for it to land
//!   (`ec_settle`), so no two writers split the servers so finely that
//!   neither can be decoded. One that lost with fewer than K
//!   items stored (so it can never be read) answers EXISTS/NOT_STORED;
//!   one with K or more stored but short of the majority answers
//!   `SERVER_ERROR` (outcome unknown, as after a timeout). They hold the
//!   client's later requests until they finish, so a pipeline sees its
//!   own writes in order.
//! - `gets` returns the write's version as the CAS unique; `cas` compares
//!   the client's unique with the version the read finds.
//! - append, prepend, incr and decr would need the whole value rewritten
//!   under a lock the proxy does not have: they answer `SERVER_ERROR`.

use super::codec::Geometry;
use super::read::{Got, KeyRead, Outcome};
use super::shard::Versioner;
use super::write::Tally;
use crate::backend::{Pending, What};
use crate::client::{ReplyTo, SlotKind};
use crate::worker::Worker;
use mnemo_net::Key;
use mnemo_protocol::client::{MetaStatus, Reply};
use mnemo_protocol::text::{GetKind, Keys, StoreKind};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub(crate) const UNSUPPORTED: &[u8] =
    b"SERVER_ERROR command not supported on an erasure-coded pool\r\n";

/// A pool's erasure coding as one worker runs it.
pub(crate) struct EcRt {
    pub(crate) geom: Geometry,
    pub(crate) versions: Versioner,
    /// Reads answered before every server did, kept to repair what the
    /// late answers show (see `repair`).
    pub(crate) tails: std::collections::HashMap<(Key, u64, u32), super::repair::Tail>,
    pub(crate) tail_bytes: usize,
}

impl EcRt {
    pub(crate) fn new(k: u8, m: u8, min_size: usize) -> Option<EcRt> {
        Some(EcRt {
            geom: Geometry::new(usize::from(k), usize::from(m), min_size)?,
            versions: Versioner::new(Versioner::node_for(0)),
            tails: std::collections::HashMap::new(),
            tail_bytes: 0,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Set,
    Add,
    Replace,
    Cas(u64),
}

pub(crate) enum EcCmd {
    Get(GetKind),
    Store {
        mode: Mode,
        flags: u32,
        exptime: i64,
        data: Vec<u8>,
    },
    /// With `Some(cas)` (meta `md ... C<cas>`), only if the version read
    /// is `cas`.
    Delete(Option<u64>),
    Touch,
}

pub(crate) struct EcKey {
    pub(crate) key: Vec<u8>,
    pub(crate) servers: Vec<usize>,
    pub(crate) read: Option<KeyRead>,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) write: Option<Tally>,
    /// A conditional write's items waiting on its lead position.
    pub(crate) held: Option<Box<super::write::Held>>,
    /// Reads sent so far, and their `T` (gat, touch).
    tries: u8,
    /// When a conditional write first saw part of a newer write, and
    /// whether a read is queued to look again.
    waiting: Option<Instant>,
    pub(crate) retrying: bool,
    touch: Option<i64>,
}

/// Reads of a key that found only writes in flight (no version decodable)
/// are sent again this many times in all before answering a miss.
const READ_TRIES: u8 = 3;

/// `ec_settle` for a pool that never times servers out.
const SETTLE_WITHOUT_TIMEOUT: Duration = Duration::from_secs(2);

/// How soon a conditional write that waits for a newer one reads again:
/// at once the write is usually in, so 1 ms, doubling up to 64 ms for one
/// that is slow or never lands.
const RETRY_AFTER: Duration = Duration::from_millis(1);

pub(crate) struct EcOp {
    pub(crate) cmd: EcCmd,
    pub(crate) keys: Vec<EcKey>,
    /// The client's later requests wait for this one (see `ClientConn`).
    pub(crate) barrier: bool,
    noreply: bool,
    finished: bool,
    /// The version this request wrote, if any (meta's `c` return flag).
    pub(crate) written: u64,
    /// Set for meta (and binary) requests: how to shape the answer.
    pub(crate) meta: Option<Box<super::meta::MetaAsk>>,
}

/// What to do once a key's read is decided.
enum Next {
    Nothing,
    Reread(Option<i64>),
    /// Read again after this long.
    Retry(Duration, Option<i64>),
    Write(Vec<Vec<u8>>, i64),
    Repair(Vec<(usize, super::read::Fix)>, Vec<Vec<u8>>, i64),
}

/// The TTL `mg ... t` reported (-1: none) as an exptime to store with.
pub(crate) fn ttl_exptime(ttl: i64) -> i64 {
    const MONTH: i64 = 30 * 24 * 3600;
    match ttl {
        t if t < 0 => 0,
        0 => 1,
        t if t > MONTH => {
            ((Versioner::now_ms() / 1000).min(i64::MAX as u64) as i64).saturating_add(t)
        }
        t => t,
    }
}

/// One server's answer to a read's `mg`.
fn got<'a>(bytes: &'a [u8], r: &Reply) -> Got<'a> {
    match r {
        Reply::Meta {
            status: MetaStatus::Va,
            flags,
            data: Some(d),
        } => {
            let (ttl, cas) = meta_ttl_cas(bytes.get(flags.clone()).unwrap_or(&[]));
            match bytes.get(d.clone()) {
                Some(item) => Got::Item { item, ttl, cas },
                None => Got::Failed,
            }
        }
        Reply::Meta {
            status: MetaStatus::En,
            ..
        } => Got::Missing,
        _ => Got::Failed,
    }
}

/// `t` and `c` from an `mg` reply's flags.
fn meta_ttl_cas(flags: &[u8]) -> (i64, u64) {
    let (mut ttl, mut cas) = (-1, 0);
    for t in flags.split(|&c| c == b' ') {
        let Some((&f, v)) = t.split_first() else {
            continue;
        };
        let v = std::str::from_utf8(v).unwrap_or("");
        match f {
            b't' => ttl = v.parse().unwrap_or(-1),
            b'c' => cas = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (ttl, cas)
}

impl Worker {
    pub(crate) fn ec_geom(&self, pool: usize) -> Option<Geometry> {
        self.pools.get(pool)?.ec.as_ref().map(|e| e.geom)
    }

    fn ec_key(&self, pool: usize, key: &[u8], g: &Geometry) -> EcKey {
        let mut servers = Vec::with_capacity(g.n());
        self.pools[pool]
            .placement
            .servers_for(key, g.n(), &mut servers);
        EcKey {
            key: key.to_vec(),
            servers,
            read: None,
            outcome: None,
            write: None,
            held: None,
            tries: 0,
            waiting: None,
            retrying: false,
            touch: None,
        }
    }

    pub(crate) fn ec_op(
        &self,
        pool: usize,
        cmd: EcCmd,
        keys: &[&[u8]],
        barrier: bool,
        noreply: bool,
    ) -> Option<EcOp> {
        let g = self.ec_geom(pool)?;
        Some(EcOp {
            cmd,
            keys: keys.iter().map(|k| self.ec_key(pool, k, &g)).collect(),
            barrier,
            noreply,
            finished: false,
            written: 0,
            meta: None,
        })
    }

    pub(crate) fn ec_start(&mut self, idx: Key, op: EcOp) -> Option<ReplyTo> {
        let barrier = op.barrier;
        let to = self.push_slot(idx, SlotKind::Ec(Box::new(op)))?;
        if barrier {
            if let Some(c) = self.clients.get_mut(idx) {
                c.ec_wait += 1;
            }
        }
        Some(to)
    }

    /// get/gets/gat/gats of `keys`.
    pub(crate) fn ec_get(
        &mut self,
        idx: Key,
        pool: usize,
        kind: GetKind,
        exptime: i64,
        keys: Keys<'_>,
    ) {
        let ks: Vec<&[u8]> = keys.collect();
        let Some(op) = self.ec_op(pool, EcCmd::Get(kind), &ks, false, false) else {
            return;
        };
        let Some(to) = self.ec_start(idx, op) else {
            return;
        };
        let touch = matches!(kind, GetKind::Gat | GetKind::Gats).then_some(exptime);
        for ki in 0..ks.len() {
            self.ec_send_reads(to, pool, ki, touch);
        }
        self.ec_progress(to);
    }

    /// set/add/replace/cas (append/prepend refused).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ec_store(
        &mut self,
        idx: Key,
        pool: usize,
        kind: StoreKind,
        key: &[u8],
        flags: u32,
        exptime: i64,
        cas: u64,
        data: &[u8],
        noreply: bool,
    ) {
        let mode = match kind {
            StoreKind::Set => Mode::Set,
            StoreKind::Add => Mode::Add,
            StoreKind::Replace => Mode::Replace,
            StoreKind::Cas => Mode::Cas(cas),
            StoreKind::Append | StoreKind::Prepend => {
                if !noreply {
                    self.answer(idx, UNSUPPORTED);
                }
                return;
            }
        };
        let cmd = EcCmd::Store {
            mode,
            flags,
            exptime,
            data: data.to_vec(),
        };
        let read_first = mode != Mode::Set;
        let Some(op) = self.ec_op(pool, cmd, &[key], read_first, noreply) else {
            return;
        };
        let Some(to) = self.ec_start(idx, op) else {
            return;
        };
        if read_first {
            self.ec_send_reads(to, pool, 0, None);
        } else {
            let (shards, exptime) = self.ec_store_shards(to, pool);
            self.ec_send_writes(to, pool, 0, shards, exptime);
        }
        self.ec_progress(to);
    }

    /// delete: the read (to answer DELETED or NOT_FOUND) and the tombstones
    /// go out together, so a request pipelined after it sees it.
    pub(crate) fn ec_delete(&mut self, idx: Key, pool: usize, key: &[u8], noreply: bool) {
        let Some(g) = self.ec_geom(pool) else { return };
        let Some(op) = self.ec_op(pool, EcCmd::Delete(None), &[key], false, noreply) else {
            return;
        };
        let Some(to) = self.ec_start(idx, op) else {
            return;
        };
        self.ec_delete_now(to, pool, &g);
    }

    /// Send a delete's read and its tombstones.
    pub(crate) fn ec_delete_now(&mut self, to: ReplyTo, pool: usize, g: &Geometry) {
        self.ec_send_reads(to, pool, 0, None);
        let stones = self.ec_tombstones(to, pool, g);
        self.ec_send_writes(to, pool, 0, stones, 0);
        self.ec_progress(to);
    }

    /// touch: a read that also sets the TTL on every server.
    pub(crate) fn ec_touch(
        &mut self,
        idx: Key,
        pool: usize,
        key: &[u8],
        exptime: i64,
        noreply: bool,
    ) {
        let Some(op) = self.ec_op(pool, EcCmd::Touch, &[key], false, noreply) else {
            return;
        };
        let Some(to) = self.ec_start(idx, op) else {
            return;
        };
        self.ec_send_reads(to, pool, 0, Some(exptime));
        self.ec_progress(to);
    }

    pub(crate) fn ec_send_reads(
        &mut self,
        to: ReplyTo,
        pool: usize,
        ki: usize,
        touch: Option<i64>,
    ) {
        let (k, m) = match self.ec_geom(pool) {
            Some(g) => (usize::from(g.k), usize::from(g.m)),
            None => return,
        };
        let (key, servers) = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) => match op.keys.get_mut(ki) {
                Some(ek) => {
                    ek.read = Some(KeyRead::new(&ek.key, k, m));
                    ek.tries = ek.tries.saturating_add(1);
                    ek.touch = touch;
                    (ek.key.clone(), ek.servers.clone())
                }
                None => return,
            },
            _ => return,
        };
        let mut line = Vec::with_capacity(key.len() + 32);
        line.extend_from_slice(b"mg ");
        line.extend_from_slice(&key);
        line.extend_from_slice(b" v t c");
        if let Some(e) = touch {
            line.extend_from_slice(format!(" T{e}").as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        let mut failed = Vec::new();
        for pos in 0..k + m {
            let Some(&s) = servers.get(pos) else {
                failed.push(pos);
                continue;
            };
            if self.pools[pool].servers[s].health.is_ejected() {
                failed.push(pos);
                continue;
            }
            let what = What::Ec {
                key: ki as u32,
                pos: pos as u8,
                write: false,
            };
            if self
                .send(pool, s, &line, Some(Pending::new(to, what, None)))
                .is_err()
            {
                failed.push(pos);
            }
        }
        if let Some(SlotKind::Ec(op)) = self.slot_kind(to) {
            if let Some(r) = op.keys.get_mut(ki).and_then(|ek| ek.read.as_mut()) {
                for pos in failed {
                    r.fail(pos);
                }
            }
        }
    }

    /// A server answered part of an erasure-coded request.
    pub(crate) fn ec_reply(
        &mut self,
        to: ReplyTo,
        ki: u32,
        pos: u8,
        write: bool,
        bytes: &[u8],
        r: &Reply,
    ) {
        let op = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) if !op.finished => op,
            _ => {
                // Answered already: a read's late answers may still show
                // shards to repair.
                if !write {
                    self.ec_tail_answer(to, ki, usize::from(pos), got(bytes, r));
                }
                return;
            }
        };
        let Some(ek) = op.keys.get_mut(ki as usize) else {
            return;
        };
        if write {
            let stored = matches!(r, Reply::Stored);
            let refused = matches!(r, Reply::Exists | Reply::NotFound | Reply::NotStored);
            if let Some(t) = ek.write.as_mut() {
                t.replied += 1;
                t.stored += u32::from(stored);
                t.conflicts += u32::from(refused);
            }
            self.ec_lead_answered(to, ki as usize, usize::from(pos), stored, refused);
        } else if let Some(rd) = ek.read.as_mut() {
            rd.take(usize::from(pos), got(bytes, r));
        }
        self.ec_progress(to);
    }

    /// The connection a part was queued on failed.
    pub(crate) fn ec_failed(&mut self, to: ReplyTo, ki: u32, pos: u8, write: bool) {
        if let Some(SlotKind::Ec(op)) = self.slot_kind(to) {
            if op.finished {
                if !write {
                    self.ec_tail_answer(to, ki, usize::from(pos), Got::Failed);
                }
                return;
            }
            if let Some(ek) = op.keys.get_mut(ki as usize) {
                if write {
                    if let Some(t) = ek.write.as_mut() {
                        t.replied += 1;
                    }
                } else if let Some(rd) = ek.read.as_mut() {
                    rd.fail(usize::from(pos));
                }
            }
        }
        if write {
            self.ec_lead_answered(to, ki as usize, usize::from(pos), false, false);
        }
        self.ec_progress(to);
    }

    /// Decide what can be decided: reads whose outcome is known start
    /// their write or repair; a finished request is answered.
    pub(crate) fn ec_progress(&mut self, to: ReplyTo) {
        let Some(pool) = self.client_pool(to) else {
            return;
        };
        let nkeys = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) if !op.finished => op.keys.len(),
            _ => return,
        };
        for ki in 0..nkeys {
            let next = self.ec_decide(to, pool, ki);
            match next {
                Next::Nothing => {}
                Next::Reread(touch) => self.ec_send_reads(to, pool, ki, touch),
                Next::Retry(after, touch) => {
                    let at = Instant::now() + after;
                    self.ec_retry.push((at, to, ki, touch));
                }
                Next::Write(shards, exptime) => self.ec_send_writes(to, pool, ki, shards, exptime),
                Next::Repair(fixes, shards, exptime) => {
                    let target = match self.slot_kind(to) {
                        Some(SlotKind::Ec(op)) => op
                            .keys
                            .get(ki)
                            .map(|ek| (ek.key.clone(), ek.servers.clone())),
                        _ => None,
                    };
                    if let Some((key, servers)) = target {
                        self.ec_repair(pool, &key, &servers, &fixes, &shards, exptime);
                    }
                }
            }
        }
        self.ec_finish(to);
    }

    /// Send the reads whose `Retry` is due.
    pub(crate) fn ec_retry_due(&mut self, now: Instant) {
        if self.ec_retry.is_empty() {
            return;
        }
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ec_retry)
            .into_iter()
            .partition(|r| r.0 <= now);
        self.ec_retry = wait;
        for (_, to, ki, touch) in due {
            let Some(pool) = self.client_pool(to) else {
                continue;
            };
            match self.slot_kind(to) {
                Some(SlotKind::Ec(op)) if !op.finished => match op.keys.get_mut(ki) {
                    Some(ek) => ek.retrying = false,
                    None => continue,
                },
                _ => continue,
            }
            self.ec_send_reads(to, pool, ki, touch);
            self.ec_progress(to);
        }
    }

    /// Key `ki`'s read, if just decided: its outcome recorded and stats
    /// counted, and what follows it.
    fn ec_decide(&mut self, to: ReplyTo, pool: usize, ki: usize) -> Next {
        let early_ok = self.ec_early_ok;
        let mut later = false;
        let next = self.ec_decide_now(to, pool, ki, early_ok, &mut later);
        if later {
            self.ec_later.push(to);
        }
        next
    }

    /// Decide an erasure-coded read on K items of one write only once the
    /// worker's batch of events is in: the other answers often are in the
    /// same batch, and with all K data shards among them the value needs
    /// no Reed-Solomon reconstruction (about 10-20 us for 16 KB). The
    /// client's answer goes out in the same flush either way.
    pub(crate) fn ec_run_later(&mut self) {
        if self.ec_later.is_empty() {
            return;
        }
        self.ec_early_ok = true;
        for to in std::mem::take(&mut self.ec_later) {
            self.ec_progress(to);
        }
        self.ec_early_ok = false;
    }

    /// How long a conditional write waits for a newer write it saw part
    /// of. Sent to every server at once, a conditional write racing with
    /// one that already won its lead position (`ec_lead`) could split the
    /// servers with it and a third writer so that no write has K items
    /// and the value all three read is gone; so the newer write is given
    /// time to land, which it does within two server timeouts (its lead,
    /// then the rest) unless its proxy died or its servers failed. An
    /// older one, or one waited for this long, is overwritten.
    fn ec_settle(&self, pool: usize) -> Duration {
        self.pools
            .get(pool)
            .and_then(|p| p.conf.timeout)
            .map_or(SETTLE_WITHOUT_TIMEOUT, |t| t.saturating_mul(2))
    }

    fn ec_decide_now(
        &mut self,
        to: ReplyTo,
        pool: usize,
        ki: usize,
        early_ok: bool,
        later: &mut bool,
    ) -> Next {
        let settle = self.ec_settle(pool);
        let (key, outcome, shards_read, degraded, repairs) = {
            let Some(SlotKind::Ec(op)) = self.slot_kind(to) else {
                return Next::Nothing;
            };
            // A conditional write needs every server's CAS unique.
            let wait_all = op.barrier;
            let Some(ek) = op.keys.get_mut(ki) else {
                return Next::Nothing;
            };
            if ek.outcome.is_some() || ek.retrying {
                return Next::Nothing;
            }
            let Some(rd) = ek.read.as_ref() else {
                return Next::Nothing;
            };
            let Some(o) = rd.decide(wait_all, early_ok) else {
                if !early_ok && rd.may_decide_early(wait_all) {
                    *later = true;
                }
                return Next::Nothing;
            };
            // Every server answered and no version can be decoded: with
            // writes racing, each server may show a different one. Ask
            // again before calling it a miss.
            if o == Outcome::Undecodable && ek.tries < READ_TRIES {
                return Next::Reread(ek.touch);
            }
            // A conditional write that sees part of a newer write waits
            // for it to land (see `ec_settle`).
            if let Outcome::Hit { version, .. } | Outcome::Deleted { version, .. } = &o {
                if let Some(newer) = rd.newer_than(*version).filter(|_| wait_all) {
                    let now = Instant::now();
                    let since = *ek.waiting.get_or_insert(now);
                    let young = Versioner::now_ms().saturating_sub(Versioner::ms_of(newer))
                        < settle.as_millis() as u64;
                    if young && now.duration_since(since) < settle {
                        ek.retrying = true;
                        let after = RETRY_AFTER * (1 << ek.tries.saturating_sub(1).min(6));
                        return Next::Retry(after, ek.touch);
                    }
                }
            }
            let (degraded, repairs) = match &o {
                Outcome::Hit { version, .. } | Outcome::Deleted { version, .. } => {
                    (rd.degraded(*version), rd.repairs(*version))
                }
                _ => (false, Vec::new()),
            };
            (ek.key.clone(), o, rd.shards_read(), degraded, repairs)
        };
        let es = &self.stats.pools[pool].ec;
        es.shards_read.fetch_add(shards_read, Relaxed);
        if degraded {
            es.degraded_reads.fetch_add(1, Relaxed);
        }
        if outcome == Outcome::Undecodable {
            es.decode_failures.fetch_add(1, Relaxed);
        }
        let next = self.ec_next(to, pool, &key, &outcome, repairs);
        // Recorded only now, so that the value is not copied to decide.
        if let Some(SlotKind::Ec(op)) = self.slot_kind(to) {
            if let Some(ek) = op.keys.get_mut(ki) {
                ek.outcome = Some(outcome);
            }
        }
        next
    }

    /// What follows a read that found `outcome`: the request's own write,
    /// repairs of the positions in `repairs`, or nothing.
    fn ec_next(
        &mut self,
        to: ReplyTo,
        pool: usize,
        key: &[u8],
        outcome: &Outcome,
        repairs: Vec<(usize, super::read::Fix)>,
    ) -> Next {
        let hit = matches!(outcome, Outcome::Hit { .. });
        let write = match self.slot_kind(to) {
            Some(SlotKind::Ec(op)) => match &op.cmd {
                EcCmd::Store { mode, .. } => match (mode, outcome) {
                    (Mode::Set, _) => false,
                    (Mode::Add, _) => !hit,
                    (Mode::Replace, _) => hit,
                    (Mode::Cas(c), Outcome::Hit { version, .. }) => c == version,
                    (Mode::Cas(_), _) => false,
                },
                // Its tombstones went out with the read.
                EcCmd::Delete(None) => return Next::Nothing,
                EcCmd::Delete(Some(c)) => match outcome {
                    Outcome::Hit { version, .. } if version == c => {
                        let Some(g) = self.ec_geom(pool) else {
                            return Next::Nothing;
                        };
                        return Next::Write(self.ec_tombstones(to, pool, &g), 0);
                    }
                    _ => false,
                },
                EcCmd::Get(_) | EcCmd::Touch => false,
            },
            _ => return Next::Nothing,
        };
        if write {
            let (shards, exptime) = self.ec_store_shards(to, pool);
            return Next::Write(shards, exptime);
        }
        if repairs.is_empty() {
            return Next::Nothing;
        }
        match super::repair::shards_for(key, outcome) {
            Some((shards, exptime)) => Next::Repair(repairs, shards, exptime),
            None => Next::Nothing,
        }
    }

    /// Answer the request if everything it waits for is in.
    fn ec_finish(&mut self, to: ReplyTo) {
        let mut out = Vec::new();
        let barrier;
        let noreply;
        {
            let Some(SlotKind::Ec(op)) = self.slot_kind(to) else {
                return;
            };
            if op.finished {
                return;
            }
            let done = op.keys.iter().all(|ek| {
                let read_done = ek.read.is_none() || ek.outcome.is_some();
                let write_done = match &ek.write {
                    Some(t) => t.decided(),
                    None => true,
                };
                read_done && write_done
            });
            if !done {
                return;
            }
            op.finished = true;
            barrier = op.barrier;
            noreply = op.noreply;
            match &op.cmd {
                _ if op.meta.is_some() => super::meta::answer(op, &mut out),
                EcCmd::Get(kind) => {
                    for ek in &op.keys {
                        if let Some(Outcome::Hit {
                            version,
                            flags,
                            data,
                            ..
                        }) = &ek.outcome
                        {
                            out.extend_from_slice(b"VALUE ");
                            out.extend_from_slice(&ek.key);
                            out.extend_from_slice(format!(" {flags} {}", data.len()).as_bytes());
                            if kind.returns_cas() {
                                out.extend_from_slice(format!(" {version}").as_bytes());
                            }
                            out.extend_from_slice(b"\r\n");
                            out.extend_from_slice(data);
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(b"END\r\n");
                }
                EcCmd::Touch => {
                    let hit = matches!(op.keys[0].outcome, Some(Outcome::Hit { .. }));
                    out.extend_from_slice(if hit {
                        b"TOUCHED\r\n"
                    } else {
                        b"NOT_FOUND\r\n"
                    });
                }
                EcCmd::Delete(_) => {
                    let ek = &op.keys[0];
                    let hit = matches!(ek.outcome, Some(Outcome::Hit { .. }));
                    let ok = ek.write.as_ref().is_some_and(Tally::ok);
                    out.extend_from_slice(match (hit, ok) {
                        (false, _) => b"NOT_FOUND\r\n",
                        (true, true) => b"DELETED\r\n",
                        (true, false) => {
                            b"SERVER_ERROR erasure-coded delete reached too few servers\r\n"
                        }
                    });
                }
                EcCmd::Store { mode, .. } => {
                    let ek = &op.keys[0];
                    let hit = matches!(ek.outcome, Some(Outcome::Hit { .. }));
                    out.extend_from_slice(match (&ek.write, mode) {
                        (Some(t), _) if t.ok() => b"STORED\r\n",
                        (Some(t), Mode::Cas(_)) if t.lost() => b"EXISTS\r\n",
                        (Some(t), _) if t.lost() => b"NOT_STORED\r\n",
                        (Some(_), _) => {
                            b"SERVER_ERROR erasure-coded write reached too few servers\r\n"
                        }
                        (None, Mode::Cas(_)) if hit => b"EXISTS\r\n",
                        (None, Mode::Cas(_)) => b"NOT_FOUND\r\n",
                        (None, _) => b"NOT_STORED\r\n",
                    });
                }
            }
        }
        if noreply {
            out.clear();
        }
        self.ec_keep_tails(to);
        self.complete(to, &out);
        if barrier {
            if let Some(c) = self.clients.get_mut(to.client) {
                c.ec_wait = c.ec_wait.saturating_sub(1);
            }
            self.mark_client(to.client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_flags_and_ttls() {
        assert_eq!(meta_ttl_cas(b"t-1 c42"), (-1, 42));
        assert_eq!(meta_ttl_cas(b"c7 t300"), (300, 7));
        assert_eq!(meta_ttl_cas(b""), (-1, 0));
        assert_eq!(meta_ttl_cas(b"tx cz"), (-1, 0));
        assert_eq!(ttl_exptime(-1), 0);
        assert_eq!(ttl_exptime(0), 1);
        assert_eq!(ttl_exptime(60), 60);
        assert!(ttl_exptime(31 * 24 * 3600) > 1_700_000_000);
        // A server's nonsense cannot overflow.
        assert_eq!(ttl_exptime(i64::MAX), i64::MAX);
    }
}
