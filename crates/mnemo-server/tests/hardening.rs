//! Issue #7: hostile clients, bounded memory, backpressure, slow clients
//! and floods, signals, and what the server listens on.
//!
//! Every test starts its own `mnemo` on a loopback port and checks, after
//! each hostile act, that an ordinary client is still answered correctly
//! and that the process's RSS (VmRSS) stayed within a generous but
//! meaningful bound of where it started. Bounds are in MB, never in time:
//! the only timing is the support client's read timeout, which turns a
//! server that stopped answering into a failure instead of a hang.
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Client, Server};

const MB: u64 = 1024 * 1024;

/// VmRSS of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb * 1024
}

fn assert_rss_within(server: &Server, base: u64, slack: u64, what: &str) {
    let now = rss(server.pid());
    assert!(
        now <= base + slack,
        "{what}: RSS grew from {} MB to {} MB (bound +{} MB)",
        base / MB,
        now / MB,
        slack / MB
    );
}

/// A normal client: a fresh connection stores and reads back a value.
fn assert_serves(server: &Server, what: &str) {
    let mut c = server.connect();
    let value = format!("alive after {what}");
    let set = format!("set probe 0 0 {}\r\n{value}\r\n", value.len());
    assert_eq!(c.request(set.as_bytes()), b"STORED\r\n", "set after {what}");
    let expect = format!("VALUE probe 0 {}\r\n{value}\r\nEND\r\n", value.len());
    assert_eq!(
        support::show(&c.request(b"get probe\r\n")),
        support::show(expect.as_bytes()),
        "get after {what}"
    );
}

/// splitmix64, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn raw(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(support::READ_TIMEOUT)).ok();
    s.set_write_timeout(Some(support::READ_TIMEOUT)).ok();
    s
}

/// Closes with an RST instead of a FIN (SO_LINGER 0), as a crashed client
/// or a middlebox would.
fn reset(s: TcpStream) {
    let sock = socket2::Socket::from(s);
    sock.set_linger(Some(Duration::ZERO)).ok();
    drop(sock);
}

/// Writes as much of `data` as the server takes; stops when the server
/// closes, resets, or stops reading for the write timeout. Returns bytes sent.
fn push(s: &mut TcpStream, data: &[u8]) -> usize {
    let mut sent = 0;
    while sent < data.len() {
        match s.write(&data[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn hostile_inputs_leave_the_server_answering_with_bounded_rss() {
    let server = Server::mnemo(&["-m", "64", "-t", "2"]);
    assert_serves(&server, "start");
    let base = rss(server.pid());
    let slack = 64 * MB;

    // 1. Random bytes, several connections, 1 MB each.
    let mut rng = Rng(7);
    for _ in 0..4 {
        let junk: Vec<u8> = (0..MB).map(|_| rng.next() as u8).collect();
        let mut s = raw(&server);
        push(&mut s, &junk);
        drop(s);
    }
    assert_serves(&server, "random bytes");
    assert_rss_within(&server, base, slack, "random bytes");

    // 2. 10 MB lines without a newline: a plain one (closed after 2048
    //    bytes) and a get line (buffered up to the get-line bound, then
    //    closed). Either way the server must close, not buffer 10 MB.
    for prefix in [&b"xyzzy "[..], &b"get "[..]] {
        let mut line = prefix.to_vec();
        line.resize(10 * MB as usize, b'k');
        let mut s = raw(&server);
        let sent = push(&mut s, &line);
        assert!(
            sent < line.len(),
            "{:?} line: the server read all 10 MB without a newline",
            support::show(prefix)
        );
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert_serves(&server, "a 10 MB line");
        assert_rss_within(&server, base, slack, "a 10 MB line");
    }

    // 3. `set` declaring 2 GB. Just under 2^31 parses and is refused as too
    //    large, its data swallowed as it arrives (we send 256 MB of it; as
    //    memcached's, the refusal is sent once all of it is in, so it is
    //    not read here); 2^31 does not parse at all (memcached's 32-bit
    //    length).
    {
        let mut c = server.connect();
        c.send(b"set huge 0 0 2147483000\r\n");
        let chunk = vec![b'v'; MB as usize];
        for _ in 0..256 {
            c.send(&chunk);
        }
        assert_rss_within(&server, base, slack, "256 MB of a 2 GB value");
        reset_client(c);
        let mut c = server.connect();
        c.send(b"set huge 0 0 2147483648\r\n");
        let line = c.read_line();
        assert!(
            line.starts_with(b"CLIENT_ERROR"),
            "2^31 byte set answered {}",
            support::show(&line)
        );
        assert_eq!(c.request(b"get huge\r\n"), b"END\r\n");
    }
    assert_serves(&server, "a 2 GB set");
    assert_rss_within(&server, base, slack, "a 2 GB set");

    // 4. Resets in the middle of a value: nothing partial is stored.
    for i in 0..50 {
        let mut s = raw(&server);
        let n = 512 * 1024;
        let mut req = format!("set torn{i} 0 0 {n}\r\n").into_bytes();
        req.resize(req.len() + n / 2 + i * 997, b'a' + (i % 26) as u8);
        push(&mut s, &req);
        reset(s);
    }
    {
        let mut c = server.connect();
        for i in 0..50 {
            let get = format!("get torn{i}\r\n");
            assert_eq!(
                c.request(get.as_bytes()),
                b"END\r\n",
                "half a value was stored"
            );
        }
    }
    assert_serves(&server, "resets mid-value");
    assert_rss_within(&server, base, slack, "resets mid-value");

    // 5. A multi-get of 100,000 keys, every tenth of them present.
    {
        let mut c = server.connect();
        for i in (0..100_000).step_by(10_000) {
            let v = format!("v{i}");
            let set = format!("set mk{i} 0 0 {}\r\n{v}\r\n", v.len());
            assert_eq!(c.request(set.as_bytes()), b"STORED\r\n");
        }
        let mut line = b"get".to_vec();
        for i in 0..100_000 {
            line.extend_from_slice(format!(" mk{i}").as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        c.send(&line);
        let reply = c.read_until(b"END\r\n");
        let mut expect = Vec::new();
        for i in (0..100_000).step_by(10_000) {
            let v = format!("v{i}");
            expect.extend_from_slice(format!("VALUE mk{i} 0 {}\r\n{v}\r\n", v.len()).as_bytes());
        }
        expect.extend_from_slice(b"END\r\n");
        assert_eq!(support::show(&reply), support::show(&expect));
    }
    assert_serves(&server, "a 100,000-key multi-get");
    assert_rss_within(&server, base, slack, "a 100,000-key multi-get");

    // 6. The same in the other protocols: a binary SET whose body declares
    //    4 GB (refused, then swallowed: we send 64 MB of it) and a meta set
    //    declaring 2 GB.
    {
        let mut s = raw(&server);
        let mut head = Vec::new();
        mnemo_protocol::binary::Header {
            magic: mnemo_protocol::binary::REQUEST_MAGIC,
            opcode: 0x01,
            key_len: 1,
            extras_len: 8,
            body_len: u32::MAX,
            ..Default::default()
        }
        .encode(&mut head);
        head.extend_from_slice(&[0u8; 8]);
        head.push(b'k');
        push(&mut s, &head);
        let chunk = vec![b'v'; MB as usize];
        for _ in 0..64 {
            push(&mut s, &chunk);
        }
        assert_rss_within(&server, base, slack, "a 4 GB binary body");
        reset(s);
        let mut c = server.connect();
        // (Its refusal waits for the whole value, as memcached's does.)
        c.send(b"ms huge 2147483000 T0\r\n");
        for _ in 0..64 {
            c.send(&chunk);
        }
        assert_rss_within(&server, base, slack, "a 2 GB meta value");
        reset_client(c);
    }
    assert_serves(&server, "huge binary and meta values");
}

fn reset_client(c: Client) {
    if let Ok(s) = c.stream().try_clone() {
        reset(s);
    }
    drop(c);
}

/// Fills a connection with pipelined requests it never reads the answers
/// to, until the server stops taking them; returns how much it took.
fn flood_unread(server: &Server, one: &[u8], count: usize) -> (TcpStream, usize) {
    let mut s = raw(server);
    s.set_write_timeout(Some(Duration::from_secs(2))).ok();
    let mut batch = Vec::with_capacity(one.len() * 1000);
    for _ in 0..1000 {
        batch.extend_from_slice(one);
    }
    let mut sent = 0;
    for _ in 0..count / 1000 {
        let n = push(&mut s, &batch);
        sent += n;
        if n < batch.len() {
            break;
        }
    }
    (s, sent)
}

fn bin_get(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    mnemo_protocol::binary::Header {
        magic: mnemo_protocol::binary::REQUEST_MAGIC,
        opcode: 0x00,
        key_len: key.len() as u16,
        body_len: key.len() as u32,
        ..Default::default()
    }
    .encode(&mut out);
    out.extend_from_slice(key);
    out
}

#[test]
fn unread_pipelined_gets_of_a_big_value_do_not_grow_rss() {
    let server = Server::mnemo(&["-m", "64", "-t", "2"]);
    let value = vec![b'B'; 512 * 1024];
    {
        let mut c = server.connect();
        let mut set = b"set big 0 0 524288\r\n".to_vec();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        assert_eq!(c.request(&set), b"STORED\r\n");
    }
    assert_serves(&server, "start");
    let base = rss(server.pid());
    // 100,000 answers of 512 KB are 50 GB: anything but backpressure shows.
    let slack = 64 * MB;

    let mut multi = b"get".to_vec();
    for _ in 0..100_000 {
        multi.extend_from_slice(b" big");
    }
    multi.extend_from_slice(b"\r\n");
    // A stuck connection stops being read once the pause bound (4 MB) of
    // replies is queued, and those replies reference the item instead of
    // copying it: it holds its read buffer and reply headers, not 4 MB of
    // copies (which these bounds would catch). The multi-get also holds
    // its 2 MB get line.
    let cases: Vec<(&str, Vec<u8>, usize, u64)> = vec![
        ("text get", b"get big\r\n".to_vec(), 100_000, 2 * MB),
        ("meta mg", b"mg big v\r\n".to_vec(), 100_000, 2 * MB),
        ("binary GET", bin_get(b"big"), 100_000, 2 * MB),
        ("one 100,000-key multi-get", multi, 1000, 6 * MB),
    ];
    let mut held = Vec::new();
    for (what, one, count, bound) in cases {
        let before = rss(server.pid());
        let (s, sent) = flood_unread(&server, &one, count);
        assert!(sent > 0, "{what}: the server took nothing");
        // The server is still filling its side when the flood times out.
        std::thread::sleep(Duration::from_millis(500));
        assert_rss_within(&server, before, bound, what);
        assert_rss_within(&server, base, slack, what);
        // Others are still served while this connection is stuck.
        assert_serves(&server, what);
        held.push(s);
    }
    assert_rss_within(&server, base, slack, "all four stuck connections");
    // Dropping the stuck readers must release their output.
    for s in held {
        reset(s);
    }
    assert_serves(&server, "the stuck readers left");
}

#[test]
fn slow_clients_and_a_connection_flood_do_not_starve_a_normal_client() {
    let server = Server::mnemo(&["-m", "64", "-t", "2", "-c", "128"]);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr();
    let mut threads = Vec::new();

    // The normal client connects before the flood starts: past -c, mnemo
    // (like memcached) refuses new connections, which is correct but not
    // what this test measures. Connecting it later raced the flood thread.
    let mut c = Client::connect(addr);

    // 60 connections trickling `get slowkey\r\n` one byte at a time.
    let trickled = Arc::new(AtomicU64::new(0));
    for t in 0..3 {
        let stop = stop.clone();
        let trickled = trickled.clone();
        threads.push(std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..20)
                .filter_map(|_| TcpStream::connect(addr).ok())
                .collect();
            for c in &conns {
                c.set_nodelay(true).ok();
                c.set_nonblocking(true).ok();
            }
            let req = b"get slowkey\r\n";
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let b = req[i % req.len()];
                for c in &mut conns {
                    let _ = c.write(&[b]);
                    let mut sink = [0u8; 256];
                    let _ = c.read(&mut sink);
                }
                trickled.fetch_add(1, Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    // A flood of connections past -c: opened and dropped in bursts of 100.
    let flooded = Arc::new(AtomicU64::new(0));
    {
        let stop = stop.clone();
        let flooded = flooded.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let burst: Vec<TcpStream> = (0..100)
                    .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
                    .collect();
                flooded.fetch_add(burst.len() as u64, Ordering::Relaxed);
                drop(burst);
            }
        }));
    }

    assert_eq!(c.request(b"set fast 0 0 5\r\nhello\r\n"), b"STORED\r\n");
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(3) || rounds < 200 {
        let t = Instant::now();
        assert_eq!(
            c.request(b"get fast\r\n"),
            b"VALUE fast 0 5\r\nhello\r\nEND\r\n"
        );
        worst = worst.max(t.elapsed());
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    assert!(
        trickled.load(Ordering::Relaxed) > 100 && flooded.load(Ordering::Relaxed) > 100,
        "the hostile load did not run"
    );
    // Generous: a correctness bound, not a benchmark (the box is shared).
    assert!(
        worst < Duration::from_millis(500),
        "a normal get took {worst:?} under slow clients and a flood"
    );
    // The flood's last burst was dropped on this side; until the server
    // has read those closes it is still at -c and refuses a new
    // connection, as memcached does. Wait (bounded) for it to get there.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = String::from_utf8_lossy(&c.request(b"stats\r\n")).into_owned();
        let curr: u64 = stats
            .lines()
            .find_map(|l| l.strip_prefix("STAT curr_connections "))
            .and_then(|v| v.trim().parse().ok())
            .expect("curr_connections in stats");
        if curr < 100 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_serves(&server, "slow clients and a flood");
}

#[test]
fn sigterm_under_load_finishes_in_flight_replies_and_exits_0() {
    let mut server = Server::mnemo(&["-m", "64", "-t", "2"]);
    let value: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    {
        let mut c = server.connect();
        let mut set = format!("set sig 0 0 {}\r\n", value.len()).into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        assert_eq!(c.request(&set), b"STORED\r\n");
    }
    let expect_one = {
        let mut e = format!("VALUE sig 0 {}\r\n", value.len()).into_bytes();
        e.extend_from_slice(&value);
        e.extend_from_slice(b"\r\nEND\r\n");
        e
    };
    let addr: SocketAddr = server.addr();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let expect_one = expect_one.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut w = s.try_clone().expect("clone");
                let writer = std::thread::spawn(move || {
                    let batch = b"get sig\r\n".repeat(64);
                    while w.write_all(&batch).is_ok() {}
                });
                let mut got = Vec::new();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // The server closes with our unread requests still
                        // queued, which the kernel answers with an RST; what
                        // it sent before is already here.
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                        Err(e) => {
                            let _ = s.shutdown(Shutdown::Both);
                            let _ = writer.join();
                            return Err(format!("read ended with {e} after {} bytes", got.len()));
                        }
                    }
                }
                let _ = writer.join();
                // What arrived must be whole replies, back to back.
                let whole = got.len() / expect_one.len();
                if got.len() % expect_one.len() != 0 {
                    return Err(format!(
                        "{} bytes is not a whole number of {}-byte replies",
                        got.len(),
                        expect_one.len()
                    ));
                }
                for (i, r) in got.chunks(expect_one.len()).enumerate() {
                    if r != expect_one.as_slice() {
                        return Err(format!("reply {i} of {whole} is wrong"));
                    }
                }
                Ok(whole)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let exit = server.wait_exit(Duration::from_secs(10));
    let mut answered = 0;
    for r in readers {
        match r.join().expect("reader thread") {
            Ok(n) => answered += n,
            Err(e) => panic!("a client saw a torn reply stream: {e}"),
        }
    }
    assert!(answered > 0, "no get was answered before SIGTERM");
    let exit = exit.unwrap_or_else(|| panic!("mnemo did not exit within 10 s of SIGTERM"));
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM: {exit}");
}

#[test]
fn listens_only_where_told() {
    let server = Server::mnemo(&["-m", "8"]);
    let port = server.port();
    // Bound to 127.0.0.1 only: other loopback addresses are refused.
    for other in ["127.0.0.2", "[::1]"] {
        let addr: SocketAddr = format!("{other}:{port}").parse().expect("address");
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "-l 127.0.0.1 also accepts on {addr}"
        );
    }
    // -U 0: no UDP socket bound on the port.
    let udp = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let hex = format!(":{port:04X} ");
    assert!(
        !udp.lines().skip(1).any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|a| a.ends_with(hex.trim()))),
        "a UDP socket is bound on {port} despite -U 0"
    );
    assert_serves(&server, "start");
}

#[test]
fn unix_socket_mask_is_applied_and_tcp_is_off() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (mask, mode) in [("0600", 0o600), ("0660", 0o660), ("0700", 0o700)] {
        let path = dir.join(format!("hardening-{}-{mask}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let spath = path.to_string_lossy().into_owned();
        let program = support::Kind::Mnemo.program();
        let mut child = std::process::Command::new(&program)
            .args(support::engine_args(support::Kind::Mnemo))
            .args(["-s", &spath, "-a", mask, "-m", "8"])
            .args(if running_as_root() {
                &["-u", "root"][..]
            } else {
                &[][..]
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn mnemo");
        let guard = KillOnDrop(&mut child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = None;
        while Instant::now() < deadline {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&path) {
                conn = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut s = conn.unwrap_or_else(|| panic!("no unix socket at {spath}"));
        use std::os::unix::fs::PermissionsExt;
        let perm = std::fs::metadata(&path)
            .expect("socket metadata")
            .permissions()
            .mode();
        assert_eq!(perm & 0o777, mode, "-a {mask} gave mode {:o}", perm & 0o777);
        s.set_read_timeout(Some(support::READ_TIMEOUT)).ok();
        s.write_all(b"version\r\n").expect("write");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).expect("read");
        assert!(buf[..n].starts_with(b"VERSION "), "{:?}", &buf[..n]);
        // With -s, memcached listens on nothing else.
        assert!(
            !listening_pid_owns_tcp(guard.0.id()),
            "-s also opened a TCP listener"
        );
        drop(guard);
        let _ = std::fs::remove_file(&path);
    }
}

/// Whether the process has any listening TCP socket (its fds against
/// /proc/net/tcp{,6} listeners).
fn listening_pid_owns_tcp(pid: u32) -> bool {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .filter_map(|l| {
                    l.strip_prefix("socket:[")
                        .map(|s| s.trim_end_matches(']').to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 9 && cols[3] == "0A" && inodes.iter().any(|i| i == cols[9])
            })
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

struct KillOnDrop<'a>(&'a mut std::process::Child);
impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fuzz corpora (`fuzz/corpus/{text,meta,binary}`: inputs that reach
/// every parser branch the fuzzer found) and mutations of them, each sent
/// on its own connection to a live server and followed by a half-close:
/// the server must answer or close every one (no hang), never crash, and
/// keep serving others. This drives the connection state machine and the
/// command code, which the parser fuzzers do not reach.
#[test]
fn fuzz_corpus_streams_neither_crash_nor_hang_the_server() {
    let mut server = Server::mnemo(&["-m", "64", "-t", "2"]);
    let base = rss(server.pid());
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut inputs = Vec::new();
    for target in ["text", "meta", "binary"] {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            inputs.push(std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
        }
    }
    assert!(inputs.len() > 100, "fuzz corpus missing");
    let mut rng = Rng(0x0f0f);
    for round in 0..3 {
        for (i, input) in inputs.iter().enumerate() {
            let mut bytes = input.clone();
            if round > 0 {
                // Splice in another input and flip a few bytes.
                let other = &inputs[(rng.next() as usize) % inputs.len()];
                let at = (rng.next() as usize) % (bytes.len() + 1);
                bytes.splice(at..at, other.iter().copied());
                for _ in 0..(rng.next() % 4) {
                    if !bytes.is_empty() {
                        let j = (rng.next() as usize) % bytes.len();
                        bytes[j] ^= 1 << (rng.next() % 8);
                    }
                }
            }
            let mut s = raw(&server);
            push(&mut s, &bytes);
            let _ = s.shutdown(Shutdown::Write);
            let mut sink = [0u8; 64 * 1024];
            loop {
                match s.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        panic!(
                            "round {round} input {i}: no close within the read timeout after \
                             the client's EOF: {}",
                            support::show(&bytes)
                        )
                    }
                    Err(_) => break,
                }
            }
            if let Some(status) = server.try_wait() {
                panic!(
                    "round {round} input {i} killed the server ({status}): {}\n{}",
                    support::show(&bytes),
                    server.log()
                );
            }
        }
        assert_serves(&server, "fuzz corpus streams");
    }
    assert_rss_within(&server, base, 64 * MB, "fuzz corpus streams");
}

/// A client that sends its requests and half-closes at once (`nc -N`,
/// scripts, health checks) gets its answers and then the server's close.
/// When the request bytes and the FIN arrive as one readiness edge (here
/// forced with TCP_CORK, on a connection the server has already polled),
/// the server once took the short read for "drained" and never read the
/// EOF: the connection leaked (found by the corpus-stream test).
#[test]
fn half_closed_clients_are_answered_and_closed() {
    let server = Server::mnemo(&["-m", "8", "-t", "2"]);
    let cases: [(&[u8], bool); 5] = [
        (b"version\r\n", true),
        (b"set hc 0 0 2\r\nhi\r\nget hc\r\n", true),
        (
            b"\x80\x0b\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            true,
        ),
        (b"get", false),
        (b"set hc 0 0 10\r\nabc", false),
    ];
    for round in 0..40 {
        let (req, answered) = cases[round % cases.len()];
        let mut s = raw(&server);
        // Let the server adopt the socket and find it empty first.
        std::thread::sleep(Duration::from_millis(20));
        socket2::SockRef::from(&s).set_cork(true).expect("TCP_CORK");
        s.write_all(req).expect("write");
        s.shutdown(Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "{}: no close after the client's EOF ({e}); got {}",
                support::show(req),
                support::show(&got)
            ),
        }
        assert_eq!(
            !got.is_empty(),
            answered,
            "{}: answered {}",
            support::show(req),
            support::show(&got)
        );
    }
    assert_serves(&server, "half-closed clients");
}

/// `lru_crawler metadump` streams like a multi-get: a client that does not
/// read holds the server to the pause bound, not the whole dump, others
/// are served meanwhile, and the dump ends complete with what follows it.
#[test]
fn unread_metadump_is_streamed_with_bounded_rss() {
    let server = Server::mnemo(&["-m", "256", "-t", "2"]);
    const N: usize = 200_000;
    // Long keys make the dump (about 125 bytes a line) outweigh the bound.
    let key = |i: usize| format!("metadump-stream-{i:07}-{}", "k".repeat(40));
    {
        let mut c = server.connect();
        let mut batch = Vec::new();
        for i in 0..N {
            batch.extend_from_slice(format!("set {} 0 0 1 noreply\r\nx\r\n", key(i)).as_bytes());
            if batch.len() > 256 * 1024 {
                c.send(&batch);
                batch.clear();
            }
        }
        c.send(&batch);
        assert!(c.request(b"version\r\n").starts_with(b"VERSION "));
    }
    assert_serves(&server, "the fill");
    let base = rss(server.pid());

    let mut dump = server.connect();
    // The command after the dump must wait for it and then be answered.
    dump.send(b"lru_crawler metadump all\r\nversion\r\n");
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let t = Instant::now();
        assert_serves(&server, "a metadump nobody reads");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown = rss(server.pid()).saturating_sub(base);
    eprintln!(
        "metadump unread: RSS {} MB -> +{} KB, slowest other client {:?}",
        base / MB,
        grown / 1024,
        slowest
    );
    assert!(
        slowest < Duration::from_millis(500),
        "another client waited {slowest:?} during the dump"
    );

    let started = Instant::now();
    let body = dump.read_until(b"END\r\n");
    let version = dump.read_line();
    assert!(
        version.starts_with(b"VERSION "),
        "{}",
        support::show(&version)
    );
    let text = std::str::from_utf8(&body).expect("utf8 dump");
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| *l != "END") {
        let k = line
            .split(' ')
            .next()
            .and_then(|f| f.strip_prefix("key="))
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        // The probe key stored meanwhile may or may not be listed.
        if k != "probe" {
            assert!(seen.insert(k.to_string()), "{k} listed twice");
        }
    }
    assert_eq!(seen.len(), N, "items listed");
    assert!(
        (0..N).all(|i| seen.contains(&key(i))),
        "a stored key is missing"
    );
    assert!(
        body.len() as u64 > 20 * MB,
        "dump of {} bytes is too small to test the bound",
        body.len()
    );
    eprintln!(
        "metadump: {} MB read in {:?}",
        body.len() as u64 / MB,
        started.elapsed()
    );
    // Without streaming the whole dump sits in the output buffer.
    assert!(
        grown < 16 * MB,
        "RSS grew by {} MB while a {} MB dump went unread",
        grown / MB,
        body.len() as u64 / MB
    );
    // The checks still run before a dump's first byte.
    dump.send(b"get nothing\r\nlru_crawler metadump all\r\n");
    assert_eq!(dump.read_until(b"END\r\n"), b"END\r\n");
    assert_eq!(
        support::show(&dump.read_line()),
        support::show(b"ERROR cannot pipeline other commands before metadump\r\n")
    );
    assert_serves(&server, "the dump");
}

/// Many clients each start a 1 MB `set` and stall part way: memcached
/// reads a value into the item it allocated for it, so values in flight
/// are cache memory, bounded by `-m`, not buffers outside it. The same
/// holds here: with `-m 16` and 40 such clients, the ones that fit get
/// their item and the rest `SERVER_ERROR out of memory storing object`
/// (memcached 1.6.18: 15 stored, 25 `SERVER_ERROR Out of memory during
/// read`, since it allocates a large item's chunks as data arrives), and
/// RSS stays near `-m` instead of growing by 40 MB.
#[test]
fn partial_values_are_held_in_cache_memory_not_buffers() {
    let server = Server::mnemo(&["-m", "16", "-t", "2"]);
    assert_serves(&server, "start");
    let mut early = server.connect();
    assert_eq!(
        early.request(b"set early 0 0 5\r\nfirst\r\n"),
        b"STORED\r\n"
    );
    let base = rss(server.pid());
    let n = 1_000_000;
    let value = |i: usize| -> Vec<u8> { (0..n).map(|j| (i * 31 + j % 251) as u8).collect() };
    let mut held = Vec::new();
    for i in 0..40 {
        let mut s = raw(&server);
        let mut req = format!("set part{i} 0 0 {n}\r\n").into_bytes();
        req.extend_from_slice(&value(i)[..900_000]);
        assert_eq!(push(&mut s, &req), req.len(), "client {i}");
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    // -m 16 is 16 pages; 40 values of 1 MB would need 40 more MB.
    assert_rss_within(&server, base, 16 * MB + 4 * MB, "40 stalled 1 MB values");
    assert_serves(&server, "40 stalled 1 MB values");
    // Values in flight took free memory only, not other classes' pages
    // (as with memcached, whose small items stay readable meanwhile).
    assert_eq!(
        early.request(b"get early\r\n"),
        b"VALUE early 0 5\r\nfirst\r\nEND\r\n"
    );
    let mut stored = Vec::new();
    let mut refused = 0;
    for (i, mut s) in held.into_iter().enumerate() {
        let mut rest = value(i)[900_000..].to_vec();
        rest.extend_from_slice(b"\r\n");
        push(&mut s, &rest);
        let mut c = Client::from_tcp(s);
        match c.read_line().as_slice() {
            b"STORED\r\n" => stored.push(i),
            b"SERVER_ERROR out of memory storing object\r\n" => refused += 1,
            other => panic!("client {i}: {}", support::show(other)),
        }
    }
    assert!(stored.len() >= 8, "only {} of 40 stored", stored.len());
    assert!(refused >= 20, "only {refused} of 40 refused in 16 MB");
    let mut c = server.connect();
    for i in stored {
        let reply = c.request(format!("get part{i}\r\n").as_bytes());
        let head = format!("VALUE part{i} 0 {n}\r\n");
        if reply == b"END\r\n" {
            continue; // evicted by a later one: allowed, torn is not
        }
        assert!(reply.starts_with(head.as_bytes()), "part{i}");
        assert_eq!(
            &reply[head.len()..head.len() + n],
            value(i).as_slice(),
            "part{i} bytes"
        );
    }
    assert_serves(&server, "completed values");
}

/// Large values trickled in odd-sized pieces, in all three protocols, with
/// requests pipelined behind them, come back byte for byte; a bad
/// terminator after a directly read value is answered as memcached does
/// and stores nothing.
#[test]
fn large_values_trickled_in_pieces_arrive_whole_in_every_protocol() {
    let server = Server::mnemo(&["-m", "64", "-I", "4m"]);
    let mut rng = Rng(11);
    let blob = |seed: u8, n: usize| -> Vec<u8> {
        (0..n).map(|j| seed.wrapping_add((j % 253) as u8)).collect()
    };
    let trickle = |rng: &mut Rng, s: &mut TcpStream, req: &[u8]| {
        let mut off = 0;
        while off < req.len() {
            let n = (1 + rng.next() as usize % 70_000).min(req.len() - off);
            s.write_all(&req[off..off + n]).expect("send");
            off += n;
            if rng.next().is_multiple_of(3) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    for (i, n) in [20_000usize, 300_000, 1_500_000].into_iter().enumerate() {
        let v = blob(i as u8, n);
        // Text set, then a get pipelined behind it.
        let mut s = raw(&server);
        let mut req = format!("set t{i} 5 0 {n}\r\n").into_bytes();
        req.extend_from_slice(&v);
        req.extend_from_slice(format!("\r\nappend t{i} 0 0 3\r\nxyz\r\nget t{i}\r\n").as_bytes());
        trickle(&mut rng, &mut s, &req);
        let mut c = Client::from_tcp(s);
        assert_eq!(c.read_line(), b"STORED\r\n");
        assert_eq!(c.read_line(), b"STORED\r\n");
        assert_eq!(
            c.read_line(),
            format!("VALUE t{i} 5 {}\r\n", n + 3).into_bytes()
        );
        let got = c.read_exact(n + 3 + 2);
        assert!(got[..n] == v[..] && &got[n..] == b"xyz\r\n", "text {n}");
        assert_eq!(c.read_line(), b"END\r\n");

        // Meta ms with a base64 key and a TTL, then mg.
        let mut s = raw(&server);
        // base64 of "key0", "key1", "key2".
        let k64 = ["a2V5MA==", "a2V5MQ==", "a2V5Mg=="][i];
        let mut req = format!("ms {k64} {n} T100 F9 b c\r\n").into_bytes();
        req.extend_from_slice(&v);
        req.extend_from_slice(format!("\r\nmg {k64} b v f t\r\n").as_bytes());
        trickle(&mut rng, &mut s, &req);
        let mut c = Client::from_tcp(s);
        let hd = c.read_line();
        assert!(hd.starts_with(b"HD c"), "{}", support::show(&hd));
        let va = c.read_line();
        assert!(
            va.starts_with(format!("VA {n} f9 t").as_bytes()),
            "{}",
            support::show(&va)
        );
        let got = c.read_exact(n + 2);
        assert!(got[..n] == v[..], "meta {n}");

        // Binary set then get.
        let mut s = raw(&server);
        let key = format!("b{i}");
        let mut req = bin_set(key.as_bytes(), 3, &v);
        req.extend_from_slice(&bin_get(key.as_bytes()));
        trickle(&mut rng, &mut s, &req);
        let mut c = Client::from_tcp(s);
        let set_reply = c.read_exact(24);
        assert_eq!(&set_reply[6..8], &[0, 0], "binary set status");
        let head = c.read_exact(24);
        assert_eq!(&head[6..8], &[0, 0], "binary get status");
        let body_len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
        assert_eq!(body_len, 4 + n);
        let body = c.read_exact(body_len);
        assert_eq!(&body[..4], &3u32.to_be_bytes());
        assert!(body[4..] == v[..], "binary {n}");
    }
    // A bad data chunk after a direct value: memcached's error, no value.
    let mut c = server.connect();
    let mut req = b"set bad 0 0 100000\r\n".to_vec();
    req.extend_from_slice(&blob(1, 100_000));
    req.extend_from_slice(b"XXget bad\r\n");
    c.send(&req);
    assert_eq!(c.read_line(), b"CLIENT_ERROR bad data chunk\r\n");
    assert_eq!(c.read_line(), b"END\r\n");
    assert_serves(&server, "trickled values");
}

fn bin_set(key: &[u8], flags: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    mnemo_protocol::binary::Header {
        magic: mnemo_protocol::binary::REQUEST_MAGIC,
        opcode: 0x01,
        key_len: key.len() as u16,
        extras_len: 8,
        body_len: (8 + key.len() + value.len()) as u32,
        ..Default::default()
    }
    .encode(&mut out);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}
