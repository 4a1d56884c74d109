//! The proxy's binary-protocol client side. Binary requests are translated
//! into meta requests for the servers (which then only ever see the ASCII
//! protocol, whatever their clients speak), and meta answers are translated
//! back into binary responses carrying the client's opcode and opaque.
//! Meta carries everything binary says: any key (base64 with `b`), CAS on
//! every answer (`c`), compare-and-swap (`C`), counters created with an
//! initial value (`N`, `J`).

use mnemo_protocol::reply::binary::{self, status, Opcode};
use mnemo_protocol::reply::{self, MetaStatus, Reply};

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
        binary::encode_response(out, self.opcode, st, self.opaque, cas, extras, key, value);
    }

    fn error(&self, out: &mut Vec<u8>, st: u16, msg: &[u8]) {
        self.respond(out, st, 0, &[], &[], msg);
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
    let (r, _) = match reply::parse_reply(bytes) {
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
    let num = |s: Option<&[u8]>| s.and_then(reply::parse_u64).unwrap_or(0);
    match &r {
        Reply::Meta {
            status: st,
            flags,
            data,
        } => {
            let fl = &bytes[flags.clone()];
            let cas = num(reply::meta_flag(fl, b'c'));
            match (st, op) {
                (MetaStatus::Va, Some(Increment | IncrementQ | Decrement | DecrementQ)) => {
                    let v = data.clone().map(|d| num(Some(&bytes[d]))).unwrap_or(0);
                    nominal(out, cas, &[], &[], &v.to_be_bytes());
                }
                (MetaStatus::Va, _) if b.is_get() => {
                    let f = u32::try_from(num(reply::meta_flag(fl, b'f'))).unwrap_or(0);
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
                        b.respond(out, status::KEY_NOT_FOUND, 0, &[], k, b"Not found");
                    }
                }
                (MetaStatus::En | MetaStatus::Nf, _) => {
                    b.error(out, status::KEY_NOT_FOUND, b"Not found")
                }
                (MetaStatus::Ex, _) => b.error(out, status::KEY_EXISTS, b"Data exists for key."),
                (MetaStatus::Ns, Some(Add | AddQ)) => {
                    b.error(out, status::KEY_EXISTS, b"Data exists for key.")
                }
                (MetaStatus::Ns, Some(Replace | ReplaceQ)) => {
                    b.error(out, status::KEY_NOT_FOUND, b"Not found")
                }
                (MetaStatus::Ns, _) => b.error(out, status::NOT_STORED, b"Not stored."),
                _ => b.error(out, 0x0084, b"Internal error"),
            }
        }
        Reply::Ok => nominal(out, 0, &[], &[], &[]),
        Reply::Error | Reply::ClientError(_) | Reply::ServerError(_) => {
            let msg = match &r {
                Reply::ClientError(m) | Reply::ServerError(m) => &bytes[m.clone()],
                _ => b"Unknown command".as_slice(),
            };
            b.error(out, error_status(&r, msg), msg);
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

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
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
    reply::push_u64(out, v);
}

/// Start a meta request: command, base64 key, `b`.
fn meta_head(out: &mut Vec<u8>, cmd: &[u8], key: &[u8]) {
    out.extend_from_slice(cmd);
    out.push(b' ');
    push_base64(out, key);
}

/// Translate the binary request `pkt` (bytes `p`) into a meta request in
/// `text` (or `flush_all` for Flush), or a local response in `local`.
///
/// Meta rather than classic text, because it carries everything the binary
/// protocol says: any key (base64), the CAS of a store's answer (`c`),
/// compare-and-swap on every store and delete (`C`), counters created with
/// an initial value (`N`, `J`).
pub fn plan(
    p: &[u8],
    pkt: &binary::Packet,
    max_item: usize,
    text: &mut Vec<u8>,
    local: &mut Vec<u8>,
) -> (BinReq, Action) {
    let h = pkt.header;
    let mut b = BinReq {
        opcode: h.opcode,
        opaque: h.opaque,
        key: None,
    };
    let key = &p[pkt.key.clone()];
    let ex = &p[pkt.extras.clone()];
    let value = &p[pkt.value.clone()];
    let Some(op) = Opcode::from_u8(h.opcode) else {
        b.error(local, status::UNKNOWN_COMMAND, b"Unknown command");
        return (b, Action::Local);
    };
    use Opcode::*;
    let keyless = matches!(
        op,
        Noop | Version | Quit | QuitQ | Flush | FlushQ | Stat | Verbosity
    );
    if !keyless && (key.is_empty() || key.len() > reply::MAX_KEY) {
        b.error(local, status::INVALID_ARGUMENTS, b"Invalid arguments");
        return (b, Action::Local);
    }
    let invalid = |b: BinReq, local: &mut Vec<u8>| {
        b.error(local, status::INVALID_ARGUMENTS, b"Invalid arguments");
        (b, Action::Local)
    };
    match op {
        Get | GetQ | GetK | GetKQ | Gat | GatQ | GatK | GatKQ => {
            let touch = matches!(op, Gat | GatQ | GatK | GatKQ);
            if ex.len() != if touch { 4 } else { 0 } || !value.is_empty() {
                return invalid(b, local);
            }
            b.key = Some(key.into());
            meta_head(text, b"mg", key);
            text.extend_from_slice(b" b v f c");
            if touch {
                push_flag(text, b'T', u64::from(be32(ex)));
            }
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: !touch })
        }
        Touch => {
            if ex.len() != 4 {
                return invalid(b, local);
            }
            meta_head(text, b"mg", key);
            text.extend_from_slice(b" b");
            push_flag(text, b'T', u64::from(be32(ex)));
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: false })
        }
        Set | SetQ | Add | AddQ | Replace | ReplaceQ | Append | AppendQ | Prepend | PrependQ => {
            let concat = matches!(op, Append | AppendQ | Prepend | PrependQ);
            if ex.len() != if concat { 0 } else { 8 } {
                return invalid(b, local);
            }
            if value.len() > max_item {
                b.error(local, status::VALUE_TOO_LARGE, b"Too large.");
                return (b, Action::Local);
            }
            meta_head(text, b"ms", key);
            text.push(b' ');
            reply::push_u64(text, value.len() as u64);
            text.extend_from_slice(b" b c");
            if !concat {
                push_flag(text, b'F', u64::from(be32(&ex[..4])));
                push_flag(text, b'T', u64::from(be32(&ex[4..])));
            }
            if h.cas != 0 {
                push_flag(text, b'C', h.cas);
            }
            text.extend_from_slice(match op {
                Add | AddQ => b" ME",
                Replace | ReplaceQ => b" MR",
                Append | AppendQ => b" MA",
                Prepend | PrependQ => b" MP",
                _ => b"",
            });
            text.extend_from_slice(b"\r\n");
            text.extend_from_slice(value);
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: false })
        }
        Delete | DeleteQ => {
            if !ex.is_empty() || !value.is_empty() {
                return invalid(b, local);
            }
            meta_head(text, b"md", key);
            text.extend_from_slice(b" b");
            if h.cas != 0 {
                push_flag(text, b'C', h.cas);
            }
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: false })
        }
        Increment | IncrementQ | Decrement | DecrementQ => {
            if ex.len() != 20 || !value.is_empty() {
                return invalid(b, local);
            }
            let exp = be32(&ex[16..]);
            meta_head(text, b"ma", key);
            text.extend_from_slice(b" b v c");
            if matches!(op, Decrement | DecrementQ) {
                text.extend_from_slice(b" MD");
            }
            push_flag(text, b'D', be64(&ex[..8]));
            // Expiry 0xffffffff: fail on a missing counter; otherwise create
            // it with the initial value.
            if exp != u32::MAX {
                push_flag(text, b'N', u64::from(exp));
                push_flag(text, b'J', be64(&ex[8..16]));
            }
            if h.cas != 0 {
                push_flag(text, b'C', h.cas);
            }
            text.extend_from_slice(b"\r\n");
            (b, Action::Keyed { read: false })
        }
        Flush | FlushQ => {
            text.extend_from_slice(b"flush_all");
            if ex.len() == 4 {
                text.push(b' ');
                reply::push_u64(text, u64::from(be32(ex)));
            }
            text.extend_from_slice(b"\r\n");
            (b, Action::Flush)
        }
        Noop | Verbosity => {
            b.respond(local, status::OK, 0, &[], &[], &[]);
            (b, Action::Local)
        }
        Version => {
            let v = concat!("mnemo-proxy-", env!("CARGO_PKG_VERSION"));
            b.respond(local, status::OK, 0, &[], &[], v.as_bytes());
            (b, Action::Local)
        }
        Quit => {
            b.respond(local, status::OK, 0, &[], &[], &[]);
            (b, Action::Quit)
        }
        QuitQ => (b, Action::Quit),
        Stat => (b, Action::Local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(out: &[u8]) -> binary::Packet {
        binary::parse_packet(out).unwrap().unwrap().0
    }

    fn plan_of(req: &[u8]) -> (BinReq, Action, Vec<u8>, Vec<u8>) {
        let (mut t, mut l) = (Vec::new(), Vec::new());
        let (b, a) = plan(req, &pkt(req), 1 << 20, &mut t, &mut l);
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
    fn bad_requests_are_answered_locally() {
        let mut req = Vec::new();
        binary::encode_get(&mut req, Opcode::Get, &[b'k'; 251], 1);
        let (_, a, _, l) = plan_of(&req);
        assert!(matches!(a, Action::Local));
        assert_eq!(pkt(&l).header.status, status::INVALID_ARGUMENTS);
        req.clear();
        binary::encode_simple(&mut req, Opcode::Noop, 5);
        req[1] = 0x77;
        let (_, _, _, l) = plan_of(&req);
        assert_eq!(pkt(&l).header.status, status::UNKNOWN_COMMAND);
    }
}
