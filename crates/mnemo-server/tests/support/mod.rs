//! Shared harness for the mnemo-server integration tests.
//!
//! - [`Server`] starts a real server binary (`mnemo` or the reference
//!   `/usr/bin/memcached`) on a free loopback port and kills it on drop.
//! - [`Client`] is a tiny blocking text-protocol client with read timeouts,
//!   so a server that stops answering fails the test instead of hanging it.
//! - [`require_tool`] makes a missing reference tool a loud failure: these
//!   tests never skip silently.
//!
//! - [`engine_args`] / `MNEMO_TEST_ENGINE`: which storage engine every
//!   mnemo the tests start runs; [`slab_only!`] skips, with a one-line
//!   reason, the few tests of the slab engine's own internals.
//!
//! Every test binary includes this file with `mod support;` and uses a
//! different subset of it, hence the crate-wide `dead_code` allowance.
//!
//! Slab-only tests (each checks something only slab classes and pages
//! have; everything else, the differential tests of commands, errors,
//! expiry, flush and stats names included, runs under every engine):
//! - differential.rs cases "stats items names", "stats slabs names" (and
//!   their no_modern forms): item and slab stats are per slab class;
//! - differential.rs `lone_items_reach_cold_as_in_memcached`,
//!   `flat_lru_segments_match_memcached`: HOT/WARM/COLD queues per class;
//! - differential.rs `vv_slab_classes_*`, process.rs
//!   `very_verbose_prints_slab_classes`: `-vv` lists the slab classes;
//! - slab_pages.rs: slab page moves and the global page pool;
//! - memory_bound.rs `huge_page_slabs_serve_values_intact_and_use_huge_pages`:
//!   `-o hugepages` places slab pages;
//! - warm_restart.rs: `-e` keeps slab pages in the memory file.
#![allow(dead_code)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a client waits for bytes before declaring the server silent.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a freshly spawned server gets to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Port collisions between parallel tests are possible (we pick a free port,
/// release it, and let the server bind it); retry with a new port this often.
const START_ATTEMPTS: usize = 5;

/// The two implementations the tests talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The binary built from this crate.
    Mnemo,
    /// The reference implementation, Debian's memcached 1.6.18.
    Memcached,
}

impl Kind {
    pub fn program(self) -> PathBuf {
        match self {
            Kind::Mnemo => PathBuf::from(env!("CARGO_BIN_EXE_mnemo")),
            Kind::Memcached => require_tool("memcached"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Mnemo => "mnemo",
            Kind::Memcached => "memcached",
        }
    }
}

/// Finds `tool` on PATH (or in the Debian locations, which a restricted PATH
/// may omit) or panics with instructions. Reference peers are mandatory.
pub fn require_tool(tool: &str) -> PathBuf {
    if let Some(path) = find_tool(tool) {
        return path;
    }
    panic!(
        "required test tool `{tool}` was not found on PATH or in /usr/bin, /usr/sbin.\n\
         The conformance tests compare mnemo with the real memcached 1.6 and run memccapable;\n\
         they never skip. Install them with:\n    \
         sudo apt-get install -y memcached libmemcached-tools\n\
         or simply run scripts/test.sh, which installs them when run as root."
    );
}

/// Like [`require_tool`] but returns `None` instead of panicking.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// memcached refuses to start as root without `-u`; mnemo takes the same
/// flag, so both get the same command line.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The engine every mnemo the tests start runs, from `MNEMO_TEST_ENGINE`:
/// `slab` (also when unset) or `segment`. scripts/test.sh runs the tests
/// that start mnemo once more with `segment`.
pub fn test_engine() -> &'static str {
    static ENGINE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| match std::env::var("MNEMO_TEST_ENGINE").as_deref() {
        Err(_) | Ok("") | Ok("slab") => "slab",
        Ok("segment") => "segment",
        Ok(other) => panic!("MNEMO_TEST_ENGINE={other:?}: expected slab or segment"),
    })
}

/// Arguments that put a mnemo command line on the engine under test
/// (none for the slab engine, so its command lines stay memcached's);
/// none for memcached.
pub fn engine_args(kind: Kind) -> Vec<String> {
    match (kind, test_engine()) {
        (Kind::Mnemo, "slab") | (Kind::Memcached, _) => Vec::new(),
        (Kind::Mnemo, engine) => vec!["-o".to_string(), format!("engine={engine}")],
    }
}

/// True (after printing why) when the engine under test is not the slab
/// engine; see [`slab_only!`].
pub fn skip_unless_slab(test: &str, why: &str) -> bool {
    if test_engine() == "slab" {
        return false;
    }
    eprintln!("skipped {test} under engine={}: {why}", test_engine());
    true
}

/// `slab_only!("why")` at the top of a test returns at once, saying why,
/// unless the slab engine is under test. The list of such tests is in the
/// module doc; keep it short.
#[allow(unused_macros)]
macro_rules! slab_only {
    ($why:expr) => {{
        // The enclosing test's path, from a function nested in it.
        fn here() {}
        let name = std::any::type_name_of_val(&here);
        if $crate::support::skip_unless_slab(name.strip_suffix("::here").unwrap_or(name), $why) {
            return;
        }
    }};
}
#[allow(unused_imports)]
pub(crate) use slab_only;

/// A running server process on 127.0.0.1, killed when dropped.
pub struct Server {
    kind: Kind,
    child: Child,
    port: u16,
    log_path: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Starts `kind` with `-l 127.0.0.1 -p PORT -U 0` (plus `-u root` when
    /// running as root) followed by `extra_args`, and waits until it accepts.
    pub fn start(kind: Kind, extra_args: &[&str]) -> Server {
        Self::start_program(kind, &kind.program(), extra_args)
    }

    pub fn mnemo(extra_args: &[&str]) -> Server {
        Self::start(Kind::Mnemo, extra_args)
    }

    pub fn memcached(extra_args: &[&str]) -> Server {
        Self::start(Kind::Memcached, extra_args)
    }

    /// Starts an arbitrary memcached-compatible binary.
    pub fn start_program(kind: Kind, program: &Path, extra_args: &[&str]) -> Server {
        let mut last_failure = String::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_port();
            let mut args: Vec<String> = ["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if running_as_root() {
                args.extend(["-u".to_string(), "root".to_string()]);
            }
            args.extend(engine_args(kind));
            args.extend(extra_args.iter().map(|s| s.to_string()));
            let log_path = log_path(kind, port, attempt);
            let log = File::create(&log_path)
                .unwrap_or_else(|e| panic!("cannot create server log {}: {e}", log_path.display()));
            let log_err = log
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot clone server log handle: {e}"));
            let mut command = Command::new(program);
            command
                .args(&args)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err);
            // -c is counted in descriptor numbers (memcached's and so
            // mnemo's): whatever the test runner leaks into children
            // would shift it, so every server starts with 0, 1 and 2 only.
            // SAFETY: fcntl is async-signal-safe; descriptors Rust itself
            // needs across exec are already close-on-exec.
            unsafe {
                command.pre_exec(|| {
                    for fd in 3..4096 {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                    Ok(())
                });
            }
            let child = spawn_retrying(&mut command)
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.display()));
            let mut server = Server {
                kind,
                child,
                port,
                log_path,
                args,
            };
            match server.wait_until_accepting() {
                Ok(()) => return server,
                Err(why) => {
                    last_failure = why;
                    // Drop kills whatever is left; try another port in case
                    // the failure was a collision with a parallel test.
                }
            }
        }
        panic!(
            "{} ({}) did not start after {START_ATTEMPTS} attempts: {last_failure}",
            kind.name(),
            program.display()
        );
    }

    fn wait_until_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                return Err(format!(
                    "exited with {status} before accepting connections; args {:?}; output:\n{}",
                    self.args,
                    self.log()
                ));
            }
            // Accepting means our child holds the listener: a connection
            // alone may reach a parallel test's server that won the port
            // (ours then dies on bind, but on a loaded machine not at once,
            // and the other server may be gone by the time a test connects).
            if listens_on(self.child.id(), self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not accepting on {} after {START_TIMEOUT:?}; output:\n{}",
                    self.addr(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The full command line the server was started with (after the program).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// A new client connection with the default read timeout.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr())
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `Some(status)` if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// Spawns `command`, retrying for a while if the program is missing or
/// being written: a `cargo build` running beside the tests (another crate's
/// tests, a developer) replaces the binary in the shared target directory.
pub fn spawn_retrying(command: &mut Command) -> std::io::Result<Child> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match command.spawn() {
            Ok(child) => return Ok(child),
            Err(e)
                if Instant::now() < deadline
                    && (e.kind() == ErrorKind::NotFound
                        // ETXTBSY on Linux: the file is still open for writing.
                        || e.raw_os_error() == Some(26)
                        || e.kind() == ErrorKind::PermissionDenied) =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

fn log_path(kind: Kind, port: u16, attempt: usize) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{}-{}-{port}-{attempt}.log",
        kind.name(),
        std::process::id()
    ))
}

/// An ephemeral port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind an ephemeral port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address for ephemeral listener: {e}"))
        .port()
}

/// What ended a read that did not find what it was looking for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The server closed the connection.
    Eof,
    /// Nothing arrived within the read timeout.
    Timeout,
}

/// A blocking text-protocol client. Bytes read past the end of one response
/// are kept for the next read, so pipelined responses can be consumed one
/// by one.
pub struct Client {
    stream: TcpStream,
    pending: Vec<u8>,
    eof: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        Client::from_tcp(stream)
    }

    /// A client whose socket receive buffer is `bytes` (set before the
    /// handshake, so the window stays that small): a slow reader that
    /// makes the server's writes stop part way.
    pub fn connect_small_window(addr: SocketAddr, bytes: usize) -> Client {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .unwrap_or_else(|e| panic!("socket: {e}"));
        sock.set_recv_buffer_size(bytes)
            .unwrap_or_else(|e| panic!("SO_RCVBUF: {e}"));
        sock.connect_timeout(&addr.into(), READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        Client::from_tcp(sock.into())
    }

    /// Wraps a connected socket (read timeout and TCP_NODELAY set).
    pub fn from_tcp(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .unwrap_or_else(|e| panic!("cannot set read timeout: {e}"));
        // Tests that split a request across writes need each write to leave
        // as its own segment rather than be coalesced by Nagle.
        stream
            .set_nodelay(true)
            .unwrap_or_else(|e| panic!("cannot set TCP_NODELAY: {e}"));
        Client {
            stream,
            pending: Vec::new(),
            eof: false,
        }
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .unwrap_or_else(|e| panic!("cannot set read timeout: {e}"));
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes all of `bytes`. A server that already closed the connection
    /// can make this fail; that is reported, not hidden.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write of {} bytes failed: {e}", bytes.len()));
    }

    /// Like [`send`](Self::send) but returns the error (for tests that expect
    /// the server to have closed the connection).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `bytes` as separate writes cut at `cuts` (offsets, ascending),
    /// pausing between them so the server sees them in separate reads.
    pub fn send_split(&mut self, bytes: &[u8], cuts: &[usize]) {
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            if cut > start {
                self.send(&bytes[start..cut]);
                self.stream.flush().ok();
                std::thread::sleep(Duration::from_millis(15));
            }
            start = cut;
        }
    }

    /// Half-closes the write side, as `nc -q` would.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the pending buffer; `Err` on EOF or timeout.
    fn fill(&mut self) -> Result<(), Stop> {
        if self.eof {
            return Err(Stop::Eof);
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Err(Stop::Eof);
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Stop::Timeout)
                }
                // A reset after the server closed counts as a close.
                Err(_) => {
                    self.eof = true;
                    return Err(Stop::Eof);
                }
            }
        }
    }

    /// Reads through the first occurrence of `terminator` and returns those
    /// bytes (terminator included). On EOF or timeout returns what arrived.
    pub fn try_read_until(&mut self, terminator: &[u8]) -> Result<Vec<u8>, (Stop, Vec<u8>)> {
        let mut searched = 0;
        loop {
            if let Some(pos) = find(&self.pending[searched..], terminator) {
                let end = searched + pos + terminator.len();
                return Ok(self.pending.drain(..end).collect());
            }
            searched = self
                .pending
                .len()
                .saturating_sub(terminator.len().saturating_sub(1));
            if let Err(stop) = self.fill() {
                return Err((stop, std::mem::take(&mut self.pending)));
            }
        }
    }

    /// Reads through the first occurrence of `terminator`, panicking (with
    /// what did arrive) if the server closes or goes silent first.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        self.try_read_until(terminator)
            .unwrap_or_else(|(stop, got)| {
                panic!(
                    "{stop:?} while waiting for {:?}; received {:?}",
                    show(terminator),
                    show(&got)
                )
            })
    }

    /// One `\r\n`-terminated line, terminator included.
    pub fn read_line(&mut self) -> Vec<u8> {
        self.read_until(b"\r\n")
    }

    /// Exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            if let Err(stop) = self.fill() {
                panic!(
                    "{stop:?} while waiting for {n} bytes; received {:?}",
                    show(&self.pending)
                );
            }
        }
        self.pending.drain(..n).collect()
    }

    /// Everything until the server closes the connection. `Err` carries what
    /// arrived if the server stayed silent for the read timeout instead.
    pub fn read_to_eof(&mut self) -> Result<Vec<u8>, Vec<u8>> {
        loop {
            match self.fill() {
                Ok(()) => continue,
                Err(Stop::Eof) => return Ok(std::mem::take(&mut self.pending)),
                Err(Stop::Timeout) => return Err(std::mem::take(&mut self.pending)),
            }
        }
    }

    /// Whether the server has closed the connection (waits up to the read
    /// timeout; bytes that arrive meanwhile are kept for later reads).
    pub fn is_closed(&mut self) -> bool {
        loop {
            match self.fill() {
                Ok(()) => continue,
                Err(Stop::Eof) => return true,
                Err(Stop::Timeout) => return false,
            }
        }
    }

    /// Bytes received but not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Sends one complete request (command line plus any data block) and
    /// reads its complete response, as the command's shape dictates:
    /// retrieval and `stats` read through `END\r\n` (decoding `VALUE` data
    /// blocks by length so data may contain anything), `quit` reads to EOF,
    /// a request ending in `noreply` reads nothing, everything else reads one
    /// line. An error line ends any response. Panics if the response does
    /// not complete in time.
    pub fn request(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.send(bytes);
        self.read_response(expected_shape(bytes))
    }

    /// Reads one response of the given shape.
    pub fn read_response(&mut self, shape: Shape) -> Vec<u8> {
        match shape {
            Shape::Nothing => Vec::new(),
            Shape::Line => self.read_line(),
            Shape::Eof => self
                .read_to_eof()
                .unwrap_or_else(|got| panic!("server did not close; received {:?}", show(&got))),
            Shape::LineOrEof => match self.try_read_until(b"\r\n") {
                Ok(line) => line,
                Err((Stop::Eof, got)) => got,
                Err((Stop::Timeout, got)) => {
                    panic!("no line and no close; received {:?}", show(&got))
                }
            },
            Shape::UntilEnd => {
                let mut out = Vec::new();
                loop {
                    let line = self.read_line();
                    out.extend_from_slice(&line);
                    if line == b"END\r\n" || is_error_line(&line) {
                        return out;
                    }
                    if let Some(len) = value_data_len(&line) {
                        out.extend_from_slice(&self.read_exact(len + 2));
                    }
                }
            }
        }
    }
}

/// How a response to a text-protocol request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `noreply`: the server sends nothing (unless the request is an error).
    Nothing,
    /// A single `\r\n`-terminated line.
    Line,
    /// `VALUE`/`STAT`/`ITEM` lines through `END\r\n`.
    UntilEnd,
    /// The server closes the connection (`quit`).
    Eof,
    /// One line, or a close without one (`shutdown`).
    LineOrEof,
}

/// The response shape for the first command in `request`.
pub fn expected_shape(request: &[u8]) -> Shape {
    let line_end = find(request, b"\n").unwrap_or(request.len());
    let line = &request[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase());
    let Some(verb) = words.next() else {
        return Shape::Line;
    };
    let rest: Vec<Vec<u8>> = words.collect();
    if rest.last().map(|w| w.as_slice()) == Some(b"noreply") {
        return Shape::Nothing;
    }
    match verb.as_slice() {
        b"get" | b"gets" | b"gat" | b"gats" => Shape::UntilEnd,
        b"stats" => match rest.first().map(|w| w.as_slice()) {
            Some(b"reset") | Some(b"detail") => {
                if rest.get(1).map(|w| w.as_slice()) == Some(b"dump") {
                    Shape::UntilEnd
                } else {
                    Shape::Line
                }
            }
            _ => Shape::UntilEnd,
        },
        b"quit" => Shape::Eof,
        b"shutdown" => Shape::LineOrEof,
        _ => Shape::Line,
    }
}

pub fn is_error_line(line: &[u8]) -> bool {
    line == b"ERROR\r\n"
        || line.starts_with(b"ERROR ")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// The data length declared by a `VALUE key flags bytes [cas]` line.
pub fn value_data_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?;
    let mut words = line.split(|&b| b == b' ');
    if words.next()? != b"VALUE" {
        return None;
    }
    let _key = words.next()?;
    let _flags = words.next()?;
    std::str::from_utf8(words.next()?).ok()?.parse().ok()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Printable rendering of protocol bytes for failure messages, clipped.
pub fn show(bytes: &[u8]) -> String {
    const LIMIT: usize = 600;
    let mut out = show_full(&bytes[..bytes.len().min(LIMIT)]);
    if bytes.len() > LIMIT {
        out.push_str(&format!("…(+{} bytes)", bytes.len() - LIMIT));
    }
    out
}

/// Printable rendering of protocol bytes: `\r`, `\n`, `\\` and `\xNN`
/// escapes, everything else printable ASCII as is.
pub fn show_full(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Whether process `pid` holds a listening TCP socket on 127.0.0.1:`port`
/// (its descriptors against the kernel's socket table).
fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next());
            if f.get(3) == Some(&"0A")
                && local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
            {
                if let Some(inode) = f.get(9) {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}
