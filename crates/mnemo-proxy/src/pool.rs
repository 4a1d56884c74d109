//! Pools and their servers as a worker sees them: the key placement,
//! per-server connection slots, and each server's `mnemo_net::Health`
//! under twemproxy's ejection rules (`auto_eject_hosts`,
//! `server_failure_limit`, `server_retry_timeout`).

use crate::config::PoolConf;
use crate::erasure::ops::EcRt;
use crate::worker::Worker;
use mnemo_client::{Node, Placement};
use mnemo_net::{Addr, Health, HealthPolicy, Key};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

pub(crate) struct ServerRt {
    pub(crate) addr: Addr,
    pub(crate) conns: Vec<Option<Key>>,
    pub(crate) rr: usize,
    pub(crate) health: Health,
    /// Keys whose writes this primary server missed while the backup pool
    /// answered them; deleted from it before it serves again (`mirror`).
    pub(crate) missed: Vec<Vec<u8>>,
    /// Too many to list, or an invalidation was lost with its connection:
    /// the server is flushed instead.
    pub(crate) missed_all: bool,
    /// Invalidations sent and not yet answered. Until they are, nothing
    /// else goes to the server on any of its connections: a read on
    /// another connection could overtake the deletes (`mirror`).
    pub(crate) invalidating: u32,
    /// This worker counts in the server's shared `invalidating` stat.
    pub(crate) counted: bool,
}

impl ServerRt {
    /// Whether invalidations must go to this server before anything else.
    pub(crate) fn owes_replay(&self) -> bool {
        self.missed_all || !self.missed.is_empty()
    }

    /// Whether requests must keep away from this server (to the backup)
    /// until what it missed has been invalidated.
    pub(crate) fn gated(&self) -> bool {
        self.invalidating > 0 || self.owes_replay()
    }
}

pub(crate) struct PoolRt {
    pub(crate) conf: PoolConf,
    pub(crate) placement: Placement,
    pub(crate) servers: Vec<ServerRt>,
    pub(crate) backup: Option<usize>,
    pub(crate) health: HealthPolicy,
    /// Set for `erasure: K+M` pools.
    pub(crate) ec: Option<EcRt>,
    /// `server_tls`: how to open TLS connections to this pool's servers.
    pub(crate) tls: Option<crate::tls::Connector>,
}

impl PoolRt {
    pub(crate) fn new(conf: &PoolConf, backup: Option<usize>) -> PoolRt {
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
                    health: Health::new(),
                    missed: Vec::new(),
                    missed_all: false,
                    invalidating: 0,
                    counted: false,
                })
                .collect(),
            backup,
            health: HealthPolicy {
                auto_eject: conf.auto_eject_hosts,
                failure_limit: conf.server_failure_limit,
                retry_timeout: conf.server_retry_timeout,
                // twemproxy counts failures of an ejected server without
                // putting its return off.
                extend_ejection: false,
            },
            ec: conf
                .erasure
                .and_then(|(k, m)| EcRt::new(k, m, conf.erasure_min_size)),
            tls: crate::tls::Connector::of(conf),
            conf: conf.clone(),
        }
    }

    pub(crate) fn rebuild(&mut self) {
        let live: Vec<bool> = self
            .servers
            .iter()
            .map(|s| !s.health.is_ejected())
            .collect();
        self.placement.rebuild(|i| live[i]);
    }

    /// Servers whose retry time has come go back on the ring.
    pub(crate) fn readmit_due(&mut self, now: Instant) {
        let mut readmit = false;
        for s in &mut self.servers {
            readmit |= s.health.readmit_if_due(now);
        }
        // Pools with a backup never took them off (see `pick`), nor did
        // erasure-coded ones, whose shards stay where the full ring put them.
        if readmit && self.backup.is_none() && self.ec.is_none() {
            self.rebuild();
        }
    }
}

pub(crate) const NO_LIVE: &[u8] = b"SERVER_ERROR No live server for key\r\n";

pub(crate) const EJECTED: &[u8] = b"SERVER_ERROR Server ejected\r\n";

pub(crate) const INVALIDATING: &[u8] = b"SERVER_ERROR Server back, invalidating\r\n";

impl Worker {
    /// Publish whether this worker gates `server` of `pool`, so that the
    /// other workers, which hold their own lists, gate it too.
    pub(crate) fn sync_gate(&mut self, pool: usize, server: usize) {
        let Some(s) = self
            .pools
            .get_mut(pool)
            .and_then(|p| p.servers.get_mut(server))
        else {
            return;
        };
        let g = s.gated();
        if g == s.counted {
            return;
        }
        s.counted = g;
        if let Some(ss) = self
            .stats
            .pools
            .get(pool)
            .and_then(|p| p.servers.get(server))
        {
            ss.invalidating.fetch_add(if g { 1 } else { -1 }, Relaxed);
        }
    }

    /// Whether reads must keep away from `server` of `pool`: this worker
    /// or another has invalidations for it outstanding.
    pub(crate) fn read_gated(&self, pool: usize, server: usize) -> bool {
        self.pools[pool].servers[server].gated()
            || self.stats.pools[pool].servers[server]
                .invalidating
                .load(Relaxed)
                > 0
    }

    /// The server for `key` in `pool`.
    pub(crate) fn pick(&self, pool: usize, key: &[u8]) -> Result<usize, &'static [u8]> {
        let p = &self.pools[pool];
        let s = p.placement.server_for(key).ok_or(NO_LIVE)?;
        // Pools with a backup keep ejected servers on the ring so that their
        // keys fail over to the backup instead of moving to another primary.
        if p.servers[s].health.is_ejected() {
            return Err(EJECTED);
        }
        Ok(s)
    }

    /// Count a failure of a server; past `server_failure_limit` (with
    /// `auto_eject_hosts`) it leaves the ring until `server_retry_timeout`.
    pub(crate) fn server_failed(&mut self, pool: usize, server: usize) {
        let now = self.now;
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        let policy = p.health;
        let Some(s) = p.servers.get_mut(server) else {
            return;
        };
        if s.health.failed(&policy, now) {
            if p.backup.is_none() && p.ec.is_none() {
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
}
