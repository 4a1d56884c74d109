//! Connections to servers: opening them (non-blocking), queueing requests,
//! framing replies as they arrive, timeouts, and failing every request
//! still outstanding when a connection breaks.

use crate::client::ReplyTo;
use crate::meta::MetaCmd;
use crate::net::{fill, Fill};
use crate::worker::{token, Worker, BACKEND, READ_WRITE};
use mnemo_net::{Key, ReadBuf, Stream};
use mnemo_protocol::client::{self as pclient, Reply};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// What a queued request is to the request it serves, which decides how
/// its reply is framed and where it goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum What {
    /// The one reply of a single-key request (or its retry on the backup).
    Single,
    /// The backup pool's copy of a write.
    Mirror,
    /// A get forwarded whole to the one server all its keys live on.
    GetRaw,
    /// One server's part of a split multi-get.
    GetPart(u32),
    /// One server's answer to `flush_all`.
    Fanout,
    /// A `delete` (or `flush_all`) invalidating what a returning primary
    /// missed while its backup pool answered (see `mirror`).
    Invalidate,
    /// Position `pos` of key `key` of an erasure-coded request: its `mg`
    /// read or its shard's `set` (see `erasure::ops`).
    Ec { key: u32, pos: u8, write: bool },
}

/// A request queued on a server connection, waiting for its reply.
pub(crate) struct Pending {
    pub(crate) to: ReplyTo,
    pub(crate) what: What,
    /// Set when queued, from the pool's `timeout`.
    pub(crate) deadline: Option<Instant>,
    /// A meta request whose q flag was stripped; its reply may be dropped.
    pub(crate) quiet: Option<MetaCmd>,
}

impl Pending {
    pub(crate) fn new(to: ReplyTo, what: What, quiet: Option<MetaCmd>) -> Pending {
        Pending {
            to,
            what,
            deadline: None,
            quiet,
        }
    }
}

pub(crate) struct Backend {
    pub(crate) sock: Stream,
    pub(crate) pool: usize,
    pub(crate) server: usize,
    /// The server's FIN was reported (see `net::fill`).
    pub(crate) peer_closed: bool,
    pub(crate) connected: bool,
    pub(crate) connect_deadline: Option<Instant>,
    pub(crate) out: Vec<u8>,
    pub(crate) opos: usize,
    pub(crate) dirty: bool,
    pub(crate) inb: ReadBuf,
    pub(crate) scan: usize,
    pub(crate) pending: VecDeque<Pending>,
    /// Requests queued with a reply expected, and replies framed: a reply
    /// to one queued after a noreply write proves the server read it.
    pub(crate) queued: u64,
    pub(crate) answered: u64,
    /// Keys of noreply writes to a primary with a backup pool, each with
    /// `queued` when it was sent, until a later reply confirms them; if
    /// the connection fails first they are recorded as missed (`mirror`).
    pub(crate) unconfirmed: VecDeque<(u64, Vec<u8>)>,
    /// Past `MAX_UNCONFIRMED` keys: the mark of the last one dropped.
    pub(crate) unconfirmed_lost: Option<u64>,
}

/// Noreply write keys listed per connection before a failure flushes the
/// server instead.
const MAX_UNCONFIRMED: usize = 10_000;

/// Why a server connection is being closed.
#[derive(Clone, Copy)]
pub(crate) enum Failure {
    Timeout,
    Eof,
    Error,
    Protocol,
    Removed,
}

impl Failure {
    pub(crate) fn msg(self) -> &'static [u8] {
        match self {
            Failure::Timeout => b"SERVER_ERROR Connection timed out\r\n",
            Failure::Eof => b"SERVER_ERROR Connection closed by server\r\n",
            Failure::Error => b"SERVER_ERROR Connection refused or reset\r\n",
            Failure::Protocol => b"SERVER_ERROR Malformed reply from server\r\n",
            Failure::Removed => b"SERVER_ERROR Server removed by reload\r\n",
        }
    }
}

/// Frame a one-element reply.
pub(crate) fn single(buf: &[u8]) -> Result<Option<(usize, Reply)>, ()> {
    match pclient::parse_reply(buf) {
        Ok(Some((r, used))) => match r {
            Reply::Value { .. } | Reply::Stat { .. } | Reply::End => Err(()),
            r => Ok(Some((used, r))),
        },
        Ok(None) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Frame a retrieval reply (`VALUE`... `END`, or an error line), resuming
/// the scan at `*scan` so a large reply arriving in pieces is parsed once.
pub(crate) fn scan_retrieval(buf: &[u8], scan: &mut usize) -> Result<Option<(usize, Reply)>, ()> {
    loop {
        match pclient::parse_reply(&buf[*scan..]) {
            Ok(Some((r, used))) => match r {
                Reply::Value { .. } => *scan += used,
                Reply::End => return Ok(Some((*scan + used, Reply::End))),
                e if e.is_error() => return Ok(Some((*scan + used, e))),
                _ => return Err(()),
            },
            Ok(None) => return Ok(None),
            Err(_) => return Err(()),
        }
    }
}

impl Worker {
    /// Queue `bytes` for server `server` of `pool`, expecting a reply if
    /// `pending` is given.
    pub(crate) fn send(
        &mut self,
        pool: usize,
        server: usize,
        bytes: &[u8],
        pending: Option<Pending>,
    ) -> Result<(), &'static [u8]> {
        let b = self.conn_for(pool, server)?;
        self.send_on(b, pool, server, bytes, pending)
    }

    /// Queue `bytes` on connection `b` of server `server` of `pool`.
    pub(crate) fn send_on(
        &mut self,
        b: Key,
        pool: usize,
        server: usize,
        bytes: &[u8],
        pending: Option<Pending>,
    ) -> Result<(), &'static [u8]> {
        let timeout = self.pools[pool].conf.timeout;
        let now = self.now;
        let Some(be) = self.backends.get_mut(b) else {
            return Err(Failure::Error.msg());
        };
        be.out.extend_from_slice(bytes);
        let ss = &self.stats.pools[pool].servers[server];
        if let Some(mut p) = pending {
            p.deadline = timeout.map(|t| now + t);
            be.pending.push_back(p);
            be.queued = be.queued.wrapping_add(1);
            ss.in_flight.fetch_add(1, Relaxed);
        }
        ss.requests.fetch_add(1, Relaxed);
        ss.request_bytes.fetch_add(bytes.len() as u64, Relaxed);
        self.mark_backend(b);
        Ok(())
    }

    /// A connection to the server, round-robin over `server_connections`,
    /// opened (non-blocking) if needed.
    pub(crate) fn conn_for(&mut self, pool: usize, server: usize) -> Result<Key, &'static [u8]> {
        let timeout = self.pools[pool].conf.timeout;
        let keepalive = self.pools[pool].conf.tcpkeepalive;
        let tls = self.pools[pool].tls.clone();
        let s = &mut self.pools[pool].servers[server];
        let i = s.rr % s.conns.len().max(1);
        s.rr = s.rr.wrapping_add(1);
        if let Some(b) = s.conns.get(i).copied().flatten() {
            if self.backends.get(b).is_some() {
                return Ok(b);
            }
        }
        // TCP gets TCP_NODELAY from `connect`.
        let sock = Stream::connect(&s.addr)
            .inspect(|t| {
                if keepalive {
                    let _ = t.set_keepalive(true);
                }
            })
            .and_then(|t| match &tls {
                Some(c) => c.wrap(t, &s.addr),
                None => Ok(t),
            });
        let sock = match sock {
            Ok(s) => s,
            Err(_) => {
                self.server_failed(pool, server);
                return Err(Failure::Error.msg());
            }
        };
        let b = self.backends.insert(Backend {
            sock,
            pool,
            server,
            connected: false,
            peer_closed: false,
            connect_deadline: timeout.map(|t| self.now + t),
            out: Vec::new(),
            opos: 0,
            dirty: false,
            inb: ReadBuf::with_capacity(READ_CHUNK),
            scan: 0,
            pending: VecDeque::new(),
            queued: 0,
            answered: 0,
            unconfirmed: VecDeque::new(),
            unconfirmed_lost: None,
        });
        let reg = self.poll.registry();
        let ok = self.backends.get_mut(b).is_some_and(|be| {
            reg.register(&mut be.sock, token(BACKEND, b), READ_WRITE)
                .is_ok()
        });
        if !ok {
            self.backends.remove(b);
            self.server_failed(pool, server);
            return Err(Failure::Error.msg());
        }
        if let Some(slot) = self.pools[pool].servers[server].conns.get_mut(i) {
            *slot = Some(b);
        }
        self.stats.pools[pool].servers[server]
            .connections
            .fetch_add(1, Relaxed);
        Ok(b)
    }

    pub(crate) fn backend_event(&mut self, b: Key, readable: bool, writable: bool) {
        let Some(be) = self.backends.get_mut(b) else {
            return;
        };
        if !be.connected {
            match be.sock.take_error() {
                Ok(None) => {}
                _ => {
                    self.fail_backend(b, Failure::Error);
                    return;
                }
            }
            if !be.sock.is_connected() {
                if readable && !writable {
                    self.fail_backend(b, Failure::Error);
                }
                return;
            }
            be.connected = true;
            be.connect_deadline = None;
            self.mark_backend(b);
        }
        if writable {
            self.mark_backend(b);
        }
        if readable {
            self.backend_read(b);
        }
    }

    pub(crate) fn backend_read(&mut self, b: Key) {
        let mut eof = false;
        let mut err = false;
        let mut inb = {
            let Some(be) = self.backends.get_mut(b) else {
                return;
            };
            match fill(&mut be.inb, &mut be.sock, be.peer_closed) {
                Fill::Drained => {}
                Fill::Eof => eof = true,
                Fill::Error => err = true,
            }
            let inb = std::mem::take(&mut be.inb);
            // A TLS handshake that completed inside this read lets the
            // requests queued behind it go; the writable edge may have
            // come and gone while they could not.
            if be.sock.is_tls() && (be.opos < be.out.len() || be.sock.wants_write()) {
                self.mark_backend(b);
            }
            inb
        };
        let mut broken = false;
        loop {
            let buf = inb.filled();
            if buf.is_empty() {
                break;
            }
            let Some(be) = self.backends.get_mut(b) else {
                return;
            };
            let Some(what) = be.pending.front().map(|p| p.what) else {
                // Bytes nobody asked for: the stream cannot be trusted.
                broken = true;
                break;
            };
            let framed = match what {
                What::GetRaw | What::GetPart(_) => scan_retrieval(buf, &mut be.scan),
                _ => single(buf),
            };
            match framed {
                Ok(Some((used, r))) => {
                    be.scan = 0;
                    let Some(p) = be.pending.pop_front() else {
                        break;
                    };
                    be.answered = be.answered.wrapping_add(1);
                    while be.unconfirmed.front().is_some_and(|u| u.0 < be.answered) {
                        be.unconfirmed.pop_front();
                    }
                    if be.unconfirmed_lost.is_some_and(|m| m < be.answered) {
                        be.unconfirmed_lost = None;
                    }
                    let (pool, server) = (be.pool, be.server);
                    if let Some(ss) = self
                        .stats
                        .pools
                        .get(pool)
                        .and_then(|ps| ps.servers.get(server))
                    {
                        ss.in_flight.fetch_sub(1, Relaxed);
                        ss.responses.fetch_add(1, Relaxed);
                        ss.response_bytes.fetch_add(used as u64, Relaxed);
                        if matches!(r, Reply::ServerError(_)) {
                            ss.errors.fetch_add(1, Relaxed);
                        }
                    }
                    if let Some(s) = self
                        .pools
                        .get_mut(pool)
                        .and_then(|p| p.servers.get_mut(server))
                    {
                        s.health.succeeded();
                        if p.what == What::Invalidate {
                            s.invalidating = s.invalidating.saturating_sub(1);
                            // Not deleted (or flushed): it may still hold it.
                            if r.is_error() {
                                s.missed_all = true;
                            }
                        }
                    }
                    if p.what == What::Invalidate {
                        self.sync_gate(pool, server);
                    }
                    self.on_reply(p, &buf[..used], &r);
                    inb.consume(used);
                }
                Ok(None) => break,
                Err(()) => {
                    broken = true;
                    break;
                }
            }
        }
        if let Some(be) = self.backends.get_mut(b) {
            be.inb = inb;
        }
        if broken {
            self.fail_backend(b, Failure::Protocol);
        } else if err {
            self.fail_backend(b, Failure::Error);
        } else if eof {
            self.fail_backend(b, Failure::Eof);
        }
    }

    pub(crate) fn fail_backend(&mut self, b: Key, why: Failure) {
        let Some(mut be) = self.backends.remove(b) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut be.sock);
        if let Some(s) = self
            .pools
            .get_mut(be.pool)
            .and_then(|p| p.servers.get_mut(be.server))
        {
            for c in &mut s.conns {
                if *c == Some(b) {
                    *c = None;
                }
            }
            // An invalidation that may not have run: keep the server from
            // serving anything it may hold stale.
            let lost = be
                .pending
                .iter()
                .filter(|p| p.what == What::Invalidate)
                .count();
            if lost > 0 || be.unconfirmed_lost.is_some() {
                s.missed_all = true;
                s.invalidating = s.invalidating.saturating_sub(lost as u32);
            }
        }
        if let Some(ss) = self
            .stats
            .pools
            .get(be.pool)
            .and_then(|p| p.servers.get(be.server))
        {
            match why {
                Failure::Timeout => ss.timeouts.fetch_add(1, Relaxed),
                Failure::Eof => ss.eof.fetch_add(1, Relaxed),
                _ => ss.errors.fetch_add(1, Relaxed),
            };
            ss.connections.fetch_sub(1, Relaxed);
            ss.in_flight.fetch_sub(be.pending.len() as i64, Relaxed);
        }
        if !matches!(why, Failure::Removed) {
            self.server_failed(be.pool, be.server);
        }
        for (_, k) in be.unconfirmed.drain(..) {
            self.record_missed(be.pool, &k);
        }
        self.sync_gate(be.pool, be.server);
        let msg = why.msg();
        for p in be.pending.drain(..) {
            self.pending_failed(p, msg);
        }
    }
}

impl Backend {
    /// A noreply write of `key` was queued: keep it until a later reply.
    pub(crate) fn sent_noreply(&mut self, key: &[u8]) {
        if self.unconfirmed.len() >= MAX_UNCONFIRMED {
            self.unconfirmed.clear();
            self.unconfirmed_lost = Some(self.queued);
        }
        if self.unconfirmed_lost.is_none() {
            self.unconfirmed.push_back((self.queued, key.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_of_server_replies() {
        let mut scan = 0;
        let r = b"VALUE k 0 3\r\nabc\r\nVAL";
        assert_eq!(scan_retrieval(r, &mut scan), Ok(None));
        assert_eq!(scan, 18, "resumes after the complete item");
        let r = b"VALUE k 0 3\r\nabc\r\nEND\r\nSTORED\r\n";
        let (used, end) = scan_retrieval(r, &mut scan).unwrap().unwrap();
        assert_eq!((used, end), (23, Reply::End));
        let mut scan = 0;
        assert!(scan_retrieval(b"STORED\r\n", &mut scan).is_err());
        assert!(single(b"VALUE k 0 1\r\nx\r\n").is_err());
        assert_eq!(single(b"STORED\r\n"), Ok(Some((8, Reply::Stored))));
        assert!(single(b"HELLO\r\n").is_err());
        let mut scan = 0;
        let (used, e) = scan_retrieval(b"SERVER_ERROR oom\r\n", &mut scan)
            .unwrap()
            .unwrap();
        assert_eq!(used, 18);
        assert!(e.is_error());
    }
}
