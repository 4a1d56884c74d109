//! Batched socket I/O over io_uring.
//!
//! The epoll loop stays: it says which connections are ready. What changes
//! is how the ready connections read and reply. Instead of one `recv` and
//! one `send` system call per connection, the worker hands the reads of a
//! whole event round to the kernel in one `io_uring_enter`, runs the
//! requests, and hands all the replies over in a second one. Where a round
//! holds tens of connections (a busy server), that is two system calls in
//! place of a hundred.
//!
//! Every operation carries `MSG_DONTWAIT`, which makes io_uring complete
//! it during the submission (with `-EAGAIN` where the socket has nothing
//! or no room) rather than park it; [`Batch::run`] waits for every
//! completion before it returns. So no buffer is ever in the kernel's hands
//! once `run` is back, and the connection code keeps its plain ownership.
//!
//! Where io_uring is missing or forbidden (old kernel, seccomp,
//! `kernel.io_uring_disabled`), or `-o no_io_uring` is given, the worker
//! does the per-connection system calls as before.

use io_uring::{opcode, squeue, types, IoUring};
use mnemo_net::Key;
use std::io;

/// Submission queue size; bigger rounds go in several submissions.
const ENTRIES: u32 = 256;

/// One socket operation of a round.
pub struct Req {
    /// The worker's key of the connection; its index is the socket's slot
    /// in the ring's registered-file table when `fixed`.
    pub conn: Key,
    pub fd: i32,
    /// The buffer's address (an integer so that the worker's reusable
    /// list of requests stays `Send`; it is empty between rounds). Only
    /// [`Batch::run`]'s caller vouches for it.
    pub addr: usize,
    pub len: usize,
    pub send: bool,
    /// `fd` is registered with the ring at `conn.index()` (see
    /// [`Batch::register`]): the kernel skips the descriptor lookup.
    pub fixed: bool,
}

pub struct Batch {
    ring: IoUring,
    /// Size of the registered-file table (0: none).
    table: u32,
}

impl Batch {
    /// A ring for the calling thread (it must be the one that submits).
    pub fn new(table: usize) -> io::Result<Batch> {
        // Single issuer and deferred task running cut the ring's own
        // bookkeeping; kernels before 6.1 refuse them, so fall back to a
        // plain ring there.
        let ring = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(ENTRIES)
        {
            Ok(r) => r,
            Err(_) => IoUring::new(ENTRIES)?,
        };
        let table = table.min(u32::MAX as usize) as u32;
        let table = match ring.submitter().register_files_sparse(table) {
            Ok(()) => table,
            Err(_) => 0,
        };
        Ok(Batch { ring, table })
    }

    /// Registers a connection's socket at its slot index, sparing the
    /// kernel a descriptor lookup per operation; `false` when it is not
    /// (slot past the table, or refused), and the plain descriptor is
    /// used. A registered socket stays open until [`Batch::unregister`].
    pub fn register(&mut self, slot: usize, fd: i32) -> bool {
        slot < self.table as usize
            && self
                .ring
                .submitter()
                .register_files_update(slot as u32, &[fd])
                .is_ok()
    }

    /// Drops the ring's reference to the socket at `slot`; must come
    /// before the connection closes, or the socket would live on.
    pub fn unregister(&mut self, slot: usize) {
        if let Err(e) = self
            .ring
            .submitter()
            .register_files_update(slot as u32, &[-1])
        {
            // The ring would keep the socket open: the peer would never
            // see the close. Nothing sane is left to do.
            eprintln!("mnemo: cannot release a registered socket: {e}");
            std::process::abort();
        }
    }

    /// Runs `reqs`, appending `(index in reqs, result)` to `results` for
    /// each, the result being bytes moved or a negated errno as the
    /// kernel returns it. The kernel touches no buffer after this returns
    /// (every operation has completed by then, see the module docs).
    ///
    /// # Safety
    /// For the whole call, every request's `addr..addr + len` must be one
    /// live allocation: for a receive, writable and neither read nor
    /// written through any other path (no two receives may overlap); for
    /// a send, readable and not written. The kernel writes received bytes
    /// there; nothing checks the addresses.
    pub unsafe fn run(&mut self, reqs: &[Req], results: &mut Vec<(usize, i32)>) -> io::Result<()> {
        let mut base = 0;
        for chunk in reqs.chunks(ENTRIES as usize) {
            {
                let mut sq = self.ring.submission();
                for (k, r) in chunk.iter().enumerate() {
                    let len = r.len.min(u32::MAX as usize) as u32;
                    let entry = match (r.send, r.fixed) {
                        (true, false) => {
                            opcode::Send::new(types::Fd(r.fd), r.addr as *const u8, len)
                                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                                .build()
                        }
                        (true, true) => opcode::Send::new(
                            types::Fixed(r.conn.index() as u32),
                            r.addr as *const u8,
                            len,
                        )
                        .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                        .build(),
                        (false, false) => {
                            opcode::Recv::new(types::Fd(r.fd), r.addr as *mut u8, len)
                                .flags(libc::MSG_DONTWAIT)
                                .build()
                        }
                        (false, true) => opcode::Recv::new(
                            types::Fixed(r.conn.index() as u32),
                            r.addr as *mut u8,
                            len,
                        )
                        .flags(libc::MSG_DONTWAIT)
                        .build(),
                    };
                    let entry = entry.user_data((base + k) as u64);
                    // SAFETY: the entry's buffer is valid and unaliased
                    // until this function returns (the caller's contract),
                    // and it returns only once every entry has completed,
                    // so the kernel never holds it longer. The queue has
                    // room: it is drained after each chunk of at most
                    // ENTRIES.
                    unsafe { push(&mut sq, &entry)? };
                }
            }
            let mut done = 0;
            while done < chunk.len() {
                match self.ring.submit_and_wait(chunk.len() - done) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                    Err(e) => return Err(e),
                }
                for cqe in self.ring.completion() {
                    results.push((cqe.user_data() as usize, cqe.result()));
                    done += 1;
                }
            }
            base += chunk.len();
        }
        Ok(())
    }
}

/// # Safety
/// As `SubmissionQueue::push`: the entry's buffers outlive its completion.
unsafe fn push(sq: &mut squeue::SubmissionQueue<'_>, entry: &squeue::Entry) -> io::Result<()> {
    sq.push(entry)
        .map_err(|_| io::Error::other("io_uring submission queue full"))
}
