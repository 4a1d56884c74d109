//! Rebuilding a cache from a memory file: the page table from the
//! metadata, then every page walked once to find the linked items and
//! check each against its page's class, the LRU lists followed from the
//! saved ends, the free lists and the hash index rebuilt.
//!
//! The file's contents are checked before anything is followed: an id
//! must name a chunk of a page of the right class, lengths must fit the
//! chunk, a chain must be whole and claimed once, each LRU must reach its
//! saved tail in its saved count and cover every linked item. Any
//! disagreement fails the whole recovery (the caller starts cold): one
//! bad item cannot be shown to be the only one.

use crate::assoc::{hash, Index};
use crate::config::Config;
use crate::item::{is_chain_chunk, Raw, Seg, CHAINED, HAS_FLAGS, LINKED, NBYTES_MASK};
use crate::slabs::{ChunkId, List, Slabs};

use super::meta::SavedLru;
use super::Meta;

pub(super) struct Recovered {
    pub items: u64,
    pub max_cas: u64,
}

/// Per chunk of each page: what the walk found.
const OTHER: u8 = 0;
const ITEM: u8 = 1;
const ON_LRU: u8 = 2;
const CHAIN: u8 = 3;

struct Marks {
    /// By page slot; empty for slots that are not class pages.
    pages: Vec<Vec<u8>>,
}

impl Marks {
    fn get(&mut self, id: ChunkId) -> &mut u8 {
        // Ids reaching here passed `checked_chunk`, so their page has marks
        // sized to its class's chunks per page.
        &mut self.pages[id.page() as usize][id.index_in_page()]
    }
}

/// A view of a chunk that `checked_chunk` vouched for.
fn view(slabs: &Slabs, id: ChunkId) -> Raw<'_> {
    // SAFETY: `id` is a chunk of an allocated page (checked_chunk or the
    // class's own page list), and recovery runs before the engine exists:
    // no other thread can reach these chunks.
    unsafe { slabs.raw(id) }
}

/// Checks the item at `id` (class `ci`) and claims its chain chunks.
fn check_item(
    slabs: &Slabs,
    cfg: &Config,
    marks: &mut Marks,
    ci: usize,
    id: ChunkId,
) -> Result<(), String> {
    let raw = view(slabs, id);
    let l = slabs.layout;
    let m = raw.meta();
    let nkey = raw.nkey();
    let bad = |why: &str| Err(format!("item {id:#x} of class {}: {why}", ci + 1));
    if nkey == 0 || is_chain_chunk(m) {
        return bad("no key");
    }
    let size = slabs.classes[ci].size;
    // From the meta bit, as the key's offset is: a flags word of 0 under
    // HAS_FLAGS (never written, but possible in a file) still takes room.
    let fixed = l.header() + if m & HAS_FLAGS != 0 { 4 } else { 0 } + nkey;
    if m & CHAINED == 0 {
        if fixed + raw.nbytes_here() > size {
            return bad("longer than its chunk");
        }
        if raw.nbytes_here() > cfg.item_size_max {
            return bad("longer than -I");
        }
        return Ok(());
    }
    if ci != slabs.largest() || fixed + 8 > size {
        return bad("chained outside the largest class");
    }
    let n = raw.chain_len();
    let Some(head_room) = size
        .checked_sub(fixed + 8)
        .and_then(|r| r.checked_sub(4 * n))
    else {
        return bad("chain table longer than its chunk");
    };
    let total = raw.chain_word(0) as usize;
    if raw.nbytes_here() > head_room || total > cfg.item_size_max {
        return bad("value longer than its room");
    }
    let mut sum = raw.nbytes_here();
    for i in 0..n {
        let Some(cid) = slabs.checked_chunk(raw.chain_word(2 + i), ci) else {
            return bad("chain id out of range");
        };
        let mark = marks.get(cid);
        if *mark != OTHER {
            return bad("chain chunk claimed twice");
        }
        *mark = CHAIN;
        let c = view(slabs, cid);
        let cm = c.meta();
        if !is_chain_chunk(cm) || cm & LINKED != 0 || c.prev() != id {
            return bad("chain chunk not its own");
        }
        let here = (cm & NBYTES_MASK) as usize;
        if here > size - l.header() {
            return bad("chain chunk overfull");
        }
        sum += here;
    }
    if sum != total {
        return bad("chain parts do not add up");
    }
    Ok(())
}

/// Compares every class page with its saved checksum, on as many threads
/// as there are CPUs: this reads all of the file, the largest part of a
/// restart's time.
fn check_sums(slabs: &Slabs, meta: &Meta) -> Result<(), String> {
    let pages: Vec<_> = meta.pages.iter().filter(|p| p.class.is_some()).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per = pages.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = pages
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    for p in part {
                        // SAFETY: restore_pages checked the page lies inside
                        // the file, and nothing writes it before the engine
                        // exists.
                        if super::page_sum(unsafe { slabs.file_page(p.off) }) != p.sum {
                            return Err(format!("page {} changed since the stop", p.slot));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err("checksum thread failed".into()))
        })
    })
}

/// One LRU list being followed from its saved head.
struct Walk<'m> {
    saved: &'m SavedLru,
    seg: Seg,
    prev: ChunkId,
    /// The link word to follow next.
    next: u32,
    n: u64,
    bytes: u64,
}

impl Walk<'_> {
    /// Follows one link; true once the list is whole (its saved count,
    /// ending at its saved tail).
    fn step(&mut self, slabs: &Slabs, marks: &mut Marks) -> Result<bool, String> {
        let s = self.saved;
        let ci = s.class as usize;
        if self.n == s.count {
            if self.next != ChunkId::NIL.to_word() || self.prev.to_word() != s.tail {
                return Err(format!("LRU {ci}/{} does not end at its saved tail", s.seg));
            }
            return Ok(true);
        }
        let Some(id) = slabs.checked_chunk(self.next, ci) else {
            return Err(format!(
                "LRU {ci}/{} link {:#x} out of range",
                s.seg, self.next
            ));
        };
        let mark = marks.get(id);
        if *mark != ITEM {
            return Err(format!(
                "LRU {ci}/{} reaches {id:#x}, not a linked item",
                s.seg
            ));
        }
        *mark = ON_LRU;
        let raw = view(slabs, id);
        if raw.seg() != self.seg || raw.prev() != self.prev {
            return Err(format!("LRU {ci}/{} broken at {id:#x}", s.seg));
        }
        self.bytes += slabs.layout.charged_size(raw) as u64;
        self.n += 1;
        self.prev = id;
        self.next = raw.next().to_word();
        Ok(false)
    }
}

pub(super) fn recover(
    slabs: &Slabs,
    index: &mut Index,
    meta: &Meta,
    cfg: &Config,
) -> Result<Recovered, String> {
    slabs.restore_pages(&meta.pages)?;
    check_sums(slabs, meta)?;
    let class_pages: Vec<Vec<u32>> = slabs
        .classes
        .iter()
        .map(|c| c.state.lock().pages.clone())
        .collect();
    let slots = meta
        .pages
        .iter()
        .map(|p| p.slot as usize + 1)
        .max()
        .unwrap_or(0);
    let mut marks = Marks {
        pages: vec![Vec::new(); slots],
    };
    for (ci, pages) in class_pages.iter().enumerate() {
        for &p in pages {
            marks.pages[p as usize] = vec![OTHER; slabs.classes[ci].perslab];
        }
    }
    // Linked items first, chains claimed as they are met.
    let mut linked = vec![0u64; slabs.classes.len()];
    for (ci, pages) in class_pages.iter().enumerate() {
        for &p in pages {
            for id in slabs.chunk_ids(ci, p) {
                if view(slabs, id).meta() & LINKED == 0 {
                    continue;
                }
                if *marks.get(id) != OTHER {
                    return Err(format!("chunk {id:#x} both an item and a chain part"));
                }
                *marks.get(id) = ITEM;
                check_item(slabs, cfg, &mut marks, ci, id)?;
                linked[ci] += 1;
            }
        }
    }
    // An index already as large as these items would make it, so none of
    // them is moved by a doubling.
    let total: u64 = linked.iter().sum();
    let want = (total as usize * 8 / 7 + 1).next_power_of_two();
    if index.size().0 < want {
        *index = Index::new(index.nshards(), want.trailing_zeros());
    }
    // The LRUs, from their saved ends. Every list is walked a step at a
    // time in turn: each step is a read at a random place in the file, and
    // reads for different lists do not wait for each other.
    let mut lists = vec![[List::CLEAR; 4]; slabs.classes.len()];
    let mut walks = Vec::with_capacity(meta.lrus.len());
    for s in &meta.lrus {
        let ci = s.class as usize;
        let (Some(row), Some(seg)) = (lists.get_mut(ci), Seg::ALL.get(s.seg as usize)) else {
            return Err(format!(
                "LRU of class {} segment {} out of range",
                s.class, s.seg
            ));
        };
        let slot = &mut row[*seg as usize];
        if slot.count != 0 || s.count == 0 {
            return Err(format!("LRU {ci}/{} saved twice or empty", s.seg));
        }
        // Claimed here so a repeated line is caught; filled in below.
        slot.count = s.count;
        walks.push(Walk {
            saved: s,
            seg: *seg,
            prev: ChunkId::NIL,
            next: s.head,
            n: 0,
            bytes: 0,
        });
    }
    while !walks.is_empty() {
        let mut i = 0;
        while i < walks.len() {
            if walks[i].step(slabs, &mut marks)? {
                let w = walks.swap_remove(i);
                let ci = w.saved.class as usize;
                lists[ci][w.seg as usize] = List {
                    head: slabs
                        .checked_chunk(w.saved.head, ci)
                        .unwrap_or(ChunkId::NIL),
                    tail: w.prev,
                    count: w.n,
                    bytes: w.bytes,
                };
            } else {
                i += 1;
            }
        }
    }
    for (ci, row) in lists.iter().enumerate() {
        let on_lru: u64 = row.iter().map(|l| l.count).sum();
        if on_lru != linked[ci] {
            return Err(format!(
                "class {}: {} linked items, {on_lru} on its LRUs",
                ci + 1,
                linked[ci]
            ));
        }
    }
    // Everything checked: free lists, LRU ends and the index. Items are
    // hashed in page order and put in the index one shard at a time, so
    // the inserts stay within a shard's table (cache-sized) instead of
    // landing at random across all of it.
    let mut items = 0u64;
    let mut max_cas = 0u64;
    let mut by_shard: Vec<Vec<(u64, ChunkId)>> = vec![Vec::new(); index.nshards()];
    for (ci, pages) in class_pages.iter().enumerate() {
        let mut st = slabs.classes[ci].state.lock();
        st.lru = lists[ci];
        st.requested = lists[ci].iter().map(|l| l.bytes).sum();
        for &p in pages {
            // In reverse, as `carve` does, so chunks go out in address order.
            let ids: Vec<ChunkId> = slabs.chunk_ids(ci, p).collect();
            for &id in ids.iter().rev() {
                match *marks.get(id) {
                    OTHER => slabs.free_push(&mut st, id),
                    ON_LRU => {
                        let raw = view(slabs, id);
                        let h = hash(raw.key());
                        by_shard[index.shard_of(h)].push((h, id));
                        max_cas = max_cas.max(raw.cas());
                        items += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    for (i, batch) in by_shard.iter().enumerate() {
        let mut shard = index.lock_shard(i);
        for &(h, id) in batch {
            // Keys are read only when a slot's tag matches: rarely.
            if shard
                .find(h, |o| view(slabs, o).key() == view(slabs, id).key())
                .is_some()
            {
                return Err(format!("key stored twice ({id:#x})"));
            }
            shard.insert(h, id);
        }
    }
    Ok(Recovered { items, max_cas })
}
