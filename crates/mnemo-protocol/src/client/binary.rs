//! Binary protocol, client side: request encoders and a packet parser with
//! the same conventions as the text side (`Ok(None)` for "need more bytes",
//! ranges into the parsed slice, no panics). Servers frame requests with
//! [`crate::binary::frame`] instead.
//!
//! ```
//! use mnemo_protocol::binary::Opcode;
//! use mnemo_protocol::client::binary;
//!
//! let mut out = Vec::new();
//! binary::encode_get(&mut out, Opcode::GetK, b"key", 7);
//! assert_eq!(out.len(), 24 + 3);
//! let (p, used) = binary::parse_packet(&out).unwrap().unwrap();
//! assert_eq!(used, out.len());
//! assert_eq!(p.header.opcode, Opcode::GetK as u8);
//! assert_eq!(&out[p.key], b"key");
//! ```

use super::ReplyError;
use crate::binary::{Header, Opcode, HEADER_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
use std::ops::Range;

/// Largest body accepted; memcached's own item limit is far below.
pub const MAX_BODY: u32 = 64 * 1024 * 1024;

/// A whole packet; ranges index the slice given to [`parse_packet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub header: Header,
    pub extras: Range<usize>,
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// Parse one request or response packet from the front of `buf`.
pub fn parse_packet(buf: &[u8]) -> Result<Option<(Packet, usize)>, ReplyError> {
    let Some(h) = Header::decode(buf) else {
        if !buf.is_empty() && buf[0] != REQUEST_MAGIC && buf[0] != RESPONSE_MAGIC {
            return Err(ReplyError::UnknownReply);
        }
        return Ok(None);
    };
    if h.magic != REQUEST_MAGIC && h.magic != RESPONSE_MAGIC {
        return Err(ReplyError::UnknownReply);
    }
    let fixed = u32::from(h.key_len) + u32::from(h.extras_len);
    if h.body_len < fixed || h.body_len > MAX_BODY {
        return Err(ReplyError::BadFormat);
    }
    let total = HEADER_LEN + h.body_len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let e = HEADER_LEN + h.extras_len as usize;
    let k = e + h.key_len as usize;
    Ok(Some((
        Packet {
            header: h,
            extras: HEADER_LEN..e,
            key: e..k,
            value: k..total,
        },
        total,
    )))
}

fn request(
    out: &mut Vec<u8>,
    op: Opcode,
    key: &[u8],
    extras: &[u8],
    value: &[u8],
    opaque: u32,
    cas: u64,
) {
    Header {
        magic: REQUEST_MAGIC,
        opcode: op as u8,
        opaque,
        cas,
        ..Header::default()
    }
    .encode_with_body(out, extras, key, value);
}

/// Get, GetQ, GetK or GetKQ.
pub fn encode_get(out: &mut Vec<u8>, op: Opcode, key: &[u8], opaque: u32) {
    request(out, op, key, &[], &[], opaque, 0);
}

/// Gat, GatQ, GatK or GatKQ.
pub fn encode_gat(out: &mut Vec<u8>, op: Opcode, key: &[u8], exptime: u32, opaque: u32) {
    request(out, op, key, &exptime.to_be_bytes(), &[], opaque, 0);
}

/// Set/Add/Replace (and their quiet forms): flags and expiry extras; a
/// non-zero `cas` makes the store conditional.
#[allow(clippy::too_many_arguments)]
pub fn encode_store(
    out: &mut Vec<u8>,
    op: Opcode,
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    cas: u64,
    opaque: u32,
) {
    let mut ex = [0u8; 8];
    ex[..4].copy_from_slice(&flags.to_be_bytes());
    ex[4..].copy_from_slice(&exptime.to_be_bytes());
    request(out, op, key, &ex, value, opaque, cas);
}

/// Append/Prepend: no extras.
pub fn encode_concat(
    out: &mut Vec<u8>,
    op: Opcode,
    key: &[u8],
    value: &[u8],
    cas: u64,
    opaque: u32,
) {
    request(out, op, key, &[], value, opaque, cas);
}

pub fn encode_delete(out: &mut Vec<u8>, op: Opcode, key: &[u8], cas: u64, opaque: u32) {
    request(out, op, key, &[], &[], opaque, cas);
}

/// Increment/Decrement: delta, initial value, expiry (0xffffffff: do
/// not create a missing counter).
pub fn encode_arith(
    out: &mut Vec<u8>,
    op: Opcode,
    key: &[u8],
    delta: u64,
    initial: u64,
    exptime: u32,
    opaque: u32,
) {
    let mut ex = [0u8; 20];
    ex[..8].copy_from_slice(&delta.to_be_bytes());
    ex[8..16].copy_from_slice(&initial.to_be_bytes());
    ex[16..].copy_from_slice(&exptime.to_be_bytes());
    request(out, op, key, &ex, &[], opaque, 0);
}

pub fn encode_touch(out: &mut Vec<u8>, key: &[u8], exptime: u32, opaque: u32) {
    request(
        out,
        Opcode::Touch,
        key,
        &exptime.to_be_bytes(),
        &[],
        opaque,
        0,
    );
}

/// Noop, Version, Quit, Stat (no key): commands with an empty body.
pub fn encode_simple(out: &mut Vec<u8>, op: Opcode, opaque: u32) {
    request(out, op, &[], &[], &[], opaque, 0);
}

pub fn encode_flush(out: &mut Vec<u8>, op: Opcode, delay: Option<u32>, opaque: u32) {
    match delay {
        Some(d) => request(out, op, &[], &d.to_be_bytes(), &[], opaque, 0),
        None => request(out, op, &[], &[], &[], opaque, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::encode_response;
    use proptest::prelude::*;

    #[test]
    fn store_layout() {
        let mut o = Vec::new();
        encode_store(&mut o, Opcode::Set, b"k", 0xdead_beef, 60, b"vv", 5, 9);
        assert_eq!(o.len(), 24 + 8 + 1 + 2);
        assert_eq!(&o[..2], &[0x80, 0x01]);
        assert_eq!(&o[8..12], &11u32.to_be_bytes());
        let (p, used) = parse_packet(&o).unwrap().unwrap();
        assert_eq!(used, o.len());
        assert_eq!(&o[p.extras.clone()][..4], &0xdead_beefu32.to_be_bytes());
        assert_eq!(&o[p.key], b"k");
        assert_eq!(&o[p.value], b"vv");
        assert_eq!((p.header.cas, p.header.opaque), (5, 9));
        for cut in 0..o.len() {
            assert_eq!(parse_packet(&o[..cut]), Ok(None));
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_packet(b"GET"), Err(ReplyError::UnknownReply));
        let mut o = Vec::new();
        encode_get(&mut o, Opcode::Get, b"abc", 0);
        o[8..12].copy_from_slice(&1u32.to_be_bytes()); // body shorter than key
        assert_eq!(parse_packet(&o), Err(ReplyError::BadFormat));
        for op in 0..=255u8 {
            if let Some(x) = Opcode::from_u8(op) {
                assert_eq!(x as u8, op);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(Some((p, used))) = parse_packet(&b) {
                prop_assert!(used <= b.len() && p.value.end == used);
            }
        }

        #[test]
        fn response_roundtrip(
            status in any::<u16>(), opaque in any::<u32>(), cas in any::<u64>(),
            extras in proptest::collection::vec(any::<u8>(), 0..8),
            key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut o = Vec::new();
            encode_response(&mut o, 0x0c, status, opaque, cas, &extras, &key, &value);
            let (p, used) = parse_packet(&o).unwrap().unwrap();
            prop_assert_eq!(used, o.len());
            prop_assert_eq!((p.header.status, p.header.opaque, p.header.cas), (status, opaque, cas));
            prop_assert_eq!(&o[p.extras], &extras[..]);
            prop_assert_eq!(&o[p.key], &key[..]);
            prop_assert_eq!(&o[p.value], &value[..]);
        }
    }
}
