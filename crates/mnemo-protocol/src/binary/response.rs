//! Binary protocol, server side: response packets, with memcached's error
//! texts (also used by the proxy when it answers binary clients).

use super::header::{status, Header, Opcode, RESPONSE_MAGIC};

/// A response packet.
#[allow(clippy::too_many_arguments)]
pub fn encode_response(
    out: &mut Vec<u8>,
    opcode: u8,
    status: u16,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    Header {
        magic: RESPONSE_MAGIC,
        opcode,
        status,
        opaque,
        cas,
        ..Header::default()
    }
    .encode_with_body(out, extras, key, value);
}

/// memcached's text for an error status (`write_bin_error`).
pub fn error_text(status: u16) -> &'static [u8] {
    match status {
        status::OUT_OF_MEMORY => b"Out of memory",
        status::UNKNOWN_COMMAND => b"Unknown command",
        status::KEY_NOT_FOUND => b"Not found",
        status::EINVAL => b"Invalid arguments",
        status::KEY_EXISTS => b"Data exists for key.",
        status::E2BIG => b"Too large.",
        status::DELTA_BADVAL => b"Non-numeric server-side value for incr or decr",
        status::NOT_STORED => b"Not stored.",
        status::AUTH_ERROR => b"Auth failure.",
        _ => b"UNHANDLED ERROR",
    }
}

/// An error response with memcached's text as the value.
pub fn encode_error(out: &mut Vec<u8>, opcode: u8, status: u16, opaque: u32) {
    encode_response(out, opcode, status, opaque, 0, &[], &[], error_text(status));
}

/// One `stat` response packet (`append_bin_stats`); the closing packet has
/// an empty key and value.
pub fn encode_stat(out: &mut Vec<u8>, opaque: u32, key: &[u8], value: &[u8]) {
    encode_response(out, Opcode::Stat as u8, 0, opaque, 0, &[], key, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::binary::parse_packet;

    #[test]
    fn error_and_stat_encoding() {
        let mut o = Vec::new();
        encode_error(&mut o, 0x00, status::KEY_NOT_FOUND, 0x0102_0304);
        assert_eq!(
            &o[..24],
            &[0x81, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&o[24..], b"Not found");
        o.clear();
        encode_stat(&mut o, 7, b"pid", b"42");
        let (p, used) = parse_packet(&o).unwrap().unwrap();
        assert_eq!(used, o.len());
        assert_eq!(&o[p.key], b"pid");
        assert_eq!(&o[p.value], b"42");
    }
}
