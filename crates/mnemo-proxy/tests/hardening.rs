//! Issue #7: mnemo-proxy with a backend killed (SIGKILL) and restarted on
//! the same port under a pipelined load. Every request must be answered
//! (a value, a miss, STORED or SERVER_ERROR) within the client's read
//! timeout, no answer may carry another key's bytes or a version never
//! written, and the restarted server must take its keys back once
//! `server_retry_timeout` has passed.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RETRY_MS: u64 = 1500;
const CLIENTS: usize = 4;
const DEPTH: usize = 8;
const KEYS_PER_CLIENT: u64 = 64;

/// A value that names its key and version and whose padding is a function
/// of both, so a reply mixing two writes or two keys is caught.
fn value(key: &str, version: u64) -> String {
    let len = 16 + (version * 37 + key.len() as u64) % 900;
    let pad: String = (0..len)
        .map(|i| (b'a' + ((i + version + key.len() as u64) % 26) as u8) as char)
        .collect();
    format!("{key}:{version}:{pad}")
}

#[derive(Default)]
struct Counts {
    stored: u64,
    hits: u64,
    misses: u64,
    server_errors: u64,
}

/// One client: pipelines DEPTH requests per write over its own keys and
/// checks every answer; returns its counts.
fn client(port: u16, t: usize, stop: Arc<AtomicBool>) -> Counts {
    let mut c = Conn::new(port);
    let mut latest: HashMap<String, u64> = HashMap::new();
    let mut counts = Counts::default();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..DEPTH {
            seq += 1;
            let key = format!("c{t}k{}", seq.wrapping_mul(2_654_435_761) % KEYS_PER_CLIENT);
            if seq % 3 == 2 {
                let v = value(&key, seq);
                batch.extend_from_slice(format!("set {key} 0 0 {}\r\n{v}\r\n", v.len()).as_bytes());
                sent.push((key, Some(seq)));
            } else {
                batch.extend_from_slice(format!("get {key}\r\n").as_bytes());
                sent.push((key, None));
            }
        }
        c.send(&batch);
        // Conn's reads give up (panic) after 5 s: a hung client fails here.
        for (key, set) in sent {
            match set {
                Some(version) => {
                    let line = c.line();
                    match line.as_str() {
                        "STORED\r\n" => counts.stored += 1,
                        l if l.starts_with("SERVER_ERROR") => counts.server_errors += 1,
                        l => panic!("set {key}: unexpected {l:?}"),
                    }
                    // A failed set may still have reached the server.
                    latest.insert(key, version);
                }
                None => {
                    let reply = c.values();
                    if reply.starts_with("SERVER_ERROR") {
                        counts.server_errors += 1;
                    } else if reply == "END\r\n" {
                        counts.misses += 1;
                    } else {
                        let mut lines = reply.splitn(3, "\r\n");
                        let head = lines.next().unwrap_or_default();
                        let data = lines.next().unwrap_or_default();
                        assert_eq!(
                            lines.next(),
                            Some("END\r\n"),
                            "get {key}: malformed reply {reply:?}"
                        );
                        assert!(
                            head.starts_with(&format!("VALUE {key} 0 ")),
                            "get {key}: answered {head:?}"
                        );
                        let version: u64 = data
                            .split(':')
                            .nth(1)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or_else(|| panic!("get {key}: bad value {data:?}"));
                        assert_eq!(
                            data,
                            value(&key, version),
                            "get {key}: torn or foreign value"
                        );
                        assert!(
                            latest.get(&key).is_some_and(|&l| version <= l),
                            "get {key}: version {version} was never written"
                        );
                        counts.hits += 1;
                    }
                }
            }
        }
    }
    counts
}

#[test]
fn backend_killed_and_restarted_under_pipelined_load() {
    let mut m = [memcached(), memcached(), memcached()];
    let lp = free_port();
    let dir = TempDir::new("hardening");
    let conf = dir.file(
        "p.yml",
        &format!(
            "p:\n  listen: 127.0.0.1:{lp}\n  hash: md5\n  timeout: 400\n  auto_eject_hosts: true\n  \
             server_failure_limit: 1\n  server_retry_timeout: {RETRY_MS}\n  servers:\n{}",
            server_lines(&[(&m[0], 1), (&m[1], 1), (&m[2], 1)])
        ),
    );
    let _p = proxy(&conf, lp);

    // Keys of the server we will kill, for the return check.
    let mut c = Conn::new(lp);
    let probe: Vec<String> = (0..60).map(|i| format!("probe{i}")).collect();
    for k in &probe {
        assert_eq!(c.set(k, "1"), "STORED\r\n");
    }
    let victim_keys: Vec<String> = probe
        .iter()
        .filter(|k| direct_get(m[0].port, k).is_some())
        .cloned()
        .collect();
    assert!(!victim_keys.is_empty(), "no probe key on the first server");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || client(lp, t, stop))
        })
        .collect();

    std::thread::sleep(Duration::from_millis(700));
    let port0 = m[0].port;
    m[0].kill(); // Child::kill is SIGKILL: no goodbye to the proxy.
    std::thread::sleep(Duration::from_millis(1000));
    let restarted = Instant::now();
    m[0] = memcached_on(port0);
    // Keep the load through the retry timeout and a little beyond.
    std::thread::sleep(Duration::from_millis(RETRY_MS + 1000));
    stop.store(true, Ordering::Relaxed);
    let mut total = Counts::default();
    for h in clients {
        let n = h.join().expect("a client failed (see its panic above)");
        total.stored += n.stored;
        total.hits += n.hits;
        total.misses += n.misses;
        total.server_errors += n.server_errors;
    }
    eprintln!(
        "{} stored, {} hits, {} misses, {} SERVER_ERROR",
        total.stored, total.hits, total.misses, total.server_errors
    );
    assert!(
        total.stored > 100 && total.hits > 100,
        "too little load to mean anything: {} stored, {} hits, {} misses, {} errors",
        total.stored,
        total.hits,
        total.misses,
        total.server_errors
    );

    // The restarted server gets its keys back within the retry timeout
    // (plus slack for a loaded box): sets through the proxy land on it.
    let deadline = restarted + Duration::from_millis(RETRY_MS + 5000);
    let key = &victim_keys[0];
    loop {
        let r = c.set(key, "back");
        if r == "STORED\r\n" && direct_get(port0, key).as_deref() == Some("back") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted server was not used again ({r:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for k in &victim_keys {
        assert_eq!(c.set(k, "again"), "STORED\r\n");
        assert_eq!(direct_get(port0, k).as_deref(), Some("again"), "{k}");
    }
}

/// A client that sends its request and half-closes at once (`nc -N`,
/// health checks) gets its answer and then the proxy's close, even when the
/// request and the FIN arrive as one readiness edge (forced with TCP_CORK
/// on a connection the proxy has already polled). The proxy once took that
/// short read for "drained" and never saw the EOF, as the server did.
#[test]
fn half_closed_clients_are_answered_and_closed() {
    use std::io::{Read, Write};
    let mc = memcached();
    let dir = TempDir::new("halfclose");
    let lp = free_port();
    let conf = dir.file(
        "p.yml",
        &format!(
            "p:\n  listen: 127.0.0.1:{lp}\n  hash: md5\n  distribution: ketama\n  timeout: 1000\n  servers:\n{}",
            server_lines(&[(&mc, 1)])
        ),
    );
    let _proxy = proxy(&conf, lp);
    for round in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", lp)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Let the proxy adopt the socket and find it empty first.
        std::thread::sleep(Duration::from_millis(20));
        socket2::SockRef::from(&s).set_cork(true).expect("TCP_CORK");
        s.write_all(format!("set hc{round} 0 0 2\r\nhi\r\nget hc{round}\r\n").as_bytes())
            .expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("round {round}: no close after the client's EOF ({e})"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("STORED\r\nVALUE hc{round} 0 2\r\nhi\r\nEND\r\n"),
            "round {round}"
        );
    }
}
