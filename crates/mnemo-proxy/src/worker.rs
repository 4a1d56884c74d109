//! One event loop (mio) per worker thread. A worker owns the client
//! connections the acceptor hands it (see `acceptor`) and its own
//! connections to every server, so the request path takes no lock:
//! requests are parsed in place from the client's read buffer, queued on
//! server connections, and answers are gathered per client into one write
//! per loop iteration.
//!
//! The loop itself lives here; what it calls is split by concern:
//! `client` (connections and reply order), `request` (parsing), `route`
//! (where a request goes and where its reply belongs), `multiget`,
//! `mirror` (the backup pool), `pool` (placement and ejection), `backend`
//! (server connections) and `reload`; `net` holds the socket plumbing.
//!
//! Ordering: every client request that expects an answer gets a slot in the
//! client's queue; answers fill slots in any order and are written in slot
//! order, so pipelined requests are answered in the order sent even when
//! they went to different servers.

use crate::acceptor::Msg;
use crate::backend::{Backend, Failure};
use crate::client::ClientConn;
use crate::config::Config;
use crate::net::{drain, Drain};
use crate::pool::PoolRt;
use crate::stats::Stats;
use mio::{Events, Interest, Poll, Token, Waker};
use mnemo_net::{Key, Slots};
use std::io;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A token's top bits say which table its index is in.
pub(crate) const KIND_SHIFT: u32 = 60;
pub(crate) const CLIENT: usize = 2;
pub(crate) const BACKEND: usize = 3;
pub const WAKER: Token = Token(usize::MAX);

/// A connection's mio token: its slot key, tagged in the top bits (which
/// keys leave free) with the table it is in.
pub(crate) fn token(kind: usize, key: Key) -> Token {
    Token((kind << KIND_SHIFT) | key.to_usize())
}

/// Connections are registered for both, edge-triggered, once.
pub(crate) const READ_WRITE: Interest = Interest::READABLE.add(Interest::WRITABLE);

pub struct Worker {
    pub(crate) id: usize,
    pub(crate) poll: Poll,
    pub(crate) pools: Vec<PoolRt>,
    pub(crate) clients: Slots<ClientConn>,
    pub(crate) backends: Slots<Backend>,
    pub(crate) stats: Arc<Stats>,
    /// New clients and configurations from the acceptor.
    pub(crate) inbox: Receiver<Msg>,
    pub(crate) now: Instant,
    pub(crate) dirty_clients: Vec<Key>,
    pub(crate) dirty_backends: Vec<Key>,
    pub(crate) resume: Vec<Key>,
    /// Erasure-coded reads that K answers could decide before the quorum:
    /// decided once this batch of events is in (see `erasure::ops`).
    pub(crate) ec_later: Vec<crate::client::ReplyTo>,
    pub(crate) ec_early_ok: bool,
    /// Conditional writes' reads to send again at a time (`Next::Retry`):
    /// when, the request, its key.
    pub(crate) ec_retry: Vec<(Instant, crate::client::ReplyTo, usize, Option<i64>)>,
    pub(crate) scratch: Vec<usize>,
    pub(crate) bintext: Vec<u8>,
}

impl Worker {
    pub fn new(
        id: usize,
        cfg: &Config,
        stats: Arc<Stats>,
        inbox: Receiver<Msg>,
    ) -> io::Result<(Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut w = Worker {
            id,
            poll,
            pools: Vec::new(),
            clients: Slots::new(),
            backends: Slots::new(),
            stats,
            inbox,
            now: Instant::now(),
            dirty_clients: Vec::new(),
            dirty_backends: Vec::new(),
            resume: Vec::new(),
            ec_later: Vec::new(),
            ec_early_ok: false,
            ec_retry: Vec::new(),
            scratch: Vec::new(),
            bintext: Vec::new(),
        };
        w.pools = (0..cfg.pools.len())
            .map(|i| PoolRt::new(&cfg.pools[i], cfg.backup_index(i)))
            .collect();
        for p in 0..w.pools.len() {
            if w.pools[p].conf.preconnect {
                for s in 0..w.pools[p].servers.len() {
                    let _ = w.conn_for(p, s);
                }
            }
        }
        Ok((w, waker))
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timer();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("mnemo-proxy: worker {}: poll: {e}", self.id);
                    return;
                }
            }
            self.now = Instant::now();
            // The inbox first: a reload the acceptor sent before a client's
            // request must apply to that request, whatever order this
            // batch of events is in.
            while let Ok(m) = self.inbox.try_recv() {
                match m {
                    Msg::Client { sock, pool } => self.admit(sock, pool),
                    Msg::Reload(r) => self.apply_reload(r),
                }
            }
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    continue;
                }
                let kind = t.0 >> KIND_SHIFT;
                let Some(idx) = Key::from_usize(t.0 & ((1 << KIND_SHIFT) - 1)) else {
                    continue;
                };
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                match kind {
                    CLIENT => {
                        if ev.is_read_closed() {
                            if let Some(c) = self.clients.get_mut(idx) {
                                c.peer_closed = true;
                            }
                        }
                        if readable {
                            self.client_readable(idx);
                        }
                        if ev.is_writable() {
                            self.mark_client(idx);
                        }
                    }
                    BACKEND => {
                        if ev.is_read_closed() {
                            if let Some(be) = self.backends.get_mut(idx) {
                                be.peer_closed = true;
                            }
                        }
                        self.backend_event(idx, readable, ev.is_writable())
                    }
                    _ => {}
                }
            }
            self.timers();
            self.ec_run_later();
            self.flush();
            while !self.resume.is_empty() {
                for c in std::mem::take(&mut self.resume) {
                    self.client_readable(c);
                }
                self.ec_run_later();
                self.flush();
            }
        }
    }

    pub(crate) fn next_timer(&self) -> Option<Duration> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(match next {
                Some(n) if n <= t => n,
                _ => t,
            })
        };
        for (_, b) in self.backends.iter() {
            if let Some(d) = b.connect_deadline {
                consider(d);
            }
            if let Some(d) = b.pending.front().and_then(|p| p.deadline) {
                consider(d);
            }
        }
        for p in &self.pools {
            for s in &p.servers {
                if let Some(t) = s.health.ejected_until() {
                    consider(t);
                }
            }
        }
        for r in &self.ec_retry {
            consider(r.0);
        }
        // The waker brings new clients and reloads; waking at least once a
        // second is only a backstop.
        let cap = Duration::from_secs(1);
        let now = Instant::now();
        Some(next.map_or(cap, |n| n.saturating_duration_since(now).min(cap)))
    }

    pub(crate) fn timers(&mut self) {
        let now = self.now;
        for b in self.backends.keys() {
            let Some(be) = self.backends.get(b) else {
                continue;
            };
            let expired = be.connect_deadline.is_some_and(|d| d <= now)
                || be
                    .pending
                    .front()
                    .and_then(|p| p.deadline)
                    .is_some_and(|d| d <= now);
            if expired {
                self.fail_backend(b, Failure::Timeout);
            }
        }
        for p in &mut self.pools {
            p.readmit_due(now);
        }
        self.ec_retry_due(now);
    }

    pub(crate) fn mark_client(&mut self, idx: Key) {
        if let Some(c) = self.clients.get_mut(idx) {
            if !c.dirty {
                c.dirty = true;
                self.dirty_clients.push(idx);
            }
        }
    }

    pub(crate) fn mark_backend(&mut self, idx: Key) {
        if let Some(b) = self.backends.get_mut(idx) {
            if !b.dirty && b.connected {
                b.dirty = true;
                self.dirty_backends.push(idx);
            }
        }
    }

    /// Write what is queued: every touched server connection, then every
    /// touched client, one write each.
    pub(crate) fn flush(&mut self) {
        let backends = std::mem::take(&mut self.dirty_backends);
        for &b in &backends {
            let mut failed = false;
            if let Some(be) = self.backends.get_mut(b) {
                be.dirty = false;
                failed = drain(&mut be.out, &mut be.opos, &mut be.sock) == Drain::Failed;
            }
            if failed {
                self.fail_backend(b, Failure::Error);
            }
        }
        self.dirty_backends = backends;
        self.dirty_backends.clear();
        let clients = std::mem::take(&mut self.dirty_clients);
        for &c in &clients {
            let mut close = false;
            if let Some(cl) = self.clients.get_mut(c) {
                cl.dirty = false;
                match drain(&mut cl.wbuf, &mut cl.wpos, &mut cl.sock) {
                    Drain::Failed => close = true,
                    Drain::Blocked => {}
                    Drain::Done => {
                        if cl.closing && cl.slots.is_empty() {
                            close = true;
                        }
                    }
                }
                if cl.paused && !cl.over_limits() && !close {
                    cl.paused = false;
                    self.resume.push(c);
                }
            }
            if close {
                self.close_client(c);
            }
        }
        self.dirty_clients = clients;
        self.dirty_clients.clear();
    }
}
