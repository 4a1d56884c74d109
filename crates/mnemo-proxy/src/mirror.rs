//! The backup pool: writes mirrored to it, reads retried on it when the
//! primary fails, and `cas`, which the primary decides and the backup then
//! follows.

use crate::backend::What;
use crate::client::SlotKind;
use crate::meta::MetaCmd;
use crate::worker::Worker;
use mnemo_protocol::reply::{self};
use mnemo_protocol::text::{self, Request};
use std::sync::atomic::Ordering::Relaxed;

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
}

impl Worker {
    /// `cas` in a pool with a backup: the primary decides; the backup gets
    /// the new value as a plain `set` once the primary stored it (or an
    /// invalidating `delete` when the client asked for no reply and the
    /// outcome is unknown).
    pub(crate) fn keyed_cas(
        &mut self,
        idx: usize,
        pool: usize,
        hkey: &[u8],
        bytes: &[u8],
        noreply: bool,
        quiet: Option<MetaCmd>,
    ) {
        let Some(b) = self.pools[pool].backup else {
            return;
        };
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
            return;
        };
        let data_start = (line_end + 1).min(bytes.len());
        let data = &bytes[data_start..(data_start + n).min(bytes.len())];
        if noreply {
            if let Ok(s) = self.pick(pool, hkey) {
                let _ = self.send(pool, s, bytes, None);
            }
            let mut del = Vec::with_capacity(key.len() + 24);
            reply::encode_delete(&mut del, key, true);
            if let Ok(s) = self.pick(b, hkey) {
                let _ = self.send(b, s, &del, None);
            }
            return;
        }
        let mut set = Vec::with_capacity(data.len() + key.len() + 48);
        reply::encode_store(
            &mut set,
            reply::StoreCmd::Set,
            key,
            flags,
            exptime,
            data,
            true,
        );
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let mirror = Box::new(Mirror {
            deferred: Some((hkey.to_vec(), set)),
            ..Default::default()
        });
        let seq = c.push_slot(SlotKind::Simple(Some(mirror)));
        let cid = c.id;
        let p = self.pending(idx, cid, seq, What::Single, quiet);
        if let Err(msg) = self
            .pick(pool, hkey)
            .and_then(|s| self.send(pool, s, bytes, Some(p)))
        {
            self.primary_failed(idx, cid, seq, msg);
        }
    }

    /// The primary server of a single-reply request failed with `msg`:
    /// retry a read on the backup pool, answer a write from its mirror, or
    /// pass the error on.
    pub(crate) fn primary_failed(&mut self, idx: usize, cid: u64, seq: u64, msg: &'static [u8]) {
        let pool = match self.clients.get(idx).filter(|c| c.id == cid) {
            Some(c) => c.pool,
            None => return,
        };
        let mut answer: Option<Vec<u8>> = None;
        let mut retry = None;
        match self.slot_kind(idx, cid, seq) {
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
                let p = self.pending(idx, cid, seq, What::Single, quiet);
                if self
                    .pick(b, &hkey)
                    .and_then(|s| self.send(b, s, &bytes, Some(p)))
                    .is_ok()
                {
                    self.stats.pools[pool].backup_answers.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
        match answer {
            Some(a) => {
                self.stats.pools[pool].backup_answers.fetch_add(1, Relaxed);
                self.complete(idx, cid, seq, &a)
            }
            None => {
                self.stats.pools[pool].forward_error.fetch_add(1, Relaxed);
                self.complete(idx, cid, seq, msg)
            }
        }
    }
}
