//! Parsing what a memcached server sends back, text and meta replies,
//! incrementally and in place (see the module above for the conventions).

use std::ops::Range;

/// Longest reply line accepted before the input is declared malformed; a
/// server never sends status lines anywhere near this long, so a longer one
/// means the stream is not memcached protocol and buffering more is pointless.
pub const MAX_LINE: usize = 64 * 1024;

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

/// Find the value of one meta flag (`f`, `c`, `t`, `k`, ...) among a meta
/// reply's flags, e.g. `meta_flag(b"f5 c9", b'c') == Some(b"9")`.
pub fn meta_flag(flags: &[u8], flag: u8) -> Option<&[u8]> {
    flags
        .split(|&c| c == b' ')
        .find(|t| t.first() == Some(&flag))
        .map(|t| &t[1..])
}
