//! The object format inside a segment: a compact, unaligned header, the
//! key and the value, with nothing between objects.
//!
//! ```text
//! byte 0     bits: HAS_CAS HAS_FLAGS HAS_EXP (fixed at write) and
//!            STALE WIN_SENT KEY_BINARY FETCHED ACTIVE (change under the key's lock)
//! byte 1     key length
//! 1-5 bytes  value length, LEB128
//! [8 bytes]  CAS            (HAS_CAS: absent under -C)
//! 4 bytes    last access, relative seconds
//! [4 bytes]  client flags   (HAS_FLAGS: only when non-zero)
//! [4 bytes]  exptime        (HAS_EXP: only when the item was stored with one)
//! key, value (no "\r\n", no NUL)
//! ```
//!
//! A 10-byte key with a 32-byte value and no flags or TTL takes 57 bytes:
//! 15 of header. Byte 0 is read and written only as an `AtomicU8`,
//! because the evictor reads the fixed bits without the key's lock while
//! a reader may be setting FETCHED in the same byte; every other header
//! byte is either fixed once the object is written or changed only under
//! the key's shard lock.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

pub(crate) const HAS_CAS: u8 = 0x01;
pub(crate) const HAS_FLAGS: u8 = 0x02;
pub(crate) const HAS_EXP: u8 = 0x04;
pub(crate) const STALE: u8 = 0x08;
pub(crate) const WIN_SENT: u8 = 0x10;
pub(crate) const KEY_BINARY: u8 = 0x20;
pub(crate) const FETCHED: u8 = 0x40;
pub(crate) const ACTIVE: u8 = 0x80;
/// The bits fixed when the object is written (its layout).
pub(crate) const FIXED_BITS: u8 = HAS_CAS | HAS_FLAGS | HAS_EXP;

/// Bytes LEB128 takes for `n`.
#[inline]
pub(crate) fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// What the header of an object to be written holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub nkey: usize,
    pub nbytes: usize,
    pub flags: u32,
    /// Relative expiry, 0 for never. A non-zero one gets its field.
    pub exptime: u32,
    pub cas: bool,
}

impl Shape {
    fn fixed_bits(&self) -> u8 {
        let mut b = 0;
        if self.cas {
            b |= HAS_CAS;
        }
        if self.flags != 0 {
            b |= HAS_FLAGS;
        }
        if self.exptime != 0 {
            b |= HAS_EXP;
        }
        b
    }

    pub fn header_len(&self) -> usize {
        header_len(self.fixed_bits(), self.nbytes)
    }

    /// Bytes the whole object takes in its segment.
    pub fn size(&self) -> usize {
        self.header_len() + self.nkey + self.nbytes
    }
}

#[inline]
fn header_len(bits: u8, nbytes: usize) -> usize {
    2 + varint_len(nbytes)
        + if bits & HAS_CAS != 0 { 8 } else { 0 }
        + 4
        + if bits & HAS_FLAGS != 0 { 4 } else { 0 }
        + if bits & HAS_EXP != 0 { 4 } else { 0 }
}

/// A view of one object in a segment. Whoever builds one vouches that the
/// bytes stay allocated (and their fixed part unchanged) while it is used:
/// the key's shard lock with the object linked, a pin on its segment, a
/// pending write, or the evictor's claim on a sealed segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Obj {
    p: *mut u8,
}

impl Obj {
    /// # Safety
    /// `p` points at the start of a header written by `write_header`, in
    /// memory that stays allocated while the view is used.
    #[inline]
    pub unsafe fn at(p: *mut u8) -> Obj {
        Obj { p }
    }

    #[inline]
    fn bits_cell(&self) -> &AtomicU8 {
        // SAFETY: byte 0 of a live header; an AtomicU8 has alignment 1 and
        // every access to this byte goes through it (module doc).
        unsafe { AtomicU8::from_ptr(self.p) }
    }

    #[inline]
    pub fn bits(&self) -> u8 {
        self.bits_cell().load(Relaxed)
    }

    #[inline]
    pub fn set_bits(&self, mask: u8, on: bool) {
        if on {
            self.bits_cell().fetch_or(mask, Relaxed);
        } else {
            self.bits_cell().fetch_and(!mask, Relaxed);
        }
    }

    #[inline]
    fn byte(&self, i: usize) -> u8 {
        // SAFETY: within the header (the caller's contract on `at`).
        unsafe { *self.p.add(i) }
    }

    #[inline]
    pub fn nkey(&self) -> usize {
        self.byte(1) as usize
    }

    /// Value length and the varint's size.
    #[inline]
    fn nbytes_and_len(&self) -> (usize, usize) {
        let mut n = 0usize;
        let mut i = 0;
        loop {
            let b = self.byte(2 + i);
            n |= ((b & 0x7f) as usize) << (7 * i);
            i += 1;
            if b & 0x80 == 0 || i == 5 {
                return (n, i);
            }
        }
    }

    #[inline]
    pub fn nbytes(&self) -> usize {
        self.nbytes_and_len().0
    }

    /// Offset of the CAS (or of the access time without one).
    #[inline]
    fn cas_off(&self) -> usize {
        2 + self.nbytes_and_len().1
    }

    #[inline]
    fn atime_off(&self) -> usize {
        self.cas_off() + if self.bits() & HAS_CAS != 0 { 8 } else { 0 }
    }

    #[inline]
    fn flags_off(&self) -> usize {
        self.atime_off() + 4
    }

    #[inline]
    fn exp_off(&self) -> usize {
        self.flags_off() + if self.bits() & HAS_FLAGS != 0 { 4 } else { 0 }
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        header_len(self.bits(), self.nbytes())
    }

    /// Bytes the whole object takes.
    #[inline]
    pub fn size(&self) -> usize {
        let (n, _) = self.nbytes_and_len();
        header_len(self.bits(), n) + self.nkey() + n
    }

    #[inline]
    fn read_u32(&self, off: usize) -> u32 {
        // SAFETY: within the header; unaligned by design.
        unsafe { std::ptr::read_unaligned(self.p.add(off) as *const u32) }
    }

    #[inline]
    fn write_u32(&self, off: usize, v: u32) {
        // SAFETY: within the header; written only under the key's lock or
        // before the object is published.
        unsafe { std::ptr::write_unaligned(self.p.add(off) as *mut u32, v) }
    }

    #[inline]
    pub fn cas(&self) -> u64 {
        if self.bits() & HAS_CAS == 0 {
            return 0;
        }
        // SAFETY: HAS_CAS says the 8 bytes are there.
        unsafe { std::ptr::read_unaligned(self.p.add(self.cas_off()) as *const u64) }
    }

    #[inline]
    pub fn set_cas(&self, cas: u64) {
        if self.bits() & HAS_CAS != 0 {
            // SAFETY: HAS_CAS says the 8 bytes are there; as `write_u32`.
            unsafe { std::ptr::write_unaligned(self.p.add(self.cas_off()) as *mut u64, cas) }
        }
    }

    #[inline]
    pub fn atime(&self) -> u32 {
        self.read_u32(self.atime_off())
    }

    #[inline]
    pub fn set_atime(&self, t: u32) {
        self.write_u32(self.atime_off(), t)
    }

    #[inline]
    pub fn flags(&self) -> u32 {
        if self.bits() & HAS_FLAGS == 0 {
            return 0;
        }
        self.read_u32(self.flags_off())
    }

    #[inline]
    pub fn exptime(&self) -> u32 {
        if self.bits() & HAS_EXP == 0 {
            return 0;
        }
        self.read_u32(self.exp_off())
    }

    /// Whether a new exptime can be written in place.
    #[inline]
    pub fn has_exp_field(&self) -> bool {
        self.bits() & HAS_EXP != 0
    }

    /// Sets the exptime; only when `has_exp_field`.
    #[inline]
    pub fn set_exptime(&self, t: u32) {
        debug_assert!(self.has_exp_field());
        if self.has_exp_field() {
            self.write_u32(self.exp_off(), t)
        }
    }

    #[inline]
    pub fn key_ptr(&self) -> *mut u8 {
        // SAFETY: the key follows the header inside the object.
        unsafe { self.p.add(self.header_len()) }
    }

    /// The key; valid while the view's contract holds.
    #[inline]
    pub fn key<'a>(&self) -> &'a [u8] {
        // SAFETY: the key bytes are fixed once written and stay allocated
        // for as long as the caller's guarantee (see `Obj`).
        unsafe { std::slice::from_raw_parts(self.key_ptr(), self.nkey()) }
    }

    /// Key and value, with the header parsed once (the read path).
    #[inline]
    pub fn key_value<'a>(&self) -> (&'a [u8], &'a [u8]) {
        let (n, vl) = self.nbytes_and_len();
        let bits = self.bits();
        let h = 2
            + vl
            + if bits & HAS_CAS != 0 { 8 } else { 0 }
            + 4
            + if bits & HAS_FLAGS != 0 { 4 } else { 0 }
            + if bits & HAS_EXP != 0 { 4 } else { 0 };
        let nkey = self.nkey();
        // SAFETY: as `key` and `value`: the object's bytes, fixed once
        // written, kept by the caller's guarantee.
        unsafe {
            let k = self.p.add(h);
            (
                std::slice::from_raw_parts(k, nkey),
                std::slice::from_raw_parts(k.add(nkey), n),
            )
        }
    }

    #[inline]
    pub fn value_ptr(&self) -> *mut u8 {
        // SAFETY: the value follows the key inside the object.
        unsafe { self.key_ptr().add(self.nkey()) }
    }

    /// The value; valid while the view's contract holds and nobody is
    /// filling it.
    #[inline]
    pub fn value<'a>(&self) -> &'a [u8] {
        // SAFETY: as `key`; the value is written once before the object is
        // linked and never changed in place afterwards.
        unsafe { std::slice::from_raw_parts(self.value_ptr(), self.nbytes()) }
    }
}

/// Writes a header (and key) at `p`; the value is left to the caller.
///
/// # Safety
/// `p` points at `shape.size()` writable bytes nobody else uses.
pub(crate) unsafe fn write_header(p: *mut u8, shape: &Shape, key: &[u8], now: u32) -> Obj {
    debug_assert_eq!(key.len(), shape.nkey);
    let bits = shape.fixed_bits();
    let mut buf = [0u8; 32];
    buf[0] = bits;
    buf[1] = shape.nkey as u8;
    let mut i = 2;
    let mut n = shape.nbytes;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf[i] = b;
            i += 1;
            break;
        }
        buf[i] = b | 0x80;
        i += 1;
    }
    if shape.cas {
        i += 8; // set by the caller once the CAS is drawn
    }
    buf[i..i + 4].copy_from_slice(&now.to_ne_bytes());
    i += 4;
    if shape.flags != 0 {
        buf[i..i + 4].copy_from_slice(&shape.flags.to_ne_bytes());
        i += 4;
    }
    if shape.exptime != 0 {
        buf[i..i + 4].copy_from_slice(&shape.exptime.to_ne_bytes());
        i += 4;
    }
    // SAFETY: the caller gives `shape.size()` bytes, which covers the
    // header (`i` bytes) and the key.
    unsafe {
        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, i);
        std::ptr::copy_nonoverlapping(key.as_ptr(), p.add(i), key.len());
    }
    Obj { p }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_object_is_57_bytes() {
        let s = Shape {
            nkey: 10,
            nbytes: 32,
            flags: 0,
            exptime: 0,
            cas: true,
        };
        assert_eq!(s.size(), 57);
    }

    #[test]
    fn header_round_trips() {
        for (flags, exp, cas, nbytes) in [
            (0, 0, true, 0usize),
            (7, 0, true, 127),
            (0, 99, false, 128),
            (u32::MAX, u32::MAX, true, 1 << 21),
        ] {
            let key = b"some-key";
            let s = Shape {
                nkey: key.len(),
                nbytes,
                flags,
                exptime: exp,
                cas,
            };
            let mut buf = vec![0u8; s.size()];
            // SAFETY: `buf` has `s.size()` bytes.
            let o = unsafe { write_header(buf.as_mut_ptr(), &s, key, 77) };
            o.set_cas(12345);
            assert_eq!(o.size(), s.size());
            assert_eq!(o.key(), key);
            assert_eq!(o.nbytes(), nbytes);
            assert_eq!(o.flags(), flags);
            assert_eq!(o.exptime(), exp);
            assert_eq!(o.atime(), 77);
            assert_eq!(o.cas(), if cas { 12345 } else { 0 });
            o.set_bits(STALE | FETCHED, true);
            assert_eq!(o.flags(), flags);
            o.set_bits(STALE, false);
            assert_eq!(o.bits() & (STALE | FETCHED), FETCHED);
        }
    }
}
