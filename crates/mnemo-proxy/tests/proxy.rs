//! mnemo-proxy end to end: real memcached backends, nutcracker for the
//! placement comparison, faults injected by killing processes or by fake
//! servers. Every read is bounded (5 s), every child is killed on drop.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A pool section. Tests that need keys spread over servers use md5: with
/// twemproxy's default fnv1a_64 (a 32-bit FNV-1a), short keys that differ
/// in their last bytes cluster on the ring, for nutcracker and us alike.
fn pool(name: &str, listen: u16, extra: &str, servers: &str) -> String {
    let hash = if extra.contains("hash:") {
        ""
    } else {
        "  hash: md5\n"
    };
    format!("{name}:\n  listen: 127.0.0.1:{listen}\n{hash}{extra}  servers:\n{servers}")
}

#[test]
fn placement_identical_to_nutcracker() {
    let m = [memcached(), memcached(), memcached()];
    let servers = server_lines(&[(&m[0], 1), (&m[1], 2), (&m[2], 5)]);
    let dir = TempDir::new("placement");
    for (hash, dist) in [
        ("fnv1a_64", "ketama"),
        ("md5", "ketama"),
        ("murmur", "ketama"),
        ("crc32a", "ketama"),
        ("one_at_a_time", "ketama"),
        ("hsieh", "ketama"),
        ("jenkins", "ketama"),
        ("fnv1_64", "ketama"),
        ("crc16", "modula"),
        ("md5", "modula"),
        ("fnv1a_32", "ketama"),
        ("fnv1_32", "ketama"),
        ("crc32", "ketama"),
    ] {
        let (np, mp) = (free_port(), free_port());
        // Hash tags too: "{...}" selects the part of the key that is hashed.
        let extra = format!("  hash: {hash}\n  distribution: {dist}\n  hash_tag: \"{{}}\"\n");
        let nconf = dir.file(
            &format!("nc-{hash}-{dist}.yml"),
            &pool("p", np, &extra, &servers),
        );
        let mconf = dir.file(
            &format!("mp-{hash}-{dist}.yml"),
            &pool("p", mp, &extra, &servers),
        );
        let _nc = nutcracker(&dir, &nconf, np);
        let _mp = proxy(&mconf, mp);
        let mut n = Conn::new(np);
        let mut c = Conn::new(mp);
        // Varying leading bytes: fnv1a_64 mixes late bytes poorly.
        let keys: Vec<String> = (0..300)
            .map(|i| match i % 3 {
                0 => format!("{i}:{hash}:{dist}:user"),
                1 => format!("x{{{i}}}:{hash}:{dist}"),
                _ => format!("{hash}:{dist}:{{{}}}:{i}", i % 7),
            })
            .collect();
        for k in &keys {
            assert_eq!(n.set(k, &format!("nc-{k}")), "STORED\r\n");
        }
        // Written by nutcracker, found by mnemo-proxy: same server.
        let mut per_server = [0usize; 3];
        for k in &keys {
            let r = c.get(k);
            if !r.contains(&format!("nc-{k}")) {
                let on: Vec<bool> = m.iter().map(|s| direct_get(s.port, k).is_some()).collect();
                panic!("{hash}/{dist}: {k} not where nutcracker put it ({on:?}): {r:?}");
            }
            for (i, s) in m.iter().enumerate() {
                if direct_get(s.port, k).is_some() {
                    per_server[i] += 1;
                }
            }
        }
        assert_eq!(per_server.iter().sum::<usize>(), keys.len());
        // Spread is the hash's business (fnv1a_64 can cluster similar keys
        // on a ring whose names change with the ports); placement equality
        // above is the point. The well-mixed hashes must spread.
        let used = per_server.iter().filter(|&&x| x > 0).count();
        assert!(
            hash.starts_with("fnv") || hash == "crc32" || used >= 2,
            "{hash}: {per_server:?}"
        );
        if hash == "md5" && dist == "ketama" {
            assert!(per_server[0] < per_server[2], "{per_server:?}");
        }
        // And the other way round.
        for k in keys.iter().take(100) {
            assert_eq!(c.set(k, &format!("mp-{k}")), "STORED\r\n");
            assert!(n.get(k).contains(&format!("mp-{k}")), "{k}");
        }
    }
}

#[test]
fn multiget_over_three_servers_in_order_with_missing_keys() {
    let m = [memcached(), memcached(), memcached()];
    let lp = free_port();
    let dir = TempDir::new("multiget");
    let conf = dir.file(
        "p.yml",
        &pool(
            "p",
            lp,
            "",
            &server_lines(&[(&m[0], 1), (&m[1], 1), (&m[2], 1)]),
        ),
    );
    let _p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        if i % 3 != 1 {
            assert_eq!(c.set(k, &format!("v{i}")), "STORED\r\n");
        }
    }
    // The keys really are spread over the three servers.
    for s in &m {
        assert!(keys.iter().any(|k| direct_get(s.port, k).is_some()));
    }
    let mut asked: Vec<&String> = keys.iter().collect();
    asked.push(&keys[0]);
    asked.push(&keys[1]);
    asked.push(&keys[5]);
    let line: Vec<&str> = asked.iter().map(|s| s.as_str()).collect();
    let mut want = String::new();
    for k in &asked {
        let i: usize = k[1..].parse().unwrap();
        if i % 3 != 1 {
            want.push_str(&format!(
                "VALUE {k} 0 {}\r\nv{i}\r\n",
                format!("v{i}").len()
            ));
        }
    }
    want.push_str("END\r\n");
    assert_eq!(c.get(&line.join(" ")), want);
    // Pipelined: a split multi-get, a set and a gets, answered in order.
    c.send(
        format!(
            "get {}\r\nset zz 5 0 1\r\nz\r\ngets k1 k0\r\n",
            line.join(" ")
        )
        .as_bytes(),
    );
    assert_eq!(c.values(), want);
    assert_eq!(c.line(), "STORED\r\n");
    let g = c.values();
    assert!(
        g.starts_with("VALUE k0 0 2 ") && g.ends_with("END\r\n"),
        "{g}"
    );
    // meta across servers, quiet mode included.
    c.send(b"mg k0 v\r\nmg k1 v q\r\nmg k2 v q\r\nmn\r\n");
    assert_eq!(c.line(), "VA 2\r\n");
    assert_eq!(c.line(), "v0\r\n");
    assert_eq!(c.line(), "VA 2\r\n");
    assert_eq!(c.line(), "v2\r\n");
    assert_eq!(c.line(), "MN\r\n");
}

#[test]
fn backup_pool_holds_every_write_and_answers_when_primary_dies() {
    let mut prim = [memcached(), memcached()];
    let backup = memcached();
    let lp = free_port();
    let dir = TempDir::new("backup");
    let text = format!(
        "{}backup_pool:\n  servers:\n{}",
        pool(
            "main",
            lp,
            "  backup: backup_pool\n  timeout: 500\n  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 60000\n",
            &server_lines(&[(&prim[0], 1), (&prim[1], 1)])
        ),
        server_lines(&[(&backup, 1)])
    );
    let conf = dir.file("p.yml", &text);
    let _p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    for i in 0..50 {
        assert_eq!(c.set(&format!("b{i}"), &format!("val{i}")), "STORED\r\n");
    }
    assert_eq!(c.cmd("set n 0 0 1\r\n5\r\n"), "STORED\r\n");
    assert_eq!(c.cmd("incr n 3\r\n"), "8\r\n");
    assert_eq!(c.cmd("append b0 0 0 1\r\n!\r\n"), "STORED\r\n");
    assert_eq!(c.cmd("delete b1\r\n"), "DELETED\r\n");
    assert_eq!(c.cmd("ms mk 2\r\nmv\r\n"), "HD\r\n");
    // The backup holds a copy of every write.
    for i in 2..50 {
        assert_eq!(
            direct_get(backup.port, &format!("b{i}")),
            Some(format!("val{i}"))
        );
    }
    assert_eq!(direct_get(backup.port, "b0").as_deref(), Some("val0!"));
    assert_eq!(direct_get(backup.port, "b1"), None);
    assert_eq!(direct_get(backup.port, "n").as_deref(), Some("8"));
    assert_eq!(direct_get(backup.port, "mk").as_deref(), Some("mv"));
    // cas: decided by the primary (whose CAS uniques the client holds); the
    // backup receives the stored value.
    c.send(b"gets b2\r\n");
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
        c.cmd(&format!("cas b2 0 0 4 {}\r\nnew2\r\n", unique + 1000)),
        "EXISTS\r\n"
    );
    assert_eq!(direct_get(backup.port, "b2").as_deref(), Some("val2"));
    assert_eq!(
        c.cmd(&format!("cas b2 0 0 4 {unique}\r\nnew2\r\n")),
        "STORED\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while direct_get(backup.port, "b2").as_deref() != Some("new2") {
        assert!(
            Instant::now() < deadline,
            "backup never got the cas'd value"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        c.cmd(&format!("cas b2 0 0 4 {unique}\r\nval2\r\n")),
        "EXISTS\r\n"
    );
    assert_eq!(c.set("b2", "val2"), "STORED\r\n");
    // Meta cas: the primary decides, the backup's copy is invalidated.
    c.send(b"mg mk c\r\n");
    let hd = c.line();
    let mcas: u64 = hd.trim_end().strip_prefix("HD c").unwrap().parse().unwrap();
    assert_eq!(
        c.cmd(&format!("ms mk 3 C{}\r\nnew\r\n", mcas + 1000)),
        "EX\r\n"
    );
    assert_eq!(direct_get(backup.port, "mk").as_deref(), Some("mv"));
    assert_eq!(c.cmd(&format!("ms mk 3 C{mcas}\r\nnew\r\n")), "HD\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while direct_get(backup.port, "mk").is_some() {
        assert!(Instant::now() < deadline, "backup copy not invalidated");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.cmd("ms mk 2\r\nmv\r\n"), "HD\r\n");
    // Kill a primary: its keys are answered from the backup, in order,
    // within a multi-get too.
    let victim = prim[0].port;
    prim[0].kill();
    let keys: Vec<String> = (2..50).map(|i| format!("b{i}")).collect();
    let on_victim: Vec<&String> = keys
        .iter()
        .filter(|k| direct_get(prim[1].port, k).is_none())
        .collect();
    assert!(!on_victim.is_empty());
    let _ = victim;
    for k in &on_victim {
        let r = c.get(k);
        assert!(r.starts_with(&format!("VALUE {k} ")), "{k}: {r}");
    }
    let r = c.get(&keys.join(" "));
    let mut want = String::new();
    for (i, k) in keys.iter().enumerate() {
        let v = format!("val{}", i + 2);
        want.push_str(&format!("VALUE {k} 0 {}\r\n{v}\r\n", v.len()));
    }
    want.push_str("END\r\n");
    assert_eq!(r, want);
    c.send(b"mg mk v\r\n");
    let a = c.line();
    assert!(a == "VA 2\r\n" || a == "EN\r\n", "{a}");
    if a == "VA 2\r\n" {
        assert_eq!(c.line(), "mv\r\n");
    }
    // Writes to keys of the dead server still succeed through the backup.
    assert_eq!(c.set(on_victim[0], "new"), "STORED\r\n");
    assert!(c.get(on_victim[0]).contains("new"));
}

#[test]
fn failover_with_a_server_killed_mid_run() {
    let mut prim = [memcached(), memcached(), memcached()];
    let backup = memcached();
    let lp = free_port();
    let dir = TempDir::new("failover");
    let text = format!(
        "{}bk:\n  servers:\n{}",
        pool(
            "main",
            lp,
            "  backup: bk\n  timeout: 300\n  auto_eject_hosts: true\n  server_failure_limit: 2\n  server_retry_timeout: 60000\n",
            &server_lines(&[(&prim[0], 1), (&prim[1], 1), (&prim[2], 1)])
        ),
        server_lines(&[(&backup, 1)])
    );
    let conf = dir.file("p.yml", &text);
    let _p = proxy(&conf, lp);
    {
        let mut c = Conn::new(lp);
        for i in 0..200 {
            assert_eq!(c.set(&format!("f{i}"), &format!("x{i}")), "STORED\r\n");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (stop, bad, done) = (stop.clone(), bad.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = Conn::new(lp);
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("f{}", i % 200);
                // Every request is answered (Conn panics after 5 s of
                // silence), and gets are answered with the right value.
                let r = c.get(&k);
                if r != format!(
                    "VALUE {k} 0 {}\r\nx{}\r\nEND\r\n",
                    format!("x{}", i % 200).len(),
                    i % 200
                ) {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 4;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    prim[1].kill();
    std::thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread hung or panicked");
    }
    assert!(done.load(Ordering::Relaxed) > 100);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "gets not answered by the backup"
    );
}

#[test]
fn ejection_and_return_after_retry_timeout() {
    let mut m = [memcached(), memcached(), memcached()];
    let lp = free_port();
    let dir = TempDir::new("eject");
    let conf = dir.file(
        "p.yml",
        &pool(
            "p",
            lp,
            "  timeout: 300\n  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 1500\n",
            &server_lines(&[(&m[0], 1), (&m[1], 1), (&m[2], 1)]),
        ),
    );
    let p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    let keys: Vec<String> = (0..60).map(|i| format!("e{i}")).collect();
    for k in &keys {
        assert_eq!(c.set(k, "1"), "STORED\r\n");
    }
    let on0: Vec<&String> = keys
        .iter()
        .filter(|k| direct_get(m[0].port, k).is_some())
        .collect();
    assert!(!on0.is_empty());
    let port0 = m[0].port;
    m[0].kill();
    // The first request to the dead server fails (the proxy must see the
    // failure); then it is ejected and its keys go to the others.
    let first = c.set(on0[0], "2");
    assert!(
        first.starts_with("SERVER_ERROR") || first == "STORED\r\n",
        "{first}"
    );
    let mut stored = 0;
    for k in &on0 {
        if c.set(k, "2") == "STORED\r\n" {
            stored += 1;
        }
    }
    assert_eq!(
        stored,
        on0.len(),
        "keys of the ejected server were not rehashed"
    );
    let mut ss = Conn::new(p.stats_port);
    ss.send(b"GET /metrics HTTP/1.0\r\n\r\n");
    let body = ss.read_until(|b| {
        let s = String::from_utf8_lossy(b);
        s.contains("mnemo_proxy_server_connections")
            .then_some(b.len())
    });
    assert!(
        String::from_utf8_lossy(&body).contains("mnemo_proxy_pool_server_ejects_total{pool=\"p\"}")
    );
    // Bring it back; after the retry timeout its keys return to it.
    let _back = memcached_on(port0);
    std::thread::sleep(Duration::from_millis(1700));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(c.set(on0[0], "3"), "STORED\r\n");
        if direct_get(port0, on0[0]).as_deref() == Some("3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not return to the ring"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for k in &on0 {
        assert_eq!(c.set(k, "4"), "STORED\r\n");
        assert_eq!(direct_get(port0, k).as_deref(), Some("4"));
    }
}

/// A fake server: answers every request with `reply`, or never if None.
fn fake_server(reply: Option<&'static [u8]>) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let h = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut conns = Vec::new();
        while Instant::now() < deadline {
            if let Ok((s, _)) = l.accept() {
                s.set_nonblocking(true).unwrap();
                conns.push(s);
            }
            for s in &mut conns {
                let mut b = [0u8; 4096];
                if let Ok(n) = s.read(&mut b) {
                    if n > 0 {
                        if let Some(r) = reply {
                            let _ = s.write_all(r);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (port, h)
}

#[test]
fn slow_and_broken_servers_fail_only_their_requests() {
    let good = memcached();
    let (slow, _h1) = fake_server(None);
    let (broken, _h2) = fake_server(Some(b"GARBAGE\r\n"));
    let lp = free_port();
    let dir = TempDir::new("faults");
    let servers = format!(
        "   - 127.0.0.1:{}:1\n   - 127.0.0.1:{slow}:1\n   - 127.0.0.1:{broken}:1\n",
        good.port
    );
    let conf = dir.file("p.yml", &pool("p", lp, "  timeout: 300\n", &servers));
    let _p = proxy(&conf, lp);
    // Find keys for each server by their behaviour.
    let mut c = Conn::new(lp);
    let mut good_key = None;
    let mut slow_key = None;
    let mut broken_key = None;
    for i in 0..60 {
        let k = format!("s{i}");
        let t = Instant::now();
        let r = c.set(&k, "v");
        if r == "STORED\r\n" {
            good_key.get_or_insert(k);
        } else if r.contains("timed out") {
            assert!(t.elapsed() >= Duration::from_millis(250));
            slow_key.get_or_insert(k);
        } else if r.contains("Malformed") {
            broken_key.get_or_insert(k);
        } else {
            panic!("unexpected {r}");
        }
        if good_key.is_some() && slow_key.is_some() && broken_key.is_some() {
            break;
        }
    }
    let (g, s, b) = (good_key.unwrap(), slow_key.unwrap(), broken_key.unwrap());
    // A request stuck on the slow server does not hold up another client's
    // request to a healthy one.
    let mut c2 = Conn::new(lp);
    c.send(format!("get {s}\r\n").as_bytes());
    let t = Instant::now();
    assert!(c2.get(&g).starts_with("VALUE"));
    let fast = t.elapsed();
    assert!(c.values().starts_with("SERVER_ERROR"));
    assert!(fast < t.elapsed());
    // The broken server's answer closes that server connection and fails
    // only its request; the client connection stays usable.
    assert!(c.get(&b).starts_with("SERVER_ERROR"));
    assert!(c.get(&g).starts_with("VALUE"));
}

#[test]
fn malformed_requests_get_memcached_errors_and_never_reach_a_server() {
    let m = memcached();
    let lp = free_port();
    let dir = TempDir::new("malformed");
    let conf = dir.file("p.yml", &pool("p", lp, "", &server_lines(&[(&m, 1)])));
    let _p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    let before = {
        let mut d = Conn::new(m.port);
        d.send(b"stats\r\n");
        let s = String::from_utf8_lossy(
            &d.read_until(|b| b.windows(5).position(|w| w == b"END\r\n").map(|i| i + 5)),
        )
        .into_owned();
        s.lines()
            .find(|l| l.starts_with("STAT cmd_set "))
            .map(str::to_string)
    };
    assert_eq!(c.cmd("bogus\r\n"), "ERROR\r\n");
    assert_eq!(
        c.cmd(&format!("get {}\r\n", "k".repeat(251))),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        c.cmd("set k 0 0 3\r\nabcde"),
        "CLIENT_ERROR bad data chunk\r\n"
    );
    assert_eq!(
        c.cmd("set k x 0 3\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        c.cmd("incr k abc\r\n"),
        "CLIENT_ERROR invalid numeric delta argument\r\n"
    );
    assert_eq!(
        c.cmd(&format!("mg {} v\r\n", "k".repeat(251))),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        c.cmd("set big 0 0 2000000\r\n"),
        "SERVER_ERROR object too large for cache\r\n"
    );
    c.send(&vec![b'x'; 2_000_002]);
    assert_eq!(
        c.cmd("version\r\n"),
        format!("VERSION mnemo-proxy-{}\r\n", env!("CARGO_PKG_VERSION"))
    );
    let after = {
        let mut d = Conn::new(m.port);
        d.send(b"stats\r\n");
        let s = String::from_utf8_lossy(
            &d.read_until(|b| b.windows(5).position(|w| w == b"END\r\n").map(|i| i + 5)),
        )
        .into_owned();
        s.lines()
            .find(|l| l.starts_with("STAT cmd_set "))
            .map(str::to_string)
    };
    assert_eq!(before, after, "a malformed request reached the server");
    // Malformed meta requests: the proxy answers exactly what memcached
    // answers (a refused ms loses its data block in both).
    let mut direct = Conn::new(m.port);
    for bad in [
        "ms k 2 Mx\r\nhi\r\n",
        "ms k 2 C1 C2\r\nhi\r\n",
        "mg k v v\r\n",
        "ma k Mz\r\n",
        "md k Q\r\n",
        "ms k\r\n",
        "mg\r\n",
    ] {
        let a = direct.cmd(bad);
        assert_eq!(c.cmd(bad), a, "{bad:?}");
        assert_eq!(c.cmd("mn\r\n"), "MN\r\n", "after {bad:?}");
    }
    // Malformed text requests, likewise.
    for bad in [
        "set k 0 0 -1\r\n",
        "set k 0 0\r\n",
        "cas k 0 0 1\r\n",
        "incr k\r\n",
        "incr k -1\r\n",
        "decr k 18446744073709551616\r\n",
        "delete k 5\r\n",
        "touch k abc\r\n",
        "gat abc k\r\n",
        "gets\r\n",
        "flush_all abc\r\n",
        "verbosity\r\n",
        "x\r\n",
    ] {
        let a = direct.cmd(bad);
        assert_eq!(c.cmd(bad), a, "{bad:?}");
        assert_eq!(c.cmd("mn\r\n"), "MN\r\n", "after {bad:?}");
    }
    assert_eq!(c.cmd("flush_all\r\n"), "OK\r\n");
    assert_eq!(c.cmd("verbosity 1\r\n"), "OK\r\n");
    c.send(b"stats\r\n");
    let s = c.read_until(|b| b.windows(5).position(|w| w == b"END\r\n").map(|i| i + 5));
    assert!(String::from_utf8_lossy(&s).contains("STAT p:requests"));
    c.send(b"quit\r\n");
    assert!(c.closed());
    // An endless get line is cut off instead of buffered without bound.
    let mut c = Conn::new(lp);
    let mut line = b"get ".to_vec();
    while line.len() < 1_200_000 {
        line.extend_from_slice(b"somekey ");
    }
    c.send(&line);
    assert_eq!(c.line(), "CLIENT_ERROR line too long\r\n");
    assert!(c.closed());
}

#[test]
fn bad_config_prints_the_offending_line_and_exits_non_zero() {
    let dir = TempDir::new("badconf");
    let good = dir.file(
        "good.yml",
        "p:\n  listen: 127.0.0.1:22199\n  servers:\n   - 127.0.0.1:11211:1\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo-proxy"))
        .args(["-t", "-c", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("syntax is ok"));
    for (text, line, needle) in [
        ("p:\n  listen: 127.0.0.1:22199\n  hash: sha999\n  servers:\n   - 127.0.0.1:11211:1\n", "line 3", "hash: sha999"),
        ("p:\n  listen: 127.0.0.1:22199\n  servers:\n   - 127.0.0.1:11211:0\n", "line 4", "127.0.0.1:11211:0"),
        ("p:\n  listen: 127.0.0.1:22199\n  backup: nowhere\n  servers:\n   - 127.0.0.1:11211:1\n", "line 3", "backup: nowhere"),
    ] {
        let bad = dir.file("bad.yml", text);
        for args in [vec!["-t", "-c"], vec!["-c"]] {
            let mut a = args.clone();
            a.push(bad.to_str().unwrap());
            let out = Command::new(env!("CARGO_BIN_EXE_mnemo-proxy")).args(&a).output().unwrap();
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(line) && err.contains(needle), "{err}");
        }
    }
}

#[test]
fn reload_under_load_keeps_client_connections() {
    let m1 = memcached();
    let m2 = memcached();
    let lp = free_port();
    let lp2 = free_port();
    let dir = TempDir::new("reload");
    let conf = dir.file("p.yml", &pool("p", lp, "", &server_lines(&[(&m1, 1)])));
    let p = proxy(&conf, lp);
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..3 {
        let (stop, bad, done) = (stop.clone(), bad.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            // One connection for the whole run: a reload must not drop it.
            let mut c = Conn::new(lp);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("r{t}-{}", i % 50);
                // A key may move to the new server between its set and its
                // get, so a miss is fine; an error or a dropped connection
                // (Conn panics) is not.
                let g = c.get(&k);
                if c.set(&k, "v") != "STORED\r\n" || !(g.starts_with("VALUE") || g == "END\r\n") {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = format!(
        "{}{}",
        pool("p", lp, "", &server_lines(&[(&m1, 1), (&m2, 1)])),
        pool("q", lp2, "", &server_lines(&[(&m2, 1)]))
    );
    std::fs::write(&conf, text).unwrap();
    // SAFETY: signalling our own child by pid.
    unsafe { libc_kill(p.proc.child.id() as i32, 1) };
    wait_port(lp2, "reloaded pool q");
    let before = done.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .expect("client thread panicked: connection dropped or hung");
    }
    assert!(
        done.load(Ordering::Relaxed) > before,
        "no progress after the reload"
    );
    assert_eq!(bad.load(Ordering::Relaxed), 0);
    // The new server takes keys now, and the new pool answers.
    let mut c = Conn::new(lp);
    for i in 0..40 {
        assert_eq!(c.set(&format!("after{i}"), "x"), "STORED\r\n");
    }
    assert!((0..40).any(|i| direct_get(m2.port, &format!("after{i}")).is_some()));
    let mut q = Conn::new(lp2);
    assert_eq!(q.set("qk", "1"), "STORED\r\n");
    assert_eq!(direct_get(m2.port, "qk").as_deref(), Some("1"));
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn stats_port_serves_twemproxy_json() {
    let m = memcached();
    let lp = free_port();
    let dir = TempDir::new("stats");
    let conf = dir.file("p.yml", &pool("alpha", lp, "", &server_lines(&[(&m, 1)])));
    let p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    assert_eq!(c.set("a", "b"), "STORED\r\n");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.stats_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let server = format!("127.0.0.1:{}", m.port);
    assert_eq!(v["alpha"][&server]["requests"], 1);
    assert_eq!(v["alpha"][&server]["responses"], 1);
    assert_eq!(v["alpha"]["client_connections"], 1);
}

/// The proxy's stats as its stats port serves them (twemproxy's JSON).
fn stats_json(port: u16) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    serde_json::from_str(&body).unwrap()
}

#[test]
fn stats_continue_across_a_reload() {
    let m = memcached();
    let lp = free_port();
    let lp2 = free_port();
    let dir = TempDir::new("stats-reload");
    let conf = dir.file("p.yml", &pool("alpha", lp, "", &server_lines(&[(&m, 1)])));
    let p = proxy(&conf, lp);
    let stats = || stats_json(p.stats_port);
    let mut c = Conn::new(lp);
    for i in 0..10 {
        assert_eq!(c.set(&format!("s{i}"), "v"), "STORED\r\n");
    }
    std::thread::sleep(Duration::from_millis(1100));
    let uptime_before = stats()["uptime"].as_u64().unwrap_or(0);
    // The same pool plus a new one, whose port tells that the reload is in.
    let text = format!(
        "{}{}",
        pool("alpha", lp, "", &server_lines(&[(&m, 1)])),
        pool("beta", lp2, "", &server_lines(&[(&m, 1)]))
    );
    std::fs::write(&conf, text).unwrap();
    // SAFETY: signalling our own child by pid.
    unsafe { libc_kill(p.proc.child.id() as i32, 1) };
    wait_port(lp2, "reloaded pool beta");
    // The carried-over client connection goes on working; its next request
    // also shows that its worker has switched to the new counters.
    assert_eq!(c.set("after", "v"), "STORED\r\n");
    let v = stats();
    let server = format!("127.0.0.1:{}", m.port);
    assert_eq!(v["alpha"][&server]["requests"], 11, "{v}");
    assert_eq!(v["alpha"][&server]["responses"], 11, "{v}");
    assert_eq!(v["alpha"]["requests"], 11, "{v}");
    assert_eq!(v["alpha"]["client_connections"], 1, "{v}");
    assert_eq!(v["beta"][&server]["requests"], 0, "{v}");
    assert!(
        v["uptime"].as_u64().unwrap_or(0) >= uptime_before.max(1),
        "uptime restarted at the reload: {v}"
    );
}

/// A reload that drops a server closes that server's connections without
/// touching the counters of the server that takes its place in the list.
#[test]
fn a_reload_that_removes_a_server_keeps_the_others_counters() {
    let m = [memcached(), memcached()];
    let lp = free_port();
    let lp2 = free_port();
    let dir = TempDir::new("stats-remove");
    let conf = dir.file(
        "p.yml",
        &pool("alpha", lp, "", &server_lines(&[(&m[0], 1), (&m[1], 1)])),
    );
    let p = proxy(&conf, lp);
    let stats = || stats_json(p.stats_port);
    let mut c = Conn::new(lp);
    // Enough keys that both servers get a connection from this worker.
    for i in 0..40 {
        assert_eq!(c.set(&format!("r{i}"), "v"), "STORED\r\n");
    }
    let first = format!("127.0.0.1:{}", m[0].port);
    let second = format!("127.0.0.1:{}", m[1].port);
    let before = stats();
    let conns = before["alpha"][&second]["server_connections"].clone();
    assert!(conns.as_i64().unwrap_or(0) >= 1, "{before}");
    assert!(
        before["alpha"][&first]["server_connections"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    );
    // Only the second server remains; a new pool shows the reload is in.
    let text = format!(
        "{}{}",
        pool("alpha", lp, "", &server_lines(&[(&m[1], 1)])),
        pool("beta", lp2, "", &server_lines(&[(&m[1], 1)]))
    );
    std::fs::write(&conf, text).unwrap();
    // SAFETY: signalling our own child by pid.
    unsafe { libc_kill(p.proc.child.id() as i32, 1) };
    wait_port(lp2, "reloaded pool beta");
    assert_eq!(c.set("after", "v"), "STORED\r\n");
    let v = stats();
    assert!(v["alpha"].get(&first).is_none(), "{v}");
    assert_eq!(v["alpha"][&second]["server_connections"], conns, "{v}");
    assert_eq!(v["alpha"][&second]["in_flight"], 0, "{v}");
}

#[test]
fn deep_pipeline_from_a_client_that_reads_late() {
    let m = [memcached(), memcached()];
    let lp = free_port();
    let dir = TempDir::new("deep");
    let conf = dir.file(
        "p.yml",
        &pool("p", lp, "", &server_lines(&[(&m[0], 1), (&m[1], 1)])),
    );
    let _p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    assert_eq!(c.set("d1", "x"), "STORED\r\n");
    // 40k requests written before a single answer is read: the proxy stops
    // reading this client past its outstanding limit and resumes as the
    // answers drain, without losing or reordering any.
    let n = 40_000;
    let mut req = Vec::new();
    for i in 0..n {
        req.extend_from_slice(if i % 2 == 0 {
            b"get d1\r\n"
        } else {
            b"get d2 d1\r\n"
        });
    }
    let writer = {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", lp)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = s.try_clone().unwrap();
        let h = std::thread::spawn(move || s.write_all(&req).map(|_| s));
        (h, r)
    };
    let (h, mut r) = writer;
    std::thread::sleep(Duration::from_millis(300));
    let one = b"VALUE d1 0 1\r\nx\r\nEND\r\n";
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let total = one.len() * n;
    while got < total {
        let k = r.read(&mut buf).expect("answers stalled");
        assert!(k > 0, "closed after {got} bytes");
        for (j, &b) in buf[..k].iter().enumerate() {
            assert_eq!(b, one[(got + j) % one.len()], "at byte {}", got + j);
        }
        got += k;
    }
    let _s = h.join().unwrap().unwrap();
}

#[test]
fn binary_clients_are_served_through_text_backends() {
    use mnemo_client::{Client, Error, Op, OpResult, Options, Protocol, ServerSpec, Stored};
    let m = [memcached(), memcached(), memcached()];
    let lp = free_port();
    let dir = TempDir::new("binary");
    let conf = dir.file(
        "p.yml",
        &pool(
            "p",
            lp,
            "",
            &server_lines(&[(&m[0], 1), (&m[1], 1), (&m[2], 1)]),
        ),
    );
    let _p = proxy(&conf, lp);
    let opts = Options {
        protocol: Protocol::Binary,
        ..Options::default()
    };
    let c = Client::new(
        vec![ServerSpec::new(&format!("127.0.0.1:{lp}")).unwrap()],
        opts,
    )
    .unwrap();
    assert_eq!(c.set(b"a", b"1", 3, 0).unwrap(), Stored::Stored);
    assert_eq!(c.add(b"a", b"1", 0, 0).unwrap(), Stored::NotStored);
    assert_eq!(c.replace(b"none", b"1", 0, 0).unwrap(), Stored::NotStored);
    assert_eq!(c.append(b"a", b"2").unwrap(), Stored::Stored);
    let it = c.gets(b"a").unwrap().unwrap();
    assert_eq!((it.value.as_slice(), it.flags), (&b"12"[..], 3));
    let cas = it.cas.unwrap();
    assert_ne!(cas, 0);
    assert_eq!(c.cas(b"a", b"x", 0, 0, cas + 1).unwrap(), Stored::Exists);
    assert_eq!(c.cas(b"a", b"x", 0, 0, cas).unwrap(), Stored::Stored);
    c.set(b"n", b"41", 0, 0).unwrap();
    assert_eq!(c.incr(b"n", 1).unwrap(), Some(42));
    assert_eq!(c.incr(b"missing", 1).unwrap(), None);
    assert!(matches!(c.incr(b"a", 1), Err(Error::Client(_))));
    assert!(c.touch(b"n", 0).unwrap());
    assert!(c.delete(b"n").unwrap());
    assert!(!c.delete(b"n").unwrap());
    // Quiet multi-get (GetKQ... Noop) over keys on three servers.
    let keys: Vec<String> = (0..30).map(|i| format!("bin{i}")).collect();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        c.set(k.as_bytes(), format!("v{i}").as_bytes(), 0, 0)
            .unwrap();
    }
    for s in &m {
        assert!(keys.iter().any(|k| direct_get(s.port, k).is_some()));
    }
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let got = c.get_multi(&refs).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.as_ref().map(|x| x.value.clone()),
            (i % 3 != 0).then(|| format!("v{i}").into_bytes())
        );
    }
    let mut p = c.pipeline();
    p.push(Op::Get(b"bin1".to_vec()));
    p.push(Op::Get(b"bin0".to_vec()));
    p.push(Op::Set {
        key: b"q".to_vec(),
        value: b"w".to_vec(),
        flags: 0,
        exptime: 0,
    });
    let r = p.run();
    assert!(matches!(&r[0], Ok(OpResult::Value(Some(it))) if it.value == b"v1"));
    assert!(matches!(r[1], Ok(OpResult::Value(None))));
    assert!(matches!(r[2], Ok(OpResult::Stored(Stored::Stored))));
    assert!(c.versions()[0].as_ref().unwrap().starts_with("mnemo-proxy"));
    assert!(c.stats(0).unwrap().iter().any(|(k, _)| k == "p:requests"));
    c.flush_all().unwrap();
    assert!(c.get(b"bin1").unwrap().is_none());

    // Raw packets: an oversized value is refused from its header and
    // swallowed; the connection goes on. A bad magic closes it.
    use mnemo_protocol::binary::{status, Opcode};
    use mnemo_protocol::client::binary;
    let mut raw = Conn::new(lp);
    let mut req = Vec::new();
    binary::encode_store(
        &mut req,
        Opcode::Set,
        b"big",
        0,
        0,
        &vec![b'x'; 2 << 20],
        0,
        7,
    );
    binary::encode_simple(&mut req, Opcode::Noop, 8);
    raw.send(&req);
    let frame = |b: &[u8]| binary::parse_packet(b).ok().flatten().map(|(_, n)| n);
    let a = raw.read_until(frame);
    let (p, _) = binary::parse_packet(&a).unwrap().unwrap();
    assert_eq!(
        (p.header.status, p.header.opaque),
        (status::VALUE_TOO_LARGE, 7)
    );
    let a = raw.read_until(frame);
    let (p, _) = binary::parse_packet(&a).unwrap().unwrap();
    assert_eq!(
        (p.header.opcode, p.header.status, p.header.opaque),
        (Opcode::Noop as u8, 0, 8)
    );
    // Key length 3, body length 1 (memcached, like the parser, waits for
    // the key's bytes before judging).
    raw.send(&[
        0x80, 0x01, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'a', b'b',
        b'c',
    ]);
    // memcached: UNKNOWN_COMMAND, then the connection is closed.
    let a = raw.read_until(frame);
    assert_eq!(
        binary::parse_packet(&a).unwrap().unwrap().0.header.status,
        status::UNKNOWN_COMMAND
    );
    assert!(
        raw.closed(),
        "a body shorter than its key must close the connection"
    );
    // A bad magic closes silently.
    let mut raw = Conn::new(lp);
    raw.send(&[
        0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let a = raw.read_until(frame);
    assert_eq!(
        binary::parse_packet(&a).unwrap().unwrap().0.header.status,
        0
    );
    raw.send(&[0x42; 24]);
    assert!(raw.closed());
}

#[test]
fn a_bad_config_on_reload_keeps_the_running_one() {
    let m = memcached();
    let lp = free_port();
    let dir = TempDir::new("badreload");
    let conf = dir.file("p.yml", &pool("p", lp, "", &server_lines(&[(&m, 1)])));
    let p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    assert_eq!(c.set("k", "1"), "STORED\r\n");
    std::fs::write(
        &conf,
        "p:\n  listen: 127.0.0.1:1\n  hash: nope\n  servers:\n   - x:1:1\n",
    )
    .unwrap();
    // SAFETY: signalling our own child by pid.
    unsafe { libc_kill(p.proc.child.id() as i32, 1) };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.set("k", "2"), "STORED\r\n");
    assert!(c.get("k").contains("\r\n2\r\n"));
    let mut c2 = Conn::new(lp);
    assert!(c2.get("k").contains("\r\n2\r\n"));
}

#[test]
fn thousands_of_client_connections() {
    let m = [memcached(), memcached()];
    let lp = free_port();
    let dir = TempDir::new("many");
    let conf = dir.file(
        "p.yml",
        &pool("p", lp, "", &server_lines(&[(&m[0], 1), (&m[1], 1)])),
    );
    let p = proxy(&conf, lp);
    {
        let mut c = Conn::new(lp);
        assert_eq!(c.set("shared", "v"), "STORED\r\n");
    }
    let n = 3000;
    let mut conns: Vec<Conn> = (0..n).map(|_| Conn::new(lp)).collect();
    for c in &mut conns {
        c.send(b"get shared\r\n");
    }
    for c in &mut conns {
        assert_eq!(c.values(), "VALUE shared 0 1\r\nv\r\nEND\r\n");
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.stats_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["p"]["client_connections"], n as u64);
}

#[test]
fn unix_socket_listener_and_unix_socket_server() {
    use std::os::unix::net::UnixStream;
    let dir = TempDir::new("unix");
    let msock = dir.0.join("mc.sock");
    let mut mc = std::process::Command::new("/usr/bin/memcached")
        .args(["-s", msock.to_str().unwrap(), "-U", "0", "-u", "root"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct KillOnDrop<'a>(&'a mut std::process::Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _k = KillOnDrop(&mut mc);
    let deadline = Instant::now() + Duration::from_secs(5);
    while UnixStream::connect(&msock).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let psock = dir.0.join("proxy.sock");
    let conf = dir.file(
        "p.yml",
        &format!(
            "p:\n  listen: {}\n  servers:\n   - {}:1\n",
            psock.display(),
            msock.display()
        ),
    );
    let stats_port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo-proxy"))
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-s",
            &stats_port.to_string(),
            "-a",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _p = KillOnDrop(&mut child);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        if let Ok(s) = UnixStream::connect(&psock) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "proxy unix socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"set u 0 0 2\r\nhi\r\nget u\r\n").unwrap();
    let want = b"STORED\r\nVALUE u 0 2\r\nhi\r\nEND\r\n";
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, want);
}

#[test]
fn memccapable_passes_through_the_proxy() {
    // libmemcached's protocol conformance checker, text and binary, run
    // against the proxy over two memcached servers.
    let m = [memcached(), memcached()];
    let lp = free_port();
    let dir = TempDir::new("capable");
    let conf = dir.file(
        "p.yml",
        &pool("p", lp, "", &server_lines(&[(&m[0], 1), (&m[1], 1)])),
    );
    let _p = proxy(&conf, lp);
    let out = Command::new("memccapable")
        .args(["-h", "127.0.0.1", "-p", &lp.to_string(), "-t", "5"])
        .output()
        .expect("memccapable (Debian package libmemcached-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("All tests passed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn random_pipelines_answer_like_a_single_memcached() {
    // The same random pipelined command stream, sent to the proxy over three
    // servers and to one memcached directly, must get the same bytes back:
    // each key lives on one server, so splitting is invisible.
    let m = [memcached(), memcached(), memcached()];
    let single = memcached();
    let lp = free_port();
    let dir = TempDir::new("random");
    let conf = dir.file(
        "p.yml",
        &pool(
            "p",
            lp,
            "",
            &server_lines(&[(&m[0], 1), (&m[1], 2), (&m[2], 3)]),
        ),
    );
    let _p = proxy(&conf, lp);
    let mut via = Conn::new(lp);
    let mut direct = Conn::new(single.port);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _batch in 0..60 {
        let mut req = String::new();
        for _ in 0..40 {
            let k = format!("r{}", next(25));
            let v = "v".repeat(next(6) as usize);
            let cmd = match next(14) {
                0 => format!("set {k} {} 0 {}\r\n{v}\r\n", next(3), v.len()),
                1 => format!("add {k} 0 0 {}\r\n{v}\r\n", v.len()),
                2 => format!("replace {k} 0 0 {}\r\n{v}\r\n", v.len()),
                3 => format!("append {k} 0 0 {}\r\n{v}\r\n", v.len()),
                4 => format!("prepend {k} 0 0 {}\r\n{v}\r\n", v.len()),
                5 => format!("incr {k} {}\r\n", next(5)),
                6 => format!("decr {k} {}\r\n", next(5)),
                7 => format!("delete {k}\r\n"),
                8 => format!("touch {k} 100\r\n"),
                9 => format!("get {k} r{} {k} r{}\r\n", next(25), next(25)),
                10 => format!("mg {k} v f k\r\n"),
                11 => format!("ms {k} {} T0 F4\r\n{v}\r\n", v.len()),
                12 => format!("md {k} q\r\nmn\r\n"),
                _ => format!("set {k} 0 0 1 noreply\r\n7\r\nincr {k} 1 noreply\r\n"),
            };
            req.push_str(&cmd);
        }
        // A closing marker both sides answer the same way.
        req.push_str("mn\r\n");
        via.send(req.as_bytes());
        direct.send(req.as_bytes());
        let until_mn = |b: &[u8]| b.windows(4).position(|w| w == b"MN\r\n").map(|i| i + 4);
        // Each batch ends with one or two MN; read through the last one.
        let count_mn = req.matches("mn\r\n").count();
        let mut a = Vec::new();
        let mut b = Vec::new();
        for _ in 0..count_mn {
            a.extend(via.read_until(until_mn));
            b.extend(direct.read_until(until_mn));
        }
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "batch differs"
        );
    }
}

#[test]
fn a_primary_back_from_an_outage_serves_nothing_it_missed() {
    let prim = memcached();
    let backup = memcached();
    let lp = free_port();
    let dir = TempDir::new("backup-return");
    let text = format!(
        "{}backup_pool:\n  servers:\n{}",
        pool(
            "main",
            lp,
            "  backup: backup_pool\n  timeout: 500\n",
            &server_lines(&[(&prim, 1)])
        ),
        server_lines(&[(&backup, 1)])
    );
    let conf = dir.file("p.yml", &text);
    let _p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    for k in ["k1", "k2", "k3", "k4"] {
        assert_eq!(c.set(k, "old"), "STORED\r\n");
    }
    // The primary goes away; the backup pool takes the writes.
    let port = prim.port;
    let mut prim = prim;
    prim.kill();
    assert_eq!(c.set("k1", "new"), "STORED\r\n");
    assert_eq!(c.cmd("delete k2\r\n"), "DELETED\r\n");
    c.send(b"set k3 0 0 3 noreply\r\nnew\r\n");
    assert_eq!(c.cmd("ms k4 3\r\nnew\r\n"), "HD\r\n");
    assert_eq!(c.get("k1"), "VALUE k1 0 3\r\nnew\r\nEND\r\n");
    // It returns holding what it had before (a partition, not a restart).
    let back = memcached_on(port);
    for k in ["k1", "k2", "k3", "k4"] {
        let mut d = Conn::new(back.port);
        assert_eq!(d.set(k, "old"), "STORED\r\n");
    }
    // Nothing it missed is served: each such key is a miss (or the new
    // value), never the old one, and the deleted key stays deleted.
    for k in ["k1", "k2", "k3", "k4"] {
        let r = c.get(k);
        assert!(
            r == "END\r\n" || r == format!("VALUE {k} 0 3\r\nnew\r\nEND\r\n"),
            "{k}: {r}"
        );
    }
    // Reads went to the backup while the deletes ran; they do finish.
    assert!(eventually_gone(back.port, "k2"));
    assert_eq!(c.set("k1", "newer"), "STORED\r\n");
    assert_eq!(c.get("k1"), "VALUE k1 0 5\r\nnewer\r\nEND\r\n");
}

/// A pool `main` on `lp` over `prim`, with `backup` as its backup pool;
/// `extra` goes into `main`'s section.
fn backed_pool(lp: u16, prim: &Proc, backup: &Proc, extra: &str) -> String {
    format!(
        "{}backup_pool:\n  servers:\n{}",
        pool(
            "main",
            lp,
            &format!("  backup: backup_pool\n  timeout: 500\n{extra}"),
            &server_lines(&[(prim, 1)])
        ),
        server_lines(&[(backup, 1)])
    )
}

#[test]
fn a_primary_back_after_a_reload_serves_nothing_it_missed() {
    let prim = memcached();
    let backup = memcached();
    let lp = free_port();
    let dir = TempDir::new("backup-reload");
    let conf = dir.file("p.yml", &backed_pool(lp, &prim, &backup, ""));
    let p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    assert_eq!(c.set("k1", "old"), "STORED\r\n");
    let port = prim.port;
    let mut prim = prim;
    prim.kill();
    assert_eq!(c.set("k1", "new"), "STORED\r\n");
    // A reload while the primary is away must not forget what it missed.
    let probe = free_port();
    let text = format!(
        "{}probe:\n  listen: 127.0.0.1:{probe}\n  servers:\n{}",
        backed_pool(lp, &prim, &backup, ""),
        server_lines(&[(&backup, 1)])
    );
    std::fs::write(&conf, text).unwrap();
    // SAFETY: signalling our own child by pid.
    unsafe { libc_kill(p.proc.child.id() as i32, 1) };
    wait_port(probe, "reloaded pool probe");
    // Every worker has applied it once the client's request runs after it.
    std::thread::sleep(Duration::from_millis(200));
    let back = memcached_on(port);
    assert_eq!(Conn::new(back.port).set("k1", "old"), "STORED\r\n");
    let r = c.get("k1");
    assert!(
        r == "END\r\n" || r == "VALUE k1 0 3\r\nnew\r\nEND\r\n",
        "{r}"
    );
}

#[test]
fn a_primary_back_with_several_connections_serves_nothing_it_missed() {
    let prim = memcached();
    let backup = memcached();
    let lp = free_port();
    let dir = TempDir::new("backup-conns");
    let conf = dir.file(
        "p.yml",
        &backed_pool(lp, &prim, &backup, "  server_connections: 2\n"),
    );
    let _p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    assert_eq!(c.set("k1", "old"), "STORED\r\n");
    let port = prim.port;
    let mut prim = prim;
    prim.kill();
    assert_eq!(c.set("k1", "new"), "STORED\r\n");
    let back = memcached_on(port);
    assert_eq!(Conn::new(back.port).set("k1", "old"), "STORED\r\n");
    // A noreply write opens one connection to the returned primary (and
    // sends no invalidation); the get then triggers the delete of k1 on the
    // other, still connecting, and with round-robin over two connections
    // would itself go out at once on the open one, passing the delete.
    c.send(b"set z 0 0 1 noreply\r\nz\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let r = c.get("k1");
    assert!(
        r == "END\r\n" || r == "VALUE k1 0 3\r\nnew\r\nEND\r\n",
        "{r}"
    );
    assert!(eventually_gone(back.port, "k1"));
}

/// Whether `key` is gone from the server on `port` within 5 s.
fn eventually_gone(port: u16, key: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if direct_get(port, key).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_noreply_write_lost_with_its_connection_is_not_served_stale() {
    let prim = memcached();
    let backup = memcached();
    let lp = free_port();
    let dir = TempDir::new("backup-noreply");
    let conf = dir.file("p.yml", &backed_pool(lp, &prim, &backup, ""));
    let _p = proxy(&conf, lp);
    let mut c = Conn::new(lp);
    assert_eq!(c.set("k3", "old"), "STORED\r\n");
    // The primary stalls: the noreply write is queued on its connection,
    // which then times out on the next request and is closed.
    let port = prim.port;
    let mut prim = prim;
    // SAFETY: signalling our own child by pid.
    unsafe { libc_kill(prim.child.id() as i32, 19) };
    // Stopped before the write: else the server may take it and answer.
    let stat = format!("/proc/{}/stat", prim.child.id());
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let st = std::fs::read_to_string(&stat).unwrap_or_default();
        if st
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('T'))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    c.send(b"set k3 0 0 3 noreply\r\nnew\r\n");
    assert_eq!(c.get("k3"), "VALUE k3 0 3\r\nnew\r\nEND\r\n");
    // It comes back without ever having read the write.
    prim.kill();
    let back = memcached_on(port);
    assert_eq!(Conn::new(back.port).set("k3", "old"), "STORED\r\n");
    let r = c.get("k3");
    assert!(
        r == "END\r\n" || r == "VALUE k3 0 3\r\nnew\r\nEND\r\n",
        "{r}"
    );
}

#[test]
fn a_primary_back_serves_nothing_another_worker_saw_it_miss() {
    let prim = memcached();
    let backup = memcached();
    let lp = free_port();
    let dir = TempDir::new("backup-workers");
    let conf = dir.file(
        "p.yml",
        &backed_pool(lp, &prim, &backup, "  server_connections: 2\n"),
    );
    let _p = proxy(&conf, lp);
    // Clients are handed to the two workers in turn: a and b are on
    // different ones, and only a's worker sees the primary fail.
    let mut a = Conn::new(lp);
    let mut b = Conn::new(lp);
    assert_eq!(a.set("k1", "old"), "STORED\r\n");
    let port = prim.port;
    let mut prim = prim;
    prim.kill();
    assert_eq!(a.set("k1", "new"), "STORED\r\n");
    let back = memcached_on(port);
    assert_eq!(Conn::new(back.port).set("k1", "old"), "STORED\r\n");
    let r = b.get("k1");
    assert!(
        r == "END\r\n" || r == "VALUE k1 0 3\r\nnew\r\nEND\r\n",
        "{r}"
    );
    // Once a's worker has invalidated, both read the primary again.
    assert_eq!(a.get("k1"), "VALUE k1 0 3\r\nnew\r\nEND\r\n");
    assert!(eventually_gone(back.port, "k1"));
}
