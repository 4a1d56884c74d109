use super::*;
use proptest::prelude::*;

fn p(line: &[u8]) -> Result<(Cmd, Vec<u8>, Flags, usize), Error> {
    let mut kb = [0u8; KEY_BUF_LEN];
    parse(line, &mut kb).map(|r| (r.cmd, r.key.to_vec(), r.flags, r.datalen))
}

fn msg(line: &[u8]) -> &'static str {
    p(line).unwrap_err().msg
}

#[test]
fn get_flags() {
    let (cmd, key, f, _) = p(b"mg foo v f t c k s O123 q u N30 R10 T-1 h l").unwrap();
    assert_eq!(cmd, Cmd::Get);
    assert_eq!(key, b"foo");
    assert!(f.value && f.quiet && f.no_update);
    assert_eq!(f.vivify, Some(30));
    assert_eq!(f.recache, Some(10));
    assert_eq!(f.ttl, Some(-1));
}

#[test]
fn flag_tokens_in_order() {
    let mut kb = [0u8; KEY_BUF_LEN];
    let r = parse(b"mg foo k Oab v", &mut kb).unwrap();
    let t: Vec<&[u8]> = r.flag_tokens().collect();
    assert_eq!(t, vec![&b"k"[..], b"Oab", b"v"]);
}

#[test]
fn errors_as_memcached() {
    assert_eq!(msg(b"mg"), "ERROR");
    assert_eq!(msg(b"mg foo v v"), "CLIENT_ERROR duplicate flag");
    assert_eq!(msg(b"mg foo x"), "CLIENT_ERROR invalid flag");
    assert_eq!(msg(b"mg foo Nx"), BAD_TOKEN);
    assert_eq!(msg(b"mg foo N"), BAD_TOKEN);
    assert_eq!(
        msg(b"mg foo Mxx"),
        "CLIENT_ERROR incorrect length for M token"
    );
    assert_eq!(msg(b"md foo v v"), "CLIENT_ERROR invalid or duplicate flag");
    assert_eq!(msg(b"ma foo Nx"), "CLIENT_ERROR invalid or duplicate flag");
    assert_eq!(
        msg(b"ma foo MX"),
        "CLIENT_ERROR invalid mode for ma M token"
    );
    let long = [b"mg ".to_vec(), vec![b'a'; 251]].concat();
    assert_eq!(msg(&long), BAD_FORMAT);
    let many = b"mg foo a b c d e f g h i j k l m n o p q r s";
    assert_eq!(msg(many), "CLIENT_ERROR options flags are too long");
    let many = b"md foo a b c d e f g h i j k l m n o p q r s";
    assert_eq!(msg(many), "CLIENT_ERROR options flags too long");
    // A fault that does not stop the pass is overwritten by a later one.
    assert_eq!(
        msg(b"mg foo Nx Mxx"),
        "CLIENT_ERROR incorrect length for M token"
    );
    // A repeat stops at once, whatever came before.
    assert_eq!(msg(b"mg foo Nx Nx"), "CLIENT_ERROR duplicate flag");
    assert_eq!(msg(b"mg foo \xff"), "CLIENT_ERROR duplicate flag");
    assert_eq!(
        msg(b"md foo O123456789012345678901234567890123"),
        "CLIENT_ERROR opaque token too long"
    );
}

#[test]
fn set_datalen_and_swallow() {
    let (cmd, key, f, n) = p(b"ms foo 5 T10 F3 c").unwrap();
    assert_eq!((cmd, key.as_slice(), n), (Cmd::Set, &b"foo"[..], 5));
    assert_eq!((f.ttl, f.client_flags), (Some(10), 3));
    assert_eq!(p(b"ms foo").unwrap_err(), err(BAD_FORMAT));
    assert_eq!(p(b"ms foo x").unwrap_err(), err(BAD_FORMAT));
    assert_eq!(p(b"ms foo -1").unwrap_err(), err(BAD_FORMAT));
    // Past the datalen token, a refused ms swallows its data block.
    for (line, msg) in [
        (&b"ms foo 5 v v"[..], "CLIENT_ERROR duplicate flag"),
        (b"ms foo 5 MZ", "CLIENT_ERROR invalid mode for ms M token"),
    ] {
        assert_eq!(p(line).unwrap_err(), Error { msg, swallow: 7 });
    }
    assert_eq!(p(b"ms foo 5 Fx").unwrap_err().msg, BAD_FORMAT);
    let mut kb = [0u8; KEY_BUF_LEN];
    assert_eq!(
        parse(b"ms k 1 MA", &mut kb).unwrap().set_mode,
        SetMode::Append
    );
    assert_eq!(parse(b"ms k 1 ME", &mut kb).unwrap().set_mode, SetMode::Add);
    assert!(!parse(b"ma k M-", &mut kb).unwrap().incr);
}

#[test]
fn base64_keys() {
    let (_, key, f, _) = p(b"mg Zm9v b v").unwrap();
    assert_eq!(key, b"foo");
    assert!(f.base64);
    assert_eq!(msg(b"mg Zm9 b"), "CLIENT_ERROR error decoding key");
    assert_eq!(msg(b"mg ==== b"), "CLIENT_ERROR error decoding key");
    // memcached skips characters outside the alphabet.
    assert_eq!(p(b"mg Zm!9v b").unwrap().1, b"foo");
    assert_eq!(p(b"me Zm9v b").unwrap().1, b"foo");
    assert_eq!(p(b"me Zm9v").unwrap().1, b"Zm9v");
    assert_eq!(msg(b"me"), BAD_FORMAT);
    let mut out = Vec::new();
    push_key(&mut out, b"foo\x00", true);
    assert_eq!(out, b" kZm9vAA== b");
}

#[test]
fn reply_helpers() {
    let mut out = Vec::new();
    push_ttl(&mut out, 0, 5);
    push_ttl(&mut out, 15, 5);
    push_flag_u64(&mut out, b'c', 99);
    push_opaque(&mut out, b"Oxy");
    assert_eq!(out, b" t-1 t10 c99 Oxy");
}

proptest! {
    #[test]
    fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 1..187)) {
        let mut enc = Vec::new();
        base64_encode(&data, &mut enc);
        let mut out = [0u8; KEY_BUF_LEN];
        let n = base64_decode(&enc, &mut out).unwrap();
        prop_assert_eq!(&out[..n], &data[..]);
    }

    #[test]
    fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut kb = [0u8; KEY_BUF_LEN];
        let _ = parse(&line, &mut kb);
    }

    #[test]
    fn parse_meta_shaped_never_panics(
        cmd in prop::sample::select(vec!["mg", "ms", "md", "ma", "mn", "me"]),
        key in "[ -~]{0,260}",
        flags in proptest::collection::vec("[ -~\\x80-\\xff]{0,40}", 0..25),
    ) {
        let line = format!("{} {} {}", cmd, key, flags.join(" "));
        let mut kb = [0u8; KEY_BUF_LEN];
        if let Ok(r) = parse(line.as_bytes(), &mut kb) {
            prop_assert!(r.key.len() <= MAX_KEY_LEN);
            for t in r.flag_tokens() {
                prop_assert!(!t.is_empty());
            }
        }
    }
}
