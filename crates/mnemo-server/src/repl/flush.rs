//! `flush_all` as a versioned barrier (docs/REPLICATION.md section 3):
//! every entry older than the barrier's version is dead on every node.
//! An immediate flush's barrier is a version drawn now and applies at
//! once. A delayed one (`flush_all 10`) is the version of the moment it
//! takes effect and waits for that moment on every node, as memcached's
//! own delayed flush does: until then the items live, and any write made
//! before it (during the delay) dies with them. Each node keeps its
//! pending barriers and applies each when due (the timer thread in
//! `link.rs` asks every 100 ms); a full copy sends them too.

use std::sync::atomic::Ordering::Relaxed;

use mnemo_engine::version::{wall_unix_ms, Version, EPOCH_UNIX_MS, MAX_DRIFT_MS};
use mnemo_engine::ApplyOutcome;
use mnemo_protocol::repl::{encode, Record};

use super::node::{ApplyError, Node};

/// memcached takes delays up to 30 days as relative; a barrier further
/// ahead than that (and the drift peers' clocks may have) is no delay
/// any client could have asked for.
const MAX_AHEAD_MS: u64 = 30 * 86_400 * 1000 + MAX_DRIFT_MS;

/// Pending barriers held at most; past it the earliest is applied at once
/// (sooner than asked, never later or not at all).
const MAX_PENDING: usize = 1024;

/// When barrier `v` takes effect, in Unix ms: one second before its
/// version's time, as memcached's delayed flush kills items stored up to
/// the second before the one it names, from that second on.
fn due_unix_ms(v: u64) -> u64 {
    (Version(v).ms() + EPOCH_UNIX_MS).saturating_sub(1000)
}

impl Node {
    /// A client's `flush_all [delay]` ran here (the engine has already
    /// flushed, or set its own delayed flush): a barrier, here and on
    /// every peer.
    pub fn record_flush(&self, delay: i64) {
        let version = if delay <= 0 {
            let v = Version(self.engine().draw_cas());
            self.engine().apply_flush(v);
            self.flush_seen(v);
            v
        } else {
            let clock = self.engine().clock();
            let at_unix_s = clock.process_started() + u64::from(clock.realtime(delay));
            let ms = (at_unix_s * 1000).saturating_sub(EPOCH_UNIX_MS);
            let v = Version::pack(ms, 0, self.id());
            self.schedule(v.0);
            v
        };
        self.log(&Record::Flush {
            origin: self.id().get(),
            version: version.0,
        });
    }

    /// A peer's FLUSH frame: Ok(true) if it was news (and is forwarded).
    pub(super) fn apply_barrier(
        &self,
        rec: &Record<'_>,
        version: Version,
    ) -> Result<bool, ApplyError> {
        // Exempt from the skew guard (a delayed flush lies ahead) and
        // never observed: only ever a barrier.
        let now = wall_unix_ms();
        let due = due_unix_ms(version.0);
        if due > now.saturating_add(MAX_AHEAD_MS) {
            return Err(ApplyError::FlushTooFar(version.0));
        }
        if version.0 <= self.barrier() {
            return Ok(false);
        }
        let news = if due > now {
            self.schedule(version.0)
        } else {
            self.apply_now(version)?
        };
        if news {
            self.log(rec);
        }
        Ok(news)
    }

    /// Holds barrier `v` until it is due; whether it was new.
    fn schedule(&self, v: u64) -> bool {
        let mut p = self.pending_flushes.lock();
        if !p.insert(v) {
            return false;
        }
        let early = if p.len() > MAX_PENDING {
            p.pop_first()
        } else {
            None
        };
        drop(p);
        if let Some(e) = early {
            let _ = self.apply_now(Version(e));
        }
        true
    }

    fn apply_now(&self, v: Version) -> Result<bool, ApplyError> {
        if self.engine().apply_flush(v) != ApplyOutcome::Applied {
            return Err(ApplyError::Engine(ApplyOutcome::NotEnabled));
        }
        Ok(self.flush_seen(v))
    }

    /// Applies every pending barrier that is due; called every 100 ms.
    pub fn apply_due_flushes(&self) {
        let now = wall_unix_ms();
        loop {
            let mut p = self.pending_flushes.lock();
            let Some(&first) = p.first() else { return };
            if due_unix_ms(first) > now {
                return;
            }
            p.pop_first();
            drop(p);
            let _ = self.apply_now(Version(first));
        }
    }

    /// Barriers not yet due.
    pub fn pending_flushes(&self) -> usize {
        self.pending_flushes.lock().len()
    }

    /// Whether `version` raises the greatest barrier applied so far.
    fn flush_seen(&self, version: Version) -> bool {
        self.barrier.fetch_max(version.0, Relaxed) < version.0
    }

    /// The greatest flush barrier applied, 0 for none.
    pub fn barrier(&self) -> u64 {
        self.barrier.load(Relaxed)
    }

    /// Appends the barrier applied and those pending, as a full copy ends.
    pub(super) fn snapshot_barriers(&self, out: &mut Vec<u8>) {
        let b = self.barrier();
        let pending: Vec<u64> = self.pending_flushes.lock().iter().copied().collect();
        for v in std::iter::once(b).filter(|&b| b != 0).chain(pending) {
            let _ = encode(
                &Record::Flush {
                    origin: v as u8,
                    version: v,
                },
                out,
            );
        }
    }
}
