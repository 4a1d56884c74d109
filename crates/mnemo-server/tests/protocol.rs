//! The text protocol end to end against the real `mnemo` binary: every
//! command, its errors and noreply forms, expiry, pipelining and requests
//! split across packets.

mod support;

use std::time::Duration;
use support::{show, Server};

/// The server under test. `MNEMO_TEST_REFERENCE=1` runs the same
/// expectations against memcached, to check the expectations themselves.
fn start(args: &[&str]) -> Server {
    if std::env::var_os("MNEMO_TEST_REFERENCE").is_some() {
        Server::memcached(args)
    } else {
        Server::mnemo(args)
    }
}

fn server() -> Server {
    start(&[])
}

/// Sends `req` and returns exactly `expect.len()` bytes of answer.
#[track_caller]
fn check(c: &mut support::Client, req: &[u8], expect: &[u8]) {
    c.send(req);
    let got = c.read_exact(expect.len());
    assert_eq!(show(&got), show(expect), "request {}", show(req));
}

#[test]
fn storage_commands() {
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"set a 5 0 3\r\nabc\r\n", b"STORED\r\n");
    check(&mut c, b"get a\r\n", b"VALUE a 5 3\r\nabc\r\nEND\r\n");
    check(&mut c, b"add a 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
    check(&mut c, b"add b 0 0 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"replace zz 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
    check(&mut c, b"replace b 7 0 2\r\nyy\r\n", b"STORED\r\n");
    check(&mut c, b"append a 0 0 2\r\nde\r\n", b"STORED\r\n");
    check(&mut c, b"prepend a 0 0 2\r\nxy\r\n", b"STORED\r\n");
    check(&mut c, b"append nope 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
    // append/prepend keep the original flags.
    check(
        &mut c,
        b"get a b\r\n",
        b"VALUE a 5 7\r\nxyabcde\r\nVALUE b 7 2\r\nyy\r\nEND\r\n",
    );
    // Empty values and binary data.
    check(&mut c, b"set e 0 0 0\r\n\r\n", b"STORED\r\n");
    check(&mut c, b"get e\r\n", b"VALUE e 0 0\r\n\r\nEND\r\n");
    check(&mut c, b"set bin 0 0 4\r\n\r\n\x00\n\r\n", b"STORED\r\n");
    check(
        &mut c,
        b"get bin\r\n",
        b"VALUE bin 0 4\r\n\r\n\x00\n\r\nEND\r\n",
    );
    // 32-bit flags round-trip.
    check(&mut c, b"set f 4294967295 0 1\r\nx\r\n", b"STORED\r\n");
    check(
        &mut c,
        b"get f\r\n",
        b"VALUE f 4294967295 1\r\nx\r\nEND\r\n",
    );
}

/// Reads a `gets` reply for one key and returns its CAS unique.
fn cas_of(c: &mut support::Client, key: &str) -> u64 {
    c.send(format!("gets {key}\r\n").as_bytes());
    let line = String::from_utf8(c.read_line()).expect("ascii header");
    let cas = line
        .trim_end()
        .rsplit(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no cas in {line:?}"));
    c.read_until(b"END\r\n");
    cas
}

#[test]
fn cas_and_gets() {
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"cas k 0 0 1 1\r\nx\r\n", b"NOT_FOUND\r\n");
    check(&mut c, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n");
    let cas = cas_of(&mut c, "k");
    check(
        &mut c,
        format!("cas k 0 0 1 {}\r\ny\r\n", cas + 1000).as_bytes(),
        b"EXISTS\r\n",
    );
    check(
        &mut c,
        format!("cas k 0 0 1 {cas}\r\ny\r\n").as_bytes(),
        b"STORED\r\n",
    );
    check(
        &mut c,
        format!("cas k 0 0 1 {cas}\r\nz\r\n").as_bytes(),
        b"EXISTS\r\n",
    );
    let cas2 = cas_of(&mut c, "k");
    assert_ne!(cas, cas2, "a store must change the CAS unique");
    check(
        &mut c,
        format!("cas k 0 0 1 {cas2} noreply\r\nw\r\nget k\r\n").as_bytes(),
        b"VALUE k 0 1\r\nw\r\nEND\r\n",
    );
}

#[test]
fn retrieval_touch_and_delete() {
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"get nothing\r\n", b"END\r\n");
    check(
        &mut c,
        b"set a 1 0 1\r\n1\r\nset b 2 0 1\r\n2\r\n",
        b"STORED\r\nSTORED\r\n",
    );
    check(
        &mut c,
        b"get a missing b a\r\n",
        b"VALUE a 1 1\r\n1\r\nVALUE b 2 1\r\n2\r\nVALUE a 1 1\r\n1\r\nEND\r\n",
    );
    // Many keys: more than memcached's 24-token window.
    let keys: Vec<String> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                "a".into()
            } else {
                format!("m{i}")
            }
        })
        .collect();
    c.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
    let got = c.read_until(b"END\r\n");
    assert_eq!(got.len(), 50 * b"VALUE a 1 1\r\n1\r\n".len() + 5);
    check(&mut c, b"touch a 100\r\n", b"TOUCHED\r\n");
    check(&mut c, b"touch zz 100\r\n", b"NOT_FOUND\r\n");
    check(&mut c, b"touch a 100 noreply\r\n", b"");
    check(&mut c, b"gat 100 a zz\r\n", b"VALUE a 1 1\r\n1\r\nEND\r\n");
    c.send(b"gats 100 b\r\n");
    let line = c.read_line();
    assert!(line.starts_with(b"VALUE b 2 1 "), "{}", show(&line));
    c.read_until(b"END\r\n");
    check(&mut c, b"delete a\r\n", b"DELETED\r\n");
    check(&mut c, b"delete a\r\n", b"NOT_FOUND\r\n");
    check(&mut c, b"delete b 0\r\n", b"DELETED\r\n");
    check(&mut c, b"delete b noreply\r\nget b\r\n", b"END\r\n");
    check(
        &mut c,
        b"delete b 5\r\n",
        b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
    );
}

#[test]
fn incr_decr_rules() {
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"incr n 1\r\n", b"NOT_FOUND\r\n");
    check(&mut c, b"set n 0 0 2\r\n10\r\n", b"STORED\r\n");
    check(&mut c, b"incr n 5\r\n", b"15\r\n");
    check(&mut c, b"decr n 100\r\n", b"0\r\n");
    check(
        &mut c,
        b"set n 0 0 20\r\n18446744073709551615\r\n",
        b"STORED\r\n",
    );
    check(&mut c, b"incr n 2\r\n", b"1\r\n");
    // Shorter results are written in place, padded with spaces.
    check(&mut c, b"set n 3 0 3\r\n100\r\n", b"STORED\r\n");
    check(&mut c, b"decr n 1\r\n", b"99\r\n");
    check(&mut c, b"get n\r\n", b"VALUE n 3 3\r\n99 \r\nEND\r\n");
    check(&mut c, b"incr n 1\r\n", b"100\r\n");
    check(
        &mut c,
        b"incr n 900\r\nget n\r\n",
        b"1000\r\nVALUE n 3 4\r\n1000\r\nEND\r\n",
    );
    check(&mut c, b"set t 0 0 3\r\nabc\r\n", b"STORED\r\n");
    check(
        &mut c,
        b"incr t 1\r\n",
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
    );
    check(
        &mut c,
        b"incr n abc\r\n",
        b"CLIENT_ERROR invalid numeric delta argument\r\n",
    );
    check(
        &mut c,
        b"incr n -1\r\n",
        b"CLIENT_ERROR invalid numeric delta argument\r\n",
    );
    check(
        &mut c,
        b"incr n 1 noreply\r\nget n\r\n",
        b"VALUE n 3 4\r\n1001\r\nEND\r\n",
    );
}

#[test]
fn expiry_rules() {
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"set neg 0 -1 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"get neg\r\n", b"END\r\n");
    check(&mut c, b"set short 0 1 1\r\nx\r\n", b"STORED\r\n");
    // Absolute unix times: one in the past expires at once, one far in the
    // future does not.
    check(&mut c, b"set past 0 1000000000 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"set future 0 2000000000 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"set forever 0 0 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"set touched 0 1 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"touch touched 100\r\n", b"TOUCHED\r\n");
    check(&mut c, b"get past\r\n", b"END\r\n");
    check(&mut c, b"get short\r\n", b"VALUE short 0 1\r\nx\r\nEND\r\n");
    std::thread::sleep(Duration::from_millis(2500));
    check(&mut c, b"get short\r\n", b"END\r\n");
    check(
        &mut c,
        b"get future forever touched\r\n",
        b"VALUE future 0 1\r\nx\r\nVALUE forever 0 1\r\nx\r\nVALUE touched 0 1\r\nx\r\nEND\r\n",
    );
    // gat with a negative time expires the item after returning it.
    check(
        &mut c,
        b"gat -1 forever\r\n",
        b"VALUE forever 0 1\r\nx\r\nEND\r\n",
    );
    check(&mut c, b"get forever\r\n", b"END\r\n");
}

#[test]
fn flush_all_forms() {
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"flush_all\r\n", b"OK\r\n");
    check(&mut c, b"get a\r\n", b"END\r\n");
    check(&mut c, b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"flush_all noreply\r\nget a\r\n", b"END\r\n");
    check(
        &mut c,
        b"flush_all x\r\n",
        b"CLIENT_ERROR invalid exptime argument\r\n",
    );
    check(&mut c, b"flush_all 1 2 3\r\n", b"ERROR\r\n");
    check(&mut c, b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"flush_all 2\r\n", b"OK\r\n");
    check(&mut c, b"get a\r\n", b"VALUE a 0 1\r\nx\r\nEND\r\n");
    std::thread::sleep(Duration::from_millis(3500));
    check(&mut c, b"get a\r\n", b"END\r\n");
}

#[test]
fn errors_keep_or_close_like_memcached() {
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"bogus\r\n", b"ERROR\r\n");
    check(&mut c, b"\r\n", b"ERROR\r\n");
    check(&mut c, b"get\r\n", b"ERROR\r\n");
    check(&mut c, b"set a 0 0\r\n", b"ERROR\r\n");
    check(
        &mut c,
        b"set a x 0 1\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
    );
    // noreply silences errors of a command that reached its parser...
    check(&mut c, b"set a x 0 1 noreply\r\nversion\r\n", b"VERSION ");
    c.read_line();
    // ...and the data line that follows is then a command of its own.
    check(
        &mut c,
        b"set a 0 0 -1\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
    );
    let long = "k".repeat(251);
    check(
        &mut c,
        format!("set {long} 0 0 1\r\nx\r\n").as_bytes(),
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
    );
    check(
        &mut c,
        format!("get a {long}\r\n").as_bytes(),
        b"CLIENT_ERROR bad command line format\r\n",
    );
    check(
        &mut c,
        b"set a 0 0 1\r\nxyz\r\n",
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
    );
    // A get with an over-long key discards the replies memcached has not
    // sent yet: those after the last get of the batch.
    check(
        &mut c,
        format!("bogus\r\nget nokey\r\nbogus\r\nget nokey {long}\r\n").as_bytes(),
        b"ERROR\r\nEND\r\nCLIENT_ERROR bad command line format\r\n",
    );
    check(
        &mut c,
        b"gat x a\r\n",
        b"CLIENT_ERROR invalid exptime argument\r\n",
    );
    check(
        &mut c,
        b"touch a x\r\n",
        b"CLIENT_ERROR invalid exptime argument\r\n",
    );
    check(&mut c, b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n");
    check(&mut c, b"verbosity\r\n", b"ERROR\r\n");
    check(&mut c, b"verbosity 1\r\nverbosity 0 noreply\r\n", b"OK\r\n");
    // Too large: the reply comes, the declared bytes are swallowed, and the
    // connection carries on. A failed set also drops the value it was meant
    // to replace.
    check(&mut c, b"set big 0 0 1\r\nx\r\n", b"STORED\r\n");
    let big = vec![b'v'; 2 * 1024 * 1024];
    let mut req = b"set big 0 0 2097152\r\n".to_vec();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\nget big\r\n");
    check(
        &mut c,
        &req,
        b"SERVER_ERROR object too large for cache\r\nEND\r\n",
    );
    // An HTTP request line closes the connection without a reply.
    c.send(b"GET / HTTP/1.1\r\n");
    assert_eq!(c.read_to_eof().map(|b| show(&b)), Ok(String::new()));

    // No newline within 2048 bytes (and not a get): closed.
    let mut c = s.connect();
    c.send(&vec![b'x'; 3000]);
    assert!(c.is_closed());
    // quit closes after answering what came before it.
    let mut c = s.connect();
    c.send(b"set q 0 0 1\r\nx\r\nquit\r\nget q\r\n");
    assert_eq!(c.read_to_eof().map(|b| show(&b)), Ok(show(b"STORED\r\n")));
}

#[test]
fn keys_with_control_characters_follow_memcached() {
    // memcached's text parser splits on spaces only; a tab is part of the key.
    let s = server();
    let mut c = s.connect();
    check(&mut c, b"set a\tb 0 0 1\r\nx\r\n", b"STORED\r\n");
    check(&mut c, b"get a\tb\r\n", b"VALUE a\tb 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn pipelined_burst_of_ten_thousand() {
    let s = server();
    let mut c = s.connect();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..10_000 {
        match i % 3 {
            0 => {
                req.extend_from_slice(
                    format!("set k{i} {i} 0 {}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
                );
                want.extend_from_slice(b"STORED\r\n");
            }
            1 => {
                let k = i - 1;
                req.extend_from_slice(format!("get k{k}\r\n").as_bytes());
                want.extend_from_slice(
                    format!("VALUE k{k} {k} {}\r\n{k}\r\nEND\r\n", k.to_string().len()).as_bytes(),
                );
            }
            _ => {
                req.extend_from_slice(format!("incr k{} 1\r\n", i - 2).as_bytes());
                want.extend_from_slice(format!("{}\r\n", i - 1).as_bytes());
            }
        }
    }
    // Write from another thread so neither side can block the other.
    let mut writer = c.stream().try_clone().expect("clone stream");
    let t = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&req).expect("write burst");
    });
    let got = c.read_exact(want.len());
    t.join().expect("writer");
    assert!(got == want, "answers differ from the expected sequence");
}

#[test]
fn requests_split_across_packets() {
    let s = server();
    let mut c = s.connect();
    let req = b"set split 3 0 5\r\nhello\r\nget split\r\ndelete split\r\n";
    // Every byte its own packet, with small pauses so they arrive apart.
    let cuts: Vec<usize> = (1..req.len()).collect();
    c.send_split(req, &cuts);
    let want = b"STORED\r\nVALUE split 3 5\r\nhello\r\nEND\r\nDELETED\r\n";
    assert_eq!(show(&c.read_exact(want.len())), show(want));
    // A value arriving in pieces larger than the read buffer.
    let value = vec![b'z'; 200_000];
    let mut req = b"set large 0 0 200000\r\n".to_vec();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    c.send_split(&req, &[10, 30_000, 100_000, 199_999]);
    check(&mut c, b"", b"STORED\r\n");
    c.send(b"get large\r\n");
    assert_eq!(c.read_line(), b"VALUE large 0 200000\r\n");
    assert!(c.read_exact(200_002)[..200_000] == value[..]);
    assert_eq!(c.read_line(), b"END\r\n");
}

#[test]
fn stats_general_and_settings() {
    let s = start(&[
        "-m",
        "32",
        "-c",
        "100",
        "-t",
        "2",
        "-R",
        "5",
        "-o",
        "idle_timeout=600",
    ]);
    let mut c = s.connect();
    check(
        &mut c,
        b"set a 0 0 1\r\nx\r\nget a b\r\ntouch a 0\r\n",
        b"STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nTOUCHED\r\n",
    );
    // The harness's readiness probe is counted until its worker has seen
    // the close, which a loaded machine can delay: wait for it, bounded.
    let stat_of = |stats: &str, name: &str| -> String {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")).map(str::to_string))
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stats = loop {
        let stats = String::from_utf8(c.request(b"stats\r\n")).expect("ascii");
        if stat_of(&stats, "curr_connections") == "1" || std::time::Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let get = |name: &str| stat_of(&stats, name);
    assert_eq!(get("cmd_get"), "2");
    assert_eq!(get("get_hits"), "1");
    assert_eq!(get("get_misses"), "1");
    assert_eq!(get("cmd_set"), "1");
    assert_eq!(get("cmd_touch"), "1");
    assert_eq!(get("curr_items"), "1");
    assert_eq!(get("threads"), "2");
    assert_eq!(get("max_connections"), "100");
    assert_eq!(get("limit_maxbytes"), (32 << 20).to_string());
    assert_eq!(get("curr_connections"), "1");
    assert!(get("bytes_read").parse::<u64>().unwrap_or(0) > 0);
    let settings = String::from_utf8(c.request(b"stats settings\r\n")).expect("ascii");
    for want in [
        "STAT maxbytes 33554432",
        "STAT maxconns 100",
        "STAT num_threads 2",
        "STAT reqs_per_event 5",
        "STAT idle_timeout 600",
        "STAT item_size_max 1048576",
    ] {
        assert!(settings.contains(want), "{want} missing from {settings}");
    }
    // mnemo's own release, since `version` reports memcached's; the last
    // line before END, where a memcached build adds its build-dependent ones.
    let own = format!(
        "STAT mnemo_version {}\r\nEND\r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(settings.ends_with(&own), "{own:?} not last in {settings}");
    assert_eq!(c.request(b"stats reset\r\n"), b"RESET\r\n");
    check(&mut c, b"stats detail on\r\n", b"OK\r\n");
    check(
        &mut c,
        b"set p:1 0 0 1\r\nx\r\nget p:1 p:2\r\n",
        b"STORED\r\nVALUE p:1 0 1\r\nx\r\nEND\r\n",
    );
    check(
        &mut c,
        b"stats detail dump\r\n",
        b"PREFIX p get 2 hit 1 set 1 del 0\r\nEND\r\n",
    );
    check(
        &mut c,
        b"stats detail\r\n",
        b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
    );
    check(&mut c, b"stats nonsense\r\n", b"ERROR\r\n");
    let items = String::from_utf8(c.request(b"stats items\r\n")).expect("ascii");
    assert!(items.contains(":number 2\r\n"), "{items}");
    let slabs = String::from_utf8(c.request(b"stats slabs\r\n")).expect("ascii");
    assert!(slabs.contains("STAT active_slabs"), "{slabs}");
    let conns = String::from_utf8(c.request(b"stats conns\r\n")).expect("ascii");
    assert!(conns.contains(":state conn_listening"), "{conns}");
    assert!(conns.contains(":state conn_parse_cmd"), "{conns}");
}

#[test]
fn admin_commands() {
    let s = server();
    let mut c = s.connect();
    check(
        &mut c,
        b"cache_memlimit 4\r\n",
        b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
    );
    check(&mut c, b"cache_memlimit 100\r\n", b"OK\r\n");
    check(&mut c, b"cache_memlimit abc\r\n", b"ERROR\r\n");
    check(&mut c, b"slabs automove 2\r\n", b"OK\r\n");
    check(&mut c, b"slabs automove 9\r\n", b"ERROR\r\n");
    check(
        &mut c,
        b"slabs reassign 1 1\r\n",
        b"SAME src and dst class are identical\r\n",
    );
    check(
        &mut c,
        b"slabs reassign x 1\r\n",
        b"CLIENT_ERROR bad command line format\r\n",
    );
    check(
        &mut c,
        b"lru_crawler sleep 2000000\r\n",
        b"CLIENT_ERROR sleep must be one second or less\r\n",
    );
    check(&mut c, b"lru_crawler tocrawl 10\r\n", b"OK\r\n");
    check(&mut c, b"lru_crawler disable\r\n", b"OK\r\n");
    check(
        &mut c,
        b"lru_crawler crawl all\r\n",
        b"CLIENT_ERROR lru crawler disabled\r\n",
    );
    check(&mut c, b"lru_crawler enable\r\n", b"OK\r\n");
    check(&mut c, b"lru_crawler bogus\r\n", b"ERROR\r\n");
    check(&mut c, b"version\r\n", b"VERSION 1.6.18");
}

#[test]
fn huge_multiget_output_is_streamed_in_order() {
    // 40 copies of a 512 KB value: 20 MB of output from one request line,
    // produced in bounded pieces as the client reads.
    let s = server();
    let mut c = s.connect();
    let value = vec![b'q'; 512 * 1024];
    let mut req = format!("set big 9 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    check(&mut c, &req, b"STORED\r\n");
    let keys = vec!["big"; 40].join(" ");
    c.send(format!("get {keys} nothere\r\nversion\r\n").as_bytes());
    for _ in 0..40 {
        assert_eq!(
            c.read_line(),
            format!("VALUE big 9 {}\r\n", value.len()).into_bytes()
        );
        let data = c.read_exact(value.len() + 2);
        assert!(data[..value.len()] == value[..] && data.ends_with(b"\r\n"));
    }
    assert_eq!(c.read_line(), b"END\r\n");
    assert!(c.read_line().starts_with(b"VERSION "));
}

#[test]
fn largest_value_is_memcacheds() {
    // memcached's limit counts its 48-byte header, the CAS, key + NUL,
    // non-zero flags and the value's "\r\n" against -I (1 MB here).
    let s = server();
    let mut c = s.connect();
    for (flags, len, want) in [
        (0u32, 1_048_516usize, &b"STORED\r\n"[..]),
        (
            0,
            1_048_517,
            &b"SERVER_ERROR object too large for cache\r\n"[..],
        ),
        (1, 1_048_512, &b"STORED\r\n"[..]),
        (
            1,
            1_048_513,
            &b"SERVER_ERROR object too large for cache\r\n"[..],
        ),
    ] {
        let mut req = format!("set k {flags} 0 {len}\r\n").into_bytes();
        req.extend(std::iter::repeat_n(b'v', len));
        req.extend_from_slice(b"\r\n");
        check(&mut c, &req, want);
    }
}
