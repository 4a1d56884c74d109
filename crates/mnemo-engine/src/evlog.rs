//! What the engine tells an observer about an eviction, for memcached's
//! `watch evictions` stream. The engine knows nothing of watchers: the
//! server installs one hook and switches it on and off; while it is off
//! an eviction costs one relaxed load more.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;

/// One evicted item, as memcached's `logentry_eviction` records it.
pub struct Eviction<'a> {
    pub key: &'a [u8],
    /// Seconds left to live, or -1 for an item that never expires.
    pub ttl: i64,
    /// Seconds since the item was last accessed.
    pub last_access: u32,
    /// The item was read at least once.
    pub fetched: bool,
    /// Its slab class.
    pub class_id: u32,
    /// Value length.
    pub size: usize,
}

type Hook = Box<dyn Fn(&Eviction) + Send + Sync>;

/// The installed hook and whether anyone wants it called.
#[derive(Default)]
pub(crate) struct EvictionLog {
    hook: OnceLock<Hook>,
    on: AtomicBool,
}

impl EvictionLog {
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// For engines other than the slab engine (whose setters are below).
    pub(crate) fn set_hook(&self, f: Hook) {
        let _ = self.hook.set(f);
    }

    pub(crate) fn set_on(&self, on: bool) {
        self.on.store(on, Relaxed);
    }

    pub(crate) fn emit(&self, ev: &Eviction) {
        if let Some(h) = self.hook.get() {
            h(ev);
        }
    }
}

impl crate::SlabEngine {
    /// Installs the function told of every eviction while
    /// [`SlabEngine::log_evictions`] is on. It runs with the item's shard and
    /// class locked, so it must only hand the record on. A second hook is
    /// ignored.
    pub fn set_eviction_hook(&self, f: impl Fn(&Eviction) + Send + Sync + 'static) {
        let _ = self.evlog.hook.set(Box::new(f));
    }

    /// Turns reporting of evictions to the hook on or off.
    pub fn log_evictions(&self, on: bool) {
        self.evlog.on.store(on, Relaxed);
    }

    /// The slab class an item of this shape would take (memcached's
    /// `ITEM_clsid` of the item a store allocates), the largest class for
    /// one that fits none.
    pub fn class_id_for(&self, nkey: usize, flags: u32, nbytes: usize) -> u32 {
        let size = self.slabs.layout.item_size(nkey, flags, nbytes);
        self.slabs.class_for(size).unwrap_or(self.slabs.largest()) as u32 + 1
    }
}
