//! The replication backlog (docs/REPLICATION.md section 6): the last
//! `--repl-backlog-size` bytes of a node's outgoing stream, whole frames
//! only, with their stream offsets, so that a peer coming back can be
//! sent what it missed (a partial resync) or told it must take a full
//! copy. No I/O and no locking; the server owns one behind whatever
//! lock it chooses.

use std::collections::VecDeque;

/// What a peer asking to continue from (`replid`, `offset`) gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// Stream from `offset`, which is still in the ring at a frame start.
    Partial { offset: u64 },
    /// A full copy, then the stream from `offset` (the ring's end now).
    Full { offset: u64 },
}

#[derive(Debug)]
pub struct Backlog {
    replid: u64,
    cap: usize,
    bytes: VecDeque<u8>,
    /// Stream offset of each retained frame's first byte, ascending. The
    /// offset a peer continues from must be one of these (or the end):
    /// any other would start it mid-frame.
    starts: VecDeque<u64>,
    /// Stream offset of `bytes[0]`.
    first: u64,
}

impl Backlog {
    /// An empty backlog of stream `replid` holding at most `cap` bytes.
    pub fn new(replid: u64, cap: usize) -> Backlog {
        Backlog {
            replid,
            cap,
            bytes: VecDeque::new(),
            starts: VecDeque::new(),
            first: 0,
        }
    }

    pub fn replid(&self) -> u64 {
        self.replid
    }

    /// Offset of the oldest byte still held.
    pub fn first_offset(&self) -> u64 {
        self.first
    }

    /// Offset the next frame will get: the stream's length so far.
    pub fn next_offset(&self) -> u64 {
        self.first + self.bytes.len() as u64
    }

    /// Bytes held, at most the capacity.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends one encoded frame, dropping the oldest whole frames to
    /// make room. A frame larger than the whole backlog empties it and
    /// only moves the offset on: peers behind it need a full copy.
    pub fn append(&mut self, frame: &[u8]) {
        let end = self.next_offset() + frame.len() as u64;
        if frame.len() > self.cap {
            self.bytes.clear();
            self.starts.clear();
            self.first = end;
            return;
        }
        while self.bytes.len() + frame.len() > self.cap {
            self.starts.pop_front();
            let next = self.starts.front().copied().unwrap_or(self.next_offset());
            // Offsets are ours, so `next - first` is a frame's length.
            let drop = (next - self.first) as usize;
            self.bytes.drain(..drop);
            self.first = next;
        }
        self.starts.push_back(self.next_offset());
        self.bytes.extend(frame);
    }

    /// Whether a peer that followed stream `replid` up to `offset` can
    /// continue from the ring.
    pub fn resync(&self, replid: u64, offset: u64) -> Resync {
        let at_boundary =
            offset == self.next_offset() || self.starts.binary_search(&offset).is_ok();
        if replid == self.replid && at_boundary {
            Resync::Partial { offset }
        } else {
            Resync::Full {
                offset: self.next_offset(),
            }
        }
    }

    /// Appends to `out` up to `max` bytes of the stream from `offset`;
    /// returns how many, or `None` if `offset` has left the ring (or is
    /// past its end): the peer fell behind and needs a full copy.
    pub fn read(&self, offset: u64, max: usize, out: &mut Vec<u8>) -> Option<usize> {
        if offset < self.first || offset > self.next_offset() {
            return None;
        }
        let from = (offset - self.first) as usize;
        let n = max.min(self.bytes.len() - from);
        // Slice copies, not a byte iterator: the caller (a sender thread)
        // holds the lock every writer needs while this runs.
        let (a, b) = self.bytes.as_slices();
        let end = from + n;
        if from < a.len() {
            out.extend_from_slice(&a[from..end.min(a.len())]);
        }
        if end > a.len() {
            out.extend_from_slice(&b[from.saturating_sub(a.len())..end - a.len()]);
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    #[test]
    fn keeps_whole_frames_and_reads_them_back() {
        let mut b = Backlog::new(7, 10);
        b.append(&frame(4, 1));
        b.append(&frame(4, 2));
        assert_eq!((b.first_offset(), b.next_offset()), (0, 8));
        // A third frame drops the first, not a part of it.
        b.append(&frame(3, 3));
        assert_eq!((b.first_offset(), b.next_offset(), b.len()), (4, 11, 7));
        let mut out = Vec::new();
        assert_eq!(b.read(4, 100, &mut out), Some(7));
        assert_eq!(out, [2, 2, 2, 2, 3, 3, 3]);
        out.clear();
        assert_eq!(b.read(8, 2, &mut out), Some(2));
        assert_eq!(out, [3, 3]);
        assert_eq!(b.read(11, 2, &mut out), Some(0));
        assert_eq!(b.read(3, 2, &mut out), None);
        assert_eq!(b.read(12, 2, &mut out), None);
    }

    #[test]
    fn partial_only_from_a_frame_start_of_this_stream() {
        let mut b = Backlog::new(7, 10);
        for i in 0..5 {
            b.append(&frame(3, i));
        }
        // Held: frames at 6, 9, 12; end 15.
        assert_eq!(b.first_offset(), 6);
        assert_eq!(b.resync(7, 9), Resync::Partial { offset: 9 });
        assert_eq!(b.resync(7, 15), Resync::Partial { offset: 15 });
        assert_eq!(b.resync(7, 3), Resync::Full { offset: 15 });
        assert_eq!(b.resync(7, 10), Resync::Full { offset: 15 });
        assert_eq!(b.resync(7, 16), Resync::Full { offset: 15 });
        assert_eq!(b.resync(8, 9), Resync::Full { offset: 15 });
    }

    #[test]
    fn a_frame_larger_than_the_backlog_empties_it() {
        let mut b = Backlog::new(1, 8);
        b.append(&frame(4, 1));
        b.append(&frame(9, 2));
        assert!(b.is_empty());
        assert_eq!((b.first_offset(), b.next_offset()), (13, 13));
        assert_eq!(b.resync(1, 4), Resync::Full { offset: 13 });
        assert_eq!(b.resync(1, 13), Resync::Partial { offset: 13 });
        b.append(&frame(2, 3));
        assert_eq!(b.resync(1, 13), Resync::Partial { offset: 13 });
    }

    proptest! {
        /// Whatever the frame sizes: bounded, whole frames, and what is
        /// held is exactly the newest frames that fit.
        #[test]
        fn holds_the_newest_whole_frames_within_its_size(
            cap in 0usize..64,
            sizes in prop::collection::vec(1usize..20, 0..60),
        ) {
            let mut b = Backlog::new(1, cap);
            let mut all: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut off = 0u64;
            for (i, &n) in sizes.iter().enumerate() {
                let f = frame(n, i as u8);
                b.append(&f);
                all.push((off, f));
                off += n as u64;
                prop_assert!(b.len() <= cap);
                prop_assert_eq!(b.next_offset(), off);
            }
            let mut out = Vec::new();
            prop_assert_eq!(b.read(b.first_offset(), usize::MAX, &mut out), Some(b.len()));
            let held: Vec<u8> = all
                .iter()
                .filter(|(o, _)| *o >= b.first_offset())
                .flat_map(|(_, f)| f.iter().copied())
                .collect();
            prop_assert_eq!(&out, &held);
            // Every frame start still held resumes partially, and the one
            // before the oldest held (if any) cannot.
            for (o, _) in &all {
                let want_partial = *o >= b.first_offset();
                let got = b.resync(1, *o);
                prop_assert_eq!(matches!(got, Resync::Partial { .. }), want_partial);
            }
        }
    }
}
