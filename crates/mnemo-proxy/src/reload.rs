//! SIGHUP: applying a new configuration in a worker, keeping the
//! connections and ejection state of servers that survive it.

use crate::backend::Failure;
use crate::config::Config;
use crate::pool::PoolRt;
use crate::stats::Stats;
use crate::worker::Worker;
use mnemo_net::Key;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// A new configuration for the workers (SIGHUP).
pub struct Reload {
    pub config: Arc<Config>,
    pub stats: Arc<Stats>,
}

impl Worker {
    pub(crate) fn apply_reload(&mut self, r: Reload) {
        let cfg = r.config;
        let old = std::mem::take(&mut self.pools);
        let mut pools: Vec<PoolRt> = (0..cfg.pools.len())
            .map(|i| PoolRt::new(&cfg.pools[i], cfg.backup_index(i)))
            .collect();
        let mut moved = vec![false; self.backends.index_bound()];
        for (npi, np) in pools.iter_mut().enumerate() {
            let Some(op) = old.iter().find(|o| o.conf.name == np.conf.name) else {
                continue;
            };
            for (nsi, ns) in np.servers.iter_mut().enumerate() {
                let Some(os) = op.servers.iter().find(|o| o.addr == ns.addr) else {
                    continue;
                };
                ns.health = os.health;
                // What it missed is still owed. Invalidations in flight may
                // ride connections that close below, so a flush replaces them.
                ns.missed = os.missed.clone();
                ns.missed_all = os.missed_all || os.invalidating > 0;
                // Connections opened with other TLS settings are not
                // this configuration's: they close, new ones open.
                let same_tls = op.conf.tls.server() == np.conf.tls.server();
                for (k, c) in os.conns.iter().enumerate().filter(|_| same_tls) {
                    if let (Some(b), true) = (c, k < ns.conns.len()) {
                        if let Some(be) = self.backends.get_mut(*b) {
                            be.pool = npi;
                            be.server = nsi;
                            ns.conns[k] = Some(*b);
                            moved[b.index()] = true;
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
        // A server that moved to another pool (or whose pool was renamed)
        // left its list behind: flush it before it serves there.
        for op in &old {
            for os in op
                .servers
                .iter()
                .filter(|o| o.owes_replay() || o.invalidating > 0)
            {
                let kept = pools.iter().any(|np| {
                    np.conf.name == op.conf.name && np.servers.iter().any(|n| n.addr == os.addr)
                });
                if kept {
                    continue;
                }
                for ns in pools.iter_mut().flat_map(|np| np.servers.iter_mut()) {
                    if ns.addr == os.addr {
                        ns.missed_all = true;
                    }
                }
            }
        }
        // Backends of servers the new config dropped still carry their old
        // pool and server indices, which now name other servers: detach
        // them first, so closing them touches no server's counters (their
        // own lived in the old stats, which are gone).
        let removed: Vec<Key> = self
            .backends
            .keys()
            .into_iter()
            .filter(|b| !moved.get(b.index()).copied().unwrap_or(false))
            .collect();
        for &b in &removed {
            if let Some(be) = self.backends.get_mut(b) {
                // Noreply writes it may have lost can no longer be listed
                // against their server: flush the server where it lives on.
                let unsure = !be.unconfirmed.is_empty() || be.unconfirmed_lost.is_some();
                let addr = old
                    .get(be.pool)
                    .and_then(|p| p.servers.get(be.server))
                    .map(|s| &s.addr);
                if let (true, Some(addr)) = (unsure, addr) {
                    for ns in pools.iter_mut().flat_map(|np| np.servers.iter_mut()) {
                        if ns.addr == *addr {
                            ns.missed_all = true;
                        }
                    }
                }
                be.pool = usize::MAX;
            }
        }
        self.pools = pools;
        self.stats = r.stats;
        for p in 0..self.pools.len() {
            for s in 0..self.pools[p].servers.len() {
                self.sync_gate(p, s);
            }
        }
        for b in removed {
            self.fail_backend(b, Failure::Removed);
        }
        // Clients follow their pool by name; a pool that is gone closes them.
        for c in self.clients.keys() {
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
                        let _ = self.poll.registry().deregister(&mut x.sock);
                    }
                }
            }
        }
        eprintln!("mnemo-proxy: worker {} applied new configuration", self.id);
    }
}
