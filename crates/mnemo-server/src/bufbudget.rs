//! `-o read_buf_mem_limit`: memcached's cap on a worker's connection
//! buffers, reproduced as accounting.
//!
//! memcached takes each connection's 16 KB read buffer and each 16 KB
//! bundle of response objects (13 responses on a 64-bit build) from one
//! per-thread cache, limited to `limit / threads / 16 KB` objects (at
//! least one). A connection that needs a read buffer when none is left is
//! closed (`read_buf_oom`); a command that needs a response object when
//! none is left closes its connection, except a multi-key get part-way
//! through, which drops its replies and answers `SERVER_ERROR out of
//! memory writing get response` (`response_obj_oom`).
//!
//! mnemo's buffers are shaped differently (one output buffer per
//! connection), so this module counts what memcached would hold: a
//! connection holds a read buffer while it has unparsed input (as
//! memcached's is released when empty), a response from the start of a
//! command (one per key of a get) until its reply is written. Nothing of
//! it runs without the option: the worker hands out no budget then.

use std::cell::Cell;

/// memcached's READ_BUFFER_SIZE: the size of every cached object.
const OBJECT: usize = 16 * 1024;
/// memcached's MAX_RESP_PER_BUNDLE on 64-bit Linux:
/// (16384 - 24-byte bundle header) / 1184-byte `mc_resp`.
pub const RESP_PER_BUNDLE: usize = 13;

/// One worker's objects. Single-threaded, like the worker that owns it.
pub struct BufBudget {
    cap: usize,
    rbufs: Cell<usize>,
    resps: Cell<usize>,
    bundles: Cell<usize>,
}

impl BufBudget {
    /// The budget of one of `threads` workers under `limit` bytes, or
    /// `None` without a limit.
    pub fn new(limit: u32, threads: usize) -> Option<BufBudget> {
        if limit == 0 {
            return None;
        }
        let per = limit as usize / threads.max(1);
        Some(BufBudget {
            cap: (per / OBJECT).max(1),
            rbufs: Cell::new(0),
            resps: Cell::new(0),
            bundles: Cell::new(0),
        })
    }

    fn in_use(&self) -> usize {
        self.rbufs.get() + self.bundles.get()
    }

    /// A connection takes a read buffer; false when none is left.
    pub fn take_rbuf(&self) -> bool {
        if self.in_use() >= self.cap {
            return false;
        }
        self.rbufs.set(self.rbufs.get() + 1);
        true
    }

    pub fn give_rbuf(&self) {
        self.rbufs.set(self.rbufs.get().saturating_sub(1));
    }

    /// A command takes a response object; false when none is left.
    pub fn take_resp(&self) -> bool {
        let n = self.resps.get();
        if n >= self.bundles.get() * RESP_PER_BUNDLE {
            if self.in_use() >= self.cap {
                return false;
            }
            self.bundles.set(self.bundles.get() + 1);
        }
        self.resps.set(n + 1);
        true
    }

    /// `n` responses were written. Emptied bundles go back, but the last
    /// one is kept, as memcached keeps its thread's final open bundle.
    pub fn give_resps(&self, n: usize) {
        let left = self.resps.get().saturating_sub(n);
        self.resps.set(left);
        let need = left.div_ceil(RESP_PER_BUNDLE).max(1);
        self.bundles.set(self.bundles.get().min(need));
    }

    /// Responses taken so far (a caller compares it across a request).
    pub fn resps(&self) -> usize {
        self.resps.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_shared_by_read_buffers_and_responses() {
        // 1 MB over one thread: 64 objects.
        let b = BufBudget::new(1024 * 1024, 1).expect("limited");
        for _ in 0..59 {
            assert!(b.take_rbuf());
            assert!(b.take_resp());
        }
        // 59 read buffers and 5 bundles (59 responses) fill all 64.
        assert!(!b.take_rbuf());
        assert!(b.take_resp()); // room left in the fifth bundle
        b.give_resps(60);
        assert!(b.take_rbuf());
        assert!(BufBudget::new(0, 4).is_none());
        assert_eq!(BufBudget::new(1, 4).map(|b| b.cap), Some(1));
    }
}
