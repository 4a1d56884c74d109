//! The `mnemo` process: command line, start-up output, signals, the
//! connection limit, idle_timeout, unix sockets and daemon mode.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{show, Server};

const BIN: &str = env!("CARGO_BIN_EXE_mnemo");

fn root_args() -> Vec<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        vec!["-u", "root"]
    } else {
        Vec::new()
    }
}

/// Runs mnemo with `args` and waits (bounded) for it to exit.
fn run_to_exit(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(support::engine_args(support::Kind::Mnemo))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mnemo");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "mnemo {args:?} did not exit; stderr {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a process by pid on drop (for daemons we did not spawn directly).
struct PidGuard(i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        // SAFETY: kill with a pid we started.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

/// A child killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill with a pid we started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[test]
fn bad_flags_fail_clearly() {
    for (args, needle) in [
        (&["-z"][..], "invalid option -- 'z'"),
        (&["--no-such-flag"][..], "unrecognized option"),
        (&["-p"][..], "requires an argument"),
        (&["-p", "eleven"][..], "-p"),
        (
            &["-c", "0"][..],
            "Maximum connections must be greater than 0",
        ),
        (
            &["-o", "bogus_option"][..],
            "Illegal suboption \"bogus_option\"",
        ),
        (
            &["-I", "1m", "-m", "1"][..],
            "Cannot set item size limit higher than 1/2 of memory max.",
        ),
        (
            &["-B", "telepathy"][..],
            "Invalid value for binding protocol",
        ),
    ] {
        let out = run_to_exit(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: stderr {err:?} lacks {needle:?}"
        );
    }
}

/// `-o engine=` is mnemo's own. A value it does not know, or none, is
/// refused as memcached 1.6.18 refuses them for its one keyword-valued
/// suboption, `hash_algorithm`: a message naming the choices, exit 1.
#[test]
fn engine_option_is_refused_like_hash_algorithm() {
    let memcached = |sub: &str| {
        Command::new(support::require_tool("memcached"))
            .args(root_args())
            .args(["-p", "0", "-U", "0", "-o", sub])
            .output()
            .expect("run memcached")
    };
    for (mnemo_sub, memcached_sub, message) in [
        (
            "engine=slabs",
            "hash_algorithm=bogus",
            "Unknown engine option (slab, segment)",
        ),
        ("engine", "hash_algorithm", "Missing engine argument"),
    ] {
        let reference = memcached(memcached_sub);
        let out = run_to_exit(&["-o", mnemo_sub]);
        assert_eq!(
            out.status.code(),
            reference.status.code(),
            "-o {mnemo_sub} against memcached's -o {memcached_sub}"
        );
        // The line after it is mnemo's usual pointer to -h.
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().next(), Some(message), "-o {mnemo_sub}");
    }
    // Named explicitly, the default engine starts and serves.
    let s = Server::mnemo(&["-o", "engine=slab"]);
    let mut c = s.connect();
    assert_eq!(c.request(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n");
}

/// `-o engine=segment` starts the segment engine, which serves, and says
/// so in its own `stats` lines.
#[test]
fn segment_engine_starts_and_serves() {
    let s = Server::mnemo(&["-o", "engine=segment"]);
    let mut c = s.connect();
    assert_eq!(c.request(b"set k 5 0 1\r\nv\r\n"), b"STORED\r\n");
    assert_eq!(c.request(b"get k\r\n"), b"VALUE k 5 1\r\nv\r\nEND\r\n");
    let stats = c.request(b"stats\r\n");
    let stats = String::from_utf8_lossy(&stats);
    assert!(stats.contains("STAT mnemo_segments_total "), "{stats}");
}

/// `-V` names mnemo and its release in memcached's two fields
/// (`memcached 1.6.18`), then the memcached version it answers as, which is
/// the reference binary's own `-V` version; `-h` starts with the same line.
#[test]
fn version_and_help() {
    let reference = Command::new(support::require_tool("memcached"))
        .arg("-V")
        .output()
        .expect("run memcached -V");
    let reference = String::from_utf8_lossy(&reference.stdout);
    let memcached_version = reference
        .strip_prefix("memcached ")
        .and_then(|v| v.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("memcached -V printed {reference:?}"));
    let out = run_to_exit(&["-V"]);
    assert!(out.status.success());
    let identity = format!(
        "mnemo {} (memcached {memcached_version})\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), identity);
    let out = run_to_exit(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.starts_with(&identity), "help starts {help:?}");
    for flag in [
        "-p, --port",
        "-m, --memory-limit",
        "-t, --threads",
        "-o, --extended",
        "idle_timeout",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
}

#[test]
fn very_verbose_prints_slab_classes() {
    support::slab_only!("-vv lists the slab classes");
    let s = Server::mnemo(&["-vv"]);
    let mut c = s.connect();
    assert!(c.request(b"version\r\n").starts_with(b"VERSION "));
    let log = s.log();
    let first = log
        .lines()
        .find(|l| l.starts_with("slab class"))
        .unwrap_or_else(|| panic!("no slab classes in {log:?}"));
    // memcached's layout: "slab class %3d: chunk size %9u perslab %7u".
    assert!(
        first.starts_with("slab class   1: chunk size "),
        "{first:?}"
    );
    assert_eq!(
        first.len(),
        "slab class   1: chunk size        96 perslab   10922".len()
    );
    // -vv also logs commands.
    assert!(log.contains(" version"), "{log:?}");
}

#[test]
fn sigterm_and_sigint_exit_cleanly_sighup_does_not() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut s = Server::mnemo(&[]);
        signal(s.pid(), libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(200));
        let mut c = s.connect();
        assert_eq!(c.request(b"set a 0 0 1\r\nx\r\n"), b"STORED\r\n");
        assert!(s.try_wait().is_none(), "SIGHUP must not stop the server");
        signal(s.pid(), sig);
        let status = s
            .wait_exit(Duration::from_secs(10))
            .expect("exit after signal");
        assert!(
            status.success(),
            "exit status {status:?} after signal {sig}"
        );
    }
}

#[test]
fn shutdown_command_needs_dash_a() {
    let mut s = Server::mnemo(&["-A"]);
    let mut c = s.connect();
    c.send(b"shutdown\r\n");
    assert!(c.is_closed());
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exit after shutdown");
    assert!(status.success());
}

#[test]
fn too_many_connections() {
    // memcached's -c counts descriptors: with one thread, one listener and
    // only 0, 1 and 2 inherited (the harness sees to that), its first
    // client gets fd 11 and fd >= c - 1 is refused, so -c 15 admits three.
    let s = Server::mnemo(&["-c", "15", "-t", "1"]);
    let mut a = s.connect();
    let mut b = s.connect();
    let mut c = s.connect();
    for conn in [&mut a, &mut b, &mut c] {
        assert!(conn.request(b"version\r\n").starts_with(b"VERSION"));
    }
    let mut fourth = s.connect();
    assert_eq!(
        fourth.read_to_eof().map(|v| show(&v)),
        Ok(show(b"ERROR Too many open connections\r\n"))
    );
    drop(a);
    // The slot frees once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = s.connect();
        c.send(b"version\r\n");
        match c.try_read_until(b"\r\n") {
            Ok(line) if line.starts_with(b"VERSION") => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("no slot after a close: {other:?}"),
        }
    }
    let stats = String::from_utf8(b.request(b"stats\r\n")).expect("ascii");
    assert!(
        !stats.contains("STAT rejected_connections 0\r\n"),
        "{stats}"
    );
}

#[test]
fn idle_timeout_closes_idle_clients() {
    let s = Server::mnemo(&["-o", "idle_timeout=1"]);
    let mut idle = s.connect();
    assert_eq!(idle.request(b"set a 0 0 1\r\nx\r\n"), b"STORED\r\n");
    idle.set_read_timeout(Duration::from_secs(6));
    let started = Instant::now();
    assert!(idle.is_closed(), "idle client was not closed");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let mut c = s.connect();
    let stats = String::from_utf8(c.request(b"stats\r\n")).expect("ascii");
    assert!(stats.contains("STAT idle_kicks 1\r\n"), "{stats}");
}

fn temp_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()))
}

#[test]
fn unix_socket_with_mask() {
    use std::os::unix::fs::PermissionsExt;
    let path = temp_path("mnemo.sock");
    let _ = std::fs::remove_file(&path);
    let mut args = vec![
        "-s",
        path.to_str().expect("utf-8 path"),
        "-a",
        "640",
        "-U",
        "0",
    ];
    args.extend(root_args());
    let _child = ChildGuard(
        Command::new(BIN)
            .args(support::engine_args(support::Kind::Mnemo))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sock = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("no unix socket: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mode = std::fs::metadata(&path)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.write_all(b"set u 0 0 2\r\nhi\r\nget u\r\n")
        .expect("write");
    let want = b"STORED\r\nVALUE u 0 2\r\nhi\r\nEND\r\n";
    let mut got = vec![0u8; want.len()];
    sock.read_exact(&mut got).expect("read");
    assert_eq!(show(&got), show(want));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn daemon_mode_writes_and_removes_pid_file() {
    let pidfile = temp_path("mnemo.pid");
    let _ = std::fs::remove_file(&pidfile);
    let port = support::free_port().to_string();
    let mut args = vec![
        "-d",
        "-P",
        pidfile.to_str().expect("utf-8 path"),
        "-p",
        &port,
        "-l",
        "127.0.0.1",
        "-U",
        "0",
    ];
    args.extend(root_args());
    // The parent returns at once; the daemon lives on.
    let out = run_to_exit(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _guard = PidGuard(pid);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut c = support::Client::connect(addr);
    assert_eq!(c.request(b"set d 0 0 1\r\nx\r\n"), b"STORED\r\n");
    signal(pid as u32, libc::SIGTERM);
    while std::fs::metadata(&pidfile).is_ok() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "pid file left behind"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Data-carrying TCP segments this socket has received so far
/// (`tcpi_data_segs_in` of Linux's `struct tcp_info`, at byte 152).
fn data_segments_in(sock: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `buf`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(TCP_INFO)");
    assert!(len >= 156, "kernel tcp_info too old ({len} bytes)");
    u32::from_ne_bytes([buf[152], buf[153], buf[154], buf[155]])
}

#[test]
fn replies_to_one_read_go_out_in_one_write() {
    // The server sets TCP_NODELAY, so every write it makes leaves as its own
    // segment on loopback; counting data segments received counts writes.
    let s = Server::mnemo(&["-R", "100", "-t", "1"]);
    let mut c = s.connect();
    assert_eq!(c.request(b"set k 0 0 1\r\nx\r\n"), b"STORED\r\n");
    let mut burst = Vec::new();
    let mut want = Vec::new();
    for i in 0..50 {
        if i % 2 == 0 {
            burst.extend_from_slice(b"get k\r\n");
            want.extend_from_slice(b"VALUE k 0 1\r\nx\r\nEND\r\n");
        } else {
            burst.extend_from_slice(b"incr nope 1\r\n");
            want.extend_from_slice(b"NOT_FOUND\r\n");
        }
    }
    let before = data_segments_in(c.stream());
    // One small send on loopback arrives as one read.
    c.send(&burst);
    assert_eq!(show(&c.read_exact(want.len())), show(&want));
    let after = data_segments_in(c.stream());
    assert_eq!(
        after - before,
        1,
        "50 pipelined replies took {} writes",
        after - before
    );
}

/// A server started with `MEMCACHED_PORT_FILENAME` set, and what it wrote.
struct WithPortFile {
    _child: ChildGuard,
    text: String,
}

/// Starts `kind` with `args` and the variable naming a fresh file (whose
/// `.lck` holds `stale` beforehand: memcached appends to it), and waits
/// for the file to appear.
fn start_with_port_file(
    kind: support::Kind,
    args: &[&str],
    case: usize,
    stale: &str,
) -> WithPortFile {
    let path = temp_path(&format!("ports-{}-{case}", kind.name()));
    let mut lck = path.clone().into_os_string();
    lck.push(".lck");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&lck);
    if !stale.is_empty() {
        std::fs::write(&lck, stale).expect("write the stale .lck");
    }
    let child = Command::new(kind.program())
        .args(support::engine_args(kind))
        .args(root_args())
        .args(args)
        .env("MEMCACHED_PORT_FILENAME", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", kind.name()));
    let mut child = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let _ = std::fs::remove_file(&path);
            return WithPortFile {
                _child: child,
                text,
            };
        }
        if let Some(status) = child.0.try_wait().ok().flatten() {
            panic!(
                "{} {args:?} exited with {status} before writing its port file",
                kind.name()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} {args:?} wrote no port file",
            kind.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks that the socket a port-file line names answers `version`.
fn answers_on(line: &str) {
    let (proto, rest) = line.split_once(' ').expect("a protocol");
    let (family, port) = rest.split_once(": ").expect("a family and port");
    let port: u16 = port.parse().expect("a port number");
    assert_ne!(port, 0, "{line}");
    let host = if family == "INET6" {
        "[::1]"
    } else {
        "127.0.0.1"
    };
    let addr = format!("{host}:{port}");
    if proto == "TCP" {
        let mut c = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("{line}: {e}"));
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.write_all(b"version\r\n").expect("send");
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            buf[..n].starts_with(b"VERSION "),
            "{line}: {}",
            show(&buf[..n])
        );
    } else {
        let local = if family == "INET6" {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let u = std::net::UdpSocket::bind(local).expect("bind a UDP client");
        u.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        u.send_to(b"\x00\x07\x00\x00\x00\x01\x00\x00version\r\n", &addr)
            .expect("send");
        let mut buf = [0u8; 1500];
        let n = u.recv(&mut buf).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            n > 8 && buf[8..n].starts_with(b"VERSION "),
            "{line}: {}",
            show(&buf[..n])
        );
    }
}

/// `MEMCACHED_PORT_FILENAME`: mnemo writes the file memcached writes (the
/// same lines in the same order once port numbers are masked; `-p -1` and
/// `-U -1` ask for any free port, `-U` alone sets the TCP port too, port 0
/// binds nothing, and a stale `.lck` is appended to), and every socket it
/// lists answers.
#[test]
fn port_file_matches_memcached() {
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "-1", "-U", "-1", "-l", "127.0.0.1"], ""),
        (&["-p", "-1", "-U", "0", "-l", "127.0.0.1"], ""),
        (&["-U", "-1", "-l", "127.0.0.1"], ""),
        (&["-p", "0", "-U", "-1", "-l", "127.0.0.1"], ""),
        (&["-p", "0", "-U", "0", "-l", "127.0.0.1"], ""),
        (&["-p", "-1", "-U", "-1", "-l", "127.0.0.1,[::1]"], ""),
        // All interfaces: 0.0.0.0 and :: each get a port of their own.
        (&["-p", "-1", "-U", "-1"], ""),
        (&["-p", "-1", "-U", "0", "-l", "127.0.0.1"], "TCP INET: 1\n"),
    ];
    let mask = |text: &str| -> String {
        let mut out = String::new();
        for ch in text.chars() {
            if ch.is_ascii_digit() {
                if !out.ends_with('N') {
                    out.push('N');
                }
            } else {
                out.push(ch);
            }
        }
        out
    };
    for (i, (args, stale)) in cases.iter().enumerate() {
        let want = start_with_port_file(support::Kind::Memcached, args, i, stale);
        let got = start_with_port_file(support::Kind::Mnemo, args, i, stale);
        assert_eq!(
            mask(&got.text),
            mask(&want.text),
            "{args:?}: {:?}",
            got.text
        );
        for server in [&want, &got] {
            for line in server.text.lines().skip(stale.lines().count()) {
                answers_on(line);
            }
        }
    }
}
