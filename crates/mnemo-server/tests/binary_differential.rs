//! Binary protocol, differential: the same packets go to memcached 1.6.18
//! and to mnemo, each case on its own connection to one pair of servers,
//! and the response packets must match once CAS values (compared only as
//! zero / non-zero) are masked.
//!
//! A case's answer ends at the response to a NOOP with a reserved opaque
//! sent after it, or at the close where memcached closes. Keys are unique
//! per case.
mod support;

use mnemo_protocol::binary::{Header, Opcode, REQUEST_MAGIC};
use mnemo_protocol::client::binary::parse_packet;
use std::time::Duration;

use support::{show_full, Kind, Server, Stop};

const SENTINEL_OPAQUE: u32 = 0xfeed_face;

fn pkt(out: &mut Vec<u8>, op: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) {
    Header {
        magic: REQUEST_MAGIC,
        opcode: op,
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        body_len: (extras.len() + key.len() + value.len()) as u32,
        opaque: 0x0102_0300 | op as u32,
        cas,
        ..Header::default()
    }
    .encode(out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ]
    .concat()
}

use Opcode::*;

fn op(o: Opcode) -> u8 {
    o as u8
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    closes: bool,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |name, closes, f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = Vec::new();
        f(&mut bytes);
        v.push(Case {
            name,
            bytes,
            closes,
        });
    };
    let se = store_extras(7, 0);
    add("get family with quiet pipeline", false, &|b| {
        pkt(b, op(SetQ), &se, b"g1", b"hello", 0);
        pkt(b, op(GetQ), &[], b"g1", &[], 0);
        pkt(b, op(GetKQ), &[], b"g1-miss", &[], 0);
        pkt(b, op(GetQ), &[], b"g1-miss", &[], 0);
        pkt(b, op(GetK), &[], b"g1", &[], 0);
        pkt(b, op(GetK), &[], b"g1-miss", &[], 0);
        pkt(b, op(Get), &[], b"g1-miss", &[], 0);
        pkt(b, op(Get), &[], b"g1", &[], 0);
    });
    add("stores", false, &|b| {
        pkt(b, op(Add), &se, b"s1", b"a", 0);
        pkt(b, op(Add), &se, b"s1", b"b", 0);
        pkt(b, op(AddQ), &se, b"s1", b"b", 0);
        pkt(b, op(Replace), &se, b"s1-miss", b"c", 0);
        pkt(b, op(ReplaceQ), &se, b"s1-miss", b"c", 0);
        pkt(b, op(Replace), &se, b"s1", b"d", 0);
        pkt(b, op(Append), &[], b"s1", b"e", 0);
        pkt(b, op(Prepend), &[], b"s1", b"f", 0);
        pkt(b, op(AppendQ), &[], b"s1-miss", b"g", 0);
        pkt(b, op(PrependQ), &[], b"s1", b"h", 0);
        pkt(b, op(Set), &se, b"s1", b"i", 12345);
        pkt(b, op(Set), &se, b"s1-miss", b"j", 12345);
        pkt(b, op(Get), &[], b"s1", &[], 0);
    });
    add("deletes", false, &|b| {
        pkt(b, op(Set), &se, b"d1", b"a", 0);
        pkt(b, op(Delete), &[], b"d1", &[], 999_999);
        pkt(b, op(Delete), &[], b"d1", &[], 0);
        pkt(b, op(Delete), &[], b"d1", &[], 0);
        pkt(b, op(DeleteQ), &[], b"d1", &[], 0);
        pkt(b, op(Set), &se, b"d1", b"a", 0);
        pkt(b, op(DeleteQ), &[], b"d1", &[], 0);
        pkt(b, op(Get), &[], b"d1", &[], 0);
    });
    add("increment and decrement", false, &|b| {
        pkt(
            b,
            op(Increment),
            &arith_extras(1, 5, 0xffff_ffff),
            b"n1",
            &[],
            0,
        );
        pkt(b, op(Increment), &arith_extras(1, 5, 0), b"n1", &[], 0);
        pkt(b, op(Increment), &arith_extras(10, 5, 0), b"n1", &[], 0);
        pkt(b, op(Decrement), &arith_extras(100, 5, 0), b"n1", &[], 0);
        pkt(b, op(IncrementQ), &arith_extras(3, 5, 0), b"n1", &[], 0);
        pkt(
            b,
            op(DecrementQ),
            &arith_extras(3, 5, 0xffff_ffff),
            b"n1-miss",
            &[],
            0,
        );
        pkt(
            b,
            op(Increment),
            &arith_extras(1, 0, 0),
            b"n1",
            &[],
            999_999,
        );
        pkt(b, op(Set), &se, b"n2", b"abc", 0);
        pkt(b, op(Increment), &arith_extras(1, 0, 0), b"n2", &[], 0);
        pkt(b, op(Get), &[], b"n1", &[], 0);
    });
    // A number past 2^63 followed by text holding a '-' is not a number
    // (memcached's safe_strtoull looks for '-' in the whole value): the
    // quiet forms answer the error too and never rewrite the value. A NUL
    // ends the value as a C string.
    add(
        "increment on values that are not numbers past 2^63",
        false,
        &|b| {
            let one = arith_extras(1, 0, 0);
            pkt(b, op(Set), &se, b"nn1", b"18446744073709551614 -", 0);
            pkt(b, op(Increment), &one, b"nn1", &[], 0);
            pkt(b, op(Decrement), &one, b"nn1", &[], 0);
            pkt(b, op(IncrementQ), &one, b"nn1", &[], 0);
            pkt(b, op(DecrementQ), &one, b"nn1", &[], 0);
            pkt(b, op(Get), &[], b"nn1", &[], 0);
            pkt(b, op(Set), &se, b"nn2", b"9223372036854775808 x-y", 0);
            pkt(b, op(IncrementQ), &one, b"nn2", &[], 0);
            pkt(b, op(Get), &[], b"nn2", &[], 0);
            pkt(b, op(Set), &se, b"nn3", b"12\0abc", 0);
            pkt(b, op(IncrementQ), &one, b"nn3", &[], 0);
            pkt(b, op(Get), &[], b"nn3", &[], 0);
        },
    );
    add("touch and gat", false, &|b| {
        pkt(b, op(Set), &se, b"t1", b"v", 0);
        pkt(b, op(Touch), &100u32.to_be_bytes(), b"t1", &[], 0);
        pkt(b, op(Touch), &100u32.to_be_bytes(), b"t1-miss", &[], 0);
        pkt(b, op(Gat), &100u32.to_be_bytes(), b"t1", &[], 0);
        pkt(b, op(GatK), &100u32.to_be_bytes(), b"t1", &[], 0);
        pkt(b, op(GatQ), &100u32.to_be_bytes(), b"t1", &[], 0);
        pkt(b, op(GatKQ), &100u32.to_be_bytes(), b"t1", &[], 0);
        pkt(b, op(GatQ), &100u32.to_be_bytes(), b"t1-miss", &[], 0);
        pkt(b, op(GatK), &100u32.to_be_bytes(), b"t1-miss", &[], 0);
        pkt(b, op(Gat), &0u32.to_be_bytes(), b"t1-miss", &[], 0);
    });
    add("noop version and stat groups", false, &|b| {
        pkt(b, op(Noop), &[], b"", &[], 0);
        pkt(b, op(Version), &[], b"", &[], 0);
        pkt(b, op(Stat), &[], b"nosuchgroup", &[], 0);
        pkt(b, op(Stat), &[], b"detail nope", &[], 0);
    });
    add("flush", false, &|b| {
        pkt(b, op(Set), &se, b"f1", b"v", 0);
        pkt(b, op(FlushQ), &[], b"", &[], 0);
        pkt(b, op(Get), &[], b"f1", &[], 0);
        pkt(b, op(Set), &se, b"f1", b"v", 0);
        pkt(b, op(Flush), &1000u32.to_be_bytes(), b"", &[], 0);
        pkt(b, op(Get), &[], b"f1", &[], 0);
    });
    add("unknown opcodes swallow their body", false, &|b| {
        pkt(b, 0x55, &[], b"", b"xyz", 0);
        pkt(b, op(Verbosity), &1u32.to_be_bytes(), b"", &[], 0);
        pkt(b, 0x20, &[], b"", &[], 0);
        pkt(b, 0x21, &[], b"PLAIN", b"\0u\0p", 0);
        pkt(b, op(Get), &[], b"nothing", &[], 0);
    });
    add("value too large is swallowed", false, &|b| {
        pkt(b, op(Set), &se, b"big", &vec![b'x'; 1024 * 1024 + 1], 0);
        pkt(b, op(Get), &[], b"big", &[], 0);
    });
    add("get with extras closes", true, &|b| {
        pkt(b, op(Get), &[0; 4], b"k", &[], 0);
        pkt(b, op(Noop), &[], b"", &[], 0);
    });
    add("set without key closes", true, &|b| {
        pkt(b, op(Set), &se, b"", b"v", 0);
    });
    add("incr with short extras closes", true, &|b| {
        pkt(b, op(Increment), &[0; 8], b"k", &[], 0);
    });
    add("key over 250 closes", true, &|b| {
        pkt(b, op(Get), &[], &[b'k'; 251], &[], 0);
    });
    add("key longer than body closes", true, &|b| {
        let mut p = Vec::new();
        pkt(&mut p, op(Get), &[], b"abcd", &[], 0);
        p[11] = 2;
        b.extend_from_slice(&p);
    });
    add("noop with a body closes", true, &|b| {
        pkt(b, op(Noop), &[], b"", b"zz", 0);
    });
    add(
        "bad magic after a binary request closes silently",
        true,
        &|b| {
            pkt(b, op(Noop), &[], b"", &[], 0);
            let mut p = Vec::new();
            pkt(&mut p, op(Noop), &[], b"", &[], 0);
            p[0] = 0x81;
            b.extend_from_slice(&p);
        },
    );
    add("quit answers then closes", true, &|b| {
        pkt(b, op(Quit), &[], b"", &[], 0);
    });
    // memcached's handlers for these two never send the closing packet.
    add("stat sizes_enable and sizes_disable", false, &|b| {
        pkt(b, op(Stat), &[], b"sizes_enable", &[], 0);
        pkt(b, op(Stat), &[], b"sizes_disable", &[], 0);
        pkt(b, op(Stat), &[], b"sizes", &[], 0);
    });
    add("quitq closes without an answer", true, &|b| {
        pkt(b, op(Set), &se, b"qq", b"v", 0);
        pkt(b, op(QuitQ), &[], b"", &[], 0);
    });
    v
}

fn sentinel() -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        magic: REQUEST_MAGIC,
        opcode: Noop as u8,
        opaque: SENTINEL_OPAQUE,
        ..Header::default()
    }
    .encode(&mut out);
    out
}

fn answer(server: &Server, case: &Case) -> Vec<u8> {
    let mut c = server.connect();
    c.send(&case.bytes);
    if case.closes {
        return c.read_to_eof().unwrap_or_else(|got| {
            panic!(
                "{}: {:?} did not close; got {}",
                server.kind().name(),
                case.name,
                show_full(&got)
            )
        });
    }
    c.send(&sentinel());
    let mut end = sentinel();
    end[0] = 0x81;
    match c.try_read_until(&end) {
        Ok(got) => got,
        Err((Stop::Eof, got)) => got,
        Err((Stop::Timeout, got)) => panic!(
            "{}: {:?} timed out after {}",
            server.kind().name(),
            case.name,
            show_full(&got)
        ),
    }
}

/// Splits responses into packets and masks CAS values.
fn normalize(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match parse_packet(&bytes[pos..]) {
            Ok(Some((p, used))) => {
                let h = p.header;
                let raw = &bytes[pos..pos + used];
                // The VERSION body too: mnemo reports memcached's version.
                let value = show_full(&raw[p.value.clone()]);
                out.push(format!(
                    "op={:02x} status={:x} opaque={:x} cas={} extras={} key={} value={}",
                    h.opcode,
                    h.status,
                    h.opaque,
                    if h.cas == 0 { "0" } else { "nonzero" },
                    show_full(&raw[p.extras.clone()]),
                    show_full(&raw[p.key.clone()]),
                    value
                ));
                pos += used;
            }
            _ => {
                out.push(format!("trailing bytes: {}", show_full(&bytes[pos..])));
                break;
            }
        }
    }
    out
}

#[test]
fn binary_matches_memcached() {
    let reference = Server::start(Kind::Memcached, &[]);
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let mut failures = Vec::new();
    for case in cases() {
        let want = normalize(&answer(&reference, &case));
        let got = normalize(&answer(&mnemo, &case));
        if want != got {
            failures.push(format!(
                "case {:?}\n memcached: {:#?}\n mnemo:     {:#?}",
                case.name, want, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// memcached against itself: the masks suffice and every case answers.
#[test]
fn harness_is_deterministic() {
    let a = Server::start(Kind::Memcached, &[]);
    let b = Server::start(Kind::Memcached, &[]);
    for case in cases() {
        let x = normalize(&answer(&a, &case));
        let y = normalize(&answer(&b, &case));
        assert_eq!(x, y, "case {:?}", case.name);
    }
}

/// Packets cut at awkward places (inside the header, the key, the value)
/// and delivered in separate writes get the same answers as in one write.
#[test]
fn split_packets_match_whole() {
    let se = store_extras(3, 0);
    let mut bytes = Vec::new();
    pkt(&mut bytes, op(Set), &se, b"split-key", &[b'v'; 3000], 0);
    pkt(&mut bytes, op(GetK), &[], b"split-key", &[], 0);
    pkt(&mut bytes, op(AppendQ), &[], b"split-key", b"tail", 0);
    pkt(&mut bytes, op(Get), &[], b"split-key", &[], 0);
    let mut cuts = vec![1, 10, 23, 24, 30, 35, 1000, 2999, 3040];
    let second = 24 + 8 + 9 + 3000;
    cuts.extend([second + 5, second + 24, second + 26]);
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let whole = answer(
        &mnemo,
        &Case {
            name: "whole",
            bytes: bytes.clone(),
            closes: false,
        },
    );
    let mut c = mnemo.connect();
    c.send_split(&bytes, &cuts);
    c.send(&sentinel());
    let mut end = sentinel();
    end[0] = 0x81;
    let split = c
        .try_read_until(&end)
        .unwrap_or_else(|(_, got)| panic!("split: {}", show_full(&got)));
    assert_eq!(normalize(&split), normalize(&whole));
    assert_eq!(normalize(&whole).len(), 4, "{:#?}", normalize(&whole));
}

/// Seeded random headers (request magic, any opcode, lengths that may or
/// may not agree with the body) and random meta lines never bring the
/// server down; it still answers afterwards.
#[test]
fn random_requests_never_kill_the_server() {
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..150 {
        let mut bytes = Vec::new();
        if round % 2 == 0 {
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                let key_len = (r % 300) as usize;
                let ext_len = ((r >> 16) % 24) as usize;
                let body = (key_len + ext_len) as u32 + ((r >> 24) % 40) as u32;
                let declared = if r & (1 << 40) != 0 {
                    body
                } else {
                    (r >> 32) as u32 % 400
                };
                Header {
                    magic: REQUEST_MAGIC,
                    opcode: (r >> 48) as u8 % 0x40,
                    key_len: key_len as u16,
                    extras_len: ext_len as u8,
                    body_len: declared,
                    opaque: r as u32,
                    cas: r & 0xff,
                    ..Header::default()
                }
                .encode(&mut bytes);
                bytes.extend((0..body).map(|i| (r >> (i % 56)) as u8));
            }
        } else {
            let cmds = ["mg", "ms", "md", "ma", "mn", "me"];
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                let mut line = cmds[(r % 6) as usize].as_bytes().to_vec();
                for i in 0..(r >> 8) % 24 {
                    line.push(b' ');
                    let t = next();
                    line.push(b"bcfhklOqstvuNRTIEDJMCFPLSq0Z="[(t % 29) as usize]);
                    for j in 0..(t >> 8) % (if i == 0 { 260 } else { 40 }) {
                        line.push(b"abAZ09+/=-x\x01"[((t >> (j % 48)) % 12) as usize]);
                    }
                }
                line.extend_from_slice(b"\r\n");
                bytes.extend_from_slice(&line);
                bytes.extend((0..r % 20).map(|_| b'd'));
                bytes.extend_from_slice(b"\r\n");
            }
        }
        let mut c = mnemo.connect();
        let _ = c.try_send(&bytes);
        // Let the server process it all: it closes once it reads the EOF.
        c.shutdown_write();
        c.set_read_timeout(Duration::from_millis(300));
        let _ = c.read_to_eof();
    }
    let mut c = mnemo.connect();
    assert!(c.request(b"version\r\n").starts_with(b"VERSION "));
    let mut c = mnemo.connect();
    assert_eq!(
        c.request(b"mn\r\n"),
        b"MN\r\n",
        "the server must still serve meta requests"
    );
}

/// `stat` groups: the same statuses and STAT names as memcached (values
/// differ between two processes and are not compared).
#[test]
fn stat_groups_match_memcached() {
    let groups: [&[u8]; 14] = [
        b"",
        b"settings",
        b"items",
        b"slabs",
        b"sizes",
        b"reset",
        b"resetting",
        b"detail on",
        b"detail dump",
        b"detail off",
        b"detail nope",
        b"conns",
        b"items x",
        b"bogus",
    ];
    let names = |server: &Server, group: &[u8]| -> Vec<(u16, Vec<u8>)> {
        let mut bytes = Vec::new();
        pkt(&mut bytes, op(Set), &store_extras(0, 0), b"sg", b"v", 0);
        pkt(&mut bytes, op(Stat), &[], group, &[], 0);
        let got = answer(
            server,
            &Case {
                name: "stat",
                bytes,
                closes: false,
            },
        );
        let mut out = Vec::new();
        let mut pos = 0;
        while let Ok(Some((p, used))) = parse_packet(&got[pos..]) {
            // `mnemo_version` is a line of mnemo's own build (last in
            // `stats settings`); memcached has no such line.
            let key = &got[pos..][p.key];
            if p.header.opcode == Stat as u8 && !key.starts_with(b"mnemo_") {
                out.push((p.header.status, key.to_vec()));
            }
            pos += used;
        }
        out
    };
    let reference = Server::start(Kind::Memcached, &[]);
    let mnemo = Server::start(Kind::Mnemo, &[]);
    for g in groups {
        // An engine without slab classes lists none (the engine
        // interface's rule for `stats slabs`): only the slab engine's
        // names can be memcached's.
        if g == b"slabs" && support::test_engine() != "slab" {
            continue;
        }
        let want = names(&reference, g);
        assert!(!want.is_empty());
        assert_eq!(names(&mnemo, g), want, "stat {:?}", show_full(g));
    }
}

/// Seeded random storage, retrieval, arithmetic and touch packets (quiet
/// variants and CAS values included) over three keys, one connection per
/// server: every answer must match memcached's.
#[test]
fn seeded_random_packets_match_memcached() {
    let mut seed: u64 = 0x0123_4567_89ab_cdef;
    let mut below = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let ops = [
        Get, GetQ, GetK, GetKQ, Set, SetQ, Add, AddQ, Replace, ReplaceQ, Append, AppendQ, Prepend,
        PrependQ, Delete, DeleteQ, Increment, IncrementQ, Decrement, DecrementQ, Touch, Gat, GatQ,
        GatK, GatKQ,
    ];
    let mut cases = Vec::new();
    for _ in 0..400 {
        let key: &[u8] = [&b"ka"[..], b"kb", b"kc"][below(3) as usize];
        let o = ops[below(ops.len() as u64) as usize];
        let cas = [0, 0, 0, 1, 12345][below(5) as usize];
        let mut b = Vec::new();
        match o {
            Set | SetQ | Add | AddQ | Replace | ReplaceQ => {
                let ex = store_extras([0, 7][below(2) as usize], [0, 100][below(2) as usize]);
                let v: &[u8] = [&b"5"[..], b"abc", b"", b"99"][below(4) as usize];
                pkt(&mut b, op(o), &ex, key, v, cas);
            }
            Append | AppendQ | Prepend | PrependQ => pkt(
                &mut b,
                op(o),
                &[],
                key,
                [b"1", b"x"][below(2) as usize],
                cas,
            ),
            Increment | IncrementQ | Decrement | DecrementQ => {
                let ex = arith_extras(
                    [1, 5, u64::MAX][below(3) as usize],
                    [0, 10][below(2) as usize],
                    [0, u32::MAX, 100][below(3) as usize],
                );
                pkt(&mut b, op(o), &ex, key, &[], cas);
            }
            Touch | Gat | GatQ | GatK | GatKQ => {
                let ex = [0u32, 100][below(2) as usize].to_be_bytes();
                pkt(&mut b, op(o), &ex, key, &[], 0);
            }
            Delete | DeleteQ => pkt(&mut b, op(o), &[], key, &[], cas),
            _ => pkt(&mut b, op(o), &[], key, &[], 0),
        }
        cases.push(b);
    }
    let reference = Server::start(Kind::Memcached, &[]);
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let (mut a, mut m) = (reference.connect(), mnemo.connect());
    let mut end = sentinel();
    end[0] = 0x81;
    for bytes in &cases {
        let ask = |c: &mut support::Client| {
            c.send(bytes);
            c.send(&sentinel());
            let got = c
                .try_read_until(&end)
                .unwrap_or_else(|(_, got)| panic!("{}: {}", show_full(bytes), show_full(&got)));
            normalize(&got)
        };
        assert_eq!(ask(&mut m), ask(&mut a), "request {}", show_full(bytes));
    }
}

/// Fills a `-M` server with binary sets of `size`-byte values until one
/// is refused, and returns that refusal.
fn refusal(server: &Server, size: usize) -> Vec<String> {
    let mut c = server.connect();
    for i in 0..10_000 {
        let mut req = Vec::new();
        let key = format!("oom-{i}");
        pkt(
            &mut req,
            op(Set),
            &store_extras(0, 0),
            key.as_bytes(),
            &vec![b'x'; size],
            0,
        );
        c.send(&req);
        let mut got = c.read_exact(24);
        let body = u32::from_be_bytes([got[8], got[9], got[10], got[11]]) as usize;
        got.extend(c.read_exact(body));
        if got[6..8] != [0, 0] {
            return normalize(&got);
        }
    }
    panic!("{}: no set of {size} bytes refused", server.kind().name())
}

/// A set refused for memory is ENOMEM with memcached's text however the
/// value was read (issue #15: mnemo answered one in the read buffer
/// NOT_STORED, one read into a reservation with the wrong text; found by
/// tests/stress.rs).
#[test]
fn out_of_memory_matches_memcached() {
    let args = ["-M", "-m", "2"];
    for size in [1000, 40_000] {
        let want = refusal(&Server::start(Kind::Memcached, &args), size);
        let got = refusal(&Server::start(Kind::Mnemo, &args), size);
        assert_eq!(got, want, "values of {size} bytes");
    }
}
