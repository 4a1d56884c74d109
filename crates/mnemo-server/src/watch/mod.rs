//! memcached's `watch`: live log streams (fetchers, mutations, evictions,
//! connevents, and newer memcached's deletions) sent to client
//! connections that asked for them.
//!
//! As in memcached (`logger.c`): each worker writes entries into its own
//! bounded buffer, a logger thread drains every buffer into each
//! watcher's bounded output buffer and writes those to the watchers'
//! sockets. A full worker buffer drops the entry (`log_worker_dropped`); a
//! watcher that does not read fast enough loses lines and, once it has
//! room again, is told how many with a `skipped=N` line. Nothing a watcher
//! does slows a worker down.
//!
//! Cost when nobody watches: one relaxed load of [`Logger::wants`] at each
//! place an entry could be written; no buffer exists until the first entry.
//! While someone watches, an entry costs its worker an uncontended lock of
//! its own buffer (the logger thread takes it only to swap buffers) and the
//! formatting of one line.
//!
//! The connection that sends `watch` stops reading commands: it leaves
//! its worker for the logger thread, which only writes to it and closes
//! it when the peer does.

pub mod hooks;
pub mod lines;
mod thread;

use mnemo_protocol::text::Keys;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

pub use thread::{adopt, spawn};

// memcached's LOG_* bits (logger.h), so a flags word means the same here.
pub const SYSEVENTS: u16 = 1 << 1;
pub const FETCHERS: u16 = 1 << 2;
pub const MUTATIONS: u16 = 1 << 3;
pub const CONNEVENTS: u16 = 1 << 5;
pub const EVICTIONS: u16 = 1 << 6;
pub const RAWCMDS: u16 = 1 << 9;
pub const PROXYREQS: u16 = 1 << 10;
pub const PROXYEVENTS: u16 = 1 << 11;
pub const PROXYUSER: u16 = 1 << 12;
/// Not in 1.6.18: newer memcached's stream of deleted items.
pub const DELETIONS: u16 = 1 << 13;

/// memcached's WATCHER_LIMIT.
pub const WATCHER_LIMIT: usize = 20;
/// Room an entry needs in a worker buffer before it is written: memcached
/// reserves its `reqlen` (512) plus the entry header; a longer line (a
/// key of 250 bytes all escaped) is bounded by this too.
const ENTRY_MAX: usize = 1024;
/// Entry header in a worker buffer: stream bit, line length, gid.
const ENTRY_HEAD: usize = 2 + 4 + 8;

/// The streams `watch` asked for, or `None` for a name memcached does not
/// know (answered `ERROR`). No names means fetchers. `proxyreqs`,
/// `proxyevents`, `proxyuser`, `sysevents` and `rawcmds` are accepted as
/// memcached 1.6.18 accepts them; mnemo has no events for them (memcached
/// built without its proxy has none for the proxy streams either).
pub fn parse_streams(args: Keys) -> Option<u16> {
    let mut f = 0u16;
    let mut any = false;
    for a in args {
        any = true;
        f |= match a {
            b"rawcmds" => RAWCMDS,
            b"evictions" => EVICTIONS,
            b"fetchers" => FETCHERS,
            b"mutations" => MUTATIONS,
            b"sysevents" => SYSEVENTS,
            b"connevents" => CONNEVENTS,
            b"proxyreqs" => PROXYREQS,
            b"proxyevents" => PROXYEVENTS,
            b"proxyuser" => PROXYUSER,
            b"deletions" => DELETIONS,
            _ => return None,
        };
    }
    Some(if any { f } else { FETCHERS })
}

/// One thread's entries waiting for the logger thread.
#[derive(Default)]
struct Ring {
    buf: Vec<u8>,
    written: u64,
    dropped: u64,
}

/// Totals behind memcached's `log_*` stats.
#[derive(Default)]
pub struct LogStats {
    pub worker_dropped: AtomicU64,
    pub worker_written: AtomicU64,
    pub watcher_skipped: AtomicU64,
    pub watcher_sent: AtomicU64,
    /// Watchers the logger thread served in its last round.
    pub watchers: AtomicU64,
}

pub struct Logger {
    /// Union of every watcher's streams: what is worth writing at all.
    flags: AtomicU16,
    /// memcached's logger gid: numbers every entry and every watcher.
    gid: AtomicU64,
    /// One per worker, then one for every other thread (UDP, engine
    /// threads' evictions).
    rings: Box<[Mutex<Ring>]>,
    ring_cap: usize,
    /// Watchers admitted (at most [`WATCHER_LIMIT`]), counted from the
    /// `watch` command on so the limit holds while one is handed over.
    admitted: AtomicUsize,
    watchers: Mutex<thread::Watchers>,
    wake: Condvar,
    watcher_buf: usize,
    pub stats: LogStats,
}

impl Logger {
    /// `threads` rings for workers plus a shared one; buffer sizes are
    /// memcached's `worker_logbuf_size` and `watcher_logbuf_size`.
    pub fn new(threads: usize, worker_buf: usize, watcher_buf: usize) -> Logger {
        Logger {
            flags: AtomicU16::new(0),
            gid: AtomicU64::new(0),
            rings: (0..=threads).map(|_| Mutex::default()).collect(),
            ring_cap: worker_buf.max(ENTRY_MAX + ENTRY_HEAD),
            admitted: AtomicUsize::new(0),
            watchers: Mutex::default(),
            wake: Condvar::new(),
            watcher_buf: watcher_buf.max(256),
            stats: LogStats::default(),
        }
    }

    /// Whether any watcher wants stream `f`: the only cost of logging
    /// while nobody watches.
    #[inline(always)]
    pub fn wants(&self, f: u16) -> bool {
        self.flags.load(Relaxed) & f != 0
    }

    /// The ring for threads that are not workers.
    pub fn shared_ring(&self) -> usize {
        self.rings.len() - 1
    }

    fn next_gid(&self) -> u64 {
        self.gid.fetch_add(1, Relaxed) + 1
    }

    /// Writes one entry of stream `flag` into ring `ring` (any index; an
    /// unknown one is the shared ring): `body` appends the line after its
    /// `ts=... gid=... ` head, ending in `\n`. Dropped, and counted, when
    /// the ring is full.
    pub fn log(&self, ring: usize, flag: u16, body: impl FnOnce(&mut Vec<u8>)) {
        let r = self
            .rings
            .get(ring)
            .unwrap_or(&self.rings[self.rings.len() - 1]);
        let mut r = r.lock();
        if r.buf.capacity() == 0 {
            r.buf.reserve_exact(self.ring_cap);
        }
        if r.buf.len() + ENTRY_HEAD + ENTRY_MAX > self.ring_cap {
            r.dropped += 1;
            return;
        }
        let gid = self.next_gid();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let at = r.buf.len();
        r.buf.extend_from_slice(&flag.to_le_bytes());
        r.buf.extend_from_slice(&[0; 4]);
        r.buf.extend_from_slice(&gid.to_le_bytes());
        let start = r.buf.len();
        lines::head(&mut r.buf, now.as_secs(), now.subsec_micros(), gid);
        body(&mut r.buf);
        let len = (r.buf.len() - start).min(ENTRY_MAX);
        r.buf.truncate(start + len);
        r.buf[at + 2..at + 6].copy_from_slice(&(len as u32).to_le_bytes());
        r.written += 1;
    }

    /// Admits one more watcher if the limit allows (memcached answers
    /// `WATCHER_TOO_MANY` otherwise).
    pub fn admit(&self) -> bool {
        self.admitted
            .fetch_update(Relaxed, Relaxed, |n| (n < WATCHER_LIMIT).then_some(n + 1))
            .is_ok()
    }

    /// Takes back an admission that did not become a watcher.
    pub fn unadmit(&self) {
        self.admitted.fetch_sub(1, Relaxed);
    }
}
