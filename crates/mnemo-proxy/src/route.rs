//! Routing: which servers a request goes to (one key's server, or every
//! server for `flush_all`), and which request a server's reply belongs to.

use crate::backend::{Pending, What};
use crate::client::SlotKind;
use crate::meta::{self, MetaCmd};
use crate::mirror::Mirror;
use crate::worker::Worker;
use mnemo_protocol::reply::{self, Reply};
use std::sync::atomic::Ordering::Relaxed;

/// Whether an `ms` request line carries a compare-CAS flag (`C<n>`).
pub(crate) fn meta_compares_cas(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .position(|&c| c == b'\n')
        .unwrap_or(bytes.len());
    bytes[..end]
        .split(|&c| c == b' ' || c == b'\r')
        .skip(3)
        .any(|t| t.first() == Some(&b'C'))
}

impl Worker {
    pub(crate) fn keyed_meta(
        &mut self,
        idx: usize,
        pool: usize,
        hkey: &[u8],
        bytes: &[u8],
        cmd: MetaCmd,
        quiet: Option<MetaCmd>,
    ) {
        if matches!(cmd, MetaCmd::Get | MetaCmd::Debug) {
            // A read: with a backup pool it may be retried there.
            let retry = self.pools[pool].backup.map(|_| {
                Box::new(Mirror {
                    retry: Some((hkey.to_vec(), bytes.to_vec())),
                    retry_quiet: quiet,
                    ..Default::default()
                })
            });
            let Some(c) = self.clients.get_mut(idx) else {
                return;
            };
            let seq = c.push_slot(SlotKind::Simple(retry));
            let cid = c.id;
            let p = self.pending(idx, cid, seq, What::Single, quiet);
            if let Err(msg) = self
                .pick(pool, hkey)
                .and_then(|s| self.send(pool, s, bytes, Some(p)))
            {
                self.primary_failed(idx, cid, seq, msg);
            }
        } else if cmd == MetaCmd::Set
            && self.pools[pool].backup.is_some()
            && meta_compares_cas(bytes)
        {
            // Like text cas: the primary decides (its CAS uniques are the
            // ones the client holds); the backup's copy is then invalidated
            // rather than mirrored, since the same compare would fail there.
            let deferred = reply::valid_key(hkey).then(|| {
                let mut del = Vec::with_capacity(hkey.len() + 24);
                reply::encode_delete(&mut del, hkey, true);
                (hkey.to_vec(), del)
            });
            let Some(c) = self.clients.get_mut(idx) else {
                return;
            };
            let mirror = Box::new(Mirror {
                deferred,
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
        } else {
            self.keyed(idx, pool, hkey, bytes, false, quiet);
        }
    }

    pub(crate) fn pending(
        &self,
        client: usize,
        cid: u64,
        seq: u64,
        what: What,
        quiet: Option<MetaCmd>,
    ) -> Pending {
        Pending {
            client,
            cid,
            seq,
            what,
            deadline: None,
            quiet,
        }
    }

    /// A single-key command other than a read: sent to the key's server and
    /// mirrored to the backup pool's server for the key when there is one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn keyed(
        &mut self,
        idx: usize,
        pool: usize,
        hkey: &[u8],
        bytes: &[u8],
        noreply: bool,
        quiet: Option<MetaCmd>,
    ) {
        let backup = self.pools[pool].backup;
        if backup.is_some() && bytes.starts_with(b"cas ") {
            self.keyed_cas(idx, pool, hkey, bytes, noreply, quiet);
            return;
        }
        if noreply {
            if let Ok(s) = self.pick(pool, hkey) {
                let _ = self.send(pool, s, bytes, None);
            }
            if let Some(b) = backup {
                if let Ok(s) = self.pick(b, hkey) {
                    let _ = self.send(b, s, bytes, None);
                }
            }
            return;
        }
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let mirror = backup.map(|_| Box::default());
        let seq = c.push_slot(SlotKind::Simple(mirror));
        let cid = c.id;
        let p = self.pending(idx, cid, seq, What::Single, quiet);
        let primary = self
            .pick(pool, hkey)
            .and_then(|s| self.send(pool, s, bytes, Some(p)));
        if let Some(b) = backup {
            let p = self.pending(idx, cid, seq, What::Mirror, quiet);
            if self
                .pick(b, hkey)
                .and_then(|s| self.send(b, s, bytes, Some(p)))
                .is_ok()
            {
                if let Some(SlotKind::Simple(Some(m))) = self.slot_kind(idx, cid, seq) {
                    m.pending = true;
                }
            }
        }
        if let Err(msg) = primary {
            self.primary_failed(idx, cid, seq, msg);
        }
    }

    /// flush_all: to every server of the pool and of its backup.
    pub(crate) fn fanout(&mut self, idx: usize, pool: usize, bytes: &[u8], noreply: bool) {
        let mut targets = Vec::new();
        for p in std::iter::once(pool).chain(self.pools[pool].backup) {
            for s in 0..self.pools[p].servers.len() {
                targets.push((p, s));
            }
        }
        if noreply {
            for (p, s) in targets {
                let _ = self.send(p, s, bytes, None);
            }
            return;
        }
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let cid = c.id;
        let seq = c.push_slot(SlotKind::Fanout {
            left: targets.len() as u32,
            err: None,
        });
        for (p, s) in targets {
            let pend = self.pending(idx, cid, seq, What::Fanout, None);
            if let Err(msg) = self.send(p, s, bytes, Some(pend)) {
                self.fanout_reply(idx, cid, seq, Some(msg));
            }
        }
    }

    pub(crate) fn fanout_reply(&mut self, idx: usize, cid: u64, seq: u64, err: Option<&[u8]>) {
        let done = match self.slot_kind(idx, cid, seq) {
            Some(SlotKind::Fanout { left, err: e }) => {
                *left = left.saturating_sub(1);
                if let (Some(m), None) = (err, &e) {
                    *e = Some(m.to_vec());
                }
                if *left == 0 {
                    Some(e.take().unwrap_or_else(|| b"OK\r\n".to_vec()))
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(a) = done {
            self.complete(idx, cid, seq, &a);
        }
    }

    pub(crate) fn on_reply(&mut self, p: Pending, bytes: &[u8], r: &Reply) {
        let (idx, cid, seq) = (p.client, p.cid, p.seq);
        let Some(pool) = self
            .clients
            .get(idx)
            .filter(|c| c.id == cid)
            .map(|c| c.pool)
        else {
            return;
        };
        if let Some(ps) = self.stats.pools.get(pool) {
            ps.responses.fetch_add(1, Relaxed);
            ps.response_bytes.fetch_add(bytes.len() as u64, Relaxed);
        }
        let suppressed = match (p.quiet, r) {
            (Some(cmd), Reply::Meta { status, .. }) => meta::quiet_suppresses(cmd, *status),
            _ => false,
        };
        let out: &[u8] = if suppressed { b"" } else { bytes };
        match p.what {
            What::Single => {
                let retryable = matches!(r, Reply::ServerError(_))
                    && matches!(self.slot_kind(idx, cid, seq), Some(SlotKind::Simple(Some(m))) if m.retry.is_some());
                let deferred = match self.slot_kind(idx, cid, seq) {
                    Some(SlotKind::Simple(Some(m))) => m.deferred.take(),
                    _ => None,
                };
                let stored = matches!(
                    r,
                    Reply::Stored
                        | Reply::Meta {
                            status: reply::MetaStatus::Hd,
                            ..
                        }
                );
                if let (Some((key, set)), true) = (deferred, stored) {
                    if let Some(b) = self.pools.get(pool).and_then(|p| p.backup) {
                        if let Ok(s) = self.pick(b, &key) {
                            let _ = self.send(b, s, &set, None);
                        }
                    }
                }
                if retryable {
                    self.primary_failed(
                        idx,
                        cid,
                        seq,
                        b"SERVER_ERROR server error, no backup answer\r\n",
                    );
                } else {
                    self.complete(idx, cid, seq, out);
                }
            }
            What::Mirror => {
                let mut answer = false;
                if let Some(SlotKind::Simple(Some(m))) = self.slot_kind(idx, cid, seq) {
                    m.pending = false;
                    if m.primary_failed.take().is_some() {
                        answer = true;
                    } else {
                        m.reply = Some(out.to_vec());
                    }
                }
                if answer {
                    self.stats.pools[pool].backup_answers.fetch_add(1, Relaxed);
                    self.complete(idx, cid, seq, out);
                }
            }
            What::GetRaw => self.complete(idx, cid, seq, bytes),
            What::GetPart(part) => {
                if r.is_error() {
                    self.part_failed(idx, cid, seq, part as usize, bytes);
                } else {
                    if let Some(SlotKind::Multi(mg)) = self.slot_kind(idx, cid, seq) {
                        mg.absorb(part as usize, bytes);
                    }
                    self.part_done(idx, cid, seq);
                }
            }
            What::Fanout => {
                let e = if matches!(r, Reply::Ok) {
                    None
                } else {
                    Some(bytes)
                };
                self.fanout_reply(idx, cid, seq, e);
            }
        }
    }

    pub(crate) fn pending_failed(&mut self, p: Pending, msg: &'static [u8]) {
        let (idx, cid, seq) = (p.client, p.cid, p.seq);
        match p.what {
            What::Single => self.primary_failed(idx, cid, seq, msg),
            What::Mirror => {
                let mut answer = None;
                if let Some(SlotKind::Simple(Some(m))) = self.slot_kind(idx, cid, seq) {
                    m.pending = false;
                    answer = m.primary_failed.take();
                }
                if let Some(a) = answer {
                    self.complete(idx, cid, seq, a);
                }
            }
            What::GetRaw => self.complete(idx, cid, seq, msg),
            What::GetPart(part) => self.part_failed(idx, cid, seq, part as usize, msg),
            What::Fanout => self.fanout_reply(idx, cid, seq, Some(msg)),
        }
    }
}
