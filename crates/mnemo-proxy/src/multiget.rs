//! Multi-key gets: split by server, sent as one request per server, and
//! reassembled in the client's key order (repeats and misses included)
//! when every part has answered or failed over.

use crate::backend::{Pending, What};
use crate::client::{ReplyTo, SlotKind};
use crate::pool::{INVALIDATING, NO_LIVE};
use crate::worker::Worker;
use mnemo_net::Key;
use mnemo_protocol::client::{self as pclient, Reply};
use mnemo_protocol::text::{GetKind, Keys};
use std::sync::atomic::Ordering::Relaxed;

pub(crate) struct Part {
    pub(crate) server: usize,
    pub(crate) keys: Vec<u32>,
    pub(crate) cursor: usize,
    pub(crate) on_backup: bool,
}

pub(crate) struct MultiGet {
    pub(crate) kind: GetKind,
    pub(crate) exptime: i64,
    pub(crate) keys: Vec<u8>,
    pub(crate) key_at: Vec<(u32, u32)>,
    pub(crate) found: Vec<Option<(u32, u32)>>,
    pub(crate) data: Vec<u8>,
    pub(crate) parts: Vec<Part>,
    pub(crate) left: u32,
    pub(crate) error: Option<Vec<u8>>,
}

impl MultiGet {
    pub(crate) fn key(&self, i: u32) -> &[u8] {
        let (s, e) = self.key_at[i as usize];
        &self.keys[s as usize..e as usize]
    }

    pub(crate) fn encode_part(&self, part: usize, out: &mut Vec<u8>) {
        let keys = self.parts[part].keys.iter().map(|&k| self.key(k));
        match self.kind {
            GetKind::Get => pclient::encode_get(out, keys),
            GetKind::Gets => pclient::encode_gets(out, keys),
            GetKind::Gat => pclient::encode_gat(out, false, self.exptime, keys),
            GetKind::Gats => pclient::encode_gat(out, true, self.exptime, keys),
        }
    }

    /// Record the items of one part's reply.
    pub(crate) fn absorb(&mut self, part: usize, bytes: &[u8]) {
        self.data.reserve(bytes.len());
        let mut pos = 0;
        while let Ok(Some((r, used))) = pclient::parse_reply(&bytes[pos..]) {
            if let Reply::Value { key, .. } = r {
                let k = &bytes[pos + key.start..pos + key.end];
                let p = &self.parts[part];
                let mut c = p.cursor;
                while c < p.keys.len() && self.key(p.keys[c]) != k {
                    c += 1;
                }
                if c < p.keys.len() {
                    let ki = p.keys[c] as usize;
                    let start = self.data.len() as u32;
                    self.data.extend_from_slice(&bytes[pos..pos + used]);
                    self.found[ki] = Some((start, self.data.len() as u32));
                    self.parts[part].cursor = c + 1;
                }
            }
            pos += used;
            if pos >= bytes.len() {
                break;
            }
        }
    }

    pub(crate) fn assemble(&self, out: &mut Vec<u8>) {
        if let Some(e) = &self.error {
            out.extend_from_slice(e);
            return;
        }
        for (s, e) in self.found.iter().flatten() {
            out.extend_from_slice(&self.data[*s as usize..*e as usize]);
        }
        out.extend_from_slice(b"END\r\n");
    }
}

impl Worker {
    pub(crate) fn get_request(
        &mut self,
        idx: Key,
        pool: usize,
        line: &[u8],
        kind: GetKind,
        exptime: i64,
        keys: Keys<'_>,
    ) {
        let backup = self.pools[pool].backup;
        let mut servers = std::mem::take(&mut self.scratch);
        servers.clear();
        for k in keys {
            servers.push(self.pick(pool, k).unwrap_or(usize::MAX));
        }
        let first = servers.first().copied().unwrap_or(usize::MAX);
        if backup.is_none() && servers.iter().all(|&s| s == first) {
            // All keys on one server: forward the line as it came.
            self.scratch = servers;
            let Some(to) = self.push_slot(idx, SlotKind::Simple(None)) else {
                return;
            };
            if first == usize::MAX {
                self.complete(to, NO_LIVE);
                return;
            }
            let p = Pending::new(to, What::GetRaw, None);
            if let Err(msg) = self.send(pool, first, line, Some(p)) {
                self.stats.pools[pool].forward_error.fetch_add(1, Relaxed);
                self.complete(to, msg);
            }
            return;
        }
        // Split: one request per server, answers reassembled in key order.
        let mut mg = MultiGet {
            kind,
            exptime,
            keys: Vec::with_capacity(line.len()),
            key_at: Vec::with_capacity(servers.len()),
            found: vec![None; servers.len()],
            data: Vec::new(),
            parts: Vec::new(),
            left: 0,
            error: None,
        };
        for k in keys {
            let s = mg.keys.len() as u32;
            mg.keys.extend_from_slice(k);
            mg.key_at.push((s, mg.keys.len() as u32));
        }
        for (ki, &s) in servers.iter().enumerate() {
            match mg.parts.iter_mut().find(|p| p.server == s) {
                Some(p) => p.keys.push(ki as u32),
                None => mg.parts.push(Part {
                    server: s,
                    keys: vec![ki as u32],
                    cursor: 0,
                    on_backup: false,
                }),
            }
        }
        self.scratch = servers;
        let nparts = mg.parts.len();
        mg.left = nparts as u32;
        if nparts > 1 {
            self.stats.pools[pool]
                .fragments
                .fetch_add(nparts as u64, Relaxed);
        }
        let Some(to) = self.push_slot(idx, SlotKind::Multi(Box::new(mg))) else {
            return;
        };
        for part in 0..nparts {
            self.send_part(to, pool, part);
        }
    }

    /// Send part `part` of a multi-get to its server (in `pool`).
    pub(crate) fn send_part(&mut self, to: ReplyTo, pool: usize, part: usize) {
        let mut req = Vec::new();
        let server = match self.slot_kind(to) {
            Some(SlotKind::Multi(mg)) => {
                mg.encode_part(part, &mut req);
                mg.parts[part].server
            }
            _ => return,
        };
        let res = if server == usize::MAX {
            Err(NO_LIVE)
        } else {
            if self.pools[pool].servers[server].owes_replay() {
                self.replay_missed(pool, server, to);
            }
            // Reads wait out the invalidations on the backup (see `forward`).
            if self.read_gated(pool, server) {
                Err(INVALIDATING)
            } else {
                let p = Pending::new(to, What::GetPart(part as u32), None);
                self.send(pool, server, &req, Some(p))
            }
        };
        if let Err(msg) = res {
            self.part_failed(to, part, msg);
        }
    }

    /// A part of a multi-get failed: its keys go to the backup pool if
    /// there is one and they were not already there; otherwise the whole
    /// get answers with the error.
    pub(crate) fn part_failed(&mut self, to: ReplyTo, part: usize, msg: &[u8]) {
        let Some(pool) = self.client_pool(to) else {
            return;
        };
        let backup = self.pools.get(pool).and_then(|p| p.backup);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut new_parts = Vec::new();
        {
            let Some(SlotKind::Multi(mg)) = self.slot_kind(to) else {
                return;
            };
            let p = &mg.parts[part];
            if backup.is_some() && !p.on_backup {
                let kis = p.keys[p.cursor..].to_vec();
                for &k in &kis {
                    keys.push(mg.key(k).to_vec());
                }
                new_parts = kis;
            } else if mg.error.is_none() {
                mg.error = Some(msg.to_vec());
            }
        }
        if let (Some(b), false) = (backup, new_parts.is_empty()) {
            let servers: Vec<usize> = keys
                .iter()
                .map(|k| self.pick(b, k).unwrap_or(usize::MAX))
                .collect();
            let mut first_new = 0;
            let mut added = 0;
            if let Some(SlotKind::Multi(mg)) = self.slot_kind(to) {
                first_new = mg.parts.len();
                for (i, &ki) in new_parts.iter().enumerate() {
                    let s = servers[i];
                    match mg.parts[first_new..].iter_mut().find(|p| p.server == s) {
                        Some(p) => p.keys.push(ki),
                        None => mg.parts.push(Part {
                            server: s,
                            keys: vec![ki],
                            cursor: 0,
                            on_backup: true,
                        }),
                    }
                }
                added = mg.parts.len() - first_new;
                mg.left += added as u32;
            }
            self.stats.pools[pool].backup_answers.fetch_add(1, Relaxed);
            for np in first_new..first_new + added {
                self.send_part(to, b, np);
            }
        }
        self.part_done(to);
    }

    /// One part of the multi-get `to` answered or failed over; the last
    /// one assembles the reply in key order.
    pub(crate) fn part_done(&mut self, to: ReplyTo) {
        let seq = to.seq;
        let Some(c) = self.client_for(to) else {
            return;
        };
        let Some(slot) = c.slot_mut(seq) else { return };
        let SlotKind::Multi(mg) = &mut slot.kind else {
            return;
        };
        mg.left = mg.left.saturating_sub(1);
        if mg.left > 0 {
            return;
        }
        if slot.bin.is_some() {
            let mut text = Vec::new();
            mg.assemble(&mut text);
            c.complete(seq, &text);
        } else if seq == c.base {
            if let Some(s) = c.slots.pop_front() {
                c.base += 1;
                if let SlotKind::Multi(mg) = &s.kind {
                    mg.assemble(&mut c.wbuf);
                }
                c.drain_ready();
            }
        } else if let Some(slot) = c.slot_mut(seq) {
            if let SlotKind::Multi(mg) = &slot.kind {
                mg.assemble(&mut slot.out);
            }
            slot.done = true;
        }
        self.mark_client(to.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multiget(keys: &[&str], parts: &[(usize, &[u32])]) -> MultiGet {
        let mut mg = MultiGet {
            kind: GetKind::Get,
            exptime: 0,
            keys: Vec::new(),
            key_at: Vec::new(),
            found: vec![None; keys.len()],
            data: Vec::new(),
            parts: Vec::new(),
            left: parts.len() as u32,
            error: None,
        };
        for k in keys {
            let s = mg.keys.len() as u32;
            mg.keys.extend_from_slice(k.as_bytes());
            mg.key_at.push((s, mg.keys.len() as u32));
        }
        for (server, ks) in parts {
            mg.parts.push(Part {
                server: *server,
                keys: ks.to_vec(),
                cursor: 0,
                on_backup: false,
            });
        }
        mg
    }

    #[test]
    fn multiget_reassembles_in_key_order_with_misses_and_repeats() {
        // Keys a b c a d, split as server 0: a c a; server 1: b d.
        let mut mg = multiget(&["a", "b", "c", "a", "d"], &[(0, &[0, 2, 3]), (1, &[1, 4])]);
        let mut req = Vec::new();
        mg.encode_part(0, &mut req);
        assert_eq!(req, b"get a c a\r\n");
        // Server 1 answers first; "b" is a miss.
        mg.absorb(1, b"VALUE d 0 1\r\nD\r\nEND\r\n");
        // Server 0: c is a miss, a comes twice (memcached repeats it).
        mg.absorb(0, b"VALUE a 1 1\r\nA\r\nVALUE a 1 1\r\nA\r\nEND\r\n");
        let mut out = Vec::new();
        mg.assemble(&mut out);
        assert_eq!(
            out,
            b"VALUE a 1 1\r\nA\r\nVALUE a 1 1\r\nA\r\nVALUE d 0 1\r\nD\r\nEND\r\n".to_vec()
        );
        mg.error = Some(b"SERVER_ERROR x\r\n".to_vec());
        out.clear();
        mg.assemble(&mut out);
        assert_eq!(out, b"SERVER_ERROR x\r\n");
    }

    #[test]
    fn multiget_gat_parts() {
        let mut mg = multiget(&["x", "y"], &[(0, &[0, 1])]);
        mg.kind = GetKind::Gats;
        mg.exptime = 30;
        let mut req = Vec::new();
        mg.encode_part(0, &mut req);
        assert_eq!(req, b"gats 30 x y\r\n");
    }
}
