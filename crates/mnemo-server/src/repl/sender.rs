//! The serving side of a link: a client connection that sent `mn_repl
//! HELLO` leaves its worker (as a `watch` connection leaves for the
//! logger thread) and gets a thread of its own here, which answers the
//! HELLO, sends a full copy when the peer's position is not in the
//! backlog, then streams the backlog from that position. The peer sends
//! back only ACK frames. The thread runs its own poll over the
//! non-blocking socket, so a slow peer blocks nobody: it only falls
//! behind in the backlog, and once its position has left the ring the
//! link is closed and the peer's next HELLO gets a full copy.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use mnemo_engine::version::wall_unix_ms;
use mnemo_engine::{MetadumpCursor, MetadumpTarget};
use mnemo_net::Stream;
use mnemo_protocol::repl::backlog::Resync;
use mnemo_protocol::repl::hello::{write_binary_reply, write_reply, Hello, Reply, PROTO_VERSION};
use mnemo_protocol::repl::{decode, encode, returns_to, Decoded, Record};

use super::{Handoff, LinkState, LinkStats, Repl, Replica};
use crate::shared::{ConnInfo, Shared};

/// Bytes of stream read from the backlog at a time.
const CHUNK: usize = 64 * 1024;
/// An idle link sends a PING this often (lag, and a dead peer shows).
const PING_EVERY: Duration = Duration::from_millis(500);
/// Output queued past this and the resync walk waits for the socket.
const OUT_HIGH: usize = 1 << 20;

/// Peers streaming from this node at once, at most: each has a thread.
const MAX_REPLICAS: usize = 64;

/// Takes over a connection that sent a HELLO (already parsed).
pub fn adopt(sh: Arc<Shared>, mut stream: Stream, info: Arc<ConnInfo>, handoff: Handoff) {
    let hello = handoff.hello;
    let Some(repl) = sh.repl.clone() else {
        return release(&sh, &info);
    };
    let replica = Arc::new(Replica {
        addr: info.addr.clone(),
        stats: LinkStats::default(),
    });
    replica.stats.node_id.store(hello.node_id, Relaxed);
    replica.stats.set_state(LinkState::Handshake);
    {
        let mut list = repl.replicas.lock();
        list.retain(|r| r.stats.state() != LinkState::Down);
        if list.len() >= MAX_REPLICAS {
            drop(list);
            eprintln!(
                "[repl] refused replica {} (node {}): {MAX_REPLICAS} links already",
                info.addr, hello.node_id
            );
            let mut refusal = Vec::new();
            reply_to(
                &Reply::Refused(b"too many replication links"),
                handoff.binary_opaque,
                &mut refusal,
            );
            let _ = stream.write(&refusal);
            let _ = stream.flush_tls();
            return release(&sh, &info);
        }
        list.push(Arc::clone(&replica));
    }
    let name = format!("mnemo-repl-out-{}", hello.node_id);
    let (sh2, info2, r2) = (Arc::clone(&sh), Arc::clone(&info), Arc::clone(&replica));
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let mut s = Sender {
            sh: &sh2,
            repl: &repl,
            replica: &r2,
            stream,
            out: Vec::new(),
            inbuf: Vec::new(),
            sent: 0,
            frames: std::collections::VecDeque::new(),
            binary: handoff.binary_opaque,
            horizon: 0,
            receiver: (hello.node_id, hello.since),
        };
        if let Err(why) = s.run(hello) {
            eprintln!(
                "[repl] link to replica {} (node {}) closed: {why}",
                info2.addr, hello.node_id
            );
        }
        r2.stats.set_state(LinkState::Down);
        release(&sh2, &info2);
    });
    if spawned.is_err() {
        // The closure (and the socket in it) is gone.
        replica.stats.set_state(LinkState::Down);
        release(&sh, &info);
    }
}

/// Appends an answer to a HELLO in the form it was asked in.
fn reply_to(r: &Reply<'_>, binary: Option<u32>, out: &mut Vec<u8>) {
    match binary {
        Some(opaque) => write_binary_reply(r, opaque, out),
        None => write_reply(r, out),
    }
}

/// What leaving the server means for a connection's accounting.
fn release(sh: &Shared, info: &ConnInfo) {
    sh.conns.lock().remove(&info.fd);
    sh.global.curr_conns.fetch_sub(1, Relaxed);
}

struct Sender<'a> {
    sh: &'a Shared,
    repl: &'a Repl,
    replica: &'a Replica,
    stream: Stream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// Bytes of `out` already written.
    sent: usize,
    /// Stream end offset of each backlog frame sent and not yet
    /// acknowledged: the lag in operations.
    frames: std::collections::VecDeque<u64>,
    /// The opaque of a binary HELLO, whose answer is a binary response.
    binary: Option<u32>,
    /// This node's horizon as a full copy's tombstones were taken.
    horizon: u64,
    /// The receiver's node id and the first version of its run (its
    /// HELLO's): its own writes of this run are not sent back.
    receiver: (u8, u64),
}

type LinkResult = Result<(), String>;

impl Sender<'_> {
    fn run(&mut self, hello: Hello) -> LinkResult {
        let me = self.repl.node.id().get();
        if hello.node_id == me {
            return self.refuse(b"node id is this node's own");
        }
        if hello.proto != PROTO_VERSION {
            return self.refuse(b"unsupported replication protocol version");
        }
        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        poll.registry()
            .register(
                &mut self.stream,
                Token(0),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| e.to_string())?;
        let mut events = Events::with_capacity(4);
        let resync = self
            .repl
            .node
            .backlog()
            .lock()
            .resync(hello.replid, hello.offset);
        let replid = self.repl.node.backlog().lock().replid();
        let mut offset = match resync {
            Resync::Partial { offset } => {
                self.replica.stats.partial_resyncs.fetch_add(1, Relaxed);
                reply_to(
                    &Reply::Continue { replid, offset },
                    self.binary,
                    &mut self.out,
                );
                offset
            }
            Resync::Full { offset } => {
                self.replica.stats.full_resyncs.fetch_add(1, Relaxed);
                reply_to(
                    &Reply::FullResync { replid, offset },
                    self.binary,
                    &mut self.out,
                );
                self.replica.stats.set_state(LinkState::FullResync);
                self.full_copy(&mut poll, &mut events)?;
                if self.repl.node.backlog().lock().first_offset() > offset {
                    return Err(format!(
                        "the backlog moved past offset {offset} during the full copy"
                    ));
                }
                // The end of the copy: the stream continues at `offset`.
                // Deletes forgotten before the tombstones were copied are
                // in neither the copy nor the stream: the horizon, read
                // after them, tells the receiver what it cannot trust.
                self.push(&Record::Ack {
                    origin: me,
                    version: self.version(),
                    offset,
                    wall_ms: self.horizon,
                });
                offset
            }
        };
        self.replica.stats.set_state(LinkState::Streaming);
        let mut last_send = Instant::now();
        let mut busy = false;
        loop {
            if self.sh.stopping.load(Relaxed) {
                return Ok(());
            }
            self.read_acks()?;
            if self.pending() == 0 {
                let n = self.fill_from_backlog(offset)?;
                offset += n as u64;
                busy = n > 0;
                if n == 0 && last_send.elapsed() >= PING_EVERY {
                    // Idle: a good moment to let old tombstones go.
                    self.repl.node.expire_tombstones();
                    self.push(&Record::Ping {
                        origin: me,
                        version: self.version(),
                        wall_ms: wall_unix_ms(),
                    });
                }
            }
            if self.pending() > 0 {
                last_send = Instant::now();
                self.write_out()?;
            }
            // Streaming, the thread wakes once a millisecond and sends what
            // the writers appended meanwhile in one write: a wake-up and a
            // system call per batch, not per client write. Idle, it looks
            // every 5 ms; a blocked socket wakes it when it drains.
            let wait = if self.pending() > 0 || self.stream.wants_write() {
                Duration::from_millis(50)
            } else if busy {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(5)
            };
            if let Err(e) = poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e.to_string());
                }
            }
        }
    }

    /// A version carrying this node's id (for PING and ACK frames, whose
    /// origin must match it).
    fn version(&self) -> u64 {
        self.repl
            .node
            .engine()
            .versions()
            .map_or(u64::from(self.repl.node.id().get()), |h| h.last().0)
    }

    fn refuse(&mut self, why: &[u8]) -> LinkResult {
        reply_to(&Reply::Refused(why), self.binary, &mut self.out);
        let _ = self.stream.write(&self.out);
        let _ = self.stream.flush_tls();
        Err(String::from_utf8_lossy(why).into_owned())
    }

    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    fn push(&mut self, rec: &Record<'_>) {
        let _ = encode(rec, &mut self.out);
    }

    /// Appends whole frames of the stream from `offset`; how many bytes
    /// of the stream that took (a SKIP stands in for the receiver's own
    /// writes, so fewer may go out).
    fn fill_from_backlog(&mut self, offset: u64) -> Result<usize, String> {
        let start = self.out.len();
        let got = self
            .repl
            .node
            .backlog()
            .lock()
            .read(offset, CHUNK, &mut self.out);
        let Some(n) = got else {
            return Err(format!(
                "fell behind: offset {offset} has left the backlog (a full resync follows)"
            ));
        };
        let whole = whole_frames(&self.out[start..]);
        if whole == 0 && n > 0 {
            // One frame larger than the chunk: read exactly it.
            self.out.truncate(start);
            let mut tmp = Vec::new();
            let _ = self.repl.node.backlog().lock().read(offset, 4, &mut tmp);
            let Some(l) = tmp.get(..4) else {
                return Ok(0);
            };
            let flen = 4 + u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
            let got = self
                .repl
                .node
                .backlog()
                .lock()
                .read(offset, flen, &mut self.out);
            if got != Some(flen) {
                self.out.truncate(start);
                return Ok(0);
            }
        } else {
            self.out.truncate(start + whole);
        }
        let taken = self.out.len() - start;
        self.leave_out_returning(start, offset);
        self.lag_update();
        Ok(taken)
    }

    /// Over the whole frames in `out[start..]`, the stream's from
    /// `offset`: notes each one sent for the lag, and replaces each run
    /// of the receiver's own writes of its run (which it holds, and would
    /// only find known) with one SKIP of their length. In place: a SKIP is
    /// shorter than any frame it stands in for.
    fn leave_out_returning(&mut self, start: usize, offset: u64) {
        let (node, since) = self.receiver;
        let me = self.repl.node.id().get();
        let mut read = start;
        let mut write = start;
        let mut end_off = offset;
        let mut skipped = 0u64;
        // Allocated only if a SKIP is written.
        let mut skip = Vec::new();
        while let Some(l) = self.out.get(read..read + 4) {
            let flen = 4 + u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
            let frame = read..read + flen;
            end_off += flen as u64;
            read += flen;
            if returns_to(&self.out[frame.clone()], node, since) {
                skipped += flen as u64;
                continue;
            }
            if skipped > 0 {
                write += self.put_skip(write, skipped, me, &mut skip);
                skipped = 0;
            }
            self.out.copy_within(frame, write);
            write += flen;
            self.frames.push_back(end_off);
        }
        if skipped > 0 {
            write += self.put_skip(write, skipped, me, &mut skip);
        }
        self.out.truncate(write);
    }

    /// Writes a SKIP of `bytes` at `at` in `out`; its length.
    fn put_skip(&mut self, at: usize, bytes: u64, me: u8, scratch: &mut Vec<u8>) -> usize {
        scratch.clear();
        let _ = encode(
            &Record::Skip {
                origin: me,
                version: self.version(),
                bytes,
            },
            scratch,
        );
        self.out[at..at + scratch.len()].copy_from_slice(scratch);
        scratch.len()
    }

    fn lag_update(&self) {
        self.replica
            .stats
            .lag_ops
            .store(self.frames.len() as u64, Relaxed);
    }

    /// Writes what it can without blocking.
    fn write_out(&mut self) -> LinkResult {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err("peer closed".into()),
                Ok(n) => {
                    self.sent += n;
                    self.replica.stats.bytes_out.fetch_add(n as u64, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        match self.stream.flush_tls() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        Ok(())
    }

    /// Reads ACKs from the peer; anything else ends the link.
    fn read_acks(&mut self) -> LinkResult {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("peer closed the link".into()),
                Ok(n) => {
                    self.replica.stats.bytes_in.fetch_add(n as u64, Relaxed);
                    self.inbuf.extend_from_slice(&buf[..n]);
                    if self.inbuf.len() > 1 << 16 {
                        return Err("peer sent more than ACKs".into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        loop {
            match decode(&self.inbuf, 0) {
                Ok(Decoded::Frame(
                    Record::Ack {
                        offset,
                        wall_ms,
                        origin,
                        ..
                    },
                    used,
                )) => {
                    let want = self.replica.stats.node_id.load(Relaxed);
                    if origin != want {
                        return Err(format!(
                            "ACK from node {origin}, the link's HELLO named node {want}"
                        ));
                    }
                    while self.frames.front().is_some_and(|&e| e <= offset) {
                        self.frames.pop_front();
                    }
                    self.lag_update();
                    if wall_ms > 0 {
                        self.replica
                            .stats
                            .lag_ms
                            .store(wall_unix_ms().saturating_sub(wall_ms), Relaxed);
                    }
                    self.inbuf.drain(..used);
                }
                Ok(Decoded::Frame(_, _)) => return Err("peer sent a frame other than ACK".into()),
                Ok(Decoded::NeedMore) => return Ok(()),
                Err(e) => return Err(format!("bad frame from peer: {e}")),
            }
        }
    }

    /// Waits for the socket to take output down to `OUT_HIGH`.
    fn drain_to(&mut self, poll: &mut Poll, events: &mut Events, high: usize) -> LinkResult {
        while self.pending() > high {
            if self.sh.stopping.load(Relaxed) {
                return Err("stopping".into());
            }
            self.write_out()?;
            self.read_acks()?;
            if self.pending() > high {
                if let Err(e) = poll.poll(events, Some(Duration::from_millis(50))) {
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// The full copy: every item (counters as their base and each node's
    /// totals), then the tombstones and the flush barrier. Walks the
    /// index a shard at a time through the engine's metadump cursor and
    /// reads each key under its own lock, so no client waits on it.
    fn full_copy(&mut self, poll: &mut Poll, events: &mut Events) -> LinkResult {
        let node = &self.repl.node;
        let engine = Arc::clone(node.engine());
        let mut cursor = MetadumpCursor::new(MetadumpTarget::Hash);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        loop {
            keys.clear();
            let done = engine
                .lru_crawler_metadump_step(&mut cursor, |r| keys.push(r.key.to_vec()))
                .map_err(|e| format!("full resync cannot walk the items: {e:?}"))?;
            for k in &keys {
                node.snapshot_key(k, &mut self.out);
            }
            self.drain_to(poll, events, OUT_HIGH)?;
            if done {
                break;
            }
        }
        // Read before the tombstones are: any forgotten later was copied.
        self.horizon = node.horizon();
        node.snapshot_tombstones(&mut self.out);
        self.drain_to(poll, events, 0)?;
        Ok(())
    }
}

/// How many bytes at the start of `buf` are whole frames.
fn whole_frames(buf: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(l) = buf.get(pos..pos + 4) {
        let flen = 4 + u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        if pos + flen > buf.len() {
            break;
        }
        pos += flen;
    }
    pos
}
