//! Round trips, and every kind of bad input a peer can send: truncated,
//! garbage, oversized, forged origin. Errors, never panics.

use super::hello::*;
use super::*;
use proptest::prelude::*;

const MAXV: usize = 1024;

fn ver(node: u8) -> u64 {
    (0x1234_5678u64 << 8) | u64::from(node)
}

fn samples() -> Vec<Record<'static>> {
    vec![
        Record::Set {
            origin: 3,
            version: ver(3),
            key: b"foo",
            flags: 0xdead_beef,
            exptime: 1_800_000_000,
            value: b"bar\r\nbaz",
        },
        Record::Set {
            origin: 255,
            version: ver(255),
            key: &[b'k'; MAX_KEY_LEN],
            flags: 0,
            exptime: 0,
            value: &[7; MAXV],
        },
        Record::Delete {
            origin: 1,
            version: ver(1),
            key: b"a key with spaces, as binary allows",
        },
        Record::Flush {
            origin: 2,
            version: ver(2),
        },
        Record::Counter {
            origin: 4,
            version: ver(4),
            key: b"n",
            base: ver(9),
            base_value: 10,
            p: u128::MAX,
            n: 5,
        },
        Record::Ping {
            origin: 5,
            version: ver(5),
            wall_ms: 42,
        },
        Record::Touch {
            origin: 7,
            version: ver(7),
            key: b"n",
            base: ver(4),
            exptime: 1_800_000_000,
        },
        Record::Ack {
            origin: 6,
            version: ver(6),
            offset: 1 << 40,
            wall_ms: 43,
        },
        Record::Skip {
            origin: 8,
            version: ver(8),
            bytes: 1 << 33,
        },
    ]
}

fn enc(r: &Record<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode(r, &mut v).unwrap();
    v
}

#[test]
fn every_kind_round_trips_and_frames_follow_each_other() {
    let mut stream = Vec::new();
    for r in samples() {
        encode(&r, &mut stream).unwrap();
    }
    let mut at = 0;
    for r in samples() {
        match decode(&stream[at..], MAXV).unwrap() {
            Decoded::Frame(got, n) => {
                assert_eq!(got, r);
                at += n;
            }
            Decoded::NeedMore => panic!("frame not whole"),
        }
    }
    assert_eq!(at, stream.len());
    assert_eq!(decode(&stream[at..], MAXV), Ok(Decoded::NeedMore));
}

#[test]
fn every_proper_prefix_needs_more() {
    for r in samples() {
        let b = enc(&r);
        for cut in 0..b.len() {
            assert_eq!(
                decode(&b[..cut], MAXV),
                Ok(Decoded::NeedMore),
                "{r:?} cut {cut}"
            );
        }
    }
}

#[test]
fn a_frame_longer_than_the_item_limit_is_refused_before_its_body() {
    let mut b = u32::MAX.to_le_bytes().to_vec();
    b.push(KIND_SET);
    assert!(matches!(
        decode(&b, MAXV),
        Err(FrameError::Oversized {
            len: 0xffff_ffff,
            ..
        })
    ));
    // A value one byte past this receiver's limit, its frame otherwise
    // within the total bound.
    let big = vec![0u8; MAXV + 1];
    let r = Record::Set {
        origin: 1,
        version: ver(1),
        key: b"k",
        flags: 0,
        exptime: 0,
        value: &big,
    };
    assert!(matches!(
        decode(&enc(&r), MAXV),
        Err(FrameError::Oversized { .. })
    ));
}

#[test]
fn a_length_that_disagrees_with_the_fields_is_an_error() {
    // A DELETE whose frame length stops inside the key.
    let mut b = enc(&Record::Delete {
        origin: 1,
        version: ver(1),
        key: b"abcdef",
    });
    let short = (b.len() - 4 - 2) as u32;
    b[..4].copy_from_slice(&short.to_le_bytes());
    assert_eq!(decode(&b, MAXV), Err(FrameError::Truncated));
    // Too short for even the header.
    assert_eq!(
        decode(&[3, 0, 0, 0, 1, 1, 1], MAXV),
        Err(FrameError::Truncated)
    );
    // A FLUSH with a byte too many.
    let mut b = enc(&Record::Flush {
        origin: 1,
        version: ver(1),
    });
    b.push(0);
    let long = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&long.to_le_bytes());
    assert_eq!(decode(&b, MAXV), Err(FrameError::Trailing));
    // A SET whose value length runs past the frame.
    let mut b = enc(&samples()[0]);
    let vlen_at = 4 + HEAD + 1 + 3 + 4 + 8;
    b[vlen_at..vlen_at + 4].copy_from_slice(&100u32.to_le_bytes());
    assert_eq!(decode(&b, MAXV), Err(FrameError::Truncated));
}

#[test]
fn bad_keys_kinds_and_origins_are_errors() {
    let mut b = enc(&samples()[2]);
    b[4 + HEAD] = 0;
    assert_eq!(decode(&b, MAXV), Err(FrameError::BadKey));
    b[4 + HEAD] = (MAX_KEY_LEN + 1) as u8;
    assert_eq!(decode(&b, MAXV), Err(FrameError::BadKey));

    let mut b = enc(&samples()[3]);
    b[4] = 99;
    assert_eq!(decode(&b, MAXV), Err(FrameError::UnknownKind(99)));

    // Origin 0, with a version carrying 0 in its node bits too.
    let mut b = enc(&samples()[3]);
    b[5] = 0;
    b[6] = 0;
    assert_eq!(decode(&b, MAXV), Err(FrameError::NodeZero));
    // An origin claiming another node than the version's.
    let mut b = enc(&samples()[3]);
    b[5] = 7;
    assert_eq!(
        decode(&b, MAXV),
        Err(FrameError::ForgedOrigin {
            origin: 7,
            version_node: 2
        })
    );
}

#[test]
fn encoding_refuses_what_decoding_would() {
    let mut out = vec![9];
    let bad = [
        Record::Delete {
            origin: 1,
            version: ver(1),
            key: b"",
        },
        Record::Counter {
            origin: 1,
            version: ver(1),
            key: &[b'k'; MAX_KEY_LEN + 1],
            base: 0,
            base_value: 0,
            p: 0,
            n: 0,
        },
        Record::Flush {
            origin: 0,
            version: 0,
        },
        Record::Flush {
            origin: 1,
            version: ver(2),
        },
        Record::Touch {
            origin: 1,
            version: ver(1),
            key: b"",
            base: 0,
            exptime: 0,
        },
    ];
    for r in bad {
        assert!(encode(&r, &mut out).is_err(), "{r:?}");
        assert_eq!(out, [9]);
    }
}

#[test]
fn hello_round_trips() {
    let h = Hello {
        node_id: 7,
        proto: PROTO_VERSION,
        replid: 0x0123_4567_89ab_cdef,
        offset: 12345,
        since: 774_545_205_058_601_473,
    };
    let mut out = Vec::new();
    write_hello(&h, &mut out);
    assert_eq!(
        out,
        b"mn_repl HELLO 7 2 0123456789abcdef 12345 774545205058601473\r\n"
    );
    assert_eq!(parse_hello(&out[..out.len() - 2]), Ok(h));
    for r in [
        Reply::Continue {
            replid: 1,
            offset: 2,
        },
        Reply::FullResync {
            replid: u64::MAX,
            offset: 0,
        },
        Reply::Refused(b"bad node id"),
        Reply::NotSupported,
    ] {
        let mut out = Vec::new();
        write_reply(&r, &mut out);
        assert_eq!(parse_reply(&out[..out.len() - 2]), Ok(r));
    }
}

#[test]
fn bad_hellos_are_errors() {
    let cases: &[(&[u8], HelloError)] = &[
        (b"", HelloError::Malformed),
        (
            b"mn_repl HELLO 1 1 0123456789abcdef 0",
            HelloError::Malformed,
        ),
        (
            b"mn_repl HELLO 1 1 0123456789abcdef 0 0 x",
            HelloError::Malformed,
        ),
        (
            b"mn_repl  HELLO 1 1 0123456789abcdef 0 0",
            HelloError::Malformed,
        ),
        (
            b"mn_repl BYE 1 1 0123456789abcdef 0 0",
            HelloError::Malformed,
        ),
        (b"get HELLO 1 1 0123456789abcdef 0 0", HelloError::Malformed),
        (
            b"mn_repl HELLO 0 1 0123456789abcdef 0 0",
            HelloError::NodeZero,
        ),
        (
            b"mn_repl HELLO 256 1 0123456789abcdef 0 0",
            HelloError::BadNumber,
        ),
        (
            b"mn_repl HELLO -1 1 0123456789abcdef 0 0",
            HelloError::BadNumber,
        ),
        (
            b"mn_repl HELLO 1 1 0123456789ABCDEF 0 0",
            HelloError::BadNumber,
        ),
        (b"mn_repl HELLO 1 1 0123 0 0", HelloError::BadNumber),
        (
            b"mn_repl HELLO 1 1 0123456789abcdef 99999999999999999999 0",
            HelloError::BadNumber,
        ),
        (
            b"mn_repl HELLO 1 4294967296 0123456789abcdef 0 0",
            HelloError::BadNumber,
        ),
        (
            b"mn_repl HELLO 1 2 0123456789abcdef 0 -1",
            HelloError::BadNumber,
        ),
    ];
    for (line, e) in cases {
        assert_eq!(
            parse_hello(line),
            Err(*e),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(
        parse_reply(b"MN_REPL MAYBE 0123456789abcdef 1"),
        Err(HelloError::Malformed)
    );
    assert_eq!(parse_reply(b"STORED"), Err(HelloError::Malformed));
}

fn record() -> impl Strategy<Value = (u8, u8, u64, Vec<u8>, Vec<u8>, u32, u64, u128)> {
    (
        0u8..9,
        1u8..=255,
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 1..=MAX_KEY_LEN),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<u32>(),
        any::<u64>(),
        any::<u128>(),
    )
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), max in 0usize..2048) {
        let mut at = 0;
        while let Ok(Decoded::Frame(_, n)) = decode(&bytes[at..], max) {
            prop_assert!(n > 0 && at + n <= bytes.len());
            at += n;
        }
        let _ = parse_hello(&bytes);
        let _ = parse_reply(&bytes);
    }

    #[test]
    fn any_valid_record_round_trips((kind, origin, hi, key, value, flags, x, big) in record()) {
        let version = (hi << 8) | u64::from(origin);
        let r = match kind {
            0 => Record::Set { origin, version, key: &key, flags, exptime: x, value: &value },
            1 => Record::Delete { origin, version, key: &key },
            2 => Record::Flush { origin, version },
            3 => Record::Counter { origin, version, key: &key, base: x, base_value: hi, p: big, n: !big },
            4 => Record::Ping { origin, version, wall_ms: x },
            5 => Record::Touch { origin, version, key: &key, base: hi, exptime: x },
            6 => Record::Skip { origin, version, bytes: x },
            _ => Record::Ack { origin, version, offset: x, wall_ms: hi },
        };
        let b = enc(&r);
        prop_assert_eq!(decode(&b, 64), Ok(Decoded::Frame(r, b.len())));
    }

    /// One flipped byte in a valid frame: a frame, more wanted, or an
    /// error; never a panic, never a read past the buffer.
    #[test]
    fn a_corrupted_frame_never_panics(i in any::<prop::sample::Index>(), x in any::<u8>()) {
        for r in samples() {
            let mut b = enc(&r);
            let at = i.index(b.len());
            b[at] ^= x;
            if let Ok(Decoded::Frame(_, n)) = decode(&b, MAXV) {
                prop_assert!(n <= b.len());
            }
        }
    }
}

/// A sender leaves out of a receiver's stream only that receiver's own
/// SETs, COUNTERs and TOUCHes of its current run: everything else, a
/// DELETE of its write (the horizon rule) included, still goes.
#[test]
fn only_a_nodes_own_writes_of_its_run_return_to_it() {
    let v = |ms: u64, node: u8| (ms << 23) | u64::from(node);
    let since = v(1000, 3);
    let frame = |r: Record<'_>| enc(&r);
    let set = |version: u64| {
        frame(Record::Set {
            origin: version as u8,
            version,
            key: b"k",
            flags: 0,
            exptime: 0,
            value: b"v",
        })
    };
    assert!(returns_to(&set(v(1001, 3)), 3, since));
    assert!(returns_to(&set(since), 3, since), "its run's first");
    assert!(!returns_to(&set(v(1001, 3)), 3, 0), "since 0: all");
    assert!(!returns_to(&set(v(999, 3)), 3, since), "an earlier run's");
    assert!(!returns_to(&set(v(1001, 4)), 3, since), "another node's");
    let counter = frame(Record::Counter {
        origin: 3,
        version: v(1002, 3),
        key: b"c",
        base: 1,
        base_value: 2,
        p: 3,
        n: 0,
    });
    assert!(returns_to(&counter, 3, since));
    let touch = frame(Record::Touch {
        origin: 3,
        version: v(1003, 3),
        key: b"t",
        base: v(1001, 3),
        exptime: 9,
    });
    assert!(returns_to(&touch, 3, since));
    let delete = frame(Record::Delete {
        origin: 3,
        version: v(1004, 3),
        key: b"k",
    });
    assert!(!returns_to(&delete, 3, since));
    let flush = frame(Record::Flush {
        origin: 3,
        version: v(1005, 3),
    });
    assert!(!returns_to(&flush, 3, since));
    assert!(!returns_to(&set(v(1001, 3))[..10], 3, since), "a cut frame");
}
