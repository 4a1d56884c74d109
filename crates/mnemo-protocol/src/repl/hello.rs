//! The replication handshake: one text line from the receiving node on
//! the peer's ordinary client port, one line back, then frames.
//!
//! ```text
//! mn_repl HELLO <node-id> <proto-version> <replid> <offset> <since>
//!   MN_REPL CONTINUE <replid> <offset>      partial resync from <offset>
//!   MN_REPL FULLRESYNC <replid> <offset>    full copy, then the stream at <offset>
//!   CLIENT_ERROR <reason>                   refused; the peer closes
//!   ERROR                                   not a mnemo with replication
//! ```
//!
//! Numbers are decimal, `replid` 16 hex digits. Parsing is strict (single
//! spaces, no signs, no leading `+`), since only mnemo writes these lines.

/// What this build speaks; a HELLO with another is refused.
pub const PROTO_VERSION: u32 = 2;

/// The command word a HELLO line starts with, for the server's dispatch.
pub const COMMAND: &[u8] = b"mn_repl";

/// Under SASL (`-S`, binary protocol only) the HELLO is a binary request
/// with this opcode, which memcached does not use (it answers
/// UNKNOWN_COMMAND): the HELLO line is its key, there is no extras or
/// value. The answer is a binary response with the same opcode whose
/// value is the answer line; frames follow.
pub const BINARY_OPCODE: u8 = 0xe0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The receiving node's id, 1..=255.
    pub node_id: u8,
    pub proto: u32,
    /// The sender's stream the receiver last followed (0: none).
    pub replid: u64,
    /// Where in that stream the receiver has applied up to.
    pub offset: u64,
    /// No version the receiver drew since it started is below this: the
    /// sender need not send its writes at or above it back (a SKIP
    /// stands in for them). 0: send everything.
    pub since: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    Continue {
        replid: u64,
        offset: u64,
    },
    FullResync {
        replid: u64,
        offset: u64,
    },
    /// `CLIENT_ERROR <reason>`.
    Refused(&'a [u8]),
    /// `ERROR`: a memcached, or a mnemo without replication.
    NotSupported,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloError {
    /// Not the line's shape (words, their number, the command).
    Malformed,
    BadNumber,
    NodeZero,
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HelloError::Malformed => "malformed replication handshake",
            HelloError::BadNumber => "bad number in replication handshake",
            HelloError::NodeZero => "node id 0 in replication handshake",
        })
    }
}

impl std::error::Error for HelloError {}

fn decimal(s: &[u8]) -> Result<u64, HelloError> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return Err(HelloError::BadNumber);
    }
    s.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(d - b'0')))
            .ok_or(HelloError::BadNumber)
    })
}

fn hex16(s: &[u8]) -> Result<u64, HelloError> {
    if s.len() != 16 {
        return Err(HelloError::BadNumber);
    }
    s.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return Err(HelloError::BadNumber),
        };
        Ok((acc << 4) | u64::from(v))
    })
}

/// Splits a line (without its `\r\n`) into exactly `N` single-space
/// separated words.
fn words<const N: usize>(line: &[u8]) -> Result<[&[u8]; N], HelloError> {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut it = line.split(|&b| b == b' ');
    for w in out.iter_mut() {
        match it.next() {
            Some(x) if !x.is_empty() => *w = x,
            _ => return Err(HelloError::Malformed),
        }
    }
    if it.next().is_some() {
        return Err(HelloError::Malformed);
    }
    Ok(out)
}

/// Parses a HELLO line, without its `\r\n`.
pub fn parse_hello(line: &[u8]) -> Result<Hello, HelloError> {
    let [cmd, verb, node, proto, replid, offset, since] = words::<7>(line)?;
    if cmd != COMMAND || verb != b"HELLO" {
        return Err(HelloError::Malformed);
    }
    let node = decimal(node)?;
    let node_id = u8::try_from(node).map_err(|_| HelloError::BadNumber)?;
    if node_id == 0 {
        return Err(HelloError::NodeZero);
    }
    let proto = u32::try_from(decimal(proto)?).map_err(|_| HelloError::BadNumber)?;
    Ok(Hello {
        node_id,
        proto,
        replid: hex16(replid)?,
        offset: decimal(offset)?,
        since: decimal(since)?,
    })
}

/// Appends a HELLO line with its `\r\n`.
pub fn write_hello(h: &Hello, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "mn_repl HELLO {} {} {:016x} {} {}\r\n",
            h.node_id, h.proto, h.replid, h.offset, h.since
        )
        .as_bytes(),
    );
}

/// A binary HELLO request (see [`BINARY_OPCODE`]).
pub fn binary_hello(h: &Hello, opaque: u32) -> Vec<u8> {
    let mut line = Vec::new();
    write_hello(h, &mut line);
    line.truncate(line.len() - 2);
    let mut p = vec![0x80, BINARY_OPCODE];
    p.extend_from_slice(&(line.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&(line.len() as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&line);
    p
}

/// Appends an answer as a binary response to a binary HELLO: status 0,
/// the answer line (with its `\r\n`) as the value.
pub fn write_binary_reply(r: &Reply<'_>, opaque: u32, out: &mut Vec<u8>) {
    let mut line = Vec::new();
    write_reply(r, &mut line);
    out.extend_from_slice(&[0x81, BINARY_OPCODE, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(line.len() as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&line);
}

/// Parses the peer's answer to a HELLO, without its `\r\n`.
pub fn parse_reply(line: &[u8]) -> Result<Reply<'_>, HelloError> {
    if line == b"ERROR" {
        return Ok(Reply::NotSupported);
    }
    if let Some(reason) = line.strip_prefix(b"CLIENT_ERROR ") {
        return Ok(Reply::Refused(reason));
    }
    let [head, verb, replid, offset] = words::<4>(line)?;
    if head != b"MN_REPL" {
        return Err(HelloError::Malformed);
    }
    let (replid, offset) = (hex16(replid)?, decimal(offset)?);
    match verb {
        b"CONTINUE" => Ok(Reply::Continue { replid, offset }),
        b"FULLRESYNC" => Ok(Reply::FullResync { replid, offset }),
        _ => Err(HelloError::Malformed),
    }
}

/// Appends an answer line with its `\r\n`.
pub fn write_reply(r: &Reply<'_>, out: &mut Vec<u8>) {
    match *r {
        Reply::Continue { replid, offset } => {
            out.extend_from_slice(format!("MN_REPL CONTINUE {replid:016x} {offset}\r\n").as_bytes())
        }
        Reply::FullResync { replid, offset } => out
            .extend_from_slice(format!("MN_REPL FULLRESYNC {replid:016x} {offset}\r\n").as_bytes()),
        Reply::Refused(reason) => {
            out.extend_from_slice(b"CLIENT_ERROR ");
            out.extend_from_slice(reason);
            out.extend_from_slice(b"\r\n");
        }
        Reply::NotSupported => out.extend_from_slice(b"ERROR\r\n"),
    }
}
