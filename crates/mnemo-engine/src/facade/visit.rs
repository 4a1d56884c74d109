//! Reads monomorphized per engine: a [`GetVisitor`] handed to
//! [`Engine::get_visit`] runs on the engine's own item view, so the code
//! writing a reply is compiled once per engine and sees no facade match
//! (a closure over the facade's `ItemRef` is one body shared by every
//! engine's arm: LLVM leaves it out of line and each accessor in it
//! matches on the engine again, ~50 instructions a text get).

use super::{Engine, Imp, ItemRef, Pinned};
use crate::facade::dispatch;
// As in mod.rs: an engine's method may exist only through its trait.
#[allow(unused_imports)]
use crate::iface::{CacheEngine, ItemView};
use crate::ops::GetMode;
use crate::stats::ThreadStats;

/// An item view of one of the facade's engines (or the facade's own),
/// whose pin the server can queue whatever the engine.
pub trait EngineItem: ItemView {
    /// `ItemView::pin` as the facade's `Pinned`.
    fn pin_any(&self) -> Option<Pinned>;
}

impl EngineItem for crate::item::ItemRef<'_> {
    #[inline]
    fn pin_any(&self) -> Option<Pinned> {
        self.pin().map(Pinned::Slab)
    }
}

impl EngineItem for crate::segment::SegItem<'_> {
    #[inline]
    fn pin_any(&self) -> Option<Pinned> {
        self.pin().map(Pinned::Segment)
    }
}

impl EngineItem for ItemRef<'_> {
    #[inline]
    fn pin_any(&self) -> Option<Pinned> {
        ItemRef::pin(self)
    }
}

/// What a read does with the item it finds, for any engine's view.
pub trait GetVisitor {
    type Output;
    fn visit<I: EngineItem>(self, it: &I) -> Self::Output;
}

impl Engine {
    /// `get` with `v` run on the engine's own item view (see the module
    /// doc): same locking, counting and `None` on a miss.
    #[inline]
    pub fn get_visit<V: GetVisitor>(
        &self,
        key: &[u8],
        mode: GetMode,
        ts: &ThreadStats,
        v: V,
    ) -> Option<V::Output> {
        dispatch!(Imp, &self.imp, e => e.get(key, mode, ts, |it| v.visit(it)))
    }
}
