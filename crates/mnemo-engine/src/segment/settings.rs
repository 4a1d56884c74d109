//! The run-time settings memcached's admin commands change (`lru tune`,
//! `lru mode`, `lru temp_ttl`, `slabs automove`, `lru_crawler`,
//! `cache_memlimit`). The segment engine's policy does not read the LRU
//! and slab ones, but it keeps them as given so `stats settings` shows
//! what memcached would, checked with the slab engine's rules.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::SegmentEngine;
use crate::config::{Config, ConfigError};
use crate::tuning::{LruTuneError, Tuning};

pub(crate) struct Settings {
    /// The slab engine's run-time LRU settings, with its rules.
    tuning: Tuning,
    automove: AtomicU32,
    pub crawler_on: AtomicBool,
    crawler_sleep: AtomicU32,
    crawler_tocrawl: AtomicU32,
    mem_limit: AtomicU64,
}

impl Settings {
    pub fn new(cfg: &Config) -> Settings {
        Settings {
            tuning: Tuning::new(cfg),
            automove: AtomicU32::new(cfg.slab_automove),
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
        let mut c = self.cfg.clone();
        s.tuning.write_into(&mut c);
        c.mem_limit = s.mem_limit.load(Relaxed) as usize;
        c.slab_automove = s.automove.load(Relaxed);
        c.lru_crawler = s.crawler_on.load(Relaxed);
        c.lru_crawler_sleep = s.crawler_sleep.load(Relaxed);
        c.lru_crawler_tocrawl = s.crawler_tocrawl.load(Relaxed);
        c
    }

    /// `lru tune`, with the slab engine's rules ([`Tuning::tune`]).
    pub fn lru_tune(
        &self,
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    ) -> Result<(), LruTuneError> {
        self.settings
            .tuning
            .tune(hot_pct, warm_pct, hot_factor, warm_factor)
    }

    pub fn set_lru_segmented(&self, on: bool) {
        self.settings.tuning.segmented.store(on, Relaxed);
    }

    pub fn lru_temp_ttl(&self, ttl: i64) {
        self.settings.tuning.set_temp_ttl(ttl)
    }

    pub fn set_automove(&self, mode: u32) {
        self.settings.automove.store(mode, Relaxed);
    }

    pub fn set_automove_ratio(&self, ratio: f64) {
        self.settings.tuning.set_automove_ratio(ratio)
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
