//! The replication link's wire format (issue #13, docs/REPLICATION.md
//! section 5): the handshake lines ([`hello`]) and the binary frames that
//! follow them.
//!
//! Everything a peer sends is untrusted: decoding checks every length
//! before using it, bounds a frame by the receiver's item size before
//! waiting for its body, and refuses a frame whose origin node is 0 or
//! does not match the node bits of its version (a forged or mangled
//! origin). Errors are values for a log line; nothing here panics.
//!
//! A frame, integers little-endian: `len:u32` (bytes after itself),
//! `kind:u8`, `origin:u8`, `version:u64`, then the kind's body.

pub mod backlog;
pub mod hello;

use crate::MAX_KEY_LEN;

/// Bytes of `kind`, `origin` and `version`.
const HEAD: usize = 1 + 1 + 8;
/// The largest body besides a SET's value: a SET's fixed fields and key.
const SET_FIXED: usize = 1 + MAX_KEY_LEN + 4 + 8 + 4;

const KIND_SET: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_FLUSH: u8 = 3;
const KIND_COUNTER: u8 = 4;
const KIND_PING: u8 = 5;
const KIND_ACK: u8 = 6;
const KIND_TOUCH: u8 = 7;
const KIND_SKIP: u8 = 8;

/// One frame, borrowing keys and values from the buffer it was decoded
/// from. `origin` is the node that made the write (or sent the PING/ACK);
/// `version` its version, whose low 8 bits are `origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// An item's whole state after a write (`set`, `cas`, `append`,
    /// `touch`... all replicate as this). `exptime`: absolute Unix
    /// seconds, 0 for never.
    Set {
        origin: u8,
        version: u64,
        key: &'a [u8],
        flags: u32,
        exptime: u64,
        value: &'a [u8],
    },
    /// A tombstone.
    Delete {
        origin: u8,
        version: u64,
        key: &'a [u8],
    },
    /// `flush_all`: every entry older than `version` is dead.
    Flush { origin: u8, version: u64 },
    /// Node `origin`'s running totals on the counter whose base write is
    /// `base` (value `base_value`); `version` is the `incr`/`decr`'s own.
    Counter {
        origin: u8,
        version: u64,
        key: &'a [u8],
        base: u64,
        base_value: u64,
        p: u128,
        n: u128,
    },
    /// An item's expiry changed (`touch`, `gat`, `T`) at `version`, on
    /// the value written at version `base` (a counter's base): the value
    /// and a counter's totals stay (a whole-state SET would be a new base
    /// and drop increments made meanwhile elsewhere). `exptime` as in SET.
    Touch {
        origin: u8,
        version: u64,
        key: &'a [u8],
        base: u64,
        exptime: u64,
    },
    /// Sender to receiver, when idle: for lag in milliseconds.
    Ping {
        origin: u8,
        version: u64,
        wall_ms: u64,
    },
    /// Sender to receiver: the stream moves on by `bytes` bytes of frames
    /// not sent, the receiver's own writes of its current run (see
    /// [`returns_to`]), so that its offset stays the stream's.
    Skip {
        origin: u8,
        version: u64,
        bytes: u64,
    },
    /// Receiver to sender: applied up to `offset` of the sender's stream
    /// (`wall_ms`: the latest PING's, echoed for the round trip). Sent
    /// once the other way, it ends a full copy: the stream continues at
    /// `offset`, and `wall_ms` carries the sender's horizon, the greatest
    /// version of a delete it has forgotten (0: none).
    Ack {
        origin: u8,
        version: u64,
        offset: u64,
        wall_ms: u64,
    },
}

impl Record<'_> {
    pub fn origin(&self) -> u8 {
        match *self {
            Record::Set { origin, .. }
            | Record::Delete { origin, .. }
            | Record::Flush { origin, .. }
            | Record::Counter { origin, .. }
            | Record::Touch { origin, .. }
            | Record::Ping { origin, .. }
            | Record::Skip { origin, .. }
            | Record::Ack { origin, .. } => origin,
        }
    }

    pub fn version(&self) -> u64 {
        match *self {
            Record::Set { version, .. }
            | Record::Delete { version, .. }
            | Record::Flush { version, .. }
            | Record::Counter { version, .. }
            | Record::Touch { version, .. }
            | Record::Ping { version, .. }
            | Record::Skip { version, .. }
            | Record::Ack { version, .. } => version,
        }
    }
}

/// Why a frame was refused; each ends the link with a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// `len` is past what this receiver accepts (its `-I`).
    Oversized {
        len: u64,
        max: u64,
    },
    /// `len` is shorter than its kind's fixed fields, or a length inside
    /// runs past the frame.
    Truncated,
    /// Bytes left after the kind's body.
    Trailing,
    UnknownKind(u8),
    /// Empty or longer than [`MAX_KEY_LEN`].
    BadKey,
    /// Origin 0: no node has it.
    NodeZero,
    /// The origin byte disagrees with the version's node bits.
    ForgedOrigin {
        origin: u8,
        version_node: u8,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FrameError::Oversized { len, max } => {
                write!(f, "frame of {len} bytes, limit {max}")
            }
            FrameError::Truncated => f.write_str("frame shorter than its fields"),
            FrameError::Trailing => f.write_str("bytes after the frame's fields"),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadKey => f.write_str("bad key length"),
            FrameError::NodeZero => f.write_str("origin node 0"),
            FrameError::ForgedOrigin {
                origin,
                version_node,
            } => write!(
                f,
                "origin node {origin} does not match version's node {version_node}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// What [`decode`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A frame and how many bytes it took.
    Frame(Record<'a>, usize),
    /// The buffer holds part of a frame (which, as far as it goes, is
    /// acceptable): read more. A stream that ends here was truncated.
    NeedMore,
}

/// The largest frame a receiver whose items hold at most `max_value`
/// bytes of value accepts; its `len` is checked against this before the
/// body arrives, so a peer cannot make us buffer more.
pub fn max_frame_len(max_value: usize) -> u64 {
    (HEAD + SET_FIXED) as u64 + max_value as u64
}

/// A reader over a frame's body that fails rather than reading past it.
struct Body<'a> {
    b: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn u128(&mut self) -> Result<u128, FrameError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    fn key(&mut self) -> Result<&'a [u8], FrameError> {
        let n = usize::from(self.u8()?);
        if n == 0 || n > MAX_KEY_LEN {
            return Err(FrameError::BadKey);
        }
        self.take(n)
    }
}

/// Decodes the frame at the front of `buf`, if it is all there.
pub fn decode(buf: &[u8], max_value: usize) -> Result<Decoded<'_>, FrameError> {
    let Some(len) = buf.get(..4) else {
        return Ok(Decoded::NeedMore);
    };
    let mut l = [0u8; 4];
    l.copy_from_slice(len);
    let len = u64::from(u32::from_le_bytes(l));
    let max = max_frame_len(max_value);
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    if len < HEAD as u64 {
        return Err(FrameError::Truncated);
    }
    // `len <= max`, which came from a usize plus a constant; still, a
    // 32-bit target must not wrap.
    let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(4)) else {
        return Err(FrameError::Oversized { len, max });
    };
    let Some(frame) = buf.get(4..end) else {
        return Ok(Decoded::NeedMore);
    };
    let mut b = Body { b: frame };
    let kind = b.u8()?;
    let origin = b.u8()?;
    let version = b.u64()?;
    if origin == 0 {
        return Err(FrameError::NodeZero);
    }
    if version as u8 != origin {
        return Err(FrameError::ForgedOrigin {
            origin,
            version_node: version as u8,
        });
    }
    let rec = match kind {
        KIND_SET => {
            let key = b.key()?;
            let flags = b.u32()?;
            let exptime = b.u64()?;
            let vlen = b.u32()? as usize;
            if vlen > max_value {
                return Err(FrameError::Oversized {
                    len,
                    max: (HEAD + SET_FIXED + max_value) as u64,
                });
            }
            let value = b.take(vlen)?;
            Record::Set {
                origin,
                version,
                key,
                flags,
                exptime,
                value,
            }
        }
        KIND_DELETE => Record::Delete {
            origin,
            version,
            key: b.key()?,
        },
        KIND_FLUSH => Record::Flush { origin, version },
        KIND_COUNTER => Record::Counter {
            origin,
            version,
            key: b.key()?,
            base: b.u64()?,
            base_value: b.u64()?,
            p: b.u128()?,
            n: b.u128()?,
        },
        KIND_TOUCH => Record::Touch {
            origin,
            version,
            key: b.key()?,
            base: b.u64()?,
            exptime: b.u64()?,
        },
        KIND_PING => Record::Ping {
            origin,
            version,
            wall_ms: b.u64()?,
        },
        KIND_ACK => Record::Ack {
            origin,
            version,
            offset: b.u64()?,
            wall_ms: b.u64()?,
        },
        KIND_SKIP => Record::Skip {
            origin,
            version,
            bytes: b.u64()?,
        },
        k => return Err(FrameError::UnknownKind(k)),
    };
    if !b.b.is_empty() {
        return Err(FrameError::Trailing);
    }
    Ok(Decoded::Frame(rec, end))
}

/// Whether the whole frame `frame` (as [`encode`] wrote it) is a write
/// that node `node` made at or after version `since` (in its current
/// run, which draws no version below it): a SET, COUNTER or TOUCH
/// of its own, which it already holds, so a sender need not send it
/// back. Not a DELETE: the horizon rule deletes a write at its own
/// version and origin, on every node, its maker's included (section
/// 3). Not a FLUSH either (rare). `since` 0: nothing is.
pub fn returns_to(frame: &[u8], node: u8, since: u64) -> bool {
    if since == 0 || frame.len() < 4 + HEAD {
        return false;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&frame[6..14]);
    matches!(frame[4], KIND_SET | KIND_COUNTER | KIND_TOUCH)
        && frame[5] == node
        && u64::from_le_bytes(v) >= since
}

/// Why a record cannot be encoded: the same checks as decoding, so
/// nothing we send is refused for its shape by a peer with our limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    BadKey,
    ValueTooLarge,
    NodeZero,
    ForgedOrigin,
}

/// Appends `rec` as one frame to `out`; on error `out` is unchanged.
pub fn encode(rec: &Record<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let (origin, version) = (rec.origin(), rec.version());
    if origin == 0 {
        return Err(EncodeError::NodeZero);
    }
    if version as u8 != origin {
        return Err(EncodeError::ForgedOrigin);
    }
    let key_ok = |k: &[u8]| !k.is_empty() && k.len() <= MAX_KEY_LEN;
    let start = out.len();
    let kind = match rec {
        Record::Set { .. } => KIND_SET,
        Record::Delete { .. } => KIND_DELETE,
        Record::Flush { .. } => KIND_FLUSH,
        Record::Counter { .. } => KIND_COUNTER,
        Record::Touch { .. } => KIND_TOUCH,
        Record::Ping { .. } => KIND_PING,
        Record::Skip { .. } => KIND_SKIP,
        Record::Ack { .. } => KIND_ACK,
    };
    // Length (filled in below), kind, origin, version: one copy.
    let mut head = [0u8; 14];
    head[4] = kind;
    head[5] = origin;
    head[6..].copy_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&head);
    let res = match *rec {
        Record::Set {
            key,
            flags,
            exptime,
            value,
            ..
        } => {
            if !key_ok(key) {
                Err(EncodeError::BadKey)
            } else if u32::try_from(value.len()).is_err() {
                Err(EncodeError::ValueTooLarge)
            } else {
                // Every client write on a replicating node is one of
                // these: one reservation and four copies, not a growth
                // check per field.
                out.reserve(1 + key.len() + 16 + value.len());
                push_key(out, key);
                let mut fixed = [0u8; 16];
                fixed[..4].copy_from_slice(&flags.to_le_bytes());
                fixed[4..12].copy_from_slice(&exptime.to_le_bytes());
                fixed[12..].copy_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(&fixed);
                out.extend_from_slice(value);
                Ok(())
            }
        }
        Record::Delete { key, .. } if key_ok(key) => {
            push_key(out, key);
            Ok(())
        }
        Record::Flush { .. } => Ok(()),
        Record::Counter {
            key,
            base,
            base_value,
            p,
            n,
            ..
        } if key_ok(key) => {
            push_key(out, key);
            out.extend_from_slice(&base.to_le_bytes());
            out.extend_from_slice(&base_value.to_le_bytes());
            out.extend_from_slice(&p.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            Ok(())
        }
        Record::Touch {
            key, base, exptime, ..
        } if key_ok(key) => {
            push_key(out, key);
            out.extend_from_slice(&base.to_le_bytes());
            out.extend_from_slice(&exptime.to_le_bytes());
            Ok(())
        }
        Record::Delete { .. } | Record::Counter { .. } | Record::Touch { .. } => {
            Err(EncodeError::BadKey)
        }
        Record::Ping { wall_ms, .. } => {
            out.extend_from_slice(&wall_ms.to_le_bytes());
            Ok(())
        }
        Record::Skip { bytes, .. } => {
            out.extend_from_slice(&bytes.to_le_bytes());
            Ok(())
        }
        Record::Ack {
            offset, wall_ms, ..
        } => {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&wall_ms.to_le_bytes());
            Ok(())
        }
    };
    let len = u32::try_from(out.len() - start - 4);
    match (res, len) {
        (Ok(()), Ok(len)) => {
            out[start..start + 4].copy_from_slice(&len.to_le_bytes());
            Ok(())
        }
        (Err(e), _) => {
            out.truncate(start);
            Err(e)
        }
        (Ok(()), Err(_)) => {
            out.truncate(start);
            Err(EncodeError::ValueTooLarge)
        }
    }
}

fn push_key(out: &mut Vec<u8>, key: &[u8]) {
    // Callers checked 1..=MAX_KEY_LEN, which fits the byte.
    out.push(key.len() as u8);
    out.extend_from_slice(key);
}

#[cfg(test)]
mod tests;
