//! Ctrl-C / SIGTERM end the run cleanly: the current phase stops sending,
//! collects what is in flight, reports, and `compare` kills the servers it
//! started (a default SIGTERM would leave them running). A second signal
//! kills the process at once.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

pub fn install() {
    // SAFETY: sigaction with a zeroed mask and a handler that only stores
    // to an atomic; SA_RESETHAND restores the default for a second signal.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
