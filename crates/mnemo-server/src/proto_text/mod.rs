//! The text protocol: frames a request line, parses it, executes it
//! against the engine and appends the reply to the output. Meta commands
//! share the framing and go on to `proto_meta`.
//!
//! Reply strings, which errors `noreply` silences, and where the
//! connection closes are memcached 1.6.18's (`proto_text.c`).

mod admin;

use crate::conn::MAX_GET_LINE;
use crate::dispatch::{Ctx, Front, Outcome, Resume, Session, DIRECT_ABOVE};
use crate::out::Out;
use crate::proto_meta;
use crate::shared::VERSION;
use crate::stats::{conns_stats, general_stats, pairs, settings_stats, stat_line, PrefixOp};
use crate::watch::{self, hooks};
use admin::{crawler, lru, watch_command};
use mnemo_engine::{
    ArithOutcome, EngineItem, GetMode, GetVisitor, MetadumpCursor, MetadumpTarget, Reserved,
    StoreMode, StoreOutcome,
};
use mnemo_protocol::text::{
    self, Automove, CrawlerCmd, DetailCmd, GetKind, Keys, Line, LruCmd, Request, StatsCmd,
    StoreKind,
};
use std::sync::atomic::Ordering::Relaxed;

/// memcached's MAX_VERBOSITY_LEVEL.
const MAX_VERBOSITY: u32 = 2;
/// memcached's MAX_NUMBER_OF_SLAB_CLASSES (for `stats cachedump`).
const MAX_SLAB_CLASSES: u32 = 64;

/// Frames the line at the front of `input` and runs it: a meta command
/// through `proto_meta`, anything else through [`execute`].
#[inline(always)]
pub fn step(ctx: &Ctx, sess: &mut Session, front: Front, out: &mut Out) -> Outcome {
    let input = front.input;
    let (line, consumed) = match text::next_line(input) {
        Line::Incomplete if input.len() >= MAX_GET_LINE => return Outcome::Close,
        Line::Incomplete => return Outcome::NeedMore { need: 0 },
        Line::TooLong => return Outcome::Close,
        Line::Complete { line, consumed } => (line, consumed),
    };
    if let Some(info) = sess.info() {
        let now = ctx.shared.engine.clock().now();
        info.last_cmd.store(now, Relaxed);
        if ctx.shared.verbose() > 1 {
            eprintln!("<{} {}", ctx.fd, String::from_utf8_lossy(line));
        }
    }
    if proto_meta::is_meta(line) {
        let stream = sess.is_stream();
        return proto_meta::step(ctx, stream, line, consumed, input, out, front.direct);
    }
    let at = At {
        input,
        line,
        consumed,
        resume: front.resume,
        direct: front.direct,
    };
    execute(ctx, sess, text::parse_line(line), at, out)
}

/// Where the request being executed stands in its input.
struct At<'a> {
    /// All buffered input, from the request's first byte.
    input: &'a [u8],
    /// The request line, without its terminator.
    line: &'a [u8],
    /// Length of the line with its terminator.
    consumed: usize,
    resume: Resume,
    /// The value, when it was read straight into its item.
    direct: Option<Reserved>,
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// memcached's `out_string`: the reply, unless `noreply` silenced it.
fn reply(ctx: &Ctx, out: &mut Vec<u8>, s: &str, noreply: bool) {
    if ctx.shared.verbose() > 1 {
        if noreply {
            eprintln!(">{} NOREPLY {}", ctx.fd, s);
        } else {
            eprintln!(">{} {}", ctx.fd, s);
        }
    }
    if !noreply {
        line(out, s);
    }
}

fn store_mode(k: StoreKind) -> StoreMode {
    match k {
        StoreKind::Set => StoreMode::Set,
        StoreKind::Add => StoreMode::Add,
        StoreKind::Replace => StoreMode::Replace,
        StoreKind::Append => StoreMode::Append,
        StoreKind::Prepend => StoreMode::Prepend,
        StoreKind::Cas => StoreMode::Cas,
    }
}

/// A storage command (`req` is a `Request::Store`): refused before its
/// data is read when the item can never fit, run once the value is
/// buffered, or (a large value still arriving over a stream) given the
/// item its value is read into.
fn store(ctx: &Ctx, sess: &Session, req: &Request, at: At, out: &mut Out) -> Outcome {
    let head = at.consumed;
    let Request::Store {
        kind,
        key,
        flags,
        exptime,
        bytes,
        cas,
        noreply,
    } = *req
    else {
        // execute() hands nothing else here.
        return Outcome::Done { used: head };
    };
    if at.resume == Resume::Fresh {
        if let Some(left) = precheck_store(ctx, kind, key, flags, bytes, noreply, out) {
            return Outcome::Swallow { used: head, left };
        }
    }
    let engine = &ctx.shared.engine;
    let mode = store_mode(kind);
    // With the value in its item, only the terminator follows the line.
    let value_len = if at.direct.is_some() { 0 } else { bytes };
    let need = head + value_len + 2;
    if at.input.len() < need {
        if at.direct.is_none() && need > DIRECT_ABOVE && sess.is_stream() {
            // memcached allocates the item at this point too.
            return match engine.reserve(mode, key, flags, exptime, bytes) {
                Ok(value) => Outcome::Direct {
                    head,
                    trailer: 2,
                    value,
                },
                Err(outcome) => {
                    reply(ctx, out, store_reply(ctx, outcome), noreply);
                    Outcome::Swallow {
                        used: head,
                        left: bytes + 2,
                    }
                }
            };
        }
        return Outcome::NeedMore { need };
    }
    let data = &at.input[head..need];
    if &data[value_len..] != b"\r\n" {
        // memcached counts the set before it checks the terminator.
        engine.count_set(key.len(), flags, bytes, ctx.ts);
        reply(ctx, out, "CLIENT_ERROR bad data chunk", noreply);
        return Outcome::Done { used: need };
    }
    let watched = ctx.shared.log.wants(watch::FETCHERS | watch::MUTATIONS);
    let log = watched.then(|| hooks::Store::start(ctx, key, mode, flags, exptime, bytes));
    let repl = ctx.shared.repl.as_deref();
    let now_before = repl.map_or(0, |_| engine.clock().now());
    let direct = at.direct.is_some();
    let outcome = match at.direct {
        Some(value) => engine.store_reserved(mode, key, value, cas, ctx.ts),
        None => engine.store(mode, key, flags, exptime, &data[..bytes], cas, ctx.ts),
    };
    if let Some(log) = log {
        log.done(ctx, outcome);
    }
    if let (Some(r), StoreOutcome::Stored { cas: version }) = (repl, outcome) {
        // The item holds exactly the request's value unless it was
        // appended to (or the value went straight into its item).
        let whole = !matches!(mode, StoreMode::Append | StoreMode::Prepend);
        if whole && !direct {
            let w = crate::repl::node::StoredWrite {
                key,
                flags,
                exptime,
                value: &data[..bytes],
                cas: version,
            };
            crate::repl::hooks::stored(r, &w, now_before, ctx.ts);
        } else {
            crate::repl::hooks::written(r, key, ctx.ts);
        }
    }
    reply(ctx, out, store_reply(ctx, outcome), noreply);
    Outcome::Done { used: need }
}

/// Called for a storage line before its data is read: `Some(n)` when the
/// item can never fit and the `n` data bytes must be swallowed.
fn precheck_store(
    ctx: &Ctx,
    kind: StoreKind,
    key: &[u8],
    flags: u32,
    bytes: usize,
    noreply: bool,
    out: &mut Vec<u8>,
) -> Option<usize> {
    if ctx.shared.runtime.detail_enabled.load(Relaxed) {
        ctx.shared
            .global
            .record_prefix(key, ctx.shared.settings.prefix_delimiter, PrefixOp::Set);
    }
    if ctx.shared.engine.item_size_ok(key.len(), flags, bytes)
        && memcached_item_fits(&ctx.shared.settings, key.len(), flags, bytes)
    {
        return None;
    }
    reply(ctx, out, "SERVER_ERROR object too large for cache", noreply);
    ctx.ws.store_too_large.incr();
    if kind == StoreKind::Set {
        // memcached drops the old value when a set fails, so a reader never
        // sees data the client meant to replace. The engine API has no
        // stat-free unlink yet, so this shows in delete_hits/delete_misses,
        // which memcached's unlink does not.
        if ctx.shared.engine.delete(key, ctx.ts) {
            if let Some(r) = ctx.shared.repl.as_deref() {
                crate::repl::hooks::deleted(r, key, ctx.ts);
            }
        }
    }
    Some(bytes + 2)
}

/// memcached's `item_size_ok`: its 48-byte item header, the CAS when
/// enabled, key + NUL, the flags when non-zero and the value with its
/// `\r\n` must fit in `-I`. mnemo's items are smaller, but a value
/// memcached refuses is refused here too, so clients see the same limit.
fn memcached_item_fits(
    s: &crate::settings::Settings,
    nkey: usize,
    flags: u32,
    bytes: usize,
) -> bool {
    const ITEM_HEADER: usize = 48;
    let cas = if s.engine.use_cas { 8 } else { 0 };
    let suffix = if flags == 0 { 0 } else { 4 };
    ITEM_HEADER + cas + nkey + 1 + suffix + bytes + 2 <= s.engine.item_size_max
}

/// memcached's answer to a storage command's outcome, counting failures.
fn store_reply(ctx: &Ctx, outcome: StoreOutcome) -> &'static str {
    match outcome {
        StoreOutcome::Stored { .. } => "STORED",
        StoreOutcome::NotStored => "NOT_STORED",
        StoreOutcome::Exists => "EXISTS",
        StoreOutcome::NotFound => "NOT_FOUND",
        StoreOutcome::TooLarge => {
            ctx.ws.store_too_large.incr();
            "SERVER_ERROR object too large for cache"
        }
        StoreOutcome::OutOfMemory => {
            ctx.ws.store_no_memory.incr();
            "SERVER_ERROR out of memory storing object"
        }
    }
}

/// `-o read_buf_mem_limit` left no response object for a get's next key.
pub struct NoResponseObject;

/// Runs a retrieval command. Returns the keys not yet served when the
/// output passed `pause_at` bytes (no `END` written yet), else `None`.
/// Under `-o read_buf_mem_limit` each key after the command's first takes
/// a response object as memcached's do (`fresh`: the line starts here,
/// not a paused get resuming), and a key that gets none ends the get.
#[inline]
pub fn get<'a>(
    ctx: &Ctx,
    kind: GetKind,
    exptime: i64,
    keys: Keys<'a>,
    out: &mut Out,
    pause_at: usize,
    fresh: bool,
) -> Result<Option<Keys<'a>>, NoResponseObject> {
    if ctx.budget.is_none() && !ctx.shared.log.wants(watch::FETCHERS) {
        return get_keys::<false>(ctx, kind, exptime, keys, out, pause_at, fresh);
    }
    get_observed(ctx, kind, exptime, keys, out, pause_at, fresh)
}

/// [`get`] with a watcher of fetchers or a buffer budget to serve: kept
/// out of line so the plain path stays as it was.
#[cold]
#[inline(never)]
fn get_observed<'a>(
    ctx: &Ctx,
    kind: GetKind,
    exptime: i64,
    keys: Keys<'a>,
    out: &mut Out,
    pause_at: usize,
    fresh: bool,
) -> Result<Option<Keys<'a>>, NoResponseObject> {
    get_keys::<true>(ctx, kind, exptime, keys, out, pause_at, fresh)
}

/// A text get's hit: `VALUE key flags len [cas]`, the value, CRLF.
/// Written per engine through `Engine::get_visit`, so the accessors are
/// the engine's own (no facade match, inlined into the engine's get).
#[inline(always)]
fn emit_value<I: EngineItem>(out: &mut Out, it: &I, with_cas: bool) {
    text::encode_value_header(
        out,
        it.key(),
        it.flags(),
        it.value_len(),
        with_cas.then(|| it.cas()),
    );
    out.value(it);
    out.extend_from_slice(b"\r\n");
}

/// [`emit_value`] for the plain get loop.
struct Emit<'o> {
    out: &'o mut Out,
    with_cas: bool,
}

impl GetVisitor for Emit<'_> {
    type Output = ();
    #[inline(always)]
    fn visit<I: EngineItem>(self, it: &I) {
        emit_value(self.out, it, self.with_cas)
    }
}

/// [`emit_value`] for the observed loop: also the class and length the
/// `watch` line and the stats want.
struct EmitObserved<'o> {
    out: &'o mut Out,
    with_cas: bool,
}

impl GetVisitor for EmitObserved<'_> {
    type Output = (u32, usize);
    #[inline(always)]
    fn visit<I: EngineItem>(self, it: &I) -> (u32, usize) {
        emit_value(self.out, it, self.with_cas);
        (it.class_id(), it.value_len())
    }
}

/// The loop of [`get`]; `OBSERVED` compiles in the `watch` lines and the
/// response-object accounting.
#[inline(always)]
fn get_keys<'a, const OBSERVED: bool>(
    ctx: &Ctx,
    kind: GetKind,
    exptime: i64,
    mut keys: Keys<'a>,
    out: &mut Out,
    pause_at: usize,
    fresh: bool,
) -> Result<Option<Keys<'a>>, NoResponseObject> {
    let mut first = fresh;
    let budget = if OBSERVED { ctx.budget } else { None };
    let taken = budget.map_or(0, |b| b.resps());
    let sh = ctx.shared;
    let engine = &sh.engine;
    let detail = sh.runtime.detail_enabled.load(Relaxed);
    let verbose = sh.verbose() > 1;
    let with_cas = kind.returns_cas();
    let mode = if kind.touches() {
        GetMode::Touch(exptime)
    } else {
        GetMode::Get
    };
    let watched = OBSERVED && sh.log.wants(watch::FETCHERS);
    while let Some(key) = keys.next() {
        if let Some(b) = budget {
            if !std::mem::take(&mut first) && !b.take_resp() {
                ctx.ws.response_obj_oom.incr();
                // memcached frees the get's response objects; one answers.
                b.give_resps(b.resps().saturating_sub(taken));
                return Err(NoResponseObject);
            }
        }
        let before = if watched {
            ctx.ts.expired_flushed()
        } else {
            (0, 0)
        };
        if let GetMode::Touch(_) = mode {
            if let Some(r) = sh.repl.as_deref() {
                crate::repl::hooks::pre_touch(r, key, ctx.ts);
            }
        }
        // The plain instance's visitor returns nothing, as it always did.
        let found = if OBSERVED {
            engine.get_visit(key, mode, ctx.ts, EmitObserved { out, with_cas })
        } else {
            engine
                .get_visit(key, mode, ctx.ts, Emit { out, with_cas })
                .map(|()| (0, 0))
        };
        if watched {
            hooks::fetch(ctx, key, hooks::status(ctx.ts, before, found));
        }
        let hit = found.is_some();
        if let GetMode::Touch(_) = mode {
            if let (true, Some(r)) = (hit, sh.repl.as_deref()) {
                crate::repl::hooks::written(r, key, ctx.ts);
            }
        }
        if kind.touches() {
            ctx.ws.touch_cmds.incr();
        } else {
            ctx.ws.get_cmds.incr();
        }
        if detail {
            sh.global
                .record_prefix(key, sh.settings.prefix_delimiter, PrefixOp::Get { hit });
        }
        if verbose && hit {
            eprintln!(">{} sending key {}", ctx.fd, String::from_utf8_lossy(key));
        }
        if out.queued() >= pause_at && keys.clone().next().is_some() {
            return Ok(Some(keys));
        }
    }
    if verbose {
        eprintln!(">{} END", ctx.fd);
    }
    out.extend_from_slice(b"END\r\n");
    Ok(None)
}

/// `lru_crawler metadump`'s checks: on a refusal writes the reply and
/// returns `None`, else a cursor for [`metadump_step`]. Runs once per
/// dump, before its first byte.
pub fn metadump_start(ctx: &Ctx, classes: &[u8], out: &mut Vec<u8>) -> Option<MetadumpCursor> {
    let sh = ctx.shared;
    if !sh.crawler_enabled.load(Relaxed) {
        reply(ctx, out, "CLIENT_ERROR lru crawler disabled", false);
        return None;
    }
    if !sh.settings.dump_enabled {
        reply(ctx, out, "ERROR metadump not allowed", false);
        return None;
    }
    if ctx.pending_output {
        reply(
            ctx,
            out,
            "ERROR cannot pipeline other commands before metadump",
            false,
        );
        return None;
    }
    match MetadumpTarget::parse(&String::from_utf8_lossy(classes)) {
        Ok(target) => Some(MetadumpCursor::new(target)),
        Err(e) => {
            reply(ctx, out, &e.to_string(), false);
            None
        }
    }
}

/// Continues a metadump until `out` holds `pause_at` bytes; true once its
/// `END` (or the engine's refusal) is written.
pub fn metadump_step(
    ctx: &Ctx,
    cursor: &mut MetadumpCursor,
    out: &mut Vec<u8>,
    pause_at: usize,
) -> bool {
    match crate::dump::metadump_step(&ctx.shared.engine, cursor, out, pause_at) {
        Ok(done) => done,
        Err(e) => {
            reply(ctx, out, &e.to_string(), false);
            true
        }
    }
}

/// Runs one parsed request.
#[inline]
fn execute(ctx: &Ctx, sess: &mut Session, req: Request, at: At, out: &mut Out) -> Outcome {
    let sh = ctx.shared;
    let engine = &sh.engine;
    let used = at.consumed;
    match req {
        Request::Get {
            kind,
            exptime,
            keys,
        } => {
            let keys = match at.resume {
                Resume::Get { offset } if offset <= at.line.len() => Keys::new(&at.line[offset..]),
                _ => keys,
            };
            let fresh = at.resume == Resume::Fresh;
            match get(ctx, kind, exptime, keys, out, sess.get_pause(), fresh) {
                Ok(Some(rest)) => {
                    let offset = rest.remaining().as_ptr() as usize - at.line.as_ptr() as usize;
                    return Outcome::GetPaused { offset };
                }
                Ok(None) => {}
                Err(NoResponseObject) => get_out_of_memory(ctx, sess, out),
            }
            sess.cull_floor = out.len();
        }
        Request::Store { .. } => return store(ctx, sess, &req, at, out),
        // Streamed over a connection, pausing as the output fills.
        Request::LruCrawler(CrawlerCmd::Metadump(classes)) if sess.is_stream() => {
            if let Some(cursor) = metadump_start(ctx, classes, out) {
                let cursor = Box::new(cursor);
                return Outcome::Metadump { used, cursor };
            }
        }
        // No connection to close or shut down over UDP: the rest of the
        // datagram is dropped.
        Request::Quit | Request::Shutdown { .. } if !sess.is_stream() => return Outcome::Close,
        Request::Delete { key, noreply } => {
            if sh.runtime.detail_enabled.load(Relaxed) {
                sh.global
                    .record_prefix(key, sh.settings.prefix_delimiter, PrefixOp::Delete);
            }
            if sh.log.wants(watch::FETCHERS | watch::DELETIONS) {
                hooks::before_delete(ctx, key);
            }
            let msg = if engine.delete(key, ctx.ts) {
                if let Some(r) = sh.repl.as_deref() {
                    crate::repl::hooks::deleted(r, key, ctx.ts);
                }
                "DELETED"
            } else {
                "NOT_FOUND"
            };
            reply(ctx, out, msg, noreply);
        }
        Request::Arith {
            incr,
            key,
            delta,
            noreply,
        } => match arith(ctx, key, incr, delta) {
            ArithOutcome::Value(v) => {
                if sh.verbose() > 1 {
                    eprintln!(">{} {v}", ctx.fd);
                }
                if !noreply {
                    text::push_u64(out, v);
                    out.extend_from_slice(b"\r\n");
                }
            }
            ArithOutcome::NotFound => reply(ctx, out, "NOT_FOUND", noreply),
            ArithOutcome::NonNumeric => reply(
                ctx,
                out,
                "CLIENT_ERROR cannot increment or decrement non-numeric value",
                noreply,
            ),
            ArithOutcome::OutOfMemory => reply(ctx, out, "SERVER_ERROR out of memory", noreply),
        },
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            ctx.ws.touch_cmds.incr();
            let touched = if sh.log.wants(watch::FETCHERS) {
                hooks::touch(ctx, key, exptime)
            } else {
                engine.touch(key, exptime, ctx.ts)
            };
            if let (true, Some(r)) = (touched, sh.repl.as_deref()) {
                crate::repl::hooks::touched(r, key, ctx.ts);
            }
            let msg = if touched { "TOUCHED" } else { "NOT_FOUND" };
            reply(ctx, out, msg, noreply);
        }
        Request::FlushAll { delay, noreply } => {
            ctx.ws.flush_cmds.incr();
            if sh.settings.flush_enabled {
                engine.flush_all(delay.max(0));
                if let Some(r) = sh.repl.as_deref() {
                    crate::repl::hooks::flushed(r, delay);
                }
                reply(ctx, out, "OK", noreply);
            } else {
                reply(ctx, out, "CLIENT_ERROR flush_all not allowed", noreply);
            }
        }
        Request::Version => {
            reply(ctx, out, &format!("VERSION {VERSION}"), false);
        }
        Request::Watch { args } => {
            if let Some(flags) = watch_command(ctx, sess, args, out) {
                return Outcome::Watch { flags };
            }
        }
        Request::Verbosity { level, noreply } => {
            sh.runtime.verbose.store(level.min(MAX_VERBOSITY), Relaxed);
            reply(ctx, out, "OK", noreply);
        }
        Request::Quit => return Outcome::CloseAfterWrite { used },
        Request::Shutdown { graceful } => {
            if sh.settings.shutdown_command {
                crate::signals::request_stop(graceful);
                return Outcome::Close;
            }
            reply(ctx, out, "ERROR: shutdown not enabled", false);
        }
        Request::ShutdownBadMode => {
            let msg = if sh.settings.shutdown_command {
                "CLIENT_ERROR invalid shutdown mode"
            } else {
                "ERROR: shutdown not enabled"
            };
            reply(ctx, out, msg, false);
        }
        Request::Stats(cmd) => {
            stats(ctx, cmd, out);
        }
        Request::CacheMemlimit { megabytes, noreply } => {
            let msg = if megabytes < 8 {
                "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m"
            } else if megabytes > 1_000_000_000 {
                "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes"
            } else if engine
                .set_mem_limit(megabytes as usize * 1024 * 1024)
                .is_ok()
            {
                if sh.verbose() > 0 {
                    eprintln!("maxbytes adjusted to {megabytes}m");
                }
                "OK"
            } else {
                "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust"
            };
            reply(ctx, out, msg, noreply);
        }
        Request::SlabsReassign(args) => match (engine.config().slab_reassign, args) {
            (false, _) => reply(ctx, out, "CLIENT_ERROR slab reassignment disabled", false),
            (true, None) => reply(ctx, out, text::BAD_FORMAT, false),
            (true, Some((src, dst))) => match engine.slabs_reassign(src, dst) {
                Ok(()) => reply(ctx, out, "OK", false),
                Err(e) => reply(ctx, out, &e.to_string(), false),
            },
        },
        Request::SlabsAutomove { arg, noreply } => {
            match arg {
                Automove::Ratio(r) => engine.set_automove_ratio(r),
                Automove::Level(l) => engine.set_automove(l),
            }
            reply(ctx, out, "OK", noreply);
        }
        Request::LruCrawler(cmd) => {
            crawler(ctx, cmd, out);
        }
        Request::Lru { cmd, noreply } => {
            lru(ctx, cmd, noreply, out);
        }
        // Unknown to the parser, which knows no TLS: memcached's
        // `refresh_certs` is looked for only here, off the request path.
        Request::Error { msg: "ERROR", .. } if crate::tls::is_refresh_certs(at.line) => {
            crate::tls::refresh_certs(ctx, at.line, out);
        }
        // Likewise `mn_repl HELLO`: a peer asking for this node's stream.
        Request::Error { msg: "ERROR", .. }
            if sh.repl.is_some() && sess.is_stream() && at.line.starts_with(b"mn_repl ") =>
        {
            if let Some(hello) = crate::repl::hooks::hello(at.line, out) {
                // Boxed: a rare outcome must not make every one larger.
                let hello = Box::new(crate::repl::Handoff {
                    hello,
                    binary_opaque: None,
                });
                return Outcome::Repl { used, hello };
            }
        }
        Request::Error { msg, noreply } => {
            reply(ctx, out, msg, noreply);
        }
        Request::Close => return Outcome::Close,
        Request::GetKeyTooLong => {
            // memcached culls every reply it has not sent yet before
            // answering this one; clients see the same bytes from us.
            out.cull_to(sess.cull_floor);
            reply(ctx, out, text::BAD_FORMAT, false);
        }
    }
    Outcome::Done { used }
}

/// memcached drops the replies it has not sent and answers this instead
/// of the rest of a get that found no response object.
#[cold]
#[inline(never)]
fn get_out_of_memory(ctx: &Ctx, sess: &Session, out: &mut Out) {
    out.cull_to(sess.cull_floor);
    reply(
        ctx,
        out,
        "SERVER_ERROR out of memory writing get response",
        false,
    );
}

/// incr/decr, reported to fetchers as memcached's lookup is.
fn arith(ctx: &Ctx, key: &[u8], incr: bool, delta: u64) -> ArithOutcome {
    if ctx.shared.log.wants(watch::FETCHERS) {
        hooks::fetch(ctx, key, hooks::probe(ctx, key));
    }
    match ctx.shared.repl.as_deref() {
        Some(r) => crate::repl::hooks::arith(r, key, incr, delta, ctx.ts),
        None => ctx.shared.engine.arith(key, incr, delta, ctx.ts),
    }
}

pub fn stats(ctx: &Ctx, cmd: StatsCmd, out: &mut Vec<u8>) {
    let sh = ctx.shared;
    match cmd {
        StatsCmd::General => {
            general_stats(sh, out);
            out.extend_from_slice(b"END\r\n");
        }
        StatsCmd::Reset => {
            sh.engine.stats_reset();
            sh.global.reset(&sh.workers);
            crate::tls::reset(sh);
            reply(ctx, out, "RESET", false);
        }
        StatsCmd::Detail(DetailCmd::On) => {
            sh.runtime.detail_enabled.store(true, Relaxed);
            reply(ctx, out, "OK", false);
        }
        StatsCmd::Detail(DetailCmd::Off) => {
            sh.runtime.detail_enabled.store(false, Relaxed);
            reply(ctx, out, "OK", false);
        }
        StatsCmd::Detail(DetailCmd::Dump) => sh.global.dump_prefixes(out),
        StatsCmd::Settings => {
            settings_stats(sh, out);
            out.extend_from_slice(b"END\r\n");
        }
        StatsCmd::Conns => {
            conns_stats(sh, out);
            out.extend_from_slice(b"END\r\n");
        }
        StatsCmd::CacheDump(args) => {
            if !sh.settings.dump_enabled {
                return reply(ctx, out, "CLIENT_ERROR stats cachedump not allowed", false);
            }
            match args {
                Err(msg) => reply(ctx, out, msg, false),
                Ok((class, _)) if class >= MAX_SLAB_CLASSES => {
                    reply(ctx, out, "CLIENT_ERROR Illegal slab id", false)
                }
                Ok((class, limit)) => crate::dump::cachedump(&sh.engine, class, limit, out),
            }
        }
        StatsCmd::Engine(sub) => match sub {
            b"items" => pairs(out, sh.engine.stats_items()),
            b"slabs" => pairs(out, sh.engine.stats_slabs()),
            b"sizes" => {
                let from = *sh.runtime.sizes_from_cas.lock();
                match from {
                    Some(min_cas) => pairs(out, sh.engine.stats_sizes(min_cas)),
                    None => {
                        stat_line(out, "sizes_status", "disabled");
                        out.extend_from_slice(b"END\r\n");
                    }
                }
            }
            // memcached 1.6.18 sends no END after sizes_enable and
            // sizes_disable (its handlers never close the block); nor do we.
            b"sizes_enable" => {
                let mut from = sh.runtime.sizes_from_cas.lock();
                if !sh.engine.config().use_cas {
                    // The histogram knows new items by their CAS.
                    stat_line(out, "sizes_status", "error");
                    stat_line(out, "sizes_error", "cas_support_disabled");
                } else {
                    // Switched on again while on, it keeps counting from
                    // where it started.
                    from.get_or_insert_with(|| sh.engine.draw_cas());
                    stat_line(out, "sizes_status", "enabled");
                }
            }
            b"sizes_disable" => {
                *sh.runtime.sizes_from_cas.lock() = None;
                stat_line(out, "sizes_status", "disabled");
            }
            b"replication" if sh.repl.is_some() => crate::repl::stats::write(sh, out),
            _ => reply(ctx, out, "ERROR", false),
        },
    }
}
