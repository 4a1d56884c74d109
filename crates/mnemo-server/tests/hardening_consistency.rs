//! Issue #7: no lost update, no torn value, no byte of one key in another
//! key's answer.
//!
//! Many threads hammer a small key space with set/get/cas/incr/append/
//! delete over their own connections. Every value carries its key, a
//! sequence number, a pattern derived from both and a checksum, so a reply
//! that mixes two writes, two keys or a stale buffer is caught byte by
//! byte. Counters, cas and append logs are checked exactly at the end, and
//! `curr_items` is compared with a full walk (`lru_crawler metadump all`).
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use support::{Client, Server};

const THREADS: usize = 8;
const OPS_PER_THREAD: usize = 3000;
const BLOB_KEYS: u64 = 16;
const COUNTERS: usize = 4;

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
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `<key>|<writer>|<len>|<pattern bytes>|<checksum hex>`: the pattern is a
/// function of key, writer and position, so every byte is predictable.
fn blob(key: &str, writer: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}|{writer}|{len}|").into_bytes();
    let seed = fnv(key.as_bytes()) ^ writer.wrapping_mul(0x9e37_79b9);
    for i in 0..len {
        // Printable, never a space or line break, distinct per key/writer.
        v.push(b'!' + ((seed >> (i % 7 * 8)) as u8 ^ i as u8) % 90);
    }
    let sum = fnv(&v);
    v.extend_from_slice(format!("|{sum:016x}").as_bytes());
    v
}

/// Checks a blob read back under `key` is exactly one writer's value.
fn check_blob(key: &str, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '|');
    let (k, w, l) = (parts.next(), parts.next(), parts.next());
    assert_eq!(
        k,
        Some(key),
        "value of {key} names another key: {}",
        support::show(data)
    );
    let writer: u64 = w
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("value of {key} has no writer: {}", support::show(data)));
    let len: usize = l
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("value of {key} has no length: {}", support::show(data)));
    assert_eq!(
        data,
        blob(key, writer, len).as_slice(),
        "value of {key} is torn or mixed"
    );
}

/// Parses `VALUE k f n [cas]\r\n<data>\r\n ... END\r\n` into (key, cas, data).
fn values(reply: &[u8]) -> Vec<(String, Option<u64>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = reply;
    loop {
        if rest == b"END\r\n" {
            return out;
        }
        let nl = support::find(rest, b"\r\n")
            .unwrap_or_else(|| panic!("bad retrieval reply {}", support::show(reply)));
        let head = String::from_utf8_lossy(&rest[..nl]).into_owned();
        let f: Vec<&str> = head.split(' ').collect();
        assert!(f.len() >= 4 && f[0] == "VALUE", "bad line {head:?}");
        let n: usize = f[3].parse().expect("length");
        let cas = f.get(4).map(|c| c.parse().expect("cas"));
        let data = rest[nl + 2..nl + 2 + n].to_vec();
        assert_eq!(
            &rest[nl + 2 + n..nl + 4 + n],
            b"\r\n",
            "data not terminated"
        );
        out.push((f[1].to_string(), cas, data));
        rest = &rest[nl + 4 + n..];
    }
}

fn store(c: &mut Client, cmd: &str, key: &str, data: &[u8], extra: &str) -> Vec<u8> {
    let mut req = format!("{cmd} {key} 0 0 {}{extra}\r\n", data.len()).into_bytes();
    req.extend_from_slice(data);
    req.extend_from_slice(b"\r\n");
    c.request(&req)
}

struct Tally {
    incr: [u64; COUNTERS],
    cas_won: u64,
    appended: Vec<String>,
}

fn worker(server: &Server, t: usize) -> Tally {
    let mut c = server.connect();
    let mut rng = Rng(0x5eed + t as u64);
    let mut tally = Tally {
        incr: [0; COUNTERS],
        cas_won: 0,
        appended: Vec::new(),
    };
    for op in 0..OPS_PER_THREAD {
        let key = format!("blob{}", rng.below(BLOB_KEYS));
        match rng.below(100) {
            0..=24 => {
                let len = 1 + rng.below(3000) as usize;
                let v = blob(&key, (t * OPS_PER_THREAD + op) as u64, len);
                assert_eq!(store(&mut c, "set", &key, &v, ""), b"STORED\r\n");
            }
            25..=49 => {
                // Multi-get over several blob keys, hits and misses mixed.
                let keys: Vec<String> = (0..1 + rng.below(5))
                    .map(|_| format!("blob{}", rng.below(BLOB_KEYS)))
                    .collect();
                let req = format!("get {}\r\n", keys.join(" "));
                let reply = c.request(req.as_bytes());
                let mut want = keys.iter();
                for (k, _, data) in values(&reply) {
                    // Replies come in request order (misses skipped).
                    assert!(want.any(|w| *w == k), "unexpected key {k} for {req:?}");
                    check_blob(&k, &data);
                }
            }
            50..=54 => {
                let reply = c.request(format!("delete {key}\r\n").as_bytes());
                assert!(
                    reply == b"DELETED\r\n" || reply == b"NOT_FOUND\r\n",
                    "delete answered {}",
                    support::show(&reply)
                );
            }
            55..=74 => {
                let i = rng.below(COUNTERS as u64) as usize;
                let delta = 1 + rng.below(1000);
                let reply = c.request(format!("incr ctr{i} {delta}\r\n").as_bytes());
                assert!(
                    reply
                        .iter()
                        .all(|b| b.is_ascii_digit() || *b == b'\r' || *b == b'\n'),
                    "incr answered {}",
                    support::show(&reply)
                );
                tally.incr[i] += delta;
            }
            75..=89 => {
                // Optimistic increment of a number under cas: every STORED
                // must be counted in the end, every EXISTS must change nothing.
                let reply = c.request(b"gets casnum\r\n");
                let got = values(&reply);
                assert_eq!(got.len(), 1, "casnum vanished: {}", support::show(&reply));
                let (_, cas, data) = &got[0];
                let n: u64 = String::from_utf8_lossy(data)
                    .parse()
                    .expect("casnum is a number");
                let next = (n + 1).to_string();
                let cas = cas.expect("gets returns a cas");
                let reply = store(&mut c, "cas", "casnum", next.as_bytes(), &format!(" {cas}"));
                match reply.as_slice() {
                    b"STORED\r\n" => tally.cas_won += 1,
                    b"EXISTS\r\n" => {}
                    other => panic!("cas answered {}", support::show(other)),
                }
            }
            _ => {
                let rec = format!("[{t}.{op}]");
                assert_eq!(
                    store(&mut c, "append", "log", rec.as_bytes(), ""),
                    b"STORED\r\n"
                );
                tally.appended.push(rec);
            }
        }
    }
    tally
}

#[test]
fn concurrent_updates_are_neither_lost_nor_torn() {
    let server = Arc::new(Server::mnemo(&["-m", "64", "-t", "4"]));
    {
        let mut c = server.connect();
        for i in 0..COUNTERS {
            assert_eq!(
                store(&mut c, "set", &format!("ctr{i}"), b"0", ""),
                b"STORED\r\n"
            );
        }
        assert_eq!(store(&mut c, "set", "casnum", b"0", ""), b"STORED\r\n");
        assert_eq!(store(&mut c, "set", "log", b"", ""), b"STORED\r\n");
    }
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let server = server.clone();
            std::thread::spawn(move || worker(&server, t))
        })
        .collect();
    let tallies: Vec<Tally> = handles
        .into_iter()
        .map(|h| h.join().expect("worker thread"))
        .collect();

    let mut c = server.connect();
    for i in 0..COUNTERS {
        let want: u64 = tallies.iter().map(|t| t.incr[i]).sum();
        let got = values(&c.request(format!("get ctr{i}\r\n").as_bytes()));
        assert_eq!(
            String::from_utf8_lossy(&got[0].2),
            want.to_string(),
            "ctr{i}: increments were lost"
        );
    }
    let won: u64 = tallies.iter().map(|t| t.cas_won).sum();
    let got = values(&c.request(b"get casnum\r\n"));
    assert_eq!(
        String::from_utf8_lossy(&got[0].2),
        won.to_string(),
        "casnum: a cas was lost or a stale cas was honoured"
    );
    let log = values(&c.request(b"get log\r\n"));
    let log = String::from_utf8_lossy(&log[0].2).into_owned();
    let records: Vec<&str> = log.split_inclusive(']').collect();
    let unique: HashSet<&str> = records.iter().copied().collect();
    let appended: usize = tallies.iter().map(|t| t.appended.len()).sum();
    assert_eq!(records.len(), appended, "append records lost or duplicated");
    assert_eq!(unique.len(), appended, "an append record appears twice");
    for t in &tallies {
        for rec in &t.appended {
            assert!(unique.contains(rec.as_str()), "append {rec} lost");
        }
    }
    for i in 0..BLOB_KEYS {
        for (k, _, data) in values(&c.request(format!("get blob{i}\r\n").as_bytes())) {
            check_blob(&k, &data);
        }
    }

    // The load has stopped: the item count must match a walk of the cache.
    let stats = c.request(b"stats\r\n");
    let stats = String::from_utf8_lossy(&stats);
    let curr: usize = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_items "))
        .and_then(|v| v.trim().parse().ok())
        .expect("curr_items in stats");
    c.send(b"lru_crawler metadump all\r\n");
    let dump = c.read_until(b"END\r\n");
    let dump = String::from_utf8_lossy(&dump);
    let walked: Vec<&str> = dump.lines().filter(|l| l.starts_with("key=")).collect();
    assert_eq!(
        walked.len(),
        curr,
        "curr_items {curr} but metadump walked {}",
        walked.len()
    );
    let expected_keys = COUNTERS + 2; // counters, casnum, log (+ live blobs)
    assert!(
        walked.len() >= expected_keys,
        "walk misses fixed keys: {dump}"
    );
}

/// Values of many sizes with distinct byte patterns, read back through
/// text, meta and multi-gets on several connections at once: a reused or
/// shared buffer that leaked bytes between answers would show here.
#[test]
fn no_buffer_reuse_leaks_bytes_between_keys() {
    let server = Arc::new(Server::mnemo(&["-m", "64", "-t", "2"]));
    const KEYS: u64 = 200;
    let sizes = |i: u64| -> usize {
        match i % 5 {
            0 => 1,
            1 => 100 + i as usize,
            2 => 16 * 1024 - 40 + i as usize % 80, // around the read buffer size
            3 => 70_000 + i as usize,
            _ => 300_000 + 1000 * i as usize,
        }
    };
    {
        let mut c = server.connect();
        for i in 0..KEYS {
            let key = format!("pat{i}");
            let v = blob(&key, i, sizes(i));
            assert_eq!(store(&mut c, "set", &key, &v, ""), b"STORED\r\n");
        }
    }
    // Rewriting keys (same bytes, new items) frees their old chunks for
    // other keys while readers still send them: a large value goes out
    // from item memory, so a chunk reused too early would show.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = server.connect();
            let mut rng = Rng(99);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = rng.below(KEYS);
                let key = format!("pat{i}");
                let v = blob(&key, i, sizes(i));
                assert_eq!(store(&mut c, "set", &key, &v, ""), b"STORED\r\n");
            }
        })
    };
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let server = server.clone();
            std::thread::spawn(move || {
                // Half the readers are slow: big replies wait in the
                // server, half written, while the writer reuses memory.
                let mut c = if t % 2 == 0 {
                    Client::connect_small_window(server.addr(), 4096)
                } else {
                    server.connect()
                };
                let slow = t % 2 == 0;
                let mut rng = Rng(t);
                for _ in 0..if slow { 100 } else { 300 } {
                    let n = 1 + rng.below(8);
                    let keys: Vec<u64> = (0..n).map(|_| rng.below(KEYS + 20)).collect();
                    if rng.below(2) == 0 {
                        let names: Vec<String> = keys.iter().map(|k| format!("pat{k}")).collect();
                        let req = format!("get {}\r\n", names.join(" "));
                        // A slow reader pipelines the get four times and
                        // reads late: more than the kernel's send buffer
                        // takes, so the rest waits in the server as
                        // references to items the writer keeps replacing.
                        let repeat = if slow { 4 } else { 1 };
                        c.send(req.repeat(repeat).as_bytes());
                        if slow {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        for _ in 0..repeat {
                            let reply = c.read_response(support::Shape::UntilEnd);
                            let got = values(&reply);
                            let hits: Vec<&u64> = keys.iter().filter(|&&k| k < KEYS).collect();
                            assert_eq!(got.len(), hits.len(), "wrong number of hits");
                            for ((k, _, data), want) in got.iter().zip(hits) {
                                assert_eq!(k, &format!("pat{want}"));
                                assert!(
                                    data == &blob(k, *want, sizes(*want)),
                                    "bytes of {k} wrong"
                                );
                            }
                        }
                    } else {
                        // Meta: pipelined mg ... v k, then mn.
                        let mut req = Vec::new();
                        for k in &keys {
                            req.extend_from_slice(format!("mg pat{k} v k q\r\n").as_bytes());
                        }
                        req.extend_from_slice(b"mn\r\n");
                        c.send(&req);
                        for k in keys.iter().filter(|&&k| k < KEYS) {
                            let head = c.read_line();
                            let want = blob(&format!("pat{k}"), *k, sizes(*k));
                            let expect = format!("VA {} kpat{k}\r\n", want.len());
                            assert_eq!(support::show(&head), support::show(expect.as_bytes()));
                            let data = c.read_exact(want.len() + 2);
                            assert_eq!(
                                &data[..want.len()],
                                want.as_slice(),
                                "meta bytes of pat{k} wrong"
                            );
                            assert_eq!(&data[want.len()..], b"\r\n");
                        }
                        assert_eq!(c.read_line(), b"MN\r\n");
                    }
                }
            })
        })
        .collect();
    // Stop the writer before reporting a reader's failure: it holds the
    // server, which would otherwise outlive the test process.
    let readers: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer thread");
    for r in readers {
        r.expect("reader thread");
    }
}
