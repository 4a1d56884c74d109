//! [`ReadBuf`]: the read buffer every connection parses from in place.
//!
//! Bytes live in `data[start..end]`; reads land in the spare tail
//! `data[end..]`, so a request or reply is parsed where the kernel put it
//! and consumed by moving `start`. Consumed space is reclaimed by moving
//! what is left to the front (compaction) only when room is needed, and the
//! buffer grows only up to a limit the caller gives per read, so a peer
//! cannot make it grow without bound.
//!
//! The policy of when to compact, grow, shrink or pool buffers belongs to
//! the caller where it differs (the server pools 16 KB buffers and grows
//! only for long lines); [`ReadBuf::reserve`] and [`ReadBuf::fill_from`]
//! are the common policy, the primitives ([`ReadBuf::compact`],
//! [`ReadBuf::grow_to`], [`ReadBuf::take_storage`], [`ReadBuf::spare_mut`]
//! with [`ReadBuf::commit`]) let a caller build its own on the same storage.

use std::io::{self, Read};

/// Smallest size a buffer grows to from empty.
const MIN_GROW: usize = 4096;

/// How one [`ReadBuf::fill_from`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// `n` bytes arrived. `short`: fewer than there was room for, so the
    /// socket's queue is empty; with edge-triggered readiness new bytes
    /// raise a new event and the read that would only say EAGAIN can be
    /// skipped (not once the peer's FIN is reported: only the read
    /// returning 0 shows it).
    Data { n: usize, short: bool },
    /// The peer closed its side (read returned 0).
    Eof,
    /// Nothing to read now.
    WouldBlock,
    /// The buffer is at its limit with no room left; nothing was read.
    Full,
}

/// A read buffer. See the module docs.
#[derive(Debug, Default)]
pub struct ReadBuf {
    /// Its whole length is usable storage (zero-filled once, never
    /// uninitialised), so `data.len()` is the capacity.
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// An empty buffer that allocates on first use.
    pub fn new() -> ReadBuf {
        ReadBuf::default()
    }

    /// An empty buffer with `n` bytes of storage.
    pub fn with_capacity(n: usize) -> ReadBuf {
        ReadBuf::from_storage(vec![0; n])
    }

    /// An empty buffer over `v`'s bytes (e.g. one taken from a pool); all
    /// of `v.len()` is used as storage, its contents are ignored.
    pub fn from_storage(v: Vec<u8>) -> ReadBuf {
        ReadBuf {
            data: v,
            start: 0,
            end: 0,
        }
    }

    /// Gives the storage back (for a pool) and leaves this buffer empty
    /// with no storage. Unconsumed bytes are dropped with it.
    pub fn take_storage(&mut self) -> Vec<u8> {
        self.start = 0;
        self.end = 0;
        std::mem::take(&mut self.data)
    }

    /// Bytes read and not yet consumed.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The unconsumed bytes, writable (for callers that rewrite in place).
    pub fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Number of unconsumed bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes of storage.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Offset of the first unconsumed byte in the storage.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Room left after the filled bytes, without compacting or growing.
    pub fn spare_len(&self) -> usize {
        self.data.len() - self.end
    }

    /// Drops the first `n` unconsumed bytes (all of them if fewer). Once
    /// everything is consumed the next read starts at the front again.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Consumes `n` bytes (at most all) and returns them; they stay valid
    /// until the buffer is next changed.
    pub fn take(&mut self, n: usize) -> &[u8] {
        let s = self.start;
        let n = n.min(self.len());
        self.consume(n);
        &self.data[s..s + n]
    }

    /// Forgets all unconsumed bytes; keeps the storage.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Moves the unconsumed bytes to the front of the storage.
    pub fn compact(&mut self) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Grows the storage to `n` bytes (never shrinks).
    pub fn grow_to(&mut self, n: usize) {
        if n > self.data.len() {
            self.data.resize(n, 0);
        }
    }

    /// The free tail, for callers that read into it themselves (e.g. an
    /// io_uring read); report what arrived with [`ReadBuf::commit`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.end..]
    }

    /// Marks `n` bytes of the spare tail as filled.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.spare_len());
        self.end = (self.end + n).min(self.data.len());
    }

    /// Makes at least `want` bytes of spare room if `limit` (total storage)
    /// allows: compacts first when consumed bytes sit at the front, then
    /// grows to the larger of what is needed and double the size, capped
    /// at `limit`. Returns the spare room there is afterwards (0: full at
    /// the limit).
    pub fn reserve(&mut self, want: usize, limit: usize) -> usize {
        if self.spare_len() >= want {
            return self.spare_len();
        }
        self.compact();
        if self.spare_len() < want && self.data.len() < limit {
            let need = self.end.saturating_add(want);
            let n = need.max(self.data.len() * 2).max(MIN_GROW).min(limit);
            self.grow_to(n);
        }
        self.spare_len()
    }

    /// One read from `r` into the spare room, after [`ReadBuf::reserve`]
    /// of `want` bytes within `limit`; EINTR is retried, other errors are
    /// returned.
    pub fn fill_from(&mut self, r: &mut impl Read, want: usize, limit: usize) -> io::Result<Fill> {
        let room = self.reserve(want, limit);
        if room == 0 {
            return Ok(Fill::Full);
        }
        loop {
            match r.read(&mut self.data[self.end..]) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => {
                    self.end += n;
                    return Ok(Fill::Data { n, short: n < room });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out scripted results.
    struct Script(Vec<io::Result<Vec<u8>>>);

    impl Read for Script {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match self.0.remove(0) {
                Ok(mut v) => {
                    let n = v.len().min(b.len());
                    b[..n].copy_from_slice(&v[..n]);
                    if n < v.len() {
                        self.0.insert(0, Ok(v.split_off(n)));
                    }
                    Ok(n)
                }
                Err(e) => Err(e),
            }
        }
    }

    #[test]
    fn fill_consume_take() {
        let mut b = ReadBuf::with_capacity(8);
        let mut r = Script(vec![Ok(b"abc".to_vec())]);
        assert_eq!(
            b.fill_from(&mut r, 1, 8).unwrap(),
            Fill::Data { n: 3, short: true }
        );
        assert_eq!(b.filled(), b"abc");
        assert_eq!(b.take(2), b"ab");
        assert_eq!(b.filled(), b"c");
        assert_eq!(b.start(), 2);
        assert_eq!(b.take(5), b"c");
        // Emptied: the next read starts at the front.
        assert!(b.is_empty());
        assert_eq!(b.start(), 0);
        assert_eq!(b.fill_from(&mut r, 1, 8).unwrap(), Fill::WouldBlock);
    }

    #[test]
    fn compacts_before_growing() {
        let mut b = ReadBuf::with_capacity(8);
        let mut r = Script(vec![Ok(b"12345678".to_vec()), Ok(b"9".to_vec())]);
        assert_eq!(
            b.fill_from(&mut r, 1, 8).unwrap(),
            Fill::Data { n: 8, short: false }
        );
        b.consume(6);
        assert_eq!(
            b.fill_from(&mut r, 1, 8).unwrap(),
            Fill::Data { n: 1, short: true }
        );
        assert_eq!(b.filled(), b"789");
        assert_eq!(b.capacity(), 8);
        assert_eq!(b.start(), 0);
    }

    #[test]
    fn grows_to_limit_then_full() {
        let mut b = ReadBuf::new();
        assert_eq!(b.capacity(), 0);
        let big = vec![7u8; 10_000];
        let mut r = Script(vec![Ok(big)]);
        let mut total = 0;
        loop {
            match b.fill_from(&mut r, 1, 6000).unwrap() {
                Fill::Data { n, .. } => total += n,
                Fill::Full => break,
                f => panic!("{f:?}"),
            }
        }
        assert_eq!(total, 6000);
        assert_eq!(b.capacity(), 6000);
        assert_eq!(b.len(), 6000);
        // Consuming makes room again without growing.
        b.consume(1000);
        assert_eq!(b.reserve(1, 6000), 1000);
        assert_eq!(b.capacity(), 6000);
    }

    #[test]
    fn reserve_grows_for_a_large_want() {
        let mut b = ReadBuf::with_capacity(16);
        b.spare_mut()[..4].copy_from_slice(b"abcd");
        b.commit(4);
        assert_eq!(b.reserve(100_000, usize::MAX), 100_000);
        assert_eq!(b.filled(), b"abcd");
        let mut full = ReadBuf::with_capacity(64);
        full.commit(64);
        assert_eq!(full.reserve(1, 64), 0);
    }

    #[test]
    fn eof_error_and_interrupt() {
        let mut b = ReadBuf::with_capacity(4);
        let mut r = Script(vec![
            Err(io::ErrorKind::Interrupted.into()),
            Ok(b"x".to_vec()),
            Ok(Vec::new()),
            Err(io::ErrorKind::ConnectionReset.into()),
        ]);
        assert_eq!(
            b.fill_from(&mut r, 1, 4).unwrap(),
            Fill::Data { n: 1, short: true }
        );
        assert_eq!(b.fill_from(&mut r, 1, 4).unwrap(), Fill::Eof);
        assert!(b.fill_from(&mut r, 1, 4).is_err());
        assert_eq!(b.filled(), b"x");
    }

    #[test]
    fn storage_round_trip() {
        let mut b = ReadBuf::from_storage(vec![1; 32]);
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 32);
        b.commit(3);
        b.clear();
        let v = b.take_storage();
        assert_eq!(v.len(), 32);
        assert_eq!(b.capacity(), 0);
        b.grow_to(10);
        b.compact();
        assert_eq!(b.capacity(), 10);
        b.filled_mut();
    }
}
