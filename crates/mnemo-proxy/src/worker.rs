//! One event loop (mio) per thread. Each worker owns its listeners (bound
//! with SO_REUSEPORT so the kernel spreads clients), its client connections
//! and its own connections to every server, so the request path takes no
//! lock: requests are parsed in place from the client's read buffer, queued
//! on server connections, and answers are gathered per client into one write
//! per loop iteration.
//!
//! Ordering: every client request that expects an answer gets a slot in the
//! client's queue; answers fill slots in any order and are written in slot
//! order, so pipelined requests are answered in the order sent even when
//! they went to different servers.

use crate::binproto::{self, BinReq};
use crate::config::{Config, PoolConf};
use crate::meta::{self, MetaCmd};
use crate::stats::Stats;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use mnemo_client::{Addr, Node, Placement};
use mnemo_protocol::binary as pbin;
use mnemo_protocol::client::{self, Reply};
use mnemo_protocol::meta as pmeta;
use mnemo_protocol::text::{self, GetKind, Keys, Line, Request};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// memcached's default item size limit; larger values are refused the way
/// memcached refuses them instead of being forwarded.
const MAX_ITEM: usize = 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Longest request line buffered while waiting for its end (a multi-get of
/// some 4000 maximal keys).
const MAX_GET_LINE: usize = 1024 * 1024;
/// A client that does not read its answers stops being read from once this
/// much is waiting to be written to it...
const CLIENT_HIGH_WATER: usize = 4 * 1024 * 1024;
/// ...or once this many of its requests are outstanding, so one client
/// cannot make the proxy buffer without bound.
const CLIENT_MAX_OUTSTANDING: usize = 16 * 1024;

const KIND_SHIFT: u32 = 60;
const LISTENER: usize = 1;
const CLIENT: usize = 2;
const BACKEND: usize = 3;
pub const WAKER: Token = Token(usize::MAX);

fn token(kind: usize, idx: usize) -> Token {
    Token((kind << KIND_SHIFT) | idx)
}

/// A new configuration for the workers (SIGHUP).
pub struct Reload {
    pub config: Arc<Config>,
    pub stats: Arc<Stats>,
}

/// How a `drain` ended.
#[derive(PartialEq, Eq)]
enum Drain {
    /// Everything written; the buffer is emptied for reuse.
    Done,
    Blocked,
    Failed,
}

/// Writes `out[*pos..]` until the socket would block or fails; the one
/// write loop for client and server connections.
fn drain(
    out: &mut Vec<u8>,
    pos: &mut usize,
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Drain {
    while *pos < out.len() {
        match write(&out[*pos..]) {
            // A socket that takes nothing of a non-empty buffer is gone;
            // retrying would spin.
            Ok(0) => return Drain::Failed,
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Drain::Failed,
        }
    }
    out.clear();
    *pos = 0;
    Drain::Done
}

/// How a `Buf::fill` ended.
#[derive(PartialEq, Eq)]
enum Fill {
    Drained,
    Eof,
    Error,
}

/// A read buffer: bytes live in `data[start..end]`; reads go straight into
/// the spare tail, so requests and replies are parsed where they landed.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn with_capacity(n: usize) -> Buf {
        Buf {
            data: vec![0; n],
            start: 0,
            end: 0,
        }
    }
    fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = (self.data.len() * 2).max(4096);
                self.data.resize(n, 0);
            }
        }
        &mut self.data[self.end..]
    }
    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Reads what the socket has. A short read normally means the socket
    /// is drained (a new edge comes with new data), so the read that would
    /// only say EAGAIN is skipped; but once the peer's FIN is reported it
    /// raises no further edge, and only the read returning 0 shows it, so
    /// with `peer_closed` the loop reads on to EOF.
    fn fill(
        &mut self,
        peer_closed: bool,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Fill {
        loop {
            let spare = self.spare();
            let room = spare.len();
            match read(spare) {
                Ok(0) => return Fill::Eof,
                Ok(n) => {
                    self.end += n;
                    if n < room && !peer_closed {
                        return Fill::Drained;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fill::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Fill::Error,
            }
        }
    }
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

/// Minimal slab: indices are stable, freed ones are reused.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn insert(&mut self, t: T) -> usize {
        if let Some(i) = self.free.pop() {
            self.items[i] = Some(t);
            i
        } else {
            self.items.push(Some(t));
            self.items.len() - 1
        }
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let t = self.items.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }
    fn get(&self, i: usize) -> Option<&T> {
        self.items.get(i)?.as_ref()
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i)?.as_mut()
    }
    fn indices(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| self.items[i].is_some())
            .collect()
    }
}

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(b),
            Sock::Unix(s) => s.read(b),
        }
    }
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(b),
            Sock::Unix(s) => s.write(b),
        }
    }
    fn register(&mut self, r: &Registry, t: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match self {
            Sock::Tcp(s) => r.register(s, t, i),
            Sock::Unix(s) => r.register(s, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) {
        let _ = match self {
            Sock::Tcp(s) => r.deregister(s),
            Sock::Unix(s) => r.deregister(s),
        };
    }
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }
    fn connected(&self) -> bool {
        match self {
            Sock::Tcp(s) => s.peer_addr().is_ok(),
            Sock::Unix(s) => s.peer_addr().is_ok(),
        }
    }
}

enum Lsn {
    Tcp(TcpListener),
    Unix(UnixListener),
}

struct Listener {
    lsn: Lsn,
    addr: Addr,
    pool: usize,
}

/// What a slot waits for.
enum SlotKind {
    /// Answered by the worker itself.
    Local,
    /// One reply from one server; the Mirror exists only for pools with a
    /// backup, so the common path allocates nothing.
    Simple(Option<Box<Mirror>>),
    /// A multi-key get split over servers.
    Multi(Box<MultiGet>),
    /// A command sent to every server (flush_all).
    Fanout { left: u32, err: Option<Vec<u8>> },
}

/// State of a request that may fall back on the backup pool.
#[derive(Default)]
struct Mirror {
    /// The mirrored write to the backup pool has not answered yet.
    pending: bool,
    /// Its answer, kept in case the primary fails.
    reply: Option<Vec<u8>>,
    /// The primary failed; answer with the mirror's reply when it comes.
    primary_failed: Option<&'static [u8]>,
    /// A read that may be re-sent to the backup pool if the primary fails:
    /// the request bytes, copied only for pools that have a backup.
    retry: Option<(Vec<u8>, Vec<u8>)>,
    retry_quiet: Option<MetaCmd>,
    /// For `cas` in a pool with a backup: (key, `set ... noreply` request)
    /// sent to the backup once the primary has said STORED. CAS uniques
    /// differ between the pools, so mirroring the `cas` itself would fail.
    deferred: Option<(Vec<u8>, Vec<u8>)>,
}

struct Slot {
    done: bool,
    out: Vec<u8>,
    kind: SlotKind,
    /// Set for binary clients: the text answer is translated on completion.
    bin: Option<BinReq>,
}

struct Part {
    server: usize,
    keys: Vec<u32>,
    cursor: usize,
    on_backup: bool,
}

struct MultiGet {
    kind: GetKind,
    exptime: i64,
    keys: Vec<u8>,
    key_at: Vec<(u32, u32)>,
    found: Vec<Option<(u32, u32)>>,
    data: Vec<u8>,
    parts: Vec<Part>,
    left: u32,
    error: Option<Vec<u8>>,
}

impl MultiGet {
    fn key(&self, i: u32) -> &[u8] {
        let (s, e) = self.key_at[i as usize];
        &self.keys[s as usize..e as usize]
    }

    fn encode_part(&self, part: usize, out: &mut Vec<u8>) {
        let keys = self.parts[part].keys.iter().map(|&k| self.key(k));
        match self.kind {
            GetKind::Get => client::encode_get(out, keys),
            GetKind::Gets => client::encode_gets(out, keys),
            GetKind::Gat => client::encode_gat(out, false, self.exptime, keys),
            GetKind::Gats => client::encode_gat(out, true, self.exptime, keys),
        }
    }

    /// Record the items of one part's reply.
    fn absorb(&mut self, part: usize, bytes: &[u8]) {
        self.data.reserve(bytes.len());
        let mut pos = 0;
        while let Ok(Some((r, used))) = client::parse_reply(&bytes[pos..]) {
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

    fn assemble(&self, out: &mut Vec<u8>) {
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

struct ClientConn {
    sock: Sock,
    id: u64,
    pool: usize,
    pool_name: String,
    rb: Buf,
    wbuf: Vec<u8>,
    wpos: usize,
    dirty: bool,
    slots: VecDeque<Slot>,
    base: u64,
    swallow: usize,
    closing: bool,
    /// The client's FIN was reported (see `Buf::fill`).
    peer_closed: bool,
    eof: bool,
    paused: bool,
    /// Decided by the first byte the client sends, as memcached does.
    binary: Option<bool>,
    /// The binary request the next slot answers.
    next_bin: Option<BinReq>,
    spare_outs: Vec<Vec<u8>>,
}

impl ClientConn {
    fn over_limits(&self) -> bool {
        self.wbuf.len() - self.wpos > CLIENT_HIGH_WATER || self.slots.len() > CLIENT_MAX_OUTSTANDING
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.base)?;
        self.slots.get_mut(i as usize)
    }

    fn push_slot(&mut self, kind: SlotKind) -> u64 {
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
    fn complete(&mut self, seq: u64, bytes: &[u8]) {
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

    fn drain_ready(&mut self) {
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
    fn recycle(&mut self, mut out: Vec<u8>) {
        if out.capacity() > 0 && out.capacity() <= 64 * 1024 && self.spare_outs.len() < 64 {
            out.clear();
            self.spare_outs.push(out);
        }
    }

    /// Answer a new request immediately (in order).
    fn answer(&mut self, bytes: &[u8]) {
        if self.slots.is_empty() {
            self.wbuf.extend_from_slice(bytes);
        } else {
            let seq = self.push_slot(SlotKind::Local);
            self.complete(seq, bytes);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum What {
    Single,
    Mirror,
    GetRaw,
    GetPart(u32),
    Fanout,
}

struct Pending {
    client: usize,
    cid: u64,
    seq: u64,
    what: What,
    deadline: Option<Instant>,
    quiet: Option<MetaCmd>,
}

struct Backend {
    sock: Sock,
    pool: usize,
    server: usize,
    /// The server's FIN was reported (see `Buf::fill`).
    peer_closed: bool,
    connected: bool,
    connect_deadline: Option<Instant>,
    out: Vec<u8>,
    opos: usize,
    dirty: bool,
    inb: Buf,
    scan: usize,
    pending: VecDeque<Pending>,
}

struct ServerRt {
    addr: Addr,
    conns: Vec<Option<usize>>,
    rr: usize,
    failures: u32,
    ejected_until: Option<Instant>,
}

struct PoolRt {
    conf: PoolConf,
    placement: Placement,
    servers: Vec<ServerRt>,
    backup: Option<usize>,
}

impl PoolRt {
    fn new(conf: &PoolConf, backup: Option<usize>) -> PoolRt {
        let nodes = conf
            .servers
            .iter()
            .map(|s| Node {
                name: s.name.clone(),
                weight: s.weight,
            })
            .collect();
        PoolRt {
            placement: Placement::new(conf.hash, conf.distribution, conf.hash_tag, nodes),
            servers: conf
                .servers
                .iter()
                .map(|s| ServerRt {
                    addr: s.addr.clone(),
                    conns: vec![None; conf.server_connections as usize],
                    rr: 0,
                    failures: 0,
                    ejected_until: None,
                })
                .collect(),
            backup,
            conf: conf.clone(),
        }
    }

    fn rebuild(&mut self) {
        let live: Vec<bool> = self
            .servers
            .iter()
            .map(|s| s.ejected_until.is_none())
            .collect();
        self.placement.rebuild(|i| live[i]);
    }
}

/// Why a server connection is being closed.
#[derive(Clone, Copy)]
enum Failure {
    Timeout,
    Eof,
    Error,
    Protocol,
    Removed,
}

impl Failure {
    fn msg(self) -> &'static [u8] {
        match self {
            Failure::Timeout => b"SERVER_ERROR Connection timed out\r\n",
            Failure::Eof => b"SERVER_ERROR Connection closed by server\r\n",
            Failure::Error => b"SERVER_ERROR Connection refused or reset\r\n",
            Failure::Protocol => b"SERVER_ERROR Malformed reply from server\r\n",
            Failure::Removed => b"SERVER_ERROR Server removed by reload\r\n",
        }
    }
}

const NO_LIVE: &[u8] = b"SERVER_ERROR No live server for key\r\n";
const EJECTED: &[u8] = b"SERVER_ERROR Server ejected\r\n";

pub struct Worker {
    id: usize,
    poll: Poll,
    pools: Vec<PoolRt>,
    listeners: Slab<Listener>,
    clients: Slab<ClientConn>,
    backends: Slab<Backend>,
    stats: Arc<Stats>,
    reloads: Receiver<Reload>,
    next_cid: u64,
    now: Instant,
    dirty_clients: Vec<usize>,
    dirty_backends: Vec<usize>,
    resume: Vec<usize>,
    scratch: Vec<usize>,
    bintext: Vec<u8>,
}

/// Bind a listening socket. TCP listeners use SO_REUSEPORT so that every
/// worker can own one on the same address; unix sockets are bound by worker
/// 0 only.
fn bind(addr: &Addr, backlog: i32) -> io::Result<Lsn> {
    match addr {
        Addr::Tcp { host, port } => {
            let sa = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            let s = socket2::Socket::new(
                socket2::Domain::for_address(sa),
                socket2::Type::STREAM,
                None,
            )?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.set_nonblocking(true)?;
            s.bind(&sa.into())?;
            s.listen(backlog.max(1))?;
            Ok(Lsn::Tcp(TcpListener::from_std(s.into())))
        }
        Addr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            Ok(Lsn::Unix(UnixListener::bind(p)?))
        }
    }
}

impl Worker {
    pub fn new(
        id: usize,
        cfg: &Config,
        stats: Arc<Stats>,
        reloads: Receiver<Reload>,
    ) -> io::Result<(Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut w = Worker {
            id,
            poll,
            pools: Vec::new(),
            listeners: Slab::new(),
            clients: Slab::new(),
            backends: Slab::new(),
            stats,
            reloads,
            next_cid: 1,
            now: Instant::now(),
            dirty_clients: Vec::new(),
            dirty_backends: Vec::new(),
            resume: Vec::new(),
            scratch: Vec::new(),
            bintext: Vec::new(),
        };
        w.pools = (0..cfg.pools.len())
            .map(|i| PoolRt::new(&cfg.pools[i], cfg.backup_index(i)))
            .collect();
        for i in 0..w.pools.len() {
            if let Some(a) = w.pools[i].conf.listen.clone() {
                w.add_listener(&a, i)?;
            }
        }
        for p in 0..w.pools.len() {
            if w.pools[p].conf.preconnect {
                for s in 0..w.pools[p].servers.len() {
                    let _ = w.conn_for(p, s);
                }
            }
        }
        Ok((w, waker))
    }
}

/// Outcome of handling one client request.
enum Step {
    Consumed(usize),
    NeedMore,
    Stop,
}

impl Worker {
    fn add_listener(&mut self, addr: &Addr, pool: usize) -> io::Result<()> {
        if matches!(addr, Addr::Unix(_)) && self.id != 0 {
            return Ok(());
        }
        let lsn = bind(addr, self.pools[pool].conf.backlog)?;
        let idx = self.listeners.insert(Listener {
            lsn,
            addr: addr.clone(),
            pool,
        });
        let t = token(LISTENER, idx);
        let reg = self.poll.registry();
        if let Some(l) = self.listeners.get_mut(idx) {
            let r = match &mut l.lsn {
                Lsn::Tcp(x) => reg.register(x, t, Interest::READABLE),
                Lsn::Unix(x) => reg.register(x, t, Interest::READABLE),
            };
            if let Err(e) = r {
                self.listeners.remove(idx);
                return Err(e);
            }
        }
        Ok(())
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
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    continue;
                }
                let kind = t.0 >> KIND_SHIFT;
                let idx = t.0 & ((1 << KIND_SHIFT) - 1);
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                match kind {
                    LISTENER => self.accept(idx),
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
            self.flush();
            while !self.resume.is_empty() {
                for c in std::mem::take(&mut self.resume) {
                    self.client_readable(c);
                }
                self.flush();
            }
            while let Ok(r) = self.reloads.try_recv() {
                self.apply_reload(r);
            }
        }
    }

    fn next_timer(&self) -> Option<Duration> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(match next {
                Some(n) if n <= t => n,
                _ => t,
            })
        };
        for b in self.backends.items.iter().flatten() {
            if let Some(d) = b.connect_deadline {
                consider(d);
            }
            if let Some(d) = b.pending.front().and_then(|p| p.deadline) {
                consider(d);
            }
        }
        for p in &self.pools {
            for s in &p.servers {
                if let Some(t) = s.ejected_until {
                    consider(t);
                }
            }
        }
        // Wake at least once a second so reloads are seen even without
        // traffic.
        let cap = Duration::from_secs(1);
        let now = Instant::now();
        Some(next.map_or(cap, |n| n.saturating_duration_since(now).min(cap)))
    }

    fn timers(&mut self) {
        let now = self.now;
        for b in 0..self.backends.items.len() {
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
        for p in 0..self.pools.len() {
            let mut readmit = false;
            for s in &mut self.pools[p].servers {
                if s.ejected_until.is_some_and(|t| t <= now) {
                    s.ejected_until = None;
                    readmit = true;
                }
            }
            if readmit && self.pools[p].backup.is_none() {
                self.pools[p].rebuild();
            }
        }
    }

    fn mark_client(&mut self, idx: usize) {
        if let Some(c) = self.clients.get_mut(idx) {
            if !c.dirty {
                c.dirty = true;
                self.dirty_clients.push(idx);
            }
        }
    }

    fn mark_backend(&mut self, idx: usize) {
        if let Some(b) = self.backends.get_mut(idx) {
            if !b.dirty && b.connected {
                b.dirty = true;
                self.dirty_backends.push(idx);
            }
        }
    }

    fn accept(&mut self, idx: usize) {
        loop {
            let Some(l) = self.listeners.get_mut(idx) else {
                return;
            };
            let pool = l.pool;
            let res = match &l.lsn {
                Lsn::Tcp(t) => t.accept().map(|(s, _)| {
                    // Answers are written whole; Nagle would only delay them.
                    let _ = s.set_nodelay(true);
                    Sock::Tcp(s)
                }),
                Lsn::Unix(u) => u.accept().map(|(s, _)| Sock::Unix(s)),
            };
            let sock = match res {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("mnemo-proxy: accept: {e}");
                    return;
                }
            };
            let limit = self.pools[pool].conf.client_connections;
            let ps = &self.stats.pools[pool];
            if limit > 0 && ps.client_connections.load(Relaxed) >= i64::from(limit) {
                ps.client_err.fetch_add(1, Relaxed);
                continue;
            }
            let id = self.next_cid;
            self.next_cid += 1;
            let cidx = self.clients.insert(ClientConn {
                sock,
                id,
                pool,
                pool_name: self.pools[pool].conf.name.clone(),
                rb: Buf::with_capacity(4096),
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
            });
            let reg = self.poll.registry();
            let ok = match self.clients.get_mut(cidx) {
                Some(c) => c.sock.register(reg, token(CLIENT, cidx)).is_ok(),
                None => false,
            };
            if !ok {
                self.clients.remove(cidx);
                continue;
            }
            ps.client_connections.fetch_add(1, Relaxed);
            self.stats.total_connections.fetch_add(1, Relaxed);
            self.stats.curr_connections.fetch_add(1, Relaxed);
        }
    }

    fn close_client(&mut self, idx: usize) {
        if let Some(mut c) = self.clients.remove(idx) {
            c.sock.deregister(self.poll.registry());
            if let Some(ps) = self.stats.pools.get(c.pool) {
                ps.client_connections.fetch_sub(1, Relaxed);
            }
            self.stats.curr_connections.fetch_sub(1, Relaxed);
        }
    }

    fn client_readable(&mut self, idx: usize) {
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
            let sock = &mut c.sock;
            match c.rb.fill(c.peer_closed, |buf| sock.read(buf)) {
                Fill::Drained => {}
                Fill::Eof => eof = true,
                Fill::Error => err = true,
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

    fn process_requests(&mut self, idx: usize) {
        let (mut rb, pool) = match self.clients.get_mut(idx) {
            Some(c) if c.closing => {
                c.rb.clear();
                return;
            }
            Some(c) => (std::mem::take(&mut c.rb), c.pool),
            None => return,
        };
        let mut stop = false;
        loop {
            let buf = rb.filled();
            if buf.is_empty() {
                break;
            }
            if let Some(c) = self.clients.get_mut(idx) {
                if c.over_limits() {
                    c.paused = true;
                    break;
                }
                if c.swallow > 0 {
                    let n = c.swallow.min(buf.len());
                    c.swallow -= n;
                    rb.consume(n);
                    continue;
                }
            }
            let binary = match self.clients.get_mut(idx) {
                Some(c) => *c.binary.get_or_insert(buf[0] == pbin::REQUEST_MAGIC),
                None => break,
            };
            if binary {
                let step = self.bin_frame(idx, pool, buf);
                match step {
                    Step::Consumed(n) => {
                        rb.consume(n);
                        continue;
                    }
                    Step::NeedMore => break,
                    Step::Stop => {
                        stop = true;
                        break;
                    }
                }
            }
            let step = match text::next_line(buf) {
                // memcached keeps reading an unterminated multi-get; the
                // proxy must buffer it whole, so it sets a bound.
                Line::Incomplete if buf.len() > MAX_GET_LINE => {
                    self.answer(idx, b"CLIENT_ERROR line too long\r\n");
                    Step::Stop
                }
                Line::Incomplete => Step::NeedMore,
                Line::TooLong => {
                    self.answer(idx, b"CLIENT_ERROR line too long\r\n");
                    Step::Stop
                }
                Line::Complete { line, consumed } => self.request(idx, pool, buf, line, consumed),
            };
            match step {
                Step::Consumed(n) => rb.consume(n),
                Step::NeedMore => break,
                Step::Stop => {
                    stop = true;
                    break;
                }
            }
        }
        if let Some(c) = self.clients.get_mut(idx) {
            if stop {
                rb.clear();
                c.closing = true;
                c.eof = true;
            }
            c.rb = rb;
        }
        self.mark_client(idx);
    }

    fn answer(&mut self, idx: usize, bytes: &[u8]) {
        if let Some(c) = self.clients.get_mut(idx) {
            c.answer(bytes);
        }
    }

    fn count_request(&self, pool: usize, len: usize) {
        if let Some(ps) = self.stats.pools.get(pool) {
            ps.requests.fetch_add(1, Relaxed);
            ps.request_bytes.fetch_add(len as u64, Relaxed);
        }
    }

    /// Handle one complete request line (`consumed` bytes of `buf`).
    fn request(
        &mut self,
        idx: usize,
        pool: usize,
        buf: &[u8],
        line: &[u8],
        consumed: usize,
    ) -> Step {
        let first = line.split(|&c| c == b' ').find(|t| !t.is_empty());
        if first.and_then(pmeta::command).is_some() {
            let mut keybuf = [0u8; pmeta::KEY_BUF_LEN];
            return match pmeta::parse(line, &mut keybuf) {
                Err(e) => {
                    let mut v = e.msg.as_bytes().to_vec();
                    v.extend_from_slice(b"\r\n");
                    self.answer(idx, &v);
                    // A refused ms loses its data block, as in memcached.
                    if let Some(c) = self.clients.get_mut(idx) {
                        c.swallow = e.swallow;
                    }
                    Step::Consumed(consumed)
                }
                Ok(req) => self.meta_request(idx, pool, buf, line, consumed, &req),
            };
        }
        match text::parse_line(line) {
            Request::Get {
                kind,
                exptime,
                keys,
            } => {
                self.count_request(pool, consumed);
                self.get_request(idx, pool, &buf[..consumed], kind, exptime, keys);
                Step::Consumed(consumed)
            }
            Request::Store {
                key,
                bytes,
                noreply,
                ..
            } => {
                if bytes > MAX_ITEM {
                    if !noreply {
                        self.answer(idx, b"SERVER_ERROR object too large for cache\r\n");
                    }
                    if let Some(c) = self.clients.get_mut(idx) {
                        c.swallow = bytes + 2;
                    }
                    return Step::Consumed(consumed);
                }
                let total = consumed + bytes + 2;
                if buf.len() < total {
                    return Step::NeedMore;
                }
                if &buf[consumed + bytes..total] != b"\r\n" {
                    if !noreply {
                        self.answer(idx, b"CLIENT_ERROR bad data chunk\r\n");
                    }
                    return Step::Consumed(total);
                }
                self.count_request(pool, total);
                self.keyed(idx, pool, key, &buf[..total], noreply, None);
                Step::Consumed(total)
            }
            Request::Delete { key, noreply }
            | Request::Arith { key, noreply, .. }
            | Request::Touch { key, noreply, .. } => {
                self.count_request(pool, consumed);
                self.keyed(idx, pool, key, &buf[..consumed], noreply, None);
                Step::Consumed(consumed)
            }
            Request::FlushAll { noreply, .. } => {
                self.count_request(pool, consumed);
                self.fanout(idx, pool, &buf[..consumed], noreply);
                Step::Consumed(consumed)
            }
            Request::Version => {
                self.answer(
                    idx,
                    concat!("VERSION mnemo-proxy-", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
                );
                Step::Consumed(consumed)
            }
            Request::Verbosity { noreply, .. } => {
                // The proxy's own verbosity; servers are not asked to change.
                if !noreply {
                    self.answer(idx, b"OK\r\n");
                }
                Step::Consumed(consumed)
            }
            Request::Quit => Step::Stop,
            Request::Close => {
                if let Some(c) = self.clients.get_mut(idx) {
                    c.slots.clear();
                    c.wbuf.clear();
                }
                Step::Stop
            }
            Request::Shutdown { .. } | Request::ShutdownBadMode => {
                self.answer(idx, b"ERROR: shutdown not enabled\r\n");
                Step::Consumed(consumed)
            }
            Request::Stats(text::StatsCmd::General) => {
                let mut out = Vec::new();
                self.stats.stat_lines(&mut out);
                self.answer(idx, &out);
                Step::Consumed(consumed)
            }
            Request::Error { msg, noreply } => {
                if !noreply {
                    let mut v = msg.as_bytes().to_vec();
                    v.extend_from_slice(b"\r\n");
                    self.answer(idx, &v);
                }
                Step::Consumed(consumed)
            }
            Request::GetKeyTooLong => {
                // memcached also drops the answers still queued for earlier
                // gets of the batch; the proxy answers every request it
                // took, in order, and only this one with the error.
                let mut v = text::BAD_FORMAT.as_bytes().to_vec();
                v.extend_from_slice(b"\r\n");
                self.answer(idx, &v);
                Step::Consumed(consumed)
            }
            // Server administration concerns one server, not the proxy.
            // Listed one by one so that a new request kind in the parser
            // is a compile error here rather than a silent ERROR.
            Request::Stats(_)
            | Request::CacheMemlimit { .. }
            | Request::SlabsReassign(_)
            | Request::SlabsAutomove { .. }
            | Request::LruCrawler(_)
            | Request::Lru { .. } => {
                self.answer(idx, b"ERROR\r\n");
                Step::Consumed(consumed)
            }
        }
    }

    /// One binary request: translated to text for the servers, or answered
    /// here.
    /// Frame and validate one binary request with `mnemo_protocol::binary`,
    /// answering refusals as memcached does (bad magic: close; key or extras
    /// beyond the body: UNKNOWN_COMMAND and close; wrong shape: EINVAL and
    /// close; unknown opcode: UNKNOWN_COMMAND and skip its body).
    fn bin_frame(&mut self, idx: usize, pool: usize, buf: &[u8]) -> Step {
        let pk = match pbin::frame(buf) {
            pbin::Frame::Incomplete => return Step::NeedMore,
            pbin::Frame::BadMagic => return Step::Stop,
            pbin::Frame::Packet(pk) => pk,
        };
        let h = pk.header;
        let refuse = |st: u16| {
            let mut e = Vec::new();
            pbin::encode_error(&mut e, h.opcode, st, h.opaque);
            e
        };
        if !pbin::lengths_ok(&h) {
            self.answer(idx, &refuse(pbin::status::UNKNOWN_COMMAND));
            return Step::Stop;
        }
        let cmd = match pbin::decode(&pk, false) {
            Ok(c) => c,
            Err(pbin::Reject::Invalid) => {
                self.answer(idx, &refuse(pbin::status::INVALID_ARGUMENTS));
                return Step::Stop;
            }
            Err(pbin::Reject::Unknown { swallow }) => {
                self.answer(idx, &refuse(pbin::status::UNKNOWN_COMMAND));
                if let Some(c) = self.clients.get_mut(idx) {
                    c.swallow = swallow;
                }
                return Step::Consumed(pk.consumed);
            }
        };
        let vlen = cmd.value_len();
        if vlen > MAX_ITEM {
            // Refused from the header instead of buffered whole.
            self.answer(idx, &refuse(pbin::status::VALUE_TOO_LARGE));
            if let Some(c) = self.clients.get_mut(idx) {
                c.swallow = vlen;
            }
            return Step::Consumed(pk.consumed);
        }
        let total = pk.consumed + vlen;
        if buf.len() < total {
            return Step::NeedMore;
        }
        self.bin_request(
            idx,
            pool,
            &buf[..total],
            &h,
            &cmd,
            pk.key,
            &buf[pk.consumed..total],
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn bin_request(
        &mut self,
        idx: usize,
        pool: usize,
        p: &[u8],
        h: &pbin::Header,
        cmd: &pbin::Cmd,
        key: &[u8],
        value: &[u8],
    ) -> Step {
        let mut text = std::mem::take(&mut self.bintext);
        text.clear();
        let mut local = Vec::new();
        let (b, action) = binproto::plan(h, cmd, key, value, MAX_ITEM, &mut text, &mut local);
        self.count_request(pool, p.len());
        let step = match action {
            binproto::Action::Local => {
                if b.opcode == pbin::Opcode::Stat as u8 {
                    let mut lines = Vec::new();
                    self.stats.stat_lines(&mut lines);
                    for l in lines.split(|&c| c == b'\n') {
                        let l = l.strip_suffix(b"\r").unwrap_or(l);
                        if let Some(rest) = l.strip_prefix(b"STAT ") {
                            let sp = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
                            let v = rest.get(sp + 1..).unwrap_or(&[]);
                            b.respond(&mut local, pbin::status::OK, 0, &[], &rest[..sp], v);
                        }
                    }
                    b.respond(&mut local, pbin::status::OK, 0, &[], &[], &[]);
                }
                self.answer(idx, &local);
                Step::Consumed(p.len())
            }
            binproto::Action::Quit => {
                self.answer(idx, &local);
                Step::Stop
            }
            binproto::Action::Keyed { read } => {
                if let Some(c) = self.clients.get_mut(idx) {
                    c.next_bin = Some(b);
                }
                let cmd = match (read, text.get(..2)) {
                    (true, _) => MetaCmd::Get,
                    (false, Some(b"md")) => MetaCmd::Delete,
                    (false, Some(b"ma")) => MetaCmd::Arith,
                    _ => MetaCmd::Set,
                };
                self.keyed_meta(idx, pool, key, &text, cmd, None);
                Step::Consumed(p.len())
            }
            binproto::Action::Flush => {
                if let Some(c) = self.clients.get_mut(idx) {
                    c.next_bin = Some(b);
                }
                self.fanout(idx, pool, &text, false);
                Step::Consumed(p.len())
            }
        };
        if let Some(c) = self.clients.get_mut(idx) {
            c.next_bin = None;
        }
        self.bintext = text;
        step
    }

    fn meta_request(
        &mut self,
        idx: usize,
        pool: usize,
        buf: &[u8],
        line: &[u8],
        consumed: usize,
        req: &pmeta::Request<'_>,
    ) -> Step {
        if req.cmd == MetaCmd::Noop {
            self.answer(idx, b"MN\r\n");
            return Step::Consumed(consumed);
        }
        let total = match req.cmd {
            MetaCmd::Set => consumed + req.datalen + 2,
            _ => consumed,
        };
        if buf.len() < total {
            return Step::NeedMore;
        }
        if req.cmd == MetaCmd::Set && &buf[total - 2..total] != b"\r\n" {
            self.answer(idx, b"CLIENT_ERROR bad data chunk\r\n");
            return Step::Consumed(total);
        }
        self.count_request(pool, total);
        // Keys are hashed decoded (base64 keys arrive decoded from the
        // parser); the q flag is stripped on the way out and applied here,
        // so every request has exactly one reply to pair with.
        let quiet = req.flags.quiet.then_some(req.cmd);
        if req.flags.quiet {
            let mut stripped = Vec::with_capacity(total);
            meta::push_without_quiet(&mut stripped, line);
            stripped.extend_from_slice(&buf[consumed..total]);
            self.keyed_meta(idx, pool, req.key, &stripped, req.cmd, quiet);
        } else {
            self.keyed_meta(idx, pool, req.key, &buf[..total], req.cmd, quiet);
        }
        Step::Consumed(total)
    }

    fn keyed_meta(
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
            let deferred = client::valid_key(hkey).then(|| {
                let mut del = Vec::with_capacity(hkey.len() + 24);
                client::encode_delete(&mut del, hkey, true);
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

    fn pending(
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
    fn keyed(
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

    /// `cas` in a pool with a backup: the primary decides; the backup gets
    /// the new value as a plain `set` once the primary stored it (or an
    /// invalidating `delete` when the client asked for no reply and the
    /// outcome is unknown).
    fn keyed_cas(
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
            client::encode_delete(&mut del, key, true);
            if let Ok(s) = self.pick(b, hkey) {
                let _ = self.send(b, s, &del, None);
            }
            return;
        }
        let mut set = Vec::with_capacity(data.len() + key.len() + 48);
        client::encode_store(
            &mut set,
            client::StoreCmd::Set,
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

    fn slot_kind(&mut self, idx: usize, cid: u64, seq: u64) -> Option<&mut SlotKind> {
        let c = self.clients.get_mut(idx).filter(|c| c.id == cid)?;
        c.slot_mut(seq).map(|s| &mut s.kind)
    }

    fn complete(&mut self, idx: usize, cid: u64, seq: u64, bytes: &[u8]) {
        if let Some(c) = self.clients.get_mut(idx).filter(|c| c.id == cid) {
            c.complete(seq, bytes);
            self.mark_client(idx);
        }
    }

    /// The primary server of a single-reply request failed with `msg`:
    /// retry a read on the backup pool, answer a write from its mirror, or
    /// pass the error on.
    fn primary_failed(&mut self, idx: usize, cid: u64, seq: u64, msg: &'static [u8]) {
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

    fn get_request(
        &mut self,
        idx: usize,
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
        let Some(cid) = self.clients.get(idx).map(|c| c.id) else {
            return;
        };
        let first = servers.first().copied().unwrap_or(usize::MAX);
        if backup.is_none() && servers.iter().all(|&s| s == first) {
            // All keys on one server: forward the line as it came.
            let c = match self.clients.get_mut(idx) {
                Some(c) => c,
                None => return,
            };
            let seq = c.push_slot(SlotKind::Simple(None));
            self.scratch = servers;
            if first == usize::MAX {
                self.complete(idx, cid, seq, NO_LIVE);
                return;
            }
            let p = self.pending(idx, cid, seq, What::GetRaw, None);
            if let Err(msg) = self.send(pool, first, line, Some(p)) {
                self.stats.pools[pool].forward_error.fetch_add(1, Relaxed);
                self.complete(idx, cid, seq, msg);
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
        let Some(c) = self.clients.get_mut(idx) else {
            return;
        };
        let seq = c.push_slot(SlotKind::Multi(Box::new(mg)));
        for part in 0..nparts {
            self.send_part(idx, cid, seq, pool, part);
        }
    }

    /// Send part `part` of a multi-get to its server (in `pool`).
    fn send_part(&mut self, idx: usize, cid: u64, seq: u64, pool: usize, part: usize) {
        let mut req = Vec::new();
        let server = match self.slot_kind(idx, cid, seq) {
            Some(SlotKind::Multi(mg)) => {
                mg.encode_part(part, &mut req);
                mg.parts[part].server
            }
            _ => return,
        };
        let res = if server == usize::MAX {
            Err(NO_LIVE)
        } else {
            let p = self.pending(idx, cid, seq, What::GetPart(part as u32), None);
            self.send(pool, server, &req, Some(p))
        };
        if let Err(msg) = res {
            self.part_failed(idx, cid, seq, part, msg);
        }
    }

    /// A part of a multi-get failed: its keys go to the backup pool if
    /// there is one and they were not already there; otherwise the whole
    /// get answers with the error.
    fn part_failed(&mut self, idx: usize, cid: u64, seq: u64, part: usize, msg: &[u8]) {
        let Some(pool) = self
            .clients
            .get(idx)
            .filter(|c| c.id == cid)
            .map(|c| c.pool)
        else {
            return;
        };
        let backup = self.pools.get(pool).and_then(|p| p.backup);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut new_parts = Vec::new();
        {
            let Some(SlotKind::Multi(mg)) = self.slot_kind(idx, cid, seq) else {
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
            if let Some(SlotKind::Multi(mg)) = self.slot_kind(idx, cid, seq) {
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
                self.send_part(idx, cid, seq, b, np);
            }
        }
        self.part_done(idx, cid, seq);
    }

    fn part_done(&mut self, idx: usize, cid: u64, seq: u64) {
        let Some(c) = self.clients.get_mut(idx).filter(|c| c.id == cid) else {
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
        self.mark_client(idx);
    }

    /// flush_all: to every server of the pool and of its backup.
    fn fanout(&mut self, idx: usize, pool: usize, bytes: &[u8], noreply: bool) {
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

    fn fanout_reply(&mut self, idx: usize, cid: u64, seq: u64, err: Option<&[u8]>) {
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

    /// The server for `key` in `pool`.
    fn pick(&self, pool: usize, key: &[u8]) -> Result<usize, &'static [u8]> {
        let p = &self.pools[pool];
        let s = p.placement.server_for(key).ok_or(NO_LIVE)?;
        // Pools with a backup keep ejected servers on the ring so that their
        // keys fail over to the backup instead of moving to another primary.
        if p.servers[s].ejected_until.is_some() {
            return Err(EJECTED);
        }
        Ok(s)
    }

    /// Queue `bytes` for server `server` of `pool`, expecting a reply if
    /// `pending` is given.
    fn send(
        &mut self,
        pool: usize,
        server: usize,
        bytes: &[u8],
        pending: Option<Pending>,
    ) -> Result<(), &'static [u8]> {
        let b = self.conn_for(pool, server)?;
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
            ss.in_flight.fetch_add(1, Relaxed);
        }
        ss.requests.fetch_add(1, Relaxed);
        ss.request_bytes.fetch_add(bytes.len() as u64, Relaxed);
        self.mark_backend(b);
        Ok(())
    }

    /// A connection to the server, round-robin over `server_connections`,
    /// opened (non-blocking) if needed.
    fn conn_for(&mut self, pool: usize, server: usize) -> Result<usize, &'static [u8]> {
        let timeout = self.pools[pool].conf.timeout;
        let keepalive = self.pools[pool].conf.tcpkeepalive;
        let s = &mut self.pools[pool].servers[server];
        let i = s.rr % s.conns.len().max(1);
        s.rr = s.rr.wrapping_add(1);
        if let Some(b) = s.conns.get(i).copied().flatten() {
            if self.backends.get(b).is_some() {
                return Ok(b);
            }
        }
        let sock = match &s.addr {
            Addr::Tcp { host, port } => (host.as_str(), *port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unresolved"))
                .and_then(TcpStream::connect)
                .map(|t| {
                    let _ = t.set_nodelay(true);
                    if keepalive {
                        let _ = socket2::SockRef::from(&t).set_keepalive(true);
                    }
                    Sock::Tcp(t)
                }),
            Addr::Unix(p) => UnixStream::connect(p).map(Sock::Unix),
        };
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
            inb: Buf::with_capacity(READ_CHUNK),
            scan: 0,
            pending: VecDeque::new(),
        });
        let reg = self.poll.registry();
        let ok = self
            .backends
            .get_mut(b)
            .is_some_and(|be| be.sock.register(reg, token(BACKEND, b)).is_ok());
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

    /// Count a failure of a server; past `server_failure_limit` (with
    /// `auto_eject_hosts`) it leaves the ring until `server_retry_timeout`.
    fn server_failed(&mut self, pool: usize, server: usize) {
        let now = self.now;
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let limit = p.conf.server_failure_limit;
        let retry = p.conf.server_retry_timeout;
        let eject = p.conf.auto_eject_hosts;
        let Some(s) = p.servers.get_mut(server) else {
            return;
        };
        s.failures += 1;
        if eject && s.failures >= limit && s.ejected_until.is_none() {
            s.failures = 0;
            s.ejected_until = Some(now + retry);
            if p.backup.is_none() {
                p.rebuild();
            }
            let ps = &self.stats.pools[pool];
            ps.server_ejects.fetch_add(1, Relaxed);
            let ss = &ps.servers[server];
            ss.ejections.fetch_add(1, Relaxed);
            // Microseconds, as twemproxy reports server_ejected_at.
            let unix_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            ss.ejected_at.store(unix_us, Relaxed);
        }
    }

    fn backend_event(&mut self, b: usize, readable: bool, writable: bool) {
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
            if !be.sock.connected() {
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

    fn backend_read(&mut self, b: usize) {
        let mut eof = false;
        let mut err = false;
        let mut inb = {
            let Some(be) = self.backends.get_mut(b) else {
                return;
            };
            let sock = &mut be.sock;
            match be.inb.fill(be.peer_closed, |buf| sock.read(buf)) {
                Fill::Drained => {}
                Fill::Eof => eof = true,
                Fill::Error => err = true,
            }
            std::mem::take(&mut be.inb)
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
                        s.failures = 0;
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

    fn on_reply(&mut self, p: Pending, bytes: &[u8], r: &Reply) {
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
                            status: client::MetaStatus::Hd,
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

    fn fail_backend(&mut self, b: usize, why: Failure) {
        let Some(mut be) = self.backends.remove(b) else {
            return;
        };
        be.sock.deregister(self.poll.registry());
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
        let msg = why.msg();
        for p in be.pending.drain(..) {
            self.pending_failed(p, msg);
        }
    }

    fn pending_failed(&mut self, p: Pending, msg: &'static [u8]) {
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

    /// Write what is queued: every touched server connection, then every
    /// touched client, one write each.
    fn flush(&mut self) {
        let backends = std::mem::take(&mut self.dirty_backends);
        for &b in &backends {
            let mut failed = false;
            if let Some(be) = self.backends.get_mut(b) {
                be.dirty = false;
                let sock = &mut be.sock;
                failed = drain(&mut be.out, &mut be.opos, |b| sock.write(b)) == Drain::Failed;
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
                let sock = &mut cl.sock;
                match drain(&mut cl.wbuf, &mut cl.wpos, |b| sock.write(b)) {
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

    fn apply_reload(&mut self, r: Reload) {
        let cfg = r.config;
        let old = std::mem::take(&mut self.pools);
        let mut pools: Vec<PoolRt> = (0..cfg.pools.len())
            .map(|i| PoolRt::new(&cfg.pools[i], cfg.backup_index(i)))
            .collect();
        let mut moved = vec![false; self.backends.items.len()];
        for (npi, np) in pools.iter_mut().enumerate() {
            let Some(op) = old.iter().find(|o| o.conf.name == np.conf.name) else {
                continue;
            };
            for (nsi, ns) in np.servers.iter_mut().enumerate() {
                let Some(os) = op.servers.iter().find(|o| o.addr == ns.addr) else {
                    continue;
                };
                ns.failures = os.failures;
                ns.ejected_until = os.ejected_until;
                for (k, c) in os.conns.iter().enumerate() {
                    if let (Some(b), true) = (c, k < ns.conns.len()) {
                        if let Some(be) = self.backends.get_mut(*b) {
                            be.pool = npi;
                            be.server = nsi;
                            ns.conns[k] = Some(*b);
                            moved[*b] = true;
                            r.stats.pools[npi].servers[nsi]
                                .connections
                                .fetch_add(1, Relaxed);
                        }
                    }
                }
            }
            if np.backup.is_none() {
                np.rebuild();
            }
        }
        // Backends of servers the new config dropped still carry their old
        // pool and server indices, which now name other servers: detach
        // them first, so closing them touches no server's counters (their
        // own lived in the old stats, which are gone).
        let removed: Vec<usize> = self
            .backends
            .indices()
            .into_iter()
            .filter(|&b| !moved.get(b).copied().unwrap_or(false))
            .collect();
        for &b in &removed {
            if let Some(be) = self.backends.get_mut(b) {
                be.pool = usize::MAX;
            }
        }
        self.pools = pools;
        self.stats = r.stats;
        for b in removed {
            self.fail_backend(b, Failure::Removed);
        }
        // Listeners: keep those whose address survives, drop the others,
        // bind the new ones.
        for l in self.listeners.indices() {
            let addr = match self.listeners.get(l) {
                Some(x) => x.addr.clone(),
                None => continue,
            };
            match cfg
                .pools
                .iter()
                .position(|p| p.listen.as_ref() == Some(&addr))
            {
                Some(np) => {
                    if let Some(x) = self.listeners.get_mut(l) {
                        x.pool = np;
                    }
                }
                None => {
                    if let Some(mut x) = self.listeners.remove(l) {
                        let reg = self.poll.registry();
                        let _ = match &mut x.lsn {
                            Lsn::Tcp(t) => reg.deregister(t),
                            Lsn::Unix(u) => reg.deregister(u),
                        };
                    }
                }
            }
        }
        for (i, p) in cfg.pools.iter().enumerate() {
            if let Some(a) = &p.listen {
                let exists = self.listeners.items.iter().flatten().any(|l| &l.addr == a);
                if !exists {
                    if let Err(e) = self.add_listener(a, i) {
                        eprintln!("mnemo-proxy: reload: cannot listen on {a}: {e}");
                    }
                }
            }
        }
        // Clients follow their pool by name; a pool that is gone closes them.
        for c in self.clients.indices() {
            let name = match self.clients.get(c) {
                Some(x) => x.pool_name.clone(),
                None => continue,
            };
            match cfg.pool_index(&name) {
                Some(np) => {
                    if let Some(x) = self.clients.get_mut(c) {
                        x.pool = np;
                    }
                    self.stats.pools[np]
                        .client_connections
                        .fetch_add(1, Relaxed);
                    self.stats.curr_connections.fetch_add(1, Relaxed);
                }
                None => {
                    if let Some(mut x) = self.clients.remove(c) {
                        x.sock.deregister(self.poll.registry());
                    }
                }
            }
        }
        eprintln!("mnemo-proxy: worker {} applied new configuration", self.id);
    }
}

/// Whether an `ms` request line carries a compare-CAS flag (`C<n>`).
fn meta_compares_cas(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .position(|&c| c == b'\n')
        .unwrap_or(bytes.len());
    bytes[..end]
        .split(|&c| c == b' ' || c == b'\r')
        .skip(3)
        .any(|t| t.first() == Some(&b'C'))
}

/// Frame a one-element reply.
fn single(buf: &[u8]) -> Result<Option<(usize, Reply)>, ()> {
    match client::parse_reply(buf) {
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
fn scan_retrieval(buf: &[u8], scan: &mut usize) -> Result<Option<(usize, Reply)>, ()> {
    loop {
        match client::parse_reply(&buf[*scan..]) {
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

    #[test]
    fn buf_compacts_and_grows() {
        let mut b = Buf::with_capacity(8);
        b.spare()[..8].copy_from_slice(b"abcdefgh");
        b.end += 8;
        b.consume(6);
        assert_eq!(b.filled(), b"gh");
        // Full: the unread tail moves to the front.
        assert_eq!(b.spare().len(), 6);
        assert_eq!(b.filled(), b"gh");
        b.spare()[..6].copy_from_slice(b"ijklmn");
        b.end += 6;
        // Full with nothing consumed: it grows.
        assert!(b.spare().len() >= 8);
        assert_eq!(b.filled(), b"ghijklmn");
        b.consume(8);
        assert_eq!((b.start, b.end), (0, 0));
    }

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
