//! Batched socket I/O (io_uring, `batch.rs`): the reads and replies of an
//! event round go to the kernel in one submission each. Clients must not
//! be able to tell: the same bytes come back as with one system call per
//! read and write (`-o no_io_uring`), slow readers get every byte, and a
//! connection the server closes is closed for the client too (a socket
//! registered with the ring stays open until it is released).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{Client, Server};

/// Whether this process may set up an io_uring (kernel support, sysctl
/// `kernel.io_uring_disabled`, seccomp all decide).
fn kernel_allows_io_uring() -> bool {
    // struct io_uring_params is 120 bytes; zeroed asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params` only.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd is the ring descriptor just returned to us.
    unsafe { libc::close(fd as i32) };
    true
}

fn wait_for_log(s: &Server, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = s.log();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn batching_is_on_exactly_where_the_kernel_allows_it() {
    let allowed = kernel_allows_io_uring();
    eprintln!("io_uring allowed here: {allowed}");
    let s = Server::mnemo(&["-vv", "-t", "2"]);
    let mut c = s.connect();
    assert!(c.request(b"version\r\n").starts_with(b"VERSION "));
    let want = if allowed {
        "batched socket I/O (io_uring)"
    } else {
        "io_uring unavailable"
    };
    let log = wait_for_log(&s, want);
    for worker in 0..2 {
        let line = format!("<worker {worker}: {want}");
        assert!(log.contains(&line), "no {line:?} in {log:?}");
    }

    let off = Server::mnemo(&["-vv", "-o", "no_io_uring"]);
    let mut c = off.connect();
    assert!(c.request(b"version\r\n").starts_with(b"VERSION "));
    let log = off.log();
    assert!(!log.contains("io_uring"), "{log:?}");
}

/// One client's pipelined session: storage of every value size class the
/// output and input paths treat differently (copied, read straight into
/// the item, referenced), retrievals, meta, arithmetic, errors, `quit`.
fn session(id: usize) -> Vec<u8> {
    let mut s = Vec::new();
    let sizes = [
        0usize, 1, 100, 4000, 15_000, 16_383, 16_384, 20_000, 100_000,
    ];
    for (n, &len) in sizes.iter().enumerate() {
        let value: Vec<u8> = (0..len)
            .map(|i| b'a' + ((i * 7 + n + id) % 26) as u8)
            .collect();
        s.extend_from_slice(format!("set c{id}k{n} {n} 0 {len}\r\n").as_bytes());
        s.extend_from_slice(&value);
        s.extend_from_slice(b"\r\n");
    }
    for round in 0..3 {
        for n in 0..sizes.len() {
            s.extend_from_slice(format!("get c{id}k{n}\r\n").as_bytes());
        }
        s.extend_from_slice(
            format!("get c{id}k0 c{id}k3 c{id}k7 c{id}k8 nokey{round}\r\n").as_bytes(),
        );
        s.extend_from_slice(format!("mg c{id}k2 v f s k\r\nmg c{id}k8 v\r\nmn\r\n").as_bytes());
    }
    s.extend_from_slice(
        format!("set c{id}n 0 0 1\r\n5\r\nincr c{id}n 37\r\ndecr c{id}n 100\r\n").as_bytes(),
    );
    s.extend_from_slice(format!("append c{id}k1 0 0 3\r\nxyz\r\nget c{id}k1\r\n").as_bytes());
    s.extend_from_slice(format!("delete c{id}k2\r\nget c{id}k2\r\nbogus\r\n").as_bytes());
    s.extend_from_slice(b"set toolong 0 0 notanumber\r\nversion\r\nquit\r\n");
    s
}

/// Sends `script` from one thread while reading on another (a pipelined
/// client that reads as it writes), and returns every byte until the
/// server closes.
fn run_session(addr: std::net::SocketAddr, script: Vec<u8>) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let w = std::thread::spawn(move || {
        // Uneven pieces, so request boundaries fall anywhere in a read.
        let mut at = 0;
        let mut step = 1;
        while at < script.len() {
            let end = (at + step).min(script.len());
            writer.write_all(&script[at..end]).expect("write");
            at = end;
            step = step * 3 % 7919 + 1;
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no close from the server: {e}; got {} bytes", got.len()),
        }
    }
    w.join().expect("writer");
    got
}

#[test]
fn batched_and_unbatched_io_answer_byte_for_byte_alike() {
    let batched = Server::mnemo(&["-t", "2"]);
    let plain = Server::mnemo(&["-t", "2", "-o", "no_io_uring"]);
    for server in [&batched, &plain] {
        // `flush_all` first, so both start from the same empty cache.
        assert_eq!(server.connect().request(b"flush_all\r\n"), b"OK\r\n");
    }
    let clients = 16;
    let run = |server: &Server| -> Vec<Vec<u8>> {
        let addr = server.addr();
        let handles: Vec<_> = (0..clients)
            .map(|id| std::thread::spawn(move || run_session(addr, session(id))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    };
    let a = run(&batched);
    let b = run(&plain);
    for id in 0..clients {
        let (x, y) = (&a[id], &b[id]);
        assert!(
            x == y,
            "client {id}: batched {} bytes, unbatched {} bytes; first difference at {:?}",
            x.len(),
            y.len(),
            x.iter().zip(y.iter()).position(|(p, q)| p != q)
        );
        // The session really ran: every value came back, errors included.
        let text = String::from_utf8_lossy(x);
        assert_eq!(
            text.matches("VALUE ").count(),
            3 * (9 + 4) + 1,
            "client {id}"
        );
        assert!(text.contains("\r\nERROR\r\n"), "client {id}");
        assert!(
            text.contains("CLIENT_ERROR bad command line format"),
            "client {id}"
        );
        assert!(text.contains("\r\nVERSION "), "client {id}");
    }
}

#[test]
fn a_slow_reader_gets_every_byte_of_batched_replies() {
    let s = Server::mnemo(&[]);
    let mut setup = s.connect();
    // Under the size that is referenced: these replies are copied bytes,
    // which are what the batched send carries.
    let value: Vec<u8> = (0..8000).map(|i| b'A' + (i % 23) as u8).collect();
    let mut req = b"set slow 0 0 8000\r\n".to_vec();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(setup.request(&req), b"STORED\r\n");

    let mut c = Client::connect_small_window(s.addr(), 4096);
    c.set_read_timeout(Duration::from_secs(10));
    let gets = 200;
    c.send(&b"get slow\r\n".repeat(gets));
    // Let the server fill the socket and stall on it.
    std::thread::sleep(Duration::from_millis(300));
    let mut expect = b"VALUE slow 0 8000\r\n".to_vec();
    expect.extend_from_slice(&value);
    expect.extend_from_slice(b"\r\nEND\r\n");
    for n in 0..gets {
        let got = c.read_exact(expect.len());
        assert!(got == expect, "reply {n} differs");
    }
    // The connection still works afterwards.
    assert_eq!(c.request(b"mn\r\n"), b"MN\r\n");
}

#[test]
fn connections_the_server_closes_are_closed_for_their_clients() {
    let s = Server::mnemo(&["-o", "idle_timeout=1"]);
    let curr_connections = || -> u64 {
        let mut c = s.connect();
        let text = String::from_utf8_lossy(&c.request(b"stats\r\n")).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("STAT curr_connections "))
            .and_then(|v| v.trim().parse().ok())
            .expect("curr_connections")
    };
    // Counted by a client of its own, which is then closed.
    let baseline = curr_connections();

    let conns: Vec<Client> = (0..40).map(|_| s.connect()).collect();
    // `quit` after a request: the reply, then the close.
    for (i, mut c) in conns.into_iter().enumerate() {
        c.set_read_timeout(Duration::from_secs(5));
        c.send(format!("get k{i}\r\nquit\r\n").as_bytes());
        match c.read_to_eof() {
            Ok(got) => assert_eq!(got, b"END\r\n", "client {i}"),
            Err(got) => panic!("client {i}: no close after quit, got {got:?}"),
        }
    }
    // An idle client is closed by the server too.
    let mut idle = s.connect();
    idle.set_read_timeout(Duration::from_secs(5));
    assert!(idle.is_closed(), "idle_timeout did not close the client");

    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = curr_connections();
        if now == baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "curr_connections {now}, {baseline} before the clients came and went"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
