//! Replication (issue #13) between real mnemo processes on loopback:
//! every write kind in text, meta and binary; tombstones; concurrent
//! increments; full and partial resync (a relay in the test cuts the
//! link); a memcached and a garbage-speaking fake as peers; `-Y` links.
//! Convergence is polled with a deadline, never timed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

use mnemo_testkit::free_port;

struct Node {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Node {
    /// A mnemo on `port` with `args` (node id, peers...).
    fn start(port: u16, args: &[String]) -> Node {
        Node::start_env(port, args, &[])
    }

    fn start_env(port: u16, args: &[String], env: &[(&str, &str)]) -> Node {
        let log =
            std::env::temp_dir().join(format!("mnemo-repl-{port}-{}.log", std::process::id()));
        let f = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnemo"));
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-t",
            "2",
            "-m",
            "64",
        ]);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f);
        let child = cmd.spawn().expect("spawn mnemo");
        let n = Node { child, port, log };
        let end = Instant::now() + DEADLINE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < end,
                "mnemo on {port} did not start: {}",
                n.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn args(id: u8, peers: &[u16], extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--node-id".to_string(), id.to_string()];
    for p in peers {
        a.push("--peer".into());
        a.push(format!("127.0.0.1:{p}"));
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Sends `req` and reads until the reply ends with `end`.
fn talk(port: u16, req: &[u8], end: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(req).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(end) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

fn text(port: u16, req: &str) -> String {
    String::from_utf8_lossy(&talk(port, req.as_bytes(), b"\r\n")).into_owned()
}

/// The value of `key` as `get` shows it (None on a miss).
fn get(port: u16, key: &str) -> Option<String> {
    let r = talk(port, format!("get {key}\r\n").as_bytes(), b"END\r\n");
    let r = String::from_utf8_lossy(&r).into_owned();
    let mut lines = r.split("\r\n");
    let head = lines.next()?;
    head.starts_with("VALUE ")
        .then(|| lines.next().unwrap_or("").to_string())
}

/// `get` with flags: (flags, value).
fn get_flags(port: u16, key: &str) -> Option<(u32, String)> {
    let r = talk(port, format!("get {key}\r\n").as_bytes(), b"END\r\n");
    let r = String::from_utf8_lossy(&r).into_owned();
    let mut lines = r.split("\r\n");
    let head = lines.next()?;
    let flags = head
        .strip_prefix("VALUE ")?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    Some((flags, lines.next().unwrap_or("").to_string()))
}

fn stat(port: u16, name: &str) -> Option<String> {
    let r = talk(port, b"stats replication\r\n", b"END\r\n");
    let r = String::from_utf8_lossy(&r).into_owned();
    r.split("\r\n")
        .filter_map(|l| l.strip_prefix("STAT "))
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_string)
        })
}

/// Polls until `f` holds, or fails with `what` after the deadline.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "never converged: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn converge(ports: &[u16], key: &str, want: Option<&str>) {
    for &p in ports {
        eventually(&format!("{key} on {p} = {want:?}"), || {
            get(p, key).as_deref() == want
        });
    }
}

/// Two nodes naming each other.
fn pair(extra: &[&str]) -> (Node, Node) {
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start(pa, &args(1, &[pb], extra));
    let b = Node::start(pb, &args(2, &[pa], extra));
    (a, b)
}

fn bin_packet(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    let total = (extras.len() + key.len() + value.len()) as u32;
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// One binary request; the response's status.
fn bin(port: u16, pkt: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(pkt).expect("send");
    let mut h = [0u8; 24];
    s.read_exact(&mut h).expect("binary header");
    let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let mut b = vec![0u8; body];
    s.read_exact(&mut b).expect("binary body");
    u16::from_be_bytes([h[6], h[7]])
}

#[test]
fn every_write_kind_replicates_in_text_meta_and_binary() {
    let (a, b) = pair(&[]);
    let (pa, pb) = (a.port, b.port);
    // text
    assert_eq!(text(pa, "set t1 7 0 2\r\nv1\r\n"), "STORED\r\n");
    assert_eq!(text(pa, "add t2 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(text(pa, "set t3 0 0 1\r\nm\r\n"), "STORED\r\n");
    assert_eq!(text(pa, "append t3 0 0 2\r\nid\r\n"), "STORED\r\n");
    assert_eq!(text(pa, "prepend t3 0 0 2\r\npr\r\n"), "STORED\r\n");
    assert_eq!(text(pa, "replace t2 0 0 1\r\ny\r\n"), "STORED\r\n");
    converge(&[pb], "t1", Some("v1"));
    assert_eq!(get_flags(pb, "t1"), Some((7, "v1".into())));
    converge(&[pb], "t2", Some("y"));
    converge(&[pb], "t3", Some("prmid"));
    let gets = String::from_utf8_lossy(&talk(pa, b"gets t2\r\n", b"END\r\n")).into_owned();
    let cas = gets
        .split("\r\n")
        .next()
        .and_then(|l| l.split(' ').nth(4))
        .expect("cas")
        .to_string();
    assert_eq!(
        text(pa, &format!("cas t2 0 0 1 {cas}\r\nz\r\n")),
        "STORED\r\n"
    );
    converge(&[pb], "t2", Some("z"));
    assert_eq!(text(pa, "set n 0 0 2\r\n10\r\n"), "STORED\r\n");
    assert_eq!(text(pa, "incr n 5\r\n"), "15\r\n");
    assert_eq!(text(pa, "decr n 3\r\n"), "12\r\n");
    converge(&[pb], "n", Some("12"));
    assert_eq!(text(pa, "touch t1 1000\r\n"), "TOUCHED\r\n");
    assert!(String::from_utf8_lossy(&talk(pa, b"gat 2000 t3\r\n", b"END\r\n")).contains("prmid"));
    assert_eq!(text(pb, "delete t1\r\n"), "DELETED\r\n");
    converge(&[pa, pb], "t1", None);
    // meta
    assert_eq!(text(pb, "ms m1 2 T0 F9\r\nmv\r\n"), "HD\r\n");
    converge(&[pa], "m1", Some("mv"));
    assert_eq!(get_flags(pa, "m1"), Some((9, "mv".into())));
    assert_eq!(text(pb, "ms m1 2 MA\r\nzz\r\n"), "HD\r\n");
    converge(&[pa], "m1", Some("mvzz"));
    assert_eq!(text(pb, "ms mc 1\r\n4\r\n"), "HD\r\n");
    assert_eq!(text(pb, "ma mc D6\r\n"), "HD\r\n");
    converge(&[pa], "mc", Some("10"));
    assert_eq!(text(pb, "mg m1 T100\r\n"), "HD\r\n");
    assert_eq!(text(pb, "md m1\r\n"), "HD\r\n");
    converge(&[pa, pb], "m1", None);
    // binary: set 0x01, append 0x0e, delete 0x04, incr 0x05, touch 0x1c
    let mut extras = vec![0, 0, 0, 3];
    extras.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(bin(pa, &bin_packet(0x01, b"b1", &extras, b"bv")), 0);
    converge(&[pb], "b1", Some("bv"));
    assert_eq!(get_flags(pb, "b1"), Some((3, "bv".into())));
    assert_eq!(bin(pa, &bin_packet(0x0e, b"b1", &[], b"+")), 0);
    converge(&[pb], "b1", Some("bv+"));
    let mut ix = 2u64.to_be_bytes().to_vec();
    ix.extend_from_slice(&7u64.to_be_bytes());
    ix.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(bin(pa, &bin_packet(0x05, b"bn", &ix, b"")), 0); // created at 7
    assert_eq!(bin(pa, &bin_packet(0x05, b"bn", &ix, b"")), 0); // 9
    converge(&[pb], "bn", Some("9"));
    assert_eq!(
        bin(pa, &bin_packet(0x1c, b"b1", &500u32.to_be_bytes(), b"")),
        0
    );
    assert_eq!(bin(pa, &bin_packet(0x04, b"b1", &[], b"")), 0);
    converge(&[pa, pb], "b1", None);
    // flush_all is a barrier on both nodes; writes after it live.
    assert_eq!(text(pa, "flush_all\r\n"), "OK\r\n");
    converge(&[pa, pb], "t3", None);
    converge(&[pa, pb], "n", None);
    assert_eq!(text(pb, "set after 0 0 1\r\nq\r\n"), "STORED\r\n");
    converge(&[pa, pb], "after", Some("q"));
    assert!(stat(pa, "repl_tombstones").is_some_and(|v| v != "0"));
}

#[test]
fn a_deleted_key_does_not_come_back_and_concurrent_increments_all_count() {
    let (a, b) = pair(&[]);
    let (pa, pb) = (a.port, b.port);
    assert_eq!(text(pa, "set k 0 0 3\r\nold\r\n"), "STORED\r\n");
    converge(&[pb], "k", Some("old"));
    assert_eq!(text(pb, "delete k\r\n"), "DELETED\r\n");
    converge(&[pa, pb], "k", None);
    assert_eq!(stat(pb, "repl_tombstones").as_deref(), Some("1"));
    // Concurrent increments on both nodes, one client thread each.
    assert_eq!(text(pa, "set c 0 0 1\r\n0\r\n"), "STORED\r\n");
    converge(&[pb], "c", Some("0"));
    let threads: Vec<_> = [pa, pb]
        .into_iter()
        .map(|p| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", p)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = [0u8; 64];
                for _ in 0..200 {
                    s.write_all(b"incr c 1\r\n").expect("send");
                    let n = s.read(&mut buf).expect("reply");
                    assert!(n > 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("incr thread");
    }
    converge(&[pa, pb], "c", Some("400"));
    assert_eq!(get(pa, "k"), None);
}

#[test]
fn three_nodes_converge_in_a_chain_and_a_ring() {
    // Chain a <-> b <-> c: a and c only hear of each other through b.
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = Node::start(pa, &args(1, &[pb], &[]));
    let b = Node::start(pb, &args(2, &[pa, pc], &[]));
    let c = Node::start(pc, &args(3, &[pb], &[]));
    assert_eq!(text(pa, "set x 0 0 1\r\na\r\n"), "STORED\r\n");
    converge(&[pb, pc], "x", Some("a"));
    assert_eq!(text(pc, "set x 0 0 1\r\nc\r\n"), "STORED\r\n");
    converge(&[pa, pb, pc], "x", Some("c"));
    assert_eq!(text(pc, "delete x\r\n"), "DELETED\r\n");
    converge(&[pa, pb, pc], "x", None);
    drop((a, b, c));
    // One-way ring a -> b -> c -> a (each pulls from the previous).
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = Node::start(pa, &args(1, &[pc], &[]));
    let b = Node::start(pb, &args(2, &[pa], &[]));
    let c = Node::start(pc, &args(3, &[pb], &[]));
    for (p, v) in [(pa, "1"), (pb, "2"), (pc, "3")] {
        assert_eq!(text(p, &format!("set r{v} 0 0 1\r\n{v}\r\n")), "STORED\r\n");
    }
    for v in ["1", "2", "3"] {
        converge(&[pa, pb, pc], &format!("r{v}"), Some(v));
    }
    // The write stopped where it was known: each node applied the other
    // two nodes' writes once.
    for p in [pa, pb, pc] {
        eventually("ring applied counts", || {
            stat(
                p,
                &format!(
                    "peer:127.0.0.1:{}:applied",
                    match p {
                        x if x == pa => pc,
                        x if x == pb => pa,
                        _ => pb,
                    }
                ),
            )
            .as_deref()
                == Some("2")
        });
    }
    drop((a, b, c));
}

/// A relay the test can cut: forwards connections to `target` while up.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn new(target: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let port = l.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, conns2) = (Arc::clone(&up), Arc::clone(&conns));
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(c);
                    continue;
                }
                let Ok(t) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for s in [&c, &t] {
                    if let Ok(x) = s.try_clone() {
                        conns2.lock().expect("conns").push(x);
                    }
                }
                for (mut from, mut to) in [
                    (c.try_clone(), t.try_clone()),
                    (t.try_clone(), c.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, up, conns }
    }

    fn cut(&self, stay_down: bool) {
        self.up.store(!stay_down, Ordering::SeqCst);
        for c in self.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_cut_link_resyncs_partially_from_the_backlog_and_fully_past_it() {
    let pa = free_port();
    let a = Node::start(pa, &args(1, &[], &["--repl-backlog-size", "8k"]));
    let relay = Relay::new(pa);
    let pb = free_port();
    let b = Node::start(pb, &args(2, &[relay.port], &[]));
    let peer = format!("peer:127.0.0.1:{}:", relay.port);
    assert_eq!(text(pa, "set k1 0 0 1\r\n1\r\n"), "STORED\r\n");
    converge(&[pb], "k1", Some("1"));
    assert_eq!(
        stat(pb, &format!("{peer}full_resyncs")).as_deref(),
        Some("1")
    );
    // Cut: a small write stays in the backlog, so the link continues.
    relay.cut(false);
    assert_eq!(text(pa, "set k2 0 0 1\r\n2\r\n"), "STORED\r\n");
    converge(&[pb], "k2", Some("2"));
    eventually("a partial resync", || {
        stat(pb, &format!("{peer}partial_resyncs")).as_deref() == Some("1")
    });
    // Down while more than the backlog is written: a full copy follows.
    relay.cut(true);
    let big = "x".repeat(1000);
    for i in 0..20 {
        assert_eq!(
            text(pa, &format!("set big{i} 0 0 1000\r\n{big}\r\n")),
            "STORED\r\n"
        );
    }
    relay.heal();
    converge(&[pb], "big0", Some(big.as_str()));
    converge(&[pb], "big19", Some(big.as_str()));
    assert_eq!(
        stat(pb, &format!("{peer}full_resyncs")).as_deref(),
        Some("2")
    );
    drop((a, b));
}

#[test]
fn a_restarted_empty_node_receives_a_full_copy() {
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start(pa, &args(1, &[pb], &[]));
    let mut b = Node::start(pb, &args(2, &[pa], &[]));
    for i in 0..50 {
        assert_eq!(
            text(pa, &format!("set k{i} 0 0 2\r\nv{}\r\n", i % 10)),
            "STORED\r\n"
        );
    }
    assert_eq!(text(pa, "delete k0\r\n"), "DELETED\r\n");
    converge(&[pb], "k49", Some("v9"));
    b.stop();
    let b = Node::start(pb, &args(2, &[pa], &[]));
    converge(&[pb], "k49", Some("v9"));
    converge(&[pb], "k1", Some("v1"));
    assert_eq!(get(pb, "k0"), None);
    assert_eq!(stat(pb, "repl_tombstones").as_deref(), Some("1"));
    drop((a, b));
}

#[test]
fn a_memcached_peer_and_a_garbage_peer_get_a_log_line_and_retries() {
    // A memcached answers ERROR to mn_repl.
    let Some(mc) = ["/usr/bin/memcached", "/usr/local/bin/memcached"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!("memcached 1.6.18 is required by this test");
    };
    let pm = free_port();
    let mut m = Command::new(mc)
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &pm.to_string(),
            "-U",
            "0",
            "-u",
            "root",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memcached");
    let pa = free_port();
    let a = Node::start(pa, &args(1, &[pm], &[]));
    eventually("memcached log line", || {
        a.log().contains("peer does not speak mn_repl")
    });
    assert_eq!(text(pa, "set k 0 0 1\r\nv\r\n"), "STORED\r\n");
    let _ = m.kill();
    let _ = m.wait();
    // A fake peer: a full-resync answer, then garbage; then a forged
    // origin; then a frame far over the size limit.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let pf = l.local_addr().expect("addr").port();
    let mut forged = Vec::new();
    forged.extend_from_slice(&10u32.to_le_bytes());
    forged.extend_from_slice(&[5, 7]);
    forged.extend_from_slice(&((1u64 << 20) | 9).to_le_bytes());
    let mut huge = Vec::new();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    let answers: Vec<Vec<u8>> = vec![
        b"\xff\xfe garbage garbage garbage garbage".to_vec(),
        forged,
        huge,
    ];
    let fake = std::thread::spawn(move || {
        for garbage in answers {
            let (mut s, _) = l.accept().expect("accept");
            let mut line = [0u8; 256];
            let _ = s.read(&mut line);
            let _ = s.write_all(b"MN_REPL FULLRESYNC 0000000000000001 0\r\n");
            let _ = s.write_all(&garbage);
            let _ = s.read(&mut line);
        }
    });
    let pb = free_port();
    let b = Node::start(pb, &args(2, &[pf], &[]));
    fake.join().expect("fake peer");
    eventually("garbage log lines", || {
        let log = b.log();
        log.contains(&format!("peer 127.0.0.1:{pf}: bad frame"))
            && log.contains("does not match version's node")
            && log.contains("limit")
    });
    // Still serving, and still itself.
    assert_eq!(text(pb, "set k 0 0 1\r\nw\r\n"), "STORED\r\n");
    assert_eq!(get(pb, "k").as_deref(), Some("w"));
    drop((a, b));
}

#[test]
fn links_authenticate_under_ascii_auth() {
    let dir = std::env::temp_dir().join(format!("mnemo-repl-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("auth");
    std::fs::write(&file, "repl:secret\n").expect("auth file");
    let f = file.to_str().expect("path");
    let (a, b) = pair(&["-Y", f]);
    let login = "set a 0 0 11\r\nrepl secret\r\n";
    let r = talk(
        a.port,
        format!("{login}set k 0 0 1\r\nv\r\n").as_bytes(),
        b"STORED\r\nSTORED\r\n",
    );
    assert!(
        r.ends_with(b"STORED\r\nSTORED\r\n"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    eventually("auth link replicates", || {
        let r = talk(b.port, format!("{login}get k\r\n").as_bytes(), b"END\r\n");
        String::from_utf8_lossy(&r).contains("VALUE k 0 1\r\nv")
    });
    // Unauthenticated, mn_repl is refused as any command is.
    let r = text(b.port, "mn_repl HELLO 9 2 0000000000000000 0 0\r\n");
    assert!(r.starts_with("CLIENT_ERROR"), "{r}");
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_replication_options_refuse_to_start() {
    for (a, want) in [
        (&["--peer", "nohost"][..], "--peer:"),
        (&["--node-id", "0"][..], "--node-id:"),
        (&["--repl-backlog-size", "1"][..], "--repl-backlog-size:"),
        (&["--tombstone-ttl", "x"][..], "--tombstone-ttl:"),
        (
            &["-C", "--peer", "127.0.0.1:1"][..],
            "-C cannot be used with --peer",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args(["-p", "0"])
            .args(a)
            .output()
            .expect("run mnemo");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{a:?}: {err}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
}

#[test]
fn links_are_tls_under_dash_z() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("mnemo-repl-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "mnemo repl test ca");
    let ca = p.self_signed(&ca_key).expect("ca");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    let k = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    p.distinguished_name
        .push(DnType::CommonName, "mnemo repl test node");
    let c = p.signed_by(&k, &ca, &ca_key).expect("leaf");
    std::fs::write(dir.join("node.pem"), c.pem()).expect("write");
    std::fs::write(dir.join("node.key"), k.serialize_pem()).expect("write");
    let d = |f: &str| dir.join(f).display().to_string();
    let tls = format!(
        "ssl_chain_cert={},ssl_key={},ssl_ca_cert={}",
        d("node.pem"),
        d("node.key"),
        d("ca.pem")
    );
    let (pa, pb, qa, qb) = (free_port(), free_port(), free_port(), free_port());
    let plain = |q: u16| format!("notls:127.0.0.1:{q}");
    let a = Node::start(pa, &args(1, &[pb], &["-Z", "-o", &tls, "-l", &plain(qa)]));
    let b = Node::start(pb, &args(2, &[pa], &["-Z", "-o", &tls, "-l", &plain(qb)]));
    assert_eq!(text(qa, "set k 0 0 3\r\ntls\r\n"), "STORED\r\n");
    converge(&[qb], "k", Some("tls"));
    assert_eq!(text(qb, "delete k\r\n"), "DELETED\r\n");
    converge(&[qa, qb], "k", None);
    // The link is the TLS port's: its bytes are encrypted records.
    assert!(stat(qb, &format!("peer:127.0.0.1:{pa}:state")).as_deref() == Some("streaming"));
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Binary requests on one connection, SASL PLAIN first; each response's
/// (status, value).
fn sasl_session(port: u16, user: &str, pass: &str, reqs: &[Vec<u8>]) -> Vec<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let auth = bin_packet(0x21, b"PLAIN", &[], format!("\0{user}\0{pass}").as_bytes());
    let mut all = vec![auth];
    all.extend_from_slice(reqs);
    let mut res = Vec::new();
    for r in all {
        s.write_all(&r).expect("send");
        let mut h = [0u8; 24];
        s.read_exact(&mut h).expect("header");
        let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let skip = usize::from(h[4]) + usize::from(u16::from_be_bytes([h[2], h[3]]));
        let mut b = vec![0u8; body];
        s.read_exact(&mut b).expect("body");
        res.push((u16::from_be_bytes([h[6], h[7]]), b[skip..].to_vec()));
    }
    res
}

#[test]
fn links_authenticate_with_sasl_under_dash_s() {
    let dir = std::env::temp_dir().join(format!("mnemo-repl-sasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = dir.join("pwdb");
    std::fs::write(&db, "repl:s3cret\n").expect("pwdb");
    let env = [("MEMCACHED_SASL_PWDB", db.to_str().expect("path"))];
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start_env(pa, &args(1, &[pb], &["-S"]), &env);
    let b = Node::start_env(pb, &args(2, &[pa], &["-S"]), &env);
    let mut extras = vec![0u8; 8];
    extras[3] = 1;
    let r = sasl_session(
        pa,
        "repl",
        "s3cret",
        &[bin_packet(0x01, b"k", &extras, b"sasl")],
    );
    assert_eq!(r[0].0, 0, "auth");
    assert_eq!(r[1].0, 0, "set");
    eventually("SASL link replicates", || {
        let r = sasl_session(pb, "repl", "s3cret", &[bin_packet(0x00, b"k", &[], b"")]);
        r[1].0 == 0 && r[1].1 == b"sasl"
    });
    // Unauthenticated, the binary HELLO gets the auth error any command gets.
    let hello = bin_packet(0xe0, b"mn_repl HELLO 9 2 0000000000000000 0 0", &[], b"");
    assert_eq!(bin(pb, &hello), 0x20);
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_peers_stats_replication_is_memcacheds_error() {
    let mc = ["/usr/bin/memcached", "/usr/local/bin/memcached"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("memcached 1.6.18 is required by this test");
    let pm = free_port();
    let mut m = Command::new(mc)
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &pm.to_string(),
            "-U",
            "0",
            "-u",
            "root",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memcached");
    let end = Instant::now() + DEADLINE;
    while TcpStream::connect(("127.0.0.1", pm)).is_err() {
        assert!(Instant::now() < end, "memcached did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pa = free_port();
    let a = Node::start(pa, &[]);
    let want = text(pm, "stats replication\r\n");
    assert_eq!(text(pa, "stats replication\r\n"), want);
    // A HELLO on a node without replication is any unknown command.
    let hello = "mn_repl HELLO 2 2 0000000000000000 0 0\r\n";
    assert_eq!(text(pa, hello), text(pm, hello));
    let _ = m.kill();
    let _ = m.wait();
    drop(a);
}

/// A frame larger than the link's read buffer (128 KB), among small
/// ones, arrives whole: the receiver grows its buffer for it and the link
/// stays up (no second resync).
#[test]
fn a_value_larger_than_the_links_read_buffer_replicates_on_the_same_link() {
    let (pa, pb) = (free_port(), free_port());
    let a = Node::start(pa, &args(1, &[], &[]));
    let b = Node::start(pb, &args(2, &[pa], &[]));
    let peer = format!("peer:127.0.0.1:{pa}:");
    assert_eq!(text(pa, "set k0 0 0 1\r\n0\r\n"), "STORED\r\n");
    converge(&[pb], "k0", Some("0"));
    let resyncs = || {
        (
            stat(pb, &format!("{peer}full_resyncs")),
            stat(pb, &format!("{peer}partial_resyncs")),
        )
    };
    let before = resyncs();
    let big = "y".repeat(700_000);
    let mut req = String::new();
    for i in 0..40 {
        req.push_str(&format!("set s{i} 0 0 3\r\nabc\r\n"));
    }
    req.push_str(&format!("set big 0 0 {}\r\n{big}\r\n", big.len()));
    req.push_str("set after 0 0 1\r\nz\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", pa)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(req.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 42 * 8 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(got, b"STORED\r\n".repeat(42));
    converge(&[pb], "after", Some("z"));
    converge(&[pb], "big", Some(big.as_str()));
    converge(&[pb], "s39", Some("abc"));
    assert_eq!(resyncs(), before);
    drop((a, b));
}

/// Meta's `E` asks for a client-chosen CAS, but under `--peer` the CAS is
/// the write's replication version. Stored as asked, the write was never
/// replicated (its frame's origin disagreed with its version, so it was
/// not encoded) and any later write anywhere beat it. It is refused with
/// a CLIENT_ERROR (its data swallowed), and the link carries on.
#[test]
fn a_client_chosen_cas_is_refused_under_peer_and_the_link_carries_on() {
    let (a, b) = pair(&[]);
    text(a.port, "set before 0 0 1\r\n1\r\n");
    converge(&[a.port, b.port], "before", Some("1"));
    for (req, what) in [
        ("ms k 2 E12345\r\nxy\r\n", "ms"),
        ("ms k 2 T0 E4096 q\r\nxy\r\n", "quiet ms"),
        ("ma n N0 J5 E77\r\n", "ma"),
        ("md before E99\r\n", "md"),
        ("mg before N0 E5 v\r\n", "mg"),
    ] {
        let r = talk(a.port, format!("{req}mn\r\n").as_bytes(), b"MN\r\n");
        assert_eq!(
            String::from_utf8_lossy(&r),
            "CLIENT_ERROR E flag not supported with replication\r\nMN\r\n",
            "{what}"
        );
    }
    assert_eq!(get(a.port, "k"), None);
    assert_eq!(get(a.port, "before").as_deref(), Some("1"));
    text(a.port, "set after 0 0 1\r\n2\r\n");
    converge(&[a.port, b.port], "after", Some("2"));
    for log in [a.log(), b.log()] {
        assert!(!log.contains("refused a frame"), "{log}");
    }
}

/// `flush_all 6` on one node: as memcached's delayed flush, nothing goes
/// until the delay ends, then everything stored before it goes, writes
/// made during the delay included, on every node; writes after it live.
/// (Before, a delayed flush stayed on the node it was sent to.)
#[test]
fn a_delayed_flush_all_takes_effect_on_every_node_when_its_delay_ends() {
    let (a, b) = pair(&[]);
    let both = [a.port, b.port];
    text(a.port, "set old 0 0 1\r\n1\r\n");
    converge(&both, "old", Some("1"));
    assert_eq!(text(a.port, "flush_all 6\r\n"), "OK\r\n");
    text(b.port, "set during 0 0 1\r\n2\r\n");
    eventually("b holds the pending barrier", || {
        stat(b.port, "repl_flush_pending").as_deref() == Some("1")
    });
    assert_eq!(get(b.port, "old").as_deref(), Some("1"), "flushed early");
    converge(&both, "during", Some("2"));
    converge(&both, "old", None);
    converge(&both, "during", None);
    // memcached's delayed flush also kills what is stored in the second
    // it takes effect; the barrier does the same.
    std::thread::sleep(Duration::from_millis(1100));
    text(b.port, "set after 0 0 1\r\n3\r\n");
    converge(&both, "after", Some("3"));
    for p in both {
        assert_eq!(stat(p, "repl_flush_pending").as_deref(), Some("0"));
    }
}

/// A FLUSH frame whose barrier lies past any delay a client can ask for
/// (30 days): refused, the link closed, nothing flushed. Applied at once,
/// as before, it would have killed every write for years.
#[test]
fn a_barrier_past_thirty_days_is_refused() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let pf = l.local_addr().expect("addr").port();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut line = [0u8; 256];
        let _ = s.read(&mut line);
        let _ = s.write_all(b"MN_REPL FULLRESYNC 0000000000000001 0\r\n");
        // FLUSH from node 7, 40 days ahead.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            - 1_704_067_200_000
            + 40 * 86_400_000;
        let version = (ms << 23) | 7;
        let mut f = vec![0u8; 4];
        f.push(3);
        f.push(7);
        f.extend_from_slice(&version.to_le_bytes());
        let len = (f.len() - 4) as u32;
        f[..4].copy_from_slice(&len.to_le_bytes());
        let _ = s.write_all(&f);
        let _ = s.read(&mut line);
    });
    let pb = free_port();
    let b = Node::start(pb, &args(2, &[pf], &[]));
    text(pb, "set keep 0 0 1\r\nk\r\n");
    eventually("the refusal is logged", || {
        b.log().contains("past 30 days ahead")
    });
    let _ = fake.join();
    assert_eq!(get(pb, "keep").as_deref(), Some("k"));
    text(pb, "set later 0 0 1\r\nl\r\n");
    assert_eq!(get(pb, "later").as_deref(), Some("l"));
}

/// The CAS `gets` returned before a touch (or `gat`, or `mg` with `T`)
/// still works after it, on every node, as with memcached: a TTL change
/// leaves the value and its CAS, and travels on its own.
#[test]
fn a_touch_keeps_the_cas_a_client_holds_and_its_ttl_reaches_the_peer() {
    let (a, b) = pair(&[]);
    text(a.port, "set k 0 0 1\r\nv\r\n");
    converge(&[a.port, b.port], "k", Some("v"));
    let gets = |port: u16| {
        let r = String::from_utf8_lossy(&talk(port, b"gets k\r\n", b"END\r\n")).to_string();
        r.lines()
            .next()
            .and_then(|l| l.split(' ').nth(4))
            .map(str::to_string)
    };
    let cas = gets(a.port).expect("a CAS");
    assert_eq!(text(a.port, "touch k 1000\r\n"), "TOUCHED\r\n");
    let r = talk(a.port, b"gats 2000 k\r\n", b"END\r\n");
    assert!(String::from_utf8_lossy(&r).contains(&format!(" {cas}\r\n")));
    let r = talk(a.port, b"mg k T3000 c\r\n", b"\r\n");
    assert_eq!(String::from_utf8_lossy(&r), format!("HD c{cas}\r\n"));
    eventually("the TTL reaches the peer", || {
        let r = talk(b.port, b"mg k t c\r\n", b"\r\n");
        let r = String::from_utf8_lossy(&r).to_string();
        let ttl: Option<i64> = r.split(' ').find_map(|t| t.strip_prefix('t')?.parse().ok());
        ttl.is_some_and(|t| (2990..=3000).contains(&t)) && r.contains(&format!("c{cas}"))
    });
    assert_eq!(gets(b.port).as_deref(), Some(cas.as_str()));
    assert_eq!(
        text(b.port, &format!("cas k 0 0 1 {cas}\r\nw\r\n")),
        "STORED\r\n"
    );
    converge(&[a.port, b.port], "k", Some("w"));
}

/// A node's own writes are not sent back to it (it would only find them
/// known): its peer sends a SKIP in their place, so its position in the
/// peer's stream stays exact and writes made on the peer still arrive,
/// before and after.
#[test]
fn a_peer_does_not_send_a_nodes_own_writes_back() {
    let (a, b) = pair(&[]);
    let on_a = |what: &str| {
        stat(a.port, &format!("peer:127.0.0.1:{}:{what}", b.port))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("peer {what} on a"))
    };
    // Both links streaming (past their first full copies).
    text(b.port, "set from_b 0 0 1\r\nb\r\n");
    text(a.port, "set from_a 0 0 1\r\na\r\n");
    converge(&[a.port, b.port], "from_b", Some("b"));
    converge(&[a.port, b.port], "from_a", Some("a"));
    let (applied, ignored, bytes_in) = (on_a("applied"), on_a("ignored"), on_a("bytes_in"));
    for i in 0..300 {
        text(a.port, &format!("set k{i} 0 0 4\r\nv{i:03}\r\n"));
    }
    text(a.port, "set c 0 0 1\r\n5\r\n");
    text(a.port, "incr c 2\r\n");
    text(a.port, "touch k1 1000\r\n");
    converge(&[a.port, b.port], "k299", Some("v299"));
    converge(&[a.port, b.port], "c", Some("7"));
    text(b.port, "set after 0 0 1\r\nc\r\n");
    converge(&[a.port, b.port], "after", Some("c"));
    // B's one write was applied; A's 303 (over 11 KB of frames) came
    // back as nothing: SKIPs of 22 bytes (one per batch B sent) and PINGs.
    assert_eq!(on_a("applied") - applied, 1);
    assert_eq!(on_a("ignored") - ignored, 0);
    let bytes = on_a("bytes_in") - bytes_in;
    assert!(bytes < 4_000, "{bytes} bytes in");
}
