//! Pinned values: a reply that references an item's bytes instead of
//! copying them holds a `Pinned` until the bytes are written.
//!
//! memcached keeps a reference count in every item header for this; ours
//! has no spare bits, and only large values are worth referencing, so pins
//! live beside the class's free list (`ClassState::pins`), keyed by the
//! item's head chunk. While an item is pinned:
//! - unlinking it (delete, overwrite, expiry, eviction, flush) takes it out
//!   of the index and the LRU as usual, but its chunks stay allocated and
//!   untouched until the last pin is dropped;
//! - the page mover treats it as busy instead of rescuing or evicting it;
//! - incr/decr never rewrite it in place.
//!
//! Pins are taken under the key's shard lock, with the item linked, so the
//! bytes a `Pinned` shows are the value as it was at that read.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use crate::engine::SlabEngine;
use crate::slabs::ChunkId;

/// An item's value, held for a reply. Dropping it releases the item.
pub struct Pinned {
    engine: Arc<SlabEngine>,
    id: ChunkId,
    len: usize,
}

impl Pinned {
    /// Total value bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with the value's parts in order (one part unless chained).
    pub fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        // SAFETY: this handle's pin keeps the item's chunks allocated and
        // its bytes unchanged until it is dropped (see the module doc), so
        // for as long as `self` is borrowed.
        let raw = unsafe { self.engine.slabs.raw(self.id) };
        self.engine.for_each_value_part(raw, f);
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.engine.unpin(self.id);
    }
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish()
    }
}

impl SlabEngine {
    /// Pins linked item `id`, whose value is `len` bytes; the caller holds
    /// its shard lock.
    pub(crate) fn pin(&self, id: ChunkId, len: usize) -> Option<Pinned> {
        let engine = self.this.upgrade()?;
        let ci = self.slabs.class_of(id);
        let mut st = self.slabs.classes[ci].state.lock();
        st.pins.entry(id).or_default().count += 1;
        drop(st);
        self.pinned.fetch_add(1, Relaxed);
        Some(Pinned { len, engine, id })
    }

    fn unpin(&self, id: ChunkId) {
        let ci = self.slabs.class_of(id);
        let mut st = self.slabs.classes[ci].state.lock();
        let Some(pin) = st.pins.get_mut(&id) else {
            debug_assert!(false, "unpin of an item that is not pinned");
            return;
        };
        pin.count -= 1;
        if pin.count == 0 {
            let unlinked = pin.unlinked;
            st.pins.remove(&id);
            if unlinked {
                self.free_item_locked(&mut st, id);
            }
        }
        drop(st);
        // Release, paired with `is_pinned`'s Acquire: a reply's reads of
        // the value (done before this drop) happen before an incr that
        // then finds nothing pinned and rewrites the bytes in place
        // (tests/loom_pin.rs, `RelaxedPinnedCount`).
        self.pinned.fetch_sub(1, Release);
    }

    /// Whether a reply references item `id`. The caller holds its shard
    /// lock, so no new pin can appear meanwhile.
    pub(crate) fn is_pinned(&self, id: ChunkId) -> bool {
        if self.pinned.load(Acquire) == 0 {
            return false;
        }
        let ci = self.slabs.class_of(id);
        self.slabs.classes[ci].state.lock().pins.contains_key(&id)
    }

    /// Items pinned by replies right now.
    pub fn pinned_items(&self) -> u64 {
        self.pinned.load(Relaxed)
    }
}
