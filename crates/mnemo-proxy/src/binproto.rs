//! The proxy's binary-protocol client side. Binary requests are translated
//! into text requests for the servers (which then never see two protocols
//! on one connection), and text answers are translated back into binary
//! responses carrying the client's opcode and opaque.
//!
//! Limits, by construction: keys must be valid text keys (no spaces or
//! control bytes, at most 250 bytes); the CAS of a store's response is 0
//! (text `STORED` does not carry it); Increment/Decrement never create a
//! missing counter (text `incr` cannot), they answer "not found".

use mnemo_protocol::reply::binary::{self, status, Opcode};
use mnemo_protocol::reply::{self, Reply};

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

/// Translate one text answer (`bytes`, a whole reply) into the binary
/// response for `b`, appending to `out`; quiet requests append nothing on
/// success (and gets nothing on a miss).
pub fn translate(b: &BinReq, bytes: &[u8], out: &mut Vec<u8>) {
    let (r, _) = match reply::parse_reply(bytes) {
        Ok(Some(x)) => x,
        _ => {
            b.error(out, 0x0084, b"Internal error");
            return;
        }
    };
    let nominal = |out: &mut Vec<u8>, value: &[u8]| {
        if !b.quiet() {
            b.respond(out, status::OK, 0, &[], &[], value);
        }
    };
    match &r {
        Reply::Value {
            key,
            flags,
            data,
            cas,
        } if b.is_get() => {
            let k: &[u8] = if b.returns_key() {
                &bytes[key.clone()]
            } else {
                &[]
            };
            b.respond(
                out,
                status::OK,
                cas.unwrap_or(0),
                &flags.to_be_bytes(),
                k,
                &bytes[data.clone()],
            );
        }
        Reply::End if b.is_get() => {
            if !b.quiet() {
                let k: &[u8] = match (&b.key, b.returns_key()) {
                    (Some(k), true) => k,
                    _ => &[],
                };
                b.respond(out, status::KEY_NOT_FOUND, 0, &[], k, b"Not found");
            }
        }
        Reply::Stored | Reply::Deleted | Reply::Touched | Reply::Ok => nominal(out, &[]),
        Reply::Number(n) => nominal(out, &n.to_be_bytes()),
        Reply::NotStored => {
            let st = match b.op() {
                Some(Opcode::Add | Opcode::AddQ) => status::KEY_EXISTS,
                Some(Opcode::Replace | Opcode::ReplaceQ) => status::KEY_NOT_FOUND,
                _ => status::NOT_STORED,
            };
            let msg: &[u8] = if st == status::KEY_EXISTS {
                b"Data exists for key."
            } else if st == status::KEY_NOT_FOUND {
                b"Not found"
            } else {
                b"Not stored."
            };
            b.error(out, st, msg);
        }
        Reply::Exists => b.error(out, status::KEY_EXISTS, b"Data exists for key."),
        Reply::NotFound => b.error(out, status::KEY_NOT_FOUND, b"Not found"),
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
    /// Send this text request, routed by the key at `key_start..key_end`.
    Keyed { key_start: usize, key_end: usize },
    /// A retrieval: the text line holds `gets`/`gats` for one key.
    Get { exptime: i64, with_touch: bool },
    /// flush_all to every server.
    Flush,
    /// Answered by the proxy: `bytes` is the response (maybe empty).
    Local,
    /// Answer, then close the connection.
    Quit,
}

fn valid_text_key(k: &[u8]) -> bool {
    reply::valid_key(k)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Translate the binary request `pkt` (bytes `p`) into a text request in
/// `text` (for Keyed/Get/Flush) or a local response in `local`.
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
    let needs_key = !matches!(
        op,
        Noop | Version | Quit | QuitQ | Flush | FlushQ | Stat | Verbosity
    );
    if needs_key && !valid_text_key(key) {
        b.error(local, status::INVALID_ARGUMENTS, b"Invalid arguments");
        return (b, Action::Local);
    }
    let bad = |b: &BinReq, local: &mut Vec<u8>| {
        b.error(local, status::INVALID_ARGUMENTS, b"Invalid arguments");
        Action::Local
    };
    match op {
        Get | GetQ | GetK | GetKQ => {
            if !ex.is_empty() || !value.is_empty() {
                return (b.clone(), bad(&b, local));
            }
            if matches!(op, GetK) {
                b.key = Some(key.into());
            }
            text.extend_from_slice(b"gets ");
            text.extend_from_slice(key);
            text.extend_from_slice(b"\r\n");
            (
                b,
                Action::Get {
                    exptime: 0,
                    with_touch: false,
                },
            )
        }
        Gat | GatQ | GatK | GatKQ => {
            if ex.len() != 4 {
                return (b.clone(), bad(&b, local));
            }
            if matches!(op, GatK) {
                b.key = Some(key.into());
            }
            let e = i64::from(be32(ex));
            text.extend_from_slice(b"gats ");
            reply::push_i64(text, e);
            text.push(b' ');
            text.extend_from_slice(key);
            text.extend_from_slice(b"\r\n");
            (
                b,
                Action::Get {
                    exptime: e,
                    with_touch: true,
                },
            )
        }
        Set | SetQ | Add | AddQ | Replace | ReplaceQ => {
            if ex.len() != 8 {
                return (b.clone(), bad(&b, local));
            }
            if value.len() > max_item {
                b.error(local, status::VALUE_TOO_LARGE, b"Too large.");
                return (b, Action::Local);
            }
            let (flags, exp) = (be32(&ex[..4]), be32(&ex[4..]));
            let name: &[u8] = match op {
                Set | SetQ if h.cas != 0 => b"cas ",
                Set | SetQ => b"set ",
                Add | AddQ => b"add ",
                _ => b"replace ",
            };
            text.extend_from_slice(name);
            let ka = (text.len(), text.len() + key.len());
            text.extend_from_slice(key);
            text.push(b' ');
            reply::push_u64(text, u64::from(flags));
            text.push(b' ');
            reply::push_u64(text, u64::from(exp));
            text.push(b' ');
            reply::push_u64(text, value.len() as u64);
            if name == b"cas " {
                text.push(b' ');
                reply::push_u64(text, h.cas);
            }
            text.extend_from_slice(b"\r\n");
            text.extend_from_slice(value);
            text.extend_from_slice(b"\r\n");
            (
                b,
                Action::Keyed {
                    key_start: ka.0,
                    key_end: ka.1,
                },
            )
        }
        Append | AppendQ | Prepend | PrependQ => {
            if !ex.is_empty() || value.len() > max_item {
                return (b.clone(), bad(&b, local));
            }
            text.extend_from_slice(if matches!(op, Append | AppendQ) {
                b"append "
            } else {
                b"prepend "
            });
            let ka = (text.len(), text.len() + key.len());
            text.extend_from_slice(key);
            text.extend_from_slice(b" 0 0 ");
            reply::push_u64(text, value.len() as u64);
            text.extend_from_slice(b"\r\n");
            text.extend_from_slice(value);
            text.extend_from_slice(b"\r\n");
            (
                b,
                Action::Keyed {
                    key_start: ka.0,
                    key_end: ka.1,
                },
            )
        }
        Delete | DeleteQ => {
            text.extend_from_slice(b"delete ");
            let ka = (text.len(), text.len() + key.len());
            text.extend_from_slice(key);
            text.extend_from_slice(b"\r\n");
            (
                b,
                Action::Keyed {
                    key_start: ka.0,
                    key_end: ka.1,
                },
            )
        }
        Increment | IncrementQ | Decrement | DecrementQ => {
            if ex.len() != 20 {
                return (b.clone(), bad(&b, local));
            }
            text.extend_from_slice(if matches!(op, Increment | IncrementQ) {
                b"incr "
            } else {
                b"decr "
            });
            let ka = (text.len(), text.len() + key.len());
            text.extend_from_slice(key);
            text.push(b' ');
            reply::push_u64(text, be64(&ex[..8]));
            text.extend_from_slice(b"\r\n");
            (
                b,
                Action::Keyed {
                    key_start: ka.0,
                    key_end: ka.1,
                },
            )
        }
        Touch => {
            if ex.len() != 4 {
                return (b.clone(), bad(&b, local));
            }
            text.extend_from_slice(b"touch ");
            let ka = (text.len(), text.len() + key.len());
            text.extend_from_slice(key);
            text.push(b' ');
            reply::push_u64(text, u64::from(be32(ex)));
            text.extend_from_slice(b"\r\n");
            (
                b,
                Action::Keyed {
                    key_start: ka.0,
                    key_end: ka.1,
                },
            )
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
        Noop => {
            b.respond(local, status::OK, 0, &[], &[], &[]);
            (b, Action::Local)
        }
        Version => {
            b.respond(
                local,
                status::OK,
                0,
                &[],
                &[],
                concat!("mnemo-proxy-", env!("CARGO_PKG_VERSION")).as_bytes(),
            );
            (b, Action::Local)
        }
        Verbosity => {
            b.respond(local, status::OK, 0, &[], &[], &[]);
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

    #[test]
    fn plans_text_requests() {
        let mut req = Vec::new();
        binary::encode_store(&mut req, Opcode::Set, b"k", 5, 60, b"abc", 0, 77);
        let (mut t, mut l) = (Vec::new(), Vec::new());
        let (b, a) = plan(&req, &pkt(&req), 1 << 20, &mut t, &mut l);
        assert_eq!(t, b"set k 5 60 3\r\nabc\r\n");
        assert!(matches!(
            a,
            Action::Keyed {
                key_start: 4,
                key_end: 5
            }
        ));
        assert_eq!(b.opaque, 77);
        let mut out = Vec::new();
        translate(&b, b"STORED\r\n", &mut out);
        let (r, _) = binary::parse_packet(&out).unwrap().unwrap();
        assert_eq!(
            (r.header.magic, r.header.status, r.header.opaque),
            (0x81, 0, 77)
        );

        req.clear();
        binary::encode_get(&mut req, Opcode::GetK, b"kk", 1);
        t.clear();
        let (b, _) = plan(&req, &pkt(&req), 1 << 20, &mut t, &mut l);
        assert_eq!(t, b"gets kk\r\n");
        out.clear();
        let hit = b"VALUE kk 9 2 44\r\nhi\r\nEND\r\n";
        translate(&b, hit, &mut out);
        let (r, _) = binary::parse_packet(&out).unwrap().unwrap();
        assert_eq!((r.header.status, r.header.cas), (0, 44));
        assert_eq!(&out[r.key], b"kk");
        assert_eq!(&out[r.value], b"hi");
        assert_eq!(&out[r.extras], &9u32.to_be_bytes());
        out.clear();
        translate(&b, b"END\r\n", &mut out);
        let (r, _) = binary::parse_packet(&out).unwrap().unwrap();
        assert_eq!(r.header.status, status::KEY_NOT_FOUND);
        assert_eq!(&out[r.key], b"kk");

        // Quiet: nothing on a miss or a nominal store.
        req.clear();
        binary::encode_get(&mut req, Opcode::GetQ, b"kk", 1);
        let (b, _) = plan(&req, &pkt(&req), 1 << 20, &mut t, &mut l);
        out.clear();
        translate(&b, b"END\r\n", &mut out);
        assert!(out.is_empty());
        translate(&b, b"SERVER_ERROR Connection timed out\r\n", &mut out);
        assert_eq!(pkt(&out).header.status, 0x0086);
    }

    #[test]
    fn rejects_keys_text_cannot_carry() {
        let mut req = Vec::new();
        binary::encode_get(&mut req, Opcode::Get, b"a b", 1);
        let (mut t, mut l) = (Vec::new(), Vec::new());
        let (_, a) = plan(&req, &pkt(&req), 1 << 20, &mut t, &mut l);
        assert!(matches!(a, Action::Local));
        assert_eq!(pkt(&l).header.status, status::INVALID_ARGUMENTS);
    }
}
