//! Zero-copy handles: `SegPinned`, a value a reply sends after the key's
//! lock is released, and `SegReserved`, space a storage command's value
//! is read into from the socket before it is linked.
//!
//! A pin counts a reader on the object's segment (`Segment::refs`): the
//! segment may be emptied meanwhile (the key overwritten, deleted,
//! expired, evicted), but it goes back to the free list only when its
//! last pin is dropped, so the pinned bytes stay as they were. A segment
//! being compacted in place refuses pins; the value is copied instead.
//!
//! A reservation is a pending write in its segment: the evictor leaves
//! that segment alone until the reservation is stored or dropped, and a
//! dropped one leaves only garbage bytes in the segment, reclaimed with
//! it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::index::Loc;
use super::object::Obj;
use super::{SegmentEngine, Space};
use crate::ops::{StoreMode, StoreOutcome};
use crate::stats::ThreadStats;

enum Held {
    Seg(Loc),
    Copy(Box<[u8]>),
}

/// An item's value, held for a reply. Dropping it releases it.
pub struct SegPinned {
    engine: Arc<SegmentEngine>,
    held: Held,
    len: usize,
}

impl SegPinned {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn for_each_part<'s>(&'s self, mut f: impl FnMut(&'s [u8])) {
        match &self.held {
            Held::Seg(loc) => {
                // SAFETY: the pin on the segment keeps its memory from
                // reuse, and values are never rewritten in place, so the
                // bytes stay as they were while `self` lives.
                let o = unsafe { Obj::at(self.engine.segs.ptr(*loc)) };
                f(o.value())
            }
            Held::Copy(b) => f(b),
        }
    }
}

impl Drop for SegPinned {
    fn drop(&mut self) {
        if let Held::Seg(loc) = self.held {
            self.engine.segs.unpin(loc.seg);
        }
        self.engine.pinned.fetch_sub(1, Relaxed);
    }
}

impl std::fmt::Debug for SegPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegPinned").field("len", &self.len).finish()
    }
}

/// Space for a value being read from a client.
pub struct SegReserved {
    engine: Arc<SegmentEngine>,
    loc: Loc,
    len: usize,
    flags: u32,
}

impl SegReserved {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn flags(&self) -> u32 {
        self.flags
    }

    fn obj(&self) -> Obj {
        self.engine.obj(self.loc)
    }

    /// Where value byte `offset` goes: the rest of the value.
    pub fn unfilled(&mut self, offset: usize) -> &mut [u8] {
        if offset >= self.len {
            return &mut [];
        }
        // SAFETY: the space is this handle's alone until stored or
        // dropped (a pending write), `offset < len`, and `&mut self`
        // makes the slice exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(self.obj().value_ptr().add(offset), self.len - offset)
        }
    }

    pub fn for_each_part<'s>(&'s self, mut f: impl FnMut(&'s [u8])) {
        f(self.bytes())
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: as in `unfilled`; shared borrows exclude its `&mut` ones.
        unsafe { std::slice::from_raw_parts(self.obj().value_ptr(), self.len) }
    }

    /// Hands the filled space to a store, which links or abandons it.
    pub(crate) fn into_space(self) -> Space {
        let sp = Space {
            loc: self.loc,
            obj: self.obj(),
        };
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the Arc is moved out once.
        drop(unsafe { std::ptr::read(&this.engine) });
        sp
    }
}

impl Drop for SegReserved {
    fn drop(&mut self) {
        self.engine.segs.done(self.loc.seg);
    }
}

impl std::fmt::Debug for SegReserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegReserved")
            .field("loc", &self.loc)
            .field("len", &self.len)
            .finish()
    }
}

impl SegmentEngine {
    /// Pins the linked object at `loc`; the caller holds its shard lock.
    pub(crate) fn pin(&self, loc: Loc, obj: Obj) -> Option<SegPinned> {
        let engine = self.this.upgrade()?;
        let len = obj.nbytes();
        let held = if self.segs.pin(loc.seg) {
            Held::Seg(loc)
        } else {
            Held::Copy(obj.value().into())
        };
        self.pinned.fetch_add(1, Relaxed);
        Some(SegPinned { engine, held, len })
    }

    /// Takes the space a `mode` store of `nbytes` under `key` needs, to be
    /// filled through `SegReserved::unfilled` and stored with
    /// `store_reserved`. Fails as `store` would, and like it drops the
    /// key's old item when a set fails.
    pub fn reserve(
        &self,
        mode: StoreMode,
        key: &[u8],
        flags: u32,
        exptime: i64,
        nbytes: usize,
    ) -> Result<SegReserved, StoreOutcome> {
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
        let Some(sp) = self.alloc(key, flags, exp, nbytes, true) else {
            return failed(StoreOutcome::OutOfMemory);
        };
        Ok(SegReserved {
            engine,
            loc: sp.loc,
            len: nbytes,
            flags,
        })
    }

    pub fn store_reserved(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: SegReserved,
        cas: u64,
        ts: &ThreadStats,
    ) -> StoreOutcome {
        self.lock_key(key, ts)
            .store_reserved(mode, value, cas, None)
    }
}
