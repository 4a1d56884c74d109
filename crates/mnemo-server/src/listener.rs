//! Listening sockets and the acceptor thread.
//!
//! memcached's model: one thread accepts on every listener and hands each
//! socket, round-robin, to a worker through a channel plus a mio `Waker`.
//! See docs/ARCHITECTURE.md for why this and not SO_REUSEPORT per worker.

use crate::settings::{bind_port, Settings};
use crate::shared::{ConnInfo, ConnState, Shared};
use crate::worker::{NewConn, WorkerHandle};
use mio::{Events, Interest, Poll, Token, Waker};
use mnemo_net::addr::{
    bind_tcp, bind_unix, listen_entries, resolve_host, split_host_port, ListenOpts, StaleSocket,
};
pub use mnemo_net::{Listener, Stream};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// memcached's `stats conns` spelling of a listener's local address.
pub fn describe(l: &Listener) -> String {
    match l {
        Listener::Tcp(l) => l
            .local_addr()
            .map(|a| tcp_text(&a))
            .unwrap_or_else(|_| "tcp:?".into()),
        Listener::Unix(l) => l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(|| "unix:?".into()),
    }
}

fn tcp_text(a: &SocketAddr) -> String {
    addr_text("tcp", a)
}

/// memcached's spelling of a socket address in `stats conns`: the
/// transport (`tcp`, `udp`), suffixed with 6 for IPv6.
pub fn addr_text(transport: &str, a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{transport}:{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("{transport}6:[{}]:{}", v.ip(), v.port()),
    }
}

/// memcached's listening-socket options: IPv6 sockets only IPv6 (so `::`
/// and `0.0.0.0` bind side by side), TCP_NODELAY inherited by clients, one
/// acceptor (no SO_REUSEPORT).
fn listen_opts(s: &Settings) -> ListenOpts {
    ListenOpts {
        backlog: s.backlog,
        reuse_port: false,
        v6_only: true,
        nodelay: true,
    }
}

/// The addresses one `-l` host stands for, with memcached's message when
/// the resolver fails.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    resolve_host(host, port).map_err(|e| format!("getaddrinfo(): {e} ({host})"))
}

/// Opens every listening socket the settings ask for, each with whether
/// its connections speak TLS (`-Z`, unless the `-l` entry says `notls:`).
pub fn bind_all(s: &Settings) -> Result<(Vec<Listener>, Vec<bool>), String> {
    let mut out = Vec::new();
    let mut tls = Vec::new();
    if let Some(path) = &s.socket_path {
        // memcached removes a stale socket file, never a regular file.
        let l = bind_unix(Path::new(path), StaleSocket::SocketOnly)
            .map_err(|e| format!("failed to listen on UNIX socket \"{path}\": {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(s.access & 0o777))
            .map_err(|e| format!("failed to set permissions on \"{path}\": {e}"))?;
        out.push(Listener::Unix(l));
        tls.push(false);
        return Ok((out, tls));
    }
    let Some(default_port) = bind_port(s.port) else {
        return Ok((out, tls));
    };
    let opts = listen_opts(s);
    for entry in &listen_entries(s.inter.as_deref()) {
        let (notls, entry) = crate::tls::split_notls(entry);
        if notls && !s.ssl.enabled {
            return Err(format!(
                "'notls' option is valid only when SSL is enabled\nfailed to listen on one of interface(s) {}: Success",
                s.inter.as_deref().unwrap_or_default()
            ));
        }
        let (host, port) = split_host_port(entry)?;
        let port = port.unwrap_or(default_port);
        for a in resolve(&host, port)? {
            match bind_tcp(a, &opts) {
                Ok(l) => {
                    out.push(Listener::Tcp(l));
                    tls.push(s.ssl.enabled && !notls);
                }
                // The default "::" is best effort, as on hosts without IPv6.
                Err(_) if s.inter.is_none() && a.is_ipv6() => {}
                Err(e) => return Err(format!("failed to listen on TCP port {port}: {e}")),
            }
        }
    }
    if out.is_empty() {
        return Err(format!("failed to listen on TCP port {}", s.port));
    }
    Ok((out, tls))
}

/// memcached's `MEMCACHED_PORT_FILENAME`: when the variable is set, the
/// ports bound for TCP and UDP are written to that file, one line per
/// socket (`TCP INET: 40123`, `UDP INET6: 40125`, TCP first, in bind
/// order), so whoever started the server with `-p -1` (any free port)
/// learns where it listens. As in memcached, the lines go to `<name>.lck`,
/// opened for appending before anything is bound, and the file is renamed
/// to `<name>` only once every socket is bound: a reader polling for
/// `<name>` never sees it half written. A unix socket (`-s`) writes none.
pub struct PortFile {
    file: std::fs::File,
    lck: std::ffi::OsString,
    path: std::ffi::OsString,
}

impl PortFile {
    /// Opens `<name>.lck` if the variable asks for it. A file that cannot
    /// be opened is reported and otherwise ignored, as memcached does.
    pub fn from_env(s: &Settings) -> Option<PortFile> {
        if s.socket_path.is_some() {
            return None;
        }
        let mut path = std::env::var_os("MEMCACHED_PORT_FILENAME")?;
        // memcached opens it after daemon() has moved to "/" (which -r
        // skips), so a relative name under -d lands there; mnemo binds
        // before daemonizing and resolves the name as memcached would.
        if s.daemonize && !s.maxcore && Path::new(&path).is_relative() {
            path = Path::new("/").join(path).into_os_string();
        }
        let mut lck = path.clone();
        lck.push(".lck");
        match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&lck)
        {
            Ok(file) => Some(PortFile { file, lck, path }),
            Err(e) => {
                eprintln!("Failed to open \"{}\": {e}", Path::new(&lck).display());
                None
            }
        }
    }

    /// Writes a line per TCP listener and UDP socket, then renames the
    /// file into place. memcached ignores write and rename failures here
    /// (the server runs on); so does this.
    pub fn finish(mut self, tcp: &[Listener], udp: &[std::net::UdpSocket]) {
        let mut text = String::new();
        let tcp_addrs = tcp.iter().filter_map(|l| match l {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        });
        // Each bound UDP socket comes with its per-thread duplicates, which
        // share its address; memcached writes one line per bound socket.
        let mut udp_addrs: Vec<_> = udp.iter().filter_map(|u| u.local_addr().ok()).collect();
        udp_addrs.dedup();
        for (proto, a) in tcp_addrs
            .map(|a| ("TCP", a))
            .chain(udp_addrs.into_iter().map(|a| ("UDP", a)))
        {
            let family = if a.is_ipv4() { "INET" } else { "INET6" };
            text.push_str(&format!("{proto} {family}: {}\n", a.port()));
        }
        let _ = self.file.write_all(text.as_bytes());
        drop(self.file);
        let _ = std::fs::rename(&self.lck, &self.path);
    }
}

const STOP: Token = Token(usize::MAX);

/// The acceptor's handle: wake it to make it notice `stopping`.
pub struct Acceptor {
    pub waker: Arc<Waker>,
    pub join: std::thread::JoinHandle<()>,
}

/// Registers listeners in `stats conns` and starts the acceptor thread.
pub fn spawn_acceptor(
    mut listeners: Vec<Listener>,
    tls: Vec<bool>,
    workers: Vec<(std::sync::mpsc::Sender<NewConn>, Arc<Waker>)>,
    shared: Arc<Shared>,
) -> io::Result<Acceptor> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
    let now = shared.engine.clock().now();
    for (i, l) in listeners.iter_mut().enumerate() {
        poll.registry().register(l, Token(i), Interest::READABLE)?;
        let fd = l.as_raw_fd();
        let info = ConnInfo::new(fd, describe(l), None, ConnState::Listening, now);
        shared.conns.lock().insert(fd, Arc::new(info));
    }
    // Added to, not set: UDP sockets count too (udp.rs).
    shared.listeners.fetch_add(listeners.len() as u32, Relaxed);
    // memcached counts its listening sockets as connections.
    shared
        .global
        .total_conns
        .fetch_add(listeners.len() as u64, Relaxed);
    shared.global.accepting_conns.store(true, Relaxed);
    let join = std::thread::Builder::new()
        .name("mnemo-acceptor".into())
        .spawn(move || accept_loop(poll, listeners, tls, workers, shared))?;
    Ok(Acceptor { waker, join })
}

fn accept_loop(
    mut poll: Poll,
    mut listeners: Vec<Listener>,
    tls: Vec<bool>,
    workers: Vec<(std::sync::mpsc::Sender<NewConn>, Arc<Waker>)>,
    shared: Arc<Shared>,
) {
    let mut events = Events::with_capacity(64);
    let mut next = 0usize;
    // Set when accept failed for lack of descriptors: retry on a timer,
    // since edge-triggered readiness will not fire again by itself.
    let mut backoff = false;
    loop {
        let timeout = backoff.then(|| Duration::from_millis(100));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("mnemo: acceptor poll failed: {e}");
                return;
            }
        }
        if shared.stopping.load(Relaxed) {
            return;
        }
        let ready: Vec<usize> = if backoff {
            (0..listeners.len()).collect()
        } else {
            events
                .iter()
                .filter(|e| e.token() != STOP)
                .map(|e| e.token().0)
                .collect()
        };
        backoff = false;
        for i in ready {
            let Some(l) = listeners.get_mut(i) else {
                continue;
            };
            loop {
                let accepted = match l {
                    Listener::Tcp(l) => l.accept().map(|(s, peer)| {
                        let _ = s.set_nodelay(true);
                        let local = s.local_addr().map(|a| tcp_text(&a)).unwrap_or_default();
                        (Stream::Tcp(s), tcp_text(&peer), local)
                    }),
                    Listener::Unix(l) => l.accept().map(|(s, _)| {
                        let local = s
                            .local_addr()
                            .ok()
                            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                            .unwrap_or_else(|| "unix:".into());
                        (Stream::Unix(s), "unix:".to_string(), local)
                    }),
                };
                match accepted {
                    Ok((stream, peer, local)) => {
                        let tls = tls.get(i).copied().unwrap_or(false);
                        hand_off(stream, tls, peer, local, &workers, &mut next, &shared);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                            if shared.verbose() > 0 {
                                eprintln!("Too many open connections");
                            }
                            shared.global.listen_disabled_num.fetch_add(1, Relaxed);
                            backoff = true;
                        } else if shared.verbose() > 0 {
                            eprintln!("accept(): {e}");
                        }
                        break;
                    }
                }
            }
        }
        shared.global.accepting_conns.store(!backoff, Relaxed);
    }
}

fn hand_off(
    mut stream: Stream,
    tls: bool,
    peer: String,
    local: String,
    workers: &[(std::sync::mpsc::Sender<NewConn>, Arc<Waker>)],
    next: &mut usize,
    shared: &Arc<Shared>,
) {
    let g = &shared.global;
    if g.curr_conns.load(Relaxed) >= client_limit(shared) {
        // memcached (maxconns_fast) answers and closes at once.
        g.rejected_conns.fetch_add(1, Relaxed);
        let _ = stream.write(b"ERROR Too many open connections\r\n");
        return;
    }
    // As memcached, the refusal above goes out in plain text; a
    // connection admitted on a TLS listener gets its session here, with the
    // configuration current now (refresh_certs swaps it for later ones).
    if tls {
        let Some(cfg) = shared.tls.as_ref() else {
            return;
        };
        stream = match cfg.accept(stream) {
            Ok(s) => s,
            Err(e) => {
                if shared.verbose() > 0 {
                    eprintln!("Failed to created the SSL object: {e}");
                }
                return;
            }
        };
    }
    let curr = g.curr_conns.fetch_add(1, Relaxed) + 1;
    g.total_conns.fetch_add(1, Relaxed);
    g.conn_structs.fetch_max(curr, Relaxed);
    let fd = stream.as_raw_fd();
    let now = shared.engine.clock().now();
    let info = Arc::new(ConnInfo::new(fd, peer, Some(local), ConnState::NewCmd, now));
    shared.conns.lock().insert(fd, Arc::clone(&info));
    let (tx, waker) = &workers[*next % workers.len()];
    *next = next.wrapping_add(1);
    if tx.send(NewConn { stream, info }).is_err() {
        // The worker is gone (shutting down); the socket was dropped with
        // the message.
        shared.conns.lock().remove(&fd);
        g.curr_conns.fetch_sub(1, Relaxed);
        return;
    }
    let _ = waker.wake();
}

/// How many clients `-c` admits. memcached (maxconns_fast) refuses a
/// socket whose descriptor number is `>= maxconns - 1`, and its first
/// client descriptor is `6 + 4 * threads + listeners` when only 0, 1 and 2
/// were inherited; the same count is
/// reproduced here so `-c N` admits exactly as many clients as memcached
/// does, independent of how many descriptors mnemo itself uses.
pub fn client_limit(shared: &Shared) -> u64 {
    // memcached refuses a client whose descriptor number reaches -c - 1.
    // Its own descriptors (3 + 4 per worker + one per listener) and those
    // it inherited (stdin/out/err and whatever the parent left open) use
    // numbers below that, so both shrink the number of clients it serves.
    let own = 3 + 4 * shared.settings.threads as u64 + u64::from(shared.listeners.load(Relaxed));
    (shared.settings.maxconns as u64).saturating_sub(1 + own + u64::from(shared.inherited_fds))
}

/// How many descriptors below `limit` the process already has open: call
/// before opening any, so that `client_limit` counts what memcached would.
pub fn inherited_fds(limit: u64) -> u32 {
    let listed: Option<Vec<i32>> = std::fs::read_dir("/proc/self/fd").ok().map(|dir| {
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    });
    // The directory's own descriptor is listed too; it is closed by now,
    // so checking each one again drops it.
    let candidates: Vec<i32> = match listed {
        Some(fds) => fds,
        None => (0..limit.min(65_536) as i32).collect(),
    };
    candidates
        .into_iter()
        .filter(|&fd| (fd as u64) < limit)
        // SAFETY: F_GETFD only queries the descriptor table.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
        .count() as u32
}

/// Workers as the acceptor sees them.
pub fn worker_ends(
    handles: &[WorkerHandle],
) -> Vec<(std::sync::mpsc::Sender<NewConn>, Arc<Waker>)> {
    handles
        .iter()
        .map(|h| (h.tx.clone(), Arc::clone(&h.waker)))
        .collect()
}
