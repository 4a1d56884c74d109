//! The item: how one key and its value sit in a slab chunk.
//!
//! memcached's item header is 48 bytes plus 8 of CAS. Ours is 28 with CAS
//! (20 with `-C`), because links are 32-bit chunk ids rather than pointers,
//! the hash chain lives in the index instead of the item, and the small
//! fields are packed:
//!
//! ```text
//! offset  size  field
//!  0      4     lru prev id   (bit 31: LRU segment bit 0)
//!  4      4     lru next id   (bit 31: LRU segment bit 1)
//!  8      8     cas           (absent with -C)
//! 16      4     exptime       (30 bits relative time; bit 30 STALE, bit 31 WIN_SENT)
//! 20      4     last access   (30 bits relative time; bit 30 FETCHED, bit 31 ACTIVE)
//! 24      4     meta          (bits 0-19 value bytes in this chunk, 20-27 key length,
//!                              28 HAS_FLAGS, 29 CHAINED, 30 LINKED,
//!                              31 KEY_BINARY on an item, CHAIN_CHUNK on a keyless chunk)
//! 28     [4]    client flags, only when non-zero (as memcached does)
//!        nkey   key
//!        ...    value (no trailing "\r\n": the server adds it on the way out)
//! ```
//!
//! Every header word is read and written as an atomic: readers under a
//! shard lock set FETCHED/ACTIVE and the access time while the maintainer,
//! under the class lock only, may be moving the item between segments.
//! The key and value bytes are written once, before the item is published
//! under a lock, and never change while the item is linked, except by
//! in-place incr/decr under the key's shard lock.
//!
//! A chained item (bigger than the largest chunk) has a head chunk in the
//! largest class holding header, key, then `total value length: u32`,
//! `number of further chunks: u32`, their ids, and the first part of the
//! value; each further chunk has a header whose `prev` is the head's id and
//! whose meta is CHAIN_CHUNK, then value bytes.

use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::slabs::ChunkId;

const ID_MASK: u32 = 0x7FFF_FFFF;
const SEG_BIT: u32 = 0x8000_0000;

pub const TIME_MASK: u32 = 0x3FFF_FFFF;
/// In the exptime word: the item is stale (meta `I` invalidation).
pub const STALE: u32 = 1 << 30;
/// In the exptime word: a recache win token was handed out (meta `W`).
pub const WIN_SENT: u32 = 1 << 31;
pub const FETCHED: u32 = 1 << 30;
pub const ACTIVE: u32 = 1 << 31;

pub const NBYTES_MASK: u32 = 0x000F_FFFF;
pub const NKEY_SHIFT: u32 = 20;
pub const HAS_FLAGS: u32 = 1 << 28;
pub const CHAINED: u32 = 1 << 29;
pub const LINKED: u32 = 1 << 30;
/// Bit 31 on a chunk with no key: a chain chunk. Items always have a key,
/// so on an item the same bit says the key came base64-decoded (meta `b`)
/// and is shown base64-encoded again, as memcached's ITEM_KEY_BINARY.
pub const CHAIN_CHUNK: u32 = 1 << 31;
pub const KEY_BINARY: u32 = 1 << 31;

/// Whether a chunk's meta word marks a chain chunk.
#[inline]
pub fn is_chain_chunk(meta: u32) -> bool {
    meta & CHAIN_CHUNK != 0 && (meta >> NKEY_SHIFT) & 0xFF == 0
}
/// Meta of a chunk taken off the free list whose header is not written
/// yet: not free (0), not linked, so the page mover waits for it.
pub const RESERVED: u32 = NBYTES_MASK;

/// LRU segments, as memcached numbers its sub-LRUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Seg {
    Hot = 0,
    Warm = 1,
    Cold = 2,
    Temp = 3,
}

impl Seg {
    pub const ALL: [Seg; 4] = [Seg::Hot, Seg::Warm, Seg::Cold, Seg::Temp];
    fn from_bits(b: u32) -> Seg {
        match b & 3 {
            0 => Seg::Hot,
            1 => Seg::Warm,
            2 => Seg::Cold,
            _ => Seg::Temp,
        }
    }
}

/// Header layout for this engine's settings.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Offset of the exptime word (16 with CAS, 8 without).
    t: usize,
    pub use_cas: bool,
}

impl Layout {
    pub fn new(use_cas: bool) -> Layout {
        Layout {
            t: if use_cas { 16 } else { 8 },
            use_cas,
        }
    }

    /// Bytes of header before the optional flags word.
    #[inline]
    pub fn header(&self) -> usize {
        self.t + 12
    }

    /// Total bytes an unchained item needs.
    #[inline]
    pub fn item_size(&self, nkey: usize, flags: u32, nbytes: usize) -> usize {
        self.header() + if flags != 0 { 4 } else { 0 } + nkey + nbytes
    }

    /// Bytes an item is charged in `bytes` and `mem_requested`.
    pub(crate) fn charged_size(&self, raw: Raw<'_>) -> usize {
        let base = self.item_size(raw.nkey(), raw.flags(), 0);
        if raw.is_chained() {
            base + 8 + 4 * raw.chain_word(1) as usize + raw.value_len()
        } else {
            base + raw.nbytes_here()
        }
    }
}

/// A view of one chunk, valid for `'g`: the span of the lock (shard or
/// class), pin or reservation that keeps the chunk allocated and its key
/// and value unchanged. Built only by [`Raw::new`] (through `Slabs::raw`),
/// whose caller vouches for `'g`; everything a view hands out (the key,
/// value slices, chain chunks) lives no longer than `'g`.
///
/// Header words are atomics, so several views of one chunk may exist at
/// once; which lock a field's writer needs is in the module doc.
#[derive(Clone, Copy)]
pub struct Raw<'g> {
    p: NonNull<u8>,
    l: Layout,
    held: PhantomData<&'g [u8]>,
}

impl<'g> Raw<'g> {
    /// A view of the chunk at `p`.
    ///
    /// # Safety
    /// `p` is the start of a chunk, 8-byte aligned, at least as big as the
    /// item laid out in it (or `l.header()` bytes while it holds none),
    /// from slab memory laid out with `l`; for all of `'g` the chunk stays
    /// allocated, and the caller holds for `'g` what the fields it reads
    /// and writes need: the shard lock of the item's key (item linked), the
    /// class lock of its class, a pin, or the reservation (item unlinked and
    /// private) - see the module doc.
    #[inline]
    pub(crate) unsafe fn new(p: NonNull<u8>, l: Layout) -> Raw<'g> {
        Raw {
            p,
            l,
            held: PhantomData,
        }
    }

    #[inline]
    fn at(&self, off: usize) -> *mut u8 {
        // SAFETY: callers pass offsets inside the chunk (header, flags,
        // key, chain table, value), as `new`'s contract sizes it.
        unsafe { self.p.as_ptr().add(off) }
    }

    #[inline]
    fn word(&self, off: usize) -> &'g AtomicU32 {
        // SAFETY: chunks are 8-byte aligned and at least header-sized;
        // offsets used here are within the header (or the flags word) and
        // 4-aligned; header words are only ever accessed as atomics, and
        // the chunk stays allocated for 'g (`new`'s contract).
        unsafe { &*(self.at(off) as *const AtomicU32) }
    }

    #[inline]
    fn cas_word(&self) -> &'g AtomicU64 {
        // SAFETY: with CAS on, offset 8 is 8-aligned inside the header,
        // accessed only as an atomic; allocated for 'g as in `word`.
        unsafe { &*(self.at(8) as *const AtomicU64) }
    }

    #[inline]
    pub fn prev(&self) -> ChunkId {
        // SAFETY: link words are written only by set_prev/set_next (from a
        // ChunkId) and by the allocator when it carves the chunk.
        unsafe { ChunkId::from_word(self.word(0).load(Relaxed) & ID_MASK) }
    }
    #[inline]
    pub fn next(&self) -> ChunkId {
        // SAFETY: as in `prev`.
        unsafe { ChunkId::from_word(self.word(4).load(Relaxed) & ID_MASK) }
    }
    #[inline]
    pub fn set_prev(&self, id: ChunkId) {
        let w = self.word(0);
        w.store((w.load(Relaxed) & SEG_BIT) | id.to_word(), Relaxed);
    }
    #[inline]
    pub fn set_next(&self, id: ChunkId) {
        let w = self.word(4);
        w.store((w.load(Relaxed) & SEG_BIT) | id.to_word(), Relaxed);
    }
    #[inline]
    pub fn seg(&self) -> Seg {
        let b0 = self.word(0).load(Relaxed) >> 31;
        let b1 = self.word(4).load(Relaxed) >> 31;
        Seg::from_bits(b0 | (b1 << 1))
    }
    pub fn set_seg(&self, s: Seg) {
        let s = s as u32;
        let w0 = self.word(0);
        let w1 = self.word(4);
        w0.store((w0.load(Relaxed) & ID_MASK) | ((s & 1) << 31), Relaxed);
        w1.store((w1.load(Relaxed) & ID_MASK) | ((s >> 1) << 31), Relaxed);
    }

    #[inline]
    pub fn cas(&self) -> u64 {
        if self.l.use_cas {
            self.cas_word().load(Relaxed)
        } else {
            0
        }
    }
    #[inline]
    pub fn set_cas(&self, cas: u64) {
        if self.l.use_cas {
            self.cas_word().store(cas, Relaxed)
        }
    }

    /// Relative expiry time, 0 for never.
    #[inline]
    pub fn exptime(&self) -> u32 {
        self.word(self.l.t).load(Relaxed) & TIME_MASK
    }
    /// A new item's expiry, clearing STALE and WIN_SENT left in the chunk
    /// by whatever it held before.
    pub fn init_exptime(&self, t: u32) {
        self.word(self.l.t).store(t.min(TIME_MASK), Relaxed);
    }
    pub fn set_exptime(&self, t: u32) {
        let w = self.word(self.l.t);
        w.store((w.load(Relaxed) & !TIME_MASK) | t.min(TIME_MASK), Relaxed);
    }

    /// STALE / WIN_SENT bits (changed only under the shard lock).
    pub fn exp_bits(&self) -> u32 {
        self.word(self.l.t).load(Relaxed) & !TIME_MASK
    }
    pub fn set_exp_bits(&self, bits: u32, on: bool) {
        let w = self.word(self.l.t);
        if on {
            w.fetch_or(bits, Relaxed);
        } else {
            w.fetch_and(!bits, Relaxed);
        }
    }

    #[inline]
    pub fn atime(&self) -> u32 {
        self.word(self.l.t + 4).load(Relaxed) & TIME_MASK
    }
    #[inline]
    pub fn access_bits(&self) -> u32 {
        self.word(self.l.t + 4).load(Relaxed) & !TIME_MASK
    }
    pub fn set_atime(&self, t: u32) {
        let w = self.word(self.l.t + 4);
        w.store((w.load(Relaxed) & !TIME_MASK) | (t & TIME_MASK), Relaxed);
    }
    /// Marks a read: FETCHED on the first, ACTIVE from the second on, as
    /// memcached does ("hit at least twice"). Skips the store when nothing
    /// changes so hot keys do not keep dirtying the line.
    #[inline]
    pub fn touch_access(&self, now: u32) {
        let w = self.word(self.l.t + 4);
        let old = w.load(Relaxed);
        let bits = if old & FETCHED != 0 {
            FETCHED | ACTIVE
        } else {
            FETCHED
        };
        let new = (old & !TIME_MASK) | bits | (now & TIME_MASK);
        if new != old {
            // A racing fetch_and from the maintainer may be overwritten;
            // that only leaves a just-read item marked active, which it is.
            w.store(new, Relaxed);
        }
    }
    pub fn clear_active(&self) {
        self.word(self.l.t + 4).fetch_and(!ACTIVE, Relaxed);
    }
    pub fn init_access(&self, now: u32) {
        self.word(self.l.t + 4).store(now & TIME_MASK, Relaxed);
    }

    #[inline]
    pub fn meta(&self) -> u32 {
        self.word(self.l.t + 8).load(Relaxed)
    }
    #[inline]
    pub fn set_meta(&self, m: u32) {
        self.word(self.l.t + 8).store(m, Relaxed)
    }
    pub fn set_meta_bits(&self, bits: u32, on: bool) {
        let w = self.word(self.l.t + 8);
        if on {
            w.fetch_or(bits, Relaxed);
        } else {
            w.fetch_and(!bits, Relaxed);
        }
    }
    #[inline]
    pub fn nkey(&self) -> usize {
        ((self.meta() >> NKEY_SHIFT) & 0xFF) as usize
    }
    /// Value bytes stored in this chunk.
    #[inline]
    pub fn nbytes_here(&self) -> usize {
        (self.meta() & NBYTES_MASK) as usize
    }
    #[inline]
    pub fn is_chained(&self) -> bool {
        self.meta() & CHAINED != 0
    }

    #[inline]
    fn flags_len(&self) -> usize {
        if self.meta() & HAS_FLAGS != 0 {
            4
        } else {
            0
        }
    }
    #[inline]
    pub fn flags(&self) -> u32 {
        if self.meta() & HAS_FLAGS != 0 {
            self.word(self.l.header()).load(Relaxed)
        } else {
            0
        }
    }

    /// Writes a new item's flags word (HAS_FLAGS set in its meta).
    pub fn init_flags(&self, flags: u32) {
        self.word(self.l.header()).store(flags, Relaxed);
    }

    #[inline]
    fn key_off(&self) -> usize {
        self.l.header() + self.flags_len()
    }
    #[inline]
    pub fn key_ptr(&self) -> *mut u8 {
        self.at(self.key_off())
    }
    /// The key, for as long as the view is valid.
    #[inline]
    pub fn key(&self) -> &'g [u8] {
        // SAFETY: nkey bytes follow the header and flags inside the chunk;
        // they are written before the item is published and never change
        // while it is allocated, which it is for 'g.
        unsafe { std::slice::from_raw_parts(self.key_ptr(), self.nkey()) }
    }
    #[inline]
    pub fn data_ptr(&self) -> *mut u8 {
        self.at(self.key_off() + self.nkey())
    }
    /// Where a chain chunk's value bytes start (right after its header).
    #[inline]
    pub fn chunk_data_ptr(&self) -> *mut u8 {
        self.at(self.l.header())
    }
    /// Where this chunk's part of the value starts and how long it is: after
    /// the header of a chain chunk, after the table of a chained head, after
    /// the key otherwise.
    #[inline]
    pub fn value_part_ptr(&self) -> (*mut u8, usize) {
        let m = self.meta();
        let p = if is_chain_chunk(m) {
            self.chunk_data_ptr()
        } else if m & CHAINED != 0 {
            self.chained_head_data()
        } else {
            self.data_ptr()
        };
        (p, (m & NBYTES_MASK) as usize)
    }
    /// This chunk's part of the value, for as long as the view is valid.
    #[inline]
    pub fn value_part(&self) -> &'g [u8] {
        let (p, n) = self.value_part_ptr();
        // SAFETY: the part lies inside the chunk (its length was fixed at
        // allocation); value bytes change only while the item is private
        // (being filled) or under the key's shard lock (incr/decr in place,
        // never while pinned), which is what 'g stands for to readers.
        unsafe { std::slice::from_raw_parts(p, n) }
    }
    /// Copies the first `n` bytes of this chunk over chunk `dst` (the page
    /// mover's rescue).
    ///
    /// # Safety
    /// `dst` is a different chunk of the same class (so at least `n`
    /// bytes), free and owned by the caller; `n` is at most the chunk size.
    pub unsafe fn copy_to(&self, dst: &Raw<'_>, n: usize) {
        // SAFETY: both ranges lie inside distinct chunks (the contract).
        unsafe { std::ptr::copy_nonoverlapping(self.p.as_ptr(), dst.p.as_ptr(), n) }
    }

    /// Total value length, following the chain table for chained items.
    pub fn value_len(&self) -> usize {
        if self.is_chained() {
            self.chain_word(0) as usize
        } else {
            self.nbytes_here()
        }
    }

    /// Word `i` of a chained head's table (0: total length, 1: count, 2..: ids).
    pub fn chain_word(&self, i: usize) -> u32 {
        // SAFETY: in a chained head the table (2 + count words) follows the
        // key inside the chunk; written before the item is published.
        unsafe { (self.data_ptr().add(i * 4) as *const u32).read_unaligned() }
    }
    pub fn set_chain_word(&self, i: usize, v: u32) {
        // SAFETY: as in chain_word; written only while the item is
        // unlinked and private to its allocator.
        unsafe { (self.data_ptr().add(i * 4) as *mut u32).write_unaligned(v) }
    }
    /// Number of further chunks of a chained head.
    pub fn chain_len(&self) -> usize {
        self.chain_word(1) as usize
    }
    /// Id of further chunk `i` of a chained head.
    pub fn chain_id(&self, i: usize) -> ChunkId {
        // SAFETY: table entries 2.. are written only by `set_chain_id`.
        unsafe { ChunkId::from_word(self.chain_word(2 + i)) }
    }
    pub fn set_chain_id(&self, i: usize, id: ChunkId) {
        self.set_chain_word(2 + i, id.to_word());
    }
    /// Start of the value bytes inside a chained head (after its table).
    pub fn chained_head_data(&self) -> *mut u8 {
        let n = self.chain_word(1) as usize;
        self.at(self.key_off() + self.nkey() + (2 + n) * 4)
    }
}

/// What a reader gets for one item, while the item's shard is locked.
/// Copies borrow the same guard (`'a`), so they are as sound as the
/// original; the facade (`facade/`) wraps one by value.
#[derive(Clone, Copy)]
pub struct ItemRef<'a> {
    id: ChunkId,
    raw: Raw<'a>,
    engine: &'a crate::engine::SlabEngine,
    class_id: u32,
    /// The access word before this read: last access time and bits.
    before: u32,
}

impl<'a> ItemRef<'a> {
    pub(crate) fn new(
        id: ChunkId,
        raw: Raw<'a>,
        engine: &'a crate::engine::SlabEngine,
        class_id: u32,
    ) -> ItemRef<'a> {
        let before = raw.atime() | raw.access_bits();
        ItemRef {
            id,
            raw,
            engine,
            class_id,
            before,
        }
    }
    #[inline]
    pub fn key(&self) -> &[u8] {
        self.raw.key()
    }
    #[inline]
    pub fn flags(&self) -> u32 {
        self.raw.flags()
    }
    #[inline]
    pub fn cas(&self) -> u64 {
        self.raw.cas()
    }
    #[inline]
    pub fn value_len(&self) -> usize {
        self.raw.value_len()
    }
    /// Relative expiry time, 0 for never.
    #[inline]
    pub fn exptime(&self) -> u32 {
        self.raw.exptime()
    }
    /// Relative time of the last access before this one.
    #[inline]
    pub fn last_access(&self) -> u32 {
        self.before & TIME_MASK
    }
    /// Whether the item had been read before this read.
    #[inline]
    pub fn fetched(&self) -> bool {
        self.before & FETCHED != 0
    }
    #[inline]
    pub fn class_id(&self) -> u32 {
        self.class_id
    }
    /// Marked stale by a meta invalidation.
    #[inline]
    pub fn stale(&self) -> bool {
        self.raw.exp_bits() & STALE != 0
    }
    /// The key was stored base64-decoded (meta `b`).
    #[inline]
    pub fn key_binary(&self) -> bool {
        self.raw.meta() & KEY_BINARY != 0
    }
    /// A recache win token was already handed out for this item.
    #[inline]
    pub fn win_sent(&self) -> bool {
        self.raw.exp_bits() & WIN_SENT != 0
    }
    /// Appends the value's bytes to `out`.
    #[inline]
    pub fn write_value(&self, out: &mut Vec<u8>) {
        self.engine
            .for_each_value_part(self.raw, |s| out.extend_from_slice(s));
    }
    /// Calls `f` with the value's parts in order (one part unless chained).
    #[inline]
    pub fn for_each_value_part(&self, f: impl FnMut(&[u8])) {
        self.engine.for_each_value_part(self.raw, f);
    }
    /// Holds this item's value for a reply that will send it after the
    /// key's lock is released, instead of copying it (see `Pinned`).
    /// `None` only while the engine is being torn down.
    #[inline]
    pub fn pin(&self) -> Option<crate::pin::Pinned> {
        self.engine.pin(self.id, self.raw.value_len())
    }
}
