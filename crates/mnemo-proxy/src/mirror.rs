//! The backup pool: writes mirrored to it, reads retried on it when the
//! primary fails, and `cas`, which the primary decides and the backup then
//! follows.

use crate::backend::{Pending, What};
use crate::client::{ReplyTo, SlotKind};
use crate::meta::MetaCmd;
use crate::worker::Worker;
use mnemo_protocol::client::{self as pclient, Reply};
use mnemo_protocol::text::{self, Request};
use std::sync::atomic::Ordering::Relaxed;

/// What the backup pool gets after a `cas` (`bytes`: the whole request):
/// the primary decides, since CAS uniques differ between the pools. With a
/// reply, a plain `set ... noreply` of the new value, sent once the primary
/// said STORED; with `noreply` the outcome is never known, so an
/// invalidating `delete ... noreply`, sent at once. `None` if `bytes` is
/// not a storage request.
pub(crate) fn cas_follow_up(bytes: &[u8], noreply: bool) -> Option<Vec<u8>> {
    let line_end = bytes
        .iter()
        .position(|&c| c == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Request::Store {
        key,
        flags,
        exptime,
        bytes: n,
        ..
    } = text::parse_line(line)
    else {
        return None;
    };
    if noreply {
        let mut del = Vec::with_capacity(key.len() + 24);
        pclient::encode_delete(&mut del, key, true);
        return Some(del);
    }
    let data_start = (line_end + 1).min(bytes.len());
    let data = &bytes[data_start..(data_start + n).min(bytes.len())];
    let mut set = Vec::with_capacity(data.len() + key.len() + 48);
    pclient::encode_store(
        &mut set,
        pclient::StoreCmd::Set,
        key,
        flags,
        exptime,
        data,
        true,
    );
    Some(set)
}

/// State of a request that may fall back on the backup pool.
#[derive(Default)]
pub(crate) struct Mirror {
    /// The mirrored write to the backup pool has not answered yet.
    pub(crate) pending: bool,
    /// Its answer, kept in case the primary fails.
    pub(crate) reply: Option<Vec<u8>>,
    /// The primary failed; answer with the mirror's reply when it comes.
    pub(crate) primary_failed: Option<&'static [u8]>,
    /// A read that may be re-sent to the backup pool if the primary fails:
    /// the request bytes, copied only for pools that have a backup.
    pub(crate) retry: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) retry_quiet: Option<MetaCmd>,
    /// For `cas` in a pool with a backup: (key, `set ... noreply` request)
    /// sent to the backup once the primary has said STORED. CAS uniques
    /// differ between the pools, so mirroring the `cas` itself would fail.
    pub(crate) deferred: Option<(Vec<u8>, Vec<u8>)>,
    /// A mirrored write's key: if the primary fails it, the primary must
    /// forget the key before it serves again.
    pub(crate) missed_key: Option<Vec<u8>>,
}

/// Keys listed per primary server before it is flushed on return instead.
const MAX_MISSED: usize = 100_000;

impl Worker {
    /// A write of `key` did not reach (or was not answered by) its primary
    /// server while the backup pool took it.
    pub(crate) fn record_missed(&mut self, pool: usize, key: &[u8]) {
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        if p.backup.is_none() {
            return;
        }
        // Pools with a backup keep ejected servers on the ring (see `pick`),
        // so this is the server the write was for.
        let Some(s) = p.placement.server_for(key) else {
            return;
        };
        let Some(srv) = p.servers.get_mut(s) else {
            return;
        };
        if srv.missed_all {
            return;
        }
        if srv.missed.len() >= MAX_MISSED {
            srv.missed = Vec::new();
            srv.missed_all = true;
        } else {
            srv.missed.push(key.to_vec());
        }
        self.sync_gate(pool, s);
    }

    /// Before `server` of `pool` gets anything else, delete from it what it
    /// missed (or flush it if that is unknown), so that a primary returning
    /// from an outage serves neither values older than writes acknowledged
    /// while it was away nor keys deleted meanwhile. The invalidations are
    /// tracked as requests (`What::Invalidate`) under `to`; if their
    /// connection breaks first, the server is marked to be flushed.
    pub(crate) fn replay_missed(&mut self, pool: usize, server: usize, to: ReplyTo) {
        self.replay_missed_inner(pool, server, to);
        self.sync_gate(pool, server);
    }

    fn replay_missed_inner(&mut self, pool: usize, server: usize, to: ReplyTo) {
        let Some(srv) = self
            .pools
            .get_mut(pool)
            .and_then(|p| p.servers.get_mut(server))
        else {
            return;
        };
        let all = std::mem::take(&mut srv.missed_all);
        let keys = std::mem::take(&mut srv.missed);
        let mut req = Vec::new();
        if all {
            req.extend_from_slice(b"flush_all\r\n");
            if self
                .send(
                    pool,
                    server,
                    &req,
                    Some(Pending::new(to, What::Invalidate, None)),
                )
                .is_err()
            {
                if let Some(srv) = self.pools[pool].servers.get_mut(server) {
                    srv.missed_all = true;
                }
            } else if let Some(srv) = self.pools[pool].servers.get_mut(server) {
                srv.invalidating += 1;
            }
            return;
        }
        for (i, k) in keys.iter().enumerate() {
            req.clear();
            pclient::encode_delete(&mut req, k, false);
            let p = Pending::new(to, What::Invalidate, None);
            if self.send(pool, server, &req, Some(p)).is_err() {
                if let Some(srv) = self.pools[pool].servers.get_mut(server) {
                    srv.missed.extend(keys[i..].iter().cloned());
                }
                return;
            }
            if let Some(srv) = self.pools[pool].servers.get_mut(server) {
                srv.invalidating += 1;
            }
        }
    }

    /// The primary server of a single-reply request failed with `msg`:
    /// retry a read on the backup pool, answer a write from its mirror, or
    /// pass the error on.
    pub(crate) fn primary_failed(&mut self, to: ReplyTo, msg: &'static [u8]) {
        let Some(pool) = self.client_pool(to) else {
            return;
        };
        let mut answer: Option<Vec<u8>> = None;
        let mut retry = None;
        let missed = match self.slot_kind(to) {
            Some(SlotKind::Simple(Some(m))) => m.missed_key.take(),
            _ => None,
        };
        if let Some(k) = missed {
            self.record_missed(pool, &k);
        }
        match self.slot_kind(to) {
            Some(SlotKind::Simple(Some(m))) => {
                if let Some(r) = m.retry.take() {
                    retry = Some((r, m.retry_quiet));
                } else if m.pending {
                    m.primary_failed = Some(msg);
                    return;
                } else if let Some(r) = m.reply.take() {
                    answer = Some(r);
                }
            }
            Some(_) => {}
            None => return,
        }
        if let Some(((hkey, bytes), quiet)) = retry {
            if let Some(b) = self.pools.get(pool).and_then(|p| p.backup) {
                let p = Pending::new(to, What::Single, quiet);
                if self.forward(b, &hkey, &bytes, p).is_ok() {
                    self.stats.pools[pool].backup_answers.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
        match answer {
            Some(a) => {
                self.stats.pools[pool].backup_answers.fetch_add(1, Relaxed);
                self.complete(to, &a)
            }
            None => {
                self.stats.pools[pool].forward_error.fetch_add(1, Relaxed);
                self.complete(to, msg)
            }
        }
    }

    /// Send a write on to the backup pool's server for `hkey`; its answer
    /// is kept in case the primary fails.
    pub(crate) fn mirror(
        &mut self,
        to: ReplyTo,
        backup: usize,
        hkey: &[u8],
        bytes: &[u8],
        quiet: Option<MetaCmd>,
    ) {
        let p = Pending::new(to, What::Mirror, quiet);
        if self.forward(backup, hkey, bytes, p).is_ok() {
            if let Some(SlotKind::Simple(Some(m))) = self.slot_kind(to) {
                m.pending = true;
            }
        }
    }

    /// The primary answered a single-reply request with `r`: a deferred
    /// `cas` follow-up goes to the backup once the primary stored it.
    /// Returns whether the answer is a server error on a read the backup
    /// may answer instead.
    pub(crate) fn primary_replied(&mut self, to: ReplyTo, pool: usize, r: &Reply) -> bool {
        let retryable = matches!(r, Reply::ServerError(_))
            && matches!(self.slot_kind(to), Some(SlotKind::Simple(Some(m))) if m.retry.is_some());
        let deferred = match self.slot_kind(to) {
            Some(SlotKind::Simple(Some(m))) => m.deferred.take(),
            _ => None,
        };
        let stored = matches!(
            r,
            Reply::Stored
                | Reply::Meta {
                    status: pclient::MetaStatus::Hd,
                    ..
                }
        );
        if let (Some((key, set)), true) = (deferred, stored) {
            if let Some(b) = self.pools.get(pool).and_then(|p| p.backup) {
                let _ = self.forward_noreply(b, &key, &set);
            }
        }
        retryable
    }

    /// The backup answered a mirrored write: the client's answer if the
    /// primary already failed, else kept for that case.
    pub(crate) fn mirror_replied(&mut self, to: ReplyTo, pool: usize, out: &[u8]) {
        let mut answer = false;
        if let Some(SlotKind::Simple(Some(m))) = self.slot_kind(to) {
            m.pending = false;
            if m.primary_failed.take().is_some() {
                answer = true;
            } else {
                m.reply = Some(out.to_vec());
            }
        }
        if answer {
            self.stats.pools[pool].backup_answers.fetch_add(1, Relaxed);
            self.complete(to, out);
        }
    }

    /// The mirrored write failed too: if the primary had failed, its error
    /// is the answer.
    pub(crate) fn mirror_failed(&mut self, to: ReplyTo) {
        let mut answer = None;
        if let Some(SlotKind::Simple(Some(m))) = self.slot_kind(to) {
            m.pending = false;
            answer = m.primary_failed.take();
        }
        if let Some(a) = answer {
            self.complete(to, a);
        }
    }
}
