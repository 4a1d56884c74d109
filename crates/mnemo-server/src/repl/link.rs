//! The pulling side of a link: one thread per `--peer`. It connects to
//! the peer's ordinary client port (TLS under `-Z`, the ascii token under
//! `-Y`), sends `mn_repl HELLO` with the stream position it last applied
//! up to, then applies the frames that come back and acknowledges them.
//! Any failure (refused connection, a peer that does not speak mn_repl,
//! a bad frame, a forged origin, a skewed clock) is one log line naming
//! the peer and a closed link; the thread retries with backoff, forever,
//! until the server stops. It blocks only itself.

use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnemo_engine::version::{wall_unix_ms, Version, EPOCH_UNIX_MS};
use mnemo_net::{Addr, BlockingStream};
use mnemo_protocol::repl::hello::{
    binary_hello, parse_reply, write_hello, Hello, Reply, PROTO_VERSION,
};
use mnemo_protocol::repl::{decode, encode, Decoded, Record};

use super::{LinkState, Peer, Repl};
use crate::shared::Shared;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Read timeout: how often a quiet link checks for the server stopping.
const TICK: Duration = Duration::from_millis(100);
/// A link that hears nothing (not even a PING) this long is dead.
const SILENCE: Duration = Duration::from_secs(10);
/// ACKs go out at most this often (and after every full read buffer).
const ACK_EVERY: Duration = Duration::from_millis(50);
/// The receive buffer's first size, and the least free room a read gets.
const READ_BUF: usize = 128 * 1024;
const READ_MIN: usize = 16 * 1024;

/// Starts one thread per `--peer`, and the timer that applies delayed
/// `flush_all` barriers when they fall due.
pub fn spawn_all(sh: &Arc<Shared>) -> io::Result<()> {
    let Some(repl) = sh.repl.as_ref() else {
        return Ok(());
    };
    let timer = Arc::clone(sh);
    std::thread::Builder::new()
        .name("mnemo-repl-timer".into())
        .spawn(move || {
            while !timer.stopping.load(Relaxed) {
                if let Some(r) = timer.repl.as_deref() {
                    r.node.apply_due_flushes();
                }
                std::thread::sleep(TICK);
            }
        })?;
    for peer in &repl.peers {
        let sh = Arc::clone(sh);
        let peer = Arc::clone(peer);
        std::thread::Builder::new()
            .name(format!("mnemo-repl-in-{}", peer.addr.port))
            .spawn(move || run(&sh, &peer))?;
    }
    Ok(())
}

/// Where this node is in a peer's stream: kept across reconnects, so a
/// link that comes back continues (partial resync) when it can.
#[derive(Clone, Copy, Default)]
struct Position {
    replid: u64,
    offset: u64,
}

fn run(sh: &Shared, peer: &Peer) {
    let Some(repl) = sh.repl.as_deref() else {
        return;
    };
    let mut pos = Position::default();
    let mut backoff = BACKOFF_MIN;
    let mut last_err = String::new();
    while !sh.stopping.load(Relaxed) {
        peer.stats.set_state(LinkState::Connecting);
        let started = Instant::now();
        let res = session(sh, repl, peer, &mut pos);
        peer.stats.set_state(LinkState::Down);
        if sh.stopping.load(Relaxed) {
            return;
        }
        if let Err(why) = res {
            // A peer that stays down is logged once, not every retry.
            if why != last_err || sh.verbose() > 0 {
                eprintln!("[repl] peer {}: {why}; retrying", peer.addr.name());
                last_err = why;
            }
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = BACKOFF_MIN;
        }
        sleep_unless_stopping(sh, backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn sleep_unless_stopping(sh: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !sh.stopping.load(Relaxed) {
        std::thread::sleep(TICK.min(end.saturating_duration_since(Instant::now())));
    }
}

fn connect(sh: &Shared, peer: &Peer) -> Result<BlockingStream, String> {
    let addr = Addr::Tcp {
        host: peer.addr.host.clone(),
        port: peer.addr.port,
    };
    // Reads time out every TICK so the thread sees the server stopping;
    // the handshake's reads retry until their own deadline.
    if sh.settings.ssl.enabled {
        crate::repl::stats::tls_connect(sh, &addr, TICK)
    } else {
        BlockingStream::connect(&addr, Duration::from_secs(2), Some(TICK))
            .map_err(|e| format!("connect: {e}"))
    }
}

/// Reads one `\r\n` line (at most 1 KB) byte by byte: the handshake is
/// short and nothing after it may be consumed here.
fn read_line(s: &mut BlockingStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(5);
    while line.len() < 1024 {
        match s.read(&mut b) {
            Ok(0) => return Err("peer closed during the handshake".into()),
            Ok(_) => {
                if b[0] == b'\n' {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(line);
                }
                line.push(b[0]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) && Instant::now() < deadline => {}
            Err(e) => return Err(format!("handshake: {e}")),
        }
    }
    Err("peer sent an over-long handshake line".into())
}

fn session(sh: &Shared, repl: &Repl, peer: &Peer, pos: &mut Position) -> Result<(), String> {
    let mut s = connect(sh, peer)?;
    peer.stats.set_state(LinkState::Handshake);
    if let Some(auth) = sh.auth.as_ref() {
        // -Y: the ascii token, as any client presents it.
        let (u, p) = auth.first().ok_or("the -Y file has no entry to present")?;
        let mut req = format!("set _ 0 0 {}\r\n", u.len() + 1 + p.len()).into_bytes();
        req.extend_from_slice(u);
        req.push(b' ');
        req.extend_from_slice(p);
        req.extend_from_slice(b"\r\n");
        s.write_all(&req).map_err(|e| format!("auth: {e}"))?;
        let line = read_line(&mut s)?;
        if line != b"STORED" {
            return Err(format!(
                "peer refused our -Y credentials: {}",
                String::from_utf8_lossy(&line)
            ));
        }
    }
    let me = repl.node.id().get();
    let mut hello = Vec::new();
    write_hello(
        &Hello {
            node_id: me,
            proto: PROTO_VERSION,
            replid: pos.replid,
            offset: pos.offset,
            since: repl.node.born(),
        },
        &mut hello,
    );
    let line = if sh.settings.sasl {
        sasl_hello(&mut s, me, pos, repl.node.born())?
    } else {
        s.write_all(&hello).map_err(|e| format!("HELLO: {e}"))?;
        read_line(&mut s)?
    };
    let mut full_replid = pos.replid;
    // Until a full copy's end is seen, the position is not advanced.
    let mut offset: Option<u64> = match parse_reply(&line) {
        Ok(Reply::Continue { replid, offset }) => {
            if replid != pos.replid || offset != pos.offset {
                return Err("peer continued from a position we did not ask for".into());
            }
            peer.stats.partial_resyncs.fetch_add(1, Relaxed);
            peer.stats.set_state(LinkState::Streaming);
            Some(offset)
        }
        Ok(Reply::FullResync { replid, .. }) => {
            peer.stats.full_resyncs.fetch_add(1, Relaxed);
            peer.stats.set_state(LinkState::FullResync);
            // Forgotten until the copy's end is seen: a link cut during
            // the copy must not continue as if it had the whole of it.
            *pos = Position::default();
            full_replid = replid;
            None
        }
        Ok(Reply::Refused(why)) => {
            return Err(format!(
                "peer refused the link: {}",
                String::from_utf8_lossy(why)
            ))
        }
        Ok(Reply::NotSupported) => return Err("peer does not speak mn_repl".into()),
        Err(e) => {
            return Err(format!(
                "{e}: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ))
        }
    };
    let max = repl.max_value;
    // Stream bytes are read straight into `buf[hi..]` and decoded from
    // `buf[lo..hi]`; only a frame cut by a read's end is ever moved (to
    // the front, when the tail runs short). Each of our own writes comes
    // back through here once per peer, so a copy per byte counts.
    let mut buf = vec![0u8; READ_BUF];
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut heard = Instant::now();
    let mut last_ack = Instant::now();
    let mut acked = offset;
    let mut ping_ms = 0u64;
    let mut peer_node: Option<u8> = None;
    // During a full copy: the hashes of the keys it carries, for the
    // sweep its end may ask for (the horizon rule, section 3).
    let hasher = std::collections::hash_map::RandomState::new();
    let mut copied: Vec<u64> = Vec::new();
    loop {
        if sh.stopping.load(Relaxed) {
            return Ok(());
        }
        if buf.len() - hi < READ_MIN {
            if lo > 0 {
                buf.copy_within(lo..hi, 0);
                hi -= lo;
                lo = 0;
            }
            if buf.len() - hi < READ_MIN {
                // One frame larger than the buffer (decode bounds it by
                // the largest value): grow to hold it.
                buf.resize(buf.len() * 2, 0);
            }
        }
        match s.read(&mut buf[hi..]) {
            Ok(0) => return Err("peer closed the link".into()),
            Ok(n) => {
                heard = Instant::now();
                peer.stats.bytes_in.fetch_add(n as u64, Relaxed);
                hi += n;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if heard.elapsed() > SILENCE {
                    return Err("peer silent for 10 s".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
        let mut used = lo;
        // One clock read per batch read, not per frame: the lag of the
        // batch's newest write is what `lag_ms` shows anyway.
        let mut newest_ms = None;
        loop {
            let (rec, n) = match decode(&buf[used..hi], max) {
                Ok(Decoded::Frame(rec, n)) => (rec, n),
                Ok(Decoded::NeedMore) => break,
                Err(e) => return Err(format!("bad frame: {e}")),
            };
            used += n;
            match rec {
                Record::Ping {
                    origin, wall_ms, ..
                } => {
                    check_sender(&mut peer_node, origin, me, peer)?;
                    ping_ms = wall_ms;
                    peer.stats
                        .lag_ms
                        .store(wall_unix_ms().saturating_sub(wall_ms), Relaxed);
                }
                Record::Skip { origin, bytes, .. } => {
                    // Our own writes of this run, not sent back: the
                    // stream moves on by their bytes.
                    check_sender(&mut peer_node, origin, me, peer)?;
                    let Some(o) = offset.as_mut() else {
                        return Err("peer skipped frames during a full copy".into());
                    };
                    *o = o.saturating_add(bytes);
                    pos.offset = *o;
                }
                Record::Ack {
                    origin,
                    offset: at,
                    wall_ms: horizon,
                    ..
                } => {
                    // From the sender: the full copy ends, the stream
                    // continues at `at`; `horizon` is the greatest version
                    // of a delete the sender has forgotten.
                    check_sender(&mut peer_node, origin, me, peer)?;
                    if offset.is_some() {
                        return Err("peer ended a full copy it had not begun".into());
                    }
                    if horizon > 0 {
                        copied.sort_unstable();
                        copied.dedup();
                        let n = repl
                            .node
                            .sweep_forgotten(Version(horizon), &copied, &hasher)
                            .map_err(|e| format!("after the full copy: {e}"))?;
                        if n > 0 || sh.verbose() > 0 {
                            eprintln!(
                                "[repl] peer {}: full copy past its tombstone horizon; \
                                 dropped {n} items it no longer holds",
                                peer.addr.name()
                            );
                        }
                    }
                    copied = Vec::new();
                    offset = Some(at);
                    *pos = Position {
                        replid: full_replid,
                        offset: at,
                    };
                    peer.stats.set_state(LinkState::Streaming);
                }
                rec => {
                    if offset.is_some() {
                        // How old the write is: its version's clock
                        // against ours (a full copy's items are not news).
                        newest_ms = Some(Version(rec.version()).ms().saturating_add(EPOCH_UNIX_MS));
                    } else if let Record::Set { key, .. } | Record::Counter { key, .. } = rec {
                        copied.push(hasher.hash_one(key));
                    }
                    match repl.node.apply(&rec) {
                        Ok(true) => peer.stats.applied.fetch_add(1, Relaxed),
                        Ok(false) => peer.stats.ignored.fetch_add(1, Relaxed),
                        Err(e) => {
                            return Err(format!("refused a frame from node {}: {e}", rec.origin()))
                        }
                    };
                    if let Some(o) = offset.as_mut() {
                        *o += n as u64;
                        pos.offset = *o;
                    }
                }
            }
        }
        if let Some(ms) = newest_ms {
            peer.stats
                .lag_ms
                .store(wall_unix_ms().saturating_sub(ms), Relaxed);
        }
        (lo, hi) = if used == hi { (0, 0) } else { (used, hi) };
        // At most one ACK per ACK_EVERY: an ACK per read would wake the
        // sender once per batch it sends.
        if (offset != acked || ping_ms != 0) && last_ack.elapsed() >= ACK_EVERY {
            if let Some(at) = offset {
                let mut ack = Vec::new();
                let version = repl
                    .node
                    .engine()
                    .versions()
                    .map_or(u64::from(me), |h| h.last().0);
                let _ = encode(
                    &Record::Ack {
                        origin: me,
                        version,
                        offset: at,
                        wall_ms: ping_ms,
                    },
                    &mut ack,
                );
                s.write_all(&ack).map_err(|e| format!("ACK: {e}"))?;
                peer.stats.bytes_out.fetch_add(ack.len() as u64, Relaxed);
                acked = offset;
                ping_ms = 0;
                last_ack = Instant::now();
            }
        }
    }
}

/// Fills `buf` within the handshake's deadline.
fn read_exact(s: &mut BlockingStream, buf: &mut [u8]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err("peer closed during the handshake".into()),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) && Instant::now() < deadline => {}
            Err(e) => return Err(format!("handshake: {e}")),
        }
    }
    Ok(())
}

/// One binary response: (status, value). Bodies are bounded: only the
/// handshake reads these.
fn binary_response(s: &mut BlockingStream) -> Result<(u16, Vec<u8>), String> {
    let mut h = [0u8; 24];
    read_exact(s, &mut h)?;
    if h[0] != 0x81 {
        return Err("peer's answer is not a binary response".into());
    }
    let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    if body > 4096 {
        return Err(format!("binary answer of {body} bytes to a handshake"));
    }
    let skip = usize::from(h[4]) + usize::from(u16::from_be_bytes([h[2], h[3]]));
    let mut b = vec![0u8; body];
    read_exact(s, &mut b)?;
    let value = b.get(skip..).unwrap_or(&[]).to_vec();
    Ok((u16::from_be_bytes([h[6], h[7]]), value))
}

/// Under `-S`: SASL PLAIN with the first entry of `MEMCACHED_SASL_PWDB`
/// (the node's own password file), then the binary HELLO. Returns the
/// answer line without its `\r\n`.
fn sasl_hello(
    s: &mut BlockingStream,
    me: u8,
    pos: &Position,
    since: u64,
) -> Result<Vec<u8>, String> {
    let path = std::env::var_os("MEMCACHED_SASL_PWDB")
        .ok_or("-S: MEMCACHED_SASL_PWDB names no file to take link credentials from")?;
    let file = std::fs::read(&path).map_err(|e| format!("-S: reading MEMCACHED_SASL_PWDB: {e}"))?;
    let first = file
        .split(|&b| b == b'\n')
        .find(|l| !l.is_empty())
        .ok_or("-S: MEMCACHED_SASL_PWDB has no entry")?;
    let mut parts = first.splitn(3, |&b| b == b':');
    let (Some(user), Some(pass)) = (parts.next(), parts.next()) else {
        return Err("-S: MEMCACHED_SASL_PWDB's first line is not user:password".into());
    };
    let pass = pass.strip_suffix(b"\r").unwrap_or(pass);
    let mut value = vec![0u8];
    value.extend_from_slice(user);
    value.push(0);
    value.extend_from_slice(pass);
    let mut p = vec![0x80, 0x21, 0, 5, 0, 0, 0, 0];
    p.extend_from_slice(&((5 + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(b"PLAIN");
    p.extend_from_slice(&value);
    s.write_all(&p).map_err(|e| format!("SASL: {e}"))?;
    let (st, _) = binary_response(s)?;
    if st != 0 {
        return Err(format!(
            "peer refused our SASL credentials (status {st:#x})"
        ));
    }
    let hello = Hello {
        node_id: me,
        proto: PROTO_VERSION,
        replid: pos.replid,
        offset: pos.offset,
        since,
    };
    s.write_all(&binary_hello(&hello, 0))
        .map_err(|e| format!("HELLO: {e}"))?;
    let (st, mut line) = binary_response(s)?;
    match st {
        0 => {}
        0x81 => return Err("peer does not speak mn_repl".into()),
        st => return Err(format!("peer answered the HELLO with status {st:#x}")),
    }
    if line.ends_with(b"\r\n") {
        line.truncate(line.len() - 2);
    }
    Ok(line)
}

/// PING and ACK frames come from the sender itself: the first names it,
/// any other id later is a forged or confused stream.
fn check_sender(seen: &mut Option<u8>, origin: u8, me: u8, peer: &Peer) -> Result<(), String> {
    if origin == me {
        return Err(format!("peer claims our own node id {me}"));
    }
    match *seen {
        None => {
            *seen = Some(origin);
            peer.stats.node_id.store(origin, Relaxed);
            Ok(())
        }
        Some(n) if n == origin => Ok(()),
        Some(n) => Err(format!(
            "unexpected node id {origin} on a link from node {n}"
        )),
    }
}
