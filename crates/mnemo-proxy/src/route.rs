//! Routing: which servers a request goes to (one key's server, or every
//! server for `flush_all`), and which request a server's reply belongs to.

use crate::backend::{Pending, What};
use crate::client::{ReplyTo, SlotKind};
use crate::meta::{self, MetaCmd};
use crate::mirror::{cas_follow_up, Mirror};
use crate::pool::INVALIDATING;
use crate::worker::Worker;
use mnemo_net::Key;
use mnemo_protocol::client::{self as pclient, Reply};
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
        idx: Key,
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
            self.single(idx, pool, hkey, bytes, retry, quiet);
        } else if cmd == MetaCmd::Set
            && self.pools[pool].backup.is_some()
            && meta_compares_cas(bytes)
        {
            // Like text cas: the primary decides (its CAS uniques are the
            // ones the client holds); the backup's copy is then invalidated
            // rather than mirrored, since the same compare would fail there.
            let deferred = pclient::valid_key(hkey).then(|| {
                let mut del = Vec::with_capacity(hkey.len() + 24);
                pclient::encode_delete(&mut del, hkey, true);
                (hkey.to_vec(), del)
            });
            let mirror = Box::new(Mirror {
                deferred,
                ..Default::default()
            });
            self.single(idx, pool, hkey, bytes, Some(mirror), quiet);
        } else {
            self.keyed(idx, pool, hkey, bytes, false, quiet);
        }
    }

    /// A request with one reply from `hkey`'s server in `pool` and nothing
    /// sent to the backup up front (`mirror` holds what may follow there).
    pub(crate) fn single(
        &mut self,
        idx: Key,
        pool: usize,
        hkey: &[u8],
        bytes: &[u8],
        mirror: Option<Box<Mirror>>,
        quiet: Option<MetaCmd>,
    ) {
        let Some(to) = self.push_slot(idx, SlotKind::Simple(mirror)) else {
            return;
        };
        if let Err(msg) = self.forward(pool, hkey, bytes, Pending::new(to, What::Single, quiet)) {
            self.primary_failed(to, msg);
        }
    }

    /// Queue `bytes` for `hkey`'s server in `pool`, its reply going where
    /// `p` says.
    pub(crate) fn forward(
        &mut self,
        pool: usize,
        hkey: &[u8],
        bytes: &[u8],
        p: Pending,
    ) -> Result<(), &'static [u8]> {
        let s = self.pick(pool, hkey)?;
        let backed = self.pools[pool].backup.is_some();
        if self.pools[pool].servers[s].gated() || (backed && self.read_gated(pool, s)) {
            if self.pools[pool].servers[s].owes_replay() {
                self.replay_missed(pool, s, p.to);
            }
            // A read could pass the deletes on another connection; it goes
            // to the backup until they are answered. A write may go on:
            // overtaking a delete of its key costs a miss, never a stale value.
            let read = matches!(self.slot_kind(p.to), Some(SlotKind::Simple(Some(m))) if m.retry.is_some());
            if read && self.read_gated(pool, s) {
                return Err(INVALIDATING);
            }
        }
        self.send(pool, s, bytes, Some(p))
    }

    /// Queue `bytes` for `hkey`'s server in `pool` with no reply expected;
    /// false if it could not be queued.
    pub(crate) fn forward_noreply(&mut self, pool: usize, hkey: &[u8], bytes: &[u8]) -> bool {
        let Ok(s) = self.pick(pool, hkey) else {
            return false;
        };
        if self.pools[pool].backup.is_none() {
            return self.send(pool, s, bytes, None).is_ok();
        }
        // Its connection may fail before the server reads it: keep the key
        // until a later reply on that connection shows it arrived.
        let Ok(b) = self.conn_for(pool, s) else {
            return false;
        };
        if self.send_on(b, pool, s, bytes, None).is_err() {
            return false;
        }
        if let Some(be) = self.backends.get_mut(b) {
            be.sent_noreply(hkey);
        }
        true
    }

    /// A single-key command other than a read: sent to the key's server and
    /// mirrored to the backup pool's server for the key when there is one.
    pub(crate) fn keyed(
        &mut self,
        idx: Key,
        pool: usize,
        hkey: &[u8],
        bytes: &[u8],
        noreply: bool,
        quiet: Option<MetaCmd>,
    ) {
        let backup = self.pools[pool].backup;
        if let Some(b) = backup.filter(|_| bytes.starts_with(b"cas ")) {
            let Some(then) = cas_follow_up(bytes, noreply) else {
                return;
            };
            if noreply {
                let _ = self.forward_noreply(pool, hkey, bytes);
                let _ = self.forward_noreply(b, hkey, &then);
            } else {
                let mirror = Box::new(Mirror {
                    deferred: Some((hkey.to_vec(), then)),
                    ..Default::default()
                });
                self.single(idx, pool, hkey, bytes, Some(mirror), quiet);
            }
            return;
        }
        if noreply {
            let reached = self.forward_noreply(pool, hkey, bytes);
            if let Some(b) = backup {
                self.forward_noreply(b, hkey, bytes);
                if !reached {
                    self.record_missed(pool, hkey);
                }
            }
            return;
        }
        let mirror = backup.map(|_| {
            Box::new(Mirror {
                missed_key: Some(hkey.to_vec()),
                ..Default::default()
            })
        });
        let Some(to) = self.push_slot(idx, SlotKind::Simple(mirror)) else {
            return;
        };
        let primary = self.forward(pool, hkey, bytes, Pending::new(to, What::Single, quiet));
        if let Some(b) = backup {
            self.mirror(to, b, hkey, bytes, quiet);
        }
        if let Err(msg) = primary {
            self.primary_failed(to, msg);
        }
    }

    /// flush_all: to every server of the pool and of its backup.
    pub(crate) fn fanout(&mut self, idx: Key, pool: usize, bytes: &[u8], noreply: bool) {
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
        let kind = SlotKind::Fanout {
            left: targets.len() as u32,
            err: None,
        };
        let Some(to) = self.push_slot(idx, kind) else {
            return;
        };
        for (p, s) in targets {
            let pend = Pending::new(to, What::Fanout, None);
            if let Err(msg) = self.send(p, s, bytes, Some(pend)) {
                self.fanout_reply(to, Some(msg));
            }
        }
    }

    pub(crate) fn fanout_reply(&mut self, to: ReplyTo, err: Option<&[u8]>) {
        let done = match self.slot_kind(to) {
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
            self.complete(to, &a);
        }
    }

    /// A server answered `p`: hand the reply to what the request was.
    pub(crate) fn on_reply(&mut self, p: Pending, bytes: &[u8], r: &Reply) {
        let to = p.to;
        let Some(pool) = self.client_pool(to) else {
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
                if self.primary_replied(to, pool, r) {
                    self.primary_failed(to, b"SERVER_ERROR server error, no backup answer\r\n");
                } else {
                    self.complete(to, out);
                }
            }
            What::Mirror => self.mirror_replied(to, pool, out),
            What::GetRaw => self.complete(to, bytes),
            What::GetPart(part) => {
                if r.is_error() {
                    self.part_failed(to, part as usize, bytes);
                } else {
                    if let Some(SlotKind::Multi(mg)) = self.slot_kind(to) {
                        mg.absorb(part as usize, bytes);
                    }
                    self.part_done(to);
                }
            }
            What::Ec { key, pos, write } => self.ec_reply(to, key, pos, write, bytes, r),
            What::Invalidate => {}
            What::Fanout => {
                let e = if matches!(r, Reply::Ok) {
                    None
                } else {
                    Some(bytes)
                };
                self.fanout_reply(to, e);
            }
        }
    }

    /// The connection `p` was queued on failed with `msg` before answering.
    pub(crate) fn pending_failed(&mut self, p: Pending, msg: &'static [u8]) {
        let to = p.to;
        match p.what {
            What::Single => self.primary_failed(to, msg),
            What::Mirror => self.mirror_failed(to),
            What::GetRaw => self.complete(to, msg),
            What::GetPart(part) => self.part_failed(to, part as usize, msg),
            What::Fanout => self.fanout_reply(to, Some(msg)),
            // fail_backend marked the server.
            What::Invalidate => {}
            What::Ec { key, pos, write } => self.ec_failed(to, key, pos, write),
        }
    }
}
