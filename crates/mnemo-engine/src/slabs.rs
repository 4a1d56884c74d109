//! The slab allocator: memory taken in pages, each page given to one size
//! class and cut into equal chunks.
//!
//! Pages are counted against the memory limit and exceed it only by
//! classes' first pages, which memcached grants past the limit. A page no
//! class uses any more (after a shrink of `cache_memlimit` or a page move)
//! goes back to the system while over the limit, else to the global page
//! pool, where classes look first for a new page. Free chunks
//! of a class form a doubly linked list through the chunks' own LRU words,
//! so the page mover can take a page's free chunks out in O(chunks).

use std::alloc::{alloc, dealloc, Layout as AllocLayout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::arena::Arena;
use crate::item::{Layout, Raw, Seg, RESERVED};
use crate::stats::ItemCounters;

mod restore;
pub(crate) use restore::SavedPage;

/// Page ids must fit the 16 bits left above the chunk index, below ChunkId::NIL.
pub const MAX_PAGES: usize = (ChunkId::NIL.0 >> PAGE_SHIFT) as usize;
/// memcached's MAX_NUMBER_OF_SLAB_CLASSES is 64, ids 1..=63.
pub const MAX_CLASSES: usize = 64;
/// No chunk smaller than this: keeps chunk indexes within 15 bits at 1 MB pages.
const MIN_CHUNK: usize = 32;
const ALIGN: usize = 8;

/// Bits of a chunk id below the page index: the chunk's index in its page.
const PAGE_SHIFT: u32 = 15;
const CHUNK_MASK: u32 = (1 << PAGE_SHIFT) - 1;

/// A chunk of slab memory: page index in the high bits, chunk index
/// within the page low, 31 bits in all (item headers keep a segment bit
/// beside each link).
///
/// Only the allocator makes ids, when it carves a page (and the mover,
/// which walks a page's chunks through it), so an id names a chunk that
/// was carved. It is stored as a plain `u32` word in item headers, chain
/// tables and index slots, and read back only from there
/// ([`ChunkId::from_word`]). Whether the chunk still holds the item the
/// holder thinks it does is not the id's business: that is what the
/// locks, pins and reservations are for (see `Raw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub(crate) struct ChunkId(u32);

impl ChunkId {
    /// No chunk: the end of a list. Its page index is past the page table.
    pub const NIL: ChunkId = ChunkId(0x7FFF_FFFF);

    /// The id of chunk `idx` of page `page`.
    fn new(page: u32, idx: u32) -> ChunkId {
        debug_assert!((page as usize) < MAX_PAGES && idx <= CHUNK_MASK);
        ChunkId((page << PAGE_SHIFT) | idx)
    }

    /// The word stored for this id in headers, chain tables and index slots.
    #[inline]
    pub fn to_word(self) -> u32 {
        self.0
    }

    /// The id a stored word holds.
    ///
    /// # Safety
    /// `w` must have been produced by [`ChunkId::to_word`] (read back from
    /// an item's link word, a chain table or an index slot that was written
    /// with an id), so that it names a carved chunk or is `NIL`.
    #[inline]
    pub unsafe fn from_word(w: u32) -> ChunkId {
        ChunkId(w)
    }

    /// Index of the page holding this chunk.
    #[inline]
    pub fn page(self) -> u32 {
        self.0 >> PAGE_SHIFT
    }

    #[inline]
    fn index(self) -> usize {
        (self.0 & CHUNK_MASK) as usize
    }
}

impl std::fmt::LowerHex for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::LowerHex::fmt(&self.0, f)
    }
}

/// One class, as `-vv` and `stats slabs` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabClassInfo {
    pub id: u32,
    pub chunk_size: u32,
    pub perslab: u32,
}

pub(crate) struct PageSlot {
    base: AtomicPtr<u8>,
    chunk_size: AtomicU32,
    class: AtomicU8,
    /// Set while the page mover empties this page: chunks freed in it
    /// stay off the free list. Changed only under the class lock.
    draining: AtomicBool,
}

/// Doubly linked list of items in one LRU segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct List {
    pub head: ChunkId,
    pub tail: ChunkId,
    pub count: u64,
    pub bytes: u64,
}

impl List {
    const EMPTY: List = List {
        head: ChunkId::NIL,
        tail: ChunkId::NIL,
        count: 0,
        bytes: 0,
    };
}

/// What a class lock protects.
pub(crate) struct ClassState {
    pub free_head: ChunkId,
    pub free_count: u64,
    pub pages: Vec<u32>,
    pub lru: [List; 4],
    /// Sum of the bytes items in this class asked for.
    pub requested: u64,
    /// Item events, as `stats items` reports them.
    pub c: ItemCounters,
    /// Evictions seen by the automover at its last look.
    pub automove_seen_evictions: u64,
    /// Items of this class whose value a reply still references (see
    /// `crate::pin`); empty unless large values are in flight.
    pub pins: std::collections::HashMap<ChunkId, Pin>,
    /// Chunks held by reservations (`crate::reserve`) still being filled.
    pub reserved: u64,
}

/// How an item is held beyond its key's lock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pin {
    /// Outstanding `Pinned` handles.
    pub count: u32,
    /// The item was unlinked meanwhile: its chunks go back to the free
    /// list when the last handle is dropped.
    pub unlinked: bool,
}

impl ClassState {
    pub fn items(&self) -> u64 {
        self.lru.iter().map(|l| l.count).sum()
    }
}

pub(crate) struct SlabClass {
    pub id: u32,
    pub size: usize,
    pub perslab: usize,
    pub state: Mutex<ClassState>,
}

pub(crate) struct PagePool {
    /// Pages currently allocated from the system.
    pub allocated: usize,
    /// The most pages the memory limit allows.
    pub limit: usize,
    /// Allocated pages no class owns: memcached's global page pool (its
    /// slab class 0), which classes draw on before allocating.
    pub spare: Vec<u32>,
    /// Page-table slots with no memory behind them.
    pub free_slots: Vec<u32>,
    /// Slots never used yet start here.
    pub next_slot: u32,
    /// Arena bytes handed out so far (pages are carved in order).
    pub arena_next: usize,
    /// Offsets of arena pages given back, for reuse.
    pub arena_free: Vec<usize>,
}

pub(crate) struct Slabs {
    pub layout: Layout,
    pub page_size: usize,
    pub classes: Vec<SlabClass>,
    table: Box<[PageSlot]>,
    pub pool: Mutex<PagePool>,
    pub total_malloced: AtomicU64,
    pub malloc_fails: AtomicU64,
    arena: Arena,
}

// SAFETY: the only non-Send field is the arena's base pointer (a mapping
// this value owns and unmaps on drop); page pointers live in atomics. A
// Slabs may be dropped on any thread.
unsafe impl Send for Slabs {}
// SAFETY: shared access to pages goes through atomics (the page table,
// item header words) or through `Slabs::raw`, whose callers hold the shard
// or class lock the chunk's fields need; the page pool and class states
// are behind mutexes.
unsafe impl Sync for Slabs {}

/// The page table, allocated zeroed: the kernel hands out zero pages
/// lazily, so the 1.5 MB table costs RSS only for the slots in use.
fn zeroed_table(n: usize) -> Box<[PageSlot]> {
    let layout = AllocLayout::array::<PageSlot>(n).expect("page table layout");
    // SAFETY: every field of PageSlot (atomic pointer, integers, bool) is
    // valid all-zero: a null pointer, 0, false. The allocation has the
    // array's layout, so Box may free it.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut PageSlot;
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
    }
}

/// Chunk sizes from the smallest to the largest, as memcached grows them.
pub(crate) fn class_sizes(
    layout: Layout,
    chunk_size: usize,
    factor: f64,
    chunk_max: usize,
) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut size = (layout.header() + chunk_size).max(MIN_CHUNK);
    while sizes.len() < MAX_CLASSES - 2 && (size as f64) * factor < chunk_max as f64 {
        if !size.is_multiple_of(ALIGN) {
            size += ALIGN - size % ALIGN;
        }
        if size >= chunk_max {
            break;
        }
        sizes.push(size);
        size = (size as f64 * factor) as usize;
    }
    sizes.push(chunk_max);
    sizes
}

impl Slabs {
    pub fn new(
        layout: Layout,
        page_size: usize,
        factor: f64,
        chunk_size: usize,
        chunk_max: usize,
        mem_limit: usize,
        huge_pages: bool,
    ) -> Slabs {
        let sizes = class_sizes(layout, chunk_size, factor, chunk_max);
        let classes = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| SlabClass {
                id: i as u32 + 1,
                size,
                perslab: page_size / size,
                state: Mutex::new(ClassState {
                    pins: std::collections::HashMap::new(),
                    reserved: 0,
                    free_head: ChunkId::NIL,
                    free_count: 0,
                    pages: Vec::new(),
                    lru: [List::EMPTY; 4],
                    requested: 0,
                    c: ItemCounters::default(),
                    automove_seen_evictions: 0,
                }),
            })
            .collect();
        let table = zeroed_table(MAX_PAGES);
        Slabs {
            layout,
            page_size,
            classes,
            table,
            pool: Mutex::new(PagePool {
                allocated: 0,
                limit: (mem_limit / page_size).max(1),
                spare: Vec::new(),
                free_slots: Vec::new(),
                next_slot: 0,
                arena_next: 0,
                arena_free: Vec::new(),
            }),
            total_malloced: AtomicU64::new(0),
            malloc_fails: AtomicU64::new(0),
            arena: if huge_pages {
                Arena::new((mem_limit / page_size).max(1).saturating_mul(page_size))
            } else {
                Arena::none()
            },
        }
    }

    pub fn info(&self) -> Vec<SlabClassInfo> {
        self.classes
            .iter()
            .map(|c| SlabClassInfo {
                id: c.id,
                chunk_size: c.size as u32,
                perslab: c.perslab as u32,
            })
            .collect()
    }

    /// The class (index into `classes`) whose chunks fit `size`, if any.
    pub fn class_for(&self, size: usize) -> Option<usize> {
        // Few classes: a linear scan beats a binary search's branches.
        self.classes.iter().position(|c| c.size >= size)
    }

    pub fn largest(&self) -> usize {
        self.classes.len() - 1
    }

    /// Address of chunk `id`.
    ///
    /// # Safety
    /// `id`'s page is allocated (owned by a class, or being drained or
    /// carved by the caller), so the address is inside it.
    #[inline]
    unsafe fn chunk_ptr(&self, id: ChunkId) -> NonNull<u8> {
        let slot = &self.table[id.page() as usize];
        let base = slot.base.load(Relaxed);
        let size = slot.chunk_size.load(Relaxed) as usize;
        debug_assert!(!base.is_null(), "chunk {id:#x} in a freed page");
        // SAFETY: the page is allocated (the contract), so `base` is not
        // null and chunk index * chunk size stays inside it: ChunkId::new
        // made the id for a page of this chunk size.
        unsafe { NonNull::new_unchecked(base.add(id.index() * size)) }
    }

    /// A view of chunk `id`, for no longer than `self` is borrowed.
    ///
    /// # Safety
    /// As [`Raw::new`]: for as long as the view is used, `id`'s page stays
    /// allocated and the caller holds the lock (shard lock of the item's
    /// key with the item linked, or the class lock of the page's class),
    /// pin or reservation that the fields it touches need.
    #[inline]
    pub unsafe fn raw(&self, id: ChunkId) -> Raw<'_> {
        // SAFETY: the caller's contract is `chunk_ptr`'s and `Raw::new`'s.
        unsafe { Raw::new(self.chunk_ptr(id), self.layout) }
    }

    /// As [`Slabs::raw`], for no longer than `held` (the guard of the lock
    /// that keeps the item) is borrowed, so the view cannot outlive it.
    ///
    /// # Safety
    /// As [`Slabs::raw`], with `held` that lock's guard.
    #[inline]
    pub unsafe fn raw_held<'g, G: ?Sized>(&'g self, id: ChunkId, held: &'g G) -> Raw<'g> {
        let _ = held;
        // SAFETY: the caller's contract, for the guard's borrow.
        unsafe { self.raw(id) }
    }

    /// Further chunk `i` of the chained item `head`, valid as long as the
    /// head's view: a chain's chunks are allocated and freed with its head.
    #[inline]
    pub fn chain_chunk<'g>(&self, head: Raw<'g>, i: usize) -> Raw<'g> {
        debug_assert!(head.is_chained() && i < head.chain_len());
        // SAFETY: the chain table holds ids of chunks allocated with the
        // head and freed only with it (`SlabEngine::free_item_locked`), so they
        // are allocated while `head`'s view is valid ('g), under the same
        // lock, pin or reservation.
        unsafe { Raw::new(self.chunk_ptr(head.chain_id(i)), self.layout) }
    }

    /// The class index of the page holding `id`.
    #[inline]
    pub fn class_of(&self, id: ChunkId) -> usize {
        self.class_of_page(id.page())
    }

    /// The class index of `page` (`u8::MAX` while it belongs to none).
    #[inline]
    pub fn class_of_page(&self, page: u32) -> usize {
        self.table[page as usize].class.load(Relaxed) as usize
    }

    fn alloc_layout(&self) -> AllocLayout {
        // page_size is a validated power-of-two-ish size; 4096 alignment
        // keeps pages off each other's cache lines and huge-page friendly.
        AllocLayout::from_size_align(self.page_size, 4096).expect("valid page layout")
    }

    /// Memory for a new page: from the arena while it has room, else
    /// from the allocator. Null when neither has any.
    fn page_alloc(&self, pool: &mut PagePool) -> *mut u8 {
        if let Some(off) = pool.arena_free.pop() {
            return self.arena.at(off);
        }
        if pool.arena_next + self.page_size <= self.arena.len() {
            let off = pool.arena_next;
            pool.arena_next += self.page_size;
            return self.arena.at(off);
        }
        // A page outside the memory file would not survive a restart; as
        // memcached's preallocated memory, the file is all there is.
        if self.arena.is_file() {
            return std::ptr::null_mut();
        }
        // SAFETY: the layout has a non-zero size (page_size, validated by
        // Config); a null result is handled by the caller.
        unsafe { alloc(self.alloc_layout()) }
    }

    /// Returns a page's memory to where `page_alloc` got it.
    fn page_free(&self, pool: &mut PagePool, mem: *mut u8) {
        match self.arena.offset_of(mem) {
            Some(off) => {
                self.arena.discard(off, self.page_size);
                pool.arena_free.push(off);
            }
            // SAFETY: not an arena page, so it came from `alloc` with this
            // layout, and the caller took it out of the table.
            None => unsafe { dealloc(mem, self.alloc_layout()) },
        }
    }

    /// Takes a page for a class: one from the global pool, else a new one
    /// while under the limit. A class's first page (`first`) is allocated
    /// even past the limit, as memcached's `do_slabs_newslab` does, so a
    /// size never seen before can be stored on a full cache without taking
    /// a page from another class on the request path.
    pub fn take_page(&self, first: bool) -> Option<u32> {
        let mut pool = self.pool.lock();
        if let Some(p) = pool.spare.pop() {
            return Some(p);
        }
        if pool.allocated >= pool.limit && !first {
            return None;
        }
        let slot = match pool.free_slots.pop() {
            Some(s) => s,
            None if (pool.next_slot as usize) < MAX_PAGES => {
                pool.next_slot += 1;
                pool.next_slot - 1
            }
            None => return None,
        };
        let mem = self.page_alloc(&mut pool);
        if mem.is_null() {
            pool.free_slots.push(slot);
            self.malloc_fails.fetch_add(1, Relaxed);
            return None;
        }
        pool.allocated += 1;
        self.total_malloced
            .fetch_add(self.page_size as u64, Relaxed);
        self.table[slot as usize].base.store(mem, Relaxed);
        Some(slot)
    }

    /// Gives a page no class owns back: to the spare list, or to the
    /// system when the pool is over its (possibly lowered) limit.
    pub fn release_page(&self, page: u32) {
        let mut pool = self.pool.lock();
        if pool.allocated > pool.limit {
            let slot = &self.table[page as usize];
            let mem = slot.base.swap(std::ptr::null_mut(), Relaxed);
            slot.chunk_size.store(0, Relaxed);
            self.page_free(&mut pool, mem);
            pool.allocated -= 1;
            self.total_malloced
                .fetch_sub(self.page_size as u64, Relaxed);
            pool.free_slots.push(page);
        } else {
            pool.spare.push(page);
        }
    }

    /// Pages in the global pool (`slab_global_page_pool`).
    pub fn pool_pages(&self) -> usize {
        self.pool.lock().spare.len()
    }

    /// A page out of the global pool, for `slabs reassign 0 <dst>`.
    pub fn take_pool_page(&self) -> Option<u32> {
        self.pool.lock().spare.pop()
    }

    /// Frees spare pages while the pool is over its limit.
    pub fn trim_spare(&self) {
        let mut pool = self.pool.lock();
        while pool.allocated > pool.limit {
            let Some(page) = pool.spare.pop() else { break };
            let slot = &self.table[page as usize];
            let mem = slot.base.swap(std::ptr::null_mut(), Relaxed);
            self.page_free(&mut pool, mem);
            pool.allocated -= 1;
            self.total_malloced
                .fetch_sub(self.page_size as u64, Relaxed);
            pool.free_slots.push(page);
        }
    }

    pub fn is_draining(&self, page: u32) -> bool {
        self.table[page as usize].draining.load(Relaxed)
    }

    /// Starts or ends the mover's emptying of `page` (class lock held).
    /// Starting takes the page's free chunks off the free list; ending
    /// early puts the page's unused chunks back on it.
    pub fn set_draining(&self, ci: usize, st: &mut ClassState, page: u32, on: bool) {
        if on {
            for id in self.chunk_ids(ci, page) {
                // SAFETY: `id` is a chunk of `page`, a page of class `ci` whose lock
                // (`st`) is held; the mover owns the page while it drains.
                if unsafe { self.raw(id) }.meta() == 0 {
                    self.free_unlink(st, id);
                }
            }
            self.table[page as usize].draining.store(true, Relaxed);
        } else {
            self.table[page as usize].draining.store(false, Relaxed);
            for id in self.chunk_ids(ci, page) {
                // SAFETY: as above: a chunk of `page`, class lock held.
                if unsafe { self.raw(id) }.meta() == 0 {
                    self.free_push(st, id);
                }
            }
        }
    }

    /// Marks a page as belonging to no class (before it is released).
    pub fn set_page_unowned(&self, page: u32) {
        self.table[page as usize].class.store(u8::MAX, Relaxed);
    }

    /// Cuts `page` into chunks of class `ci` and puts them on its free list.
    pub fn carve(&self, ci: usize, st: &mut ClassState, page: u32) {
        let class = &self.classes[ci];
        let slot = &self.table[page as usize];
        slot.chunk_size.store(class.size as u32, Relaxed);
        slot.class.store(ci as u8, Relaxed);
        slot.draining.store(false, Relaxed);
        st.pages.push(page);
        // Pushed in reverse so chunks are handed out in address order.
        for idx in (0..class.perslab as u32).rev() {
            let id = ChunkId::new(page, idx);
            // SAFETY: `page` was just taken for class `ci` (allocated, ours) and
            // its class lock (`st`) is held.
            let raw = unsafe { self.raw(id) };
            raw.set_meta(0);
            self.free_push(st, id);
        }
    }

    pub fn free_push(&self, st: &mut ClassState, id: ChunkId) {
        // SAFETY: `id` is a chunk of this class (freed by its holder, or carved),
        // and its class lock (`st`) is held.
        let raw = unsafe { self.raw(id) };
        raw.set_meta(0);
        if self.is_draining(id.page()) {
            return;
        }
        raw.set_seg(Seg::Hot);
        raw.set_prev(ChunkId::NIL);
        raw.set_next(st.free_head);
        if st.free_head != ChunkId::NIL {
            // SAFETY: the free list's head is a free chunk of this class, class lock held.
            unsafe { self.raw(st.free_head) }.set_prev(id);
        }
        st.free_head = id;
        st.free_count += 1;
    }

    pub fn free_pop(&self, st: &mut ClassState) -> Option<ChunkId> {
        let id = st.free_head;
        if id == ChunkId::NIL {
            return None;
        }
        // SAFETY: the free list's head, a free chunk of this class; class lock held.
        let raw = unsafe { self.raw(id) };
        let next = raw.next();
        if next != ChunkId::NIL {
            // SAFETY: the next free chunk of this class, class lock held.
            unsafe { self.raw(next) }.set_prev(ChunkId::NIL);
        }
        st.free_head = next;
        st.free_count -= 1;
        raw.set_prev(ChunkId::NIL);
        raw.set_next(ChunkId::NIL);
        raw.set_meta(RESERVED);
        Some(id)
    }

    /// Takes one specific free chunk off the free list (page mover).
    pub fn free_unlink(&self, st: &mut ClassState, id: ChunkId) {
        // SAFETY: a free chunk of this class (the mover's draining page), class
        // lock held.
        let raw = unsafe { self.raw(id) };
        let (prev, next) = (raw.prev(), raw.next());
        if prev != ChunkId::NIL {
            // SAFETY: its free-list neighbour, same class, class lock held.
            unsafe { self.raw(prev) }.set_next(next);
        } else {
            st.free_head = next;
        }
        if next != ChunkId::NIL {
            // SAFETY: its free-list neighbour, same class, class lock held.
            unsafe { self.raw(next) }.set_prev(prev);
        }
        st.free_count -= 1;
    }

    /// Number of chunks in a page of class `ci`.
    pub fn chunk_ids(&self, ci: usize, page: u32) -> impl Iterator<Item = ChunkId> {
        let n = self.classes[ci].perslab as u32;
        (0..n).map(move |i| ChunkId::new(page, i))
    }
}

impl Drop for Slabs {
    fn drop(&mut self) {
        let layout = self.alloc_layout();
        for slot in self.table.iter() {
            let mem = slot.base.swap(std::ptr::null_mut(), Relaxed);
            if !mem.is_null() && self.arena.offset_of(mem).is_none() {
                // SAFETY: allocated with this layout and not freed before;
                // arena pages go with the arena's mapping.
                unsafe { dealloc(mem, layout) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_grow_by_factor_and_end_at_chunk_max() {
        let l = Layout::new(true);
        let s = class_sizes(l, 48, 1.25, 512 * 1024);
        assert_eq!(s[0], 80); // 28 + 48 rounded up to 8
        for w in s.windows(2) {
            assert!(w[1] > w[0]);
            assert_eq!(w[0] % 8, 0);
        }
        assert_eq!(*s.last().unwrap(), 512 * 1024);
        assert!(s.len() < MAX_CLASSES);
    }

    /// Typed ids cost nothing: a ChunkId is the u32 word headers, chain
    /// tables and index slots store, and the header stays 28 bytes with
    /// CAS (20 without), so items per MB do not change.
    #[test]
    fn chunk_ids_and_headers_keep_their_size() {
        assert_eq!(std::mem::size_of::<ChunkId>(), 4);
        assert_eq!(std::mem::size_of::<List>(), 24);
        assert_eq!(Layout::new(true).header(), 28);
        assert_eq!(Layout::new(false).header(), 20);
        assert_eq!(Layout::new(true).item_size(10, 0, 10), 48);
    }

    #[test]
    fn pages_never_exceed_the_limit() {
        let l = Layout::new(true);
        let s = Slabs::new(l, 1 << 20, 1.25, 48, 1 << 19, 3 << 20, false);
        let got: Vec<_> = (0..10).filter_map(|_| s.take_page(false)).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(s.total_malloced.load(Relaxed), 3 << 20);
    }

    /// memcached's do_slabs_newslab: past the limit a class still gets its
    /// first page, and pages given back while over the limit are freed,
    /// not pooled, until the total is back at the limit.
    #[test]
    fn first_pages_go_past_the_limit_and_come_back_first() {
        let l = Layout::new(true);
        let mb = 1 << 20;
        let s = Slabs::new(l, mb, 1.25, 48, 1 << 19, 2 * mb, false);
        let a = s.take_page(false).expect("page");
        let b = s.take_page(false).expect("page");
        assert!(s.take_page(false).is_none());
        let first = s.take_page(true).expect("a class's first page");
        assert_eq!(s.total_malloced.load(Relaxed), 3 * mb as u64);
        s.release_page(a);
        assert_eq!(
            (s.pool_pages(), s.total_malloced.load(Relaxed)),
            (0, 2 * mb as u64)
        );
        s.release_page(b);
        assert_eq!(
            (s.pool_pages(), s.total_malloced.load(Relaxed)),
            (1, 2 * mb as u64)
        );
        // The pool serves before the limit is looked at.
        assert_eq!(s.take_page(false), Some(b));
        assert!(s.take_pool_page().is_none());
        let _ = first;
    }

    fn base(s: &Slabs, page: u32) -> usize {
        s.table[page as usize].base.load(Relaxed) as usize
    }

    #[test]
    fn pages_come_from_the_arena_in_order_and_are_reused() {
        let l = Layout::new(true);
        let mb = 1 << 20;
        let s = Slabs::new(l, mb, 1.25, 48, 1 << 19, 4 * mb, true);
        let pages: Vec<u32> = (0..4).map(|_| s.take_page(false).expect("page")).collect();
        // Consecutive and huge-page aligned from the first.
        assert_eq!(base(&s, pages[0]) % (2 * mb), 0);
        for w in pages.windows(2) {
            assert_eq!(base(&s, w[1]), base(&s, w[0]) + mb);
        }
        // Written pages given back to the system read as zeros when the
        // same memory is handed out again.
        let second = base(&s, pages[1]);
        // SAFETY: a page we own, inside the arena.
        unsafe { (second as *mut u8).write(0xAB) };
        s.pool.lock().limit = 2;
        s.release_page(pages[1]);
        assert_eq!(s.total_malloced.load(Relaxed), 3 * mb as u64);
        s.pool.lock().limit = 4;
        let again = s.take_page(false).expect("page");
        assert_eq!(base(&s, again), second);
        // SAFETY: the page was handed out again, so it is mapped and ours.
        assert_eq!(unsafe { (second as *const u8).read() }, 0);
    }

    #[test]
    fn without_huge_pages_every_page_comes_from_the_allocator() {
        let l = Layout::new(true);
        let mb = 1 << 20;
        let s = Slabs::new(l, mb, 1.25, 48, 1 << 19, 4 * mb, false);
        assert_eq!(s.arena.len(), 0);
        let pages: Vec<u32> = (0..4).map(|_| s.take_page(false).expect("page")).collect();
        for &p in &pages {
            assert!(s.arena.offset_of(base(&s, p) as *mut u8).is_none());
        }
        s.pool.lock().limit = 0;
        for p in pages {
            s.release_page(p);
        }
        assert_eq!(s.total_malloced.load(Relaxed), 0);
    }

    #[test]
    fn pages_past_the_arena_come_from_the_allocator() {
        let l = Layout::new(true);
        let mb = 1 << 20;
        // The limit raised at run time (cache_memlimit) past the arena
        // reserved at start.
        let s = Slabs::new(l, mb, 1.25, 48, 1 << 19, 2 * mb, true);
        s.pool.lock().limit = 5;
        let pages: Vec<u32> = (0..5).map(|_| s.take_page(false).expect("page")).collect();
        let arena = base(&s, pages[0])..base(&s, pages[0]) + 2 * mb;
        assert!(arena.contains(&base(&s, pages[1])));
        for &p in &pages[2..] {
            assert!(!arena.contains(&base(&s, p)), "page {p} inside the arena");
        }
        // Both kinds go back to the system when the limit drops.
        s.pool.lock().limit = 0;
        for p in pages {
            s.release_page(p);
        }
        assert_eq!(s.total_malloced.load(Relaxed), 0);
    }
}
