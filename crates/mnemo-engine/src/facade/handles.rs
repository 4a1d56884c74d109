//! The facade's handle types: what the server gets back from an engine
//! call (a held key, an item view, a pinned value, a reservation), each
//! an enum with one variant per engine, dispatched like `Engine`.

use crate::facade::dispatch;
// As in mod.rs: lets an engine's handle implement a method only through
// its trait.
#[allow(unused_imports)]
use crate::iface::{ItemView, KeySlotOps, PinnedValue, ReservedValue};
use crate::ops::{ArithOutcome, StoreMode, StoreOutcome};

/// An item seen while its key is held (see `iface::ItemView`).
#[derive(Clone, Copy)]
pub enum ItemRef<'a> {
    Slab(crate::item::ItemRef<'a>),
    Segment(crate::segment::SegItem<'a>),
}

/// A key held for a compound step (see `iface::KeySlotOps`).
pub enum KeySlot<'a> {
    Slab(crate::slot::KeySlot<'a>),
    Segment(crate::segment::SegSlot<'a>),
}

/// A value held for a reply (see `iface::PinnedValue`).
#[derive(Debug)]
pub enum Pinned {
    Slab(crate::pin::Pinned),
    Segment(crate::segment::SegPinned),
}

/// Room for a value being read (see `iface::ReservedValue`).
#[derive(Debug)]
pub enum Reserved {
    Slab(crate::reserve::Reserved),
    Segment(crate::segment::SegReserved),
}

/// `From` an engine's handle to the facade's, used by the dispatch
/// bodies to wrap what an engine returns, whichever engine it is.
macro_rules! facade_from {
    ($V:ident: $from:ty => $to:ty) => {
        impl<'a> From<$from> for $to {
            #[inline]
            fn from(x: $from) -> $to {
                <$to>::$V(x)
            }
        }
    };
}
facade_from!(Slab: crate::item::ItemRef<'a> => ItemRef<'a>);
facade_from!(Slab: crate::slot::KeySlot<'a> => KeySlot<'a>);
facade_from!(Slab: crate::pin::Pinned => Pinned);
facade_from!(Slab: crate::reserve::Reserved => Reserved);
facade_from!(Segment: crate::segment::SegItem<'a> => ItemRef<'a>);
facade_from!(Segment: crate::segment::SegSlot<'a> => KeySlot<'a>);
facade_from!(Segment: crate::segment::SegPinned => Pinned);
facade_from!(Segment: crate::segment::SegReserved => Reserved);

impl ItemRef<'_> {
    #[inline]
    pub fn key(&self) -> &[u8] {
        dispatch!(ItemRef, self, it => it.key())
    }
    #[inline]
    pub fn flags(&self) -> u32 {
        dispatch!(ItemRef, self, it => it.flags())
    }
    #[inline]
    pub fn cas(&self) -> u64 {
        dispatch!(ItemRef, self, it => it.cas())
    }
    #[inline]
    pub fn value_len(&self) -> usize {
        dispatch!(ItemRef, self, it => it.value_len())
    }
    /// Relative expiry time, 0 for never.
    #[inline]
    pub fn exptime(&self) -> u32 {
        dispatch!(ItemRef, self, it => it.exptime())
    }
    /// Relative time of the last access before this one.
    #[inline]
    pub fn last_access(&self) -> u32 {
        dispatch!(ItemRef, self, it => it.last_access())
    }
    /// Whether the item had been read before this read.
    #[inline]
    pub fn fetched(&self) -> bool {
        dispatch!(ItemRef, self, it => it.fetched())
    }
    #[inline]
    pub fn class_id(&self) -> u32 {
        dispatch!(ItemRef, self, it => it.class_id())
    }
    #[inline]
    pub fn stale(&self) -> bool {
        dispatch!(ItemRef, self, it => it.stale())
    }
    #[inline]
    pub fn key_binary(&self) -> bool {
        dispatch!(ItemRef, self, it => it.key_binary())
    }
    #[inline]
    pub fn win_sent(&self) -> bool {
        dispatch!(ItemRef, self, it => it.win_sent())
    }
    #[inline]
    pub fn write_value(&self, out: &mut Vec<u8>) {
        dispatch!(ItemRef, self, it => it.write_value(out))
    }
    #[inline]
    pub fn for_each_value_part(&self, f: impl FnMut(&[u8])) {
        dispatch!(ItemRef, self, it => it.for_each_value_part(f))
    }
    /// Holds the value for a reply written after the key is released;
    /// `None` only while the engine is being torn down.
    #[inline]
    pub fn pin(&self) -> Option<Pinned> {
        dispatch!(ItemRef, self, it => it.pin().map(Pinned::from))
    }
}

impl KeySlot<'_> {
    #[inline]
    pub fn exists(&self) -> bool {
        dispatch!(KeySlot, self, s => s.exists())
    }
    /// The item as it is now (before any bump this slot makes).
    #[inline]
    pub fn item(&self) -> Option<ItemRef<'_>> {
        dispatch!(KeySlot, self, s => s.item().map(ItemRef::from))
    }
    #[inline]
    pub fn now(&self) -> u32 {
        dispatch!(KeySlot, self, s => s.now())
    }
    #[inline]
    pub fn count_get(&self) {
        dispatch!(KeySlot, self, s => s.count_get())
    }
    #[inline]
    pub fn count_touch(&self) {
        dispatch!(KeySlot, self, s => s.count_touch())
    }
    #[inline]
    pub fn bump(&self) {
        dispatch!(KeySlot, self, s => s.bump())
    }
    #[inline]
    pub fn set_exptime(&self, exptime: i64) {
        dispatch!(KeySlot, self, s => s.set_exptime(exptime))
    }
    #[inline]
    pub fn set_stale(&self, on: bool) {
        dispatch!(KeySlot, self, s => s.set_stale(on))
    }
    #[inline]
    pub fn set_win_sent(&self, on: bool) {
        dispatch!(KeySlot, self, s => s.set_win_sent(on))
    }
    #[inline]
    pub fn set_cas(&self, cas: u64) {
        dispatch!(KeySlot, self, s => s.set_cas(cas))
    }
    #[inline]
    pub fn next_cas(&self) -> u64 {
        dispatch!(KeySlot, self, s => s.next_cas())
    }
    #[inline]
    pub fn store(
        &mut self,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        value: &[u8],
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        dispatch!(KeySlot, self, s => s.store(mode, flags, exptime, value, cas, new_cas))
    }
    /// A reservation from another engine is dropped (freed) and answers
    /// `NotStored`; one process has one engine, so only a programming
    /// error could get there.
    #[inline]
    pub fn store_reserved(
        &mut self,
        mode: StoreMode,
        value: Reserved,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        #[allow(unreachable_patterns)]
        match (self, value) {
            (KeySlot::Slab(s), Reserved::Slab(r)) => s.store_reserved(mode, r, cas, new_cas),
            (KeySlot::Segment(s), Reserved::Segment(r)) => s.store_reserved(mode, r, cas, new_cas),
            _ => StoreOutcome::NotStored,
        }
    }
    #[inline]
    pub fn vivify(&mut self, flags: u32, exptime: i64, new_cas: Option<u64>) -> StoreOutcome {
        dispatch!(KeySlot, self, s => s.vivify(flags, exptime, new_cas))
    }
    #[inline]
    pub fn set_key_binary(&self, on: bool) {
        dispatch!(KeySlot, self, s => s.set_key_binary(on))
    }
    #[inline]
    pub fn count_delete_miss(&self) {
        dispatch!(KeySlot, self, s => s.count_delete_miss())
    }
    #[inline]
    pub fn delete(&mut self) -> bool {
        dispatch!(KeySlot, self, s => s.delete())
    }
    #[inline]
    pub fn arith(&mut self, incr: bool, delta: u64, new_cas: Option<u64>) -> ArithOutcome {
        dispatch!(KeySlot, self, s => s.arith(incr, delta, new_cas))
    }
}

impl Pinned {
    #[inline]
    pub fn len(&self) -> usize {
        dispatch!(Pinned, self, p => p.len())
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        dispatch!(Pinned, self, p => p.for_each_part(f))
    }
}

impl Reserved {
    #[inline]
    pub fn len(&self) -> usize {
        dispatch!(Reserved, self, r => r.len())
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn unfilled(&mut self, offset: usize) -> &mut [u8] {
        dispatch!(Reserved, self, r => r.unfilled(offset))
    }
    #[inline]
    pub fn for_each_part<'s>(&'s self, f: impl FnMut(&'s [u8])) {
        dispatch!(Reserved, self, r => r.for_each_part(f))
    }
}
