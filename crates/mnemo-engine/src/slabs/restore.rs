//! The slab allocator's side of a warm restart (`-e`): putting a memory
//! file's mapping in place of the arena, saving the page table (which slot
//! has which page of the file, for which class) and rebuilding it.
//!
//! Chunk ids name a page slot, not an address, so items, LRU links and
//! chain tables written by the previous run stay valid wherever the file
//! is mapped now, as long as each slot gets its page of the file back.

use std::collections::HashSet;

use super::{ChunkId, Slabs, CHUNK_MASK, MAX_PAGES, PAGE_SHIFT};
use crate::arena::Arena;

/// One allocated page, as the metadata file records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SavedPage {
    /// Its page-table slot (the high bits of its chunks' ids).
    pub slot: u32,
    /// Its place in the memory file, in pages.
    pub off: u32,
    /// The class (index) that owns it; None for a spare page.
    pub class: Option<u8>,
    /// Checksum of a class page's bytes (0 for a spare page).
    pub sum: u64,
}

impl Slabs {
    /// Puts a memory file's mapping where the arena was; before any page
    /// is taken.
    pub(crate) fn use_arena(&mut self, arena: Arena) {
        debug_assert_eq!(self.pool.get_mut().allocated, 0);
        self.arena = arena;
    }

    /// Takes the arena back, forgetting every page in it, so a failed
    /// restore can start again from empty slabs over the same mapping.
    pub(crate) fn take_arena(&mut self) -> Arena {
        for slot in self.table.iter() {
            let mem = slot.base.load(std::sync::atomic::Ordering::Relaxed);
            if self.arena.offset_of(mem).is_some() {
                // Arena pages go with the arena; Drop must not free them.
                slot.base
                    .store(std::ptr::null_mut(), std::sync::atomic::Ordering::Relaxed);
            }
        }
        std::mem::replace(&mut self.arena, Arena::none())
    }

    /// The bytes of page `off` (in pages) of the memory file.
    ///
    /// # Safety
    /// Nothing writes the page while the slice lives (recovery before
    /// the engine exists, or a save after every thread stopped), and
    /// `off` is below the file's length in pages.
    pub(crate) unsafe fn file_page(&self, off: u32) -> &[u8] {
        let start = off as usize * self.page_size;
        debug_assert!(start + self.page_size <= self.arena.len());
        // SAFETY: inside the mapping (the contract) and unchanging while
        // borrowed.
        unsafe { std::slice::from_raw_parts(self.arena.at(start), self.page_size) }
    }

    /// A cold start over a memory file, as memcached's with `-e`: one page
    /// carved for every class (memcached's preallocation, so no class ever
    /// needs a first page past the limit, which the file could not hold),
    /// the rest of the file in the global page pool. Err, with memcached's
    /// message, when the file has fewer pages than there are classes.
    pub(crate) fn prefill(&self) -> Result<(), String> {
        let n = self.classes.len();
        if self.arena.len() / self.page_size < n {
            return Err(format!(
                "Error while preallocating slab memory!\n\
                 If using -L or other prealloc options, max memory must be at least {n} megabytes."
            ));
        }
        for (ci, class) in self.classes.iter().enumerate() {
            let page = self
                .take_page(false)
                .ok_or("Error while preallocating slab memory!")?;
            self.carve(ci, &mut class.state.lock(), page);
        }
        let mut spare = Vec::new();
        while let Some(p) = self.take_page(false) {
            spare.push(p);
        }
        // Handed out again from the lowest page first.
        spare.reverse();
        self.pool.lock().spare.extend(spare);
        Ok(())
    }

    pub(crate) fn arena(&self) -> &Arena {
        &self.arena
    }

    /// Every allocated page: each class's in its order, then spare ones.
    /// Called with nothing else running (background threads joined, no
    /// connection left); Err if a page is not in the memory file.
    pub(crate) fn saved_pages(&self) -> Result<Vec<SavedPage>, String> {
        let pool = self.pool.lock();
        let mut out = Vec::with_capacity(pool.allocated);
        let mut seen = HashSet::new();
        let mut put = |slot: u32, class: Option<u8>| -> Result<(), String> {
            if !seen.insert(slot) {
                return Ok(());
            }
            let mem = self.table[slot as usize]
                .base
                .load(std::sync::atomic::Ordering::Relaxed);
            let off = self
                .arena
                .offset_of(mem)
                .ok_or_else(|| format!("page {slot} is not in the memory file"))?;
            out.push(SavedPage {
                slot,
                off: (off / self.page_size) as u32,
                class,
                sum: 0,
            });
            Ok(())
        };
        for (ci, class) in self.classes.iter().enumerate() {
            for &p in &class.state.lock().pages {
                put(p, Some(ci as u8))?;
            }
        }
        for slot in 0..pool.next_slot {
            let mem = self.table[slot as usize]
                .base
                .load(std::sync::atomic::Ordering::Relaxed);
            if !mem.is_null() {
                put(slot, None)?;
            }
        }
        Ok(out)
    }

    /// Rebuilds the page table, the pool and each class's page list from a
    /// saved table; free lists and LRUs are left empty for the caller.
    /// The saved table is untrusted: Err on a slot or page out of range,
    /// used twice, or more pages than the limit.
    pub(crate) fn restore_pages(&self, pages: &[SavedPage]) -> Result<(), String> {
        let mut pool = self.pool.lock();
        if pages.len() > pool.limit {
            return Err(format!(
                "{} pages saved, the limit is {}",
                pages.len(),
                pool.limit
            ));
        }
        let file_pages = self.arena.len() / self.page_size;
        let mut slots = HashSet::new();
        let mut offs = HashSet::new();
        for p in pages {
            if p.slot as usize >= MAX_PAGES || !slots.insert(p.slot) {
                return Err(format!("page slot {} out of range or repeated", p.slot));
            }
            if p.off as usize >= file_pages || !offs.insert(p.off) {
                return Err(format!("file page {} out of range or repeated", p.off));
            }
            if let Some(c) = p.class {
                if c as usize >= self.classes.len() {
                    return Err(format!(
                        "page {} in class {} of {}",
                        p.slot,
                        c,
                        self.classes.len()
                    ));
                }
            }
        }
        use std::sync::atomic::Ordering::Relaxed;
        for p in pages {
            let slot = &self.table[p.slot as usize];
            slot.base
                .store(self.arena.at(p.off as usize * self.page_size), Relaxed);
            slot.draining.store(false, Relaxed);
            match p.class {
                Some(c) => {
                    let class = &self.classes[c as usize];
                    slot.chunk_size.store(class.size as u32, Relaxed);
                    slot.class.store(c, Relaxed);
                    class.state.lock().pages.push(p.slot);
                }
                None => {
                    slot.chunk_size.store(0, Relaxed);
                    slot.class.store(u8::MAX, Relaxed);
                    pool.spare.push(p.slot);
                }
            }
        }
        let next_slot = pages.iter().map(|p| p.slot + 1).max().unwrap_or(0);
        let arena_pages = pages.iter().map(|p| p.off + 1).max().unwrap_or(0);
        pool.allocated = pages.len();
        pool.next_slot = next_slot;
        pool.free_slots = (0..next_slot)
            .rev()
            .filter(|s| !slots.contains(s))
            .collect();
        pool.arena_next = arena_pages as usize * self.page_size;
        pool.arena_free = (0..arena_pages)
            .rev()
            .filter(|o| !offs.contains(o))
            .map(|o| o as usize * self.page_size)
            .collect();
        self.total_malloced
            .store((pages.len() * self.page_size) as u64, Relaxed);
        Ok(())
    }

    /// The id a word read from the memory file names, if that is a chunk
    /// of a page of class `ci`: the check every stored id passes before
    /// it is used after a restart.
    pub(crate) fn checked_chunk(&self, w: u32, ci: usize) -> Option<ChunkId> {
        let page = w >> PAGE_SHIFT;
        let idx = (w & CHUNK_MASK) as usize;
        if page as usize >= MAX_PAGES || idx >= self.classes.get(ci)?.perslab {
            return None;
        }
        let slot = &self.table[page as usize];
        if slot
            .base
            .load(std::sync::atomic::Ordering::Relaxed)
            .is_null()
            || self.class_of_page(page) != ci
        {
            return None;
        }
        Some(ChunkId::new(page, idx as u32))
    }
}

impl ChunkId {
    /// The chunk's index in its page (recovery keeps per-page marks).
    pub(crate) fn index_in_page(self) -> usize {
        self.index()
    }
}

impl super::List {
    /// An empty list, for rebuilding a class's LRU ends.
    pub(crate) const CLEAR: super::List = super::List::EMPTY;
}
