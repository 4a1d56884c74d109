//! Server-side counters, merged with the engine's for `stats`.
//!
//! Each worker owns a [`WorkerStats`]: only that thread writes it (a relaxed
//! load + store, no read-modify-write bus lock on the hot path) and `stats`
//! readers on other threads load the values relaxed. `stats reset` cannot
//! zero another thread's counters without racing its writes, so it records
//! a baseline and reports differences instead.

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
