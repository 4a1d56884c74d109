//! Server-side counters, merged with the engine's for `stats`.
//!
//! Each worker owns a [`WorkerStats`]: only that thread writes it (a relaxed
//! load + store, no read-modify-write bus lock on the hot path) and `stats`
//! readers on other threads load the values relaxed. `stats reset` cannot
//! zero another thread's counters without racing its writes, so it records
//! a baseline and reports differences instead.
//!
//! The text of the `stats`, `stats settings` and `stats conns` blocks is
//! written here too, so every protocol that lists them shares one order.

use crate::listener::addr_text;
use crate::shared::{ConnState, Shared, MNEMO_VERSION, VERSION};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Counters the engine does not keep, one set per worker thread.
#[derive(Default)]
pub struct WorkerStats {
    pub get_cmds: Counter,
    pub flush_cmds: Counter,
    pub touch_cmds: Counter,
    pub meta_cmds: Counter,
    pub store_too_large: Counter,
    pub store_no_memory: Counter,
    pub auth_cmds: Counter,
    pub auth_errors: Counter,
    pub idle_kicks: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    pub conn_yields: Counter,
    /// `-o read_buf_mem_limit` refusals (see `bufbudget.rs`).
    pub read_buf_oom: Counter,
    pub response_obj_oom: Counter,
    /// Gauges (not reset): buffers currently held by this worker.
    pub read_buf_count: Counter,
    pub read_buf_bytes: Counter,
    pub read_buf_bytes_free: Counter,
    pub response_obj_count: Counter,
    pub response_obj_bytes: Counter,
}

/// A counter written by one thread and read by any.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: a plain load/store keeps the hot path free of
        // locked instructions.
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Sum of all workers' counters, minus the baseline of the last reset.
#[derive(Default, Clone, Copy, Debug)]
pub struct Totals {
    pub get_cmds: u64,
    pub flush_cmds: u64,
    pub touch_cmds: u64,
    pub meta_cmds: u64,
    pub store_too_large: u64,
    pub store_no_memory: u64,
    pub auth_cmds: u64,
    pub auth_errors: u64,
    pub idle_kicks: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub conn_yields: u64,
    pub read_buf_oom: u64,
    pub response_obj_oom: u64,
    pub read_buf_count: u64,
    pub read_buf_bytes: u64,
    pub read_buf_bytes_free: u64,
    pub response_obj_count: u64,
    pub response_obj_bytes: u64,
}

impl Totals {
    fn add(&mut self, w: &WorkerStats) {
        self.get_cmds += w.get_cmds.get();
        self.flush_cmds += w.flush_cmds.get();
        self.touch_cmds += w.touch_cmds.get();
        self.meta_cmds += w.meta_cmds.get();
        self.store_too_large += w.store_too_large.get();
        self.store_no_memory += w.store_no_memory.get();
        self.auth_cmds += w.auth_cmds.get();
        self.auth_errors += w.auth_errors.get();
        self.idle_kicks += w.idle_kicks.get();
        self.bytes_read += w.bytes_read.get();
        self.bytes_written += w.bytes_written.get();
        self.conn_yields += w.conn_yields.get();
        self.read_buf_oom += w.read_buf_oom.get();
        self.response_obj_oom += w.response_obj_oom.get();
        self.read_buf_count += w.read_buf_count.get();
        self.read_buf_bytes += w.read_buf_bytes.get();
        self.read_buf_bytes_free += w.read_buf_bytes_free.get();
        self.response_obj_count += w.response_obj_count.get();
        self.response_obj_bytes += w.response_obj_bytes.get();
    }

    fn minus(mut self, b: &Totals) -> Totals {
        self.get_cmds = self.get_cmds.wrapping_sub(b.get_cmds);
        self.flush_cmds = self.flush_cmds.wrapping_sub(b.flush_cmds);
        self.touch_cmds = self.touch_cmds.wrapping_sub(b.touch_cmds);
        self.meta_cmds = self.meta_cmds.wrapping_sub(b.meta_cmds);
        self.store_too_large = self.store_too_large.wrapping_sub(b.store_too_large);
        self.store_no_memory = self.store_no_memory.wrapping_sub(b.store_no_memory);
        self.auth_cmds = self.auth_cmds.wrapping_sub(b.auth_cmds);
        self.auth_errors = self.auth_errors.wrapping_sub(b.auth_errors);
        self.idle_kicks = self.idle_kicks.wrapping_sub(b.idle_kicks);
        self.bytes_read = self.bytes_read.wrapping_sub(b.bytes_read);
        self.bytes_written = self.bytes_written.wrapping_sub(b.bytes_written);
        self.conn_yields = self.conn_yields.wrapping_sub(b.conn_yields);
        self.read_buf_oom = self.read_buf_oom.wrapping_sub(b.read_buf_oom);
        self.response_obj_oom = self.response_obj_oom.wrapping_sub(b.response_obj_oom);
        self
    }
}

/// Process-wide connection counters and the per-prefix table.
#[derive(Default)]
pub struct Global {
    /// Client connections open now.
    pub curr_conns: AtomicU64,
    /// Connections accepted since start (or reset); memcached also counts
    /// its listening sockets here.
    pub total_conns: AtomicU64,
    pub rejected_conns: AtomicU64,
    /// High-water mark of connection slots ever allocated.
    pub conn_structs: AtomicU64,
    pub listen_disabled_num: AtomicU64,
    pub accepting_conns: AtomicBool,
    /// TLS connections closed for a failed handshake (memcached's
    /// `ssl_handshake_errors`); rare, so one shared atomic.
    pub ssl_handshake_errors: AtomicU64,
    /// The session cache's count at the last `stats reset`.
    pub ssl_new_sessions_base: AtomicU64,
    baseline: Mutex<Totals>,
    prefixes: Mutex<BTreeMap<Vec<u8>, PrefixCounts>>,
}

/// `stats detail dump` numbers for one key prefix.
#[derive(Default, Clone, Copy)]
pub struct PrefixCounts {
    pub gets: u64,
    pub hits: u64,
    pub sets: u64,
    pub deletes: u64,
}

/// What a prefix record is for.
#[derive(Clone, Copy)]
pub enum PrefixOp {
    Get { hit: bool },
    Set,
    Delete,
}

impl Global {
    /// Aggregates the workers' counters as of now, net of the last reset.
    pub fn totals(&self, workers: &[std::sync::Arc<WorkerStats>]) -> Totals {
        let mut t = Totals::default();
        for w in workers {
            t.add(w);
        }
        t.minus(&self.baseline.lock())
    }

    /// `stats reset`: the server's part.
    pub fn reset(&self, workers: &[std::sync::Arc<WorkerStats>]) {
        let mut t = Totals::default();
        for w in workers {
            t.add(w);
        }
        *self.baseline.lock() = t;
        self.total_conns.store(0, Relaxed);
        self.rejected_conns.store(0, Relaxed);
        self.listen_disabled_num.store(0, Relaxed);
        self.prefixes.lock().clear();
    }

    /// Records one operation for `stats detail` (only called when enabled).
    /// Keys without the delimiter are not counted, as in memcached.
    pub fn record_prefix(&self, key: &[u8], delimiter: u8, op: PrefixOp) {
        let Some(end) = key.iter().position(|&b| b == delimiter || b == 0) else {
            return;
        };
        if key[end] == 0 {
            return;
        }
        let mut map = self.prefixes.lock();
        let entry = match map.get_mut(&key[..end]) {
            Some(e) => e,
            None => map.entry(key[..end].to_vec()).or_default(),
        };
        match op {
            PrefixOp::Get { hit } => {
                entry.gets += 1;
                if hit {
                    entry.hits += 1;
                }
            }
            PrefixOp::Set => entry.sets += 1,
            PrefixOp::Delete => entry.deletes += 1,
        }
    }

    /// `stats detail dump` body, terminated by `END\r\n`.
    pub fn dump_prefixes(&self, out: &mut Vec<u8>) {
        for (p, c) in self.prefixes.lock().iter() {
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(p);
            out.extend_from_slice(
                format!(
                    " get {} hit {} set {} del {}\r\n",
                    c.gets, c.hits, c.sets, c.deletes
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"END\r\n");
    }
}

/// Appends one `STAT name value` line.
pub fn stat_line(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "STAT {name} {value}\r\n");
}

/// Every `STAT` line of an engine group, then `END`.
pub fn pairs(out: &mut Vec<u8>, lines: Vec<(String, String)>) {
    for (k, v) in lines {
        stat_line(out, &k, v);
    }
    out.extend_from_slice(b"END\r\n");
}

/// getrusage(RUSAGE_SELF) user and system times as `sec.usec`.
fn rusage() -> (String, String) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a properly sized rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (
        format!("{}.{:06}", ru.ru_utime.tv_sec, ru.ru_utime.tv_usec),
        format!("{}.{:06}", ru.ru_stime.tv_sec, ru.ru_stime.tv_usec),
    )
}

/// The general `stats` block, in memcached 1.6.18's order.
pub fn general_stats(sh: &Shared, out: &mut Vec<u8>) {
    let e = sh.engine.stats();
    let t = sh.global.totals(&sh.workers);
    let clock = sh.engine.clock();
    let now = clock.now();
    let (ru_user, ru_sys) = rusage();
    let s = &sh.settings;
    let g = &sh.global;
    let listeners = sh.listeners.load(Relaxed) as u64;
    stat_line(out, "pid", std::process::id());
    stat_line(out, "uptime", now.saturating_sub(60));
    stat_line(out, "time", clock.process_started() + u64::from(now));
    stat_line(out, "version", VERSION);
    stat_line(out, "libevent", "mio");
    stat_line(out, "pointer_size", 8 * std::mem::size_of::<usize>());
    stat_line(out, "rusage_user", ru_user);
    stat_line(out, "rusage_system", ru_sys);
    stat_line(out, "max_connections", s.maxconns);
    // memcached counts its listening sockets as connections and subtracts
    // one (the asking client, as it documents it).
    stat_line(
        out,
        "curr_connections",
        (g.curr_conns.load(Relaxed) + listeners).saturating_sub(1),
    );
    stat_line(out, "total_connections", g.total_conns.load(Relaxed));
    if s.maxconns_fast {
        stat_line(out, "rejected_connections", g.rejected_conns.load(Relaxed));
    }
    stat_line(
        out,
        "connection_structures",
        g.conn_structs.load(Relaxed) + listeners,
    );
    stat_line(out, "response_obj_oom", t.response_obj_oom);
    stat_line(out, "response_obj_count", t.response_obj_count);
    stat_line(out, "response_obj_bytes", t.response_obj_bytes);
    stat_line(out, "read_buf_count", t.read_buf_count);
    stat_line(out, "read_buf_bytes", t.read_buf_bytes);
    stat_line(out, "read_buf_bytes_free", t.read_buf_bytes_free);
    stat_line(out, "read_buf_oom", t.read_buf_oom);
    stat_line(out, "reserved_fds", reserved_fds(sh));
    stat_line(out, "cmd_get", t.get_cmds);
    stat_line(out, "cmd_set", e.cmd_set);
    stat_line(out, "cmd_flush", t.flush_cmds);
    stat_line(out, "cmd_touch", t.touch_cmds);
    stat_line(out, "cmd_meta", t.meta_cmds);
    for (k, v) in e.request_lines() {
        stat_line(out, k, v);
    }
    stat_line(out, "store_too_large", t.store_too_large);
    stat_line(out, "store_no_memory", t.store_no_memory);
    stat_line(out, "auth_cmds", t.auth_cmds);
    stat_line(out, "auth_errors", t.auth_errors);
    if s.idle_timeout > 0 {
        stat_line(out, "idle_kicks", t.idle_kicks);
    }
    stat_line(out, "bytes_read", t.bytes_read);
    stat_line(out, "bytes_written", t.bytes_written);
    stat_line(out, "limit_maxbytes", e.limit_maxbytes);
    stat_line(
        out,
        "accepting_conns",
        u32::from(g.accepting_conns.load(Relaxed)),
    );
    stat_line(
        out,
        "listen_disabled_num",
        g.listen_disabled_num.load(Relaxed),
    );
    stat_line(out, "time_in_listen_disabled_us", 0);
    stat_line(out, "threads", s.threads);
    stat_line(out, "conn_yields", t.conn_yields);
    // As memcached: the mover's, crawler's and maintainer's counters are
    // listed only while that part runs (`-o no_modern` turns all three
    // off, `lru_crawler disable` the crawler).
    let cfg = sh.engine.config();
    let crawler = sh.crawler_enabled.load(Relaxed);
    for (k, v) in e.storage_lines() {
        let shown = if k.starts_with("slab_reassign_") || k == "slabs_moved" {
            cfg.slab_reassign
        } else if k.starts_with("lru_crawler_") {
            crawler
        } else if matches!(
            k,
            "lru_maintainer_juggles"
                | "evicted_active"
                | "moves_to_cold"
                | "moves_to_warm"
                | "moves_within_lru"
                | "direct_reclaims"
                | "lru_bumps_dropped"
        ) {
            cfg.lru_maintainer
        } else {
            true
        };
        if !shown {
            continue;
        }
        // The engine holds these places in memcached's order; the values
        // are the logger's.
        let log = &sh.log.stats;
        let logged = match k {
            "log_worker_dropped" => Some(&log.worker_dropped),
            "log_worker_written" => Some(&log.worker_written),
            "log_watcher_skipped" => Some(&log.watcher_skipped),
            "log_watcher_sent" => Some(&log.watcher_sent),
            "log_watchers" => Some(&log.watchers),
            _ => None,
        };
        match logged {
            Some(n) => stat_line(out, k, n.load(Relaxed)),
            None => stat_line(out, k, v),
        }
        if k == "log_watchers" {
            crate::tls::general_lines(sh, out);
        }
    }
    // Figures of an engine memcached has no names for (none for slabs).
    for (k, v) in sh.engine.engine_stats() {
        stat_line(out, k, v);
    }
}

/// memcached's accounting of descriptors kept back from clients: five per
/// worker thread. Reported the same way so capacity dashboards agree.
pub fn reserved_fds(sh: &Shared) -> u64 {
    5 * sh.settings.threads as u64
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `stats settings`, in memcached 1.6.18's order.
pub fn settings_stats(sh: &Shared, out: &mut Vec<u8>) {
    let s = &sh.settings;
    let c = sh.engine.config();
    stat_line(out, "maxbytes", c.mem_limit);
    stat_line(out, "maxconns", s.maxconns);
    stat_line(out, "tcpport", s.port);
    stat_line(out, "udpport", s.udp_port);
    stat_line(out, "inter", s.inter.as_deref().unwrap_or("NULL"));
    stat_line(out, "verbosity", sh.verbose());
    stat_line(out, "oldest", sh.engine.oldest_live());
    stat_line(out, "evictions", if c.evict_to_free { "on" } else { "off" });
    stat_line(
        out,
        "domain_socket",
        s.socket_path.as_deref().unwrap_or("NULL"),
    );
    stat_line(out, "umask", format!("{:o}", s.access));
    stat_line(out, "shutdown_command", yes(s.shutdown_command));
    stat_line(out, "growth_factor", format!("{:.2}", c.growth_factor));
    stat_line(out, "chunk_size", c.chunk_size);
    stat_line(out, "num_threads", s.threads);
    stat_line(out, "num_threads_per_udp", s.threads);
    stat_line(out, "stat_key_prefix", s.prefix_delimiter as char);
    stat_line(
        out,
        "detail_enabled",
        yes(sh.runtime.detail_enabled.load(Relaxed)),
    );
    stat_line(out, "reqs_per_event", s.reqs_per_event);
    stat_line(out, "cas_enabled", yes(c.use_cas));
    stat_line(out, "tcp_backlog", s.backlog);
    stat_line(out, "binding_protocol", s.protocol.text());
    stat_line(out, "auth_enabled_sasl", yes(s.sasl));
    // memcached prints the `-Y` file's path here, not "yes".
    stat_line(
        out,
        "auth_enabled_ascii",
        s.auth_file.as_deref().unwrap_or("no"),
    );
    stat_line(out, "item_size_max", c.item_size_max);
    stat_line(out, "maxconns_fast", yes(s.maxconns_fast));
    // 0 means "the default", as memcached reports it unless -o hashpower.
    stat_line(
        out,
        "hashpower_init",
        if s.hashpower_set { c.hashpower_init } else { 0 },
    );
    stat_line(out, "slab_reassign", yes(c.slab_reassign));
    stat_line(out, "slab_automove", c.slab_automove);
    stat_line(
        out,
        "slab_automove_ratio",
        format!("{:.2}", c.slab_automove_ratio),
    );
    stat_line(out, "slab_automove_window", c.slab_automove_window);
    stat_line(out, "slab_chunk_max", c.chunk_max());
    stat_line(out, "lru_crawler", yes(sh.crawler_enabled.load(Relaxed)));
    stat_line(out, "lru_crawler_sleep", c.lru_crawler_sleep);
    stat_line(out, "lru_crawler_tocrawl", c.lru_crawler_tocrawl);
    stat_line(out, "tail_repair_time", c.tail_repair_time);
    stat_line(out, "flush_enabled", yes(s.flush_enabled));
    stat_line(out, "dump_enabled", yes(s.dump_enabled));
    stat_line(out, "hash_algorithm", s.hash_algorithm);
    stat_line(out, "lru_maintainer_thread", yes(c.lru_maintainer));
    stat_line(out, "lru_segmented", yes(c.lru_segmented));
    // memcached keeps the percentages in an int and prints them with %d,
    // so a huge `lru tune` value shows negative there.
    stat_line(out, "hot_lru_pct", c.hot_lru_pct as i32);
    stat_line(out, "warm_lru_pct", c.warm_lru_pct as i32);
    stat_line(out, "hot_max_factor", format!("{:.2}", c.hot_max_factor));
    stat_line(out, "warm_max_factor", format!("{:.2}", c.warm_max_factor));
    stat_line(out, "temp_lru", yes(c.temp_lru));
    stat_line(out, "temporary_ttl", c.temporary_ttl);
    stat_line(out, "idle_timeout", s.idle_timeout);
    stat_line(out, "watcher_logbuf_size", s.watcher_logbuf_size);
    stat_line(out, "worker_logbuf_size", s.worker_logbuf_size);
    stat_line(out, "read_buf_mem_limit", s.read_buf_mem_limit);
    stat_line(
        out,
        "track_sizes",
        yes(sh.runtime.sizes_from_cas.lock().is_some()),
    );
    stat_line(out, "inline_ascii_response", "no");
    extstore_and_tls_settings(s, out);
    stat_line(out, "num_napi_ids", "(null)");
    match &s.engine.memory_file {
        Some(p) => stat_line(out, "memory_file", p.display()),
        None => stat_line(out, "memory_file", "(null)"),
    }
    // mnemo's own release, since `version` reports memcached's. Last, where
    // a memcached build's optional lines would follow: clients and monitors
    // read the general block far more often than this one.
    stat_line(out, "mnemo_version", MNEMO_VERSION);
}

/// The `ext_*` and `ssl_*` lines of `stats settings`. mnemo has no
/// extstore and refuses its options (`-o ext_path=`), so those values are
/// what memcached 1.6.18 (built with extstore and TLS, as distributions
/// ship it) reports when it is not configured; the `ssl_*` lines are the
/// TLS settings given (`tls.rs`).
fn extstore_and_tls_settings(s: &crate::settings::Settings, out: &mut Vec<u8>) {
    stat_line(out, "ext_item_size", 512);
    stat_line(out, "ext_item_age", u32::MAX);
    stat_line(out, "ext_low_ttl", 0);
    stat_line(out, "ext_recache_rate", 2000);
    stat_line(out, "ext_wbuf_size", 4 * 1024 * 1024);
    stat_line(out, "ext_compact_under", 0);
    stat_line(out, "ext_drop_under", 0);
    stat_line(out, "ext_max_sleep", 1_000_000);
    stat_line(out, "ext_max_frag", "0.80");
    // memcached lists this one among the extstore settings (it only
    // matters to extstore's page mover), so it sits here.
    stat_line(
        out,
        "slab_automove_freeratio",
        format!("{:.3}", s.slab_automove_freeratio),
    );
    stat_line(out, "ext_drop_unread", "no");
    crate::tls::settings_lines(s, out);
}

/// `stats conns`: listeners and clients, by file descriptor.
pub fn conns_stats(sh: &Shared, out: &mut Vec<u8>) {
    let now = sh.engine.clock().now();
    for (fd, info) in sh.conns.lock().iter() {
        let state = info.state();
        if info.is_udp() {
            stat_line(out, &format!("{fd}:UDP"), "UDP");
        }
        // As memcached's conn_to_str: a UDP socket between datagrams shows
        // its own address like a listener; serving one, the sender's, with
        // its own as listen_addr.
        let serving = match state {
            ConnState::Read => None,
            _ => info.udp_peer(),
        };
        match serving {
            Some(peer) => {
                stat_line(out, &format!("{fd}:addr"), addr_text("udp", &peer));
                stat_line(out, &format!("{fd}:listen_addr"), &info.addr);
            }
            None => {
                stat_line(out, &format!("{fd}:addr"), &info.addr);
                if let Some(l) = &info.listen_addr {
                    stat_line(out, &format!("{fd}:listen_addr"), l);
                }
            }
        }
        stat_line(out, &format!("{fd}:state"), state.text());
        let last = info.last_cmd.load(Relaxed);
        let secs = if state == ConnState::Listening {
            now.wrapping_sub(last) as i32
        } else {
            now.saturating_sub(last) as i32
        };
        stat_line(out, &format!("{fd}:secs_since_last_cmd"), secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reset_uses_a_baseline() {
        let w = Arc::new(WorkerStats::default());
        let g = Global::default();
        w.get_cmds.add(5);
        let ws = vec![w.clone()];
        assert_eq!(g.totals(&ws).get_cmds, 5);
        g.reset(&ws);
        assert_eq!(g.totals(&ws).get_cmds, 0);
        w.get_cmds.incr();
        assert_eq!(g.totals(&ws).get_cmds, 1);
    }

    #[test]
    fn prefixes() {
        let g = Global::default();
        g.record_prefix(b"user:1", b':', PrefixOp::Get { hit: true });
        g.record_prefix(b"user:2", b':', PrefixOp::Get { hit: false });
        g.record_prefix(b"user:2", b':', PrefixOp::Set);
        g.record_prefix(b"nodelim", b':', PrefixOp::Set);
        let mut out = Vec::new();
        g.dump_prefixes(&mut out);
        assert_eq!(out, b"PREFIX user get 2 hit 1 set 1 del 0\r\nEND\r\n");
    }
}
