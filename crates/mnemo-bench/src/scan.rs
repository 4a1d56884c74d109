//! Counting replies in place.
//!
//! The bench only needs to know where each reply ends and how many keys hit,
//! so it walks the read buffer without copying or decoding values. Text and
//! meta use the project's client-side parser (`mnemo_protocol::client`); it
//! has no binary protocol, so binary replies are walked here by their
//! 24-byte headers. A reply that is not complete yet returns `Incomplete`
//! and is rescanned after the next read (rare: most reads end on a reply
//! boundary).

use crate::workload::{Kind, Protocol};
use mnemo_protocol::client::{parse_reply, MetaStatus, Reply, ReplyError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Need more bytes.
    Incomplete,
    /// One whole reply of `len` bytes.
    Reply {
        len: usize,
        hits: u32,
        misses: u32,
        error: bool,
    },
    /// The stream does not match what was asked; the connection is unusable.
    Desync(&'static str),
}

pub fn scan(protocol: Protocol, buf: &[u8], kind: Kind) -> Scan {
    match protocol {
        Protocol::Text => text(buf, kind),
        Protocol::Meta => meta(buf, kind),
        Protocol::Binary => binary(buf, kind),
    }
}

fn desync(e: ReplyError) -> Scan {
    Scan::Desync(match e {
        ReplyError::LineTooLong => "reply line too long",
        ReplyError::UnknownReply => "unknown reply",
        ReplyError::BadFormat => "malformed reply line",
        ReplyError::BadDataTerminator => "value not terminated by CRLF",
    })
}

fn done(len: usize, hits: u32, n: u16) -> Scan {
    Scan::Reply {
        len,
        hits,
        misses: (n as u32).saturating_sub(hits),
        error: false,
    }
}

fn error_reply(len: usize) -> Scan {
    Scan::Reply {
        len,
        hits: 0,
        misses: 0,
        error: true,
    }
}

/// Text protocol, via the project's reply parser: a set is one line, a get
/// is VALUE elements up to END.
fn text(buf: &[u8], kind: Kind) -> Scan {
    let mut pos = 0;
    let mut hits = 0u32;
    loop {
        let (r, used) = match parse_reply(&buf[pos..]) {
            Ok(Some(x)) => x,
            Ok(None) => return Scan::Incomplete,
            Err(e) => return desync(e),
        };
        match (kind, r) {
            (Kind::Set, Reply::Stored | Reply::NotStored | Reply::Exists | Reply::NotFound) => {
                return done(used, 0, 0)
            }
            (Kind::Get(_), Reply::Value { .. }) => {
                hits += 1;
                pos += used;
            }
            (Kind::Get(n), Reply::End) => return done(pos + used, hits, n),
            (_, r) if r.is_error() && pos == 0 => return error_reply(used),
            (Kind::Set, _) => return Scan::Desync("unexpected reply to set"),
            (Kind::Get(_), _) => return Scan::Desync("unexpected line in get reply"),
        }
    }
}

/// Meta protocol: a single mg ends at its one reply (VA, HD or EN); a quiet
/// multi-get (mg ... q, then mn) sends only hits and ends at MN.
fn meta(buf: &[u8], kind: Kind) -> Scan {
    let multi = matches!(kind, Kind::Get(n) if n > 1);
    let mut pos = 0;
    let mut hits = 0u32;
    let mut multi_error = false;
    loop {
        let (r, used) = match parse_reply(&buf[pos..]) {
            Ok(Some(x)) => x,
            Ok(None) => return Scan::Incomplete,
            Err(e) => return desync(e),
        };
        pos += used;
        match (kind, r) {
            (
                Kind::Set,
                Reply::Meta {
                    status: MetaStatus::Hd | MetaStatus::Ns | MetaStatus::Ex | MetaStatus::Nf,
                    ..
                },
            ) => return done(pos, 0, 0),
            (Kind::Get(n), Reply::Meta { status, .. }) => match status {
                MetaStatus::Va | MetaStatus::Hd => {
                    hits += 1;
                    if !multi {
                        return done(pos, hits, n);
                    }
                }
                MetaStatus::En if !multi => return done(pos, hits, n),
                MetaStatus::En => {}
                MetaStatus::Mn if multi => {
                    let mut r = done(pos, hits, n);
                    if let Scan::Reply { error, .. } = &mut r {
                        *error = multi_error;
                    }
                    return r;
                }
                _ => return Scan::Desync("unexpected status in mg reply"),
            },
            (_, r) if r.is_error() && !multi => return error_reply(pos),
            (_, r) if r.is_error() => {
                // An error for one quiet mg is not suppressed; read on to
                // the MN so the stream stays in step.
                multi_error = true;
            }
            (Kind::Set, _) => return Scan::Desync("unexpected reply to ms"),
            (Kind::Get(_), _) => return Scan::Desync("unexpected line in mg reply"),
        }
    }
}

const BIN_HEADER: usize = 24;

fn binary(buf: &[u8], kind: Kind) -> Scan {
    let multi = matches!(kind, Kind::Get(n) if n > 1);
    let mut pos = 0;
    let mut hits = 0u32;
    loop {
        if buf.len() < pos + BIN_HEADER {
            return Scan::Incomplete;
        }
        let h = &buf[pos..pos + BIN_HEADER];
        if h[0] != 0x81 {
            return Scan::Desync("bad binary response magic");
        }
        let opcode = h[1];
        let status = u16::from_be_bytes([h[6], h[7]]);
        let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let end = pos + BIN_HEADER + body;
        if buf.len() < end {
            return Scan::Incomplete;
        }
        pos = end;
        match kind {
            Kind::Set => {
                if opcode != 0x01 {
                    return Scan::Desync("unexpected opcode in set reply");
                }
                return Scan::Reply {
                    len: pos,
                    hits: 0,
                    misses: 0,
                    // NOT_STORED / EXISTS are answers, anything else an error.
                    error: !matches!(status, 0 | 2 | 5),
                };
            }
            Kind::Get(n) if !multi => {
                if opcode != 0x00 {
                    return Scan::Desync("unexpected opcode in get reply");
                }
                let hit = status == 0;
                return Scan::Reply {
                    len: pos,
                    hits: hit as u32,
                    misses: (status == 1) as u32 * n as u32,
                    error: !hit && status != 1,
                };
            }
            Kind::Get(n) => match opcode {
                0x0a => {
                    return Scan::Reply {
                        len: pos,
                        hits,
                        misses: (n as u32).saturating_sub(hits),
                        error: false,
                    }
                }
                0x0d if status == 0 => hits += 1,
                // Quiet gets still report errors other than a miss.
                0x0d => {}
                _ => return Scan::Desync("unexpected opcode in multi-get reply"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(len: usize, hits: u32, misses: u32) -> Scan {
        Scan::Reply {
            len,
            hits,
            misses,
            error: false,
        }
    }

    #[test]
    fn text_get_hits_misses_and_partial() {
        let r = b"VALUE a 0 3\r\nabc\r\nVALUE c 5 1 99\r\nx\r\nEND\r\nSTORED\r\n";
        let end = r.len() - 8;
        assert_eq!(text(r, Kind::Get(3)), reply(end, 2, 1));
        for cut in 0..end {
            assert_eq!(text(&r[..cut], Kind::Get(3)), Scan::Incomplete, "cut {cut}");
        }
        assert_eq!(text(&r[end..], Kind::Set), reply(8, 0, 0));
        assert_eq!(text(b"END\r\n", Kind::Get(1)), reply(5, 0, 1));
    }

    #[test]
    fn text_value_containing_end_is_not_a_terminator() {
        let r = b"VALUE a 0 5\r\nEND\r\n\r\nEND\r\n";
        assert_eq!(text(r, Kind::Get(1)), reply(r.len(), 1, 0));
    }

    #[test]
    fn text_errors_and_desync() {
        let e = text(b"SERVER_ERROR out of memory\r\n", Kind::Set);
        assert!(matches!(e, Scan::Reply { error: true, .. }));
        let e = text(b"CLIENT_ERROR bad\r\n", Kind::Get(2));
        assert!(matches!(e, Scan::Reply { error: true, .. }));
        assert!(matches!(text(b"HELLO\r\n", Kind::Set), Scan::Desync(_)));
        assert!(matches!(
            text(b"VALUE a 0 zz\r\n", Kind::Get(1)),
            Scan::Desync(_)
        ));
        assert!(matches!(
            text(b"VALUE a 0 1\r\nxyz\r\n", Kind::Get(1)),
            Scan::Desync(_)
        ));
    }

    #[test]
    fn meta_single_and_multi() {
        assert_eq!(meta(b"VA 2\r\nhi\r\n", Kind::Get(1)), reply(10, 1, 0));
        assert_eq!(meta(b"EN\r\n", Kind::Get(1)), reply(4, 0, 1));
        let r = b"VA 1 f0\r\na\r\nVA 2\r\nbb\r\nMN\r\n";
        assert_eq!(meta(r, Kind::Get(4)), reply(r.len(), 2, 2));
        for cut in 0..r.len() {
            assert_eq!(meta(&r[..cut], Kind::Get(4)), Scan::Incomplete);
        }
        assert_eq!(meta(b"HD\r\n", Kind::Set), reply(4, 0, 0));
        assert_eq!(meta(b"NS\r\n", Kind::Set), reply(4, 0, 0));
        assert!(matches!(meta(b"VA x\r\n", Kind::Get(1)), Scan::Desync(_)));
        let r = b"SERVER_ERROR busy\r\nVA 1\r\na\r\nMN\r\n";
        assert_eq!(
            meta(r, Kind::Get(2)),
            Scan::Reply {
                len: r.len(),
                hits: 1,
                misses: 1,
                error: true
            }
        );
        assert!(matches!(meta(b"STORED\r\n", Kind::Set), Scan::Desync(_)));
    }

    fn bin(opcode: u8, status: u16, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x81, opcode, 0, 0, 0, 0];
        v.extend_from_slice(&status.to_be_bytes());
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(&[0; 12]);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn binary_single_and_multi() {
        let hit = bin(0x00, 0, b"\0\0\0\0val");
        assert_eq!(binary(&hit, Kind::Get(1)), reply(hit.len(), 1, 0));
        let miss = bin(0x00, 1, b"Not found");
        assert_eq!(binary(&miss, Kind::Get(1)), reply(miss.len(), 0, 1));
        let set = bin(0x01, 0, b"");
        assert_eq!(binary(&set, Kind::Set), reply(24, 0, 0));
        let mut multi = bin(0x0d, 0, b"\0\0\0\0kv");
        multi.extend(bin(0x0d, 0, b"\0\0\0\0kv"));
        multi.extend(bin(0x0a, 0, b""));
        assert_eq!(binary(&multi, Kind::Get(5)), reply(multi.len(), 2, 3));
        for cut in 0..multi.len() {
            assert_eq!(binary(&multi[..cut], Kind::Get(5)), Scan::Incomplete);
        }
        let oom = bin(0x01, 0x82, b"Out of memory");
        assert!(matches!(
            binary(&oom, Kind::Set),
            Scan::Reply { error: true, .. }
        ));
        assert!(matches!(binary(&[0x80; 24], Kind::Set), Scan::Desync(_)));
    }
}
