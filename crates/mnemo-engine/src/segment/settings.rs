//! The run-time settings memcached's admin commands change (`lru tune`,
//! `lru mode`, `lru temp_ttl`, `slabs automove`, `lru_crawler`,
//! `cache_memlimit`). The segment engine's policy does not read the LRU
//! and slab ones, but it keeps them as given so `stats settings` shows
//! what memcached would, checked with the slab engine's rules.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::SegmentEngine;
use crate::config::{Config, ConfigError};
use crate::tuning::LruTuneError;

pub(crate) struct Settings {
    hot_pct: AtomicU32,
    warm_pct: AtomicU32,
    hot_factor: AtomicU64,
    warm_factor: AtomicU64,
    temp_lru: AtomicBool,
    temp_ttl: AtomicU32,
    segmented: AtomicBool,
    automove: AtomicU32,
    automove_ratio: AtomicU64,
    pub crawler_on: AtomicBool,
    crawler_sleep: AtomicU32,
    crawler_tocrawl: AtomicU32,
    mem_limit: AtomicU64,
}

impl Settings {
    pub fn new(cfg: &Config) -> Settings {
        Settings {
            hot_pct: AtomicU32::new(cfg.hot_lru_pct),
            warm_pct: AtomicU32::new(cfg.warm_lru_pct),
            hot_factor: AtomicU64::new(cfg.hot_max_factor.to_bits()),
            warm_factor: AtomicU64::new(cfg.warm_max_factor.to_bits()),
            temp_lru: AtomicBool::new(cfg.temp_lru),
            temp_ttl: AtomicU32::new(cfg.temporary_ttl),
            segmented: AtomicBool::new(cfg.lru_segmented),
            automove: AtomicU32::new(cfg.slab_automove),
            automove_ratio: AtomicU64::new(cfg.slab_automove_ratio.to_bits()),
            crawler_on: AtomicBool::new(cfg.lru_crawler),
            crawler_sleep: AtomicU32::new(cfg.lru_crawler_sleep),
            crawler_tocrawl: AtomicU32::new(cfg.lru_crawler_tocrawl),
            mem_limit: AtomicU64::new(cfg.mem_limit as u64),
        }
    }
}

impl SegmentEngine {
    /// The settings in force, with run-time changes applied.
    pub fn config(&self) -> Config {
        let s = &self.settings;
        let f = |a: &AtomicU64| f64::from_bits(a.load(Relaxed));
        let mut c = self.cfg.clone();
        c.mem_limit = s.mem_limit.load(Relaxed) as usize;
        c.hot_lru_pct = s.hot_pct.load(Relaxed);
        c.warm_lru_pct = s.warm_pct.load(Relaxed);
        c.hot_max_factor = f(&s.hot_factor);
        c.warm_max_factor = f(&s.warm_factor);
        c.temp_lru = s.temp_lru.load(Relaxed);
        c.temporary_ttl = s.temp_ttl.load(Relaxed);
        c.lru_segmented = s.segmented.load(Relaxed);
        c.slab_automove = s.automove.load(Relaxed);
        c.slab_automove_ratio = f(&s.automove_ratio);
        c.lru_crawler = s.crawler_on.load(Relaxed);
        c.lru_crawler_sleep = s.crawler_sleep.load(Relaxed);
        c.lru_crawler_tocrawl = s.crawler_tocrawl.load(Relaxed);
        c
    }

    /// `lru tune`, checked as the slab engine checks it.
    pub fn lru_tune(
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
        let s = &self.settings;
        s.hot_pct.store(hot_pct, Relaxed);
        s.warm_pct.store(warm_pct, Relaxed);
        s.hot_factor.store(hot_factor.to_bits(), Relaxed);
        s.warm_factor.store(warm_factor.to_bits(), Relaxed);
        Ok(())
    }

    pub fn set_lru_segmented(&self, on: bool) {
        self.settings.segmented.store(on, Relaxed);
    }

    pub fn lru_temp_ttl(&self, ttl: i64) {
        let s = &self.settings;
        if ttl < 0 {
            s.temp_lru.store(false, Relaxed);
        } else {
            s.temp_ttl
                .store(ttl.min(i64::from(u32::MAX)) as u32, Relaxed);
            s.temp_lru.store(true, Relaxed);
        }
    }

    pub fn set_automove(&self, mode: u32) {
        self.settings.automove.store(mode, Relaxed);
    }

    pub fn set_automove_ratio(&self, ratio: f64) {
        self.settings.automove_ratio.store(ratio.to_bits(), Relaxed);
    }

    pub fn lru_crawler_enable(&self) -> bool {
        self.settings.crawler_on.store(true, Relaxed);
        true
    }

    pub fn lru_crawler_disable(&self) -> bool {
        self.settings.crawler_on.store(false, Relaxed);
        true
    }

    pub fn lru_crawler_set_sleep(&self, usecs: u32) {
        self.settings.crawler_sleep.store(usecs, Relaxed);
    }

    pub fn lru_crawler_set_tocrawl(&self, n: u32) {
        self.settings.crawler_tocrawl.store(n, Relaxed);
    }

    /// `cache_memlimit`: how many segments may hold objects. Lowering it
    /// evicts as writes need room; raising it is bounded by the segment
    /// table sized at start (four times the starting limit).
    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), ConfigError> {
        let n = bytes / self.segs.seg_size;
        if n == 0 || n > self.segs.segs.len() {
            return Err(ConfigError("memory limit out of range".into()));
        }
        self.segs.set_limit(n.max(super::MIN_SEGS));
        self.settings.mem_limit.store(bytes as u64, Relaxed);
        Ok(())
    }
}
