//! Server-side meta protocol (`mg ms md ma mn me`): request parsing in place
//! and reply encoding helpers.
//!
//! [`parse`] takes one request line (as found by [`crate::text::next_line`])
//! and returns a [`Request`] whose key and flag tokens are slices of that
//! line, except a base64 (`b`) key, which is decoded into a buffer the caller
//! provides (on its stack): nothing allocates, nothing is copied otherwise.
//!
//! The answers to bad input are memcached 1.6.18's (`proto_text.c`), down to
//! which message each command uses for the same fault and whether the data
//! block of a failed `ms` is swallowed. Flags a request repeats, or does not
//! know, are refused as memcached refuses them. One documented flag 1.6.18
//! does not know is accepted: `E` (explicit new CAS), which later memcached
//! releases and the protocol document define.
//!
//! What cannot be decided without the item (opaque tokens that are too long
//! for `mg`/`ma`, which memcached notices only while writing the reply) is
//! left to the caller; [`MAX_OPAQUE`] is the limit.

use crate::text::{strtol32, strtoul32, strtoull, Tokens, KEY_MAX_LENGTH};

/// Longest opaque (`O`) token, including the `O`.
pub const MAX_OPAQUE: usize = 32;

/// memcached refuses a meta line with this many tokens or more (counting
/// its terminal token, as `ntokens` does).
const MAX_OPT_TOKENS: usize = 20;

/// Room for a decoded base64 key: a 250-byte token decodes to at most 187.
pub const KEY_BUF_LEN: usize = 192;

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Get,
    Set,
    Delete,
    Arith,
    Noop,
    Debug,
}

/// Recognises a meta command name (the first token of a line). Other
/// two-byte names starting with `m` are plain `ERROR`s, as for any unknown
/// command.
pub fn command(name: &[u8]) -> Option<Cmd> {
    match name {
        b"mg" => Some(Cmd::Get),
        b"ms" => Some(Cmd::Set),
        b"md" => Some(Cmd::Delete),
        b"ma" => Some(Cmd::Arith),
        b"mn" => Some(Cmd::Noop),
        b"me" => Some(Cmd::Debug),
        _ => None,
    }
}

/// `ms` modes (`M` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    Set,
    /// `E`: add.
    Add,
    Append,
    Prepend,
    Replace,
}

/// What the flags of one request ask for. Flags that only shape the reply
/// (`O k c f s t v h l`) are found again, in request order, with
/// [`Request::flag_tokens`]; memcached writes them in that order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `b`: the key was base64 and has been decoded.
    pub base64: bool,
    /// `u`: do not bump the item in the LRU.
    pub no_update: bool,
    /// `N<ttl>`: vivify on miss with this client exptime.
    pub vivify: Option<i32>,
    /// `T<ttl>`: set this client exptime.
    pub ttl: Option<i32>,
    /// `R<ttl>`: win the recache token when the remaining TTL is below.
    pub recache: Option<i32>,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: quiet (nominal answers suppressed).
    pub quiet: bool,
    /// `I`: invalidate (mark stale) instead of deleting / when CAS is old.
    pub invalidate: bool,
    /// `F<flags>` (ms).
    pub client_flags: u32,
    /// `C<cas>`: compare CAS.
    pub compare_cas: Option<u64>,
    /// `E<cas>`: use this as the new CAS.
    pub new_cas: Option<u64>,
    /// `M<c>`: mode character, validated per command by [`parse`].
    pub mode: Option<u8>,
    /// `D<n>` (ma).
    pub delta: Option<u64>,
    /// `J<n>` (ma).
    pub initial: Option<u64>,
}

/// One parsed meta request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub cmd: Cmd,
    /// The key, decoded when `flags.base64`.
    pub key: &'a [u8],
    /// `ms`: bytes of data that follow the line (without its `\r\n`).
    pub datalen: usize,
    pub flags: Flags,
    /// `ms` mode (default `Set`).
    pub set_mode: SetMode,
    /// `ma` direction (default increment).
    pub incr: bool,
    toks: Tokens<'a>,
}

impl<'a> Request<'a> {
    /// The tokens after the key, in request order (for `ms` this starts
    /// with the datalen token, as memcached's reply loop does; it never
    /// matches a reply flag).
    pub fn flag_tokens(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (2..self.toks.len()).map(move |i| self.toks.get(i))
    }
}

/// A refused request: the whole reply line (without `\r\n`), and for `ms`
/// the number of input bytes after the line to discard (its data block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub msg: &'static str,
    pub swallow: usize,
}

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";

fn err(msg: &'static str) -> Error {
    Error { msg, swallow: 0 }
}

/// Parses one meta request line. `keybuf` receives a base64 key's bytes.
pub fn parse<'a>(line: &'a [u8], keybuf: &'a mut [u8; KEY_BUF_LEN]) -> Result<Request<'a>, Error> {
    let toks = Tokens::new(line);
    let Some(cmd) = command(toks.get(0)) else {
        return Err(err("ERROR"));
    };
    let ntokens = toks.len() + 1;
    let mut req = Request {
        cmd,
        key: toks.get(1),
        datalen: 0,
        flags: Flags::default(),
        set_mode: SetMode::Set,
        incr: true,
        toks,
    };
    match cmd {
        // `mn` ignores anything after it.
        Cmd::Noop => {
            req.key = &[];
            return Ok(req);
        }
        Cmd::Debug => return parse_debug(req, ntokens, keybuf),
        _ => {}
    }
    if ntokens < 3 {
        return Err(err("ERROR"));
    }
    if req.key.len() > KEY_MAX_LENGTH {
        return Err(err(BAD_FORMAT));
    }
    match cmd {
        Cmd::Get => {
            if ntokens > MAX_OPT_TOKENS {
                return Err(err("CLIENT_ERROR options flags are too long"));
            }
            preparse(&mut req, 2, keybuf).map_err(err)?;
        }
        Cmd::Set => {
            if ntokens == 3 {
                return Err(err(BAD_FORMAT));
            }
            if ntokens > MAX_OPT_TOKENS {
                return Err(err("CLIENT_ERROR options flags too long"));
            }
            let vlen = match strtol32(toks.get(2)) {
                Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
                _ => return Err(err(BAD_FORMAT)),
            };
            req.datalen = vlen;
            let swallow = vlen + 2;
            let fail = |msg| Error { msg, swallow };
            preparse(&mut req, 3, keybuf).map_err(fail)?;
            if req
                .flag_tokens()
                .any(|t| t[0] == b'O' && t.len() > MAX_OPAQUE)
            {
                return Err(fail("CLIENT_ERROR opaque token too long"));
            }
            req.set_mode = match req.flags.mode {
                None | Some(b'S') => SetMode::Set,
                Some(b'E') => SetMode::Add,
                Some(b'A') => SetMode::Append,
                Some(b'P') => SetMode::Prepend,
                Some(b'R') => SetMode::Replace,
                Some(_) => return Err(fail("CLIENT_ERROR invalid mode for ms M token")),
            };
        }
        Cmd::Delete | Cmd::Arith => {
            if ntokens > MAX_OPT_TOKENS {
                return Err(err("CLIENT_ERROR options flags too long"));
            }
            if preparse(&mut req, 2, keybuf).is_err() {
                return Err(err("CLIENT_ERROR invalid or duplicate flag"));
            }
            if cmd == Cmd::Delete {
                if req
                    .flag_tokens()
                    .any(|t| t[0] == b'O' && t.len() > MAX_OPAQUE)
                {
                    return Err(err("CLIENT_ERROR opaque token too long"));
                }
            } else {
                req.incr = match req.flags.mode {
                    None | Some(b'I') | Some(b'+') => true,
                    Some(b'D') | Some(b'-') => false,
                    Some(_) => return Err(err("CLIENT_ERROR invalid mode for ma M token")),
                };
            }
        }
        Cmd::Noop | Cmd::Debug => {}
    }
    Ok(req)
}

/// `me <key> [b]`: no flag parsing; only an exact third token `b` decodes.
fn parse_debug<'a>(
    mut req: Request<'a>,
    ntokens: usize,
    keybuf: &'a mut [u8; KEY_BUF_LEN],
) -> Result<Request<'a>, Error> {
    if ntokens < 3 || req.key.len() > KEY_MAX_LENGTH {
        return Err(err(BAD_FORMAT));
    }
    if ntokens >= 4 && req.toks.get(2) == b"b" {
        let n = base64_decode(req.key, keybuf).ok_or(err(BAD_FORMAT))?;
        req.key = &keybuf[..n];
        req.flags.base64 = true;
    }
    Ok(req)
}

/// memcached's `_meta_flag_preparse`: one pass over the flag tokens from
/// `start`. A repeated or unknown flag stops at once; other faults are
/// noted and the pass goes on, so the last fault's message wins.
fn preparse<'a>(
    req: &mut Request<'a>,
    start: usize,
    keybuf: &'a mut [u8; KEY_BUF_LEN],
) -> Result<(), &'static str> {
    let mut seen = [false; 127];
    let mut fault: Option<&'static str> = None;
    let f = &mut req.flags;
    let mut keybuf = Some(keybuf);
    for i in start..req.toks.len() {
        let t = req.toks.get(i);
        let o = t[0];
        if o >= 127 || seen[o as usize] {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen[o as usize] = true;
        let arg = &t[1..];
        match o {
            b'b' => {
                f.base64 = true;
                // `seen` guarantees a single `b`, so the buffer is there.
                if let Some(buf) = keybuf.take() {
                    match base64_decode(req.key, buf) {
                        Some(n) => req.key = &buf[..n],
                        None => {
                            req.key = &[];
                            fault = Some("CLIENT_ERROR error decoding key");
                        }
                    }
                }
            }
            b'N' => match strtol32(arg) {
                Some(v) => f.vivify = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'T' => match strtol32(arg) {
                Some(v) => f.ttl = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'R' => match strtol32(arg) {
                Some(v) => f.recache = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'l' | b'h' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.quiet = true,
            b'I' => f.invalidate = true,
            // memcached sets no message for a bad F: the default one shows.
            b'F' => match strtoul32(arg) {
                Some(v) => f.client_flags = v,
                None => fault = Some(fault.unwrap_or(BAD_FORMAT)),
            },
            b'C' => match strtoull(arg) {
                Some(v) => f.compare_cas = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'E' => match strtoull(arg) {
                Some(v) => f.new_cas = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'M' => {
                if t.len() != 2 {
                    fault = Some("CLIENT_ERROR incorrect length for M token");
                } else {
                    f.mode = Some(t[1]);
                }
            }
            b'J' => match strtoull(arg) {
                Some(v) => f.initial = Some(v),
                None => fault = Some("CLIENT_ERROR invalid numeric initial value"),
            },
            b'D' => match strtoull(arg) {
                Some(v) => f.delta = Some(v),
                None => fault = Some("CLIENT_ERROR invalid numeric delta value"),
            },
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    match fault {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Value of a base64 character; `=` counts as 0, anything else is skipped.
fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decodes base64 the way memcached does: characters outside the alphabet
/// are skipped, the rest must come in whole quads, and decoding stops after
/// the first quad with padding. None where memcached's decoder returns 0
/// (which it also does for input that decodes to nothing).
pub fn base64_decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let count = src.iter().filter(|&&c| b64_value(c).is_some()).count();
    if count == 0 || count % 4 != 0 || count / 4 * 3 > out.len() {
        return None;
    }
    let mut pos = 0;
    let mut block = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for &c in src {
        let Some(v) = b64_value(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out[pos] = (block[0] << 2) | (block[1] >> 4);
            out[pos + 1] = (block[1] << 4) | (block[2] >> 2);
            out[pos + 2] = (block[2] << 6) | block[3];
            pos += 3;
            n = 0;
            if pad > 0 {
                match pad {
                    1 => pos -= 1,
                    2 => pos -= 2,
                    _ => return None,
                }
                break;
            }
        }
    }
    if pos == 0 {
        None
    } else {
        Some(pos)
    }
}

/// Appends the standard padded base64 form of `src`.
pub fn base64_encode(src: &[u8], out: &mut Vec<u8>) {
    let mut chunks = src.chunks_exact(3);
    for c in &mut chunks {
        out.extend_from_slice(&[
            B64[(c[0] >> 2) as usize],
            B64[(((c[0] & 3) << 4) | (c[1] >> 4)) as usize],
            B64[(((c[1] & 0x0f) << 2) | (c[2] >> 6)) as usize],
            B64[(c[2] & 0x3f) as usize],
        ]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[
            B64[(a >> 2) as usize],
            B64[((a & 3) << 4) as usize],
            b'=',
            b'=',
        ]),
        [a, b] => out.extend_from_slice(&[
            B64[(a >> 2) as usize],
            B64[(((a & 3) << 4) | (b >> 4)) as usize],
            B64[((b & 0x0f) << 2) as usize],
            b'=',
        ]),
        _ => {}
    }
}

// ---- reply encoding ----

/// The decimal digits of `v`, written into `buf` (no allocation: counters
/// are formatted on the request path).
pub fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends ` <c><n>`.
pub fn push_flag_u64(out: &mut Vec<u8>, c: u8, n: u64) {
    out.push(b' ');
    out.push(c);
    crate::text::push_u64(out, n);
}

/// Appends ` t<remaining>` the way memcached prints it: `-1` for an item
/// that never expires, else the 32-bit difference (which wraps for an
/// exptime already in the past, as memcached's unsigned subtraction does).
pub fn push_ttl(out: &mut Vec<u8>, exptime: u32, now: u32) {
    if exptime == 0 {
        out.extend_from_slice(b" t-1");
    } else {
        push_flag_u64(out, b't', u64::from(exptime.wrapping_sub(now)));
    }
}

/// Appends ` k<key>`, or ` k<base64 key> b` for a binary key.
pub fn push_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64_encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// Appends ` <opaque token>` (the token includes its `O`).
pub fn push_opaque(out: &mut Vec<u8>, token: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(token);
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            p(b"ms foo 5 v v").unwrap_err(),
            Error {
                msg: "CLIENT_ERROR duplicate flag",
                swallow: 7
            }
        );
        assert_eq!(
            p(b"ms foo 5 MZ").unwrap_err(),
            Error {
                msg: "CLIENT_ERROR invalid mode for ms M token",
                swallow: 7
            }
        );
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
    fn decimals() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
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
                prop_assert!(r.key.len() <= KEY_MAX_LENGTH);
                for t in r.flag_tokens() {
                    prop_assert!(!t.is_empty());
                }
            }
        }
    }
}
