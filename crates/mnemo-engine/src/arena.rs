//! Where slab pages live: one reserved range of address space that the
//! kernel may back with transparent huge pages.
//!
//! Every get touches two cold cache lines at random, the index slot and
//! the item. With 4 KB pages each is also a TLB miss, and in a virtual
//! machine a miss walks two page tables. Pages carved in order from one
//! range marked `MADV_HUGEPAGE` take a 2 MB TLB entry per two slab pages
//! instead of 256. memcached gets this only with `-L`, which preallocates
//! all of `-m`; here nothing is touched before it is used, so resident
//! memory still grows with the data (by at most one partly used 2 MB
//! region more than with small pages).
//!
//! Off unless `-o hugepages`: with huge pages every byte of a touched
//! page is resident, including the tail of each slab page that no chunk
//! fits in and chunks not yet written, which small pages leave out of RSS.
//! At `-m 64` with values of 64 B-128 KB that is 6 MB more RSS (69.6 MB
//! against 63.3 MB after the same fill); the lookup it saves is 31% of
//! its cost, about 1.4% of the server's CPU on small values.
//!
//! The range covers the memory limit at start; pages past it (the limit
//! raised at run time) come from the allocator as before. A page given
//! back to the system is discarded with `MADV_DONTNEED` and its place
//! reused.
//!
//! With `-e PATH` (a restartable cache) the arena is instead the whole of
//! `-m` mapped shared from that file, so the pages outlive the process and
//! a graceful stop leaves them for the next start (see `restart.rs`).

use std::fs::File;
use std::path::Path;
use std::ptr;

const HUGE: usize = 2 * 1024 * 1024;

pub(crate) struct Arena {
    base: usize,
    len: usize,
    /// The memory file behind a shared mapping (`-e`); None for anonymous
    /// memory.
    file: Option<File>,
}

impl Arena {
    /// Reserves room for `bytes` of pages (rounded up to huge pages); an
    /// empty arena if the system refuses.
    pub fn new(bytes: usize) -> Arena {
        let Some(len) = bytes.checked_next_multiple_of(HUGE) else {
            return Arena::none();
        };
        if len == 0 {
            return Arena::none();
        }
        // One huge page extra, to align the start.
        let Some(span) = len.checked_add(HUGE) else {
            return Arena::none();
        };
        // SAFETY: a fresh private anonymous mapping; nothing else refers to
        // the range. NORESERVE: address space only, committed on touch.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Arena::none();
        }
        let start = raw as usize;
        let base = start.next_multiple_of(HUGE);
        // SAFETY: both trimmed pieces lie inside the mapping made above
        // and outside [base, base + len).
        unsafe {
            if base > start {
                libc::munmap(raw, base - start);
            }
            let end = base + len;
            let tail = start + span - end;
            if tail > 0 {
                libc::munmap(end as *mut libc::c_void, tail);
            }
            // Advice only: where THP is off this fails or does nothing
            // and the pages are small, as from the allocator.
            libc::madvise(base as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        Arena {
            base,
            len,
            file: None,
        }
    }

    /// No arena: every page comes from the allocator.
    pub fn none() -> Arena {
        Arena {
            base: 0,
            len: 0,
            file: None,
        }
    }

    /// Opens (creating it if needed, owner-only) the memory file at `path`
    /// and locks it, so a second process given the same file refuses to
    /// start instead of emptying or sharing the pages of a running one.
    /// Also returns the file's size.
    pub fn lock_file(path: &Path) -> std::io::Result<(File, u64)> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        // SAFETY: flock on a descriptor we own; the lock lives as long as
        // the open file (kept in the Arena), across a daemon's fork too.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                std::io::Error::other("in use by another process")
            } else {
                e
            });
        }
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// Maps `len` bytes of a file from [`Arena::lock_file`] shared. With
    /// `keep` false its old contents are dropped first, so a cold start
    /// leaves nothing of the previous run resident.
    pub fn map_file(file: File, len: usize, keep: bool) -> std::io::Result<Arena> {
        use std::os::fd::AsRawFd;
        if !keep {
            file.set_len(0)?;
        }
        file.set_len(len as u64)?;
        // A kept file was reserved by the start that created it, and file
        // pages are never given back (the memory limit cannot change).
        if !keep {
            reserve(&file, len)?;
        }
        if len == 0 {
            return Err(std::io::Error::other("empty memory file"));
        }
        // SAFETY: a new shared mapping of a file we opened read-write and
        // sized to `len`; nothing else in this process refers to the range.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // Kept contents are all read at once by the restart's
                // checks: mapping them in one call is far cheaper than a
                // fault per 4 KB page.
                libc::MAP_SHARED | if keep { libc::MAP_POPULATE } else { 0 },
                file.as_raw_fd(),
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arena {
            base: raw as usize,
            len,
            file: Some(file),
        })
    }

    /// Whether the pages live in a memory file.
    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }

    /// Drops everything the memory file holds (a warm start that failed
    /// part-way): the mapping stays and reads as zeros. Called before any
    /// page is handed out.
    pub fn wipe(&self) -> std::io::Result<()> {
        if let Some(f) = &self.file {
            f.set_len(0)?;
            f.set_len(self.len as u64)?;
            reserve(f, self.len)?;
        }
        Ok(())
    }

    /// Writes the mapping back to the memory file (a no-op on tmpfs,
    /// needed where the file is on a disk).
    pub fn sync(&self) -> std::io::Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        // SAFETY: the range is our live mapping.
        let rc = unsafe { libc::msync(self.base as *mut libc::c_void, self.len, libc::MS_SYNC) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Bytes of address space reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The page at byte offset `off` (a multiple of the page size below
    /// `len`).
    pub fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off < self.len);
        (self.base + off) as *mut u8
    }

    /// The offset of `p` if it is an arena page.
    pub fn offset_of(&self, p: *mut u8) -> Option<usize> {
        let a = p as usize;
        (a >= self.base && a < self.base + self.len).then(|| a - self.base)
    }

    /// Gives a page's memory back to the system; the range stays reserved
    /// and reads as zeros when next used.
    pub fn discard(&self, off: usize, size: usize) {
        // A shared file mapping keeps its data under MADV_DONTNEED; REMOVE
        // frees the file's pages too (tmpfs), which read as zeros after.
        let advice = if self.file.is_some() {
            libc::MADV_REMOVE
        } else {
            libc::MADV_DONTNEED
        };
        // SAFETY: [off, off + size) is a page inside our mapping that no
        // class owns any more (the caller took it out of the page table).
        unsafe {
            libc::madvise((self.base + off) as *mut libc::c_void, size, advice);
        }
    }
}

/// Gives the memory file its blocks now: a write to a page of a sparse
/// file on a full tmpfs is a SIGBUS, which nothing could answer; refusing
/// to start is the clean failure.
fn reserve(file: &File, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fallocate on a descriptor we own, within i64 range
    // (len is at most -m).
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate: the old sparse behaviour.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `new`, unused once Slabs drops.
            unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_aligned_inside_and_reusable() {
        let a = Arena::new(5 * 1024 * 1024);
        assert_eq!(a.len(), 6 * 1024 * 1024);
        let p = a.at(0);
        assert_eq!(p as usize % HUGE, 0);
        let q = a.at(1024 * 1024);
        // SAFETY: inside the arena, which is readable and writable.
        unsafe {
            q.write(7);
            assert_eq!(q.read(), 7);
        }
        assert_eq!(a.offset_of(q), Some(1024 * 1024));
        assert_eq!(a.offset_of(std::ptr::null_mut()), None);
        a.discard(1024 * 1024, 1024 * 1024);
        // SAFETY: as above; a discarded page reads as zeros.
        unsafe { assert_eq!(q.read(), 0) };
    }
}
