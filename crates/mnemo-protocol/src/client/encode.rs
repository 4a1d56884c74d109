//! Encoding text and meta requests, appended to a caller's buffer.

use crate::text::{push_i64, push_u64};
use crate::MAX_KEY_LEN;

/// True if memcached's text protocol accepts `key`: 1 to 250 bytes, no
/// spaces or control characters.
pub fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|&c| c > b' ' && c != 0x7f)
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

/// `<cmd> <key>[ <flags>]\r\n`: the meta requests without a data block.
fn meta_line(out: &mut Vec<u8>, cmd: &[u8], key: &[u8], flags: &[u8]) {
    out.extend_from_slice(cmd);
    out.extend_from_slice(key);
    meta_flags(out, flags);
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
    meta_line(out, b"mg ", key, flags);
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
    meta_line(out, b"md ", key, flags);
}

/// `ma <key> <flags>`
pub fn encode_meta_arith(out: &mut Vec<u8>, key: &[u8], flags: &[u8]) {
    meta_line(out, b"ma ", key, flags);
}

/// `mn`, whose `MN` answer marks the end of a batch of quiet meta requests.
pub fn encode_meta_noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"mn\r\n");
}
