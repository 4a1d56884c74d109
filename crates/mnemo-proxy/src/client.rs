//! The client side of a worker: accepting and closing client connections,
//! reading from them, and the per-client queue of slots that puts answers
//! back in request order however the servers' replies interleave.

use crate::binproto::{self, BinReq};
use crate::erasure::ops::EcOp;
use crate::mirror::Mirror;
use crate::multiget::MultiGet;
use crate::net::{fill, Fill};
use crate::worker::{token, Worker, CLIENT, READ_WRITE};
use mnemo_net::{Key, ReadBuf, Stream};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

/// A client that does not read its answers stops being read from once this
/// much is waiting to be written to it...
pub(crate) const CLIENT_HIGH_WATER: usize = 4 * 1024 * 1024;

/// ...or once this many of its requests are outstanding, so one client
/// cannot make the proxy buffer without bound.
pub(crate) const CLIENT_MAX_OUTSTANDING: usize = 16 * 1024;

/// Where an answer goes: slot `seq` of client `client`. The key is
/// generational, so once that client has closed (and its entry is reused)
/// late replies for it find nothing and are dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ReplyTo {
    pub(crate) client: Key,
    pub(crate) seq: u64,
}

/// What a slot waits for.
pub(crate) enum SlotKind {
    /// Answered by the worker itself.
    Local,
    /// One reply from one server; the Mirror exists only for pools with a
    /// backup, so the common path allocates nothing.
    Simple(Option<Box<Mirror>>),
    /// A multi-key get split over servers.
    Multi(Box<MultiGet>),
    /// A command sent to every server (flush_all).
    Fanout { left: u32, err: Option<Vec<u8>> },
    /// A request on an erasure-coded pool.
    Ec(Box<EcOp>),
}

pub(crate) struct Slot {
    pub(crate) done: bool,
    pub(crate) out: Vec<u8>,
    pub(crate) kind: SlotKind,
    /// Set for binary clients: the text answer is translated on completion.
    pub(crate) bin: Option<BinReq>,
}

pub(crate) struct ClientConn {
    pub(crate) sock: Stream,
    pub(crate) pool: usize,
    pub(crate) pool_name: String,
    pub(crate) rb: ReadBuf,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: usize,
    pub(crate) dirty: bool,
    pub(crate) slots: VecDeque<Slot>,
    pub(crate) base: u64,
    pub(crate) swallow: usize,
    pub(crate) closing: bool,
    /// The client's FIN was reported (see `net::fill`).
    pub(crate) peer_closed: bool,
    pub(crate) eof: bool,
    pub(crate) paused: bool,
    /// Decided by the first byte the client sends, as memcached does.
    pub(crate) binary: Option<bool>,
    /// The binary request the next slot answers.
    pub(crate) next_bin: Option<BinReq>,
    pub(crate) spare_outs: Vec<Vec<u8>>,
    /// Erasure-coded read-then-write requests (add, replace, cas) still
    /// running: the client's later requests wait for them.
    pub(crate) ec_wait: u32,
}

impl ClientConn {
    pub(crate) fn over_limits(&self) -> bool {
        self.wbuf.len() - self.wpos > CLIENT_HIGH_WATER
            || self.slots.len() > CLIENT_MAX_OUTSTANDING
            || self.ec_wait > 0
    }

    pub(crate) fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.base)?;
        self.slots.get_mut(i as usize)
    }

    pub(crate) fn push_slot(&mut self, kind: SlotKind) -> u64 {
        let seq = self.base + self.slots.len() as u64;
        let bin = self.next_bin.take();
        let out = self.spare_outs.pop().unwrap_or_default();
        self.slots.push_back(Slot {
            done: false,
            out,
            kind,
            bin,
        });
        seq
    }

    /// Answer slot `seq` with `bytes`; the head slot goes straight to the
    /// write buffer, others wait their turn.
    pub(crate) fn complete(&mut self, seq: u64, bytes: &[u8]) {
        if seq == self.base {
            if let Some(s) = self.slots.pop_front() {
                self.base += 1;
                match &s.bin {
                    Some(b) => binproto::translate(b, bytes, &mut self.wbuf),
                    None => self.wbuf.extend_from_slice(bytes),
                }
                self.recycle(s.out);
                self.drain_ready();
            }
        } else if let Some(s) = self.slot_mut(seq) {
            match &s.bin {
                Some(b) => binproto::translate(b, bytes, &mut s.out),
                None => s.out.extend_from_slice(bytes),
            }
            s.done = true;
        }
    }

    pub(crate) fn drain_ready(&mut self) {
        while self.slots.front().is_some_and(|s| s.done) {
            if let Some(s) = self.slots.pop_front() {
                self.base += 1;
                self.wbuf.extend_from_slice(&s.out);
                self.recycle(s.out);
            }
        }
    }

    /// Keep a few answer buffers of finished slots: answers that arrive
    /// out of order wait in them, and reusing them saves an allocation per
    /// such answer.
    pub(crate) fn recycle(&mut self, mut out: Vec<u8>) {
        if out.capacity() > 0 && out.capacity() <= 64 * 1024 && self.spare_outs.len() < 64 {
            out.clear();
            self.spare_outs.push(out);
        }
    }

    /// Answer a new request immediately (in order).
    pub(crate) fn answer(&mut self, bytes: &[u8]) {
        if self.slots.is_empty() {
            self.wbuf.extend_from_slice(bytes);
        } else {
            let seq = self.push_slot(SlotKind::Local);
            self.complete(seq, bytes);
        }
    }
}

impl Worker {
    /// A client the acceptor handed over: counted against the pool's
    /// `client_connections` and registered, or closed.
    pub(crate) fn admit(&mut self, sock: Stream, pool: usize) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        let limit = p.conf.client_connections;
        let ps = &self.stats.pools[pool];
        if limit > 0 && ps.client_connections.load(Relaxed) >= i64::from(limit) {
            ps.client_err.fetch_add(1, Relaxed);
            return;
        }
        let cidx = self.clients.insert(ClientConn {
            sock,
            pool,
            pool_name: p.conf.name.clone(),
            rb: ReadBuf::with_capacity(4096),
            wbuf: Vec::new(),
            wpos: 0,
            dirty: false,
            slots: VecDeque::new(),
            base: 0,
            swallow: 0,
            closing: false,
            eof: false,
            peer_closed: false,
            paused: false,
            binary: None,
            next_bin: None,
            spare_outs: Vec::new(),
            ec_wait: 0,
        });
        let reg = self.poll.registry();
        let ok = match self.clients.get_mut(cidx) {
            Some(c) => reg
                .register(&mut c.sock, token(CLIENT, cidx), READ_WRITE)
                .is_ok(),
            None => false,
        };
        if !ok {
            self.clients.remove(cidx);
            return;
        }
        ps.client_connections.fetch_add(1, Relaxed);
        self.stats.total_connections.fetch_add(1, Relaxed);
        self.stats.curr_connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn close_client(&mut self, idx: Key) {
        if let Some(mut c) = self.clients.remove(idx) {
            let _ = self.poll.registry().deregister(&mut c.sock);
            if let Some(ps) = self.stats.pools.get(c.pool) {
                ps.client_connections.fetch_sub(1, Relaxed);
            }
            self.stats.curr_connections.fetch_sub(1, Relaxed);
        }
    }

    pub(crate) fn client_readable(&mut self, idx: Key) {
        let mut eof = false;
        let mut err = false;
        {
            let Some(c) = self.clients.get_mut(idx) else {
                return;
            };
            if c.eof {
                return;
            }
            if c.over_limits() {
                // Resumed from flush() once the client has caught up.
                c.paused = true;
                return;
            }
            match fill(&mut c.rb, &mut c.sock, c.peer_closed) {
                Fill::Drained => {}
                Fill::Eof => eof = true,
                Fill::Error => err = true,
            }
            // TLS: handshake records the read could not push all of go
            // out with the next flush (false for plain streams).
            if c.sock.wants_write() && !c.dirty {
                c.dirty = true;
                self.dirty_clients.push(idx);
            }
        }
        if let Some(ps) = self
            .clients
            .get(idx)
            .and_then(|c| self.stats.pools.get(c.pool))
        {
            if err {
                ps.client_err.fetch_add(1, Relaxed);
            } else if eof {
                ps.client_eof.fetch_add(1, Relaxed);
            }
        }
        if err {
            self.close_client(idx);
            return;
        }
        self.process_requests(idx);
        if eof {
            if let Some(c) = self.clients.get_mut(idx) {
                // Answer what was asked before the client's EOF, then close.
                c.eof = true;
                c.closing = true;
            }
            self.mark_client(idx);
        }
    }

    pub(crate) fn answer(&mut self, idx: Key, bytes: &[u8]) {
        if let Some(c) = self.clients.get_mut(idx) {
            c.answer(bytes);
        }
    }

    /// A new slot at the end of client `idx`'s queue, and where its answer
    /// goes; `None` if the client is gone.
    pub(crate) fn push_slot(&mut self, idx: Key, kind: SlotKind) -> Option<ReplyTo> {
        let c = self.clients.get_mut(idx)?;
        let seq = c.push_slot(kind);
        Some(ReplyTo { client: idx, seq })
    }

    /// The client `to` answers, unless it has closed since.
    pub(crate) fn client_for(&mut self, to: ReplyTo) -> Option<&mut ClientConn> {
        self.clients.get_mut(to.client)
    }

    /// The pool of the client `to` answers.
    pub(crate) fn client_pool(&self, to: ReplyTo) -> Option<usize> {
        self.clients.get(to.client).map(|c| c.pool)
    }

    pub(crate) fn slot_kind(&mut self, to: ReplyTo) -> Option<&mut SlotKind> {
        let c = self.client_for(to)?;
        c.slot_mut(to.seq).map(|s| &mut s.kind)
    }

    /// Answer `to` with `bytes` (written once the slots before it are).
    pub(crate) fn complete(&mut self, to: ReplyTo, bytes: &[u8]) {
        if let Some(c) = self.client_for(to) {
            c.complete(to.seq, bytes);
            self.mark_client(to.client);
        }
    }
}
