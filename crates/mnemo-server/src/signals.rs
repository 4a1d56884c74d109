//! Signals, memcached's way: SIGINT and SIGTERM stop the server cleanly
//! (exit 0), SIGUSR1 stops it "gracefully", SIGHUP is ignored.
//!
//! All worker threads start with these signals blocked and the main thread
//! waits for them with `sigwait`, so no async-signal-safety concerns arise
//! and no handler runs on a worker. Plain `libc` (already a workspace
//! dependency) is enough for that; signal-hook would add a crate for the
//! same three calls.

/// Why the main thread woke up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Normal,
    Graceful,
}

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and modify the local set.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, libc::SIGINT);
        libc::sigaddset(&mut s, libc::SIGTERM);
        libc::sigaddset(&mut s, libc::SIGUSR1);
        s
    }
}

/// Blocks the stop signals in the calling thread (threads spawned later
/// inherit the mask) and ignores SIGHUP and SIGPIPE. Call first in main.
pub fn block() {
    let s = set();
    // SAFETY: valid signal set; SIG_IGN is a valid disposition.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut());
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Waits for SIGINT, SIGTERM or SIGUSR1.
pub fn wait() -> Stop {
    let s = set();
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: valid set and out-pointer.
        let rc = unsafe { libc::sigwait(&s, &mut sig) };
        if rc == 0 {
            return if sig == libc::SIGUSR1 {
                Stop::Graceful
            } else {
                Stop::Normal
            };
        }
    }
}

/// The `shutdown` command: signal ourselves as memcached does.
pub fn request_stop(graceful: bool) {
    let sig = if graceful {
        libc::SIGUSR1
    } else {
        libc::SIGINT
    };
    // SAFETY: kill on our own pid with a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), sig);
    }
}
