//! Meta protocol, differential: the same request bytes go to memcached
//! 1.6.18 and to mnemo, each case on its own connection to one pair of
//! servers, and the answers must match byte for byte once the values that
//! legitimately differ are masked (CAS numbers, remaining TTLs that may
//! straddle a clock tick, and the numbers of a `me` line).
//!
//! A case's answer ends at the `MN` of an `mn` sent after it (quiet
//! pipelines close that way too), or at the close for the cases where
//! memcached closes. Keys are unique per case, so cases do not interact.
mod support;

use support::{show_full, Kind, Server, Stop};

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
}

fn case(name: &'static str, bytes: &[u8]) -> Case {
    Case {
        name,
        bytes: bytes.to_vec(),
    }
}

fn cases() -> Vec<Case> {
    let long_key = [b"mg ".to_vec(), vec![b'a'; 251], b" v\r\n".to_vec()].concat();
    let ok_key = [b"ms ".to_vec(), vec![b'b'; 250], b" 1 k\r\nx\r\n".to_vec()].concat();
    vec![
        case(
            "set and get with reply flags",
            b"ms mk1 2 F5 T0\r\nhi\r\nmg mk1 v f s k\r\nmg mk1\r\nmg mk1 s v t\r\nmg mk1-missing v\r\nmg mk1-missing k O77\r\n",
        ),
        case(
            "quiet pipeline closed by mn",
            b"ms q1 1 q\r\na\r\nmg q1 v q\r\nmg q2 v q k\r\nmd q2 q\r\nmd q1 q\r\nma q3 q\r\nms q4 1 q MR\r\nz\r\n",
        ),
        case(
            "opaque and key echoes",
            b"mg ok-miss O123 k\r\nms ok1 1 O9 k\r\nx\r\nmd ok1 O5 k\r\nmd ok1 O6 k\r\nma ok2 O7 k\r\n",
        ),
        case(
            "parse errors",
            b"mg\r\nmg k1 v v\r\nmg k1 zz\r\nmg k1 Nx\r\nmg k1 N\r\nmg k1 Mxx\r\nmg k1 Nx Mxx\r\nmd k1 v v\r\nma k1 MX\r\nma k1 Dx\r\nma k1 Jx\r\nmx k1\r\nmd\r\nma\r\n",
        ),
        case(
            "ms errors swallow the data",
            b"ms e1\r\nms e1 x\r\nms e1 -1\r\nms e1 2 v v\r\nab\r\nms e1 2 MZ\r\nab\r\nms e1 2 Fx\r\nab\r\nms e1 2 O123456789012345678901234567890123\r\nab\r\nmg e1 v\r\n",
        ),
        case(
            "too many flags",
            b"mg k a b c d e f g h i j k l m n o p q r s\r\nmd k a b c d e f g h i j k l m n o p q r s\r\nms k 1 a b c d e f g h i j k l m n o p q r\r\nx\r\n",
        ),
        case("key too long", &long_key),
        case("key of 250 bytes", &ok_key),
        case(
            "a key stored with b is echoed base64 even when asked without",
            b"ms YmluMQ== 1 b\r\nx\r\nmg bin1 k v\r\nme bin1\r\nmg YmluMg== b N30 k\r\nmg bin2 k\r\n",
        ),
        case(
            "base64 keys",
            b"ms Zm9v 3 b\r\nbar\r\nmg Zm9v b v k\r\nmg foo v\r\nmg Zm9 b\r\nmg Zm9vYg== b k\r\nmd Zm9v b q\r\nmg foo v\r\n",
        ),
        case(
            "arithmetic",
            b"ma cnt\r\nma cnt N0 J10 v\r\nma cnt v\r\nma cnt MD D5 v\r\nma cnt M- D100 v\r\nma cnt MI D18446744073709551615 v\r\nms txt 3\r\nabc\r\nma txt\r\nma cnt q\r\nma nothere q\r\nma cnt t v\r\nma cnt T0 t\r\n",
        ),
        // A number past 2^63 followed by text holding a '-' is not a number
        // (memcached's safe_strtoull looks for '-' in the whole string), in
        // the stored value and in a D delta alike; a NUL ends the string.
        case(
            "arithmetic on values that are not numbers past 2^63",
            b"ms man1 22\r\n18446744073709551614 -\r\nma man1\r\nma man1 MD v\r\nma man1 q\r\nmg man1 v\r\nms man2 6\r\n12\0abc\r\nma man2 v\r\nmg man2 v\r\nma man2 D18446744073709551615\t- v\r\nma man2 D9223372036854775807\t- v\r\nmg man2 v\r\n",
        ),
        case(
            "compare cas and invalidate",
            b"ms c1 1\r\na\r\nms c1 1 C999999\r\nb\r\nmd c1 C999999\r\nma c1 C999999\r\nmd c1 I T30\r\nmg c1 v\r\nmg c1 v\r\nms c1 1 I C999999\r\nc\r\nmd c1\r\nmg c1 v\r\n",
        ),
        case(
            "ms modes",
            b"ms m1 1 ME\r\na\r\nms m1 1 ME\r\nb\r\nms m1 1 MA\r\nc\r\nms m1 1 MP\r\nd\r\nms m2 1 MR\r\ne\r\nms m2 1 MA\r\nf\r\nms m2 1 MP\r\nf\r\nms m1 1 MS\r\ng\r\nms m1 2 MR\r\nhh\r\nmg m1 v\r\n",
        ),
        case(
            "vivify and recache tokens",
            b"mg v1 N30 v\r\nmg v1 N30 v\r\nms v1 1 T100\r\nz\r\nmg v1 R200 v\r\nmg v1 R200 v\r\nmg v1 R10 v\r\nms v2 1 T0\r\ny\r\nmg v2 R200 v\r\n",
        ),
        case(
            "hit and last access",
            b"ms h1 1\r\na\r\nmg h1 h l\r\nmg h1 h l u\r\nmg h1 h\r\n",
        ),
        case("bad data chunk", b"ms bd 2\r\nabcd\r\n"),
        case(
            "ignored and touch flags",
            b"ms t1 1 T0\r\na\r\nmg t1 P L u v\r\nmg t1 T-1 v\r\nmg t1 v\r\n",
        ),
        case(
            "opaque too long in mg after the fetch",
            b"ms ol 1\r\na\r\nmg ol O123456789012345678901234567890123 v\r\nmg ol-miss O123456789012345678901234567890123 v\r\n",
        ),
        case("noop with arguments", b"mn extra args\r\n"),
        case("debug", b"me\r\nme dbg-miss\r\nme Zm9 b\r\n"),
        case(
            "debug lines of items",
            b"ms dbg1 5 T100 F9\r\nhello\r\nme dbg1\r\nmg dbg1 v\r\nme dbg1\r\nms ZGJn 1 b\r\nx\r\nme ZGJn b\r\nme dbg1 b\r\n",
        ),
    ]
}

/// Masks what two correct servers may answer differently.
fn normalize(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes).into_owned();
    let mut out = Vec::new();
    for line in s.split("\r\n") {
        if line.starts_with("ME ") {
            // la and cas depend on timing and history; exp may straddle a
            // clock tick.
            let words: Vec<String> = line
                .split(' ')
                .map(|w| {
                    if w.starts_with("la=") || w.starts_with("cas=") {
                        format!("{}=<masked>", &w[..w.find('=').unwrap_or(0)])
                    } else if let Some(n) =
                        w.strip_prefix("exp=-").and_then(|n| n.parse::<u64>().ok())
                    {
                        format!("exp~-{}", n.div_ceil(2))
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            out.push(words.join(" "));
            continue;
        }
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                let digits =
                    |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
                if let Some(rest) = w.strip_prefix('c') {
                    if digits(rest) {
                        return "c<cas>".to_string();
                    }
                }
                if let Some(rest) = w.strip_prefix('t') {
                    if digits(rest) {
                        // A TTL read one tick apart may differ by one.
                        let n: u64 = rest.parse().unwrap_or(0);
                        return format!("t~{}", n.div_ceil(2));
                    }
                }
                w.to_string()
            })
            .collect();
        out.push(words.join(" "));
    }
    out.join("\r\n")
}

fn answer(server: &Server, bytes: &[u8]) -> Vec<u8> {
    let mut c = server.connect();
    c.send(bytes);
    c.send(b"mn\r\n");
    match c.try_read_until(b"MN\r\n") {
        Ok(got) => got,
        Err((Stop::Eof, got)) => got,
        Err((Stop::Timeout, got)) => panic!(
            "{}: timed out after {}",
            server.kind().name(),
            show_full(&got)
        ),
    }
}

#[test]
fn meta_matches_memcached() {
    let reference = Server::start(Kind::Memcached, &[]);
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let mut failures = Vec::new();
    for case in cases() {
        let want = answer(&reference, &case.bytes);
        let got = answer(&mnemo, &case.bytes);
        if normalize(&want) != normalize(&got) {
            failures.push(format!(
                "case {:?}\n request: {}\n memcached: {}\n mnemo:     {}",
                case.name,
                show_full(&case.bytes),
                show_full(&want),
                show_full(&got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The harness itself: memcached against a second memcached must agree, so
/// the masks are enough and a mnemo failure is a real difference.
#[test]
fn harness_is_deterministic() {
    let a = Server::start(Kind::Memcached, &[]);
    let b = Server::start(Kind::Memcached, &[]);
    for case in cases() {
        let x = answer(&a, &case.bytes);
        let y = answer(&b, &case.bytes);
        assert_eq!(normalize(&x), normalize(&y), "case {:?}", case.name);
        assert!(!x.is_empty(), "case {:?} got no answer", case.name);
    }
}

/// Counters memcached moves in corners: an `md` refused on its CAS counts
/// a delete miss, a bad data chunk (meta or text) still counts a set, and
/// an `mg N` vivify does not count one.
#[test]
fn corner_counters_match_memcached() {
    let stat = |server: &Server, name: &str| -> u64 {
        let mut c = server.connect();
        c.send(b"stats\r\n");
        let text = String::from_utf8(c.read_until(b"END\r\n")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no {name}", server.kind().name()))
    };
    let reference = Server::start(Kind::Memcached, &[]);
    let mnemo = Server::start(Kind::Mnemo, &[]);
    for s in [&reference, &mnemo] {
        answer(
            s,
            b"ms dm1 1\r\nx\r\nmd dm1 C1\r\nms dm2 2\r\nxyz\r\nmg dm3 N30\r\n",
        );
        let mut c = s.connect();
        c.send(b"set dm4 0 0 1\r\nxyz\r\n");
        c.read_until(b"CLIENT_ERROR bad data chunk\r\n");
    }
    for name in ["cmd_set", "delete_misses", "delete_hits"] {
        assert_eq!(stat(&mnemo, name), stat(&reference, name), "{name}");
    }
}

/// `E` (explicit new CAS) is in the protocol document but not in memcached
/// 1.6.18, which refuses it as an invalid flag; mnemo implements it.
#[test]
fn explicit_new_cas() {
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let got = answer(
        &mnemo,
        b"ms ek 1 E500 c\r\na\r\nmg ek c v\r\nms ek 1 C500 E600 c\r\nb\r\nma en N0 J5 E700 c\r\nmd ek I E800\r\nmg ek c\r\nma en E900 c v\r\nmg ev N30 E1000 c\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HD c500\r\nVA 1 c500\r\na\r\nHD c600\r\nHD c700\r\nHD\r\nHD c800 X W\r\nVA 1 c900\r\n6\r\nHD c1000 W\r\nMN\r\n"
    );
}

/// A meta pipeline cut inside lines and data blocks, in separate writes,
/// gets the same answers as in one write.
#[test]
fn split_requests_match_whole() {
    let bytes: &[u8] = b"ms sp1 10 T0 c\r\n0123456789\r\nmg sp1 v s\r\nms sp1 3 MA q\r\nabc\r\nmg sp1 v\r\nma sp2 N0 J7 v\r\nmn\r\n";
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let whole = answer(&mnemo, bytes);
    // A fresh server, so the counter starts from J7 again.
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let mut c = mnemo.connect();
    c.send_split(bytes, &[2, 9, 17, 20, 29, 31, 45, 60, 62, 70]);
    let split = c
        .try_read_until(b"MN\r\n")
        .unwrap_or_else(|(_, got)| panic!("split: {}", show_full(&got)));
    // `answer` adds its own mn; the pipeline's ends at the first MN.
    let first_mn = whole.windows(4).position(|w| w == b"MN\r\n").unwrap_or(0) + 4;
    assert_eq!(normalize(&split), normalize(&whole[..first_mn]));
}

/// A xorshift generator: the same requests on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// Up to `max` flags, at most one per letter (repeats are errors).
    fn flags(&mut self, flags: &[&str], max: u64) -> String {
        let mut chosen: Vec<&str> = Vec::new();
        for _ in 0..self.below(max + 1) {
            let f = flags[self.below(flags.len() as u64) as usize];
            if !chosen.iter().any(|c| c.as_bytes()[0] == f.as_bytes()[0]) {
                chosen.push(f);
            }
        }
        chosen.join(" ")
    }
}

/// Seeded random meta (and some text) requests over three keys, one
/// connection per server: every answer must match memcached's.
#[test]
fn seeded_random_meta_matches_memcached() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let get_flags: &[&str] = &[
        "v", "f", "s", "t", "k", "c", "h", "l", "q", "u", "O1", "N30", "R30", "T60", "T0",
    ];
    let set_flags: &[&str] = &[
        "T0", "T100", "F7", "c", "k", "q", "I", "C1", "C99999", "MA", "MP", "ME", "MR", "MS", "O5",
    ];
    let del_flags: &[&str] = &["q", "I", "T30", "C5", "k", "O2"];
    let arith_flags: &[&str] = &[
        "q", "N0", "J5", "D3", "MD", "MI", "v", "t", "c", "k", "T30", "C7",
    ];
    let mut requests = Vec::new();
    for _ in 0..300 {
        let key = ["ka", "kb", "kc"][rng.below(3) as usize];
        let req = match rng.below(7) {
            0 | 1 => format!("mg {key} {}\r\n", rng.flags(get_flags, 5)),
            2 | 3 => {
                let v = ["1", "abc", "12", ""][rng.below(4) as usize];
                format!(
                    "ms {key} {} {}\r\n{v}\r\n",
                    v.len(),
                    rng.flags(set_flags, 3)
                )
            }
            4 => format!("md {key} {}\r\n", rng.flags(del_flags, 3)),
            5 => format!("ma {key} {}\r\n", rng.flags(arith_flags, 4)),
            _ => format!(
                "set {key} 3 0 2\r\n{}\r\n",
                ["10", "xy"][rng.below(2) as usize]
            ),
        };
        requests.push(req);
    }
    let reference = Server::start(Kind::Memcached, &[]);
    let mnemo = Server::start(Kind::Mnemo, &[]);
    let mut a = reference.connect();
    let mut b = mnemo.connect();
    for req in &requests {
        let ask = |c: &mut support::Client| {
            c.send(req.as_bytes());
            c.send(b"mn\r\n");
            c.try_read_until(b"MN\r\n")
                .unwrap_or_else(|(_, got)| panic!("{req:?}: {}", show_full(&got)))
        };
        let want = ask(&mut a);
        let got = ask(&mut b);
        assert_eq!(normalize(&got), normalize(&want), "request {req:?}");
    }
}
