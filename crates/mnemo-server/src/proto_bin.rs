//! Executes binary-protocol requests against the engine.
//!
//! Framing and validation are `mnemo_protocol::binary`'s; this module runs
//! the commands and writes the response packets, with memcached 1.6.18's
//! statuses, texts, CAS values and quiet-mode rules (`proto_bin.c`): a quiet
//! command answers only on error, and a quiet get only on a hit.

use crate::dispatch::{Ctx, Outcome, DIRECT_ABOVE};
use crate::out::Out;
use crate::proto_text;
use crate::watch::{self, hooks};
use mnemo_engine::{ArithOutcome, GetMode, Reserved, StoreMode, StoreOutcome};
use mnemo_protocol::binary::{
    self, encode_error, encode_response, status, Cmd, Frame, Packet, Reject, StoreKind,
};
use mnemo_protocol::text::{self, Request};

/// Per-connection binary state.
#[derive(Default)]
pub struct BinConn {
    /// SASL authentication succeeded on this connection.
    pub authenticated: bool,
    /// End of the replies a NOOP flushed in the current batch: memcached
    /// writes those out at once, so a later close does not discard them.
    flush_mark: Option<usize>,
}

/// Handles the request at the front of `buf`. `stream`: a value still
/// arriving may be read into its item. With `direct`, the value was read
/// into that item and `buf` holds the header and key.
pub fn step(
    ctx: &Ctx,
    bc: &mut BinConn,
    stream: bool,
    buf: &[u8],
    out: &mut Out,
    direct: Option<Reserved>,
) -> Outcome {
    if !ctx.pending_output {
        bc.flush_mark = None;
    }
    let p = match binary::frame(buf) {
        Frame::Incomplete => {
            let need = binary::Header::decode(buf)
                .map(|h| binary::HEADER_LEN + h.extras_len as usize + h.key_len as usize)
                .unwrap_or(binary::HEADER_LEN);
            return Outcome::NeedMore { need };
        }
        Frame::BadMagic => {
            return match bc.flush_mark {
                Some(mark) => {
                    out.truncate(mark);
                    Outcome::CloseAfterWrite { used: 0 }
                }
                None => Outcome::Close,
            }
        }
        Frame::Packet(p) => p,
    };
    let h = p.header;
    let used = p.consumed;
    if !binary::lengths_ok(&h) {
        encode_error(out, h.opcode, status::UNKNOWN_COMMAND, h.opaque);
        return Outcome::CloseAfterWrite { used };
    }
    let sasl = ctx.shared.settings.sasl;
    if sasl && !bc.authenticated && !binary::allowed_unauthenticated(h.opcode) {
        encode_error(out, h.opcode, status::AUTH_ERROR, h.opaque);
        return Outcome::CloseAfterWrite { used };
    }
    let cmd = match binary::decode(&p, sasl) {
        Ok(c) => c,
        Err(Reject::Invalid) => {
            encode_error(out, h.opcode, status::EINVAL, h.opaque);
            return Outcome::CloseAfterWrite { used };
        }
        Err(Reject::Unknown { swallow }) => {
            // A binary HELLO: the line is the key, nothing follows it.
            if h.opcode == mnemo_protocol::repl::hello::BINARY_OPCODE
                && h.extras_len == 0
                && h.body_len as usize == p.key.len()
                && stream
                && ctx.shared.repl.is_some()
            {
                if let Some(hello) = crate::repl::hooks::binary_hello(p.key, h.opaque, out) {
                    return Outcome::Repl { used, hello };
                }
                return Outcome::Done { used };
            }
            encode_error(out, h.opcode, status::UNKNOWN_COMMAND, h.opaque);
            return Outcome::Swallow {
                used,
                left: swallow,
            };
        }
    };
    let vlen = cmd.value_len();
    // A value that can never be stored is refused before it is read.
    if let Cmd::Store { kind, flags, .. } = cmd {
        if !ctx.shared.engine.item_size_ok(p.key.len(), flags, vlen) {
            return too_large(ctx, &p, kind == StoreKind::Set, out, vlen);
        }
    }
    if let Cmd::Concat { .. } = cmd {
        if !ctx.shared.engine.item_size_ok(p.key.len(), 0, vlen) {
            return too_large(ctx, &p, false, out, vlen);
        }
    }
    if let Cmd::SaslAuth { .. } = cmd {
        // memcached reads the SASL data into an item; one too big for any
        // item is refused and discarded rather than buffered.
        if !ctx.shared.engine.item_size_ok(p.key.len(), 0, vlen) {
            encode_error(out, h.opcode, status::OUT_OF_MEMORY, h.opaque);
            return Outcome::Swallow { used, left: vlen };
        }
    }
    // With the value in its item, only the head was kept.
    let (value, used) = match direct {
        Some(_) => (&[][..], used),
        None if buf.len() < used + vlen => {
            if stream && used + vlen > DIRECT_ABOVE {
                if let Some(outcome) = reserve(ctx, &p, &cmd, vlen, out) {
                    return outcome;
                }
            }
            return Outcome::NeedMore { need: used + vlen };
        }
        None => (&buf[used..used + vlen], used + vlen),
    };
    if run(ctx, bc, &p, cmd, value, out, direct) {
        Outcome::CloseAfterWrite { used }
    } else {
        Outcome::Done { used }
    }
}

/// A storage command's mode, flags and expiry; `None` for any other.
fn store_args(p: &Packet, cmd: &Cmd) -> Option<(StoreMode, u32, i64)> {
    match *cmd {
        Cmd::Store {
            kind,
            flags,
            exptime,
            ..
        } => Some((store_mode(p, kind), flags, i64::from(exptime))),
        Cmd::Concat { append: true, .. } => Some((StoreMode::Append, 0, 0)),
        Cmd::Concat { append: false, .. } => Some((StoreMode::Prepend, 0, 0)),
        _ => None,
    }
}

/// Reserves the item a store's value will be read into; `None` when the
/// command is not a store.
fn reserve(ctx: &Ctx, p: &Packet, cmd: &Cmd, vlen: usize, out: &mut Vec<u8>) -> Option<Outcome> {
    let (mode, flags, exptime) = store_args(p, cmd)?;
    Some(
        match ctx.shared.engine.reserve(mode, p.key, flags, exptime, vlen) {
            Ok(value) => Outcome::Direct {
                head: p.consumed,
                trailer: 0,
                value,
            },
            Err(outcome) => {
                let st = match outcome {
                    StoreOutcome::TooLarge => status::E2BIG,
                    StoreOutcome::OutOfMemory => {
                        ctx.ws.store_no_memory.incr();
                        out_of_memory(out, p, OOM_ALLOCATING);
                        return Some(Outcome::Swallow {
                            used: p.consumed,
                            left: vlen,
                        });
                    }
                    _ => status::NOT_STORED,
                };
                encode_error(out, p.header.opcode, st, p.header.opaque);
                Outcome::Swallow {
                    used: p.consumed,
                    left: vlen,
                }
            }
        },
    )
}

fn store_mode(p: &Packet, kind: StoreKind) -> StoreMode {
    if p.header.cas != 0 {
        StoreMode::Cas
    } else {
        match kind {
            StoreKind::Set => StoreMode::Set,
            StoreKind::Add => StoreMode::Add,
            StoreKind::Replace => StoreMode::Replace,
        }
    }
}

fn too_large(ctx: &Ctx, p: &Packet, is_set: bool, out: &mut Vec<u8>, vlen: usize) -> Outcome {
    encode_error(out, p.header.opcode, status::E2BIG, p.header.opaque);
    if is_set {
        // As memcached: a failed set must not leave the old value readable.
        ctx.shared.engine.unlink_key(p.key);
    }
    Outcome::Swallow {
        used: p.consumed,
        left: vlen,
    }
}

/// A success response, unless the command is quiet.
fn ok(out: &mut Vec<u8>, p: &Packet, quiet: bool, cas: u64, value: &[u8]) {
    if !quiet {
        encode_response(
            out,
            p.header.opcode,
            status::OK,
            p.header.opaque,
            cas,
            &[],
            &[],
            value,
        );
    }
}

fn err(out: &mut Vec<u8>, p: &Packet, st: u16) {
    encode_error(out, p.header.opcode, st, p.header.opaque);
}

/// Runs a decoded command; true when the connection closes after the
/// reply (`quit`).
fn run(
    ctx: &Ctx,
    bc: &mut BinConn,
    p: &Packet,
    cmd: Cmd,
    value: &[u8],
    out: &mut Out,
    direct: Option<Reserved>,
) -> bool {
    let sh = ctx.shared;
    let engine = &sh.engine;
    let h = &p.header;
    let key = p.key;
    match cmd {
        Cmd::Get { quiet, with_key } => retrieve(ctx, p, GetMode::Get, quiet, with_key, true, out),
        Cmd::Touch {
            exptime,
            quiet,
            with_key,
            with_value,
        } => {
            let mode = GetMode::Touch(i64::from(exptime));
            let repl = sh.repl.as_deref();
            if let Some(r) = repl {
                crate::repl::hooks::pre_touch(r, key, ctx.ts);
            }
            retrieve(ctx, p, mode, quiet, with_key, with_value, out);
            if let Some(r) = repl {
                crate::repl::hooks::written(r, key, ctx.ts);
            }
        }
        Cmd::Store { quiet, .. } | Cmd::Concat { quiet, .. } => {
            if let Some((mode, flags, exptime)) = store_args(p, &cmd) {
                let log = sh.log.wants(watch::FETCHERS | watch::MUTATIONS).then(|| {
                    let bytes = direct.as_ref().map_or(value.len(), |r| r.len());
                    hooks::Store::start(ctx, key, mode, flags, exptime, bytes)
                });
                let o = match direct {
                    Some(r) => engine.store_reserved(mode, key, r, h.cas, ctx.ts),
                    None => engine.store(mode, key, flags, exptime, value, h.cas, ctx.ts),
                };
                if let Some(log) = log {
                    log.done(ctx, o);
                }
                if let (StoreOutcome::Stored { .. }, Some(r)) = (o, sh.repl.as_deref()) {
                    crate::repl::hooks::written(r, key, ctx.ts);
                }
                store_reply(ctx, out, p, quiet, mode, o);
            }
        }
        Cmd::Delete { quiet } => {
            let mut slot = hooks::lock_key(ctx, key);
            let hit = match slot.item().map(|it| it.cas()) {
                Some(cas) if h.cas != 0 && h.cas != cas => {
                    err(out, p, status::KEY_EXISTS);
                    false
                }
                _ => {
                    hooks::deleted(ctx, key, "delete", hooks::slot_line(&slot));
                    if slot.delete() {
                        ok(out, p, quiet, 0, &[]);
                        true
                    } else {
                        err(out, p, status::KEY_NOT_FOUND);
                        false
                    }
                }
            };
            drop(slot);
            if let (true, Some(r)) = (hit, sh.repl.as_deref()) {
                crate::repl::hooks::deleted(r, key, ctx.ts);
            }
        }
        Cmd::Arith {
            incr,
            quiet,
            delta,
            initial,
            exptime,
        } => {
            let created = arith(ctx, p, incr, quiet, delta, initial, exptime, out);
            if let (true, Some(r)) = (created, sh.repl.as_deref()) {
                crate::repl::hooks::written(r, key, ctx.ts);
            }
        }
        Cmd::Quit { quiet } => {
            ok(out, p, quiet, 0, &[]);
            return true;
        }
        Cmd::Flush { quiet, exptime } => {
            if !sh.settings.flush_enabled {
                err(out, p, status::AUTH_ERROR);
            } else {
                engine.flush_all(i64::from(exptime.unwrap_or(0)));
                if let Some(r) = sh.repl.as_deref() {
                    crate::repl::hooks::flushed(r, i64::from(exptime.unwrap_or(0)));
                }
                ctx.ws.flush_cmds.incr();
                ok(out, p, quiet, 0, &[]);
            }
        }
        Cmd::Noop => {
            ok(out, p, false, 0, &[]);
            bc.flush_mark = Some(out.len());
        }
        Cmd::Version => ok(out, p, false, 0, crate::shared::VERSION.as_bytes()),
        Cmd::Stat => stat(ctx, p, out),
        Cmd::SaslListMechs => ok(out, p, false, 0, b"PLAIN"),
        Cmd::SaslAuth { step, .. } => {
            ctx.ws.auth_cmds.incr();
            // PLAIN completes in one step; a step without a started
            // exchange fails, as Cyrus SASL does for memcached.
            if !step && key == b"PLAIN" && crate::auth::sasl_plain(value) {
                bc.authenticated = true;
                ok(out, p, false, 0, b"Authenticated");
            } else {
                ctx.ws.auth_errors.incr();
                err(out, p, status::AUTH_ERROR);
            }
        }
    }
    false
}

/// GET and TOUCH (and their quiet and keyed forms).
#[inline]
fn retrieve(
    ctx: &Ctx,
    p: &Packet,
    mode: GetMode,
    quiet: bool,
    with_key: bool,
    with_value: bool,
    out: &mut Out,
) {
    match mode {
        GetMode::Get => ctx.ws.get_cmds.incr(),
        _ => ctx.ws.touch_cmds.incr(),
    }
    let watched = ctx.shared.log.wants(watch::FETCHERS);
    let before = if watched {
        ctx.ts.expired_flushed()
    } else {
        (0, 0)
    };
    let hit = ctx.shared.engine.get(p.key, mode, ctx.ts, |it| {
        hit_response(out, p, it, with_key, with_value);
        (it.class_id(), it.value_len())
    });
    if watched {
        hooks::fetch(ctx, p.key, hooks::status(ctx.ts, before, hit));
    }
    if hit.is_none() {
        miss(out, p, quiet, with_key);
    }
}

fn hit_response(
    out: &mut Out,
    p: &Packet,
    it: &mnemo_engine::ItemRef,
    with_key: bool,
    with_value: bool,
) {
    let key: &[u8] = if with_key { p.key } else { &[] };
    let vlen = if with_value { it.value_len() } else { 0 };
    binary::Header {
        magic: binary::RESPONSE_MAGIC,
        opcode: p.header.opcode,
        key_len: key.len() as u16,
        extras_len: 4,
        data_type: 0,
        status: status::OK,
        body_len: (4 + key.len() + vlen) as u32,
        opaque: p.header.opaque,
        cas: it.cas(),
    }
    .encode(out);
    out.extend_from_slice(&it.flags().to_be_bytes());
    out.extend_from_slice(key);
    if with_value {
        out.value(it);
    }
}

fn miss(out: &mut Vec<u8>, p: &Packet, quiet: bool, with_key: bool) {
    if quiet {
        return;
    }
    if with_key {
        // memcached answers a keyed miss with the key and no text.
        encode_response(
            out,
            p.header.opcode,
            status::KEY_NOT_FOUND,
            p.header.opaque,
            0,
            &[],
            p.key,
            &[],
        );
    } else {
        err(out, p, status::KEY_NOT_FOUND);
    }
}

fn store_reply(
    ctx: &Ctx,
    out: &mut Vec<u8>,
    p: &Packet,
    quiet: bool,
    mode: StoreMode,
    o: StoreOutcome,
) {
    let concat = matches!(mode, StoreMode::Append | StoreMode::Prepend);
    match o {
        StoreOutcome::Stored { cas } => ok(out, p, quiet, cas, &[]),
        StoreOutcome::Exists => err(out, p, status::KEY_EXISTS),
        StoreOutcome::NotFound => err(out, p, status::KEY_NOT_FOUND),
        // memcached allocates a set's item before reading its value, so a
        // refusal is answered as the allocation's, whether our value came
        // from the read buffer (allocated only now) or a reservation.
        StoreOutcome::OutOfMemory if !concat => {
            ctx.ws.store_no_memory.incr();
            out_of_memory(out, p, OOM_ALLOCATING);
        }
        StoreOutcome::TooLarge if !concat => err(out, p, status::E2BIG),
        StoreOutcome::NotStored | StoreOutcome::TooLarge | StoreOutcome::OutOfMemory => {
            let st = match mode {
                StoreMode::Add => status::KEY_EXISTS,
                StoreMode::Replace => status::KEY_NOT_FOUND,
                _ => status::NOT_STORED,
            };
            err(out, p, st);
        }
    }
}

/// Returns true when it created the item (replication records that as a
/// write; counting is recorded under the lock).
#[allow(clippy::too_many_arguments)]
fn arith(
    ctx: &Ctx,
    p: &Packet,
    incr: bool,
    quiet: bool,
    delta: u64,
    initial: u64,
    exptime: u32,
    out: &mut Vec<u8>,
) -> bool {
    let h = &p.header;
    let mut slot = hooks::lock_key(ctx, p.key);
    let mismatch = slot
        .item()
        .is_some_and(|it| h.cas != 0 && it.value_len() > 0 && it.cas() != h.cas);
    if mismatch {
        err(out, p, status::KEY_EXISTS);
        return false;
    }
    if !slot.exists() && exptime != u32::MAX {
        let mut buf = [0u8; 20];
        let digits = mnemo_protocol::text::decimal(initial, &mut buf);
        // memcached creates the value through its store, which looks the
        // key up again (a miss) before reporting the add.
        if ctx.shared.log.wants(watch::FETCHERS) {
            hooks::fetch(ctx, p.key, hooks::slot_line(&slot));
        }
        let exp = i64::from(exptime);
        let o = slot.store(StoreMode::Add, 0, exp, digits, 0, None);
        if ctx.shared.log.wants(watch::MUTATIONS) {
            let stored = match o {
                StoreOutcome::Stored { .. } => slot
                    .item()
                    .map(|it| (it.class_id(), it.value_len(), it.exptime())),
                _ => None,
            };
            hooks::Store::new(p.key, StoreMode::Add, 0, exp, digits.len()).mutation(ctx, o, stored);
        }
        match o {
            StoreOutcome::Stored { cas } => ok(out, p, quiet, cas, &initial.to_be_bytes()),
            StoreOutcome::TooLarge | StoreOutcome::OutOfMemory => {
                out_of_memory(out, p, b"Out of memory allocating new item")
            }
            _ => err(out, p, status::NOT_STORED),
        }
        return matches!(o, StoreOutcome::Stored { .. });
    }
    let repl = ctx.shared.repl.as_deref();
    let pre = repl.and_then(|r| crate::repl::hooks::arith_pre(r, &slot));
    let o = slot.arith(incr, delta, None);
    if let Some(r) = repl {
        crate::repl::hooks::arith_post(r, &mut slot, p.key, incr, delta, pre, o);
    }
    match o {
        ArithOutcome::Value(v) => {
            let cas = slot.item().map(|it| it.cas()).unwrap_or(0);
            ok(out, p, quiet, cas, &v.to_be_bytes());
        }
        ArithOutcome::NotFound => err(out, p, status::KEY_NOT_FOUND),
        ArithOutcome::NonNumeric => err(out, p, status::DELTA_BADVAL),
        ArithOutcome::OutOfMemory => out_of_memory(out, p, b"Out of memory incrementing value"),
    }
    false
}

/// memcached's text when a store's item cannot be allocated.
const OOM_ALLOCATING: &[u8] = b"Out of memory allocating item";

/// An OUT_OF_MEMORY response with memcached's text for what failed.
fn out_of_memory(out: &mut Vec<u8>, p: &Packet, text: &[u8]) {
    let h = &p.header;
    encode_response(
        out,
        h.opcode,
        status::OUT_OF_MEMORY,
        h.opaque,
        0,
        &[],
        &[],
        text,
    );
}

/// `stat [group]`: the text protocol's answer for the same group, sent as
/// one packet per STAT line and an empty closing packet. Groups are matched
/// as memcached's binary handler matches them: `reset`, `settings` and
/// `detail ...` by prefix, `items slabs sizes sizes_enable sizes_disable`
/// exactly; anything else (`conns` included) is not found.
fn stat(ctx: &Ctx, p: &Packet, out: &mut Vec<u8>) {
    let key = p.key;
    let group: &[u8] = if key.is_empty() {
        b""
    } else if key.starts_with(b"reset") {
        b"reset"
    } else if key.starts_with(b"settings") {
        b"settings"
    } else if let Some(rest) = key.strip_prefix(b"detail") {
        if rest.starts_with(b" dump") {
            b"detail dump"
        } else if rest.starts_with(b" on") {
            b"detail on"
        } else if rest.starts_with(b" off") {
            b"detail off"
        } else {
            err(out, p, status::KEY_NOT_FOUND);
            return;
        }
    } else if matches!(
        key,
        b"items" | b"slabs" | b"sizes" | b"sizes_enable" | b"sizes_disable"
    ) {
        key
    } else {
        err(out, p, status::KEY_NOT_FOUND);
        return;
    };
    let mut line = Vec::with_capacity(6 + group.len());
    line.extend_from_slice(b"stats");
    if !group.is_empty() {
        line.push(b' ');
        line.extend_from_slice(group);
    }
    let Request::Stats(cmd) = text::parse_line(&line) else {
        err(out, p, status::KEY_NOT_FOUND);
        return;
    };
    let detail_dump = group == b"detail dump";
    let mut textual = Out::new(false);
    proto_text::stats(ctx, cmd, &mut textual);
    let opaque = p.header.opaque;
    if detail_dump {
        let body = textual.strip_suffix(b"END\r\n").unwrap_or(&textual);
        binary::encode_stat(out, opaque, b"detailed", body);
        binary::encode_stat(out, opaque, &[], &[]);
        return;
    }
    for l in textual.split(|&b| b == b'\n') {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if let Some(rest) = l.strip_prefix(b"STAT ") {
            let sp = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let v = rest.get(sp + 1..).unwrap_or(&[]);
            binary::encode_stat(out, opaque, &rest[..sp], v);
        } else if l.starts_with(b"ERROR") || l.starts_with(b"CLIENT_ERROR") {
            err(out, p, status::KEY_NOT_FOUND);
            return;
        }
    }
    // The empty packet is memcached's END; these two groups' handlers
    // close neither the text answer nor the binary one.
    if !matches!(group, b"sizes_enable" | b"sizes_disable") {
        binary::encode_stat(out, opaque, &[], &[]);
    }
}

/// Whether the first byte of a connection's input selects binary.
pub fn is_binary_start(b: u8) -> bool {
    b == binary::REQUEST_MAGIC
}
