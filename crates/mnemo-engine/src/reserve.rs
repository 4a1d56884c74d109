//! Reserved items: a storage command's value read from the socket straight
//! into the item that will hold it, as memcached's `conn_nread` does.
//!
//! The server reserves the item when the command line arrives (its key,
//! flags and expiry are known then), reads the value into it part by part,
//! and stores it once the last byte is in. Until then the item is counted
//! against the memory limit like any other (so a client sending a large
//! value slowly holds cache memory, not memory outside `-m`), is in no
//! index or LRU, and the page mover waits for it. Dropping a `Reserved`
//! (the client went away, or sent a bad data chunk) frees it.

use std::sync::Arc;

use crate::engine::SlabEngine;
use crate::ops::{StoreMode, StoreOutcome};
use crate::slabs::ChunkId;
use crate::stats::ThreadStats;

/// An allocated, unlinked item waiting for its value.
pub struct Reserved {
    engine: Arc<SlabEngine>,
    id: ChunkId,
    len: usize,
    flags: u32,
}

/// A value as a store takes it.
pub(crate) enum Src<'v> {
    Bytes(&'v [u8]),
    Item(Reserved),
}

impl Src<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Src::Bytes(b) => b.len(),
            Src::Item(r) => r.len,
        }
    }
}

impl Reserved {
    /// Value bytes the item holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn flags(&self) -> u32 {
        self.flags
    }

    /// Where value byte `offset` goes: the rest of the chunk part holding
    /// it (empty once `offset` reaches the length).
    pub fn unfilled(&mut self, offset: usize) -> &mut [u8] {
        let mut start = 0;
        let mut found: Option<(*mut u8, usize)> = None;
        // SAFETY: the reservation keeps the item allocated, unlinked and
        // this handle's alone until it is stored or dropped, so for as long
        // as `self` is borrowed.
        let raw = unsafe { self.engine.slabs.raw(self.id) };
        self.engine.for_each_value_part_ptr(raw, |p, len| {
            if found.is_none() && offset < start + len {
                let skip = offset - start;
                // SAFETY: `skip < len`, so inside this part of the chunk.
                found = Some((unsafe { p.add(skip) }, len - skip));
            }
            start += len;
        });
        match found {
            // SAFETY: the chunks are this handle's alone (see the module
            // doc) and `&mut self` makes the slice exclusive.
            Some((p, n)) => unsafe { std::slice::from_raw_parts_mut(p, n) },
            None => &mut [],
        }
    }

    /// Calls `f` with the value's parts in order.
    pub fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        // SAFETY: as in `unfilled`; shared borrows of `self` exclude the
        // `&mut` ones `unfilled` writes through.
        let raw = unsafe { self.engine.slabs.raw(self.id) };
        self.engine.for_each_value_part(raw, f);
    }

    /// Hands the filled item to a store, which links or frees it.
    pub(crate) fn into_item(self) -> ChunkId {
        self.engine.count_reserved(self.id, false);
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: read once; `this` is never dropped, so the Arc is moved
        // out exactly once and released here.
        drop(unsafe { std::ptr::read(&this.engine) });
        this.id
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.engine.count_reserved(self.id, false);
        self.engine.free_item(self.id);
    }
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserved")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish()
    }
}

impl SlabEngine {
    /// Allocates the item a `mode` store of `nbytes` under `key` will need,
    /// to be filled through `Reserved::unfilled` and then stored with
    /// `store_reserved` (or `KeySlot::store_reserved`). Fails as `store`
    /// would (`TooLarge`, `OutOfMemory`), and like it drops the key's old
    /// item when a set fails.
    pub fn reserve(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        nbytes: usize,
    ) -> Result<Reserved, StoreOutcome> {
        let failed = |outcome| {
            if mode == StoreMode::Set {
                self.unlink_key(key);
            }
            Err(outcome)
        };
        if key.is_empty() {
            return Err(StoreOutcome::NotStored);
        }
        if !self.item_size_ok(key.len(), flags, nbytes) {
            return failed(StoreOutcome::TooLarge);
        }
        let Some(engine) = self.this.upgrade() else {
            return Err(StoreOutcome::OutOfMemory);
        };
        let exp = self.clock.realtime(exptime);
        let Some((id, _)) = self.alloc_item(key, flags, exp, nbytes) else {
            return failed(StoreOutcome::OutOfMemory);
        };
        self.count_reserved(id, true);
        Ok(Reserved {
            engine,
            id,
            len: nbytes,
            flags,
        })
    }

    /// Counts a reservation's chunks in (or out of) its class.
    fn count_reserved(&self, id: ChunkId, taken: bool) {
        // SAFETY: called by the reservation's owner (`reserve`, `into_item`,
        // drop), which keeps the item allocated and private meanwhile.
        let raw = unsafe { self.slabs.raw(id) };
        let chunks = 1 + if raw.is_chained() {
            u64::from(raw.chain_word(1))
        } else {
            0
        };
        let mut st = self.slabs.classes[self.slabs.class_of(id)].state.lock();
        if taken {
            st.reserved += chunks;
        } else {
            st.reserved -= chunks;
        }
    }

    /// Stores a filled reservation: set/add/replace/cas link it as it is;
    /// append/prepend copy its bytes onto the old value.
    pub fn store_reserved(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: Reserved,
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        self.lock_key(key, ts)
            .store_reserved(mode, value, cas, None)
    }
}
