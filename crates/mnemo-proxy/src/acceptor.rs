//! The acceptor: the main thread owns every listening socket, accepts, and
//! hands each client round-robin to a worker, TCP and unix alike (the
//! server's model; docs/ARCHITECTURE.md says why not SO_REUSEPORT per
//! worker). It also applies SIGHUP: workers get the new configuration
//! through the same channel as new clients, so a client always reaches its
//! worker after the configuration its pool index refers to.

use crate::config::Config;
use crate::net::bind;
use crate::reload::Reload;
use crate::stats::Stats;
use mio::{Events, Interest, Poll, Waker};
use mnemo_net::{Addr, Key, Listener, ServerTls, Slots, Stream};
use std::io;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// What the acceptor sends a worker.
pub enum Msg {
    /// A new client of pool `pool` (an index into the configuration the
    /// worker was last sent).
    Client {
        sock: Stream,
        pool: usize,
    },
    Reload(Reload),
}

/// The acceptor's way to one worker: its inbox and the waker of its poll.
pub struct WorkerHandle {
    pub tx: Sender<Msg>,
    pub waker: Arc<Waker>,
}

impl WorkerHandle {
    fn send(&self, m: Msg) {
        // A worker whose channel is gone has stopped; its clients close
        // with the dropped socket.
        if self.tx.send(m).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// A listening socket and the pool it serves.
struct Bound {
    lsn: Listener,
    addr: Addr,
    pool: usize,
    /// `listen_tls`: accepted sockets are wrapped in a server session here
    /// (cheap; the handshake runs in the worker's reads and writes).
    tls: Option<Arc<ServerTls>>,
}

pub struct Acceptor {
    poll: Poll,
    events: Events,
    listeners: Slots<Bound>,
    workers: Vec<WorkerHandle>,
    next: usize,
}

impl Acceptor {
    /// Binds the listen address of every pool.
    pub fn new(cfg: &Config, workers: Vec<WorkerHandle>) -> io::Result<Acceptor> {
        let mut a = Acceptor {
            poll: Poll::new()?,
            events: Events::with_capacity(64),
            listeners: Slots::new(),
            workers,
            next: 0,
        };
        for (i, p) in cfg.pools.iter().enumerate() {
            if let Some(addr) = &p.listen {
                a.listen(addr, i, p.backlog, crate::tls::acceptor_of(p))?;
            }
        }
        Ok(a)
    }

    fn listen(
        &mut self,
        addr: &Addr,
        pool: usize,
        backlog: i32,
        tls: Option<Arc<ServerTls>>,
    ) -> io::Result<()> {
        let lsn = bind(addr, backlog)?;
        let key = self.listeners.insert(Bound {
            lsn,
            addr: addr.clone(),
            pool,
            tls,
        });
        let reg = self.poll.registry();
        if let Some(l) = self.listeners.get_mut(key) {
            if let Err(e) = reg.register(&mut l.lsn, key.to_token(), Interest::READABLE) {
                self.listeners.remove(key);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Accept and hand out clients for up to `timeout`; returns early when
    /// a signal interrupts the wait, so the caller sees it promptly.
    pub fn run_for(&mut self, timeout: Duration) {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("mnemo-proxy: acceptor: poll: {e}");
                // Do not spin on a poll that keeps failing.
                std::thread::sleep(timeout);
            }
            return;
        }
        let ready: Vec<Key> = self
            .events
            .iter()
            .filter_map(|e| Key::from_token(e.token()))
            .collect();
        for key in ready {
            self.accept(key);
        }
    }

    fn accept(&mut self, key: Key) {
        loop {
            let Some(l) = self.listeners.get_mut(key) else {
                return;
            };
            let pool = l.pool;
            let res = l.lsn.accept().inspect(|s| {
                if let Stream::Tcp(t) = s {
                    // Answers are written whole; Nagle would only delay them.
                    let _ = t.set_nodelay(true);
                }
            });
            let sock = match res {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("mnemo-proxy: accept: {e}");
                    return;
                }
            };
            let sock = match &l.tls {
                None => sock,
                Some(t) => match t.accept(sock) {
                    Ok(s) => s,
                    // This client only: the listener has more to accept.
                    Err(e) => {
                        eprintln!("mnemo-proxy: TLS session for a new client: {e}");
                        continue;
                    }
                },
            };
            if self.workers.is_empty() {
                return;
            }
            let w = &self.workers[self.next % self.workers.len()];
            self.next = self.next.wrapping_add(1);
            w.send(Msg::Client { sock, pool });
        }
    }

    /// SIGHUP: every worker gets the new configuration first, then the
    /// listeners follow it (those whose address survives are kept and
    /// renumbered, the others closed, new ones bound), so no client of a
    /// new pool reaches a worker before that pool does.
    pub fn reload(&mut self, cfg: Arc<Config>, stats: Arc<Stats>) {
        for w in &self.workers {
            w.send(Msg::Reload(Reload {
                config: cfg.clone(),
                stats: stats.clone(),
            }));
        }
        for l in self.listeners.keys() {
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
                        // Reloaded certificates (or TLS turned on or off)
                        // apply to the next client accepted.
                        x.tls = crate::tls::acceptor_of(&cfg.pools[np]);
                    }
                }
                None => {
                    if let Some(mut x) = self.listeners.remove(l) {
                        let _ = self.poll.registry().deregister(&mut x.lsn);
                    }
                }
            }
        }
        for (i, p) in cfg.pools.iter().enumerate() {
            if let Some(a) = &p.listen {
                let exists = self.listeners.iter().any(|(_, l)| &l.addr == a);
                if !exists {
                    if let Err(e) = self.listen(a, i, p.backlog, crate::tls::acceptor_of(p)) {
                        eprintln!("mnemo-proxy: reload: cannot listen on {a}: {e}");
                    }
                }
            }
        }
    }
}
