//! State every thread can see: settings, the engine, counters, and the
//! registry of open connections that `stats conns` lists.

use crate::settings::{Runtime, Settings};
use crate::stats::{Global, WorkerStats};
use mnemo_engine::Engine;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// The memcached release whose behaviour mnemo reproduces; a macro so the
/// one literal can go into `concat!`.
macro_rules! memcached_version {
    () => {
        "1.6.18"
    };
}

/// What `version`, `STAT version` and the binary VERSION body report:
/// memcached's plain dotted version, nothing appended. Clients parse it to
/// decide which commands exist, and a suffix breaks parsers (Perl's
/// `version->parse` rejects `1.6.18-mnemo-0.1.0`), so mnemo names itself
/// elsewhere: [`IDENTITY`] and [`MNEMO_VERSION`].
pub const VERSION: &str = memcached_version!();

/// mnemo's own release: `STAT mnemo_version` in `stats settings`.
pub const MNEMO_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first line of `-V` and `-h`: mnemo's name and release, then the
/// memcached version it answers as. memcached prints `memcached 1.6.18`; a
/// script splitting on whitespace finds the program name and its release
/// in the same two fields here.
pub const IDENTITY: &str = concat!(
    "mnemo ",
    env!("CARGO_PKG_VERSION"),
    " (memcached ",
    memcached_version!(),
    ")"
);

pub struct Shared {
    pub settings: Settings,
    pub runtime: Runtime,
    pub engine: Arc<Engine>,
    pub global: Global,
    /// One per worker, in worker order.
    pub workers: Vec<Arc<WorkerStats>>,
    /// Open client connections and listeners, by file descriptor.
    pub conns: Mutex<BTreeMap<i32, Arc<ConnInfo>>>,
    /// Set when the process is stopping; workers exit their loops.
    pub stopping: AtomicBool,
    /// Whether the LRU crawler is running (`lru_crawler enable|disable`).
    pub crawler_enabled: AtomicBool,
    /// Number of listening sockets (memcached counts them as connections).
    pub listeners: AtomicU32,
    /// Descriptors open before start-up (stdin/out/err and any inherited)
    /// that memcached would count against -c; see `listener::client_limit`.
    pub inherited_fds: u32,
    /// The `-Y` tokens, loaded at start-up.
    pub auth: Option<crate::auth::AuthFile>,
    /// `watch` log streams.
    pub log: Arc<crate::watch::Logger>,
    /// `-Z`: the TLS configuration new connections on TLS listeners get.
    pub tls: Option<Arc<mnemo_net::ServerTls>>,
    /// Engine time of the last certificate load (start-up or
    /// `refresh_certs`), for `time_since_server_cert_refresh`.
    pub ssl_refreshed_at: AtomicU32,
    /// Replication (`--peer`, issue #13); `None` when off.
    pub repl: Option<Arc<crate::repl::Repl>>,
}

impl Shared {
    pub fn verbose(&self) -> u32 {
        self.runtime.verbose()
    }
}

/// Connection states, named as memcached's `state_text` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    Listening = 0,
    NewCmd,
    Read,
    ParseCmd,
    Nread,
    Swallow,
    Mwrite,
    Closing,
    /// Handed to the logger thread by `watch`.
    Watch,
}

impl ConnState {
    pub fn text(self) -> &'static str {
        match self {
            ConnState::Listening => "conn_listening",
            ConnState::NewCmd => "conn_new_cmd",
            ConnState::Read => "conn_read",
            ConnState::ParseCmd => "conn_parse_cmd",
            ConnState::Nread => "conn_nread",
            ConnState::Swallow => "conn_swallow",
            ConnState::Mwrite => "conn_mwrite",
            ConnState::Closing => "conn_closing",
            ConnState::Watch => "conn_watch",
        }
    }

    fn from_u8(v: u8) -> ConnState {
        match v {
            0 => ConnState::Listening,
            1 => ConnState::NewCmd,
            2 => ConnState::Read,
            3 => ConnState::ParseCmd,
            4 => ConnState::Nread,
            5 => ConnState::Swallow,
            6 => ConnState::Mwrite,
            8 => ConnState::Watch,
            _ => ConnState::Closing,
        }
    }
}

/// The part of a connection other threads may look at.
pub struct ConnInfo {
    pub fd: i32,
    /// `tcp:127.0.0.1:5000`, `unix:/path`.
    pub addr: String,
    /// Local address for accepted connections; `None` for listeners.
    pub listen_addr: Option<String>,
    state: AtomicU8,
    /// Relative time of the last command (engine clock).
    pub last_cmd: AtomicU32,
    /// For a UDP socket (`None` for anything else): the sender of the
    /// datagram being served, which `stats conns` shows meanwhile.
    udp_peer: Option<Mutex<Option<std::net::SocketAddr>>>,
}

impl ConnInfo {
    pub fn new(
        fd: i32,
        addr: String,
        listen_addr: Option<String>,
        state: ConnState,
        now: u32,
    ) -> Self {
        ConnInfo {
            fd,
            addr,
            listen_addr,
            state: AtomicU8::new(state as u8),
            last_cmd: AtomicU32::new(now),
            udp_peer: None,
        }
    }

    /// A UDP socket's entry: its own address, idle (`conn_read`).
    pub fn udp(fd: i32, addr: String, now: u32) -> Self {
        ConnInfo {
            udp_peer: Some(Mutex::new(None)),
            ..ConnInfo::new(fd, addr, None, ConnState::Read, now)
        }
    }

    pub fn is_udp(&self) -> bool {
        self.udp_peer.is_some()
    }

    /// Records whose datagram a UDP socket is serving.
    pub fn set_udp_peer(&self, peer: std::net::SocketAddr) {
        if let Some(p) = &self.udp_peer {
            *p.lock() = Some(peer);
        }
    }

    pub fn udp_peer(&self) -> Option<std::net::SocketAddr> {
        self.udp_peer.as_ref().and_then(|p| *p.lock())
    }

    #[inline]
    pub fn set_state(&self, s: ConnState) {
        self.state.store(s as u8, Relaxed);
    }

    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Relaxed))
    }
}
