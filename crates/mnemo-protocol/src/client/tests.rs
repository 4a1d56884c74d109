use super::*;
use crate::text::push_u64;
use proptest::prelude::*;

fn one(buf: &[u8]) -> (Reply, usize) {
    match parse_reply(buf) {
        Ok(Some(r)) => r,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
    }
}

#[test]
fn simple_lines() {
    for (line, want) in [
        (&b"STORED\r\n"[..], Reply::Stored),
        (b"NOT_STORED\r\n", Reply::NotStored),
        (b"EXISTS\r\n", Reply::Exists),
        (b"NOT_FOUND\r\n", Reply::NotFound),
        (b"DELETED\r\n", Reply::Deleted),
        (b"TOUCHED\r\n", Reply::Touched),
        (b"OK\r\n", Reply::Ok),
        (b"END\r\n", Reply::End),
        (b"ERROR\r\n", Reply::Error),
        (b"42\r\n", Reply::Number(42)),
        (b"RESET\r\n", Reply::Reset),
    ] {
        assert_eq!(one(line), (want, line.len()));
    }
}

#[test]
fn messages() {
    let b = b"SERVER_ERROR out of memory\r\n";
    assert_eq!(one(b), (Reply::ServerError(13..26), b.len()));
    let b = b"CLIENT_ERROR bad data chunk\r\n";
    let (r, _) = one(b);
    match r {
        Reply::ClientError(m) => assert_eq!(&b[m], b"bad data chunk"),
        _ => panic!(),
    }
    let b = b"VERSION 1.6.18\r\n";
    match one(b).0 {
        Reply::Version(v) => assert_eq!(&b[v], b"1.6.18"),
        _ => panic!(),
    }
    let b = b"STAT curr_items 12\r\n";
    match one(b).0 {
        Reply::Stat { name, value } => {
            assert_eq!(&b[name], b"curr_items");
            assert_eq!(&b[value], b"12");
        }
        _ => panic!(),
    }
}

#[test]
fn value_with_and_without_cas() {
    let b = b"VALUE k 1 2 99\r\nab\r\nEND\r\n";
    let (r, used) = one(b);
    assert_eq!(used, 20);
    match r {
        Reply::Value {
            key,
            flags,
            data,
            cas,
        } => {
            assert_eq!(&b[key], b"k");
            assert_eq!(flags, 1);
            assert_eq!(&b[data], b"ab");
            assert_eq!(cas, Some(99));
        }
        _ => panic!(),
    }
    assert_eq!(one(&b[used..]), (Reply::End, 5));
    // Data containing CRLF is opaque.
    let b = b"VALUE k 0 4\r\n\r\n\r\n\r\n";
    assert_eq!(one(b).1, b.len());
}

#[test]
fn incomplete_then_complete() {
    let b = b"VALUE key 0 10\r\n0123456789\r\n";
    for cut in 0..b.len() {
        assert_eq!(parse_reply(&b[..cut]), Ok(None), "cut {cut}");
    }
    assert_eq!(one(b).1, b.len());
}

#[test]
fn meta_replies() {
    let b = b"VA 3 f5 c7\r\nabc\r\n";
    match one(b) {
        (
            Reply::Meta {
                status: MetaStatus::Va,
                flags,
                data: Some(d),
            },
            used,
        ) => {
            assert_eq!(&b[flags.clone()], b"f5 c7");
            assert_eq!(meta_flag(&b[flags], b'c'), Some(&b"7"[..]));
            assert_eq!(&b[d], b"abc");
            assert_eq!(used, b.len());
        }
        other => panic!("{other:?}"),
    }
    for (b, s) in [
        (&b"HD\r\n"[..], MetaStatus::Hd),
        (b"EN\r\n", MetaStatus::En),
        (b"NF\r\n", MetaStatus::Nf),
        (b"NS\r\n", MetaStatus::Ns),
        (b"EX\r\n", MetaStatus::Ex),
        (b"MN\r\n", MetaStatus::Mn),
        (b"HD c1 kfoo\r\n", MetaStatus::Hd),
    ] {
        match one(b).0 {
            Reply::Meta { status, data, .. } => {
                assert_eq!(status, s);
                assert_eq!(data, None);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn malformed() {
    assert_eq!(parse_reply(b"BOGUS\r\n"), Err(ReplyError::UnknownReply));
    assert_eq!(parse_reply(b"\r\n"), Err(ReplyError::UnknownReply));
    assert_eq!(parse_reply(b"STORED x\r\n"), Err(ReplyError::BadFormat));
    assert_eq!(parse_reply(b"VALUE k x 1\r\n"), Err(ReplyError::BadFormat));
    assert_eq!(
        parse_reply(b"VALUE k 0 1\r\nabc\r\n"),
        Err(ReplyError::BadDataTerminator)
    );
    assert_eq!(
        parse_reply(b"VALUE k 0 99999999999999999999999\r\n"),
        Err(ReplyError::BadFormat)
    );
    assert_eq!(
        parse_reply(&vec![b'a'; MAX_LINE + 1]),
        Err(ReplyError::LineTooLong)
    );
}

#[test]
fn encoders() {
    let mut o = Vec::new();
    encode_store(&mut o, StoreCmd::Set, b"k", 3, -1, b"data", false);
    assert_eq!(o, b"set k 3 -1 4\r\ndata\r\n");
    o.clear();
    encode_cas(&mut o, b"k", 0, 0, b"", 77, true);
    assert_eq!(o, b"cas k 0 0 0 77 noreply\r\n\r\n");
    o.clear();
    encode_arith(&mut o, false, b"n", 5, false);
    encode_delete(&mut o, b"n", true);
    encode_touch(&mut o, b"n", 10, false);
    encode_gat(&mut o, true, 5, [&b"a"[..]]);
    assert_eq!(
        o,
        b"decr n 5\r\ndelete n noreply\r\ntouch n 10\r\ngats 5 a\r\n"
    );
    o.clear();
    encode_meta_set(&mut o, b"k", b"xy", b"T0 F1");
    encode_meta_get(&mut o, b"k", b"");
    encode_meta_noop(&mut o);
    assert_eq!(o, b"ms k 2 T0 F1\r\nxy\r\nmg k\r\nmn\r\n");
    o.clear();
    push_u64(&mut o, u64::MAX);
    assert_eq!(o, u64::MAX.to_string().as_bytes());
}

proptest! {
    // Arbitrary bytes never panic, and anything accepted stays in bounds.
    #[test]
    fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(Some((r, used))) = parse_reply(&buf) {
            prop_assert!(used <= buf.len());
            if let Reply::Value { key, data, .. } = r {
                prop_assert!(key.end <= used && data.end <= used);
            }
        }
    }

    // An encoded VALUE round-trips, whatever the data, and every strict
    // prefix asks for more bytes.
    #[test]
    fn value_roundtrip(
        key in "[a-zA-Z0-9_:.-]{1,250}",
        flags in any::<u32>(),
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cas in proptest::option::of(any::<u64>()),
    ) {
        let mut b = format!("VALUE {key} {flags} {}", data.len()).into_bytes();
        if let Some(c) = cas { b.extend_from_slice(format!(" {c}").as_bytes()); }
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(&data);
        b.extend_from_slice(b"\r\nEND\r\n");
        let (r, used) = parse_reply(&b).unwrap().unwrap();
        match r {
            Reply::Value { key: k, flags: f, data: d, cas: c } => {
                prop_assert_eq!(&b[k], key.as_bytes());
                prop_assert_eq!(f, flags);
                prop_assert_eq!(&b[d], &data[..]);
                prop_assert_eq!(c, cas);
            }
            _ => prop_assert!(false),
        }
        prop_assert_eq!(parse_reply(&b[used..]).unwrap().unwrap(), (Reply::End, 5));
        for cut in 0..used {
            prop_assert_eq!(parse_reply(&b[..cut]), Ok(None));
        }
    }

    #[test]
    fn meta_value_roundtrip(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        f in any::<u32>(),
    ) {
        let mut b = format!("VA {} f{f}\r\n", data.len()).into_bytes();
        b.extend_from_slice(&data);
        b.extend_from_slice(b"\r\n");
        match parse_reply(&b).unwrap().unwrap() {
            (Reply::Meta { status: MetaStatus::Va, flags, data: Some(d) }, used) => {
                prop_assert_eq!(used, b.len());
                prop_assert_eq!(&b[d], &data[..]);
                let fs = f.to_string();
                prop_assert_eq!(meta_flag(&b[flags], b'f'), Some(fs.as_bytes()));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn numbers_roundtrip(n in any::<u64>()) {
        let mut b = Vec::new();
        push_u64(&mut b, n);
        prop_assert_eq!(parse_u64(&b), Some(n));
        b.extend_from_slice(b"\r\n");
        prop_assert_eq!(parse_reply(&b).unwrap().unwrap().0, Reply::Number(n));
    }
}
