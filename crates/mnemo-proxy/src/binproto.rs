//! The proxy's binary-protocol client side. Binary requests are translated
//! into meta requests for the servers (which then only ever see the ASCII
//! protocol, whatever their clients speak), and meta answers are translated
//! back into binary responses carrying the client's opcode and opaque.
//! Meta carries everything binary says: any key (base64 with `b`), CAS on
//! every answer (`c`), compare-and-swap (`C`), counters created with an
//! initial value (`N`, `J`).

use mnemo_protocol::binary as pbin;
use mnemo_protocol::binary::{status, Opcode};
use mnemo_protocol::client::{self, MetaStatus, Reply};
use mnemo_protocol::text::push_u64;

/// What a slot needs to turn a text answer into a binary response.
#[derive(Debug, Clone)]
pub struct BinReq {
    pub opcode: u8,
    pub opaque: u32,
    /// Only for GetK-style misses, which echo the key.
    pub key: Option<Box<[u8]>>,
}

impl BinReq {
    fn op(&self) -> Option<Opcode> {
        Opcode::from_u8(self.opcode)
    }

    fn quiet(&self) -> bool {
        self.op().is_some_and(Opcode::is_quiet)
    }

    fn returns_key(&self) -> bool {
        matches!(
            self.op(),
            Some(Opcode::GetK | Opcode::GetKQ | Opcode::GatK | Opcode::GatKQ)
        )
    }

    fn is_get(&self) -> bool {
        use Opcode::*;
        matches!(
            self.op(),
            Some(Get | GetQ | GetK | GetKQ | Gat | GatQ | GatK | GatKQ)
        )
    }

    /// A response to this request.
    pub fn respond(
        &self,
        out: &mut Vec<u8>,
        st: u16,
        cas: u64,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
    ) {
        pbin::encode_response(out, self.opcode, st, self.opaque, cas, extras, key, value);
    }

    fn error(&self, out: &mut Vec<u8>, st: u16, msg: &[u8]) {
        self.respond(out, st, 0, &[], &[], msg);
    }

    /// An error with memcached's text for the status.
    fn status(&self, out: &mut Vec<u8>, st: u16) {
        pbin::encode_error(out, self.opcode, st, self.opaque);
    }
}

/// Status for a text error line.
fn error_status(r: &Reply, msg: &[u8]) -> u16 {
    let has = |s: &[u8]| msg.windows(s.len()).any(|w| w == s);
    match r {
        Reply::Error => status::UNKNOWN_COMMAND,
        Reply::ClientError(_) if has(b"non-numeric") => status::NON_NUMERIC,
        Reply::ClientError(_) => status::INVALID_ARGUMENTS,
        Reply::ServerError(_) if has(b"too large") => status::VALUE_TOO_LARGE,
        Reply::ServerError(_) if has(b"out of memory") => status::OUT_OF_MEMORY,
        // "Temporary failure": the server is down, timing out or ejected.
        _ => 0x0086,
    }
}

/// Translate one server answer (`bytes`, a whole meta reply or a text
/// `OK`/error line) into the binary response for `b`, appending to `out`;
/// quiet requests append nothing on success (and gets nothing on a miss).
pub fn translate(b: &BinReq, bytes: &[u8], out: &mut Vec<u8>) {
    let (r, _) = match client::parse_reply(bytes) {
        Ok(Some(x)) => x,
        _ => {
            b.error(out, 0x0084, b"Internal error");
            return;
        }
    };
    use Opcode::*;
    let op = b.op();
    let nominal = |out: &mut Vec<u8>, cas: u64, extras: &[u8], key: &[u8], value: &[u8]| {
        if !b.quiet() {
            b.respond(out, status::OK, cas, extras, key, value);
        }
    };
    let num = |s: Option<&[u8]>| s.and_then(client::parse_u64).unwrap_or(0);
    match &r {
        Reply::Meta {
            status: st,
            flags,
            data,
        } => {
            let fl = &bytes[flags.clone()];
            let cas = num(client::meta_flag(fl, b'c'));
            match (st, op) {
                (MetaStatus::Va, Some(Increment | IncrementQ | Decrement | DecrementQ)) => {
                    let v = data.clone().map(|d| num(Some(&bytes[d]))).unwrap_or(0);
                    nominal(out, cas, &[], &[], &v.to_be_bytes());
                }
                (MetaStatus::Va, _) if b.is_get() => {
                    let f = u32::try_from(num(client::meta_flag(fl, b'f'))).unwrap_or(0);
                    let k: &[u8] = match (&b.key, b.returns_key()) {
                        (Some(k), true) => k,
                        _ => &[],
                    };
                    let v = data.clone().map(|d| &bytes[d]).unwrap_or(&[]);
                    b.respond(out, status::OK, cas, &f.to_be_bytes(), k, v);
                }
                (MetaStatus::Hd, _) => nominal(out, cas, &[], &[], &[]),
                (MetaStatus::En, _) if b.is_get() => {
                    if !b.quiet() {
                        let k: &[u8] = match (&b.key, b.returns_key()) {
                            (Some(k), true) => k,
                            _ => &[],
                        };
                        b.respond(
                            out,
                            status::KEY_NOT_FOUND,
                            0,
                            &[],
                            k,
                            pbin::error_text(status::KEY_NOT_FOUND),
                        );
                    }
                }
                (MetaStatus::En | MetaStatus::Nf, _) => b.status(out, status::KEY_NOT_FOUND),
                (MetaStatus::Ex, _) => b.status(out, status::KEY_EXISTS),
                (MetaStatus::Ns, Some(Add | AddQ)) => b.status(out, status::KEY_EXISTS),
                (MetaStatus::Ns, Some(Replace | ReplaceQ)) => b.status(out, status::KEY_NOT_FOUND),
                (MetaStatus::Ns, _) => b.status(out, status::NOT_STORED),
                _ => b.error(out, 0x0084, b"Internal error"),
            }
        }
        Reply::Ok => nominal(out, 0, &[], &[], &[]),
        Reply::Error | Reply::ClientError(_) | Reply::ServerError(_) => {
            let msg = match &r {
                Reply::ClientError(m) | Reply::ServerError(m) => &bytes[m.clone()],
                _ => b"Unknown command".as_slice(),
            };
            match error_status(&r, msg) {
                status::NON_NUMERIC => b.status(out, status::NON_NUMERIC),
                st => b.error(out, st, msg),
            }
        }
        _ => b.error(out, 0x0084, b"Internal error"),
    }
}

/// What the worker should do with one binary request.
pub enum Action {
    /// Send the meta request in `text`, routed by the binary key; `read`
    /// for requests that may be answered by a backup pool.
    Keyed { read: bool },
    /// flush_all to every server.
    Flush,
    /// Answered by the proxy: the response is in `local` (maybe empty).
    Local,
    /// Answer, then close the connection.
    Quit,
}

/// Standard padded base64: binary keys may hold any byte, and meta's `b`
/// flag carries them to the server intact.
fn push_base64(out: &mut Vec<u8>, src: &[u8]) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in src.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
    }
}

fn push_flag(out: &mut Vec<u8>, f: u8, v: u64) {
    out.push(b' ');
    out.push(f);
    push_u64(out, v);
}

/// Start a meta request: command, base64 key, `b`.
fn meta_head(out: &mut Vec<u8>, cmd: &[u8], key: &[u8]) {
    out.extend_from_slice(cmd);
    out.push(b' ');
    push_base64(out, key);
}

/// Translate one validated binary request (`mnemo_protocol::binary`
/// framed and decoded it, with memcached's checks) into a meta request in
/// `text` (or `flush_all` for Flush), or a local response in `local`.
///
/// Meta rather than classic text, because it carries everything the binary
/// protocol says: any key (base64), the CAS of a store's answer (`c`),
/// compare-and-swap on every store and delete (`C`), counters created with
/// an initial value (`N`, `J`).
pub fn plan(
    h: &pbin::Header,
    cmd: &pbin::Cmd,
    key: &[u8],
    value: &[u8],
    max_item: usize,
    text: &mut Vec<u8>,
    local: &mut Vec<u8>,
) -> (BinReq, Action) {
    let mut b = BinReq {
        opcode: h.opcode,
        opaque: h.opaque,
        key: None,
    };
    match *cmd {
        pbin::Cmd::Get { with_key, .. } => {
            if with_key {
                b.key = Some(key.into());
            }
            meta_head(text, b"mg", key);
            text.extend_from_slice(b" b v f c\r\n");
            (b, Action::Keyed { read: true })
        }
        pbin::Cmd::Touch {
            exptime,
            with_key,
            with_value,
            ..
        } => {
            if with_key {
                b.key = Some(key.into());
            }
            meta_head(text, b"mg", key);
            text.extend_from_slice(if with_value { b" b v f c" } else { b" b" });
            push_flag(text, b'T', u64::from(exptime));
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: false })
        }
        pbin::Cmd::Store {
            kind,
            flags,
            exptime,
            ..
        } => {
            let mode: &[u8] = match kind {
                pbin::StoreKind::Set => b"",
                pbin::StoreKind::Add => b" ME",
                pbin::StoreKind::Replace => b" MR",
            };
            store(
                &mut b,
                h,
                key,
                value,
                Some((flags, exptime)),
                mode,
                max_item,
                text,
                local,
            )
        }
        pbin::Cmd::Concat { append, .. } => {
            let mode: &[u8] = if append { b" MA" } else { b" MP" };
            store(&mut b, h, key, value, None, mode, max_item, text, local)
        }
        pbin::Cmd::Delete { .. } => {
            meta_head(text, b"md", key);
            text.extend_from_slice(b" b");
            if h.cas != 0 {
                push_flag(text, b'C', h.cas);
            }
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: false })
        }
        pbin::Cmd::Arith {
            incr,
            delta,
            initial,
            exptime,
            ..
        } => {
            meta_head(text, b"ma", key);
            text.extend_from_slice(b" b v c");
            if !incr {
                text.extend_from_slice(b" MD");
            }
            push_flag(text, b'D', delta);
            // Expiry 0xffffffff: fail on a missing counter; otherwise create
            // it with the initial value.
            if exptime != u32::MAX {
                push_flag(text, b'N', u64::from(exptime));
                push_flag(text, b'J', initial);
            }
            if h.cas != 0 {
                push_flag(text, b'C', h.cas);
            }
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: false })
        }
        pbin::Cmd::Flush { exptime, .. } => {
            text.extend_from_slice(b"flush_all");
            if let Some(e) = exptime {
                text.push(b' ');
                push_u64(text, u64::from(e));
            }
            text.extend_from_slice(b"\r\n");
            (b, Action::Flush)
        }
        pbin::Cmd::Noop => {
            b.respond(local, status::OK, 0, &[], &[], &[]);
            (b, Action::Local)
        }
        pbin::Cmd::Version => {
            let v = concat!("mnemo-proxy-", env!("CARGO_PKG_VERSION"));
            b.respond(local, status::OK, 0, &[], &[], v.as_bytes());
            (b, Action::Local)
        }
        pbin::Cmd::Quit { quiet } => {
            if !quiet {
                b.respond(local, status::OK, 0, &[], &[], &[]);
            }
            (b, Action::Quit)
        }
        // Stat is answered from the proxy's counters by the caller.
        pbin::Cmd::Stat => (b, Action::Local),
        // SASL is never enabled on the proxy (decode is called without it).
        pbin::Cmd::SaslListMechs | pbin::Cmd::SaslAuth { .. } => {
            pbin::encode_error(local, h.opcode, status::UNKNOWN_COMMAND, h.opaque);
            (b, Action::Local)
        }
    }
}

/// `ms` for the store family; `fe` is (flags, exptime) when the opcode has
/// them.
#[allow(clippy::too_many_arguments)]
fn store(
    b: &mut BinReq,
    h: &pbin::Header,
    key: &[u8],
    value: &[u8],
    fe: Option<(u32, u32)>,
    mode: &[u8],
    max_item: usize,
    text: &mut Vec<u8>,
    local: &mut Vec<u8>,
) -> (BinReq, Action) {
    if value.len() > max_item {
        pbin::encode_error(local, h.opcode, status::VALUE_TOO_LARGE, h.opaque);
        return (b.clone(), Action::Local);
    }
    meta_head(text, b"ms", key);
    text.push(b' ');
    push_u64(text, value.len() as u64);
    text.extend_from_slice(b" b c");
    if let Some((flags, exptime)) = fe {
        push_flag(text, b'F', u64::from(flags));
        push_flag(text, b'T', u64::from(exptime));
    }
    if h.cas != 0 {
        push_flag(text, b'C', h.cas);
    }
    text.extend_from_slice(mode);
    text.extend_from_slice(b"\r\n");
    text.extend_from_slice(value);
    text.extend_from_slice(b"\r\n");
    (b.clone(), Action::Keyed { read: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemo_protocol::client::binary;

    fn pkt(out: &[u8]) -> binary::Packet {
        binary::parse_packet(out).unwrap().unwrap().0
    }

    fn plan_of(req: &[u8]) -> (BinReq, Action, Vec<u8>, Vec<u8>) {
        let (mut t, mut l) = (Vec::new(), Vec::new());
        let pbin::Frame::Packet(pk) = pbin::frame(req) else {
            panic!("not a packet")
        };
        let cmd = pbin::decode(&pk, false).expect("valid request");
        let value = &req[pk.consumed..pk.consumed + cmd.value_len()];
        let (b, a) = plan(&pk.header, &cmd, pk.key, value, 1 << 20, &mut t, &mut l);
        (b, a, t, l)
    }

    #[test]
    fn stores_become_meta_sets_with_cas() {
        let mut req = Vec::new();
        binary::encode_store(&mut req, Opcode::Add, b"k", 5, 60, b"abc", 0, 77);
        let (b, a, t, _) = plan_of(&req);
        assert_eq!(t, b"ms aw== 3 b c F5 T60 ME\r\nabc\r\n");
        assert!(matches!(a, Action::Keyed { read: false }));
        let mut out = Vec::new();
        translate(&b, b"HD c42\r\n", &mut out);
        let r = pkt(&out);
        assert_eq!(
            (
                r.header.magic,
                r.header.status,
                r.header.opaque,
                r.header.cas
            ),
            (0x81, 0, 77, 42)
        );
        out.clear();
        translate(&b, b"NS\r\n", &mut out);
        assert_eq!(pkt(&out).header.status, status::KEY_EXISTS);
        req.clear();
        binary::encode_store(&mut req, Opcode::SetQ, b"k", 0, 0, b"v", 9, 1);
        let (b, _, t, _) = plan_of(&req);
        assert_eq!(t, b"ms aw== 1 b c F0 T0 C9\r\nv\r\n");
        out.clear();
        translate(&b, b"HD c10\r\n", &mut out);
        assert!(out.is_empty(), "quiet success is silent");
        translate(&b, b"EX\r\n", &mut out);
        assert_eq!(pkt(&out).header.status, status::KEY_EXISTS);
    }

    #[test]
    fn gets_counters_and_misses() {
        let mut req = Vec::new();
        binary::encode_get(&mut req, Opcode::GetK, b"a b", 3);
        let (b, a, t, _) = plan_of(&req);
        assert_eq!(t, b"mg YSBi b v f c\r\n");
        assert!(matches!(a, Action::Keyed { read: true }));
        let mut out = Vec::new();
        translate(&b, b"VA 2 f9 c44\r\nhi\r\n", &mut out);
        let (r, _) = binary::parse_packet(&out).unwrap().unwrap();
        assert_eq!((r.header.status, r.header.cas), (0, 44));
        assert_eq!(&out[r.key.clone()], b"a b");
        assert_eq!(&out[r.value.clone()], b"hi");
        assert_eq!(&out[r.extras.clone()], &9u32.to_be_bytes());
        out.clear();
        translate(&b, b"EN\r\n", &mut out);
        let (r, _) = binary::parse_packet(&out).unwrap().unwrap();
        assert_eq!(r.header.status, status::KEY_NOT_FOUND);
        assert_eq!(&out[r.key], b"a b");

        req.clear();
        binary::encode_arith(&mut req, Opcode::Increment, b"n", 2, 10, 0, 4);
        let (b, _, t, _) = plan_of(&req);
        assert_eq!(t, b"ma bg== b v c D2 N0 J10\r\n");
        out.clear();
        translate(&b, b"VA 2 c7\r\n12\r\n", &mut out);
        let (r, _) = binary::parse_packet(&out).unwrap().unwrap();
        assert_eq!(&out[r.value], &12u64.to_be_bytes());
        req.clear();
        binary::encode_arith(&mut req, Opcode::Decrement, b"n", 1, 0, u32::MAX, 4);
        let (_, _, t, _) = plan_of(&req);
        assert_eq!(t, b"ma bg== b v c MD D1\r\n");

        req.clear();
        binary::encode_get(&mut req, Opcode::GetQ, b"kk", 1);
        let (b, _, _, _) = plan_of(&req);
        out.clear();
        translate(&b, b"EN\r\n", &mut out);
        assert!(out.is_empty());
        translate(&b, b"SERVER_ERROR Connection timed out\r\n", &mut out);
        assert_eq!(pkt(&out).header.status, 0x0086);
    }

    #[test]
    fn base64_encoding() {
        for (raw, enc) in [
            (&b""[..], &b""[..]),
            (b"a", b"YQ=="),
            (b"ab", b"YWI="),
            (b"abc", b"YWJj"),
            (b"\xff\x00", b"/wA="),
        ] {
            let mut o = Vec::new();
            push_base64(&mut o, raw);
            assert_eq!(o, enc);
        }
    }

    #[test]
    fn sasl_and_oversized_values_are_answered_locally() {
        let mut req = Vec::new();
        binary::encode_store(&mut req, Opcode::Set, b"k", 0, 0, b"abcd", 0, 3);
        let pbin::Frame::Packet(pk) = pbin::frame(&req) else {
            panic!()
        };
        let cmd = pbin::decode(&pk, false).unwrap();
        let (mut t, mut l) = (Vec::new(), Vec::new());
        let (_, a) = plan(&pk.header, &cmd, pk.key, b"abcd", 2, &mut t, &mut l);
        assert!(matches!(a, Action::Local));
        assert!(t.is_empty());
        assert_eq!(pkt(&l).header.status, status::VALUE_TOO_LARGE);
    }
}
