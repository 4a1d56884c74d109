//! A full consistency walk of the engine: every chunk accounted for exactly
//! once. Used by tests (and usable by a debug command); it takes every lock
//! in turn, so it is not for the hot path.

use std::collections::HashSet;

use crate::assoc::hash;
use crate::engine::SlabEngine;
use crate::item::{is_chain_chunk, Seg, LINKED};
use crate::slabs::ChunkId;

impl SlabEngine {
    /// Checks that free lists, LRU lists, the index and the pages agree:
    /// no chunk is both free and in use, counts match walks, every linked
    /// item is found by its key, and pages stay within the limit.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut lru_total = 0u64;
        let mut lru_ids = HashSet::new();
        let mut pages_total = 0usize;
        for (ci, class) in self.slabs.classes.iter().enumerate() {
            let st = class.state.lock();
            pages_total += st.pages.len();
            let mut free = HashSet::new();
            let mut id = st.free_head;
            while id != ChunkId::NIL {
                if self.slabs.class_of(id) != ci {
                    return Err(format!(
                        "class {ci}: free chunk {id:#x} in a page of another class"
                    ));
                }
                if !free.insert(id) {
                    return Err(format!("class {ci}: free list loops at {id:#x}"));
                }
                // SAFETY: `id` is on this class's free list; class lock (`st`) held.
                if unsafe { self.slabs.raw(id) }.meta() != 0 {
                    return Err(format!("class {ci}: free chunk {id:#x} has meta set"));
                }
                // SAFETY: as above.
                id = unsafe { self.slabs.raw(id) }.next();
            }
            if free.len() as u64 != st.free_count {
                return Err(format!(
                    "class {ci}: free_count {} but list has {}",
                    st.free_count,
                    free.len()
                ));
            }
            let mut bytes_sum = 0u64;
            for seg in Seg::ALL {
                let l = st.lru[seg as usize];
                let mut n = 0u64;
                let mut bytes = 0u64;
                let mut prev = ChunkId::NIL;
                let mut id = l.head;
                while id != ChunkId::NIL {
                    // SAFETY: `id` is on this class's LRU; class lock (`st`) held.
                    let raw = unsafe { self.slabs.raw(id) };
                    if raw.prev() != prev {
                        return Err(format!("class {ci} {seg:?}: bad prev link at {id:#x}"));
                    }
                    if raw.seg() != seg {
                        return Err(format!(
                            "class {ci} {seg:?}: item {id:#x} says {:?}",
                            raw.seg()
                        ));
                    }
                    if raw.meta() & LINKED == 0 {
                        return Err(format!("class {ci}: item {id:#x} in LRU but not LINKED"));
                    }
                    if free.contains(&id) || !lru_ids.insert(id) {
                        return Err(format!("class {ci}: chunk {id:#x} used twice"));
                    }
                    if raw.is_chained() {
                        for i in 0..raw.chain_len() {
                            let c = raw.chain_id(i);
                            if free.contains(&c) || !lru_ids.insert(c) {
                                return Err(format!("class {ci}: chain chunk {c:#x} used twice"));
                            }
                            // SAFETY: a chain chunk of an item on this class's LRU; class lock held.
                            let cr = unsafe { self.slabs.raw(c) };
                            if !is_chain_chunk(cr.meta()) || cr.prev() != id {
                                return Err(format!(
                                    "class {ci}: chain chunk {c:#x} not owned by {id:#x}"
                                ));
                            }
                        }
                    }
                    bytes += self.charged_size(raw) as u64;
                    n += 1;
                    prev = id;
                    id = raw.next();
                }
                if l.tail != prev {
                    return Err(format!("class {ci} {seg:?}: tail mismatch"));
                }
                if n != l.count || bytes != l.bytes {
                    return Err(format!(
                        "class {ci} {seg:?}: count {} bytes {} but walk {n} {bytes}",
                        l.count, l.bytes
                    ));
                }
                lru_total += n;
                bytes_sum += bytes;
            }
            if bytes_sum != st.requested {
                return Err(format!(
                    "class {ci}: mem_requested {} but items sum {bytes_sum}",
                    st.requested
                ));
            }
            let chunks = (st.pages.len() * class.perslab) as u64;
            let used = chunks - st.free_count;
            let in_use = lru_ids
                .iter()
                .filter(|&&id| self.slabs.class_of(id) == ci)
                .count() as u64;
            if used != in_use {
                return Err(format!(
                    "class {ci}: {used} chunks used but {in_use} reachable"
                ));
            }
        }
        let mut indexed = 0u64;
        for i in 0..self.index.nshards() {
            let shard = self.index.lock_shard(i);
            for id in shard.ids() {
                indexed += 1;
                if !lru_ids.contains(&id) {
                    return Err(format!("index holds {id:#x}, which no LRU holds"));
                }
                // SAFETY: `id` is in the locked shard `shard`, so linked.
                let raw = unsafe { self.slabs.raw(id) };
                let h = hash(raw.key());
                if self.index.shard_of(h) != i || shard.find(h, |x| x == id).is_none() {
                    return Err(format!("item {id:#x} is not found by its own key"));
                }
            }
        }
        if indexed != lru_total {
            return Err(format!("index has {indexed} items, LRUs {lru_total}"));
        }
        let pool = self.slabs.pool.lock();
        if pool.allocated > pool.limit.max(pages_total) {
            return Err(format!(
                "{} pages allocated over a limit of {}",
                pool.allocated, pool.limit
            ));
        }
        if pages_total + pool.spare.len() != pool.allocated {
            return Err(format!(
                "{} pages in classes + {} spare != {} allocated",
                pages_total,
                pool.spare.len(),
                pool.allocated
            ));
        }
        Ok(())
    }
}
