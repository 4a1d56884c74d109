//! `mnemo`: a memcached-compatible cache server.
//!
//! Start-up follows memcached's order where it matters to users: options
//! are checked before anything is opened, sockets are bound before the
//! process daemonizes and drops privileges (so low ports and errors still
//! work), and threads start only after the fork.

use mnemo_server::{auth, cli, listener, repl, settings, shared, signals, tls, udp, watch, worker};

use mnemo_engine::Engine;
use settings::{Runtime, Settings};
use shared::Shared;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

/// sysexits.h EX_OSERR.
const EX_OSERR: i32 = 71;

fn main() {
    // Before any thread exists, so every thread inherits the mask.
    signals::block();
    let action = match cli::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}", e.message);
            eprintln!("Try 'mnemo -h' for more information.");
            std::process::exit(e.code);
        }
    };
    let settings = match action {
        cli::Action::Help => {
            print!("{}", cli::usage());
            return;
        }
        cli::Action::Version => {
            println!("{}", shared::IDENTITY);
            return;
        }
        cli::Action::License => {
            println!(
                "mnemo {} is distributed under the BSD 3-Clause license.\n\
                 It follows the behaviour of memcached (BSD 3-Clause, Copyright (c) 2003, Danga Interactive, Inc.).",
                env!("CARGO_PKG_VERSION")
            );
            return;
        }
        cli::Action::Run(s) => *s,
    };
    std::process::exit(run(settings));
}

/// glibc raises its mmap threshold each time a large block is freed, after
/// which reply and read buffers of 128 KB-32 MB come from the heap and, as
/// they are freed out of order, stay in RSS. In a 30-minute soak that put
/// RSS 8 MB above -m plus the reported buffers. A fixed threshold keeps
/// every large buffer in its own mapping, returned to the system on free.
fn pin_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the
    // worker threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn die(msg: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("{msg}");
    code
}

fn run(settings: Settings) -> i32 {
    // Before anything is opened: what was inherited counts against -c.
    let inherited_fds = listener::inherited_fds((settings.maxconns as u64).saturating_sub(1));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && settings.user.is_none() {
        // memcached refuses to start here. mnemo warns instead so the
        // README's plain start command also works in root containers and
        // CI; -u still drops privileges exactly as memcached does.
        eprintln!("warning: running as root; pass -u <user> to drop privileges");
    }
    // Where memcached sets TLS up: after the options, before any socket.
    let tls = match tls::start(&settings) {
        Ok(t) => t,
        Err((msg, code)) => return die(msg, code),
    };
    if settings.maxcore {
        raise_core_limit();
    }
    if let Err(e) = raise_nofile(settings.maxconns) {
        return die(e, EX_OSERR);
    }
    let engine = match Engine::new(settings.engine.clone()) {
        Ok(e) => e,
        Err(e) => return die(e, cli::EX_USAGE),
    };
    match engine.restart_outcome() {
        mnemo_engine::RestartOutcome::NoFile => {}
        // As memcached, why a memory file could not be reused is always
        // said; a reuse only with -v.
        mnemo_engine::RestartOutcome::Cold(lines) => {
            for l in lines {
                eprintln!("{l}");
            }
        }
        mnemo_engine::RestartOutcome::Warm { items, millis } => {
            if settings.verbose > 0 {
                eprintln!("[restart] recovered {items} items in {millis} ms");
            }
        }
    }
    if settings.verbose > 1 {
        for c in engine.slab_classes() {
            eprintln!(
                "slab class {:>3}: chunk size {:>9} perslab {:>7}",
                c.id, c.chunk_size, c.perslab
            );
        }
    }
    let port_file = listener::PortFile::from_env(&settings);
    let (listeners, tls_listeners) = match listener::bind_all(&settings) {
        Ok(l) => l,
        Err(e) => return die(e, EX_OSERR),
    };
    let udp_socks = match udp::bind_all(&settings) {
        Ok(u) => u,
        Err(e) => return die(e, EX_OSERR),
    };
    if let Some(f) = port_file {
        f.finish(&listeners, &udp_socks);
    }
    let auth = match &settings.auth_file {
        Some(path) => match auth::AuthFile::load(path) {
            Ok(a) => Some(a),
            Err(e) => return die(e, 1),
        },
        None => None,
    };
    if settings.verbose > 1 {
        for l in &listeners {
            eprintln!(
                "<{} server listening ({})",
                std::os::fd::AsRawFd::as_raw_fd(l),
                settings.protocol.text()
            );
        }
    }
    if listeners.is_empty() && settings.verbose > 0 {
        // memcached runs on with nothing to listen on (-p 0); so do we.
        eprintln!("warning: no listening sockets (-p 0 and no -s)");
    }
    if settings.daemonize {
        if let Err(e) = daemonize(settings.verbose > 0) {
            return die(
                format!("failed to daemon() in order to daemonize: {e}"),
                EX_OSERR,
            );
        }
        if let Some(p) = &settings.pid_file {
            if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
                eprintln!("Could not open the pid file {p} for writing: {e}");
            }
        }
    }
    if root {
        if let Some(user) = &settings.user {
            if let Err(e) = drop_privileges(user) {
                return die(e, cli::EX_USAGE);
            }
        }
    }
    if settings.lock_memory {
        // SAFETY: mlockall has no memory-safety preconditions.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            eprintln!(
                "warning: -k invalid, mlockall() failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    // Before any client or peer write: versions replace the CAS counter.
    let repl = match settings.repl.clone() {
        Some(r) => match repl::Repl::new(r, Arc::clone(&engine)) {
            Some(r) => Some(Arc::new(r)),
            None => {
                return die(
                    "mnemo: replication cannot run on this engine",
                    cli::EX_USAGE,
                )
            }
        },
        None => None,
    };
    pin_malloc_thresholds();
    engine.start();
    let threads = settings.threads;
    let shared = Arc::new(Shared {
        runtime: Runtime::new(&settings),
        crawler_enabled: AtomicBool::new(settings.engine.lru_crawler),
        engine: Arc::clone(&engine),
        global: Default::default(),
        // One counter set per worker, then one per UDP descriptor (each
        // has its thread).
        workers: (0..threads + udp_socks.len())
            .map(|_| Arc::default())
            .collect(),
        conns: Default::default(),
        stopping: AtomicBool::new(false),
        listeners: AtomicU32::new(0),
        inherited_fds,
        auth,
        log: Arc::new(watch::Logger::new(
            threads,
            settings.worker_logbuf_size as usize,
            settings.watcher_logbuf_size as usize,
        )),
        tls,
        repl,
        ssl_refreshed_at: AtomicU32::new(engine.clock().now()),
        settings,
    });
    if let Err(e) = watch::spawn(Arc::clone(&shared)) {
        return die(format!("Can't create thread: {e}"), EX_OSERR);
    }
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        match worker::spawn(id, Arc::clone(&shared)) {
            Ok(h) => handles.push(h),
            Err(e) => return die(format!("Can't create thread: {e}"), EX_OSERR),
        }
    }
    // Before the acceptor, so the UDP descriptors are counted (and listed)
    // before the first client arrives.
    let udp_threads = match udp::spawn_all(udp_socks, &shared) {
        Ok(t) => t,
        Err(e) => return die(format!("Can't create thread: {e}"), EX_OSERR),
    };
    let acceptor = match listener::spawn_acceptor(
        listeners,
        tls_listeners,
        listener::worker_ends(&handles),
        Arc::clone(&shared),
    ) {
        Ok(a) => a,
        Err(e) => return die(format!("Can't start the acceptor: {e}"), EX_OSERR),
    };

    if let Err(e) = repl::link::spawn_all(&shared) {
        return die(format!("Can't create thread: {e}"), EX_OSERR);
    }

    let why = signals::wait();
    match why {
        signals::Stop::Graceful => eprintln!("Gracefully stopping"),
        signals::Stop::Normal => {
            if shared.verbose() > 0 {
                eprintln!("Exiting normally");
            }
        }
    }
    shared.stopping.store(true, Relaxed);
    let _ = acceptor.waker.wake();
    for h in &handles {
        let _ = h.waker.wake();
    }
    let _ = acceptor.join.join();
    for h in handles {
        let _ = h.join.join();
    }
    for t in udp_threads {
        let _ = t.join();
    }
    engine.shutdown();
    // memcached keeps its memory file only on a graceful stop; a plain
    // one leaves no metadata, so the next start is cold.
    if why == signals::Stop::Graceful {
        if let Err(e) = engine.save_memory_file() {
            eprintln!("[restart] failed to save metadata: {e}");
        }
    }
    if shared.settings.daemonize {
        if let Some(p) = &shared.settings.pid_file {
            let _ = std::fs::remove_file(p);
        }
    }
    0
}

fn raise_core_limit() {
    // SAFETY: plain rlimit syscalls on a local struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CORE, &mut rl) == 0 {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
        }
    }
}

/// Makes room for `maxconns` sockets plus our own descriptors.
fn raise_nofile(maxconns: usize) -> Result<(), String> {
    let want = (maxconns + 64) as libc::rlim_t;
    // SAFETY: plain rlimit syscalls on a local struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Err("failed to getrlimit number of files".into());
        }
        if rl.rlim_cur < want {
            rl.rlim_cur = want;
            if rl.rlim_max < want {
                rl.rlim_max = want;
            }
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(
                    "failed to set rlimit for open files. Try starting as root or requesting smaller maxconns value."
                        .into(),
                );
            }
        }
    }
    Ok(())
}

/// Classic double-duty daemon(3): fork, new session, cwd /, stdio to
/// /dev/null (stderr kept when verbose, as memcached does).
fn daemonize(keep_stderr: bool) -> std::io::Result<()> {
    // SAFETY: no other threads exist yet (engine threads start later), so
    // fork is safe; the calls below only touch descriptors and the session.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(std::io::Error::last_os_error());
        }
        let root = c"/";
        libc::chdir(root.as_ptr());
        let devnull = c"/dev/null";
        let fd = libc::open(devnull.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            if !keep_stderr {
                libc::dup2(fd, 2);
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
    Ok(())
}

fn drop_privileges(user: &str) -> Result<(), String> {
    let name = std::ffi::CString::new(user)
        .map_err(|_| format!("can't find the user {user} to switch to"))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we read
    // it immediately, before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(format!("can't find the user {user} to switch to"));
        }
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        if uid == 0 {
            return Ok(());
        }
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err("failed to assume identity of user ".to_string() + user);
        }
    }
    Ok(())
}
