//! Item records for the dump commands: `stats cachedump` walks the head of
//! one class's COLD LRU, `lru_crawler metadump` walks classes page by page
//! (or the index shard by shard). The engine hands out one [`ItemRecord`]
//! per item, read under the lock that keeps it linked; the server turns
//! records into memcached's text.

use std::sync::atomic::Ordering::Relaxed;

use crate::crawler::{parse_class_list, CrawlerCommandError};
use crate::engine::SlabEngine;
use crate::item::{is_chain_chunk, Seg, FETCHED, LINKED};
use crate::slabs::ChunkId;
use crate::slabs::MAX_CLASSES;

/// One item as the dump commands show it. Times are absolute (unix
/// seconds), computed from the engine clock's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemRecord<'a> {
    pub key: &'a [u8],
    /// When the item expires; `None` when it never does.
    pub exptime: Option<u64>,
    /// When the item was last read or stored.
    pub last_access: u64,
    pub cas: u64,
    /// Whether the item was read since it was stored.
    pub fetched: bool,
    /// Slab class id (1-based, as `stats slabs` numbers them).
    pub class_id: u32,
    /// Value bytes.
    pub value_len: usize,
    /// Bytes the item takes as memcached counts them (`ITEM_ntotal`:
    /// header, key, flags, value and its "\r\n").
    pub total_size: usize,
}

/// What `lru_crawler metadump` walks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadumpTarget {
    All,
    Hash,
    Classes(Vec<u32>),
}

impl MetadumpTarget {
    /// Parses `all`, `hash` or a comma list of class ids.
    pub fn parse(s: &str) -> Result<MetadumpTarget, CrawlerCommandError> {
        match s {
            "all" => Ok(MetadumpTarget::All),
            "hash" => Ok(MetadumpTarget::Hash),
            _ => parse_class_list(s).map(MetadumpTarget::Classes),
        }
    }
}

/// Where a paused `lru_crawler metadump` resumes; see
/// [`SlabEngine::lru_crawler_metadump_step`].
#[derive(Clone, Debug)]
pub struct MetadumpCursor {
    started: bool,
    pos: Pos,
}

#[derive(Clone, Debug)]
enum Pos {
    /// The next index shard to list.
    Hash {
        shard: usize,
    },
    /// Class indexes to walk, the one being walked, that class's pages
    /// (taken when its walk starts) and the next of them to list.
    Classes {
        classes: Vec<usize>,
        class_pos: usize,
        pages: Option<Vec<u32>>,
        page_pos: usize,
    },
    Done,
}

impl MetadumpCursor {
    /// A dump of `target` that has not started yet.
    pub fn new(target: MetadumpTarget) -> MetadumpCursor {
        let pos = match target {
            MetadumpTarget::Hash => Pos::Hash { shard: 0 },
            MetadumpTarget::All => Pos::Classes {
                classes: (0..MAX_CLASSES).collect(),
                class_pos: 0,
                pages: None,
                page_pos: 0,
            },
            MetadumpTarget::Classes(ids) => Pos::Classes {
                classes: ids
                    .iter()
                    .filter_map(|&id| (id as usize).checked_sub(1))
                    .collect(),
                class_pos: 0,
                pages: None,
                page_pos: 0,
            },
        };
        MetadumpCursor {
            started: false,
            pos,
        }
    }

    /// Whether the walk is finished.
    pub fn is_done(&self) -> bool {
        matches!(self.pos, Pos::Done)
    }

    /// For an engine whose dumps walk its index, whatever the target:
    /// whether this is the first step (marking it taken), and the next
    /// index shard to list, None once done.
    pub(crate) fn index_walk(&mut self) -> (bool, Option<&mut usize>) {
        let first = !std::mem::replace(&mut self.started, true);
        if let Pos::Classes { .. } = self.pos {
            self.pos = Pos::Hash { shard: 0 };
        }
        match &mut self.pos {
            Pos::Hash { shard } => (first, Some(shard)),
            _ => (first, None),
        }
    }

    /// Ends the walk.
    pub(crate) fn finish(&mut self) {
        self.pos = Pos::Done;
    }
}

impl SlabEngine {
    /// `stats cachedump <class> <limit>`: up to `limit` items (0 = all)
    /// from the head of the class's COLD LRU, as memcached lists them.
    /// `f` returns false to stop early (the server bounds its output).
    /// A class id out of range lists nothing.
    pub fn cachedump(&self, class_id: u32, limit: u32, mut f: impl FnMut(&ItemRecord<'_>) -> bool) {
        if class_id == 0 || class_id as usize > self.slabs.classes.len() {
            return;
        }
        let ci = class_id as usize - 1;
        let st = self.slabs.classes[ci].state.lock();
        let mut id = st.lru[Seg::Cold as usize].head;
        let mut shown = 0;
        while id != ChunkId::NIL && (limit == 0 || shown < limit) {
            if !f(&self.record(id, ci)) {
                break;
            }
            shown += 1;
            // SAFETY: `id` is on this class's COLD LRU; class lock (`st`) held.
            id = unsafe { self.slabs.raw(id) }.next();
        }
    }

    /// `lru_crawler metadump`: every live item, all at once (tests; a
    /// server should use [`SlabEngine::lru_crawler_metadump_step`], which
    /// bounds the time a lock is held and the output buffered).
    pub fn lru_crawler_metadump(
        &self,
        target: MetadumpTarget,
        mut f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<(), CrawlerCommandError> {
        let mut cursor = MetadumpCursor::new(target);
        while !self.lru_crawler_metadump_step(&mut cursor, &mut f)? {}
        Ok(())
    }

    /// Continues a metadump by one page (or index shard), calling `f` for
    /// each of its live items; returns `Ok(true)` once the walk is over
    /// (the server then writes `END`). Refused only before the first
    /// step, when the crawler is disabled.
    ///
    /// A lock is held for one page (or shard) at a time, never across
    /// calls: items stored or removed between calls may or may not be
    /// listed, as with memcached, but no chunk is listed twice from one
    /// visit of a page and only linked, live items are listed.
    pub fn lru_crawler_metadump_step(
        &self,
        cursor: &mut MetadumpCursor,
        mut f: impl FnMut(&ItemRecord<'_>),
    ) -> Result<bool, CrawlerCommandError> {
        if !cursor.started {
            // Checked once: disabling the crawler mid-dump must not cut a
            // reply short without its END.
            if !self.crawler.enabled.load(Relaxed) {
                return Err(CrawlerCommandError::Disabled);
            }
            cursor.started = true;
        }
        let more = match &mut cursor.pos {
            Pos::Done => return Ok(true),
            Pos::Hash { shard } => self.metadump_shard(shard, &mut f),
            Pos::Classes {
                classes,
                class_pos,
                pages,
                page_pos,
            } => self.metadump_page(classes, class_pos, pages, page_pos, &mut f),
        };
        if !more {
            cursor.pos = Pos::Done;
        }
        Ok(!more)
    }

    /// Lists the live items of index shard `*shard` and moves on; false
    /// once every shard is done.
    fn metadump_shard(&self, shard: &mut usize, f: &mut impl FnMut(&ItemRecord<'_>)) -> bool {
        if *shard >= self.index.nshards() {
            return false;
        }
        let guard = self.index.lock_shard(*shard);
        let now = self.clock.now();
        for id in guard.ids() {
            if !self.is_dead(id, now) {
                f(&self.record(id, self.slabs.class_of(id)));
            }
        }
        drop(guard);
        *shard += 1;
        true
    }

    /// Lists the live items of the next page of the current class and
    /// moves on; false once every class is done.
    fn metadump_page(
        &self,
        classes: &[usize],
        class_pos: &mut usize,
        pages: &mut Option<Vec<u32>>,
        page_pos: &mut usize,
        f: &mut impl FnMut(&ItemRecord<'_>),
    ) -> bool {
        let Some(&ci) = classes.get(*class_pos) else {
            return false;
        };
        if ci >= self.slabs.classes.len() {
            // Valid for memcached but beyond this engine's classes: empty.
            *class_pos += 1;
            return true;
        }
        let st = self.slabs.classes[ci].state.lock();
        // The class's pages as they are when its walk starts: pages it
        // gains later hold only items stored after the dump began. The
        // list is at most one u32 per page of the cache.
        let list = pages.get_or_insert_with(|| st.pages.clone());
        let Some(&page) = list.get(*page_pos) else {
            drop(st);
            *pages = None;
            *page_pos = 0;
            *class_pos += 1;
            return true;
        };
        // The page may have been moved to another class or freed since
        // the list was taken; its chunks are this class's size only while
        // it is on this class's list. `pages` keeps its order when a page
        // leaves it, so the position is usually still right.
        let owned = st.pages.get(*page_pos) == Some(&page) || st.pages.contains(&page);
        if owned && self.slabs.class_of_page(page) == ci {
            let now = self.clock.now();
            for id in self.slabs.chunk_ids(ci, page) {
                // SAFETY: a chunk of `page`, owned by class `ci` (checked just above),
                // whose lock (`st`) is held.
                let m = unsafe { self.slabs.raw(id) }.meta();
                if m & LINKED != 0 && !is_chain_chunk(m) && !self.is_dead(id, now) {
                    f(&self.record(id, ci));
                }
            }
        }
        drop(st);
        *page_pos += 1;
        true
    }

    /// The record of linked item `id` of class index `ci`.
    fn record(&self, id: ChunkId, ci: usize) -> ItemRecord<'_> {
        // SAFETY: callers hold the class lock with `id` linked in one of its
        // pages, or the shard lock with `id` in that shard; the record (and the
        // key it borrows) is handed to the caller's closure only while they do.
        let raw = unsafe { self.slabs.raw(id) };
        let started = self.clock.process_started();
        ItemRecord {
            key: raw.key(),
            exptime: match raw.exptime() {
                0 => None,
                exp => Some(u64::from(exp) + started),
            },
            last_access: u64::from(raw.atime()) + started,
            cas: raw.cas(),
            fetched: raw.access_bits() & FETCHED != 0,
            class_id: ci as u32 + 1,
            value_len: raw.value_len(),
            total_size: self.charged_size(raw) + 2,
        }
    }
}
