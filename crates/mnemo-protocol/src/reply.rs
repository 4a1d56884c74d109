//! Client side of the memcached protocols, with no I/O: encode requests and
//! parse what a server sends back.
//!
//! Parsing is incremental and in place: [`parse_reply`] looks at the front of
//! a read buffer and either returns one reply element together with the
//! number of bytes it occupies, says that more bytes are needed (`Ok(None)`),
//! or reports malformed input. It never panics and never copies: keys, values
//! and messages are returned as ranges into the buffer that was parsed.
//!
//! A retrieval reply (`get`, `gets`, `gat`, `gats`) is a sequence of
//! [`Reply::Value`] elements closed by [`Reply::End`]; `stats` is a sequence of
//! [`Reply::Stat`] closed by [`Reply::End`]; every other reply is a single
//! element. The caller loops, consuming `used` bytes after each element.
//!
//! ```
//! use mnemo_protocol::reply::{self, Reply};
//!
//! let mut out = Vec::new();
//! reply::encode_get(&mut out, [&b"a"[..], &b"b"[..]]);
//! assert_eq!(out, b"get a b\r\n");
//!
//! let buf = b"VALUE a 5 3\r\nxyz\r\nEND\r\n";
//! let mut pos = 0;
//! let mut values = Vec::new();
//! loop {
//!     match reply::parse_reply(&buf[pos..]) {
//!         Ok(Some((Reply::Value { key, flags, data, .. }, used))) => {
//!             // Ranges are relative to the slice handed to parse_reply.
//!             let base = pos;
//!             values.push((&buf[base + key.start..base + key.end], flags,
//!                          &buf[base + data.start..base + data.end]));
//!             pos += used;
//!         }
//!         Ok(Some((Reply::End, used))) => { pos += used; break; }
//!         Ok(Some((other, _))) => panic!("unexpected {other:?}"),
//!         Ok(None) => panic!("need more bytes"),
//!         Err(e) => panic!("malformed: {e:?}"),
//!     }
//! }
//! assert_eq!(values, vec![(&b"a"[..], 5, &b"xyz"[..])]);
//! assert_eq!(pos, buf.len());
//! ```

use std::ops::Range;

/// Longest reply line accepted before the input is declared malformed; a
/// server never sends status lines anywhere near this long, so a longer one
/// means the stream is not memcached protocol and buffering more is pointless.
pub const MAX_LINE: usize = 64 * 1024;

/// Longest key memcached accepts.
pub const MAX_KEY: usize = 250;

/// Status code of a meta-protocol reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStatus {
    /// `HD`: success, no value.
    Hd,
    /// `VA <size>`: success with a value (see [`Reply::Meta::data`]).
    Va,
    /// `EN`: miss.
    En,
    /// `NF`: not found.
    Nf,
    /// `NS`: not stored.
    Ns,
    /// `EX`: CAS mismatch.
    Ex,
    /// `MN`: answer to the `mn` no-op.
    Mn,
    /// `ME <key> ...`: answer to `me` (debug).
    Me,
}

/// One element of a server reply. Ranges index into the slice given to
/// [`parse_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
    Value {
        key: Range<usize>,
        flags: u32,
        data: Range<usize>,
        cas: Option<u64>,
    },
    /// `END`: closes a retrieval or stats reply.
    End,
    /// `STORED`: a storage command succeeded.
    Stored,
    /// `NOT_STORED`: add/replace/append/prepend condition not met.
    NotStored,
    /// `EXISTS`: cas with a stale unique.
    Exists,
    /// `NOT_FOUND`: delete/incr/decr/touch/cas on a missing key.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
    /// `OK`: flush_all, verbosity and other administrative commands.
    Ok,
    /// `RESET`, the answer to `stats reset`.
    Reset,
    /// The decimal answer to `incr`/`decr`.
    Number(u64),
    /// `VERSION <version>`.
    Version(Range<usize>),
    /// `STAT <name> <value>`.
    Stat {
        name: Range<usize>,
        value: Range<usize>,
    },
    /// `ERROR`: the server did not recognise the command.
    Error,
    /// `CLIENT_ERROR <message>`.
    ClientError(Range<usize>),
    /// `SERVER_ERROR <message>`.
    ServerError(Range<usize>),
    /// A meta reply: status, its flags (the rest of the line, possibly empty)
    /// and, for `VA`, the value.
    Meta {
        status: MetaStatus,
        flags: Range<usize>,
        data: Option<Range<usize>>,
    },
}

impl Reply {
    /// True for `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR`.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            Reply::Error | Reply::ClientError(_) | Reply::ServerError(_)
        )
    }
}

/// Why a reply could not be parsed. The stream cannot be resynchronised
/// after any of these: the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// No line terminator within [`MAX_LINE`] bytes.
    LineTooLong,
    /// The line is not a reply memcached sends.
    UnknownReply,
    /// A known reply with missing or malformed fields.
    BadFormat,
    /// A value's data block is not followed by `\r\n`.
    BadDataTerminator,
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ReplyError::LineTooLong => "reply line too long",
            ReplyError::UnknownReply => "unknown reply",
            ReplyError::BadFormat => "malformed reply line",
            ReplyError::BadDataTerminator => "value not terminated by CRLF",
        };
        f.write_str(s)
    }
}

impl std::error::Error for ReplyError {}

/// Parse one reply element from the front of `buf`.
///
/// Returns `Ok(Some((reply, used)))` when a whole element is present (`used`
/// bytes, including any data block, belong to it), `Ok(None)` when more bytes
/// are needed, and `Err` when the input cannot be memcached protocol.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let nl = match memchr::memchr(b'\n', buf) {
        Some(i) => i,
        None if buf.len() > MAX_LINE => return Err(ReplyError::LineTooLong),
        None => return Ok(None),
    };
    if nl > MAX_LINE {
        return Err(ReplyError::LineTooLong);
    }
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[..line_end];
    let used = nl + 1;
    let mut toks = Tokens::new(line);
    let first = match toks.next() {
        Some(r) => r,
        None => return Err(ReplyError::UnknownReply),
    };
    let word = &line[first.clone()];
    // The remainder of the line after the first word and one space, for
    // replies that carry free text.
    let rest = || {
        let start = (first.end + 1).min(line_end);
        start..line_end
    };
    let simple = |r: Reply| -> Result<Option<(Reply, usize)>, ReplyError> {
        if first.start != 0 || first.end != line_end {
            return Err(ReplyError::BadFormat);
        }
        Ok(Some((r, used)))
    };
    match word {
        b"VALUE" => {
            let key = toks.next().ok_or(ReplyError::BadFormat)?;
            let flags = toks
                .next()
                .and_then(|r| parse_u64(&line[r]))
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(ReplyError::BadFormat)?;
            let len = toks
                .next()
                .and_then(|r| parse_u64(&line[r]))
                .and_then(|v| usize::try_from(v).ok())
                .ok_or(ReplyError::BadFormat)?;
            let cas = match toks.next() {
                Some(r) => Some(parse_u64(&line[r]).ok_or(ReplyError::BadFormat)?),
                None => None,
            };
            if toks.next().is_some() {
                return Err(ReplyError::BadFormat);
            }
            let data = data_block(buf, used, len)?;
            Ok(data.map(|(data, total)| {
                (
                    Reply::Value {
                        key,
                        flags,
                        data,
                        cas,
                    },
                    total,
                )
            }))
        }
        b"END" => simple(Reply::End),
        b"STORED" => simple(Reply::Stored),
        b"NOT_STORED" => simple(Reply::NotStored),
        b"EXISTS" => simple(Reply::Exists),
        b"NOT_FOUND" => simple(Reply::NotFound),
        b"DELETED" => simple(Reply::Deleted),
        b"TOUCHED" => simple(Reply::Touched),
        b"OK" => simple(Reply::Ok),
        b"RESET" => simple(Reply::Reset),
        b"ERROR" => Ok(Some((Reply::Error, used))),
        b"CLIENT_ERROR" => Ok(Some((Reply::ClientError(rest()), used))),
        b"SERVER_ERROR" => Ok(Some((Reply::ServerError(rest()), used))),
        b"VERSION" => Ok(Some((Reply::Version(rest()), used))),
        b"STAT" => {
            let name = toks.next().ok_or(ReplyError::BadFormat)?;
            let value_start = (name.end + 1).min(line_end);
            Ok(Some((
                Reply::Stat {
                    name,
                    value: value_start..line_end,
                },
                used,
            )))
        }
        b"HD" | b"EN" | b"NF" | b"NS" | b"EX" | b"MN" | b"ME" => {
            let status = match word {
                b"HD" => MetaStatus::Hd,
                b"EN" => MetaStatus::En,
                b"NF" => MetaStatus::Nf,
                b"NS" => MetaStatus::Ns,
                b"EX" => MetaStatus::Ex,
                b"MN" => MetaStatus::Mn,
                _ => MetaStatus::Me,
            };
            Ok(Some((
                Reply::Meta {
                    status,
                    flags: rest(),
                    data: None,
                },
                used,
            )))
        }
        b"VA" => {
            let len = toks
                .next()
                .and_then(|r| parse_u64(&line[r.clone()]).map(|v| (r, v)))
                .and_then(|(r, v)| usize::try_from(v).ok().map(|v| (r, v)))
                .ok_or(ReplyError::BadFormat)?;
            let flags_start = (len.0.end + 1).min(line_end);
            let data = data_block(buf, used, len.1)?;
            Ok(data.map(|(data, total)| {
                (
                    Reply::Meta {
                        status: MetaStatus::Va,
                        flags: flags_start..line_end,
                        data: Some(data),
                    },
                    total,
                )
            }))
        }
        w if w.first().is_some_and(u8::is_ascii_digit) => {
            // incr/decr answer; memcached pads nothing but older servers
            // appended spaces, so only the first token counts.
            let n = parse_u64(w).ok_or(ReplyError::BadFormat)?;
            Ok(Some((Reply::Number(n), used)))
        }
        _ => Err(ReplyError::UnknownReply),
    }
}

/// Locate a `len`-byte data block starting at `start`, followed by `\r\n`.
/// Returns its range and the total bytes used through the terminator.
fn data_block(
    buf: &[u8],
    start: usize,
    len: usize,
) -> Result<Option<(Range<usize>, usize)>, ReplyError> {
    let end = start.checked_add(len).ok_or(ReplyError::BadFormat)?;
    let total = end.checked_add(2).ok_or(ReplyError::BadFormat)?;
    if buf.len() < total {
        return Ok(None);
    }
    if &buf[end..total] != b"\r\n" {
        return Err(ReplyError::BadDataTerminator);
    }
    Ok(Some((start..end, total)))
}

/// Parse a non-empty run of ASCII digits into a u64, rejecting overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Space-separated tokens of a line, as ranges.
struct Tokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn new(line: &'a [u8]) -> Self {
        Tokens { line, pos: 0 }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Range<usize>;
    fn next(&mut self) -> Option<Range<usize>> {
        while self.pos < self.line.len() && self.line[self.pos] == b' ' {
            self.pos += 1;
        }
        if self.pos >= self.line.len() {
            return None;
        }
        let start = self.pos;
        while self.pos < self.line.len() && self.line[self.pos] != b' ' {
            self.pos += 1;
        }
        Some(start..self.pos)
    }
}

/// True if memcached's text protocol accepts `key`: 1 to 250 bytes, no
/// spaces or control characters.
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && key.iter().all(|&c| c > b' ' && c != 0x7f)
}

/// Append the decimal form of `v` without going through `fmt`.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Append the decimal form of a signed value (exptimes may be negative).
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

fn encode_keys<'k>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = &'k [u8]>) {
    for k in keys {
        out.push(b' ');
        out.extend_from_slice(k);
    }
    out.extend_from_slice(b"\r\n");
}

/// `get <key>*`
pub fn encode_get<'k>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = &'k [u8]>) {
    out.extend_from_slice(b"get");
    encode_keys(out, keys);
}

/// `gets <key>*`
pub fn encode_gets<'k>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = &'k [u8]>) {
    out.extend_from_slice(b"gets");
    encode_keys(out, keys);
}

/// `gat <exptime> <key>*` (or `gats` with `with_cas`).
pub fn encode_gat<'k>(
    out: &mut Vec<u8>,
    with_cas: bool,
    exptime: i64,
    keys: impl IntoIterator<Item = &'k [u8]>,
) {
    out.extend_from_slice(if with_cas { b"gats " } else { b"gat " });
    push_i64(out, exptime);
    encode_keys(out, keys);
}

/// The storage commands of the text protocol (`cas` has its own encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCmd {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

impl StoreCmd {
    /// The command word as sent.
    pub fn name(self) -> &'static [u8] {
        match self {
            StoreCmd::Set => b"set",
            StoreCmd::Add => b"add",
            StoreCmd::Replace => b"replace",
            StoreCmd::Append => b"append",
            StoreCmd::Prepend => b"prepend",
        }
    }
}

fn noreply(out: &mut Vec<u8>, noreply: bool) {
    if noreply {
        out.extend_from_slice(b" noreply");
    }
    out.extend_from_slice(b"\r\n");
}

/// `<cmd> <key> <flags> <exptime> <bytes> [noreply]\r\n<data>\r\n`
pub fn encode_store(
    out: &mut Vec<u8>,
    cmd: StoreCmd,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    no_reply: bool,
) {
    out.extend_from_slice(cmd.name());
    store_tail(out, key, flags, exptime, data, None, no_reply);
}

/// `cas <key> <flags> <exptime> <bytes> <cas> [noreply]\r\n<data>\r\n`
pub fn encode_cas(
    out: &mut Vec<u8>,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    cas: u64,
    no_reply: bool,
) {
    out.extend_from_slice(b"cas");
    store_tail(out, key, flags, exptime, data, Some(cas), no_reply);
}

fn store_tail(
    out: &mut Vec<u8>,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    cas: Option<u64>,
    no_reply: bool,
) {
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, u64::from(flags));
    out.push(b' ');
    push_i64(out, exptime);
    out.push(b' ');
    push_u64(out, data.len() as u64);
    if let Some(c) = cas {
        out.push(b' ');
        push_u64(out, c);
    }
    noreply(out, no_reply);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `delete <key> [noreply]`
pub fn encode_delete(out: &mut Vec<u8>, key: &[u8], no_reply: bool) {
    out.extend_from_slice(b"delete ");
    out.extend_from_slice(key);
    noreply(out, no_reply);
}

/// `incr <key> <delta> [noreply]` or `decr ...` when `incr` is false.
pub fn encode_arith(out: &mut Vec<u8>, incr: bool, key: &[u8], delta: u64, no_reply: bool) {
    out.extend_from_slice(if incr { b"incr " } else { b"decr " });
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, delta);
    noreply(out, no_reply);
}

/// `touch <key> <exptime> [noreply]`
pub fn encode_touch(out: &mut Vec<u8>, key: &[u8], exptime: i64, no_reply: bool) {
    out.extend_from_slice(b"touch ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_i64(out, exptime);
    noreply(out, no_reply);
}

/// `version`
pub fn encode_version(out: &mut Vec<u8>) {
    out.extend_from_slice(b"version\r\n");
}

/// `flush_all [delay] [noreply]`
pub fn encode_flush_all(out: &mut Vec<u8>, delay: Option<u32>, no_reply: bool) {
    out.extend_from_slice(b"flush_all");
    if let Some(d) = delay {
        out.push(b' ');
        push_u64(out, u64::from(d));
    }
    noreply(out, no_reply);
}

/// `verbosity <level> [noreply]`
pub fn encode_verbosity(out: &mut Vec<u8>, level: u32, no_reply: bool) {
    out.extend_from_slice(b"verbosity ");
    push_u64(out, u64::from(level));
    noreply(out, no_reply);
}

/// `stats [group]`
pub fn encode_stats(out: &mut Vec<u8>, group: Option<&[u8]>) {
    out.extend_from_slice(b"stats");
    if let Some(g) = group {
        out.push(b' ');
        out.extend_from_slice(g);
    }
    out.extend_from_slice(b"\r\n");
}

fn meta_flags(out: &mut Vec<u8>, flags: &[u8]) {
    if !flags.is_empty() {
        out.push(b' ');
        out.extend_from_slice(flags);
    }
    out.extend_from_slice(b"\r\n");
}

/// `mg <key> <flags>`; `flags` is the raw flag text, e.g. `b"v f t"`.
pub fn encode_meta_get(out: &mut Vec<u8>, key: &[u8], flags: &[u8]) {
    out.extend_from_slice(b"mg ");
    out.extend_from_slice(key);
    meta_flags(out, flags);
}

/// `ms <key> <datalen> <flags>\r\n<data>\r\n`
pub fn encode_meta_set(out: &mut Vec<u8>, key: &[u8], data: &[u8], flags: &[u8]) {
    out.extend_from_slice(b"ms ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, data.len() as u64);
    meta_flags(out, flags);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `md <key> <flags>`
pub fn encode_meta_delete(out: &mut Vec<u8>, key: &[u8], flags: &[u8]) {
    out.extend_from_slice(b"md ");
    out.extend_from_slice(key);
    meta_flags(out, flags);
}

/// `ma <key> <flags>`
pub fn encode_meta_arith(out: &mut Vec<u8>, key: &[u8], flags: &[u8]) {
    out.extend_from_slice(b"ma ");
    out.extend_from_slice(key);
    meta_flags(out, flags);
}

/// `mn`, whose `MN` answer marks the end of a batch of quiet meta requests.
pub fn encode_meta_noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"mn\r\n");
}

/// Find the value of one meta flag (`f`, `c`, `t`, `k`, ...) among a meta
/// reply's flags, e.g. `meta_flag(b"f5 c9", b'c') == Some(b"9")`.
pub fn meta_flag(flags: &[u8], flag: u8) -> Option<&[u8]> {
    flags
        .split(|&c| c == b' ')
        .find(|t| t.first() == Some(&flag))
        .map(|t| &t[1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(buf: &[u8]) -> (Reply, usize) {
        match parse_reply(buf) {
            Ok(Some(r)) => r,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn simple_lines() {
        for (line, want) in [
            (&b"STORED\r\n"[..], Reply::Stored),
            (b"NOT_STORED\r\n", Reply::NotStored),
            (b"EXISTS\r\n", Reply::Exists),
            (b"NOT_FOUND\r\n", Reply::NotFound),
            (b"DELETED\r\n", Reply::Deleted),
            (b"TOUCHED\r\n", Reply::Touched),
            (b"OK\r\n", Reply::Ok),
            (b"END\r\n", Reply::End),
            (b"ERROR\r\n", Reply::Error),
            (b"42\r\n", Reply::Number(42)),
            (b"RESET\r\n", Reply::Reset),
        ] {
            assert_eq!(one(line), (want, line.len()));
        }
    }

    #[test]
    fn messages() {
        let b = b"SERVER_ERROR out of memory\r\n";
        assert_eq!(one(b), (Reply::ServerError(13..26), b.len()));
        let b = b"CLIENT_ERROR bad data chunk\r\n";
        let (r, _) = one(b);
        match r {
            Reply::ClientError(m) => assert_eq!(&b[m], b"bad data chunk"),
            _ => panic!(),
        }
        let b = b"VERSION 1.6.18\r\n";
        match one(b).0 {
            Reply::Version(v) => assert_eq!(&b[v], b"1.6.18"),
            _ => panic!(),
        }
        let b = b"STAT curr_items 12\r\n";
        match one(b).0 {
            Reply::Stat { name, value } => {
                assert_eq!(&b[name], b"curr_items");
                assert_eq!(&b[value], b"12");
            }
            _ => panic!(),
        }
    }

    #[test]
    fn value_with_and_without_cas() {
        let b = b"VALUE k 1 2 99\r\nab\r\nEND\r\n";
        let (r, used) = one(b);
        assert_eq!(used, 20);
        match r {
            Reply::Value {
                key,
                flags,
                data,
                cas,
            } => {
                assert_eq!(&b[key], b"k");
                assert_eq!(flags, 1);
                assert_eq!(&b[data], b"ab");
                assert_eq!(cas, Some(99));
            }
            _ => panic!(),
        }
        assert_eq!(one(&b[used..]), (Reply::End, 5));
        // Data containing CRLF is opaque.
        let b = b"VALUE k 0 4\r\n\r\n\r\n\r\n";
        assert_eq!(one(b).1, b.len());
    }

    #[test]
    fn incomplete_then_complete() {
        let b = b"VALUE key 0 10\r\n0123456789\r\n";
        for cut in 0..b.len() {
            assert_eq!(parse_reply(&b[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(one(b).1, b.len());
    }

    #[test]
    fn meta_replies() {
        let b = b"VA 3 f5 c7\r\nabc\r\n";
        match one(b) {
            (
                Reply::Meta {
                    status: MetaStatus::Va,
                    flags,
                    data: Some(d),
                },
                used,
            ) => {
                assert_eq!(&b[flags.clone()], b"f5 c7");
                assert_eq!(meta_flag(&b[flags], b'c'), Some(&b"7"[..]));
                assert_eq!(&b[d], b"abc");
                assert_eq!(used, b.len());
            }
            other => panic!("{other:?}"),
        }
        for (b, s) in [
            (&b"HD\r\n"[..], MetaStatus::Hd),
            (b"EN\r\n", MetaStatus::En),
            (b"NF\r\n", MetaStatus::Nf),
            (b"NS\r\n", MetaStatus::Ns),
            (b"EX\r\n", MetaStatus::Ex),
            (b"MN\r\n", MetaStatus::Mn),
            (b"HD c1 kfoo\r\n", MetaStatus::Hd),
        ] {
            match one(b).0 {
                Reply::Meta { status, data, .. } => {
                    assert_eq!(status, s);
                    assert_eq!(data, None);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_reply(b"BOGUS\r\n"), Err(ReplyError::UnknownReply));
        assert_eq!(parse_reply(b"\r\n"), Err(ReplyError::UnknownReply));
        assert_eq!(parse_reply(b"STORED x\r\n"), Err(ReplyError::BadFormat));
        assert_eq!(parse_reply(b"VALUE k x 1\r\n"), Err(ReplyError::BadFormat));
        assert_eq!(
            parse_reply(b"VALUE k 0 1\r\nabc\r\n"),
            Err(ReplyError::BadDataTerminator)
        );
        assert_eq!(
            parse_reply(b"VALUE k 0 99999999999999999999999\r\n"),
            Err(ReplyError::BadFormat)
        );
        assert_eq!(
            parse_reply(&vec![b'a'; MAX_LINE + 1]),
            Err(ReplyError::LineTooLong)
        );
    }

    #[test]
    fn encoders() {
        let mut o = Vec::new();
        encode_store(&mut o, StoreCmd::Set, b"k", 3, -1, b"data", false);
        assert_eq!(o, b"set k 3 -1 4\r\ndata\r\n");
        o.clear();
        encode_cas(&mut o, b"k", 0, 0, b"", 77, true);
        assert_eq!(o, b"cas k 0 0 0 77 noreply\r\n\r\n");
        o.clear();
        encode_arith(&mut o, false, b"n", 5, false);
        encode_delete(&mut o, b"n", true);
        encode_touch(&mut o, b"n", 10, false);
        encode_gat(&mut o, true, 5, [&b"a"[..]]);
        assert_eq!(
            o,
            b"decr n 5\r\ndelete n noreply\r\ntouch n 10\r\ngats 5 a\r\n"
        );
        o.clear();
        encode_meta_set(&mut o, b"k", b"xy", b"T0 F1");
        encode_meta_get(&mut o, b"k", b"");
        encode_meta_noop(&mut o);
        assert_eq!(o, b"ms k 2 T0 F1\r\nxy\r\nmg k\r\nmn\r\n");
        o.clear();
        push_u64(&mut o, u64::MAX);
        assert_eq!(o, u64::MAX.to_string().as_bytes());
    }

    proptest! {
        // Arbitrary bytes never panic, and anything accepted stays in bounds.
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((r, used))) = parse_reply(&buf) {
                prop_assert!(used <= buf.len());
                if let Reply::Value { key, data, .. } = r {
                    prop_assert!(key.end <= used && data.end <= used);
                }
            }
        }

        // An encoded VALUE round-trips, whatever the data, and every strict
        // prefix asks for more bytes.
        #[test]
        fn value_roundtrip(
            key in "[a-zA-Z0-9_:.-]{1,250}",
            flags in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 0..512),
            cas in proptest::option::of(any::<u64>()),
        ) {
            let mut b = format!("VALUE {key} {flags} {}", data.len()).into_bytes();
            if let Some(c) = cas { b.extend_from_slice(format!(" {c}").as_bytes()); }
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(&data);
            b.extend_from_slice(b"\r\nEND\r\n");
            let (r, used) = parse_reply(&b).unwrap().unwrap();
            match r {
                Reply::Value { key: k, flags: f, data: d, cas: c } => {
                    prop_assert_eq!(&b[k], key.as_bytes());
                    prop_assert_eq!(f, flags);
                    prop_assert_eq!(&b[d], &data[..]);
                    prop_assert_eq!(c, cas);
                }
                _ => prop_assert!(false),
            }
            prop_assert_eq!(parse_reply(&b[used..]).unwrap().unwrap(), (Reply::End, 5));
            for cut in 0..used {
                prop_assert_eq!(parse_reply(&b[..cut]), Ok(None));
            }
        }

        #[test]
        fn meta_value_roundtrip(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            f in any::<u32>(),
        ) {
            let mut b = format!("VA {} f{f}\r\n", data.len()).into_bytes();
            b.extend_from_slice(&data);
            b.extend_from_slice(b"\r\n");
            match parse_reply(&b).unwrap().unwrap() {
                (Reply::Meta { status: MetaStatus::Va, flags, data: Some(d) }, used) => {
                    prop_assert_eq!(used, b.len());
                    prop_assert_eq!(&b[d], &data[..]);
                    let fs = f.to_string();
                    prop_assert_eq!(meta_flag(&b[flags], b'f'), Some(fs.as_bytes()));
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn numbers_roundtrip(n in any::<u64>()) {
            let mut b = Vec::new();
            push_u64(&mut b, n);
            prop_assert_eq!(parse_u64(&b), Some(n));
            b.extend_from_slice(b"\r\n");
            prop_assert_eq!(parse_reply(&b).unwrap().unwrap().0, Reply::Number(n));
        }
    }
}

/// The binary protocol: 24-byte headers, requests encoded and packets
/// parsed in place, with the same conventions as the text side (`Ok(None)`
/// for "need more bytes", ranges into the parsed slice, no panics).
///
/// ```
/// use mnemo_protocol::reply::binary::{self, Opcode};
///
/// let mut out = Vec::new();
/// binary::encode_get(&mut out, Opcode::GetK, b"key", 7);
/// assert_eq!(out.len(), 24 + 3);
/// let (p, used) = binary::parse_packet(&out).unwrap().unwrap();
/// assert_eq!(used, out.len());
/// assert_eq!(p.header.opcode, Opcode::GetK as u8);
/// assert_eq!(&out[p.key], b"key");
/// ```
pub mod binary {
    use super::ReplyError;
    use std::ops::Range;

    pub const REQUEST_MAGIC: u8 = 0x80;
    pub const RESPONSE_MAGIC: u8 = 0x81;
    pub const HEADER_LEN: usize = 24;
    /// Largest body accepted; memcached's own item limit is far below.
    pub const MAX_BODY: u32 = 64 * 1024 * 1024;

    /// Response status codes.
    pub mod status {
        pub const OK: u16 = 0x0000;
        pub const KEY_NOT_FOUND: u16 = 0x0001;
        pub const KEY_EXISTS: u16 = 0x0002;
        pub const VALUE_TOO_LARGE: u16 = 0x0003;
        pub const INVALID_ARGUMENTS: u16 = 0x0004;
        pub const NOT_STORED: u16 = 0x0005;
        pub const NON_NUMERIC: u16 = 0x0006;
        pub const UNKNOWN_COMMAND: u16 = 0x0081;
        pub const OUT_OF_MEMORY: u16 = 0x0082;
    }

    /// Opcodes of the binary protocol.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Opcode {
        Get = 0x00,
        Set = 0x01,
        Add = 0x02,
        Replace = 0x03,
        Delete = 0x04,
        Increment = 0x05,
        Decrement = 0x06,
        Quit = 0x07,
        Flush = 0x08,
        GetQ = 0x09,
        Noop = 0x0a,
        Version = 0x0b,
        GetK = 0x0c,
        GetKQ = 0x0d,
        Append = 0x0e,
        Prepend = 0x0f,
        Stat = 0x10,
        SetQ = 0x11,
        AddQ = 0x12,
        ReplaceQ = 0x13,
        DeleteQ = 0x14,
        IncrementQ = 0x15,
        DecrementQ = 0x16,
        QuitQ = 0x17,
        FlushQ = 0x18,
        AppendQ = 0x19,
        PrependQ = 0x1a,
        Verbosity = 0x1b,
        Touch = 0x1c,
        Gat = 0x1d,
        GatQ = 0x1e,
        GatK = 0x23,
        GatKQ = 0x24,
    }

    impl Opcode {
        pub fn from_u8(b: u8) -> Option<Opcode> {
            use Opcode::*;
            Some(match b {
                0x00 => Get,
                0x01 => Set,
                0x02 => Add,
                0x03 => Replace,
                0x04 => Delete,
                0x05 => Increment,
                0x06 => Decrement,
                0x07 => Quit,
                0x08 => Flush,
                0x09 => GetQ,
                0x0a => Noop,
                0x0b => Version,
                0x0c => GetK,
                0x0d => GetKQ,
                0x0e => Append,
                0x0f => Prepend,
                0x10 => Stat,
                0x11 => SetQ,
                0x12 => AddQ,
                0x13 => ReplaceQ,
                0x14 => DeleteQ,
                0x15 => IncrementQ,
                0x16 => DecrementQ,
                0x17 => QuitQ,
                0x18 => FlushQ,
                0x19 => AppendQ,
                0x1a => PrependQ,
                0x1b => Verbosity,
                0x1c => Touch,
                0x1d => Gat,
                0x1e => GatQ,
                0x23 => GatK,
                0x24 => GatKQ,
                _ => return None,
            })
        }

        /// The quiet variants answer only errors (and, for gets, hits).
        pub fn is_quiet(self) -> bool {
            use Opcode::*;
            matches!(
                self,
                GetQ | GetKQ
                    | SetQ
                    | AddQ
                    | ReplaceQ
                    | DeleteQ
                    | IncrementQ
                    | DecrementQ
                    | QuitQ
                    | FlushQ
                    | AppendQ
                    | PrependQ
                    | GatQ
                    | GatKQ
            )
        }
    }

    /// A packet header. `status` is the vbucket field in requests.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Header {
        pub magic: u8,
        pub opcode: u8,
        pub key_len: u16,
        pub extras_len: u8,
        pub data_type: u8,
        pub status: u16,
        pub body_len: u32,
        pub opaque: u32,
        pub cas: u64,
    }

    impl Header {
        /// Decode the first 24 bytes of `b` (None if shorter).
        pub fn decode(b: &[u8]) -> Option<Header> {
            let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
            Some(Header {
                magic: b[0],
                opcode: b[1],
                key_len: u16::from_be_bytes([b[2], b[3]]),
                extras_len: b[4],
                data_type: b[5],
                status: u16::from_be_bytes([b[6], b[7]]),
                body_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
                cas: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
            })
        }

        pub fn encode(&self, out: &mut Vec<u8>) {
            out.push(self.magic);
            out.push(self.opcode);
            out.extend_from_slice(&self.key_len.to_be_bytes());
            out.push(self.extras_len);
            out.push(self.data_type);
            out.extend_from_slice(&self.status.to_be_bytes());
            out.extend_from_slice(&self.body_len.to_be_bytes());
            out.extend_from_slice(&self.opaque.to_be_bytes());
            out.extend_from_slice(&self.cas.to_be_bytes());
        }
    }

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
            key_len: key.len() as u16,
            extras_len: extras.len() as u8,
            data_type: 0,
            status: 0,
            body_len: (extras.len() + key.len() + value.len()) as u32,
            opaque,
            cas,
        }
        .encode(out);
        out.extend_from_slice(extras);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
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

    /// A response packet (used by servers and proxies answering binary
    /// clients).
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
            key_len: key.len() as u16,
            extras_len: extras.len() as u8,
            data_type: 0,
            status,
            body_len: (extras.len() + key.len() + value.len()) as u32,
            opaque,
            cas,
        }
        .encode(out);
        out.extend_from_slice(extras);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }

    #[cfg(test)]
    mod tests {
        use super::*;
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
}
