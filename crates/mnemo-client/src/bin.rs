//! The binary protocol side of [`crate::Client`]: the same operations, one
//! packet per request, multi-gets as quiet GetKQ packets closed by a Noop.

use crate::client::{Item, Op, OpResult, Stored};
use crate::conn::Conn;
use crate::Error;
use mnemo_protocol::binary::{status, Opcode};
use mnemo_protocol::client::binary::{self, Packet};
use mnemo_protocol::client::StoreCmd;

/// Binary expiry is unsigned; a negative text exptime ("already expired")
/// becomes the absolute time 1, which is in the past.
pub(crate) fn exptime(e: i64) -> u32 {
    if e < 0 {
        1
    } else {
        u32::try_from(e).unwrap_or(u32::MAX)
    }
}

fn status_error(p: &Packet, b: &[u8]) -> Error {
    let msg = String::from_utf8_lossy(&b[p.value.clone()]).into_owned();
    match p.header.status {
        status::INVALID_ARGUMENTS | status::NON_NUMERIC | status::VALUE_TOO_LARGE => {
            Error::Client(msg)
        }
        s => Error::Server(format!("binary status {s:#06x}: {msg}")),
    }
}

/// Queue quiet gets for `keys` and the closing Noop.
pub(crate) fn encode_multi<'k>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = &'k [u8]>) {
    for k in keys {
        binary::encode_get(out, Opcode::GetKQ, k, 0);
    }
    binary::encode_simple(out, Opcode::Noop, 0);
}

/// Read the hits of a quiet multi-get up to its Noop.
pub(crate) fn read_multi(c: &mut Conn) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    loop {
        let (p, b) = c.next_packet()?;
        if p.header.opcode == Opcode::Noop as u8 {
            return Ok(items);
        }
        if p.header.status != status::OK {
            return Err(status_error(&p, b));
        }
        items.push(item(&p, b));
    }
}

fn item(p: &Packet, b: &[u8]) -> Item {
    let ex = &b[p.extras.clone()];
    let flags = if ex.len() >= 4 {
        u32::from_be_bytes([ex[0], ex[1], ex[2], ex[3]])
    } else {
        0
    };
    Item {
        key: b[p.key.clone()].to_vec(),
        value: b[p.value.clone()].to_vec(),
        flags,
        cas: Some(p.header.cas),
    }
}

pub(crate) fn encode_store(
    out: &mut Vec<u8>,
    cmd: StoreCmd,
    key: &[u8],
    value: &[u8],
    flags: u32,
    exp: i64,
    cas: u64,
) {
    match cmd {
        StoreCmd::Append => binary::encode_concat(out, Opcode::Append, key, value, cas, 0),
        StoreCmd::Prepend => binary::encode_concat(out, Opcode::Prepend, key, value, cas, 0),
        _ => {
            let op = match cmd {
                StoreCmd::Add => Opcode::Add,
                StoreCmd::Replace => Opcode::Replace,
                _ => Opcode::Set,
            };
            binary::encode_store(out, op, key, flags, exptime(exp), value, cas, 0)
        }
    }
}

/// Map a store answer to the text protocol's outcomes.
pub(crate) fn read_store(c: &mut Conn, cmd: StoreCmd, cas: u64) -> Result<Stored, Error> {
    let (p, b) = c.next_packet()?;
    Ok(match (p.header.status, cmd) {
        (status::OK, _) => Stored::Stored,
        (status::KEY_EXISTS, StoreCmd::Add) => Stored::NotStored,
        (status::KEY_EXISTS, _) => Stored::Exists,
        (status::KEY_NOT_FOUND, _) if cas != 0 => Stored::NotFound,
        (status::KEY_NOT_FOUND | status::NOT_STORED, _) => Stored::NotStored,
        _ => return Err(status_error(&p, b)),
    })
}

/// OK is true, "not found" false (delete, touch).
pub(crate) fn read_found(c: &mut Conn) -> Result<bool, Error> {
    let (p, b) = c.next_packet()?;
    match p.header.status {
        status::OK => Ok(true),
        status::KEY_NOT_FOUND => Ok(false),
        _ => Err(status_error(&p, b)),
    }
}

pub(crate) fn encode_arith(out: &mut Vec<u8>, incr: bool, key: &[u8], delta: u64) {
    let op = if incr {
        Opcode::Increment
    } else {
        Opcode::Decrement
    };
    // Expiry 0xffffffff: a missing counter is not created, as in text.
    binary::encode_arith(out, op, key, delta, 0, u32::MAX, 0);
}

pub(crate) fn read_arith(c: &mut Conn) -> Result<Option<u64>, Error> {
    let (p, b) = c.next_packet()?;
    match p.header.status {
        status::OK => {
            let v = &b[p.value.clone()];
            let arr: [u8; 8] = v
                .try_into()
                .map_err(|_| Error::Unexpected("counter value is not 8 bytes".into()))?;
            Ok(Some(u64::from_be_bytes(arr)))
        }
        status::KEY_NOT_FOUND => Ok(None),
        _ => Err(status_error(&p, b)),
    }
}

pub(crate) fn version(c: &mut Conn) -> Result<String, Error> {
    binary::encode_simple(c.out(), Opcode::Version, 0);
    c.flush()?;
    let (p, b) = c.next_packet()?;
    if p.header.status != status::OK {
        return Err(status_error(&p, b));
    }
    Ok(String::from_utf8_lossy(&b[p.value]).into_owned())
}

pub(crate) fn flush_all(c: &mut Conn) -> Result<(), Error> {
    binary::encode_flush(c.out(), Opcode::Flush, None, 0);
    c.flush()?;
    let (p, b) = c.next_packet()?;
    if p.header.status != status::OK {
        return Err(status_error(&p, b));
    }
    Ok(())
}

pub(crate) fn stats(c: &mut Conn) -> Result<Vec<(String, String)>, Error> {
    binary::encode_simple(c.out(), Opcode::Stat, 0);
    c.flush()?;
    let mut v = Vec::new();
    loop {
        let (p, b) = c.next_packet()?;
        if p.header.status != status::OK {
            return Err(status_error(&p, b));
        }
        if p.key.is_empty() {
            return Ok(v);
        }
        v.push((
            String::from_utf8_lossy(&b[p.key]).into_owned(),
            String::from_utf8_lossy(&b[p.value]).into_owned(),
        ));
    }
}

pub(crate) fn encode_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Get(k) => binary::encode_get(out, Opcode::GetK, k, 0),
        Op::Set {
            key,
            value,
            flags,
            exptime,
        } => encode_store(out, StoreCmd::Set, key, value, *flags, *exptime, 0),
        Op::Delete(k) => binary::encode_delete(out, Opcode::Delete, k, 0, 0),
        Op::Incr(k, d) => encode_arith(out, true, k, *d),
        Op::Decr(k, d) => encode_arith(out, false, k, *d),
        Op::Touch(k, e) => binary::encode_touch(out, k, exptime(*e), 0),
    }
}

pub(crate) fn read_op(c: &mut Conn, op: &Op) -> Result<OpResult, Error> {
    match op {
        Op::Get(_) => {
            let (p, b) = c.next_packet()?;
            match p.header.status {
                status::OK => Ok(OpResult::Value(Some(item(&p, b)))),
                status::KEY_NOT_FOUND => Ok(OpResult::Value(None)),
                _ => Err(status_error(&p, b)),
            }
        }
        Op::Set { .. } => Ok(OpResult::Stored(read_store(c, StoreCmd::Set, 0)?)),
        Op::Delete(_) | Op::Touch(..) => Ok(OpResult::Found(read_found(c)?)),
        Op::Incr(..) | Op::Decr(..) => Ok(OpResult::Number(read_arith(c)?)),
    }
}
