//! The logger thread: drains the workers' entry buffers into each
//! watcher's bounded output and writes it to the watchers' sockets, as
//! memcached's `logger_thread` does (same per-watcher skip accounting, same
//! adaptive sleep, a zero-timeout `poll` to see writability and hang-ups).

use super::{lines, Logger, CONNEVENTS, EVICTIONS};
use crate::shared::{ConnInfo, ConnState, Shared};
use mnemo_net::Stream;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// memcached's MIN_LOGGER_SLEEP; its maximum is 1 s, ours shorter so an
/// idle stream's first line is not held back as long.
const MIN_SLEEP: Duration = Duration::from_millis(1);
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Room kept for a `skipped=N` line in front of the next line.
const SKIP_ROOM: usize = 128;

/// One watching connection, owned by the logger thread.
struct Watcher {
    stream: Stream,
    info: Arc<ConnInfo>,
    flags: u16,
    /// Entries numbered before the `watch` are not shown.
    min_gid: u64,
    /// Output not yet written, from `sent` on.
    buf: Vec<u8>,
    sent: usize,
    /// Lines lost since the last one written.
    skipped: u64,
    /// A write found the socket full this round: skip without trying.
    failed_flush: bool,
    dead: bool,
}

impl Watcher {
    fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Writes what it can; the bytes written, 0 when the socket is full.
    fn flush(&mut self) -> usize {
        let mut total = 0;
        while self.pending() > 0 && !self.dead {
            match self.stream.write(&self.buf[self.sent..]) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.sent += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        }
        // A TLS stream may still hold records it could not send; plain
        // sockets hold nothing.
        if !self.dead {
            match self.stream.flush() {
                Err(e)
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    self.dead = true
                }
                _ => {}
            }
        }
        total
    }

    /// Room for `n` more bytes within `cap` (compacting if that makes it).
    fn room_for(&mut self, n: usize, cap: usize) -> bool {
        if self.pending() + n > cap {
            return false;
        }
        if self.buf.len() + n > cap {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        true
    }
}

/// The logger thread's watchers.
#[derive(Default)]
pub(super) struct Watchers {
    list: Vec<Watcher>,
}

/// Makes the connection that sent `watch` a watcher of `flags`: its first
/// output is `OK`, and it sees entries numbered from now on. The caller
/// took an admission ([`Logger::admit`]) and has removed the socket from
/// its own event loop.
pub fn adopt(sh: &Shared, stream: Stream, info: Arc<ConnInfo>, flags: u16) {
    let log = &sh.log;
    info.set_state(ConnState::Watch);
    let mut w = log.watchers.lock();
    let mut buf = Vec::with_capacity(log.watcher_buf.min(64 * 1024));
    buf.extend_from_slice(b"OK\r\n");
    w.list.push(Watcher {
        stream,
        info,
        flags,
        min_gid: log.next_gid(),
        buf,
        sent: 0,
        skipped: 0,
        failed_flush: false,
        dead: false,
    });
    set_flags(sh, &w);
    log.wake.notify_one();
}

/// Publishes the union of the watchers' streams.
fn set_flags(sh: &Shared, w: &Watchers) {
    let f = w.list.iter().fold(0u16, |f, w| f | w.flags);
    sh.log.flags.store(f, Relaxed);
    sh.engine.log_evictions(f & EVICTIONS != 0);
}

/// Starts the logger thread; it ends once the server is stopping.
pub fn spawn(sh: Arc<Shared>) -> io::Result<std::thread::JoinHandle<()>> {
    let log_ref = Arc::clone(&sh.log);
    let ring = log_ref.shared_ring();
    sh.engine.set_eviction_hook(move |ev| {
        log_ref.log(ring, EVICTIONS, |out| lines::eviction(out, ev));
    });
    std::thread::Builder::new()
        .name("mnemo-log".into())
        .spawn(move || run(&sh))
}

fn run(sh: &Shared) {
    let log = &sh.log;
    let mut spare: Vec<u8> = Vec::new();
    let mut sleep = MIN_SLEEP;
    while !sh.stopping.load(Relaxed) {
        let mut w = log.watchers.lock();
        if w.list.is_empty() {
            log.stats.watchers.store(0, Relaxed);
            // Woken by the next watcher; the timeout notices a stop.
            log.wake.wait_for(&mut w, Duration::from_secs(1));
            sleep = MIN_SLEEP;
            continue;
        }
        let mut found = false;
        for ring in log.rings.iter() {
            {
                let mut r = ring.lock();
                if r.written == 0 && r.dropped == 0 {
                    continue;
                }
                std::mem::swap(&mut r.buf, &mut spare);
                log.stats
                    .worker_written
                    .fetch_add(std::mem::take(&mut r.written), Relaxed);
                log.stats
                    .worker_dropped
                    .fetch_add(std::mem::take(&mut r.dropped), Relaxed);
            }
            found |= !spare.is_empty();
            deliver(log, &mut w, &spare);
            spare.clear();
        }
        poll_watchers(sh, &mut w);
        log.stats.watchers.store(w.list.len() as u64, Relaxed);
        drop(w);
        sleep = if found {
            (sleep / 2).max(MIN_SLEEP)
        } else {
            (sleep + sleep / 8).min(MAX_SLEEP)
        };
        std::thread::sleep(sleep);
    }
}

/// Hands every entry of one drained buffer to the watchers that want it.
fn deliver(log: &Logger, w: &mut Watchers, mut buf: &[u8]) {
    let cap = log.watcher_buf;
    while buf.len() >= super::ENTRY_HEAD {
        let flag = u16::from_le_bytes([buf[0], buf[1]]);
        let len = u32::from_le_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize;
        let mut g = [0u8; 8];
        g.copy_from_slice(&buf[6..14]);
        let gid = u64::from_le_bytes(g);
        let Some(line) = buf.get(super::ENTRY_HEAD..super::ENTRY_HEAD + len) else {
            break;
        };
        buf = &buf[super::ENTRY_HEAD + len..];
        for wt in w.list.iter_mut() {
            if wt.dead || wt.flags & flag == 0 || gid < wt.min_gid {
                continue;
            }
            while !wt.failed_flush && !wt.room_for(line.len() + SKIP_ROOM, cap) {
                if wt.flush() == 0 {
                    wt.failed_flush = true;
                }
            }
            if wt.failed_flush {
                wt.skipped += 1;
                log.stats.watcher_skipped.fetch_add(1, Relaxed);
                continue;
            }
            if wt.skipped > 0 {
                let s = format!("skipped={}\n", wt.skipped);
                wt.buf.extend_from_slice(s.as_bytes());
                wt.skipped = 0;
            }
            wt.buf.extend_from_slice(line);
            log.stats.watcher_sent.fetch_add(1, Relaxed);
        }
    }
}

/// Writes every watcher's output, notices the ones whose peer went away
/// (memcached reads a byte when its poll says readable: end of stream or
/// an error closes the watcher, anything else is thrown away), and closes
/// them.
fn poll_watchers(sh: &Shared, w: &mut Watchers) {
    let mut fds: Vec<libc::pollfd> = w
        .list
        .iter()
        .map(|wt| libc::pollfd {
            fd: wt.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a live array of `fds.len()` pollfd entries; a zero
    // timeout only reports readiness.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    for (i, wt) in w.list.iter_mut().enumerate() {
        wt.failed_flush = false;
        if rc > 0 {
            let re = fds[i].revents;
            if re & libc::POLLIN != 0 {
                let mut b = [0u8; 1];
                match wt.stream.read(&mut b) {
                    Ok(0) => wt.dead = true,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => wt.dead = true,
                }
            } else if re & (libc::POLLHUP | libc::POLLERR) != 0 {
                wt.dead = true;
            }
        }
        if !wt.dead {
            wt.flush();
        }
    }
    let before = w.list.len();
    w.list.retain(|wt| {
        if wt.dead {
            if sh.log.wants(CONNEVENTS) {
                // memcached hands a dead watcher back to its worker to be
                // closed, which logs it with the reason never set: error.
                let (rip, rport, transport) = lines::endpoint(&wt.info.addr);
                let line = lines::ConnLine {
                    rip,
                    rport,
                    transport,
                    cfd: wt.info.fd,
                    reason: Some("error"),
                };
                let ring = sh.log.shared_ring();
                sh.log.log(ring, CONNEVENTS, |out| lines::conn(out, &line));
            }
            sh.conns.lock().remove(&wt.info.fd);
            sh.global.curr_conns.fetch_sub(1, Relaxed);
            sh.log.unadmit();
        }
        !wt.dead
    });
    if w.list.len() != before {
        set_flags(sh, w);
    }
}
