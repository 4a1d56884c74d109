//! Binary protocol, server side: request framing and validation in place,
//! with memcached's per-opcode checks of the extras/key/body lengths.
//!
//! A request is handled in the order memcached 1.6.18 (`proto_bin.c`)
//! handles it, because the answers differ by step:
//! 1. [`frame`]: wait for the header plus extras plus key (even when the
//!    header's body length is smaller); a magic other than 0x80 closes the
//!    connection without a reply.
//! 2. [`lengths_ok`]: a key or key+extras longer than the body is answered
//!    `UNKNOWN_COMMAND` and the connection closed.
//! 3. SASL, when enabled: [`allowed_unauthenticated`] decides, otherwise
//!    `AUTH_ERROR` and close.
//! 4. [`decode`]: a key over 250 bytes or extras/key/body of the wrong shape
//!    for the opcode is `EINVAL` and close; an unknown opcode is
//!    `UNKNOWN_COMMAND` and its body is discarded.
//!
//! Only the header, extras and key are consumed by [`frame`]; the value
//! (what remains of the body) is read by the caller for the commands that
//! carry one ([`Cmd::value_len`]). For the others memcached leaves any
//! surplus body bytes in the stream, to be read as the next request, and so
//! does this module.

use super::header::{opcode, Header, Opcode, HEADER_LEN, REQUEST_MAGIC};
use crate::MAX_KEY_LEN;

/// Largest SASL mechanism name memcached accepts.
pub const MAX_SASL_MECH_LEN: usize = 32;

/// What is at the front of a read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Fewer bytes than header + extras + key: read more.
    Incomplete,
    /// Not a request magic: memcached closes the connection silently.
    BadMagic,
    Packet(Packet<'a>),
}

/// A request whose header, extras and key are in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    /// Header + extras + key: the bytes this packet has used so far.
    pub consumed: usize,
}

/// Finds the request at the front of `buf` (step 1).
pub fn frame(buf: &[u8]) -> Frame<'_> {
    let Some(header) = Header::decode(buf) else {
        return Frame::Incomplete;
    };
    if header.magic != REQUEST_MAGIC {
        return Frame::BadMagic;
    }
    let e = HEADER_LEN + header.extras_len as usize;
    let k = e + header.key_len as usize;
    if buf.len() < k {
        return Frame::Incomplete;
    }
    Frame::Packet(Packet {
        header,
        extras: &buf[HEADER_LEN..e],
        key: &buf[e..k],
        consumed: k,
    })
}

/// Step 2: whether the key and extras fit in the declared body.
pub fn lengths_ok(h: &Header) -> bool {
    u32::from(h.key_len) + u32::from(h.extras_len) <= h.body_len
}

/// Step 3: what an unauthenticated SASL connection may still send.
pub fn allowed_unauthenticated(op: u8) -> bool {
    matches!(
        op,
        opcode::SASL_LIST_MECHS | opcode::SASL_AUTH | opcode::SASL_STEP
    ) || op == Opcode::Version as u8
}

/// Storage kinds of set/add/replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Set,
    Add,
    Replace,
}

/// A validated request. `quiet` is the `Q` variant of the opcode; the reply
/// header always carries the request's own opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Get/GetQ/GetK/GetKQ.
    Get {
        quiet: bool,
        with_key: bool,
    },
    /// Touch (no value returned), Gat/GatQ/GatK/GatKQ.
    Touch {
        exptime: u32,
        quiet: bool,
        with_key: bool,
        with_value: bool,
    },
    Store {
        kind: StoreKind,
        quiet: bool,
        flags: u32,
        exptime: u32,
        value_len: usize,
    },
    Concat {
        append: bool,
        quiet: bool,
        value_len: usize,
    },
    Delete {
        quiet: bool,
    },
    Arith {
        incr: bool,
        quiet: bool,
        delta: u64,
        initial: u64,
        exptime: u32,
    },
    Quit {
        quiet: bool,
    },
    Flush {
        quiet: bool,
        exptime: Option<u32>,
    },
    Noop,
    Version,
    /// Stat with the key as the group name (empty: all).
    Stat,
    SaslListMechs,
    SaslAuth {
        step: bool,
        value_len: usize,
    },
}

impl Cmd {
    /// Bytes after the key that belong to this request and must be read
    /// (or discarded) before it completes.
    pub fn value_len(&self) -> usize {
        match *self {
            Cmd::Store { value_len, .. }
            | Cmd::Concat { value_len, .. }
            | Cmd::SaslAuth { value_len, .. } => value_len,
            _ => 0,
        }
    }

    /// Whether nominal answers are suppressed.
    pub fn quiet(&self) -> bool {
        match *self {
            Cmd::Get { quiet, .. }
            | Cmd::Touch { quiet, .. }
            | Cmd::Store { quiet, .. }
            | Cmd::Concat { quiet, .. }
            | Cmd::Delete { quiet }
            | Cmd::Arith { quiet, .. }
            | Cmd::Quit { quiet }
            | Cmd::Flush { quiet, .. } => quiet,
            _ => false,
        }
    }
}

/// Why [`decode`] refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// `EINVAL`, then close the connection.
    Invalid,
    /// `UNKNOWN_COMMAND`, then discard this many input bytes.
    Unknown { swallow: usize },
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Step 4: checks the request's shape for its opcode. Call after
/// [`lengths_ok`] (and the SASL check). `sasl` says whether SASL is enabled:
/// without it the SASL opcodes are unknown commands.
pub fn decode(p: &Packet<'_>, sasl: bool) -> Result<Cmd, Reject> {
    let h = &p.header;
    let ext = h.extras_len as usize;
    let key = h.key_len as usize;
    let body = h.body_len as usize;
    if key > MAX_KEY_LEN {
        return Err(Reject::Invalid);
    }
    let ok = |c: bool, cmd: Cmd| if c { Ok(cmd) } else { Err(Reject::Invalid) };
    let empty = ext == 0 && key == 0 && body == 0;
    let op = h.opcode;
    if op == opcode::SASL_LIST_MECHS || op == opcode::SASL_AUTH || op == opcode::SASL_STEP {
        let shape = if op == opcode::SASL_LIST_MECHS {
            empty
        } else {
            ext == 0 && key != 0
        };
        if !shape {
            return Err(Reject::Invalid);
        }
        if !sasl {
            return Err(Reject::Unknown {
                swallow: body - key,
            });
        }
        return Ok(if op == opcode::SASL_LIST_MECHS {
            Cmd::SaslListMechs
        } else {
            Cmd::SaslAuth {
                step: op == opcode::SASL_STEP,
                value_len: body - key,
            }
        });
    }
    let Some(opc) = Opcode::from_u8(op) else {
        return Err(Reject::Unknown { swallow: body });
    };
    use Opcode::*;
    let quiet = opc.is_quiet();
    match opc {
        Version => ok(empty, Cmd::Version),
        Noop => ok(empty, Cmd::Noop),
        Quit | QuitQ => ok(empty, Cmd::Quit { quiet }),
        Flush | FlushQ => ok(
            key == 0 && body == ext && (ext == 0 || ext == 4),
            Cmd::Flush {
                quiet,
                exptime: (ext == 4).then(|| be32(p.extras)),
            },
        ),
        Set | SetQ | Add | AddQ | Replace | ReplaceQ => {
            if !(ext == 8 && key != 0 && body >= key + 8) {
                return Err(Reject::Invalid);
            }
            let kind = match opc {
                Set | SetQ => StoreKind::Set,
                Add | AddQ => StoreKind::Add,
                _ => StoreKind::Replace,
            };
            Ok(Cmd::Store {
                kind,
                quiet,
                flags: be32(p.extras),
                exptime: be32(&p.extras[4..]),
                value_len: body - key - ext,
            })
        }
        Get | GetQ | GetK | GetKQ => ok(
            ext == 0 && body == key && key > 0,
            Cmd::Get {
                quiet,
                with_key: matches!(opc, GetK | GetKQ),
            },
        ),
        Delete | DeleteQ => ok(key > 0 && ext == 0 && body == key, Cmd::Delete { quiet }),
        Increment | IncrementQ | Decrement | DecrementQ => {
            if !(key > 0 && ext == 20 && body == key + ext) {
                return Err(Reject::Invalid);
            }
            Ok(Cmd::Arith {
                incr: matches!(opc, Increment | IncrementQ),
                quiet,
                delta: be64(p.extras),
                initial: be64(&p.extras[8..]),
                exptime: be32(&p.extras[16..]),
            })
        }
        Append | AppendQ | Prepend | PrependQ => ok(
            key > 0 && ext == 0,
            Cmd::Concat {
                append: matches!(opc, Append | AppendQ),
                quiet,
                value_len: body - key,
            },
        ),
        Stat => ok(ext == 0, Cmd::Stat),
        Touch | Gat | GatQ | GatK | GatKQ => {
            if !(ext == 4 && key != 0) {
                return Err(Reject::Invalid);
            }
            Ok(Cmd::Touch {
                exptime: be32(p.extras),
                quiet,
                with_key: matches!(opc, GatK | GatKQ),
                with_value: opc != Touch,
            })
        }
        // memcached 1.6.18 has no binary verbosity handler.
        Verbosity => Err(Reject::Unknown { swallow: body }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::binary as cb;
    use proptest::prelude::*;

    fn req(op: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            magic: REQUEST_MAGIC,
            opcode: op,
            key_len: key.len() as u16,
            extras_len: extras.len() as u8,
            body_len: (extras.len() + key.len() + value.len()) as u32,
            opaque: 0xdead_beef,
            ..Header::default()
        }
        .encode(&mut out);
        out.extend_from_slice(extras);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        out
    }

    fn packet(buf: &[u8]) -> Packet<'_> {
        match frame(buf) {
            Frame::Packet(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_wait_for_extras_and_key() {
        let b = req(Opcode::Get as u8, &[], b"foo", &[]);
        assert_eq!(frame(&b[..23]), Frame::Incomplete);
        assert_eq!(frame(&b[..26]), Frame::Incomplete);
        let p = packet(&b);
        assert_eq!(p.key, b"foo");
        assert_eq!(p.consumed, 27);
        let mut bad = b.clone();
        bad[0] = 0x81;
        assert_eq!(frame(&bad), Frame::BadMagic);
    }

    #[test]
    fn decodes_client_encodings() {
        let mut o = Vec::new();
        cb::encode_store(&mut o, Opcode::SetQ, b"k", 7, 60, b"hello", 0, 1);
        let p = packet(&o);
        assert!(lengths_ok(&p.header));
        assert_eq!(
            decode(&p, false),
            Ok(Cmd::Store {
                kind: StoreKind::Set,
                quiet: true,
                flags: 7,
                exptime: 60,
                value_len: 5
            })
        );
        o.clear();
        cb::encode_arith(&mut o, Opcode::Decrement, b"n", 3, 10, 0xffff_ffff, 1);
        assert_eq!(
            decode(&packet(&o), false),
            Ok(Cmd::Arith {
                incr: false,
                quiet: false,
                delta: 3,
                initial: 10,
                exptime: 0xffff_ffff
            })
        );
        o.clear();
        cb::encode_flush(&mut o, Opcode::FlushQ, Some(9), 1);
        assert_eq!(
            decode(&packet(&o), false),
            Ok(Cmd::Flush {
                quiet: true,
                exptime: Some(9)
            })
        );
        o.clear();
        cb::encode_gat(&mut o, Opcode::GatKQ, b"g", 5, 1);
        assert_eq!(
            decode(&packet(&o), false),
            Ok(Cmd::Touch {
                exptime: 5,
                quiet: true,
                with_key: true,
                with_value: true
            })
        );
    }

    #[test]
    fn shapes_rejected_as_memcached() {
        // Get with extras, set without a key, incr with short extras.
        let b = req(Opcode::Get as u8, &[0; 4], b"k", &[]);
        assert_eq!(decode(&packet(&b), false), Err(Reject::Invalid));
        let b = req(Opcode::Set as u8, &[0; 8], b"", b"v");
        assert_eq!(decode(&packet(&b), false), Err(Reject::Invalid));
        let b = req(Opcode::Increment as u8, &[0; 8], b"k", &[]);
        assert_eq!(decode(&packet(&b), false), Err(Reject::Invalid));
        let b = req(Opcode::Noop as u8, &[], b"", b"x");
        assert_eq!(decode(&packet(&b), false), Err(Reject::Invalid));
        let long = vec![b'a'; 251];
        let b = req(Opcode::Get as u8, &[], &long, &[]);
        assert_eq!(decode(&packet(&b), false), Err(Reject::Invalid));
        let b = req(0x55, &[], b"ab", b"xyz");
        assert_eq!(
            decode(&packet(&b), false),
            Err(Reject::Unknown { swallow: 5 })
        );
        let b = req(Opcode::Verbosity as u8, &[0; 4], b"", &[]);
        assert_eq!(
            decode(&packet(&b), false),
            Err(Reject::Unknown { swallow: 4 })
        );
        let b = req(opcode::SASL_AUTH, &[], b"PLAIN", b"\0u\0p");
        assert_eq!(
            decode(&packet(&b), false),
            Err(Reject::Unknown { swallow: 4 })
        );
        assert_eq!(
            decode(&packet(&b), true),
            Ok(Cmd::SaslAuth {
                step: false,
                value_len: 4
            })
        );
    }

    #[test]
    fn lengths_and_auth() {
        let mut b = req(Opcode::Get as u8, &[], b"key", &[]);
        b[11] = 2; // body shorter than the key
        assert!(!lengths_ok(&packet(&b).header));
        assert!(allowed_unauthenticated(Opcode::Version as u8));
        assert!(allowed_unauthenticated(opcode::SASL_LIST_MECHS));
        assert!(!allowed_unauthenticated(Opcode::Get as u8));
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..400), sasl: bool) {
            if let Frame::Packet(p) = frame(&buf) {
                prop_assert!(p.consumed <= buf.len());
                if lengths_ok(&p.header) {
                    if let Ok(cmd) = decode(&p, sasl) {
                        // A value never exceeds what the header declared.
                        prop_assert!(p.consumed - HEADER_LEN + cmd.value_len() <= p.header.body_len as usize);
                    }
                }
            }
        }

        #[test]
        fn headers_with_valid_magic(
            op: u8, ext in 0u8..32, key in 0u16..300, extra in 0u32..64, sasl: bool,
        ) {
            let body = u32::from(ext) + u32::from(key) + extra;
            let mut buf = Vec::new();
            Header {
                magic: REQUEST_MAGIC, opcode: op, key_len: key, extras_len: ext,
                body_len: body, ..Header::default()
            }.encode(&mut buf);
            buf.resize(buf.len() + body as usize, b'x');
            let p = packet(&buf);
            prop_assert!(lengths_ok(&p.header));
            match decode(&p, sasl) {
                Ok(cmd) => prop_assert!(p.consumed - HEADER_LEN + cmd.value_len() <= body as usize),
                Err(Reject::Unknown { swallow }) => prop_assert!(swallow <= body as usize),
                Err(Reject::Invalid) => {}
            }
        }
    }
}
