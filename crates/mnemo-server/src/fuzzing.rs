//! Issue #15: one whole client connection driven from fuzz input, shared
//! by the libFuzzer target `fuzz/fuzz_targets/conn.rs` (nightly) and its
//! stable corpus replay (`tests/fuzz_conn.rs`), so a crash found by one is
//! reproduced by the other.
//!
//! [`conn`] runs the real [`Conn`] state machine (the code a worker runs
//! on a readiness event: read, `dispatch::step`, direct value reads,
//! swallow, pauses, `-R` yields, writes) over one end of an in-process
//! unix socket pair against a fresh, small engine. The input is cut into
//! a few reads, so pipelining, requests and values spanning reads, and
//! swallowing across reads all happen. After the input the client end
//! shuts its write side; then the checks, each a panic (a libFuzzer crash)
//! when broken:
//! - the connection closes on end of input rather than hanging;
//! - no item is left pinned, and the engine's own consistency walk
//!   (`Engine::check_invariants`) passes: free lists, LRUs, index and
//!   pages agree, LRU byte and item counts equal a walk's, per-class
//!   requested bytes equal the items' sum, no chunk reserved for a value
//!   that never came is left unreachable, pages within `-m`;
//! - the general stats agree with the per-class ones: `curr_items` is
//!   the sum of `stats items`' counts and fits in `stats slabs`' used
//!   chunks, and `bytes` fits in `total_malloced`.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;

use mnemo_engine::Engine;
use mnemo_net::Stream;

use crate::cli::{self, Action};
use crate::conn::{Conn, Drive, Env};
use crate::dispatch::Ctx;
use crate::settings::Runtime;
use crate::shared::{ConnInfo, ConnState, Shared};

/// The server's shared state for the command line `args`, with no
/// listener, worker thread or engine background thread: requests run on
/// the caller's thread.
pub fn shared(args: &[&str]) -> Shared {
    let mut settings = match cli::parse(args.iter().copied()) {
        Ok(Action::Run(s)) => *s,
        other => panic!("{args:?}: {other:?}"),
    };
    // As for the servers the integration tests start (tests/support).
    if let Ok(name) = std::env::var("MNEMO_TEST_ENGINE") {
        settings.engine.engine = mnemo_engine::EngineKind::parse(&name)
            .unwrap_or_else(|| panic!("MNEMO_TEST_ENGINE={name:?}: expected slab or segment"));
    }
    let engine = Engine::new(settings.engine.clone()).expect("engine");
    Shared {
        runtime: Runtime::new(&settings),
        crawler_enabled: AtomicBool::new(settings.engine.lru_crawler),
        engine,
        global: Default::default(),
        workers: vec![Arc::default()],
        conns: Default::default(),
        stopping: AtomicBool::new(false),
        listeners: AtomicU32::new(0),
        inherited_fds: 3,
        auth: None,
        log: Arc::new(crate::watch::Logger::new(
            1,
            settings.worker_logbuf_size as usize,
            settings.watcher_logbuf_size as usize,
        )),
        tls: None,
        ssl_refreshed_at: AtomicU32::new(0),
        settings,
    }
}

/// Output past which a connection is cut (an input can ask for a large
/// value many times; that is slow, not wrong).
const MAX_OUTPUT: usize = 64 << 20;
/// Drive rounds per read before the connection counts as hung.
const MAX_ROUNDS: usize = 100_000;

/// How [`conn`] reads its input's first bytes.
#[derive(Debug)]
pub struct Shape<'a> {
    /// Server options: `-B`, `-m`, `-R`.
    pub args: Vec<&'static str>,
    /// The client's writes, in order.
    pub reads: Vec<&'a [u8]>,
}

/// Splits fuzz input: byte 0 picks the protocol (bits 0-1: auto, ascii,
/// binary, auto), the memory limit (bits 2-3: -m 2, 3, 5, 8), a small
/// `-R` (bit 4) and how many reads (bits 5-6: 1 to 4); each further read
/// takes a cut point from one byte (its share of what is left, in 256ths).
pub fn shape(data: &[u8]) -> Shape<'_> {
    let Some((&b0, mut rest)) = data.split_first() else {
        return Shape {
            args: Vec::new(),
            reads: Vec::new(),
        };
    };
    let mut args = vec!["-B", ["auto", "ascii", "binary", "auto"][(b0 & 3) as usize]];
    args.extend(["-m", ["2", "3", "5", "8"][(b0 >> 2 & 3) as usize]]);
    if b0 & 0x10 != 0 {
        args.extend(["-R", "2"]);
    }
    let nreads = 1 + (b0 >> 5 & 3) as usize;
    let cuts_len = (nreads - 1).min(rest.len());
    let (cuts, body) = rest.split_at(cuts_len);
    rest = body;
    let mut reads = Vec::with_capacity(nreads);
    for &c in cuts {
        let at = rest.len() * c as usize / 256;
        let (head, tail) = rest.split_at(at);
        reads.push(head);
        rest = tail;
    }
    reads.push(rest);
    Shape { args, reads }
}

/// Runs one connection on `data` (see [`shape`]) and checks the engine
/// after it; panics on any broken invariant. Returns the bytes the client
/// received.
pub fn conn(data: &[u8]) -> Vec<u8> {
    let shape = shape(data);
    if shape.reads.is_empty() {
        return Vec::new();
    }
    let sh = shared(&shape.args);
    let received = run_conn(&sh, &shape.reads).unwrap_or_else(|e| panic!("socket pair: {e}"));
    check_engine(&sh.engine);
    received
}

fn run_conn(sh: &Shared, reads: &[&[u8]]) -> io::Result<Vec<u8>> {
    let (server, mut client) = mio::net::UnixStream::pair()?;
    let fd = server.as_raw_fd();
    let info = Arc::new(ConnInfo::new(
        fd,
        "unix:fuzz".to_owned(),
        None,
        ConnState::NewCmd,
        0,
    ));
    let mut conn = Conn::new(Stream::Unix(server), info, sh.settings.engine.item_size_max);
    let ts = sh.engine.new_thread_stats();
    let ws = Arc::clone(&sh.workers[0]);
    let mut pool = Vec::new();
    let mut env = Env {
        ctx: Ctx {
            shared: sh,
            ts: &ts,
            ws: &ws,
            fd,
            ring: 0,
            budget: None,
            pending_output: false,
        },
        rbuf_pool: &mut pool,
        defer_send: false,
    };
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut drain = |client: &mut mio::net::UnixStream, received: &mut Vec<u8>| -> bool {
        let mut got = false;
        loop {
            match client.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => {
                    got = true;
                    if received.len() < MAX_OUTPUT {
                        received.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return got,
            }
        }
    };
    // The reads, then the end of the stream (None).
    let writes = reads.iter().map(|r| Some(*r)).chain([None]);
    for w in writes {
        let mut pending = match w {
            Some(r) => r,
            None => {
                client.shutdown(std::net::Shutdown::Write)?;
                &[][..]
            }
        };
        let mut rounds = 0;
        loop {
            let mut moved = false;
            if !pending.is_empty() {
                match client.write(pending) {
                    Ok(n) => {
                        pending = &pending[n..];
                        moved = n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            match conn.drive(&mut env, true, true) {
                Drive::Close | Drive::Watch(_) => {
                    drain(&mut client, &mut received);
                    return Ok(received);
                }
                Drive::Yield => moved = true,
                Drive::Wait => {}
            }
            moved |= drain(&mut client, &mut received);
            if received.len() >= MAX_OUTPUT {
                return Ok(received);
            }
            if pending.is_empty() && !moved {
                break;
            }
            rounds += 1;
            assert!(rounds < MAX_ROUNDS, "connection made no progress");
        }
    }
    panic!("the connection did not close at the end of its input");
}

/// The engine checks made after every input.
pub fn check_engine(engine: &Engine) {
    assert_eq!(engine.pinned_items(), 0, "an item was left pinned");
    if let Err(e) = engine.check_invariants() {
        panic!("engine inconsistent: {e}");
    }
    let s = engine.stats();
    let mut items = 0u64;
    for (k, v) in engine.stats_items() {
        if k.ends_with(":number") {
            items += v.parse::<u64>().unwrap_or(0);
        }
    }
    assert_eq!(s.curr_items, items, "curr_items against stats items");
    let mut used_chunks = 0u64;
    for (k, v) in engine.stats_slabs() {
        if k.ends_with(":used_chunks") {
            used_chunks += v.parse::<u64>().unwrap_or(0);
        }
    }
    assert!(
        s.curr_items <= used_chunks,
        "{} items in {used_chunks} used chunks",
        s.curr_items
    );
    assert!(
        s.bytes <= s.total_malloced,
        "{} item bytes in {} bytes of pages",
        s.bytes,
        s.total_malloced
    );
}
