//! Erasure-coded pools (issue #14) end to end: five real memcached
//! servers behind `erasure: 3+2`; servers killed, restarted empty, their
//! shards corrupted or rolled back by hand; concurrent writers and readers.
//! Every read is bounded (5 s), every child is killed on drop.

mod common;

use common::*;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fleet {
    servers: Vec<Proc>,
    proxy: Proxy,
    port: u16,
    _dir: TempDir,
}

fn fleet(tag: &str, extra: &str) -> Fleet {
    fleet_t(tag, extra, 3000)
}

/// A fleet whose pool times servers out after `timeout_ms`.
fn fleet_t(tag: &str, extra: &str, timeout_ms: u32) -> Fleet {
    let servers: Vec<Proc> = (0..5).map(|_| memcached()).collect();
    let lp = free_port();
    let dir = TempDir::new(tag);
    let lines: Vec<(&Proc, u32)> = servers.iter().map(|s| (s, 1)).collect();
    let text = format!(
        "ec:\n  listen: 127.0.0.1:{lp}\n  hash: md5\n  erasure: 3+2\n  timeout: {timeout_ms}\n{extra}  servers:\n{}",
        server_lines(&lines)
    );
    let conf = dir.file("p.yml", &text);
    let proxy = proxy(&conf, lp);
    Fleet {
        servers,
        proxy,
        port: lp,
        _dir: dir,
    }
}

/// A value of `len` bytes that names its key and a round, so a mix of two
/// writes or a misplaced byte shows.
fn value(key: &str, round: u32, len: usize) -> String {
    let unit = format!("{key}/{round};");
    unit.repeat(len / unit.len() + 1)[..len].to_string()
}

fn stats_json(port: u16) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    serde_json::from_str(&body).unwrap()
}

/// The raw item a server holds for `key`.
fn raw_get(port: u16, key: &str) -> Option<Vec<u8>> {
    let mut c = Conn::new(port);
    c.send(format!("get {key}\r\n").as_bytes());
    let b = c.read_until(retrieval_len);
    if b.starts_with(b"END") {
        return None;
    }
    let nl = b.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&b[..nl])
        .ok()?
        .split(' ')
        .nth(3)?
        .parse()
        .ok()?;
    Some(b[nl + 2..nl + 2 + len].to_vec())
}

fn raw_set(port: u16, key: &str, data: &[u8]) {
    let mut c = Conn::new(port);
    let mut req = format!("set {key} 0 0 {}\r\n", data.len()).into_bytes();
    req.extend_from_slice(data);
    req.extend_from_slice(b"\r\n");
    c.send(&req);
    assert_eq!(c.line(), "STORED\r\n");
}

fn want(key: &str, v: &str) -> String {
    format!("VALUE {key} 0 {}\r\n{v}\r\nEND\r\n", v.len())
}

/// Wait until `f` holds (repairs are sent without a reply).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn erasure_coded_pool_serves_the_text_commands() {
    let f = fleet("ec-cmds", "");
    let mut c = Conn::new(f.port);
    let big = value("big", 1, 16 * 1024);
    assert_eq!(c.set("small", "tiny"), "STORED\r\n");
    assert_eq!(c.set("big", &big), "STORED\r\n");
    assert_eq!(c.get("small"), want("small", "tiny"));
    assert_eq!(c.get("big"), want("big", &big));
    // A big value is split: every server holds a shard of about a third.
    // (STORED comes once K+1 = 4 servers stored theirs; the fifth may
    // still be on its way.)
    eventually("a shard of about a third on every server", || {
        f.servers
            .iter()
            .all(|s| raw_get(s.port, "big").is_some_and(|b| b.len() > 5000 && b.len() < 6000))
    });
    // A small one is copied whole on M+1 = 3 servers, stubs on the others.
    eventually("whole copies on three servers", || {
        let whole = f
            .servers
            .iter()
            .filter(|s| raw_get(s.port, "small").is_some_and(|b| b.ends_with(b"tiny")))
            .count();
        whole == 3
    });
    // Multi-get keeps order, misses left out; flags survive.
    assert_eq!(c.cmd("set fl 1234 0 2\r\nhi\r\n"), "STORED\r\n");
    assert_eq!(
        c.get("fl nope small fl"),
        "VALUE fl 1234 2\r\nhi\r\nVALUE small 0 4\r\ntiny\r\nVALUE fl 1234 2\r\nhi\r\nEND\r\n"
    );
    // gets returns the write's version as its CAS unique; cas compares it.
    c.send(b"gets big\r\n");
    let g = c.values();
    let unique: u64 = g
        .split("\r\n")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        c.cmd(&format!("cas big 0 0 1 {}\r\nx\r\n", unique + 1)),
        "EXISTS\r\n"
    );
    assert_eq!(
        c.cmd(&format!("cas big 0 0 1 {unique}\r\nx\r\n")),
        "STORED\r\n"
    );
    assert_eq!(
        c.cmd(&format!("cas big 0 0 1 {unique}\r\ny\r\n")),
        "EXISTS\r\n"
    );
    assert_eq!(c.cmd("cas nokey 0 0 1 5\r\ny\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.get("big"), want("big", "x"));
    // add / replace.
    assert_eq!(c.cmd("add small 0 0 1\r\nz\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.cmd("add fresh 0 0 1\r\nz\r\n"), "STORED\r\n");
    assert_eq!(c.cmd("replace gone 0 0 1\r\nz\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.cmd("replace fresh 0 0 2\r\nzz\r\n"), "STORED\r\n");
    assert_eq!(c.get("fresh"), want("fresh", "zz"));
    // Pipelined after an add, a get sees it.
    c.send(b"add piped 0 0 1\r\np\r\nget piped\r\n");
    assert_eq!(c.line(), "STORED\r\n");
    assert_eq!(c.values(), want("piped", "p"));
    // delete, then the key is a miss everywhere and can be added again.
    assert_eq!(c.cmd("delete fresh\r\n"), "DELETED\r\n");
    assert_eq!(c.get("fresh"), "END\r\n");
    assert_eq!(c.cmd("delete fresh\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.cmd("add fresh 0 0 1\r\nq\r\n"), "STORED\r\n");
    assert_eq!(c.get("fresh"), want("fresh", "q"));
    // touch, gat, gats.
    assert_eq!(c.cmd("touch fresh 100\r\n"), "TOUCHED\r\n");
    assert_eq!(c.cmd("touch nokey 100\r\n"), "NOT_FOUND\r\n");
    c.send(b"gat 100 fresh\r\n");
    assert_eq!(c.values(), want("fresh", "q"));
    c.send(b"gats 100 fresh\r\n");
    assert!(c.values().starts_with("VALUE fresh 0 1 "));
    // Expiry is the servers'.
    assert_eq!(c.cmd("set shortlived 0 1 1\r\nx\r\n"), "STORED\r\n");
    // noreply writes answer nothing, and the next request still answers.
    c.send(b"set quiet 0 0 2 noreply\r\nqq\r\ndelete small noreply\r\nget quiet small\r\n");
    assert_eq!(c.values(), want("quiet", "qq"));
    // What the pool cannot do, it says.
    let unsupported = "SERVER_ERROR command not supported on an erasure-coded pool\r\n";
    assert_eq!(c.cmd("incr fresh 1\r\n"), unsupported);
    assert_eq!(c.cmd("decr fresh 1\r\n"), unsupported);
    assert_eq!(c.cmd("append fresh 0 0 1\r\n!\r\n"), unsupported);
    assert_eq!(c.cmd("prepend fresh 0 0 1\r\n!\r\n"), unsupported);
    assert_eq!(c.get("fresh"), want("fresh", "q"));
    c.send(b"stats\r\n");
    let st = c.read_until(|b| b.windows(5).position(|w| w == b"END\r\n").map(|i| i + 5));
    let st = String::from_utf8_lossy(&st);
    assert!(st.contains("STAT ec:ec_repairs "), "{st}");
    assert!(st.contains("STAT ec:ec_bytes_saved "), "{st}");
    let mut ms = Conn::new(f.proxy.stats_port);
    ms.send(b"GET /metrics HTTP/1.0\r\n\r\n");
    let body = ms.read_until(|b| {
        String::from_utf8_lossy(b)
            .contains("mnemo_proxy_server_connections")
            .then_some(b.len())
    });
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("mnemo_proxy_pool_ec_decode_failures_total{pool=\"ec\"}"));
    let s = stats_json(f.proxy.stats_port);
    assert!(s["ec"]["ec_shards_written"].as_u64().unwrap() > 20);
    assert!(s["ec"]["ec_shards_read"].as_u64().unwrap() > 20);
    assert!(s["ec"]["ec_bytes_saved"].as_u64().unwrap() > 16 * 1024);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.get("shortlived"), "END\r\n");
}

fn sizes() -> impl Iterator<Item = (String, usize)> {
    (0..40).map(|i| {
        (
            format!("key{i}"),
            [10, 700, 1024, 3000, 16 * 1024][i % 5] + i,
        )
    })
}

#[test]
fn any_two_of_five_servers_may_die_and_every_value_is_exact() {
    let mut f = fleet("ec-kill", "");
    let mut c = Conn::new(f.port);
    for (k, n) in sizes() {
        assert_eq!(c.set(&k, &value(&k, 1, n)), "STORED\r\n");
    }
    for victims in [[0usize, 1], [2, 4]] {
        let ports: Vec<u16> = victims.iter().map(|&v| f.servers[v].port).collect();
        for &v in &victims {
            f.servers[v].kill();
        }
        for (k, n) in sizes() {
            assert_eq!(c.get(&k), want(&k, &value(&k, 1, n)), "{victims:?} down");
        }
        // Bring them back empty; reads repair them.
        for (&v, &p) in victims.iter().zip(&ports) {
            f.servers[v] = memcached_on(p);
        }
        for (k, n) in sizes() {
            assert_eq!(c.get(&k), want(&k, &value(&k, 1, n)));
        }
        for &v in &victims {
            let port = f.servers[v].port;
            eventually("returned servers refilled by reads", || {
                sizes().all(|(k, _)| raw_get(port, &k).is_some_and(|b| b.starts_with(b"MEC")))
            });
        }
    }
    // Three down: some keys cannot be decoded and are misses, never wrong.
    for v in [0, 1, 2] {
        f.servers[v].kill();
    }
    for (k, n) in sizes() {
        let r = c.get(&k);
        assert!(
            r == "END\r\n" || r == want(&k, &value(&k, 1, n)),
            "{k}: {r:.80}"
        );
    }
    let s = stats_json(f.proxy.stats_port);
    assert!(s["ec"]["ec_repairs"].as_u64().unwrap() >= 80);
    assert!(s["ec"]["ec_degraded_reads"].as_u64().unwrap() > 0);
}

#[test]
fn writes_need_k_plus_one_servers() {
    let mut f = fleet("ec-wq", "");
    let mut c = Conn::new(f.port);
    f.servers[0].kill();
    let v = value("w", 1, 5000);
    assert_eq!(c.set("w", &v), "STORED\r\n");
    assert_eq!(c.get("w"), want("w", &v));
    f.servers[1].kill();
    assert_eq!(
        c.set("w", &value("w", 2, 5000)),
        "SERVER_ERROR erasure-coded write reached too few servers\r\n"
    );
}

#[test]
fn a_corrupt_shard_is_ignored_and_rewritten() {
    let f = fleet("ec-corrupt", "");
    let mut c = Conn::new(f.port);
    let v = value("c", 1, 9000);
    assert_eq!(c.set("c", &v), "STORED\r\n");
    let s = &f.servers;
    eventually("c's shards everywhere", || {
        s.iter().all(|x| raw_get(x.port, "c").is_some())
    });
    // Flip a byte of one shard's payload, replace another with garbage and
    // a third with a shard of another key: each counts as missing.
    let mut a = raw_get(s[0].port, "c").unwrap();
    let last = a.len() - 1;
    a[last] ^= 0x55;
    raw_set(s[0].port, "c", &a);
    raw_set(s[1].port, "c", b"not a shard");
    assert_eq!(c.set("other", &value("other", 1, 9000)), "STORED\r\n");
    eventually("other's shards everywhere", || {
        s.iter().all(|x| raw_get(x.port, "other").is_some())
    });
    let foreign = raw_get(s[2].port, "other").unwrap();
    raw_set(s[2].port, "c", &foreign);
    // Three of five bad: the remaining two are fewer than K, a miss.
    assert_eq!(c.get("c"), "END\r\n");
    // Restore one, so K=3 good shards remain: the exact value, and the
    // others are rewritten.
    assert_eq!(c.set("c", &v), "STORED\r\n");
    eventually("the new shards everywhere", || {
        s.iter()
            .all(|x| raw_get(x.port, "c").is_some_and(|b| b[32..] != foreign[32..] && b.len() > 32))
    });
    let mut a = raw_get(s[0].port, "c").unwrap();
    a[40] ^= 1;
    raw_set(s[0].port, "c", &a);
    raw_set(s[1].port, "c", b"not a shard");
    assert_eq!(c.get("c"), want("c", &v));
    eventually("corrupt shards rewritten", || {
        (0..2).all(|i| {
            let b = raw_get(s[i].port, "c").unwrap_or_default();
            b.starts_with(b"MEC") && b != a
        })
    });
    assert_eq!(c.get("c"), want("c", &v));
}

#[test]
fn a_server_that_missed_a_delete_does_not_bring_the_key_back() {
    let f = fleet("ec-delete", "");
    let mut c = Conn::new(f.port);
    for (k, n) in [("d_big", 8000usize), ("d_small", 20)] {
        assert_eq!(c.set(k, &value(k, 1, n)), "STORED\r\n");
        eventually("every item written", || {
            f.servers.iter().all(|s| raw_get(s.port, k).is_some())
        });
        let before: Vec<Option<Vec<u8>>> = f.servers.iter().map(|s| raw_get(s.port, k)).collect();
        assert_eq!(c.cmd(&format!("delete {k}\r\n")), "DELETED\r\n");
        // Two servers "missed" the delete: they come back with the old
        // shards. An acknowledged delete leaves at most M-1 = 1 without
        // its tombstone (a straggling older write landing late could
        // make it two); K = 3 of them could answer for the old value on
        // their own (see `erasure::read`).
        for (s, b) in f.servers.iter().zip(&before).take(2) {
            if let Some(b) = b {
                raw_set(s.port, k, b);
            }
        }
        assert_eq!(c.get(k), "END\r\n", "{k} resurrected");
        // The read spread the tombstone back.
        eventually("tombstones repaired", || {
            f.servers
                .iter()
                .all(|s| raw_get(s.port, k).is_some_and(|b| b.len() == 32 && b.starts_with(b"MEC")))
        });
        assert_eq!(c.cmd(&format!("delete {k}\r\n")), "NOT_FOUND\r\n");
    }
}

#[test]
fn concurrent_writers_and_readers_never_see_a_mix() {
    let mut f = fleet("ec-race", "");
    let port = f.port;
    let stop = Arc::new(AtomicBool::new(false));
    let keys = ["r0", "r1", "r2"];
    let mut writers = Vec::new();
    for w in 0..2u32 {
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let mut c = Conn::new(port);
            for round in 0..150u32 {
                for k in keys {
                    let n = if round % 3 == 0 {
                        100
                    } else {
                        6000 + w as usize * 500
                    };
                    let r = c.set(k, &value(k, w * 1000 + round, n));
                    assert_eq!(r, "STORED\r\n");
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..2 {
        readers.push(std::thread::spawn(move || {
            let mut c = Conn::new(port);
            let mut hits = 0;
            for _ in 0..300 {
                for k in keys {
                    let r = c.get(k);
                    if r == "END\r\n" {
                        continue;
                    }
                    let mut lines = r.split("\r\n");
                    let head = lines.next().unwrap();
                    let body = lines.next().unwrap();
                    let len: usize = head.split(' ').nth(3).unwrap().parse().unwrap();
                    assert_eq!(body.len(), len);
                    // The value is one unit repeated: a mix of two writes
                    // would show two different units.
                    let unit_end = body.find(';').unwrap() + 1;
                    let unit = &body[..unit_end];
                    assert!(unit.starts_with(&format!("{k}/")), "{unit}");
                    assert_eq!(
                        body,
                        &unit.repeat(len / unit.len() + 1)[..len],
                        "mixed value"
                    );
                    hits += 1;
                }
            }
            hits
        }));
    }
    // Meanwhile one server dies and comes back empty.
    std::thread::sleep(Duration::from_millis(50));
    let p1 = f.servers[1].port;
    f.servers[1].kill();
    std::thread::sleep(Duration::from_millis(100));
    f.servers[1] = memcached_on(p1);
    let mut hits = 0;
    for r in readers {
        hits += r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(hits > 0);
}

#[test]
fn meta_and_binary_requests_on_an_erasure_coded_pool() {
    let f = fleet("ec-meta", "");
    let mut c = Conn::new(f.port);
    let big = value("mbig", 1, 4000);
    c.send(format!("ms mbig {} F7 T0 c k O1\r\n{big}\r\n", big.len()).as_bytes());
    let hd = c.line();
    let version: u64 = hd
        .strip_prefix("HD c")
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{hd}"));
    assert_eq!(hd, format!("HD c{version} kmbig O1\r\n"));
    c.send(b"mg mbig s v f t c k O2\r\n");
    assert_eq!(
        c.line(),
        format!("VA 4000 s4000 f7 t-1 c{version} kmbig O2\r\n")
    );
    assert_eq!(c.line(), format!("{big}\r\n"));
    // The meta CAS is the text one.
    c.send(b"gets mbig\r\n");
    assert!(c
        .values()
        .starts_with(&format!("VALUE mbig 7 4000 {version}\r\n")));
    assert_eq!(c.cmd("mg nokey v k O3\r\n"), "EN knokey O3\r\n");
    assert_eq!(c.cmd("mg nokey v q\r\nmn\r\n"), "MN\r\n");
    assert_eq!(c.cmd("ms mbig 1 ME O4\r\nx\r\n"), "NS O4\r\n");
    assert_eq!(c.cmd("ms nokey 1 MR\r\nx\r\n"), "NS\r\n");
    assert_eq!(
        c.cmd(&format!("ms mbig 1 C{}\r\nx\r\n", version + 1)),
        "EX\r\n"
    );
    assert_eq!(c.cmd("ms nokey 1 C5\r\nx\r\n"), "NF\r\n");
    assert_eq!(
        c.cmd(&format!("ms mbig 1 q C{version}\r\ny\r\nmn\r\n")),
        "MN\r\n"
    );
    assert_eq!(c.get("mbig"), want("mbig", "y"));
    assert_eq!(c.cmd("mg mbig T30\r\n"), "HD\r\n");
    assert_eq!(c.cmd("md mbig C1 O5\r\n"), "EX O5\r\n");
    assert_eq!(c.cmd("md mbig q\r\nmn\r\n"), "MN\r\n");
    assert_eq!(c.cmd("md mbig O6\r\n"), "NF O6\r\n");
    assert_eq!(c.get("mbig"), "END\r\n");
    let unsupported = "SERVER_ERROR command not supported on an erasure-coded pool\r\n";
    assert_eq!(c.cmd("ma counter\r\n"), unsupported);
    assert_eq!(c.cmd("ms mbig 1 MA\r\nx\r\n"), unsupported);
    assert_eq!(c.cmd("mg mbig N30 v\r\n"), unsupported);
    assert_eq!(c.cmd("mn\r\n"), "MN\r\n");

    use mnemo_client::{Client, Options, Protocol, ServerSpec, Stored};
    let opts = Options {
        protocol: Protocol::Binary,
        ..Options::default()
    };
    let b = Client::new(
        vec![ServerSpec::new(&format!("127.0.0.1:{}", f.port)).unwrap()],
        opts,
    )
    .unwrap();
    let v = value("bk", 1, 20_000);
    assert_eq!(b.set(b"bk", v.as_bytes(), 9, 0).unwrap(), Stored::Stored);
    assert_eq!(b.add(b"bk", b"1", 0, 0).unwrap(), Stored::NotStored);
    assert_eq!(b.replace(b"none", b"1", 0, 0).unwrap(), Stored::NotStored);
    let it = b.gets(b"bk").unwrap().unwrap();
    assert_eq!((it.value.as_slice(), it.flags), (v.as_bytes(), 9));
    let cas = it.cas.unwrap();
    assert_eq!(b.cas(b"bk", b"x", 0, 0, cas + 1).unwrap(), Stored::Exists);
    assert_eq!(b.cas(b"bk", b"x", 0, 0, cas).unwrap(), Stored::Stored);
    assert_eq!(b.get(b"bk").unwrap().unwrap().value, b"x");
    assert!(b.touch(b"bk", 0).unwrap());
    assert!(!b.touch(b"none", 0).unwrap());
    assert!(b.incr(b"bk", 1).is_err());
    assert!(b.delete(b"bk").unwrap());
    assert!(!b.delete(b"bk").unwrap());
    assert!(b.get(b"bk").unwrap().is_none());
    b.set(b"k1", b"one", 0, 0).unwrap();
    b.set(b"k2", &[b'2'; 3000], 0, 0).unwrap();
    let refs: Vec<&[u8]> = vec![b"k1", b"bk", b"k2"];
    let got = b.get_multi(&refs).unwrap();
    assert_eq!(got[0].as_ref().unwrap().value, b"one");
    assert!(got[1].is_none());
    assert_eq!(got[2].as_ref().unwrap().value, vec![b'2'; 3000]);
}

fn signal(p: &Proc, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig}");
}

#[test]
fn a_stalled_server_neither_blocks_nor_corrupts_and_comes_back_stale_harmlessly() {
    let f = fleet("ec-stall", "");
    let mut c = Conn::new(f.port);
    for (k, n) in sizes() {
        assert_eq!(c.set(&k, &value(&k, 1, n)), "STORED\r\n");
    }
    signal(&f.servers[3], "-STOP");
    // Reads need K items of one write, or all servers but one: the
    // stalled one is not waited for.
    for (k, n) in sizes() {
        assert_eq!(c.get(&k), want(&k, &value(&k, 1, n)));
    }
    // Writes need K+1 = 4: they succeed without it.
    for (k, n) in sizes() {
        assert_eq!(c.set(&k, &value(&k, 2, n)), "STORED\r\n");
    }
    assert_eq!(c.cmd("delete key0\r\n"), "DELETED\r\n");
    signal(&f.servers[3], "-CONT");
    // Whatever the resumed server holds (old shards, or the writes its
    // socket buffered), reads give the newest values.
    for _ in 0..2 {
        assert_eq!(c.get("key0"), "END\r\n");
        for (k, n) in sizes().skip(1) {
            assert_eq!(c.get(&k), want(&k, &value(&k, 2, n)));
        }
    }
}

#[test]
fn the_repair_command_refills_a_server_that_returned_empty() {
    let mut f = fleet("ec-scrub", "");
    let mut c = Conn::new(f.port);
    for (k, n) in sizes() {
        assert_eq!(c.set(&k, &value(&k, 1, n)), "STORED\r\n");
    }
    assert_eq!(c.cmd("delete key1\r\n"), "DELETED\r\n");
    let port = f.servers[2].port;
    f.servers[2].kill();
    f.servers[2] = memcached_on(port);
    assert!(sizes().all(|(k, _)| raw_get(port, &k).is_none()));
    assert_eq!(
        c.cmd("repair nosuch:1\r\n"),
        "CLIENT_ERROR no such server in this pool\r\n"
    );
    // No client reads a key: the command alone puts every shard back,
    // the tombstone of the deleted key included.
    assert_eq!(c.cmd(&format!("repair 127.0.0.1:{port}\r\n")), "OK\r\n");
    eventually("the returned server refilled by repair", || {
        sizes().all(|(k, _)| raw_get(port, &k).is_some_and(|b| b.starts_with(b"MEC")))
    });
    assert_eq!(raw_get(port, "key1").map(|b| b.len()), Some(32));
    let s = stats_json(f.proxy.stats_port);
    assert_eq!(s["ec"]["ec_scrubs"], 1);
    assert!(s["ec"]["ec_scrubbed_keys"].as_u64().unwrap() >= 40);
    // Without a server name: every key of the pool.
    assert_eq!(c.cmd("repair\r\n"), "OK\r\n");
    for (k, n) in sizes().skip(2) {
        assert_eq!(c.get(&k), want(&k, &value(&k, 1, n)));
    }
}

#[test]
fn racing_cas_increments_lose_no_update() {
    racing_cas_increments(3, 25);
}

/// Six clients racing `cas` from one read used to split the five servers
/// between three of them or more (2, 2 and 1 items of five), so that no
/// write could be decoded and the counter they all read was gone: `gets`
/// answered a miss. Only the writer that wins the first server now
/// writes the others.
#[test]
fn many_racing_cas_clients_never_lose_the_value() {
    racing_cas_increments(6, 15);
}

fn racing_cas_increments(clients: usize, each: u64) {
    let f = fleet("ec-cas", "");
    let port = f.port;
    let pad = "x".repeat(3000);
    let mut c = Conn::new(port);
    assert_eq!(c.set("counter", &format!("{:010}{pad}", 0)), "STORED\r\n");
    let mut threads = Vec::new();
    for _ in 0..clients {
        let pad = pad.clone();
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::new(port);
            let (mut stored, mut unknown) = (0u64, 0u64);
            let mut tries = 0;
            while stored + unknown < each {
                tries += 1;
                assert!(tries < 5000, "no progress");
                c.send(b"gets counter\r\n");
                let g = c.values();
                let mut lines = g.split("\r\n");
                let head = lines.next().unwrap();
                assert!(head.starts_with("VALUE counter 0 3010 "), "{head}");
                let unique: u64 = head.rsplit(' ').next().unwrap().parse().unwrap();
                let n: u64 = lines.next().unwrap()[..10].parse().unwrap();
                let r = c.cmd(&format!(
                    "cas counter 0 0 3010 {unique}\r\n{:010}{pad}\r\n",
                    n + 1
                ));
                match r.as_str() {
                    "STORED\r\n" => stored += 1,
                    "EXISTS\r\n" => {}
                    // The outcome is not known (as after a timeout).
                    r if r.starts_with("SERVER_ERROR") => unknown += 1,
                    r => panic!("{r}"),
                }
            }
            (stored, unknown)
        }));
    }
    let (mut stored, mut unknown) = (0, 0);
    for t in threads {
        let (s, u) = t.join().unwrap();
        stored += s;
        unknown += u;
    }
    let g = c.get("counter");
    let n: u64 = g.split("\r\n").nth(1).unwrap()[..10].parse().unwrap();
    // Every STORED increment is there, none twice; an unknown outcome
    // may or may not have counted.
    assert!(
        n >= stored && n <= stored + unknown,
        "{n} {stored} {unknown}"
    );
}

/// An item of a newer write left on one server (a writer that died after
/// its first server, a set that reached one) makes conditional writes wait
/// for it to land; one that never does must not block them for good.
#[test]
fn a_newer_write_that_never_lands_holds_a_cas_back_only_for_a_while() {
    let f = fleet_t("ec-stale-newer", "", 300);
    let mut c = Conn::new(f.port);
    let (v1, v2) = (value("w", 1, 4000), value("w", 2, 4000));
    assert_eq!(c.set("w", &v1), "STORED\r\n");
    eventually("v1 everywhere", || {
        f.servers.iter().all(|s| raw_get(s.port, "w").is_some())
    });
    let old: Vec<Vec<u8>> = f
        .servers
        .iter()
        .map(|s| raw_get(s.port, "w").unwrap())
        .collect();
    assert_eq!(c.set("w", &v2), "STORED\r\n");
    eventually("v2 on server 2", || {
        raw_get(f.servers[2].port, "w") != Some(old[2].clone())
    });
    let newer = raw_get(f.servers[2].port, "w").unwrap();
    // Back to v1 everywhere but one server, which keeps v2's item.
    for (s, b) in f.servers.iter().zip(&old) {
        raw_set(s.port, "w", b);
    }
    raw_set(f.servers[2].port, "w", &newer);
    c.send(b"gets w\r\n");
    let g = c.values();
    assert!(g.contains(&v1), "{g}");
    let head = g.lines().next().unwrap_or_default().to_string();
    assert!(head.starts_with("VALUE w 0 4000 "), "{g}");
    let unique: u64 = head.rsplit(' ').next().unwrap().parse().unwrap();
    let v3 = value("w", 3, 4000);
    let r = c.cmd(&format!("cas w 0 0 4000 {unique}\r\n{v3}\r\n"));
    assert_eq!(r, "STORED\r\n");
    assert_eq!(c.get("w"), want("w", &v3));
}

/// Read `key` through the proxy, asserting it is answered well before the
/// pool's 5 s server timeout (a wide margin: a behaviour, not a speed).
fn prompt_get(c: &mut Conn, key: &str) -> String {
    let t = Instant::now();
    let got = c.get(key);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "get {key} waited {:?} for a stalled server",
        t.elapsed()
    );
    got
}

#[test]
fn reads_decode_from_the_first_k_answers_with_two_servers_stalled() {
    let f = fleet_t("ec-stall2", "", 5000);
    let mut c = Conn::new(f.port);
    let keys: Vec<(String, usize)> = (0..6)
        .map(|i| (format!("big{i}"), 16 * 1024))
        .chain([("small".to_string(), 100)])
        .collect();
    for (k, n) in &keys {
        assert_eq!(c.set(k, &value(k, 1, *n)), "STORED\r\n");
    }
    assert_eq!(c.set("gone", &value("gone", 1, 16384)), "STORED\r\n");
    assert_eq!(c.cmd("delete gone\r\n"), "DELETED\r\n");
    eventually("every item written", || {
        f.servers.iter().all(|s| {
            keys.iter().all(|(k, _)| raw_get(s.port, k).is_some())
                && raw_get(s.port, "gone").is_some_and(|b| b.len() == 32)
        })
    });
    // M = 2 servers stalled: three answers are all a read gets until the
    // timeout, and K = 3 items of one write are enough.
    signal(&f.servers[1], "-STOP");
    signal(&f.servers[3], "-STOP");
    for _ in 0..2 {
        for (k, n) in &keys {
            assert_eq!(prompt_get(&mut c, k), want(k, &value(k, 1, *n)));
        }
        assert_eq!(prompt_get(&mut c, "gone"), "END\r\n");
    }
    signal(&f.servers[1], "-CONT");
    signal(&f.servers[3], "-CONT");
    for (k, n) in &keys {
        assert_eq!(c.get(k), want(k, &value(k, 1, *n)));
    }
    assert_eq!(c.get("gone"), "END\r\n");
}

#[test]
fn a_delete_acknowledged_around_stalled_servers_stays_a_miss() {
    let f = fleet_t("ec-stall-del", "", 5000);
    let mut c = Conn::new(f.port);
    let v = value("del", 1, 16 * 1024);
    assert_eq!(c.set("del", &v), "STORED\r\n");
    eventually("every shard written", || {
        f.servers.iter().all(|s| raw_get(s.port, "del").is_some())
    });
    let old = raw_get(f.servers[3].port, "del").unwrap();
    // The delete is acknowledged by K+1 = 4 servers, not the stalled one.
    signal(&f.servers[3], "-STOP");
    assert_eq!(c.cmd("delete del\r\n"), "DELETED\r\n");
    // A second one stalls: the three left all hold the tombstone.
    signal(&f.servers[1], "-STOP");
    assert_eq!(prompt_get(&mut c, "del"), "END\r\n");
    signal(&f.servers[1], "-CONT");
    signal(&f.servers[3], "-CONT");
    // Whatever the resumed server ran from its socket, make it one that
    // missed the delete: it comes back with its old shard.
    eventually("queued tombstone ran", || {
        raw_get(f.servers[3].port, "del").is_some_and(|b| b.len() == 32)
    });
    raw_set(f.servers[3].port, "del", &old);
    for _ in 0..20 {
        assert_eq!(c.get("del"), "END\r\n", "del resurrected");
    }
    eventually("tombstone repaired", || {
        raw_get(f.servers[3].port, "del").is_some_and(|b| b.len() == 32)
    });
}
