use super::*;
use proptest::prelude::*;

fn parse(s: &[u8]) -> Request<'_> {
    parse_line(s)
}

fn err(msg: &'static str) -> Request<'static> {
    Request::Error {
        msg,
        noreply: false,
    }
}

#[test]
fn lines_are_split_like_memcached() {
    assert_eq!(next_line(b"get a"), Line::Incomplete);
    assert_eq!(
        next_line(b"get a\r\nrest"),
        Line::Complete {
            line: b"get a",
            consumed: 7
        }
    );
    assert_eq!(
        next_line(b"get a\nrest"),
        Line::Complete {
            line: b"get a",
            consumed: 6
        }
    );
    // A lone "\r\n" keeps its '\r' (memcached only strips it from longer lines).
    assert_eq!(
        next_line(b"\r\n"),
        Line::Complete {
            line: b"\r",
            consumed: 2
        }
    );
    // NUL ends the command as strlen would.
    assert_eq!(
        next_line(b"get a\0b\r\n"),
        Line::Complete {
            line: b"get a",
            consumed: 9
        }
    );
}

#[test]
fn long_lines_without_newline() {
    let junk = vec![b'x'; MAX_LINE_WITHOUT_NEWLINE + 1];
    assert_eq!(next_line(&junk), Line::TooLong);
    let mut get = b"get ".to_vec();
    get.extend(std::iter::repeat_n(b'k', 5000));
    assert_eq!(next_line(&get), Line::Incomplete);
    let short = vec![b'x'; MAX_LINE_WITHOUT_NEWLINE];
    assert_eq!(next_line(&short), Line::Incomplete);
}

#[test]
fn tokenizer_caps_at_23() {
    let line = (0..30).map(|i| i.to_string()).collect::<Vec<_>>().join(" ");
    let t = Tokens::new(line.as_bytes());
    assert_eq!(t.len(), 23);
    assert!(t.has_rest());
    assert_eq!(t.get(22), b"22");
    let t = Tokens::new(b"  a   b ");
    assert_eq!(t.len(), 2);
    assert_eq!(t.get(0), b"a");
    assert_eq!(t.get(1), b"b");
    assert_eq!(t.get(5), b"");
}

#[test]
fn get_commands() {
    match parse(b"get a bb  ccc") {
        Request::Get {
            kind: GetKind::Get,
            exptime: 0,
            keys,
        } => assert_eq!(keys.collect::<Vec<_>>(), vec![&b"a"[..], b"bb", b"ccc"]),
        other => panic!("{other:?}"),
    }
    match parse(b"gats 100 k") {
        Request::Get {
            kind: GetKind::Gats,
            exptime: 100,
            keys,
        } => assert_eq!(keys.collect::<Vec<_>>(), vec![&b"k"[..]]),
        other => panic!("{other:?}"),
    }
    assert_eq!(parse(b"get"), err("ERROR"));
    assert_eq!(
        parse(b"gat x k"),
        err("CLIENT_ERROR invalid exptime argument")
    );
    let long = format!("get a {}", "k".repeat(251));
    assert_eq!(parse(long.as_bytes()), Request::GetKeyTooLong);
    let ok = format!("get {}", "k".repeat(250));
    assert!(matches!(parse(ok.as_bytes()), Request::Get { .. }));
    // More than 23 tokens: every key is still seen.
    let many = format!(
        "get {}",
        (0..100)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    match parse(many.as_bytes()) {
        Request::Get { keys, .. } => assert_eq!(keys.count(), 100),
        other => panic!("{other:?}"),
    }
    assert_eq!(parse(b"getx a"), err("ERROR"));
}

#[test]
fn storage_commands() {
    assert_eq!(
        parse(b"set k 5 100 3"),
        Request::Store {
            kind: StoreKind::Set,
            key: b"k",
            flags: 5,
            exptime: 100,
            bytes: 3,
            cas: 0,
            noreply: false
        }
    );
    assert_eq!(
        parse(b"cas k 0 -1 3 99 noreply"),
        Request::Store {
            kind: StoreKind::Cas,
            key: b"k",
            flags: 0,
            exptime: -1,
            bytes: 3,
            cas: 99,
            noreply: true
        }
    );
    assert_eq!(parse(b"set k 0 0"), err("ERROR"));
    assert_eq!(parse(b"set k 0 0 1 noreply x"), err("ERROR"));
    assert_eq!(parse(b"set k x 0 1"), err(BAD_FORMAT));
    assert_eq!(
        parse(b"set k x 0 1 noreply"),
        Request::Error {
            msg: BAD_FORMAT,
            noreply: true
        }
    );
    assert_eq!(parse(b"set k 0 0 -1"), err(BAD_FORMAT));
    assert_eq!(parse(b"set k -1 0 1"), err(BAD_FORMAT));
    // A 64-bit flags value is truncated into 32 bits, as memcached does.
    assert!(matches!(
        parse(b"set k 4294967297 0 1"),
        Request::Store { flags: 1, .. }
    ));
    assert!(matches!(
        parse(b"set k 0 0 2147483645"),
        Request::Store {
            bytes: 2147483645,
            ..
        }
    ));
    assert_eq!(parse(b"set k 0 0 2147483646"), err(BAD_FORMAT));
    let long = format!("set {} 0 0 1", "k".repeat(251));
    assert_eq!(parse(long.as_bytes()), err(BAD_FORMAT));
    assert_eq!(parse(b"cas k 0 0 1"), err("ERROR"));
    assert_eq!(parse(b"cas k 0 0 1 -1"), err(BAD_FORMAT));
}

#[test]
fn delete_forms() {
    assert_eq!(
        parse(b"delete k"),
        Request::Delete {
            key: b"k",
            noreply: false
        }
    );
    assert_eq!(
        parse(b"delete k 0"),
        Request::Delete {
            key: b"k",
            noreply: false
        }
    );
    assert_eq!(
        parse(b"delete k noreply"),
        Request::Delete {
            key: b"k",
            noreply: true
        }
    );
    assert_eq!(
        parse(b"delete k 0 noreply"),
        Request::Delete {
            key: b"k",
            noreply: true
        }
    );
    assert_eq!(
        parse(b"delete k 5"),
        err("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]")
    );
    assert_eq!(parse(b"delete"), err("ERROR"));
    assert_eq!(parse(b"delete a b c d"), err("ERROR"));
}

#[test]
fn arith_touch_flush_misc() {
    assert_eq!(
        parse(b"incr k 18446744073709551615"),
        Request::Arith {
            incr: true,
            key: b"k",
            delta: u64::MAX,
            noreply: false
        }
    );
    assert_eq!(
        parse(b"decr k -1"),
        err("CLIENT_ERROR invalid numeric delta argument")
    );
    assert_eq!(
        parse(b"incr k 18446744073709551616"),
        err("CLIENT_ERROR invalid numeric delta argument")
    );
    assert_eq!(
        parse(b"touch k 10 noreply"),
        Request::Touch {
            key: b"k",
            exptime: 10,
            noreply: true
        }
    );
    assert_eq!(
        parse(b"flush_all"),
        Request::FlushAll {
            delay: 0,
            noreply: false
        }
    );
    assert_eq!(
        parse(b"flush_all noreply"),
        Request::FlushAll {
            delay: 0,
            noreply: true
        }
    );
    assert_eq!(
        parse(b"flush_all 10 noreply"),
        Request::FlushAll {
            delay: 10,
            noreply: true
        }
    );
    assert_eq!(
        parse(b"flush_all x"),
        err("CLIENT_ERROR invalid exptime argument")
    );
    assert_eq!(parse(b"flush_all 1 2 3"), err("ERROR"));
    assert_eq!(parse(b"version"), Request::Version);
    assert_eq!(parse(b"quit"), Request::Quit);
    assert_eq!(
        parse(b"verbosity 1"),
        Request::Verbosity {
            level: 1,
            noreply: false
        }
    );
    assert_eq!(parse(b"verbosity"), err("ERROR"));
    assert_eq!(parse(b"shutdown"), Request::Shutdown { graceful: false });
    assert_eq!(
        parse(b"shutdown graceful"),
        Request::Shutdown { graceful: true }
    );
    assert_eq!(parse(b"shutdown now"), Request::ShutdownBadMode);
    assert_eq!(
        parse(b"cache_memlimit 100"),
        Request::CacheMemlimit {
            megabytes: 100,
            noreply: false
        }
    );
    assert_eq!(parse(b"cache_memlimit x"), err("ERROR"));
    assert_eq!(parse(b""), err("ERROR"));
    assert_eq!(parse(b"x"), err("ERROR"));
    assert_eq!(parse(b"bogus"), err("ERROR"));
    assert_eq!(parse(b"GET / HTTP/1.1"), Request::Close);
    assert_eq!(parse(b"gx / HTTP/1.1"), err("ERROR"));
}

#[test]
fn admin_commands() {
    assert_eq!(parse(b"stats"), Request::Stats(StatsCmd::General));
    assert_eq!(
        parse(b"stats items"),
        Request::Stats(StatsCmd::Engine(b"items"))
    );
    assert_eq!(
        parse(b"stats detail"),
        err("CLIENT_ERROR usage: stats detail on|off|dump")
    );
    assert_eq!(
        parse(b"stats detail dump"),
        Request::Stats(StatsCmd::Detail(DetailCmd::Dump))
    );
    assert_eq!(
        parse(b"slabs reassign 1 2"),
        Request::SlabsReassign(Some((1, 2)))
    );
    assert_eq!(parse(b"slabs reassign x 2"), Request::SlabsReassign(None));
    assert_eq!(
        parse(b"slabs automove 2"),
        Request::SlabsAutomove {
            arg: Automove::Level(2),
            noreply: false
        }
    );
    assert_eq!(parse(b"slabs automove 3"), err("ERROR"));
    assert_eq!(parse(b"slabs automove ratio"), err("ERROR"));
    assert_eq!(
        parse(b"slabs automove ratio 0.5"),
        Request::SlabsAutomove {
            arg: Automove::Ratio(0.5),
            noreply: false
        }
    );
    assert_eq!(parse(b"slabs"), err("ERROR"));
    assert_eq!(
        parse(b"lru_crawler crawl all"),
        Request::LruCrawler(CrawlerCmd::Crawl(b"all"))
    );
    assert_eq!(
        parse(b"lru_crawler sleep 2000000"),
        err("CLIENT_ERROR sleep must be one second or less")
    );
    assert_eq!(
        parse(b"lru_crawler enable"),
        Request::LruCrawler(CrawlerCmd::Enable)
    );
    assert_eq!(parse(b"lru_crawler"), err("ERROR"));
}

fn lru(cmd: LruCmd, noreply: bool) -> Request<'static> {
    Request::Lru { cmd, noreply }
}

fn err_nr(msg: &'static str) -> Request<'static> {
    Request::Error { msg, noreply: true }
}

/// `lru`, as memcached's `process_lru_command` reads it: at least one
/// argument, `tune` with four, `mode`/`temp_ttl` with one; noreply from the
/// last token, silencing errors too.
#[test]
fn lru_commands() {
    let tune = |hot_pct, warm_pct, hot_factor, warm_factor| LruCmd::Tune {
        hot_pct,
        warm_pct,
        hot_factor,
        warm_factor,
    };
    assert_eq!(
        parse(b"lru tune 10 30 0.1 2"),
        lru(tune(10, 30, 0.1, 2.0), false)
    );
    assert_eq!(
        parse(b"lru tune 10 30 0.1 2 noreply"),
        lru(tune(10, 30, 0.1, 2.0), true)
    );
    // Range checks are the engine's; numbers 2^32 and up keep 32 bits.
    assert_eq!(
        parse(b"lru tune 0 4294967296 -1 0"),
        lru(tune(0, 0, -1.0, 0.0), false)
    );
    assert_eq!(parse(b"lru tune 10 30 0.1"), err("ERROR"));
    assert_eq!(parse(b"lru tune 10 30 0.1 noreply"), err_nr("ERROR"));
    assert_eq!(parse(b"lru tune -1 30 0.1 2"), err("ERROR"));
    assert_eq!(parse(b"lru tune 10 30 x 2"), err("ERROR"));
    assert_eq!(parse(b"lru tune 10 30 0.1 2x"), err("ERROR"));
    assert_eq!(
        parse(b"lru mode flat"),
        lru(LruCmd::Mode { segmented: false }, false)
    );
    assert_eq!(
        parse(b"lru mode segmented noreply"),
        lru(LruCmd::Mode { segmented: true }, true)
    );
    assert_eq!(parse(b"lru mode FLAT"), err("ERROR"));
    assert_eq!(parse(b"lru mode"), err("ERROR"));
    assert_eq!(parse(b"lru temp_ttl 30"), lru(LruCmd::TempTtl(30), false));
    assert_eq!(parse(b"lru temp_ttl -1"), lru(LruCmd::TempTtl(-1), false));
    assert_eq!(
        parse(b"lru temp_ttl 4294967295"),
        lru(LruCmd::TempTtl(-1), false)
    );
    assert_eq!(parse(b"lru temp_ttl x"), err("ERROR"));
    assert_eq!(parse(b"lru temp_ttl noreply"), err_nr("ERROR"));
    assert_eq!(parse(b"lru"), err("ERROR"));
    assert_eq!(parse(b"lru noreply"), err_nr("ERROR"));
    assert_eq!(parse(b"lru bogus 1 2 3 4"), err("ERROR"));
}

#[test]
fn numbers_like_libc() {
    assert_eq!(strtoull(b"+5"), Some(5));
    assert_eq!(strtoull(b"-0"), Some(0));
    assert_eq!(strtoull(b"-1"), None);
    assert_eq!(strtoull(b"5x"), None);
    assert_eq!(strtoull(b"5\t"), Some(5));
    assert_eq!(strtoull(b""), None);
    // A '-' anywhere in the token refuses a result of 2^63 or more, as
    // memcached's strchr over the token does; below 2^63 it is not looked at.
    assert_eq!(strtoull(b"18446744073709551615\t-"), None);
    assert_eq!(strtoull(b"9223372036854775808\t-"), None);
    assert_eq!(strtoull(b"9223372036854775807\t-"), Some(i64::MAX as u64));
    assert_eq!(strtoull(b"18446744073709551615\t"), Some(u64::MAX));
    assert_eq!(strtol32(b"4294967296"), Some(0));
    assert_eq!(strtol32(b"-5"), Some(-5));
    assert_eq!(strtol32(b"9223372036854775808"), None);
    assert_eq!(strtoll(b"-9223372036854775808"), Some(i64::MIN));
    assert_eq!(strtod(b"1.5"), Some(1.5));
    assert_eq!(strtod(b"."), None);
}

#[test]
fn value_header() {
    let mut out = Vec::new();
    encode_value_header(&mut out, b"k", 7, 3, Some(12));
    assert_eq!(out, b"VALUE k 7 3 12\r\n");
    out.clear();
    encode_value_header(&mut out, b"k", 0, 0, None);
    assert_eq!(out, b"VALUE k 0 0\r\n");
    out.clear();
    push_u64(&mut out, u64::MAX);
    assert_eq!(out, b"18446744073709551615");
    let mut b = [0u8; 20];
    assert_eq!(decimal(0, &mut b), b"0");
    assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
}

proptest! {
    #[test]
    fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut rest: &[u8] = &buf;
        while let Line::Complete { line, consumed } = next_line(rest) {
            prop_assert!(consumed <= rest.len());
            let _ = parse_line(line);
            rest = &rest[consumed..];
        }
    }

    #[test]
    fn never_panics_on_command_like_input(
        cmd in prop::sample::select(vec!["get", "gets", "gat", "gats", "set", "add", "cas", "incr",
            "decr", "delete", "touch", "flush_all", "verbosity", "stats", "slabs", "lru_crawler", "lru",
            "cache_memlimit", "shutdown"]),
        args in proptest::collection::vec("[ -~]{0,12}", 0..30),
    ) {
        let line = format!("{} {}", cmd, args.join(" "));
        let _ = parse_line(line.as_bytes());
    }

    #[test]
    fn store_round_trips(
        key in "[!-~]{1,250}",
        flags in any::<u32>(),
        exptime in any::<i32>(),
        bytes in 0usize..(i32::MAX as usize - 2),
        noreply in any::<bool>(),
    ) {
        let line = format!("set {key} {flags} {exptime} {bytes}{}", if noreply { " noreply" } else { "" });
        let framed = format!("{line}\r\n");
        let Line::Complete { line: l, consumed } = next_line(framed.as_bytes()) else {
            return Err(TestCaseError::fail("line not found"));
        };
        prop_assert_eq!(consumed, framed.len());
        prop_assert_eq!(parse_line(l), Request::Store {
            kind: StoreKind::Set, key: key.as_bytes(), flags, exptime: exptime as i64,
            bytes, cas: 0, noreply,
        });
    }

    #[test]
    fn get_keys_round_trip(keys in proptest::collection::vec("[!-~]{1,250}", 1..60)) {
        let line = format!("gets {}", keys.join(" "));
        match parse_line(line.as_bytes()) {
            Request::Get { kind: GetKind::Gets, keys: got, .. } => {
                let got: Vec<&[u8]> = got.collect();
                let want: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
                prop_assert_eq!(got, want);
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    #[test]
    fn get_fast_path_agrees_with_the_tokenizer(
        cmd in prop_oneof![
            Just("get"), Just("gets"), Just("gat"), Just("gats"), Just("bget"),
            Just("gett"), Just(" get"), Just("ge"),
        ],
        rest in "[ a-z0-9\x00\t-]{0,40}",
        long_key in any::<bool>(),
    ) {
        let mut line = format!("{cmd}{rest}");
        if long_key {
            line.push(' ');
            line.push_str(&"k".repeat(251));
        }
        prop_assert_eq!(parse_line(line.as_bytes()), parse_tokens(line.as_bytes()), "{:?}", line);
    }

    #[test]
    fn numbers_round_trip(v in any::<u64>(), i in any::<i64>()) {
        prop_assert_eq!(strtoull(v.to_string().as_bytes()), Some(v));
        prop_assert_eq!(strtoll(i.to_string().as_bytes()), Some(i));
        let mut out = Vec::new();
        push_u64(&mut out, v);
        prop_assert_eq!(out, v.to_string().into_bytes());
    }
}
