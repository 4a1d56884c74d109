//! Pieces of meta-protocol replies a server writes: the return flags,
//! each appended with its leading space.

use super::base64::base64_encode;
use crate::text::push_u64;

/// Appends ` <c><n>`.
pub fn push_flag_u64(out: &mut Vec<u8>, c: u8, n: u64) {
    out.push(b' ');
    out.push(c);
    push_u64(out, n);
}

/// Appends ` t<remaining>` the way memcached prints it: `-1` for an item
/// that never expires, else the 32-bit difference (which wraps for an
/// exptime already in the past, as memcached's unsigned subtraction does).
pub fn push_ttl(out: &mut Vec<u8>, exptime: u32, now: u32) {
    if exptime == 0 {
        out.extend_from_slice(b" t-1");
    } else {
        push_flag_u64(out, b't', u64::from(exptime.wrapping_sub(now)));
    }
}

/// Appends ` k<key>`, or ` k<base64 key> b` for a binary key.
pub fn push_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64_encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// Appends ` <opaque token>` (the token includes its `O`).
pub fn push_opaque(out: &mut Vec<u8>, token: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(token);
}
