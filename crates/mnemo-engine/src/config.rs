//! Engine settings, with memcached 1.6's defaults.

use std::fmt;

/// What the engine needs from the command line. Field names follow
/// memcached's `settings` so `stats settings` can be read off them.
#[derive(Clone, Debug)]
pub struct Config {
    /// `-m`, in bytes.
    pub mem_limit: usize,
    /// Slab page size (memcached's `slab_page_size`, 1 MB).
    pub page_size: usize,
    /// `-f`.
    pub growth_factor: f64,
    /// `-n`: key + value bytes the smallest class holds beyond the header.
    pub chunk_size: usize,
    /// `-o slab_chunk_max`: the largest chunk; bigger items are chained.
    /// 0 means half a page, as in memcached.
    pub slab_chunk_max: usize,
    /// `-I`.
    pub item_size_max: usize,
    /// `!-C`.
    pub use_cas: bool,
    /// `!-M`: evict to make room instead of answering out-of-memory.
    pub evict_to_free: bool,
    /// `-o hashpower`: log2 of the index's initial number of slots.
    pub hashpower_init: u32,
    /// `-o hot_lru_pct`.
    pub hot_lru_pct: u32,
    /// `-o warm_lru_pct`.
    pub warm_lru_pct: u32,
    /// `-o hot_max_factor`: HOT items older than the COLD tail times this move on.
    pub hot_max_factor: f64,
    /// `-o warm_max_factor`.
    pub warm_max_factor: f64,
    /// `-o temporary_ttl`: items with a TTL at or below this go to the TEMP LRU.
    pub temporary_ttl: u32,
    /// Whether the TEMP LRU is in use (memcached turns it on with `temporary_ttl`).
    pub temp_lru: bool,
    /// `-o lru_maintainer` / `no_lru_maintainer`.
    pub lru_maintainer: bool,
    /// memcached's `lru_segmented`: HOT/WARM/COLD when true, only COLD
    /// (its 1.4-style flat LRU) when false. `no_lru_maintainer` and
    /// `no_modern` turn it off; `lru mode` switches it at run time.
    pub lru_segmented: bool,
    /// `-o lru_crawler` / `no_lru_crawler`.
    pub lru_crawler: bool,
    /// `-o lru_crawler_sleep` (microseconds between items).
    pub lru_crawler_sleep: u32,
    /// `-o lru_crawler_tocrawl` (0 = no limit).
    pub lru_crawler_tocrawl: u32,
    /// `-o slab_reassign`.
    pub slab_reassign: bool,
    /// `-o hugepages` (mnemo's own): slab pages from one range advised
    /// for transparent huge pages (see `arena.rs`). Fewer TLB misses per
    /// lookup, but every byte of a touched page is resident, so RSS grows
    /// by the unused tails of slab pages: off by default.
    pub huge_pages: bool,
    /// `-o slab_automove` (0, 1 or 2).
    pub slab_automove: u32,
    /// `-o slab_automove_ratio`.
    pub slab_automove_ratio: f64,
    /// `-o slab_automove_window`.
    pub slab_automove_window: u32,
    /// `-o tail_repair_time` (0 = off).
    pub tail_repair_time: u32,
    /// Seconds between LRU bumps of the same item (memcached's ITEM_UPDATE_INTERVAL).
    pub item_update_interval: u32,
    /// Number of index shards (a power of two). Not a memcached setting.
    pub shards: usize,
    /// `-e`: slab memory lives in this file (usually on tmpfs) and a
    /// graceful stop keeps it for the next start (see `restart.rs`).
    pub memory_file: Option<std::path::PathBuf>,
    /// `-o engine=slab|segment` (mnemo's own): which storage engine
    /// `Engine::new` builds.
    pub engine: EngineKind,
}

/// The storage engines mnemo has (`-o engine=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// memcached's design: slab classes, per-class LRUs (the default).
    #[default]
    Slab,
    /// Segcache's design: append-only segments grouped by TTL.
    Segment,
}

impl EngineKind {
    /// Parses the option's value; `None` for anything else.
    pub fn parse(s: &str) -> Option<EngineKind> {
        match s {
            "slab" => Some(EngineKind::Slab),
            "segment" => Some(EngineKind::Segment),
            _ => None,
        }
    }

    /// The option's value for this engine.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Slab => "slab",
            EngineKind::Segment => "segment",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_limit: 64 * 1024 * 1024,
            page_size: 1024 * 1024,
            growth_factor: 1.25,
            chunk_size: 48,
            slab_chunk_max: 0,
            item_size_max: 1024 * 1024,
            use_cas: true,
            evict_to_free: true,
            hashpower_init: 16,
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            temporary_ttl: 61,
            temp_lru: false,
            lru_maintainer: true,
            lru_segmented: true,
            lru_crawler: true,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
            slab_reassign: true,
            huge_pages: false,
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            slab_automove_window: 30,
            tail_repair_time: 0,
            item_update_interval: 60,
            shards: 256,
            memory_file: None,
            engine: EngineKind::Slab,
        }
    }
}

/// Why a configuration cannot be used; the message is what the server prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The chunk size past which items are chained, resolved from `slab_chunk_max`.
    pub fn chunk_max(&self) -> usize {
        if self.slab_chunk_max == 0 {
            self.page_size / 2
        } else {
            self.slab_chunk_max
        }
    }

    /// Checks the combinations memcached refuses at start, with its messages.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.growth_factor <= 1.0 {
            return Err(ConfigError("Factor must be greater than 1".into()));
        }
        if self.chunk_size == 0 {
            return Err(ConfigError("Chunk size must be greater than 0".into()));
        }
        if self.item_size_max < 1024 {
            return Err(ConfigError(
                "Item max size cannot be less than 1024 bytes.".into(),
            ));
        }
        if self.item_size_max > 1024 * 1024 * 1024 {
            return Err(ConfigError(
                "Cannot set item size limit higher than 1 gigabyte.".into(),
            ));
        }
        let chunk_max = self.chunk_max();
        if chunk_max > self.page_size {
            return Err(ConfigError(
                "slab_chunk_max cannot be larger than slab_page_size".into(),
            ));
        }
        if !self.page_size.is_multiple_of(chunk_max) {
            return Err(ConfigError(
                "slab_chunk_max must divide evenly into the slab page size".into(),
            ));
        }
        if self.page_size > (1 << 20) {
            return Err(ConfigError("slab page size cannot exceed 1 MB".into()));
        }
        if self.hot_lru_pct + self.warm_lru_pct > 80 {
            return Err(ConfigError(
                "hot_lru_pct + warm_lru_pct cannot be more than 80% combined".into(),
            ));
        }
        if self.mem_limit / self.page_size > crate::slabs::MAX_PAGES {
            return Err(ConfigError(format!(
                "memory limit too large: at most {} MB",
                crate::slabs::MAX_PAGES * self.page_size / (1024 * 1024)
            )));
        }
        if !self.shards.is_power_of_two() {
            return Err(ConfigError("shards must be a power of two".into()));
        }
        Ok(())
    }
}
