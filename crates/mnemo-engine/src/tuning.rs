//! Settings that change at run time (`lru tune`, `lru temp_ttl`,
//! `slabs automove ratio`), read by the background threads and the link
//! path without a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::config::Config;
use crate::engine::Engine;

pub(crate) struct Tuning {
    pub hot_pct: AtomicU32,
    pub warm_pct: AtomicU32,
    hot_factor: AtomicU64,
    warm_factor: AtomicU64,
    pub temp_lru: AtomicBool,
    pub temp_ttl: AtomicU32,
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
}

impl Engine {
    /// `lru tune <hot pct> <warm pct> <hot max factor> <warm max factor>`.
    /// Refused (false) when the two percentages pass 80 together, as in
    /// memcached.
    pub fn lru_tune(&self, hot_pct: u32, warm_pct: u32, hot_factor: f64, warm_factor: f64) -> bool {
        if hot_pct == 0
            || warm_pct == 0
            || hot_pct + warm_pct > 80
            || hot_factor <= 0.0
            || warm_factor <= 0.0
        {
            return false;
        }
        let t = &self.tuning;
        t.hot_pct.store(hot_pct, Relaxed);
        t.warm_pct.store(warm_pct, Relaxed);
        t.hot_factor.store(hot_factor.to_bits(), Relaxed);
        t.warm_factor.store(warm_factor.to_bits(), Relaxed);
        true
    }

    /// `lru temp_ttl <n>`: items with a TTL at or below n go to the TEMP
    /// LRU; a negative n turns the TEMP LRU off.
    pub fn lru_temp_ttl(&self, ttl: i64) {
        if ttl < 0 {
            self.tuning.temp_lru.store(false, Relaxed);
        } else {
            self.tuning
                .temp_ttl
                .store(ttl.min(i64::from(u32::MAX)) as u32, Relaxed);
            self.tuning.temp_lru.store(true, Relaxed);
        }
    }

    /// `slabs automove ratio <r>`.
    pub fn set_automove_ratio(&self, ratio: f64) {
        self.tuning.automove_ratio.store(ratio.to_bits(), Relaxed);
    }

    /// The flush horizon (`oldest` in `stats settings`): relative time
    /// before which items are flushed, 0 when no flush is pending.
    pub fn oldest_live(&self) -> u32 {
        self.oldest_live.load(Relaxed)
    }
}
