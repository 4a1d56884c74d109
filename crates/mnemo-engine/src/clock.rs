//! Relative time, as memcached keeps it: seconds since a moment a little
//! before the process started, so that 0 can mean "never" and the smallest
//! real timestamp is still in the past for an item stored at once.

use std::sync::atomic::Ordering;

use crate::sync::{AtomicI64, AtomicU32};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Exptimes above this many seconds are absolute unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// memcached starts its clock this far in the past (ITEM_UPDATE_INTERVAL + 2).
const START_OFFSET: u64 = 62;

/// Seconds since the epoch by the wall clock.
pub(crate) fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The engine's clock. `now()` is read on every request, so it is a plain
/// atomic load; a background thread calls `tick()` to move it.
pub struct Clock {
    start: Instant,
    /// Relative time at `start` (START_OFFSET, or where a warm restart
    /// resumed the previous run's clock).
    base: u64,
    process_started: u64,
    current: AtomicU32,
    /// Seconds added on top of the real elapsed time; lets tests move time.
    skew: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            base: START_OFFSET,
            process_started: unix.saturating_sub(START_OFFSET),
            current: AtomicU32::new(START_OFFSET as u32),
            skew: AtomicI64::new(0),
        }
    }

    /// The clock of a previous run, carried on across a warm restart: the
    /// same `process_started`, so the relative times stored in items (expiry,
    /// last access) keep their meaning, and relative time where it stopped
    /// (`stopped_at`, at wall time `stop_time`) plus the wall time since, as
    /// memcached resumes its monotonic clock. None when the wall clock is
    /// before the stop or the result out of range.
    pub(crate) fn resumed(process_started: u64, stopped_at: u32, stop_time: u64) -> Option<Clock> {
        let away = wall_now().checked_sub(stop_time)?;
        let now = u64::from(stopped_at).checked_add(away)?;
        if now > u64::from(crate::item::TIME_MASK) {
            return None;
        }
        Some(Clock {
            start: Instant::now(),
            base: now,
            process_started,
            current: AtomicU32::new(now as u32),
            skew: AtomicI64::new(0),
        })
    }

    /// Relative seconds now.
    #[inline]
    pub fn now(&self) -> u32 {
        self.current.load(Ordering::Relaxed)
    }

    /// Unix time at relative time 0.
    pub fn process_started(&self) -> u64 {
        self.process_started
    }

    /// Unix time now, as the clock sees it.
    pub fn unix_now(&self) -> u64 {
        self.process_started + u64::from(self.now())
    }

    /// Moves the clock to the real elapsed time; called about every second.
    pub fn tick(&self) {
        let elapsed = self.start.elapsed().as_secs() as i64
            + self.base as i64
            + self.skew.load(Ordering::Relaxed);
        // fetch_max, not store: a tick that read the skew before a racing
        // `advance` must not put time back after it (tests/loom_clock.rs).
        self.current
            .fetch_max(elapsed.clamp(1, u32::MAX as i64) as u32, Ordering::Relaxed);
    }

    /// Moves time forward by `secs` (for tests of expiry).
    #[doc(hidden)]
    pub fn advance(&self, secs: i64) {
        self.skew.fetch_add(secs, Ordering::Relaxed);
        self.tick();
    }

    /// Converts a client's exptime to relative time, as memcached does:
    /// 0 never expires; up to 30 days is an offset from now; more is an
    /// absolute unix time; negative (and absolute times before the start)
    /// become relative time 1, which is already past.
    pub fn realtime(&self, exptime: i64) -> u32 {
        if exptime == 0 {
            return 0;
        }
        let exptime = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            exptime
        };
        if exptime > REALTIME_MAXDELTA {
            if exptime <= self.process_started as i64 {
                return 1;
            }
            (exptime - self.process_started as i64).min(u32::MAX as i64) as u32
        } else {
            (exptime + i64::from(self.now())).min(u32::MAX as i64) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_follows_memcached_rules() {
        let c = Clock::new();
        let now = c.now();
        assert_eq!(c.realtime(0), 0);
        assert_eq!(c.realtime(10), now + 10);
        assert_eq!(c.realtime(-1), 1);
        assert_eq!(
            c.realtime(REALTIME_MAXDELTA),
            now + REALTIME_MAXDELTA as u32
        );
        // An absolute time in the past is already expired.
        assert_eq!(c.realtime(REALTIME_MAXDELTA + 1), 1);
        let abs = c.process_started() as i64 + 1000;
        assert_eq!(c.realtime(abs), 1000);
    }

    #[test]
    fn advance_moves_now() {
        let c = Clock::new();
        let before = c.now();
        c.advance(100);
        assert!(c.now() >= before + 100);
    }
}
