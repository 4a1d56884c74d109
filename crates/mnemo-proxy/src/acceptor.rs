//! The acceptor: the main thread owns every listening socket, accepts, and
//! hands each client round-robin to a worker, TCP and unix alike (the
//! server's model; docs/ARCHITECTURE.md says why not SO_REUSEPORT per
//! worker). It also applies SIGHUP: workers get the new configuration
//! through the same channel as new clients, so a client always reaches its
//! worker after the configuration its pool index refers to.

use crate::config::Config;
use crate::net::{bind, Lsn, Slab, Sock};
use crate::reload::Reload;
use crate::stats::Stats;
use mio::{Events, Interest, Poll, Token, Waker};
use mnemo_client::Addr;
use std::io;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// What the acceptor sends a worker.
pub enum Msg {
    /// A new client of pool `pool` (an index into the configuration the
    /// worker was last sent).
    Client {
        sock: Sock,
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

struct Listener {
    lsn: Lsn,
    addr: Addr,
    pool: usize,
}

pub struct Acceptor {
    poll: Poll,
    events: Events,
    listeners: Slab<Listener>,
    workers: Vec<WorkerHandle>,
    next: usize,
}

impl Acceptor {
    /// Binds the listen address of every pool.
    pub fn new(cfg: &Config, workers: Vec<WorkerHandle>) -> io::Result<Acceptor> {
        let mut a = Acceptor {
            poll: Poll::new()?,
            events: Events::with_capacity(64),
            listeners: Slab::new(),
            workers,
            next: 0,
        };
        for (i, p) in cfg.pools.iter().enumerate() {
            if let Some(addr) = &p.listen {
                a.listen(addr, i, p.backlog)?;
            }
        }
        Ok(a)
    }

    fn listen(&mut self, addr: &Addr, pool: usize, backlog: i32) -> io::Result<()> {
        let lsn = bind(addr, backlog)?;
        let idx = self.listeners.insert(Listener {
            lsn,
            addr: addr.clone(),
            pool,
        });
        let reg = self.poll.registry();
        if let Some(l) = self.listeners.get_mut(idx) {
            let r = match &mut l.lsn {
                Lsn::Tcp(x) => reg.register(x, Token(idx), Interest::READABLE),
                Lsn::Unix(x) => reg.register(x, Token(idx), Interest::READABLE),
            };
            if let Err(e) = r {
                self.listeners.remove(idx);
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
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for idx in ready {
            self.accept(idx);
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
                    if let Err(e) = self.listen(a, i, p.backlog) {
                        eprintln!("mnemo-proxy: reload: cannot listen on {a}: {e}");
                    }
                }
            }
        }
    }
}
