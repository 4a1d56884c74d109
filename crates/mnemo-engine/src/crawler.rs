//! The LRU crawler: finds expired and flushed items in the background and
//! frees them, and walks items for `lru_crawler metadump`.
//!
//! memcached walks each LRU with a cursor item linked into the list. We walk
//! each class's pages instead: a chunk's position in a page never moves, so
//! the walk can drop the class lock between batches without a cursor and
//! without being confused by items that change lists meanwhile.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Config;
use crate::engine::SlabEngine;
use crate::item::{is_chain_chunk, LINKED};
use crate::slabs::{ChunkId, MAX_CLASSES};
use crate::stats::EngineStats;

/// Chunks examined per hold of a class lock.
const BATCH: usize = 64;
/// Chunks examined between two `lru_crawler sleep` pauses (memcached's
/// crawls_persleep). Pausing after every batch instead woke the crawler
/// 15 times as often, each wake-up preempting a worker on a busy core.
const CRAWLS_PER_SLEEP: usize = 1000;
/// Longest wait between automatic crawls of one class (memcached's MAX_MAINTCRAWL_WAIT).
const MAX_CRAWL_WAIT: u64 = 60 * 60;

/// Why an `lru_crawler` command was refused; Display is memcached's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrawlerCommandError {
    Disabled,
    Busy,
    BadClass,
    NotStarted,
}

impl fmt::Display for CrawlerCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrawlerCommandError::Disabled => "CLIENT_ERROR lru crawler disabled",
            CrawlerCommandError::Busy => "BUSY currently processing crawler request",
            CrawlerCommandError::BadClass => "BADCLASS invalid class id",
            CrawlerCommandError::NotStarted => "NOTSTARTED no items to crawl",
        })
    }
}

pub(crate) fn parse_class_list(s: &str) -> Result<Vec<u32>, CrawlerCommandError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let id: u32 = part.parse().map_err(|_| CrawlerCommandError::BadClass)?;
        if id == 0 || id as usize >= MAX_CLASSES {
            return Err(CrawlerCommandError::BadClass);
        }
        out.push(id);
    }
    Ok(out)
}

pub(crate) struct CrawlerState {
    pub enabled: AtomicBool,
    pub sleep_us: AtomicU32,
    pub tocrawl: AtomicU32,
    running: AtomicU32,
    starts: AtomicU64,
    /// Class indexes asked for by `lru_crawler crawl`.
    pending: Mutex<Vec<usize>>,
}

impl CrawlerState {
    pub fn new(cfg: &Config) -> CrawlerState {
        CrawlerState {
            enabled: AtomicBool::new(cfg.lru_crawler),
            sleep_us: AtomicU32::new(cfg.lru_crawler_sleep),
            tocrawl: AtomicU32::new(cfg.lru_crawler_tocrawl),
            running: AtomicU32::new(0),
            starts: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    pub fn fill_stats(&self, s: &mut EngineStats) {
        s.lru_crawler_running = self.running.load(Relaxed);
        s.lru_crawler_starts = self.starts.load(Relaxed);
    }

    pub fn reset_stats(&self) {
        self.starts.store(0, Relaxed);
    }
}

impl SlabEngine {
    pub fn lru_crawler_enable(&self) -> bool {
        self.crawler.enabled.store(true, Relaxed);
        true
    }

    pub fn lru_crawler_disable(&self) -> bool {
        self.crawler.enabled.store(false, Relaxed);
        true
    }

    pub fn lru_crawler_set_sleep(&self, usecs: u32) {
        self.crawler.sleep_us.store(usecs, Relaxed);
    }

    pub fn lru_crawler_set_tocrawl(&self, n: u32) {
        self.crawler.tocrawl.store(n, Relaxed);
    }

    /// `lru_crawler crawl <ids|all>`: queues a crawl of those classes.
    pub fn lru_crawler_crawl(&self, classes: &str) -> Result<(), CrawlerCommandError> {
        if !self.crawler.enabled.load(Relaxed) {
            return Err(CrawlerCommandError::Disabled);
        }
        let ids: Vec<usize> = if classes == "all" {
            (0..self.slabs.classes.len()).collect()
        } else {
            parse_class_list(classes)?
                .into_iter()
                .map(|id| id as usize - 1)
                .filter(|&ci| ci < self.slabs.classes.len())
                .collect()
        };
        let mut pending = self.crawler.pending.lock();
        if !pending.is_empty() || self.crawler.running.load(Relaxed) != 0 {
            return Err(CrawlerCommandError::Busy);
        }
        if ids.is_empty() {
            return Err(CrawlerCommandError::NotStarted);
        }
        *pending = ids;
        drop(pending);
        self.wake.1.notify_all();
        Ok(())
    }

    /// Frees dead items of one class; returns (checked, reclaimed).
    pub(crate) fn crawl_class(&self, ci: usize, limit: u32) -> (u64, u64) {
        let pages: Vec<u32> = self.slabs.classes[ci].state.lock().pages.clone();
        let sleep_us = self.crawler.sleep_us.load(Relaxed);
        let (mut checked, mut reclaimed) = (0u64, 0u64);
        let mut since_sleep = 0usize;
        for page in pages {
            let ids: Vec<ChunkId> = self.slabs.chunk_ids(ci, page).collect();
            for batch in ids.chunks(BATCH) {
                if self.stop.load(Relaxed) || (limit != 0 && checked >= u64::from(limit)) {
                    return (checked, reclaimed);
                }
                let mut st = self.slabs.classes[ci].state.lock();
                // The page may have been moved to another class meanwhile.
                if self.slabs.class_of(batch[0]) != ci || !st.pages.contains(&page) {
                    break;
                }
                let now = self.clock.now();
                for &id in batch {
                    // SAFETY: `id` is a chunk of `page`, still this class's (checked just
                    // above) with its class lock (`st`) held.
                    let m = unsafe { self.slabs.raw(id) }.meta();
                    if m & LINKED == 0 || is_chain_chunk(m) {
                        continue;
                    }
                    checked += 1;
                    st.c.crawler_items_checked += 1;
                    if self.is_dead(id, now) && self.reclaim(&mut st, ci, id, false) {
                        st.c.crawler_reclaimed += 1;
                        reclaimed += 1;
                    }
                }
                drop(st);
                since_sleep += batch.len();
                if sleep_us > 0 && since_sleep >= CRAWLS_PER_SLEEP {
                    since_sleep = 0;
                    std::thread::sleep(Duration::from_micros(u64::from(sleep_us)));
                }
            }
        }
        (checked, reclaimed)
    }

    pub(crate) fn crawler_loop(&self) {
        let n = self.slabs.classes.len();
        // Per class: when to crawl next, and the current back-off.
        let mut next = vec![Instant::now() + Duration::from_secs(5); n];
        let mut wait = vec![5u64; n];
        while !self.stop.load(Relaxed) {
            self.sleep(Duration::from_millis(500));
            if self.stop.load(Relaxed) {
                break;
            }
            if !self.crawler.enabled.load(Relaxed) {
                continue;
            }
            let requested: Vec<usize> = std::mem::take(&mut *self.crawler.pending.lock());
            let auto = requested.is_empty();
            let todo: Vec<usize> = if auto {
                (0..n)
                    .filter(|&ci| next[ci] <= Instant::now())
                    .filter(|&ci| self.slabs.classes[ci].state.lock().items() > 0)
                    .collect()
            } else {
                requested
            };
            if todo.is_empty() {
                continue;
            }
            self.crawler.running.store(1, Relaxed);
            self.crawler.starts.fetch_add(1, Relaxed);
            let limit = self.crawler.tocrawl.load(Relaxed);
            for ci in todo {
                let (checked, reclaimed) = self.crawl_class(ci, limit);
                // Crawl sooner where there was much to free, later where
                // there was little, as memcached's scheduler does.
                wait[ci] = if checked > 0 && reclaimed * 100 / checked >= 1 {
                    (wait[ci] / 2).max(5)
                } else {
                    (wait[ci] * 2).min(MAX_CRAWL_WAIT)
                };
                next[ci] = Instant::now() + Duration::from_secs(wait[ci]);
            }
            self.crawler.running.store(0, Relaxed);
        }
    }

    pub(crate) fn maintainer_loop(&self) {
        let mut idle_ms = 1u64;
        while !self.stop.load(Relaxed) {
            let mut did = 0;
            for ci in 0..self.slabs.classes.len() {
                did += self.juggle(ci, 500);
            }
            self.juggles.fetch_add(1, Relaxed);
            // Back off while there is nothing to do, up to a second.
            idle_ms = if did > 0 { 1 } else { (idle_ms * 2).min(1000) };
            self.sleep(Duration::from_millis(idle_ms));
        }
    }
}
