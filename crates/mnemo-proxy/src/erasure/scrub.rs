//! The `repair` admin command of an erasure-coded pool: rebuild what a
//! server should hold (one named server, or all of them) without waiting
//! for clients to read each key.
//!
//! A background thread lists the keys every server of the pool holds
//! (`lru_crawler metadump all`, which memcached and mnemo both serve),
//! keeps those whose K+M positions include the target server, and reads
//! them through the pool's own listen address in batches of multi-gets.
//! Each read is an ordinary erasure-coded read, so it repairs what it
//! finds missing, stale or corrupt (`repair`) and can never write a value
//! that was not decoded. Going through the listener rather than into a
//! worker keeps the scrub out of the request path entirely: its reads
//! are a client's like any other, spread over the workers.

use crate::stats::Stats;
use crate::worker::Worker;
use mnemo_client::{Addr, Conn, Placement};
use mnemo_net::BlockingStream;
use mnemo_net::Key;
use mnemo_protocol::client::Reply;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::sync::Arc;
use std::time::Duration;

/// One scrub at a time per process: each lists every server's keys.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Keys per `get` the scrub sends through the proxy.
const BATCH: usize = 64;
/// A metadump larger than this is cut off (its keys still scrubbed).
const MAX_DUMP: usize = 256 << 20;

pub(crate) struct Job {
    pub(crate) pool: usize,
    pub(crate) listen: Addr,
    pub(crate) servers: Vec<Addr>,
    pub(crate) placement: Placement,
    pub(crate) n: usize,
    /// Only keys placed on this server (None: every key).
    pub(crate) target: Option<usize>,
    pub(crate) stats: Arc<Stats>,
}

/// Where the scrub reaches the pool's listener: a wildcard address is
/// reached on loopback.
fn reachable(listen: &Addr) -> Addr {
    match listen {
        Addr::Tcp { host, port } if host == "0.0.0.0" || host.is_empty() => Addr::Tcp {
            host: "127.0.0.1".into(),
            port: *port,
        },
        Addr::Tcp { host, port } if host == "::" || host == "[::]" => Addr::Tcp {
            host: "::1".into(),
            port: *port,
        },
        a => a.clone(),
    }
}

/// Undo metadump's URI encoding of a key.
fn unescape(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(a), Some(b)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(a << 4 | b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The keys of a metadump (`key=<escaped> exp=... ...` lines, `END`).
pub(crate) fn dump_keys(dump: &[u8]) -> Vec<Vec<u8>> {
    dump.split(|&c| c == b'\n')
        .filter_map(|l| l.strip_prefix(b"key="))
        .map(|l| {
            let end = l
                .iter()
                .position(|&c| c == b' ' || c == b'\r')
                .unwrap_or(l.len());
            unescape(&l[..end])
        })
        .collect()
}

fn metadump(addr: &Addr) -> std::io::Result<Vec<u8>> {
    let mut s =
        BlockingStream::connect(addr, Duration::from_secs(2), Some(Duration::from_secs(10)))?;
    s.write_all(b"lru_crawler metadump all\r\n")?;
    let mut dump = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dump.extend_from_slice(&buf[..n]);
        let done = dump.ends_with(b"END\r\n")
            || dump.starts_with(b"BUSY")
            || dump.starts_with(b"ERROR")
            || dump.starts_with(b"CLIENT_ERROR")
            || dump.len() > MAX_DUMP;
        if done {
            break;
        }
    }
    Ok(dump)
}

/// Read `keys` through the proxy; returns how many were read.
fn read_through(listen: &Addr, keys: &[Vec<u8>]) -> Result<u64, mnemo_client::Error> {
    let mut c = Conn::connect(
        listen,
        Duration::from_secs(2),
        Some(Duration::from_secs(30)),
    )?;
    let mut read = 0;
    for batch in keys.chunks(BATCH) {
        mnemo_protocol::client::encode_get(c.out(), batch.iter().map(Vec::as_slice));
        c.flush()?;
        loop {
            let (r, _) = c.next_reply()?;
            match r {
                Reply::Value { .. } => {}
                Reply::End => break,
                _ => return Ok(read),
            }
        }
        read += batch.len() as u64;
    }
    Ok(read)
}

impl Worker {
    /// `repair [server]` on an erasure-coded pool: start a scrub of every
    /// key placed on `server` (a name from the pool's server list, as
    /// ketama and the stats name it, or `host:port:weight`), or of every key.
    pub(crate) fn ec_repair_command(&mut self, idx: Key, pool: usize, line: &[u8]) {
        let arg = line.strip_prefix(b"repair").unwrap_or(b"").trim_ascii();
        let p = &self.pools[pool];
        let target = if arg.is_empty() {
            None
        } else {
            let name = String::from_utf8_lossy(arg);
            match p
                .conf
                .servers
                .iter()
                .position(|s| s.name == name || s.pname == name)
            {
                Some(i) => Some(i),
                None => {
                    self.answer(idx, b"CLIENT_ERROR no such server in this pool\r\n");
                    return;
                }
            }
        };
        // The scrub's own connections (metadump to the servers, reads
        // through the listener) are plain TCP or unix sockets.
        if p.conf.tls.server_on || p.conf.tls.listen_on {
            self.answer(idx, b"SERVER_ERROR repair does not work with TLS pools\r\n");
            return;
        }
        let (Some(listen), Some(ec)) = (p.conf.listen.clone(), p.ec.as_ref()) else {
            self.answer(idx, b"SERVER_ERROR pool has no listen address\r\n");
            return;
        };
        if RUNNING.swap(true, AcqRel) {
            self.answer(idx, b"SERVER_ERROR a repair is already running\r\n");
            return;
        }
        spawn(Job {
            pool,
            listen,
            servers: p.conf.servers.iter().map(|s| s.addr.clone()).collect(),
            placement: p.placement.clone(),
            n: ec.geom.n(),
            target,
            stats: self.stats.clone(),
        });
        self.answer(idx, b"OK\r\n");
    }
}

/// Run `job` on a thread of its own.
pub(crate) fn spawn(job: Job) {
    let started = std::thread::Builder::new()
        .name("mnemo-proxy-repair".into())
        .spawn(move || run(&job));
    if started.is_err() {
        RUNNING.store(false, Release);
    }
}

fn run(job: &Job) {
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    let mut walk = Vec::with_capacity(job.n);
    for addr in &job.servers {
        let Ok(dump) = metadump(addr) else {
            continue;
        };
        for k in dump_keys(&dump) {
            if !mnemo_protocol::client::valid_key(&k) || keys.contains(&k) {
                continue;
            }
            job.placement.servers_for(&k, job.n, &mut walk);
            let wanted = match job.target {
                Some(t) => walk.contains(&t),
                None => true,
            };
            if wanted {
                keys.insert(k);
            }
        }
    }
    let keys: Vec<Vec<u8>> = keys.into_iter().collect();
    let read = read_through(&reachable(&job.listen), &keys).unwrap_or(0);
    // Free before counting, so that whoever sees the count can start the
    // next one.
    RUNNING.store(false, Release);
    if let Some(ps) = job.stats.pools.get(job.pool) {
        ps.ec.scrubbed_keys.fetch_add(read, Relaxed);
        ps.ec.scrubs.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_keys_are_unescaped() {
        let d = b"key=a%20b exp=-1 la=1 cas=2 fetch=no cls=1 size=70\r\nkey=plain exp=0\r\nkey=bad%2 x\r\nEND\r\n";
        assert_eq!(
            dump_keys(d),
            vec![b"a b".to_vec(), b"plain".to_vec(), b"bad%2".to_vec()]
        );
        assert_eq!(unescape(b"%"), b"%");
        assert_eq!(unescape(b"%zz"), b"%zz");
    }
}
