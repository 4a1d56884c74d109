//! Server settings: memcached's `settings` struct, split into what the
//! engine needs (`engine`) and what only the network side uses.

use mnemo_engine::Config;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// `-B`: which protocol a connection may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Auto,
    Ascii,
    Binary,
}

impl Protocol {
    /// The spelling `stats settings` uses (memcached's `prot_text`).
    pub fn text(self) -> &'static str {
        match self {
            Protocol::Auto => "auto-negotiate",
            Protocol::Ascii => "ascii",
            Protocol::Binary => "binary",
        }
    }
}

/// What socket a `-p`/`-U` value (memcached keeps it in an int, and so
/// does `stats settings`) asks for: 0 turns the listener off, -1 binds to a
/// port the kernel picks (how harnesses start servers side by side,
/// learning the ports from the `MEMCACHED_PORT_FILENAME` file).
pub fn bind_port(port: i32) -> Option<u16> {
    match port {
        0 => None,
        -1 => Some(0),
        p => u16::try_from(p).ok(),
    }
}

/// Everything fixed at start-up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `-p`, -1 to 65535 (see [`bind_port`]).
    pub port: i32,
    /// `-U`, -1 to 65535 (see [`bind_port`]).
    pub udp_port: i32,
    pub socket_path: Option<String>,
    /// `-a`, octal permission bits for the unix socket.
    pub access: u32,
    /// `-l`, comma-separated as memcached keeps it (`None` = all interfaces).
    pub inter: Option<String>,
    pub daemonize: bool,
    pub pid_file: Option<String>,
    pub user: Option<String>,
    pub maxconns: usize,
    pub threads: usize,
    pub reqs_per_event: usize,
    /// Batch each event round's socket reads and replies through
    /// io_uring where the kernel allows it (`-o no_io_uring` turns it off).
    pub io_uring: bool,
    pub backlog: i32,
    pub protocol: Protocol,
    pub verbose: u32,
    pub shutdown_command: bool,
    pub flush_enabled: bool,
    pub dump_enabled: bool,
    pub watch_enabled: bool,
    pub prefix_delimiter: u8,
    pub detail_enabled: bool,
    pub maxconns_fast: bool,
    pub idle_timeout: u32,
    pub lock_memory: bool,
    pub maxcore: bool,
    pub hash_algorithm: &'static str,
    pub track_sizes: bool,
    /// Bytes (`-o read_buf_mem_limit` is in megabytes); 0: no limit.
    pub read_buf_mem_limit: u32,
    pub watcher_logbuf_size: u32,
    pub worker_logbuf_size: u32,
    /// `-o slab_automove_freeratio`: memcached uses it only for extstore's
    /// page mover, which mnemo does not have; accepted and reported so
    /// command lines and `stats settings` stay memcached's.
    pub slab_automove_freeratio: f64,
    /// Whether `-o hashpower` was given (`stats settings` shows 0 otherwise).
    pub hashpower_set: bool,
    /// `-S`: binary connections must authenticate with SASL.
    pub sasl: bool,
    /// `-Y`: file of ASCII authentication tokens.
    pub auth_file: Option<String>,
    /// `-Z` and `-o ssl_*`.
    pub ssl: crate::tls::SslSettings,
    /// The storage engine's part.
    pub engine: Config,
    /// `--peer` and the other replication options (issue #13); `None`:
    /// replication off, nothing of it runs.
    pub repl: Option<crate::repl::options::ReplSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 11211,
            udp_port: 0,
            socket_path: None,
            access: 0o700,
            inter: None,
            daemonize: false,
            pid_file: None,
            user: None,
            maxconns: 1024,
            threads: 4,
            reqs_per_event: 20,
            io_uring: true,
            backlog: 1024,
            protocol: Protocol::Auto,
            verbose: 0,
            shutdown_command: false,
            flush_enabled: true,
            dump_enabled: true,
            watch_enabled: true,
            prefix_delimiter: b':',
            detail_enabled: false,
            maxconns_fast: true,
            idle_timeout: 0,
            lock_memory: false,
            maxcore: false,
            hash_algorithm: "murmur3",
            track_sizes: false,
            read_buf_mem_limit: 0,
            watcher_logbuf_size: 256 * 1024,
            worker_logbuf_size: 64 * 1024,
            slab_automove_freeratio: 0.01,
            hashpower_set: false,
            sasl: false,
            auth_file: None,
            ssl: Default::default(),
            engine: Config::default(),
            repl: None,
        }
    }
}

/// Settings that commands change at run time (`verbosity`, `stats detail`),
/// readable from every thread. The engine keeps its own (`slabs automove
/// ratio`, `lru tune`).
pub struct Runtime {
    pub verbose: AtomicU32,
    pub detail_enabled: AtomicBool,
    /// The `stats sizes` histogram: `Some(min_cas)` while it is on (`-o
    /// track_sizes`, `stats sizes_enable`). As in memcached it counts only
    /// items stored since it was switched on, those whose CAS is at least
    /// the one drawn then (0 when on from the start).
    pub sizes_from_cas: Mutex<Option<u64>>,
}

impl Runtime {
    pub fn new(s: &Settings) -> Self {
        Runtime {
            verbose: AtomicU32::new(s.verbose),
            detail_enabled: AtomicBool::new(s.detail_enabled),
            sizes_from_cas: Mutex::new(s.track_sizes.then_some(0)),
        }
    }

    pub fn verbose(&self) -> u32 {
        self.verbose.load(Ordering::Relaxed)
    }
}
