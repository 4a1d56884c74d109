//! What the protocol paths call after a write when replication is on.
//! Each is out of line and cold, so that with replication off a write
//! pays one load and an untaken branch (`shared.repl` is `None`).

use mnemo_engine::{ArithOutcome, KeySlot, ThreadStats};

use super::counters::Pre;
use super::Repl;

/// A write left `key` in a new state (set, add, replace, append,
/// prepend, cas, meta set, a created item).
#[cold]
#[inline(never)]
pub fn written(r: &Repl, key: &[u8], ts: &ThreadStats) {
    r.node.record_state(key, false, ts);
}

/// A text `set`, `add`, `replace` or `cas` stored the request's value
/// whole (see [`super::node::Node::record_stored`]).
#[cold]
#[inline(never)]
pub fn stored(r: &Repl, w: &super::node::StoredWrite<'_>, now_before: u32, ts: &ThreadStats) {
    r.node.record_stored(w, now_before, ts);
}

/// Records `key`'s state, first giving it a new version if `bump`.
#[cold]
#[inline(never)]
pub fn record(r: &Repl, key: &[u8], bump: bool, ts: &ThreadStats) {
    r.node.record_state(key, bump, ts);
}

/// A touch changed `key`'s expiry: a TOUCH frame, at a version of its own.
#[cold]
#[inline(never)]
pub fn touched(r: &Repl, key: &[u8], ts: &ThreadStats) {
    r.node.record_state(key, true, ts);
}

/// Before a touch made while the item is read (gats, binary touch and
/// gat, meta `mg` with `T`): draws the TTL change's version (the item's
/// CAS stays). [`written`] records it afterwards, as a TOUCH frame.
#[cold]
#[inline(never)]
pub fn pre_touch(r: &Repl, key: &[u8], ts: &ThreadStats) {
    let slot = r.node.engine().lock_key(key, ts);
    r.node.draw_ttl_version(&slot, key);
}

/// A delete hit `key`.
#[cold]
#[inline(never)]
pub fn deleted(r: &Repl, key: &[u8], ts: &ThreadStats) {
    r.node.record_delete(key, ts);
}

/// `flush_all [delay]`: a versioned barrier everywhere, taking effect
/// when the delay ends (docs/REPLICATION.md section 3).
#[cold]
#[inline(never)]
pub fn flushed(r: &Repl, delay: i64) {
    r.node.record_flush(delay);
}

/// Before an incr/decr under the key's lock.
#[cold]
#[inline(never)]
pub fn arith_pre(r: &Repl, slot: &KeySlot<'_>) -> Option<Pre> {
    r.node.counter_pre(slot)
}

/// After an incr/decr, still under the key's lock.
#[cold]
#[inline(never)]
pub fn arith_post(
    r: &Repl,
    slot: &mut KeySlot<'_>,
    key: &[u8],
    incr: bool,
    delta: u64,
    pre: Option<Pre>,
    outcome: ArithOutcome,
) {
    r.node.counter_post(slot, key, incr, delta, pre, outcome);
}

/// A whole incr/decr for the text protocol, which otherwise calls the
/// engine's `arith` without holding the slot itself.
#[cold]
#[inline(never)]
pub fn arith(r: &Repl, key: &[u8], incr: bool, delta: u64, ts: &ThreadStats) -> ArithOutcome {
    let mut slot = r.node.engine().lock_key(key, ts);
    let pre = r.node.counter_pre(&slot);
    let o = slot.arith(incr, delta, None);
    r.node.counter_post(&mut slot, key, incr, delta, pre, o);
    o
}

/// A `mn_repl` line on a client connection: the HELLO, or a
/// `CLIENT_ERROR` written to `out` (the connection goes on).
#[cold]
#[inline(never)]
pub fn hello(line: &[u8], out: &mut Vec<u8>) -> Option<mnemo_protocol::repl::hello::Hello> {
    match mnemo_protocol::repl::hello::parse_hello(line) {
        Ok(h) => Some(h),
        Err(e) => {
            out.extend_from_slice(format!("CLIENT_ERROR {e}\r\n").as_bytes());
            None
        }
    }
}

/// A binary HELLO (under `-S`, already authenticated): the hand-off, or
/// the refusal written to `out` as the binary answer.
#[cold]
#[inline(never)]
pub fn binary_hello(key: &[u8], opaque: u32, out: &mut Vec<u8>) -> Option<Box<super::Handoff>> {
    use mnemo_protocol::repl::hello::{parse_hello, write_binary_reply, Reply};
    match parse_hello(key) {
        Ok(hello) => Some(Box::new(super::Handoff {
            hello,
            binary_opaque: Some(opaque),
        })),
        Err(e) => {
            write_binary_reply(&Reply::Refused(e.to_string().as_bytes()), opaque, out);
            None
        }
    }
}
