//! A connection's output: reply bytes, with large values referenced in
//! item memory rather than copied (memcached's iovecs over item data).
//!
//! Replies are appended to one byte buffer as before. A value of at least
//! [`REF_MIN_BYTES`] is not copied: the item is pinned (`ItemRef::pin`)
//! and the value recorded as a reference at the buffer position it
//! belongs to; the write then gathers bytes and values with one `writev`.
//! Smaller values are copied: below that size a copy costs less than
//! taking and releasing a pin, and they cannot make the buffer big.
//!
//! Invariant the positions rely on: every reference is preceded, within
//! its own reply, by at least one byte of header (`VALUE …`, `VA …`, a
//! binary header), so a truncation to a length taken before a reply was
//! started always lies strictly below that reply's references, and
//! [`Out::cull_to`] drops exactly the references past the cut.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::ops::{Deref, DerefMut};

use mnemo_engine::{EngineItem, Pinned};

/// Values at least this big are referenced, not copied.
pub const REF_MIN_BYTES: usize = 16 * 1024;
/// Most slices one `writev` takes here (IOV_MAX is 1024).
const MAX_IOV: usize = 64;

struct ValueRef {
    /// Position in `bytes` the value goes out at.
    at: usize,
    value: Pinned,
}

/// Reply bytes and referenced values, in order.
pub struct Out {
    bytes: Vec<u8>,
    /// Next byte of `bytes` to write.
    wpos: usize,
    /// Values not yet (entirely) written, in position order.
    refs: VecDeque<ValueRef>,
    /// Bytes of the front reference already written.
    ref_sent: usize,
    /// Bytes of every queued reference, minus `ref_sent`.
    ref_unsent: usize,
    /// UDP frames datagrams from plain bytes: it always copies.
    refs_enabled: bool,
}

impl Deref for Out {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl DerefMut for Out {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl Out {
    /// An output queue; `refs_enabled` lets it reference large values.
    pub fn new(refs_enabled: bool) -> Out {
        Out {
            bytes: Vec::new(),
            wpos: 0,
            refs: VecDeque::new(),
            ref_sent: 0,
            ref_unsent: 0,
            refs_enabled,
        }
    }

    /// Appends an item's value: referenced when large, else copied.
    /// Generic so a get's reply is compiled per engine (`GetVisitor`).
    pub fn value<I: EngineItem>(&mut self, it: &I) {
        if self.refs_enabled && it.value_len() >= REF_MIN_BYTES {
            if let Some(value) = it.pin_any() {
                self.drop_refs_past(self.bytes.len());
                self.ref_unsent += value.len();
                self.refs.push_back(ValueRef {
                    at: self.bytes.len(),
                    value,
                });
                return;
            }
        }
        it.write_value(&mut self.bytes);
    }

    /// Whether anything is left to write.
    pub fn has_unsent(&self) -> bool {
        self.wpos < self.bytes.len() || !self.refs.is_empty()
    }

    /// Bytes left to write, referenced values included.
    pub fn unsent(&self) -> usize {
        self.bytes.len() - self.wpos + self.ref_unsent
    }

    /// Bytes queued since the last complete write (what a get measures
    /// against its pause threshold), referenced values included.
    pub fn queued(&self) -> usize {
        self.bytes.len() + self.ref_unsent
    }

    /// Values referenced and not yet written.
    #[cfg(test)]
    pub fn referenced(&self) -> usize {
        self.refs.len()
    }

    /// Takes back everything queued after `len` bytes of the buffer that
    /// is not written yet (a culling `get`, the ASCII auth handshake).
    pub fn cull_to(&mut self, len: usize) {
        let mut keep = len.max(self.wpos);
        if let Some(front) = self.refs.front() {
            if front.at == self.wpos && self.ref_sent > 0 {
                // Partly written: the client has its first bytes already.
                keep = keep.max(front.at);
            }
        }
        self.bytes.truncate(keep.min(self.bytes.len()));
        self.drop_refs_past(self.bytes.len());
    }

    /// References past the end of `bytes` were truncated away.
    fn drop_refs_past(&mut self, len: usize) {
        while let Some(last) = self.refs.back() {
            if last.at <= len {
                break;
            }
            if self.refs.len() == 1 {
                self.ref_unsent -= last.value.len() - self.ref_sent;
                self.ref_sent = 0;
            } else {
                self.ref_unsent -= last.value.len();
            }
            self.refs.pop_back();
        }
    }

    /// One `write` (or `writev` when values are referenced) of what is
    /// unsent; returns the bytes written.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        self.drop_refs_past(self.bytes.len());
        if self.refs.is_empty() {
            let n = w.write(&self.bytes[self.wpos..])?;
            self.wpos += n;
            return Ok(n);
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut used = 0;
        let mut pos = self.wpos;
        'refs: for (i, r) in self.refs.iter().enumerate() {
            if pos < r.at {
                iov[used] = IoSlice::new(&self.bytes[pos..r.at]);
                used += 1;
                pos = r.at;
                if used == MAX_IOV {
                    break;
                }
            }
            let mut skip = if i == 0 { self.ref_sent } else { 0 };
            let mut full = false;
            r.value.for_each_part(|part| {
                if full {
                    return;
                }
                if skip >= part.len() {
                    skip -= part.len();
                    return;
                }
                iov[used] = IoSlice::new(&part[skip..]);
                skip = 0;
                used += 1;
                full = used == MAX_IOV;
            });
            if full {
                break 'refs;
            }
        }
        // Room left means every reference went in: the tail follows.
        if used < MAX_IOV && pos < self.bytes.len() {
            iov[used] = IoSlice::new(&self.bytes[pos..]);
            used += 1;
        }
        let n = w.write_vectored(&iov[..used])?;
        self.advance(n);
        Ok(n)
    }

    /// What is unsent when it is all plain bytes (no referenced value):
    /// the one slice a batched send takes.
    pub fn plain_unsent(&self) -> Option<&[u8]> {
        if self.refs.is_empty() && self.wpos < self.bytes.len() {
            Some(&self.bytes[self.wpos..])
        } else {
            None
        }
    }

    /// `n` bytes of [`Out::plain_unsent`] were written.
    pub fn advance_plain(&mut self, n: usize) {
        debug_assert!(self.refs.is_empty() && n <= self.bytes.len() - self.wpos);
        self.wpos = (self.wpos + n).min(self.bytes.len());
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.refs.front() {
                Some(r) if r.at == self.wpos => {
                    let take = n.min(r.value.len() - self.ref_sent);
                    self.ref_sent += take;
                    self.ref_unsent -= take;
                    n -= take;
                    if self.ref_sent == r.value.len() {
                        // Written: the item is released here.
                        self.refs.pop_front();
                        self.ref_sent = 0;
                    }
                }
                next => {
                    let end = next.map_or(self.bytes.len(), |r| r.at);
                    let take = n.min(end - self.wpos);
                    debug_assert!(take > 0, "writev wrote past the queue");
                    if take == 0 {
                        return;
                    }
                    self.wpos += take;
                    n -= take;
                }
            }
        }
    }

    /// Everything is written: empty the queue for the next batch, giving
    /// a buffer bigger than `shrink_above` back.
    pub fn reset(&mut self, shrink_above: usize) {
        debug_assert!(!self.has_unsent());
        self.refs.clear();
        self.ref_sent = 0;
        self.ref_unsent = 0;
        self.bytes.clear();
        self.wpos = 0;
        if self.bytes.capacity() > shrink_above {
            self.bytes = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemo_engine::{Config, Engine, GetMode, StoreMode, ThreadStats};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn engine() -> (Arc<Engine>, Arc<ThreadStats>) {
        let e = Engine::new(Config {
            mem_limit: 64 << 20,
            item_size_max: 4 << 20,
            ..Config::default()
        })
        .expect("config");
        let ts = e.new_thread_stats();
        (e, ts)
    }

    /// Accepts at most the next of `sizes` bytes per call, as a socket
    /// with a small send buffer does.
    struct Trickle {
        got: Vec<u8>,
        sizes: Vec<usize>,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut room = self.sizes[self.calls % self.sizes.len()].max(1);
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room);
                self.got.extend_from_slice(&b[..take]);
                room -= take;
                n += take;
                if room == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Queues `VALUE`-like replies for `lens` into a referencing queue
    /// and a copying one; returns both and the engine.
    fn queue(lens: &[usize]) -> (Out, Vec<u8>, Arc<Engine>) {
        let (e, ts) = engine();
        let mut out = Out::new(true);
        let mut copy = Out::new(false);
        for (i, &len) in lens.iter().enumerate() {
            let key = format!("k{i}");
            let v: Vec<u8> = (0..len).map(|j| (i * 7 + j % 253) as u8).collect();
            e.store(StoreMode::Set, key.as_bytes(), 0, 0, &v, 0, &ts);
            for o in [&mut out, &mut copy] {
                o.extend_from_slice(format!("VALUE {key}\r\n").as_bytes());
                e.get(key.as_bytes(), GetMode::Get, &ts, |it| o.value(it))
                    .expect("hit");
                o.extend_from_slice(b"\r\n");
            }
        }
        (out, copy.to_vec(), e)
    }

    fn drain(out: &mut Out, sizes: Vec<usize>) -> Vec<u8> {
        let mut w = Trickle {
            got: Vec::new(),
            sizes,
            calls: 0,
        };
        while out.has_unsent() {
            let before = out.unsent();
            let n = out.write_to(&mut w).expect("write");
            assert_eq!(out.unsent(), before - n);
        }
        out.reset(0);
        w.got
    }

    #[test]
    fn large_values_are_referenced_small_ones_copied() {
        let (out, copy, e) = queue(&[10, REF_MIN_BYTES - 1, REF_MIN_BYTES, 700_000]);
        assert_eq!(out.referenced(), 2);
        assert_eq!(e.pinned_items(), 2);
        // Only headers and small values sit in the buffer.
        assert!(out.len() < 2 * REF_MIN_BYTES, "{}", out.len());
        assert_eq!(out.queued(), copy.len());
        let mut out = out;
        assert_eq!(drain(&mut out, vec![1 << 20]), copy);
        assert_eq!(e.pinned_items(), 0, "written values are released");
    }

    #[test]
    fn cull_and_drop_release_what_they_take_back() {
        let (mut out, _, e) = queue(&[REF_MIN_BYTES, 5, REF_MIN_BYTES * 2]);
        assert_eq!(e.pinned_items(), 2);
        let second_reply_start = "VALUE k0\r\n".len() + REF_MIN_BYTES + 2;
        // Positions count buffer bytes only: the first value is not in it.
        out.cull_to(second_reply_start - REF_MIN_BYTES);
        assert_eq!(out.referenced(), 1);
        assert_eq!(e.pinned_items(), 1);
        drop(out);
        assert_eq!(e.pinned_items(), 0);
    }

    #[test]
    fn more_parts_than_one_writev_takes() {
        let lens = vec![REF_MIN_BYTES; 3 * MAX_IOV];
        let (mut out, copy, e) = queue(&lens);
        assert_eq!(drain(&mut out, vec![usize::MAX]), copy);
        assert_eq!(e.pinned_items(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the mix of sizes and however short the writes, the
        /// client gets exactly the bytes copying would have sent, and
        /// every pin is released.
        #[test]
        fn referenced_output_matches_copied_output(
            lens in proptest::collection::vec(
                prop_oneof![0usize..100, REF_MIN_BYTES..REF_MIN_BYTES + 3000, 500_000usize..1_200_000],
                1..12,
            ),
            sizes in proptest::collection::vec(1usize..70_000, 1..8),
        ) {
            let (mut out, copy, e) = queue(&lens);
            prop_assert_eq!(drain(&mut out, sizes), copy);
            prop_assert_eq!(e.pinned_items(), 0);
        }
    }
}
