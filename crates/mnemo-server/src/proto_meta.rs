//! Executes meta-protocol requests (`mg ms md ma mn me`) against the engine.
//!
//! Each request runs under its key's lock ([`mnemo_engine::KeySlot`]) so
//! that reading the item, deciding on win/stale tokens, TTL and CAS, and
//! writing back is one atomic step, as it is in memcached. Reply lines and
//! which of them `q` suppresses are memcached 1.6.18's (`proto_text.c`).

use crate::dispatch::{Ctx, Outcome, DIRECT_ABOVE};
use crate::out::Out;
use crate::watch::{self, hooks};
use mnemo_engine::{ArithOutcome, KeySlot, Reserved, StoreMode, StoreOutcome};
use mnemo_protocol::meta::{self, Cmd, Request, SetMode, KEY_BUF_LEN, MAX_OPAQUE};
use mnemo_protocol::text::{decimal, push_u64};

const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";

/// Whether `line` is a meta request (its first token is a meta command).
pub fn is_meta(line: &[u8]) -> bool {
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let rest = &line[start..];
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    meta::command(&rest[..end]).is_some()
}

/// Reserves the item an `ms` data block still arriving over a stream will
/// be read into (memcached allocates it at this point too); refused, the
/// reply is written and the line and block are swallowed.
fn reserve(ctx: &Ctx, req: &Request, head: usize, out: &mut Vec<u8>) -> Outcome {
    let f = &req.flags;
    let n = req.datalen;
    let exptime = i64::from(f.ttl.unwrap_or(0));
    match ctx.shared.engine.reserve(
        store_mode(req.set_mode),
        req.key,
        f.client_flags,
        exptime,
        n,
    ) {
        Ok(value) => Outcome::Direct {
            head,
            trailer: 2,
            value,
        },
        Err(outcome) => {
            out.extend_from_slice(match outcome {
                StoreOutcome::TooLarge => {
                    ctx.ws.store_too_large.incr();
                    b"SERVER_ERROR object too large for cache\r\n"
                }
                StoreOutcome::OutOfMemory => {
                    ctx.ws.store_no_memory.incr();
                    b"SERVER_ERROR out of memory storing object\r\n"
                }
                _ => b"NS\r\n",
            });
            Outcome::Swallow {
                used: head,
                left: n + 2,
            }
        }
    }
}

fn store_mode(m: SetMode) -> StoreMode {
    match m {
        SetMode::Set => StoreMode::Set,
        SetMode::Add => StoreMode::Add,
        SetMode::Append => StoreMode::Append,
        SetMode::Prepend => StoreMode::Prepend,
        SetMode::Replace => StoreMode::Replace,
    }
}

/// Runs one meta request `line`, framed by the text protocol: `head`
/// bytes of `input` are the line with its terminator. With `direct`, an
/// `ms` line's data was read into that item and only its terminator
/// follows the line. `stream`: a data block still arriving may be read
/// into its item.
pub fn step(
    ctx: &Ctx,
    stream: bool,
    line: &[u8],
    head: usize,
    input: &[u8],
    out: &mut Out,
    direct: Option<Reserved>,
) -> Outcome {
    let mut keybuf = [0u8; KEY_BUF_LEN];
    let req = match meta::parse(line, &mut keybuf) {
        Ok(r) => r,
        Err(e) => {
            out.extend_from_slice(e.msg.as_bytes());
            out.extend_from_slice(b"\r\n");
            return if e.swallow > 0 {
                Outcome::Swallow {
                    used: head,
                    left: e.swallow,
                }
            } else {
                Outcome::Done { used: head }
            };
        }
    };
    if req.flags.new_cas.is_some() && ctx.shared.repl.is_some() {
        // Under `--peer` the CAS is the write's replication version
        // (docs/REPLICATION.md section 1): one a client chose is not a
        // version of this node, and peers could not take it.
        out.extend_from_slice(b"CLIENT_ERROR E flag not supported with replication\r\n");
        return match req.cmd {
            Cmd::Set => Outcome::Swallow {
                used: head,
                left: req.datalen + 2,
            },
            _ => Outcome::Done { used: head },
        };
    }
    match req.cmd {
        Cmd::Get => {
            // `T` is a touch (its version drawn first; the CAS stays);
            // `N` may create the item. Either way the key's state (if
            // any) is recorded afterwards; an unchanged one is a no-op on
            // every peer.
            let repl = ctx
                .shared
                .repl
                .as_deref()
                .filter(|_| req.flags.ttl.is_some() || req.flags.vivify.is_some());
            if let (Some(r), Some(_)) = (repl, req.flags.ttl) {
                crate::repl::hooks::pre_touch(r, req.key, ctx.ts);
            }
            mget(ctx, &req, out);
            if let Some(r) = repl {
                crate::repl::hooks::written(r, req.key, ctx.ts);
            }
        }
        Cmd::Set => {
            let o = mset(ctx, stream, &req, head, input, out, direct);
            if let (Outcome::Done { .. }, Some(r)) = (&o, ctx.shared.repl.as_deref()) {
                // Done is a store that ran (or a refused line); what the
                // key holds now is recorded, a no-op on peers if unchanged.
                crate::repl::hooks::written(r, req.key, ctx.ts);
            }
            return o;
        }
        Cmd::Delete => {
            let done = mdelete(ctx, &req, out);
            if let (Some(deleted), Some(r)) = (done, ctx.shared.repl.as_deref()) {
                if deleted {
                    crate::repl::hooks::deleted(r, req.key, ctx.ts);
                } else {
                    crate::repl::hooks::written(r, req.key, ctx.ts);
                }
            }
        }
        Cmd::Arith => {
            let rewritten = marith(ctx, &req, out);
            if let (Some(ttl_only), Some(r)) = (rewritten, ctx.shared.repl.as_deref()) {
                crate::repl::hooks::record(r, req.key, ttl_only, ctx.ts);
            }
        }
        Cmd::Noop => out.extend_from_slice(b"MN\r\n"),
        Cmd::Debug => mdebug(ctx, &req, out),
    }
    Outcome::Done { used: head }
}

fn too_long(t: &[u8]) -> bool {
    t[0] == b'O' && t.len() > MAX_OPAQUE
}

/// Appends the ` O<opaque>` token `t` to a reply begun at `start`; an
/// opaque too long replaces the whole reply with the error (false).
fn opaque(out: &mut Vec<u8>, t: &[u8], start: usize) -> bool {
    if too_long(t) {
        out.truncate(start);
        out.extend_from_slice(OPAQUE_TOO_LONG);
        return false;
    }
    meta::push_opaque(out, t);
    true
}

/// Appends ` <opaque>` / ` k<key>` for the flags that echo the request.
fn echo_flags(req: &Request, key: &[u8], out: &mut Vec<u8>) {
    for t in req.flag_tokens() {
        match t[0] {
            b'O' => meta::push_opaque(out, t),
            b'k' => meta::push_key(out, key, req.flags.base64),
            _ => {}
        }
    }
}

fn mget(ctx: &Ctx, req: &Request, out: &mut Out) {
    let engine = &ctx.shared.engine;
    let f = &req.flags;
    let mut slot = hooks::lock_key(ctx, req.key);
    let mut created = false;
    if !slot.exists() && f.vivify.is_some() {
        // The placeholder memcached creates: empty value, flags 0; its TTL
        // is set by the N token below.
        created = matches!(slot.vivify(0, 0, f.new_cas), StoreOutcome::Stored { .. });
    }
    let start = out.len();
    let mut ttl_set = false;
    let hit = slot.exists();
    if hit {
        let mut won = false;
        let now = slot.now();
        let Some(len) = slot.item().map(|it| it.value_len()) else {
            return;
        };
        if f.value {
            out.extend_from_slice(b"VA ");
            push_u64(out, len as u64);
        } else {
            out.extend_from_slice(b"HD");
        }
        for t in req.flag_tokens() {
            let Some(it) = slot.item() else { break };
            match t[0] {
                b'T' => {
                    ttl_set = true;
                    slot.set_exptime(i64::from(f.ttl.unwrap_or(0)));
                }
                b'N' if created => {
                    slot.set_exptime(i64::from(f.vivify.unwrap_or(0)));
                    won = true;
                }
                b'R' => {
                    let recache = engine.clock().realtime(i64::from(f.recache.unwrap_or(0)));
                    if !it.win_sent() && !created && it.exptime() != 0 && it.exptime() < recache {
                        won = true;
                    }
                }
                b's' => meta::push_flag_u64(out, b's', it.value_len() as u64),
                b't' => meta::push_ttl(out, it.exptime(), now),
                b'c' => meta::push_flag_u64(out, b'c', it.cas()),
                b'f' => meta::push_flag_u64(out, b'f', u64::from(it.flags())),
                b'l' => {
                    meta::push_flag_u64(out, b'l', u64::from(now.wrapping_sub(it.last_access())))
                }
                b'h' => out.extend_from_slice(if it.fetched() { b" h1" } else { b" h0" }),
                b'O' => {
                    let fits = opaque(out, t, start);
                    if !fits {
                        return;
                    }
                }
                // The item's own flag decides, as in memcached: a key
                // stored with `b` comes back base64 even when asked without.
                b'k' => meta::push_key(out, it.key(), it.key_binary()),
                _ => {}
            }
        }
        if let Some(it) = slot.item() {
            // Z before X before W, as memcached writes them.
            if it.win_sent() {
                out.extend_from_slice(b" Z");
            }
            if it.stale() {
                out.extend_from_slice(b" X");
                if !it.win_sent() {
                    won = true;
                }
            }
            if won {
                out.extend_from_slice(b" W");
            }
            out.extend_from_slice(b"\r\n");
            if f.value {
                out.value(&it);
                out.extend_from_slice(b"\r\n");
            }
        }
        if won {
            slot.set_win_sent(true);
        }
        if !f.no_update {
            slot.bump();
        }
    } else {
        for t in req.flag_tokens() {
            if too_long(t) {
                out.extend_from_slice(OPAQUE_TOO_LONG);
                return;
            }
        }
        if !f.quiet {
            out.extend_from_slice(b"EN");
            echo_flags(req, req.key, out);
            out.extend_from_slice(b"\r\n");
        }
    }
    if ttl_set {
        ctx.ws.touch_cmds.incr();
        slot.count_touch();
    } else {
        ctx.ws.get_cmds.incr();
        slot.count_get();
    }
}

/// `ms`: refused lines swallow their data; otherwise wait for the data
/// block (after the `head` bytes of the line) and store it.
fn mset(
    ctx: &Ctx,
    stream: bool,
    req: &Request,
    head: usize,
    input: &[u8],
    out: &mut Vec<u8>,
    direct: Option<Reserved>,
) -> Outcome {
    let rest = &input[head..];
    let engine = &ctx.shared.engine;
    let f = &req.flags;
    let n = req.datalen;
    if !engine.item_size_ok(req.key.len(), f.client_flags, n) {
        out.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
        ctx.ws.store_too_large.incr();
        // memcached unlinks the old value so readers never see data the
        // client meant to replace.
        engine.unlink_key(req.key);
        return Outcome::Swallow {
            used: head,
            left: n + 2,
        };
    }
    // Input bytes this request takes after its line: the data block, or
    // only its terminator when the data went straight into `direct`.
    let (value_len, after) = if direct.is_some() { (0, 2) } else { (n, n + 2) };
    let used = head + after;
    if rest.len() < after {
        debug_assert!(
            direct.is_none(),
            "the terminator is read before a direct ms runs"
        );
        let need = head + n + 2;
        if stream && need > DIRECT_ABOVE {
            return reserve(ctx, req, head, out);
        }
        return Outcome::NeedMore { need };
    }
    if &rest[value_len..after] != b"\r\n" {
        // memcached counts the set once the item is allocated and read,
        // before it checks the terminator.
        engine.count_set(req.key.len(), f.client_flags, n, ctx.ts);
        out.extend_from_slice(b"CLIENT_ERROR bad data chunk\r\n");
        return Outcome::Done { used };
    }
    let mut value = match direct {
        Some(r) => Value::Item(Some(r)),
        None => Value::Bytes(&rest[..n]),
    };
    let mut mode = store_mode(req.set_mode);
    if f.compare_cas.is_some() && matches!(mode, StoreMode::Set | StoreMode::Replace) {
        mode = StoreMode::Cas;
    }
    let cas = f.compare_cas.unwrap_or(0);
    let exptime = i64::from(f.ttl.unwrap_or(0));
    let mut slot = hooks::lock_key(ctx, req.key);
    let outcome = match slot.item() {
        // `I` with an older CAS: the value is replaced but stays stale,
        // keeping the TTL and any win token already handed out.
        Some(it) if mode == StoreMode::Cas && f.invalidate && cas != it.cas() && cas < it.cas() => {
            let old_exp = it.exptime();
            let old_win = it.win_sent();
            let now = slot.now();
            let o = value.store(&mut slot, StoreMode::Set, f.client_flags, 0, 0, f.new_cas);
            if let StoreOutcome::Stored { .. } = o {
                if old_exp != 0 {
                    slot.set_exptime(i64::from(old_exp.saturating_sub(now).max(1)));
                }
                slot.set_stale(true);
                slot.set_win_sent(old_win);
            }
            o
        }
        _ => value.store(&mut slot, mode, f.client_flags, exptime, cas, f.new_cas),
    };
    if ctx.shared.log.wants(watch::MUTATIONS) {
        let stored = match outcome {
            StoreOutcome::Stored { .. } => slot
                .item()
                .map(|it| (it.class_id(), it.value_len(), it.exptime())),
            _ => None,
        };
        hooks::Store::new(req.key, mode, f.client_flags, exptime, n).mutation(ctx, outcome, stored);
    }
    // A key that came base64-decoded is echoed base64 later (mg k, me);
    // memcached marks only the item the request itself allocated, so an
    // append's combined item does not carry the mark.
    if f.base64
        && matches!(outcome, StoreOutcome::Stored { .. })
        && !matches!(mode, StoreMode::Append | StoreMode::Prepend)
    {
        slot.set_key_binary(true);
    }
    let (status, stored_cas): (&[u8], u64) = match outcome {
        StoreOutcome::Stored { cas } => (b"HD", cas),
        StoreOutcome::Exists => (b"EX", 0),
        StoreOutcome::NotFound => (b"NF", 0),
        StoreOutcome::NotStored => (b"NS", 0),
        StoreOutcome::TooLarge => {
            ctx.ws.store_too_large.incr();
            out.extend_from_slice(b"SERVER_ERROR object too large for cache\r\n");
            return Outcome::Done { used };
        }
        StoreOutcome::OutOfMemory => {
            ctx.ws.store_no_memory.incr();
            out.extend_from_slice(b"SERVER_ERROR out of memory storing object\r\n");
            return Outcome::Done { used };
        }
    };
    if f.quiet && status == b"HD" {
        return Outcome::Done { used };
    }
    out.extend_from_slice(status);
    for t in req.flag_tokens() {
        match t[0] {
            b'O' => meta::push_opaque(out, t),
            b'k' => meta::push_key(out, req.key, f.base64),
            b'c' => meta::push_flag_u64(out, b'c', stored_cas),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
    Outcome::Done { used }
}

/// An `ms` data block: in the input buffer, or already in its item.
enum Value<'a> {
    Bytes(&'a [u8]),
    Item(Option<Reserved>),
}

impl Value<'_> {
    fn store(
        &mut self,
        slot: &mut KeySlot<'_>,
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        cas: u64,
        new_cas: Option<u64>,
    ) -> StoreOutcome {
        match self {
            Value::Bytes(b) => slot.store(mode, flags, exptime, b, cas, new_cas),
            Value::Item(r) => match r.take() {
                Some(r) => {
                    let o = slot.store_reserved(mode, r, cas, new_cas);
                    // The reservation took the request's TTL; a caller
                    // storing with another (the `I` path) gets it here.
                    if matches!(o, StoreOutcome::Stored { .. })
                        && !matches!(mode, StoreMode::Append | StoreMode::Prepend)
                    {
                        slot.set_exptime(exptime);
                    }
                    o
                }
                None => StoreOutcome::NotStored,
            },
        }
    }
}

/// Some(true): the item was deleted; Some(false): invalidated (a write);
/// None: nothing changed.
fn mdelete(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) -> Option<bool> {
    let f = &req.flags;
    let mut changed = None;
    let mut slot = hooks::lock_key(ctx, req.key);
    let status: &[u8] = match slot.item().map(|it| it.cas()) {
        Some(cas) if f.compare_cas.is_some_and(|c| c != cas) => {
            slot.count_delete_miss();
            b"EX"
        }
        Some(_) if f.invalidate => {
            if let Some(ttl) = f.ttl {
                slot.set_exptime(i64::from(ttl));
            }
            slot.set_stale(true);
            // The next reader may win the recache token again.
            slot.set_win_sent(false);
            let cas = f.new_cas.unwrap_or_else(|| slot.next_cas());
            slot.set_cas(cas);
            changed = Some(false);
            b"HD"
        }
        Some(_) => {
            hooks::deleted(ctx, req.key, "md", hooks::slot_line(&slot));
            slot.delete();
            changed = Some(true);
            b"HD"
        }
        None => {
            // Counts the miss (delete_misses), as memcached does.
            slot.delete();
            b"NF"
        }
    };
    if f.quiet && status == b"HD" {
        return changed;
    }
    out.extend_from_slice(status);
    echo_flags(req, req.key, out);
    out.extend_from_slice(b"\r\n");
    changed
}

/// Whether the item was written other than by counting, for replication
/// to record: `Some(false)` created by `N` (its whole state), `Some(true)`
/// given a TTL by `T` (the TTL alone), `None` neither.
fn marith(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) -> Option<bool> {
    let touched = req.flags.ttl.is_some();
    let f = &req.flags;
    let mut slot = hooks::lock_key(ctx, req.key);
    let start = out.len();
    let mut created = false;
    let mut value = None;
    let cas_mismatch = match (f.compare_cas, slot.item()) {
        (Some(c), Some(it)) => c != 0 && it.value_len() > 0 && it.cas() != c,
        _ => false,
    };
    if cas_mismatch {
        out.extend_from_slice(b"EX");
    } else if !slot.exists() && f.vivify.is_some() {
        let initial = f.initial.unwrap_or(0);
        let mut buf = [0u8; 20];
        let digits = decimal(initial, &mut buf);
        match slot.store(StoreMode::Add, 0, 0, digits, 0, f.new_cas) {
            StoreOutcome::Stored { .. } => {
                created = true;
                value = Some(initial);
            }
            StoreOutcome::OutOfMemory | StoreOutcome::TooLarge => {
                out.extend_from_slice(b"SERVER_ERROR Out of memory allocating new item\r\n");
                return None;
            }
            _ => out.extend_from_slice(b"NS"),
        }
    } else {
        let delta = f.delta.unwrap_or(1);
        let repl = ctx.shared.repl.as_deref();
        let pre = repl.and_then(|r| crate::repl::hooks::arith_pre(r, &slot));
        let o = slot.arith(req.incr, delta, f.new_cas);
        if let Some(r) = repl {
            crate::repl::hooks::arith_post(r, &mut slot, req.key, req.incr, delta, pre, o);
        }
        match o {
            ArithOutcome::Value(v) => value = Some(v),
            ArithOutcome::NotFound => out.extend_from_slice(b"NF"),
            ArithOutcome::NonNumeric => {
                out.extend_from_slice(
                    b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                );
                return written(touched, created);
            }
            ArithOutcome::OutOfMemory => {
                out.extend_from_slice(b"SERVER_ERROR out of memory\r\n");
                return written(touched, created);
            }
        }
    }
    let Some(v) = value else {
        for t in req.flag_tokens() {
            if too_long(t) {
                out.truncate(start);
                out.extend_from_slice(OPAQUE_TOO_LONG);
                return written(touched, created);
            }
        }
        echo_flags(req, req.key, out);
        out.extend_from_slice(b"\r\n");
        return written(touched, created);
    };
    let mut buf = [0u8; 20];
    let digits = decimal(v, &mut buf);
    let nd = digits.len();
    if f.value {
        out.extend_from_slice(b"VA ");
        push_u64(out, nd as u64);
    } else {
        out.extend_from_slice(b"HD");
    }
    let now = slot.now();
    for t in req.flag_tokens() {
        let Some(it) = slot.item() else { break };
        match t[0] {
            b'c' => meta::push_flag_u64(out, b'c', it.cas()),
            b't' => meta::push_ttl(out, it.exptime(), now),
            b'T' => slot.set_exptime(i64::from(f.ttl.unwrap_or(0))),
            b'N' if created => slot.set_exptime(i64::from(f.vivify.unwrap_or(0))),
            b'O' => {
                let fits = opaque(out, t, start);
                if !fits {
                    return written(touched, created);
                }
            }
            b'k' => meta::push_key(out, req.key, f.base64),
            _ => {}
        }
    }
    // memcached silences a successful incr/decr, not an autovivify.
    if f.quiet && !created {
        out.truncate(start);
        return written(touched, created);
    }
    if f.value {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(digits);
    }
    out.extend_from_slice(b"\r\n");
    written(touched, created)
}

/// See [`marith`]: a created item is recorded whole, its TTL with it.
fn written(touched: bool, created: bool) -> Option<bool> {
    match (created, touched) {
        (true, _) => Some(false),
        (false, true) => Some(true),
        (false, false) => None,
    }
}

/// `me`: memcached's debug line for one item.
fn mdebug(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) {
    let engine = &ctx.shared.engine;
    let slot: KeySlot = engine.lock_key(req.key, ctx.ts);
    ctx.ws.meta_cmds.incr();
    let Some(it) = slot.item() else {
        out.extend_from_slice(b"EN\r\n");
        return;
    };
    let now = slot.now();
    out.extend_from_slice(b"ME ");
    // memcached re-encodes from the item's own mark, not the request's.
    if it.key_binary() {
        meta::base64_encode(it.key(), out);
    } else {
        out.extend_from_slice(it.key());
    }
    out.extend_from_slice(b" exp=");
    if it.exptime() == 0 {
        out.extend_from_slice(b"-1");
    } else {
        // memcached prints current_time - exptime as a signed int.
        let d = now.wrapping_sub(it.exptime()) as i32;
        if d < 0 {
            out.push(b'-');
        }
        push_u64(out, u64::from(d.unsigned_abs()));
    }
    out.extend_from_slice(b" la=");
    push_u64(out, u64::from(now.wrapping_sub(it.last_access())));
    out.extend_from_slice(b" cas=");
    push_u64(out, it.cas());
    out.extend_from_slice(if it.fetched() {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    push_u64(out, u64::from(it.class_id()));
    out.extend_from_slice(b" size=");
    // memcached's ITEM_ntotal: header, key + NUL, value + CRLF, the flags
    // suffix when non-zero and the CAS when enabled.
    let size = 48
        + it.key().len()
        + 1
        + it.value_len()
        + 2
        + if it.flags() != 0 { 4 } else { 0 }
        + if engine.config().use_cas { 8 } else { 0 };
    push_u64(out, size as u64);
    out.extend_from_slice(b"\r\n");
}
