//! `watch` (memcached's live log streams): the lines a watcher gets for
//! other connections' requests, compared with memcached 1.6.18's after
//! masking what differs between any two runs (timestamps, gids,
//! descriptors, ports); the refusals; and back-pressure: a watcher that
//! does not read loses lines, is told how many, and never slows the server.
mod support;

use std::time::{Duration, Instant};
use support::{show, Client, Kind, Server};

/// Replaces the value of each `name=` field whose value differs between
/// runs or servers with `*`: `ts`, `gid`, `cfd`, `rport` always, plus
/// `extra` (e.g. `clsid`, whose numbering follows item geometry).
fn mask(line: &str, extra: &[&str]) -> String {
    line.split(' ')
        .map(|f| match f.split_once('=') {
            Some((k, _)) if ["ts", "gid", "cfd", "rport"].contains(&k) || extra.contains(&k) => {
                format!("{k}=*")
            }
            _ => f.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts watching `streams`; returns the watcher once `OK` is in.
fn watcher(s: &Server, streams: &str) -> Client {
    let mut w = s.connect();
    w.send(format!("watch {streams}\r\n").as_bytes());
    assert_eq!(w.read_line(), b"OK\r\n", "{}: watch", s.kind().name());
    w
}

/// Reads lines from `w` until one contains `until`; returns them all.
fn lines_until(w: &mut Client, until: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let l = String::from_utf8_lossy(&w.read_until(b"\n")).into_owned();
        let done = l.contains(until);
        out.push(l.trim_end().to_string());
        if done {
            return out;
        }
    }
}

/// Runs `requests` from a fresh client while a watcher of `streams` looks
/// on; the watcher's lines up to the miss of the sentinel key, masked.
fn watched(
    kind: Kind,
    args: &[&str],
    streams: &str,
    requests: &[&[u8]],
    extra: &[&str],
) -> Vec<String> {
    let s = Server::start(kind, args);
    let mut w = watcher(&s, streams);
    let mut c = s.connect();
    for r in requests {
        c.request(r);
    }
    c.request(b"get watch_sentinel\r\n");
    lines_until(&mut w, "key=watch_sentinel")
        .iter()
        .map(|l| mask(l, extra))
        .collect()
}

fn differential(args: &[&str], streams: &str, requests: &[&[u8]], extra: &[&str]) -> Vec<String> {
    let m = watched(Kind::Memcached, args, streams, requests, extra);
    let n = watched(Kind::Mnemo, args, streams, requests, extra);
    assert_eq!(
        n, m,
        "mnemo's watch lines (left) differ from memcached's (right)"
    );
    m
}

#[test]
fn fetchers_and_mutations_match_memcached() {
    let lines = differential(
        &[],
        "fetchers mutations",
        &[
            b"set a 0 0 1\r\nx\r\n",
            b"get a b\r\n",
            b"gets a\r\n",
            b"delete a\r\n",
            b"add a 5 100 2\r\nxy\r\n",
            b"append a 0 0 1\r\nz\r\n",
            b"prepend nope 0 0 1\r\nz\r\n",
            b"incr a 1\r\n",
            b"touch a 10\r\n",
            b"gat 0 a\r\n",
            b"cas a 0 0 1 999\r\nq\r\n",
            b"replace a 0 0 2\r\n12\r\n",
            b"incr a 5\r\n",
            b"decr missing 1\r\n",
            b"set k%20/\xff 0 0 1\r\n1\r\n",
            b"mg a v\r\n",
            b"ms b 2 T50\r\nhi\r\n",
            b"md b\r\n",
            b"ma a\r\n",
            b"mg zz\r\n",
        ],
        &[],
    );
    // The lines are really there (not two empty lists).
    assert!(lines.len() > 25, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("key=k%2520%2F%FF")),
        "{lines:#?}"
    );
}

/// A binary request packet.
fn bin(op: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut v = vec![0x80, op];
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    v.extend_from_slice(&(body as u32).to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&cas.to_be_bytes());
    v.extend_from_slice(extras);
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

#[test]
fn binary_protocol_lines_match_memcached() {
    let flags_exp = |exp: u32| [0u32.to_be_bytes(), exp.to_be_bytes()].concat();
    let mut incr = 1u64.to_be_bytes().to_vec();
    incr.extend_from_slice(&5u64.to_be_bytes());
    incr.extend_from_slice(&0u32.to_be_bytes());
    let reqs = [
        bin(0x01, b"a", &flags_exp(0), b"xyz", 0),
        bin(0x00, b"a", &[], &[], 0),
        bin(0x0c, b"b", &[], &[], 0),
        bin(0x02, b"a", &flags_exp(100), b"q", 0),
        bin(0x03, b"a", &flags_exp(0), b"r", 0),
        bin(0x0e, b"a", &[], b"z", 0),
        bin(0x05, b"n", &incr, &[], 0),
        bin(0x05, b"n", &incr, &[], 0),
        bin(0x1c, b"a", &10u32.to_be_bytes(), &[], 0),
        bin(0x1d, b"a", &10u32.to_be_bytes(), &[], 0),
        bin(0x04, b"a", &[], &[], 0),
        bin(0x01, b"c", &flags_exp(0), b"1", 12345),
    ];
    let run = |kind: Kind| {
        let s = Server::start(kind, &[]);
        let mut w = watcher(&s, "fetchers mutations");
        let mut c = s.connect();
        // The sentinel on the same connection: the logger drains each
        // worker's buffer in turn, so only one worker's lines are ordered.
        let sentinel = bin(0x00, b"watch_sentinel", &[], &[], 0);
        for r in reqs.iter().chain(std::iter::once(&sentinel)) {
            c.send(r);
            let head = c.read_exact(24);
            let body = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
            c.read_exact(body as usize);
        }
        lines_until(&mut w, "key=watch_sentinel")
            .iter()
            .map(|l| mask(l, &[]))
            .collect::<Vec<_>>()
    };
    let m = run(Kind::Memcached);
    assert!(m.len() > 15, "{m:#?}");
    assert_eq!(run(Kind::Mnemo), m);
}

#[test]
fn fetchers_only_is_the_default_stream() {
    differential(&[], "", &[b"set a 0 0 1\r\nx\r\n", b"get a\r\n"], &[]);
}

#[test]
fn expired_and_flushed_reads_match_memcached() {
    // Without the background threads an expired or flushed item is still
    // in the table when `get` comes: memcached's LRU maintainer and crawler
    // (and mnemo's) may reap it first, and the line then says not_found on
    // either server depending on a race.
    let lines = differential(
        &["-o", "no_lru_maintainer,no_lru_crawler"],
        "fetchers",
        &[
            b"set e 0 -1 1\r\nx\r\n",
            b"get e\r\n",
            b"set f 0 0 1\r\nx\r\n",
            b"flush_all\r\n",
            b"get f\r\n",
        ],
        &[],
    );
    assert!(lines[1].contains("key=e status=expired"), "{lines:?}");
    assert!(lines[3].contains("key=f status=flushed"), "{lines:?}");
}

#[test]
fn connevents_match_memcached() {
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let s = Server::start(kind, &[]);
        let mut w = watcher(&s, "connevents");
        let mut c = s.connect();
        c.request(b"version\r\n");
        drop(c);
        let got: Vec<String> = lines_until(&mut w, "type=conn_close")
            .iter()
            .map(|l| mask(l, &[]))
            .collect();
        // (memcached's reason for a `quit` races with the client's close,
        // so only a client's end of stream is compared.)
        let want = [
            "ts=* gid=* type=conn_new rip=127.0.0.1 rport=* transport=tcp cfd=*",
            "ts=* gid=* type=conn_close rip=127.0.0.1 rport=* transport=tcp reason=normal cfd=*",
        ];
        assert_eq!(got, want, "{}", kind.name());
        // A watcher that goes away is closed with the reason never set.
        let mut other = watcher(&s, "fetchers");
        other.shutdown_write();
        drop(other);
        let got: Vec<String> = lines_until(&mut w, "type=conn_close")
            .iter()
            .map(|l| mask(l, &[]))
            .collect();
        assert_eq!(
            got,
            [
                want[0],
                "ts=* gid=* type=conn_close rip=127.0.0.1 rport=* transport=tcp reason=error cfd=*"
            ],
            "{}",
            kind.name()
        );
    }
}

#[test]
fn evictions_match_memcached() {
    let first_eviction = |kind: Kind| {
        let s = Server::start(kind, &["-m", "2"]);
        let mut w = watcher(&s, "evictions");
        let mut c = s.connect();
        let value = vec![b'v'; 100_000];
        for i in 0..60 {
            let mut req = format!("set key{i} 0 0 {}\r\n", value.len()).into_bytes();
            req.extend_from_slice(&value);
            req.extend_from_slice(b"\r\n");
            assert_eq!(c.request(&req), b"STORED\r\n");
        }
        // The item's class follows item geometry, its idle time the clock.
        mask(&lines_until(&mut w, "type=eviction")[0], &["clsid", "la"])
    };
    let m = first_eviction(Kind::Memcached);
    assert_eq!(first_eviction(Kind::Mnemo), m);
    assert_eq!(
        m,
        "ts=* gid=* type=eviction key=key0 fetch=no ttl=-1 la=* clsid=* size=100000"
    );
}

#[test]
fn refusals_match_memcached() {
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let s = Server::start(kind, &[]);
        let mut c = s.connect();
        assert_eq!(c.request(b"watch bogus\r\n"), b"ERROR\r\n");
        assert_eq!(c.request(b"watch fetchers bogus\r\n"), b"ERROR\r\n");
        c.send(b"version\r\nwatch\r\n");
        c.read_line();
        assert_eq!(
            c.read_line(),
            b"ERROR cannot pipeline other commands before watch\r\n",
            "{}",
            kind.name()
        );
        // A get's reply has gone out already: the watch is accepted, after it.
        let mut g = s.connect();
        g.send(b"get a\r\nwatch\r\n");
        assert_eq!(g.read_until(b"END\r\n"), b"END\r\n");
        assert_eq!(g.read_line(), b"OK\r\n", "{}", kind.name());
        // A watcher reads no more commands.
        let mut w = watcher(&s, "mutations");
        w.send(b"version\r\n");
        c.request(b"set z 0 0 1\r\n1\r\n");
        let l = String::from_utf8_lossy(&w.read_until(b"\n")).into_owned();
        assert!(l.contains("type=item_store key=z"), "{}: {l}", kind.name());
        let s = Server::start(kind, &["-W"]);
        let mut c = s.connect();
        assert_eq!(
            c.request(b"watch\r\n"),
            b"CLIENT_ERROR watch commands not allowed\r\n",
            "{}",
            kind.name()
        );
    }
}

#[test]
fn watcher_limit_matches_memcached() {
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let s = Server::start(kind, &[]);
        let watchers: Vec<Client> = (0..20).map(|_| watcher(&s, "fetchers")).collect();
        let mut c = s.connect();
        assert_eq!(
            c.request(b"watch\r\n"),
            b"WATCHER_TOO_MANY log watcher limit reached\r\n",
            "{}",
            kind.name()
        );
        drop(watchers);
        // Closed watchers free their places.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut c = s.connect();
            c.send(b"watch\r\n");
            let l = c.read_line();
            if l == b"OK\r\n" {
                break;
            }
            assert!(Instant::now() < deadline, "{}: {}", kind.name(), show(&l));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A `STAT name value` from `stats`.
fn stat(c: &mut Client, name: &str) -> u64 {
    let body = String::from_utf8_lossy(&c.request(b"stats\r\n")).into_owned();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// A watcher that never reads while another client hammers: the server
/// keeps answering, the watcher's backlog is bounded, and once it reads
/// again it is told how many lines it lost (`skipped=N`); the `log_*`
/// stats count them. Checked on both servers alike.
#[test]
fn slow_watcher_is_told_what_it_skipped() {
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let s = Server::start(kind, &[]);
        let mut w = Client::connect_small_window(s.addr(), 4096);
        w.send(b"watch fetchers\r\n");
        let mut c = s.connect();
        c.request(b"set k 0 0 1\r\n1\r\n");
        let batch: Vec<u8> = b"get k\r\n".repeat(500);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Hammer until the watcher has lost lines (the logger thread runs
        // when the scheduler lets it, so no fixed amount is enough).
        loop {
            for _ in 0..50 {
                c.send(&batch);
                c.read_exact(b"VALUE k 0 1\r\n1\r\nEND\r\n".len() * 500);
            }
            if stat(&mut c, "log_watcher_skipped") > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: nothing skipped",
                kind.name()
            );
        }
        assert_eq!(stat(&mut c, "log_watchers"), 1, "{}", kind.name());
        // One more fetch after the watcher has room again is preceded by
        // the count of what it lost.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = false;
        w.set_read_timeout(Duration::from_millis(200));
        while !seen && Instant::now() < deadline {
            c.request(b"get k\r\n");
            while let Ok(l) = w.try_read_until(b"\n") {
                if l.starts_with(b"skipped=") {
                    seen = true;
                }
            }
        }
        assert!(seen, "{}: no skipped= line", kind.name());
        assert!(stat(&mut c, "log_watcher_sent") > 0, "{}", kind.name());
        assert!(stat(&mut c, "log_worker_written") > 0, "{}", kind.name());
    }
}

/// Newer memcached's `deletions` stream (1.6.18 answers `ERROR`):
/// `type=deleted` for `delete` and `md`.
#[test]
fn deletions_stream() {
    let s = Server::mnemo(&[]);
    let mut w = watcher(&s, "deletions");
    let mut c = s.connect();
    c.request(b"set a 0 0 3\r\nabc\r\n");
    c.request(b"set b 0 0 1\r\nb\r\n");
    c.request(b"delete a\r\n");
    c.request(b"delete nothing\r\n");
    c.request(b"md b\r\n");
    let got: Vec<String> = lines_until(&mut w, "key=b")
        .iter()
        .map(|l| mask(l, &[]))
        .collect();
    assert_eq!(
        got,
        [
            "ts=* gid=* type=deleted key=a cmd=delete clsid=1 size=3",
            "ts=* gid=* type=deleted key=b cmd=md clsid=1 size=1",
        ]
    );
}
