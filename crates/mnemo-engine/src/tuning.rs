//! Settings that change at run time (`lru tune`, `lru mode`, `lru
//! temp_ttl`, `slabs automove ratio`), read by the background threads and
//! the link path without a lock.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::config::Config;
use crate::engine::SlabEngine;

pub(crate) struct Tuning {
    pub hot_pct: AtomicU32,
    pub warm_pct: AtomicU32,
    hot_factor: AtomicU64,
    warm_factor: AtomicU64,
    pub temp_lru: AtomicBool,
    pub temp_ttl: AtomicU32,
    /// memcached's `lru_segmented`: false is its flat ("compat") mode,
    /// where COLD is the only LRU new items enter.
    pub segmented: AtomicBool,
    automove_ratio: AtomicU64,
}

impl Tuning {
    pub fn new(cfg: &Config) -> Tuning {
        Tuning {
            hot_pct: AtomicU32::new(cfg.hot_lru_pct),
            warm_pct: AtomicU32::new(cfg.warm_lru_pct),
            hot_factor: AtomicU64::new(cfg.hot_max_factor.to_bits()),
            warm_factor: AtomicU64::new(cfg.warm_max_factor.to_bits()),
            temp_lru: AtomicBool::new(cfg.temp_lru),
            temp_ttl: AtomicU32::new(cfg.temporary_ttl),
            segmented: AtomicBool::new(cfg.lru_segmented),
            automove_ratio: AtomicU64::new(cfg.slab_automove_ratio.to_bits()),
        }
    }
    pub fn hot_factor(&self) -> f64 {
        f64::from_bits(self.hot_factor.load(Relaxed))
    }
    pub fn warm_factor(&self) -> f64 {
        f64::from_bits(self.warm_factor.load(Relaxed))
    }
    pub fn automove_ratio(&self) -> f64 {
        f64::from_bits(self.automove_ratio.load(Relaxed))
    }
    #[inline]
    pub fn segmented(&self) -> bool {
        self.segmented.load(Relaxed)
    }

    /// `lru tune <hot pct> <warm pct> <hot max factor> <warm max factor>`,
    /// checked as memcached checks it: a 0 percentage is accepted, and the
    /// sum is taken in 32 bits (so it wraps, as memcached's does). A NaN
    /// factor is not "<= 0" and passes, as in memcached.
    pub fn tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError> {
        if hot_pct.wrapping_add(warm_pct) > 80 {
            return Err(LruTuneError::PctsOver80);
        }
        if warm_factor <= 0.0 || hot_factor <= 0.0 {
            return Err(LruTuneError::FactorNotPositive);
        }
        self.hot_pct.store(hot_pct, Relaxed);
        self.warm_pct.store(warm_pct, Relaxed);
        self.hot_factor.store(hot_factor.to_bits(), Relaxed);
        self.warm_factor.store(warm_factor.to_bits(), Relaxed);
        Ok(())
    }

    /// `lru temp_ttl <n>`: items with a TTL at or below n go to the TEMP
    /// LRU; a negative n turns the TEMP LRU off.
    pub fn set_temp_ttl(&self, ttl: i64) {
        if ttl < 0 {
            self.temp_lru.store(false, Relaxed);
        } else {
            self.temp_ttl
                .store(ttl.min(i64::from(u32::MAX)) as u32, Relaxed);
            self.temp_lru.store(true, Relaxed);
        }
    }

    pub fn set_automove_ratio(&self, ratio: f64) {
        self.automove_ratio.store(ratio.to_bits(), Relaxed);
    }

    /// These settings as they are now, into `c` (an engine's `config()`).
    pub fn write_into(&self, c: &mut Config) {
        c.hot_lru_pct = self.hot_pct.load(Relaxed);
        c.warm_lru_pct = self.warm_pct.load(Relaxed);
        c.hot_max_factor = self.hot_factor();
        c.warm_max_factor = self.warm_factor();
        c.temp_lru = self.temp_lru.load(Relaxed);
        c.temporary_ttl = self.temp_ttl.load(Relaxed);
        c.lru_segmented = self.segmented();
        c.slab_automove_ratio = self.automove_ratio();
    }
}

/// Why `lru tune` refused its arguments, in the order memcached checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LruTuneError {
    /// The HOT and WARM percentages add up to more than 80.
    PctsOver80,
    /// A max-age factor is zero or negative.
    FactorNotPositive,
}

impl LruTuneError {
    /// The line memcached 1.6.18 answers with.
    pub fn message(self) -> &'static str {
        match self {
            LruTuneError::PctsOver80 => "ERROR hot and warm pcts must not exceed 80",
            LruTuneError::FactorNotPositive => "ERROR hot/warm age factors must be greater than 0",
        }
    }
}

impl fmt::Display for LruTuneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for LruTuneError {}

impl SlabEngine {
    /// `lru tune` ([`Tuning::tune`]).
    pub fn lru_tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError> {
        self.tuning.tune(hot_pct, warm_pct, hot_factor, warm_factor)
    }

    /// `lru mode segmented|flat`. Switching to flat wakes the maintainer,
    /// which then drains HOT and WARM into COLD.
    pub fn set_lru_segmented(&self, segmented: bool) {
        self.tuning.segmented.store(segmented, Relaxed);
        self.wake.1.notify_all();
    }

    /// `lru temp_ttl <n>` ([`Tuning::set_temp_ttl`]).
    pub fn lru_temp_ttl(&self, ttl: i64) {
        self.tuning.set_temp_ttl(ttl)
    }

    /// `slabs automove ratio <r>`.
    pub fn set_automove_ratio(&self, ratio: f64) {
        self.tuning.set_automove_ratio(ratio)
    }

    /// The flush horizon (`oldest` in `stats settings`): relative time
    /// before which items are flushed, 0 when no flush is pending.
    pub fn oldest_live(&self) -> u32 {
        self.oldest_live.load(Relaxed)
    }
}
