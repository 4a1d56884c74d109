//! Issue #15: many clients at once on a small `-m`, every value read back
//! checked, so that one client's bytes never reach another's reply.
//!
//! Each stored value describes itself: it starts with its key and a seed,
//! its client flags are the seed's low 32 bits, and it ends with a
//! checksum of everything before it. A reader therefore needs no model of
//! what was stored last: any value that was torn, mixed with another's
//! bytes, freed and reused while being sent, or answered for the wrong key
//! fails the check. The keyspace is shared by every thread, so overwrites,
//! deletes, evictions, flushes and page moves race with the reads of large
//! (pinned, `writev`-sent) values and with slow readers.
//!
//! Load, over text, meta and binary at once: sets of small, medium and
//! large (chained) values, single and multi-key gets, pipelined bursts,
//! deletes, clients that read large replies slowly or hang up in the
//! middle of a value they send or receive, and an admin thread running
//! `slabs reassign`, `slabs automove` and `flush_all`. At the end the
//! server must still answer and its `stats` must add up.
//!
//! `MNEMO_STRESS_ADDR=host:port` runs the same load against a server
//! started elsewhere (scripts/valgrind.sh runs it under memcheck);
//! `MNEMO_STRESS_SECS` sets how long the load runs (default 12).
mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Client, Server};

/// Keys shared by every thread.
const KEYS: u64 = 300;

/// splitmix64, so a failing run can be replayed from its seeds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn key_name(i: u64) -> String {
    format!("stress:{i}")
}

/// A value of about `len` bytes for `key`: `key#seed#`, pseudo-random
/// bytes from the seed, then the checksum of all that in 16 hex digits.
fn make_value(key: &str, seed: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}#{seed:016x}#").into_bytes();
    let body = len.saturating_sub(v.len() + 16);
    let mut r = Rng(seed);
    while v.len() < body + key.len() + 18 {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(body + key.len() + 18);
    let sum = fnv64(&v);
    v.extend_from_slice(format!("{sum:016x}").as_bytes());
    v
}

fn flags_of(seed: u64) -> u32 {
    seed as u32
}

/// Checks a value read back for `key` with client flags `flags`.
fn verify(what: &str, key: &str, flags: u32, data: &[u8]) {
    let fail = |why: &str| -> ! {
        let head = String::from_utf8_lossy(&data[..data.len().min(80)]).into_owned();
        panic!(
            "{what}: value for {key} ({} bytes, flags {flags}) is corrupt: {why}; starts {head:?}",
            data.len()
        )
    };
    if data.len() < key.len() + 18 + 16 {
        fail("too short");
    }
    let (body, sum) = data.split_at(data.len() - 16);
    let want = format!("{:016x}", fnv64(body));
    if sum != want.as_bytes() {
        fail("checksum mismatch");
    }
    if !body.starts_with(key.as_bytes()) || body[key.len()] != b'#' {
        fail("another key's value");
    }
    let seed_hex = std::str::from_utf8(&body[key.len() + 1..key.len() + 17]).unwrap_or("");
    let seed = u64::from_str_radix(seed_hex, 16).unwrap_or_else(|_| fail("no seed"));
    if flags_of(seed) != flags {
        fail("flags of another value");
    }
}

/// Value sizes: mostly small, some over the 16 KB reference threshold
/// (sent by `writev` from pinned items), a few past the largest chunk
/// (chained items, read into a reservation).
fn pick_len(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=64 => 60 + r.below(2000) as usize,
        65..=89 => 2_000 + r.below(60_000) as usize,
        _ => 100_000 + r.below(600_000) as usize,
    }
}

struct Shared {
    addr: SocketAddr,
    stop: AtomicBool,
    timeout: Duration,
    stored: AtomicU64,
    hits: AtomicU64,
    oom: AtomicU64,
}

impl Shared {
    fn connect(&self) -> Client {
        let mut c = Client::connect(self.addr);
        c.set_read_timeout(self.timeout);
        c
    }
}

/// A set refused for memory is allowed on a small `-m` with large values
/// in flight; any other answer is a failure.
fn stored_or_oom(sh: &Shared, what: &str, line: &[u8], ok: &[u8]) {
    if line == ok {
        sh.stored.fetch_add(1, Relaxed);
    } else if line == b"SERVER_ERROR out of memory storing object\r\n" {
        sh.oom.fetch_add(1, Relaxed);
    } else {
        panic!("{what}: unexpected reply {}", support::show(line));
    }
}

// ---- text -----------------------------------------------------------------

fn text_set(key: &str, seed: u64, len: usize) -> Vec<u8> {
    let v = make_value(key, seed, len);
    let mut req = format!("set {key} {} 0 {}\r\n", flags_of(seed), v.len()).into_bytes();
    req.extend_from_slice(&v);
    req.extend_from_slice(b"\r\n");
    req
}

/// Reads one text get reply (VALUE blocks then END), verifying each value.
fn text_read_get(sh: &Shared, c: &mut Client, keys: &[String]) {
    loop {
        let line = c.read_line();
        if line == b"END\r\n" {
            return;
        }
        let s = String::from_utf8_lossy(&line).into_owned();
        let parts: Vec<&str> = s.trim_end().split(' ').collect();
        if parts.len() < 4 || parts[0] != "VALUE" {
            panic!("text get: unexpected line {s:?}");
        }
        let key = parts[1];
        assert!(
            keys.iter().any(|k| k == key),
            "text get: VALUE for {key}, not asked for in {keys:?}"
        );
        let flags: u32 = parts[2].parse().expect("flags");
        let n: usize = parts[3].parse().expect("length");
        let data = c.read_exact(n + 2);
        assert_eq!(
            &data[n..],
            b"\r\n",
            "text get: value of {key} not followed by CRLF"
        );
        verify("text get", key, flags, &data[..n]);
        sh.hits.fetch_add(1, Relaxed);
    }
}

fn text_worker(sh: &Shared, seed: u64) {
    let mut r = Rng(seed);
    let mut c = sh.connect();
    while !sh.stop.load(Relaxed) {
        let key = key_name(r.below(KEYS));
        match r.below(10) {
            0..=3 => {
                let req = text_set(&key, r.next(), pick_len(&mut r));
                c.send(&req);
                stored_or_oom(sh, "text set", &c.read_line(), b"STORED\r\n");
            }
            4..=6 => {
                let n = 1 + r.below(6);
                let keys: Vec<String> = (0..n).map(|_| key_name(r.below(KEYS))).collect();
                c.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
                text_read_get(sh, &mut c, &keys);
            }
            7 => {
                c.send(format!("delete {key}\r\n").as_bytes());
                let line = c.read_line();
                assert!(
                    line == b"DELETED\r\n" || line == b"NOT_FOUND\r\n",
                    "delete: {}",
                    support::show(&line)
                );
            }
            _ => {
                // A pipelined burst: sets and gets in one write, replies
                // read in order afterwards.
                let mut req = Vec::new();
                let mut expect = Vec::new();
                for _ in 0..(2 + r.below(8)) {
                    let k = key_name(r.below(KEYS));
                    if r.below(2) == 0 {
                        let len = pick_len(&mut r).min(30_000);
                        req.extend(text_set(&k, r.next(), len));
                        expect.push(None);
                    } else {
                        req.extend_from_slice(format!("get {k}\r\n").as_bytes());
                        expect.push(Some(k));
                    }
                }
                c.send(&req);
                for e in expect {
                    match e {
                        None => stored_or_oom(sh, "pipelined set", &c.read_line(), b"STORED\r\n"),
                        Some(k) => text_read_get(sh, &mut c, &[k]),
                    }
                }
            }
        }
    }
}

// ---- meta -----------------------------------------------------------------

fn meta_worker(sh: &Shared, seed: u64) {
    let mut r = Rng(seed);
    let mut c = sh.connect();
    while !sh.stop.load(Relaxed) {
        let key = key_name(r.below(KEYS));
        match r.below(10) {
            0..=3 => {
                let s = r.next();
                let v = make_value(&key, s, pick_len(&mut r));
                let mut req = format!("ms {key} {} F{} T0\r\n", v.len(), flags_of(s)).into_bytes();
                req.extend_from_slice(&v);
                req.extend_from_slice(b"\r\n");
                c.send(&req);
                stored_or_oom(sh, "meta set", &c.read_line(), b"HD\r\n");
            }
            4..=8 => {
                c.send(format!("mg {key} v f k\r\n").as_bytes());
                let line = c.read_line();
                // A miss echoes the k flag as memcached does.
                if line == b"EN\r\n" || line == format!("EN k{key}\r\n").as_bytes() {
                    continue;
                }
                let s = String::from_utf8_lossy(&line).into_owned();
                let parts: Vec<&str> = s.trim_end().split(' ').collect();
                assert!(parts.len() == 4 && parts[0] == "VA", "mg: {s:?}");
                let n: usize = parts[1].parse().expect("mg length");
                let flags: u32 = parts[2]
                    .strip_prefix('f')
                    .and_then(|f| f.parse().ok())
                    .expect("mg flags");
                assert_eq!(
                    parts[3].strip_prefix('k'),
                    Some(key.as_str()),
                    "mg: key of {s:?}"
                );
                let data = c.read_exact(n + 2);
                assert_eq!(&data[n..], b"\r\n", "mg: value not followed by CRLF");
                verify("meta get", &key, flags, &data[..n]);
                sh.hits.fetch_add(1, Relaxed);
            }
            _ => {
                c.send(format!("md {key}\r\n").as_bytes());
                let line = c.read_line();
                assert!(
                    line == b"HD\r\n" || line == b"NF\r\n",
                    "md: {}",
                    support::show(&line)
                );
            }
        }
    }
}

// ---- binary ---------------------------------------------------------------

const BIN_GETK: u8 = 0x0c;
const BIN_SET: u8 = 0x01;
const BIN_DELETE: u8 = 0x04;

fn bin_request(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&(body as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// One response: (status, extras, key, value).
fn bin_response(c: &mut Client, op: u8) -> (u16, Vec<u8>, Vec<u8>, Vec<u8>) {
    let h = c.read_exact(24);
    assert_eq!(
        (h[0], h[1]),
        (0x81, op),
        "binary: bad response header {h:?}"
    );
    let klen = u16::from_be_bytes([h[2], h[3]]) as usize;
    let elen = h[4] as usize;
    let status = u16::from_be_bytes([h[6], h[7]]);
    let blen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let body = c.read_exact(blen);
    let (extras, rest) = body.split_at(elen);
    let (key, value) = rest.split_at(klen);
    (status, extras.to_vec(), key.to_vec(), value.to_vec())
}

fn binary_worker(sh: &Shared, seed: u64) {
    let mut r = Rng(seed);
    let mut c = sh.connect();
    while !sh.stop.load(Relaxed) {
        let key = key_name(r.below(KEYS));
        match r.below(10) {
            0..=3 => {
                let s = r.next();
                let v = make_value(&key, s, pick_len(&mut r));
                let mut extras = flags_of(s).to_be_bytes().to_vec();
                extras.extend_from_slice(&[0; 4]);
                c.send(&bin_request(BIN_SET, key.as_bytes(), &extras, &v));
                let (status, _, _, value) = bin_response(&mut c, BIN_SET);
                match status {
                    0 => {
                        sh.stored.fetch_add(1, Relaxed);
                    }
                    0x82 => {
                        sh.oom.fetch_add(1, Relaxed);
                    }
                    _ => panic!("binary set: status {status:#x} {}", support::show(&value)),
                }
            }
            4..=8 => {
                c.send(&bin_request(BIN_GETK, key.as_bytes(), &[], &[]));
                let (status, extras, k, value) = bin_response(&mut c, BIN_GETK);
                match status {
                    0 => {
                        assert_eq!(k, key.as_bytes(), "binary getk: key");
                        assert_eq!(extras.len(), 4, "binary getk: extras");
                        let flags =
                            u32::from_be_bytes([extras[0], extras[1], extras[2], extras[3]]);
                        verify("binary get", &key, flags, &value);
                        sh.hits.fetch_add(1, Relaxed);
                    }
                    1 => {}
                    _ => panic!("binary getk: status {status:#x}"),
                }
            }
            _ => {
                c.send(&bin_request(BIN_DELETE, key.as_bytes(), &[], &[]));
                let (status, ..) = bin_response(&mut c, BIN_DELETE);
                assert!(
                    status == 0 || status == 1,
                    "binary delete: status {status:#x}"
                );
            }
        }
    }
}

// ---- hostile and slow clients ------------------------------------------

/// Reads large multi-gets in small pieces (so the server's `writev` stops
/// part way with items pinned), and hangs up mid-value in both directions.
fn rude_worker(sh: &Shared, seed: u64) {
    let mut r = Rng(seed);
    while !sh.stop.load(Relaxed) {
        match r.below(3) {
            0 => {
                // Slow reader: the whole reply arrives in 4 KB reads.
                let mut c = Client::connect_small_window(sh.addr, 8192);
                c.set_read_timeout(sh.timeout);
                let keys: Vec<String> = (0..8).map(|_| key_name(r.below(KEYS))).collect();
                c.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
                text_read_get(sh, &mut c, &keys);
            }
            1 => {
                // Hang up while sending a large value (a reservation the
                // server must free).
                let key = key_name(r.below(KEYS));
                let mut c = sh.connect();
                let req = text_set(&key, r.next(), 200_000 + r.below(400_000) as usize);
                let cut = 20 + r.below(req.len() as u64 - 40) as usize;
                c.send(&req[..cut]);
                drop(c);
            }
            _ => {
                // Hang up while large values are being sent (pins the
                // server must release).
                let mut s = TcpStream::connect(sh.addr).expect("connect");
                let keys: Vec<String> = (0..10).map(|_| key_name(r.below(KEYS))).collect();
                let _ = s.write_all(format!("get {}\r\n", keys.join(" ")).as_bytes());
                let mut buf = vec![0u8; 1 + r.below(50_000) as usize];
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = s.read(&mut buf);
                drop(s);
            }
        }
    }
}

/// Page moves, automove and flushes while the others run.
fn admin_worker(sh: &Shared, seed: u64) {
    let mut r = Rng(seed);
    let mut c = sh.connect();
    let mut last_flush = Instant::now();
    while !sh.stop.load(Relaxed) {
        match r.below(4) {
            0 | 1 => {
                let (src, dst) = (1 + r.below(42), r.below(43));
                c.send(format!("slabs reassign {src} {dst}\r\n").as_bytes());
                let line = c.read_line();
                let ok = [
                    &b"OK\r\n"[..],
                    b"BUSY currently processing reassign request\r\n",
                    b"BADCLASS invalid src or dst class id\r\n",
                    b"NOSPARE source class has no spare pages\r\n",
                    b"SAME src and dst class are identical\r\n",
                ];
                assert!(
                    ok.contains(&line.as_slice()),
                    "slabs reassign: {}",
                    support::show(&line)
                );
            }
            2 => {
                c.send(format!("slabs automove {}\r\n", r.below(3)).as_bytes());
                assert_eq!(c.read_line(), b"OK\r\n", "slabs automove");
            }
            _ => {
                if last_flush.elapsed() > Duration::from_secs(3) {
                    c.send(b"flush_all\r\n");
                    assert_eq!(c.read_line(), b"OK\r\n", "flush_all");
                    last_flush = Instant::now();
                } else {
                    c.send(b"stats\r\n");
                    c.read_until(b"END\r\n");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20 + r.below(100)));
    }
}

fn stats(c: &mut Client, which: &str) -> HashMap<String, String> {
    c.send(
        format!("stats {which}\r\n")
            .trim_end_matches(' ')
            .as_bytes(),
    );
    let text = String::from_utf8_lossy(&c.read_until(b"END\r\n")).into_owned();
    text.lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(s: &HashMap<String, String>, k: &str) -> u64 {
    s.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("stats has no number {k}: {s:?}"))
}

/// Runs the load against `addr`, then checks the server still answers and
/// its stats add up.
fn run_load(addr: SocketAddr, timeout: Duration, secs: u64) {
    let sh = Arc::new(Shared {
        addr,
        stop: AtomicBool::new(false),
        timeout,
        stored: AtomicU64::new(0),
        hits: AtomicU64::new(0),
        oom: AtomicU64::new(0),
    });
    type Worker = fn(&Shared, u64);
    let workers: [(&str, Worker); 8] = [
        ("text", text_worker),
        ("text", text_worker),
        ("meta", meta_worker),
        ("meta", meta_worker),
        ("binary", binary_worker),
        ("binary", binary_worker),
        ("rude", rude_worker),
        ("admin", admin_worker),
    ];
    let handles: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(i, &(name, f))| {
            let sh = sh.clone();
            let seed = 0x5EED_0000 + i as u64;
            let h = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || f(&sh, seed))
                .expect("spawn");
            (name, seed, h)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline && handles.iter().all(|(_, _, h)| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    sh.stop.store(true, Relaxed);
    let mut failed = Vec::new();
    for (name, seed, h) in handles {
        if let Err(e) = h.join() {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name} (seed {seed:#x}): {msg}"));
        }
    }
    assert!(failed.is_empty(), "workers failed:\n{}", failed.join("\n"));
    let (stored, hits, oom) = (
        sh.stored.load(Relaxed),
        sh.hits.load(Relaxed),
        sh.oom.load(Relaxed),
    );
    eprintln!(
        "stress: {stored} stored, {hits} values read back and verified, {oom} refused for memory"
    );
    assert!(
        stored > 100 && hits > 100,
        "too little load ran: {stored} stored, {hits} read"
    );

    // The server still answers, and what it reports adds up.
    let mut c = Client::connect(addr);
    c.set_read_timeout(timeout);
    let g = stats(&mut c, "");
    let limit = num(&g, "limit_maxbytes");
    assert!(num(&g, "bytes") <= limit, "bytes over the limit: {g:?}");
    assert!(num(&g, "curr_items") <= KEYS, "more items than keys: {g:?}");
    assert!(
        num(&g, "total_items") >= stored,
        "total_items below our stores: {g:?}"
    );
    // As memcached, every class gets its first page even past the limit.
    let slabs = stats(&mut c, "slabs");
    let (malloced, classes) = (num(&slabs, "total_malloced"), num(&slabs, "active_slabs"));
    assert!(
        malloced <= limit + classes * (1 << 20),
        "{malloced} bytes of pages for {classes} classes over a limit of {limit}"
    );
    let items: u64 = stats(&mut c, "items")
        .iter()
        .filter(|(k, _)| k.ends_with(":number"))
        .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
        .sum();
    assert_eq!(
        items,
        num(&g, "curr_items"),
        "stats items against curr_items"
    );

    // Every key can still be stored and read back whole.
    for i in 0..KEYS {
        let key = key_name(i);
        let req = text_set(&key, i, [100, 20_000, 300_000][i as usize % 3]);
        c.send(&req);
        assert_eq!(c.read_line(), b"STORED\r\n", "set {key} after the load");
        c.send(format!("get {key}\r\n").as_bytes());
        text_read_get(&sh, &mut c, &[key]);
    }
    c.send(b"flush_all\r\n");
    assert_eq!(c.read_line(), b"OK\r\n");
    c.send(b"get stress:0 stress:1\r\n");
    assert_eq!(c.read_line(), b"END\r\n", "flushed keys still answered");
}

#[test]
fn mixed_protocols_never_mix_values() {
    let secs = std::env::var("MNEMO_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    if let Ok(addr) = std::env::var("MNEMO_STRESS_ADDR") {
        let addr: SocketAddr = addr.parse().expect("MNEMO_STRESS_ADDR is host:port");
        // Under valgrind every reply is tens of times slower.
        run_load(addr, Duration::from_secs(120), secs);
        return;
    }
    let server = Server::mnemo(&["-m", "16", "-t", "2", "-o", "slab_reassign"]);
    let addr = server.addr();
    let load = std::panic::catch_unwind(move || {
        run_load(addr, Duration::from_secs(20), secs);
        let mut c = Client::connect(addr);
        c.send(b"version\r\n");
        assert!(
            c.read_line().starts_with(b"VERSION "),
            "server gone after the load"
        );
    });
    if let Err(e) = load {
        // What the server said before it failed (an ASan report under
        // scripts/asan.sh, a panic message otherwise).
        eprintln!("server output:\n{}", server.log());
        std::panic::resume_unwind(e);
    }
}
