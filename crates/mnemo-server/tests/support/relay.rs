//! A fault-injecting TCP relay for the replication tests.
//!
//! A [`Relay`] listens on a loopback port and forwards every connection it
//! accepts to a target address (settable later, because a mnemo node's port
//! is known only once it runs, and changes when the node restarts). The
//! test switches its [`Mode`] at run time:
//!
//! - [`Mode::Pass`]: bytes flow both ways.
//! - [`Mode::Cut`]: every open connection is closed (both sockets shut
//!   down) and new ones are accepted and closed at once, as a refused or
//!   reset link looks to the node.
//! - [`Mode::Stall`]: nothing is forwarded but connections stay open, so
//!   socket buffers fill and writers block, as behind a dead router.
//! - [`Mode::OneWay`]: one direction is forwarded, the other is read and
//!   thrown away (a blackhole: its writer sees progress, its reader sees
//!   silence). A byte stream with a hole in it cannot be resumed, as a TCP
//!   connection whose retransmissions ran out: a connection that lost bytes
//!   is closed when the mode leaves `OneWay`, so a peer never reads a stream
//!   with bytes missing from its middle.
//!
//! Everything is bounded: at most [`MAX_CONNS`] connections (more are
//! closed on accept), two threads each, and every blocking call has a short
//! timeout so a mode change or the relay's drop takes effect within
//! milliseconds. Bytes are counted per direction, forwarded and dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections a relay holds at once; the replication tests need two or
/// three per link (the link itself plus reconnect attempts).
pub const MAX_CONNS: usize = 32;
/// How long a blocking socket call waits before the thread looks at the
/// mode again: the reaction time of a mode change.
const POLL: Duration = Duration::from_millis(5);

/// The two directions through a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting side to the target ("upstream").
    Forward,
    /// From the target back to the connecting side.
    Backward,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Forward => 0,
            Dir::Backward => 1,
        }
    }
}

/// What a relay does with its connections; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Cut,
    Stall,
    /// Only the given direction is forwarded; the other is blackholed.
    OneWay(Dir),
}

struct Shared {
    mode: Mutex<Mode>,
    target: Mutex<Option<SocketAddr>>,
    /// Bumped by every cut: a connection from an older epoch closes.
    epoch: AtomicU64,
    stop: AtomicBool,
    live: AtomicUsize,
    accepted: AtomicU64,
    forwarded: [AtomicU64; 2],
    dropped: [AtomicU64; 2],
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One forwarded connection: the accepted socket and the one to the target.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    epoch: u64,
    /// Set once a blackholed direction threw bytes away.
    damaged: AtomicBool,
    closed: AtomicBool,
}

impl Conn {
    fn close(&self) {
        self.closed.store(true, SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

/// A loopback relay; stops its threads and closes its connections on drop.
pub struct Relay {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// A relay with no target yet: it accepts and closes connections until
    /// [`set_target`](Self::set_target).
    pub fn new() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("relay: cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("relay: no local address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("relay: cannot make the listener non-blocking: {e}"));
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            target: Mutex::new(None),
            epoch: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            forwarded: [AtomicU64::new(0), AtomicU64::new(0)],
            dropped: [AtomicU64::new(0), AtomicU64::new(0)],
            threads: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("relay-{}", addr.port()))
                .spawn(move || accept_loop(listener, shared))
                .unwrap_or_else(|e| panic!("relay: cannot spawn the acceptor: {e}"))
        };
        Relay {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    /// A relay forwarding to `target`.
    pub fn to(target: SocketAddr) -> Relay {
        let relay = Relay::new();
        relay.set_target(target);
        relay
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections go; open connections keep their target.
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut current = self.shared.mode.lock().unwrap_or_else(|p| p.into_inner());
        if mode == Mode::Cut {
            self.shared.epoch.fetch_add(1, SeqCst);
        }
        *current = mode;
    }

    /// Back to [`Mode::Pass`].
    pub fn heal(&self) {
        self.set_mode(Mode::Pass);
    }

    pub fn cut(&self) {
        self.set_mode(Mode::Cut);
    }

    pub fn stall(&self) {
        self.set_mode(Mode::Stall);
    }

    /// Forwards `dir` only; the other direction is blackholed.
    pub fn one_way(&self, dir: Dir) {
        self.set_mode(Mode::OneWay(dir));
    }

    /// Bytes forwarded in `dir` since the relay started.
    pub fn forwarded(&self, dir: Dir) -> u64 {
        self.shared.forwarded[dir.index()].load(SeqCst)
    }

    /// Bytes read in `dir` and thrown away by a blackhole.
    pub fn dropped(&self, dir: Dir) -> u64 {
        self.shared.dropped[dir.index()].load(SeqCst)
    }

    /// Connections open right now.
    pub fn live(&self) -> usize {
        self.shared.live.load(SeqCst)
    }

    /// Connections accepted since the relay started (closed ones included).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(SeqCst)
    }
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(
            &mut *self
                .shared
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        shared.accepted.fetch_add(1, SeqCst);
        reap(&shared);
        let target = *shared.target.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(target), false) = (target, shared.mode() == Mode::Cut) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        if shared.live.load(SeqCst) >= MAX_CONNS {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        for s in [&client, &upstream] {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(POLL));
            let _ = s.set_write_timeout(Some(POLL));
        }
        let conn = Arc::new(Conn {
            client,
            upstream,
            epoch: shared.epoch.load(SeqCst),
            damaged: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        shared.live.fetch_add(1, SeqCst);
        // Two pumps share the Conn; the one that ends last counts it closed.
        let ends = Arc::new(AtomicUsize::new(2));
        let pumps = [
            (Dir::Forward, client2, upstream2.try_clone()),
            (Dir::Backward, upstream2, conn.client.try_clone()),
        ];
        for (dir, from, to) in pumps {
            let Ok(to) = to else {
                conn.close();
                if ends.fetch_sub(1, SeqCst) == 1 {
                    shared.live.fetch_sub(1, SeqCst);
                }
                continue;
            };
            let (shared2, conn2, ends2) =
                (Arc::clone(&shared), Arc::clone(&conn), Arc::clone(&ends));
            let spawned = std::thread::Builder::new()
                .name("relay-pump".into())
                .spawn(move || {
                    pump(dir, from, to, &shared2, &conn2);
                    conn2.close();
                    if ends2.fetch_sub(1, SeqCst) == 1 {
                        shared2.live.fetch_sub(1, SeqCst);
                    }
                });
            match spawned {
                Ok(handle) => shared
                    .threads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(handle),
                Err(_) => {
                    conn.close();
                    if ends.fetch_sub(1, SeqCst) == 1 {
                        shared.live.fetch_sub(1, SeqCst);
                    }
                }
            }
        }
    }
}

/// Joins pump threads that have ended, so a long test does not pile up handles.
fn reap(shared: &Shared) {
    let mut threads = shared.threads.lock().unwrap_or_else(|p| p.into_inner());
    let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads)
        .into_iter()
        .partition(|t| t.is_finished());
    *threads = running;
    drop(threads);
    for t in done {
        let _ = t.join();
    }
}

/// Why a pump should stop now, if it should.
fn should_end(shared: &Shared, conn: &Conn) -> bool {
    shared.stop.load(SeqCst)
        || conn.closed.load(SeqCst)
        || conn.epoch != shared.epoch.load(SeqCst)
        || match shared.mode() {
            Mode::Cut => true,
            Mode::OneWay(_) => false,
            // Healed, but a blackhole took bytes out of this stream.
            Mode::Pass | Mode::Stall => conn.damaged.load(SeqCst),
        }
}

/// Moves bytes `from` -> `to` in `dir` under the relay's mode until the
/// connection ends (either side closes, a cut, a damaged stream healed).
fn pump(dir: Dir, mut from: TcpStream, mut to: TcpStream, shared: &Shared, conn: &Conn) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if should_end(shared, conn) {
            return;
        }
        let blackhole = match shared.mode() {
            Mode::Stall => {
                std::thread::sleep(POLL);
                continue;
            }
            Mode::OneWay(forwarded) => forwarded != dir,
            Mode::Pass | Mode::Cut => false,
        };
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        // The mode may have changed while the read waited: decide on the
        // bytes by the mode now, and hold them through a stall.
        loop {
            if should_end(shared, conn) {
                return;
            }
            if shared.mode() != Mode::Stall {
                break;
            }
            std::thread::sleep(POLL);
        }
        let blackhole =
            blackhole || matches!(shared.mode(), Mode::OneWay(forwarded) if forwarded != dir);
        if blackhole {
            conn.damaged.store(true, SeqCst);
            shared.dropped[dir.index()].fetch_add(n as u64, SeqCst);
            continue;
        }
        let mut sent = 0;
        while sent < n {
            if should_end(shared, conn) {
                return;
            }
            match to.write(&buf[sent..n]) {
                Ok(0) => return,
                Ok(k) => {
                    sent += k;
                    shared.forwarded[dir.index()].fetch_add(k as u64, SeqCst);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}
