//! A timerfd in the worker's poll, for open-loop pacing.
//!
//! epoll_wait only takes whole milliseconds, which is far coarser than the
//! gap between requests at any interesting rate; spinning instead would eat
//! the CPU the server needs on a small machine. A timerfd wakes the same
//! epoll_wait at nanosecond resolution.

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        // The kernel's default 50 us timer slack would blur the schedule.
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer; affects this thread.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        }
        Ok(Timer { fd })
    }

    /// Fires once after `ns` nanoseconds (re-arming replaces the old time).
    pub fn arm(&self, ns: u64) -> io::Result<()> {
        let ns = ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and a fully initialised itimerspec.
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Clears a pending expiry so the edge-triggered poll fires again.
    pub fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer; EAGAIN is fine.
        unsafe {
            libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::{Duration, Instant};

    #[test]
    fn wakes_poll() -> io::Result<()> {
        let mut poll = Poll::new()?;
        let t = Timer::new(poll.registry(), Token(7))?;
        let mut events = Events::with_capacity(4);
        let start = Instant::now();
        t.arm(2_000_000)?;
        poll.poll(&mut events, Some(Duration::from_secs(5)))?;
        assert!(events.iter().any(|e| e.token() == Token(7)));
        assert!(start.elapsed() >= Duration::from_millis(2));
        t.clear();
        Ok(())
    }
}
