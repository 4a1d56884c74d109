//! Executes parsed text-protocol requests against the engine and appends
//! the replies to the connection's output buffer.
//!
//! Reply strings, which errors `noreply` silences, and where the
//! connection closes are memcached 1.6.18's (`proto_text.c`).

use crate::out::Out;
use crate::shared::{ConnState, Shared, VERSION};
use crate::stats::{stat_line, PrefixOp, WorkerStats};
use mnemo_engine::{
    ArithOutcome, GetMode, MetadumpCursor, MetadumpTarget, Reserved, StoreMode, StoreOutcome,
    ThreadStats,
};
use mnemo_protocol::text::{
    self, Automove, CrawlerCmd, DetailCmd, GetKind, Keys, LruCmd, Request, StatsCmd, StoreKind,
};
use std::sync::atomic::Ordering::Relaxed;

/// memcached's MAX_VERBOSITY_LEVEL.
const MAX_VERBOSITY: u32 = 2;
/// memcached's MAX_NUMBER_OF_SLAB_CLASSES (for `stats cachedump`).
const MAX_SLAB_CLASSES: u32 = 64;

/// What the connection does after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Flush what is queued, then close (`quit`).
    CloseAfterWrite,
    /// Close at once, dropping queued output (HTTP request, `shutdown`).
    Close,
}

/// Per-thread handles a request needs.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub ts: &'a ThreadStats,
    pub ws: &'a WorkerStats,
    /// File descriptor, for `-vv` logging.
    pub fd: i32,
    /// Whether replies are already queued ahead of this request
    /// (`lru_crawler metadump` refuses to run behind them).
    pub pending_output: bool,
    /// The worker's spare read buffers.
    pub rbuf_pool: &'a mut Vec<Vec<u8>>,
    /// A large value still arriving may be read straight into its item
    /// (a stream connection; a datagram holds its whole request).
    pub direct_values: bool,
    /// The worker sends replies in one batch after this event round; a
    /// flush leaves them queued for it.
    pub defer_send: bool,
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

/// Called for a storage line before its data is read: `Some(n)` when the
/// item can never fit and the `n` data bytes must be swallowed.
pub fn precheck_store(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) -> Option<usize> {
    let Request::Store {
        kind,
        key,
        flags,
        bytes,
        noreply,
        ..
    } = *req
    else {
        return None;
    };
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
        ctx.shared.engine.delete(key, ctx.ts);
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

/// For a storage command whose value is still arriving: reserves the item
/// the value will be read into (memcached allocates it at this point too).
/// `Err(n)`: refused, the reply is written and `n` bytes must be swallowed.
pub fn reserve_store(ctx: &Ctx, req: &Request, out: &mut Vec<u8>) -> Result<Reserved, usize> {
    let Request::Store {
        kind,
        key,
        flags,
        exptime,
        bytes,
        noreply,
        ..
    } = *req
    else {
        return Err(0);
    };
    match ctx
        .shared
        .engine
        .reserve(store_mode(kind), key, flags, exptime, bytes)
    {
        Ok(value) => Ok(value),
        Err(outcome) => {
            reply(ctx, out, store_reply(ctx, outcome), noreply);
            Err(bytes + 2)
        }
    }
}

/// Completes a storage command once `data` (value plus its two terminator
/// bytes) is in the buffer; with `direct`, the value was read into that
/// item and `data` is only the terminator.
pub fn complete_store(
    ctx: &Ctx,
    req: &Request,
    data: &[u8],
    out: &mut Vec<u8>,
    direct: Option<Reserved>,
) {
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
        return;
    };
    let value_end = if direct.is_some() { 0 } else { bytes };
    if &data[value_end..value_end + 2] != b"\r\n" {
        // memcached counts the set before it checks the terminator.
        ctx.shared.engine.count_set(key.len(), flags, bytes, ctx.ts);
        reply(ctx, out, "CLIENT_ERROR bad data chunk", noreply);
        return;
    }
    let engine = &ctx.shared.engine;
    let outcome = match direct {
        Some(value) => engine.store_reserved(store_mode(kind), key, value, cas, ctx.ts),
        None => engine.store(
            store_mode(kind),
            key,
            flags,
            exptime,
            &data[..bytes],
            cas,
            ctx.ts,
        ),
    };
    reply(ctx, out, store_reply(ctx, outcome), noreply);
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

/// Output a get may queue before it pauses to let the buffer drain; a line
/// naming one large item many times must not grow memory without bound.
pub const GET_PAUSE_BYTES: usize = 4 * 1024 * 1024;

/// Runs a retrieval command. Returns the keys not yet served when the
/// output passed `pause_at` bytes (no `END` written yet), else `None`.
pub fn get<'a>(
    ctx: &Ctx,
    kind: GetKind,
    exptime: i64,
    mut keys: Keys<'a>,
    out: &mut Out,
    pause_at: usize,
) -> Option<Keys<'a>> {
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
    while let Some(key) = keys.next() {
        let hit = engine
            .get(key, mode, ctx.ts, |it| {
                text::encode_value_header(
                    out,
                    it.key(),
                    it.flags(),
                    it.value_len(),
                    with_cas.then(|| it.cas()),
                );
                out.value(it);
                out.extend_from_slice(b"\r\n");
            })
            .is_some();
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
            return Some(keys);
        }
    }
    if verbose {
        eprintln!(">{} END", ctx.fd);
    }
    out.extend_from_slice(b"END\r\n");
    None
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

/// Runs every request except the data part of storage commands.
pub fn execute(ctx: &Ctx, req: Request, out: &mut Out) -> Next {
    let sh = ctx.shared;
    let engine = &sh.engine;
    match req {
        Request::Get {
            kind,
            exptime,
            keys,
        } => {
            // Unbounded here: callers that care about output size use `get`.
            let _ = get(ctx, kind, exptime, keys, out, usize::MAX);
            Next::Continue
        }
        // Storage commands are split into precheck/complete by the caller.
        Request::Store { .. } => Next::Continue,
        Request::Delete { key, noreply } => {
            if sh.runtime.detail_enabled.load(Relaxed) {
                sh.global
                    .record_prefix(key, sh.settings.prefix_delimiter, PrefixOp::Delete);
            }
            let msg = if engine.delete(key, ctx.ts) {
                "DELETED"
            } else {
                "NOT_FOUND"
            };
            reply(ctx, out, msg, noreply);
            Next::Continue
        }
        Request::Arith {
            incr,
            key,
            delta,
            noreply,
        } => {
            match engine.arith(key, incr, delta, ctx.ts) {
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
            }
            Next::Continue
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            ctx.ws.touch_cmds.incr();
            let msg = if engine.touch(key, exptime, ctx.ts) {
                "TOUCHED"
            } else {
                "NOT_FOUND"
            };
            reply(ctx, out, msg, noreply);
            Next::Continue
        }
        Request::FlushAll { delay, noreply } => {
            ctx.ws.flush_cmds.incr();
            if !sh.settings.flush_enabled {
                reply(ctx, out, "CLIENT_ERROR flush_all not allowed", noreply);
                return Next::Continue;
            }
            engine.flush_all(delay.max(0));
            reply(ctx, out, "OK", noreply);
            Next::Continue
        }
        Request::Version => {
            reply(ctx, out, &format!("VERSION {VERSION}"), false);
            Next::Continue
        }
        Request::Verbosity { level, noreply } => {
            sh.runtime.verbose.store(level.min(MAX_VERBOSITY), Relaxed);
            reply(ctx, out, "OK", noreply);
            Next::Continue
        }
        Request::Quit => Next::CloseAfterWrite,
        Request::Shutdown { graceful } => {
            if !sh.settings.shutdown_command {
                reply(ctx, out, "ERROR: shutdown not enabled", false);
                return Next::Continue;
            }
            crate::signals::request_stop(graceful);
            Next::Close
        }
        Request::ShutdownBadMode => {
            let msg = if sh.settings.shutdown_command {
                "CLIENT_ERROR invalid shutdown mode"
            } else {
                "ERROR: shutdown not enabled"
            };
            reply(ctx, out, msg, false);
            Next::Continue
        }
        Request::Stats(cmd) => {
            stats(ctx, cmd, out);
            Next::Continue
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
            Next::Continue
        }
        Request::SlabsReassign(args) => {
            if !engine.config().slab_reassign {
                reply(ctx, out, "CLIENT_ERROR slab reassignment disabled", false);
                return Next::Continue;
            }
            match args {
                None => reply(ctx, out, text::BAD_FORMAT, false),
                Some((src, dst)) => match engine.slabs_reassign(src, dst) {
                    Ok(()) => reply(ctx, out, "OK", false),
                    Err(e) => reply(ctx, out, &e.to_string(), false),
                },
            }
            Next::Continue
        }
        Request::SlabsAutomove { arg, noreply } => {
            match arg {
                Automove::Ratio(r) => engine.set_automove_ratio(r),
                Automove::Level(l) => engine.set_automove(l),
            }
            reply(ctx, out, "OK", noreply);
            Next::Continue
        }
        Request::LruCrawler(cmd) => {
            crawler(ctx, cmd, out);
            Next::Continue
        }
        Request::Lru { cmd, noreply } => {
            lru(ctx, cmd, noreply, out);
            Next::Continue
        }
        Request::Error { msg, noreply } => {
            reply(ctx, out, msg, noreply);
            Next::Continue
        }
        Request::Close => Next::Close,
        Request::GetKeyTooLong => {
            reply(ctx, out, text::BAD_FORMAT, false);
            Next::Continue
        }
    }
}

fn crawler(ctx: &Ctx, cmd: CrawlerCmd, out: &mut Vec<u8>) {
    let sh = ctx.shared;
    let engine = &sh.engine;
    let enabled = sh.crawler_enabled.load(Relaxed);
    match cmd {
        CrawlerCmd::Crawl(classes) => {
            if !enabled {
                return reply(ctx, out, "CLIENT_ERROR lru crawler disabled", false);
            }
            match engine.lru_crawler_crawl(&String::from_utf8_lossy(classes)) {
                Ok(()) => reply(ctx, out, "OK", false),
                Err(e) => reply(ctx, out, &e.to_string(), false),
            }
        }
        CrawlerCmd::Metadump(classes) => {
            if let Some(mut cursor) = metadump_start(ctx, classes, out) {
                // Not streamed (UDP, a binary-wrapped text command): whole.
                metadump_step(ctx, &mut cursor, out, usize::MAX);
            }
        }
        CrawlerCmd::Tocrawl(n) => {
            engine.lru_crawler_set_tocrawl(n);
            reply(ctx, out, "OK", false);
        }
        CrawlerCmd::Sleep(us) => {
            engine.lru_crawler_set_sleep(us);
            reply(ctx, out, "OK", false);
        }
        CrawlerCmd::Enable => {
            if engine.lru_crawler_enable() {
                sh.crawler_enabled.store(true, Relaxed);
                reply(ctx, out, "OK", false);
            } else {
                reply(ctx, out, "ERROR failed to start lru crawler thread", false);
            }
        }
        CrawlerCmd::Disable => {
            if engine.lru_crawler_disable() {
                sh.crawler_enabled.store(false, Relaxed);
                reply(ctx, out, "OK", false);
            } else {
                reply(ctx, out, "ERROR failed to stop lru crawler thread", false);
            }
        }
    }
}

/// `lru tune|mode|temp_ttl`, as memcached's `process_lru_command`: `mode`
/// and `temp_ttl` exist only while the LRU maintainer runs.
fn lru(ctx: &Ctx, cmd: LruCmd, noreply: bool, out: &mut Vec<u8>) {
    let engine = &ctx.shared.engine;
    let maintainer = engine.config().lru_maintainer;
    match cmd {
        LruCmd::Tune {
            hot_pct,
            warm_pct,
            hot_factor,
            warm_factor,
        } => match engine.lru_tune(hot_pct, warm_pct, hot_factor, warm_factor) {
            Ok(()) => reply(ctx, out, "OK", noreply),
            Err(e) => reply(ctx, out, e.message(), noreply),
        },
        LruCmd::Mode { segmented } if maintainer => {
            engine.set_lru_segmented(segmented);
            reply(ctx, out, "OK", noreply);
        }
        LruCmd::TempTtl(ttl) if maintainer => {
            engine.lru_temp_ttl(i64::from(ttl));
            reply(ctx, out, "OK", noreply);
        }
        LruCmd::Mode { .. } | LruCmd::TempTtl(_) => reply(ctx, out, "ERROR", noreply),
    }
}

fn pairs(out: &mut Vec<u8>, lines: Vec<(String, String)>) {
    for (k, v) in lines {
        stat_line(out, &k, v);
    }
    out.extend_from_slice(b"END\r\n");
}

fn stats(ctx: &Ctx, cmd: StatsCmd, out: &mut Vec<u8>) {
    let sh = ctx.shared;
    match cmd {
        StatsCmd::General => {
            general_stats(sh, out);
            out.extend_from_slice(b"END\r\n");
        }
        StatsCmd::Reset => {
            sh.engine.stats_reset();
            sh.global.reset(&sh.workers);
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
                if sh.runtime.track_sizes.load(Relaxed) {
                    pairs(out, sh.engine.stats_sizes());
                } else {
                    stat_line(out, "sizes_status", "disabled");
                    out.extend_from_slice(b"END\r\n");
                }
            }
            b"sizes_enable" => {
                sh.runtime.track_sizes.store(true, Relaxed);
                stat_line(out, "sizes_status", "enabled");
                out.extend_from_slice(b"END\r\n");
            }
            // memcached 1.6.18 sends no END after this one; so do we.
            b"sizes_disable" => {
                sh.runtime.track_sizes.store(false, Relaxed);
                stat_line(out, "sizes_status", "disabled");
            }
            _ => reply(ctx, out, "ERROR", false),
        },
    }
}

/// getrusage(RUSAGE_SELF) user and system times as `sec.usec`.
fn rusage() -> (String, String) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a properly sized rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    (
        format!("{}.{:06}", ru.ru_utime.tv_sec, ru.ru_utime.tv_usec),
        format!("{}.{:06}", ru.ru_stime.tv_sec, ru.ru_stime.tv_usec),
    )
}

/// The general `stats` block, in memcached 1.6.18's order.
pub fn general_stats(sh: &Shared, out: &mut Vec<u8>) {
    let e = sh.engine.stats();
    let t = sh.global.totals(&sh.workers);
    let clock = sh.engine.clock();
    let now = clock.now();
    let (ru_user, ru_sys) = rusage();
    let s = &sh.settings;
    let g = &sh.global;
    let listeners = sh.listeners.load(Relaxed) as u64;
    stat_line(out, "pid", std::process::id());
    stat_line(out, "uptime", now.saturating_sub(60));
    stat_line(out, "time", clock.process_started() + u64::from(now));
    stat_line(out, "version", VERSION);
    stat_line(out, "libevent", "mio");
    stat_line(out, "pointer_size", 8 * std::mem::size_of::<usize>());
    stat_line(out, "rusage_user", ru_user);
    stat_line(out, "rusage_system", ru_sys);
    stat_line(out, "max_connections", s.maxconns);
    // memcached counts its listening sockets as connections and subtracts
    // one (the asking client, as it documents it).
    stat_line(
        out,
        "curr_connections",
        (g.curr_conns.load(Relaxed) + listeners).saturating_sub(1),
    );
    stat_line(out, "total_connections", g.total_conns.load(Relaxed));
    if s.maxconns_fast {
        stat_line(out, "rejected_connections", g.rejected_conns.load(Relaxed));
    }
    stat_line(
        out,
        "connection_structures",
        g.conn_structs.load(Relaxed) + listeners,
    );
    stat_line(out, "response_obj_oom", 0);
    stat_line(out, "response_obj_count", t.response_obj_count);
    stat_line(out, "response_obj_bytes", t.response_obj_bytes);
    stat_line(out, "read_buf_count", t.read_buf_count);
    stat_line(out, "read_buf_bytes", t.read_buf_bytes);
    stat_line(out, "read_buf_bytes_free", t.read_buf_bytes_free);
    stat_line(out, "read_buf_oom", 0);
    stat_line(out, "reserved_fds", reserved_fds(sh));
    stat_line(out, "cmd_get", t.get_cmds);
    stat_line(out, "cmd_set", e.cmd_set);
    stat_line(out, "cmd_flush", t.flush_cmds);
    stat_line(out, "cmd_touch", t.touch_cmds);
    stat_line(out, "cmd_meta", t.meta_cmds);
    for (k, v) in e.request_lines() {
        stat_line(out, k, v);
    }
    stat_line(out, "store_too_large", t.store_too_large);
    stat_line(out, "store_no_memory", t.store_no_memory);
    stat_line(out, "auth_cmds", t.auth_cmds);
    stat_line(out, "auth_errors", t.auth_errors);
    if s.idle_timeout > 0 {
        stat_line(out, "idle_kicks", t.idle_kicks);
    }
    stat_line(out, "bytes_read", t.bytes_read);
    stat_line(out, "bytes_written", t.bytes_written);
    stat_line(out, "limit_maxbytes", e.limit_maxbytes);
    stat_line(
        out,
        "accepting_conns",
        u32::from(g.accepting_conns.load(Relaxed)),
    );
    stat_line(
        out,
        "listen_disabled_num",
        g.listen_disabled_num.load(Relaxed),
    );
    stat_line(out, "time_in_listen_disabled_us", 0);
    stat_line(out, "threads", s.threads);
    stat_line(out, "conn_yields", t.conn_yields);
    // As memcached: the mover's, crawler's and maintainer's counters are
    // listed only while that part runs (`-o no_modern` turns all three
    // off, `lru_crawler disable` the crawler).
    let cfg = sh.engine.config();
    let crawler = sh.crawler_enabled.load(Relaxed);
    for (k, v) in e.storage_lines() {
        let shown = if k.starts_with("slab_reassign_") || k == "slabs_moved" {
            cfg.slab_reassign
        } else if k.starts_with("lru_crawler_") {
            crawler
        } else if matches!(
            k,
            "lru_maintainer_juggles"
                | "evicted_active"
                | "moves_to_cold"
                | "moves_to_warm"
                | "moves_within_lru"
                | "direct_reclaims"
                | "lru_bumps_dropped"
        ) {
            cfg.lru_maintainer
        } else {
            true
        };
        if shown {
            stat_line(out, k, v);
        }
    }
}

/// memcached's accounting of descriptors kept back from clients: five per
/// worker thread. Reported the same way so capacity dashboards agree.
pub fn reserved_fds(sh: &Shared) -> u64 {
    5 * sh.settings.threads as u64
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `stats settings`, in memcached 1.6.18's order.
pub fn settings_stats(sh: &Shared, out: &mut Vec<u8>) {
    let s = &sh.settings;
    let c = sh.engine.config();
    stat_line(out, "maxbytes", c.mem_limit);
    stat_line(out, "maxconns", s.maxconns);
    stat_line(out, "tcpport", s.port);
    stat_line(out, "udpport", s.udp_port);
    stat_line(out, "inter", s.inter.as_deref().unwrap_or("NULL"));
    stat_line(out, "verbosity", sh.verbose());
    stat_line(out, "oldest", sh.engine.oldest_live());
    stat_line(out, "evictions", if c.evict_to_free { "on" } else { "off" });
    stat_line(
        out,
        "domain_socket",
        s.socket_path.as_deref().unwrap_or("NULL"),
    );
    stat_line(out, "umask", format!("{:o}", s.access));
    stat_line(out, "shutdown_command", yes(s.shutdown_command));
    stat_line(out, "growth_factor", format!("{:.2}", c.growth_factor));
    stat_line(out, "chunk_size", c.chunk_size);
    stat_line(out, "num_threads", s.threads);
    stat_line(out, "num_threads_per_udp", s.threads);
    stat_line(out, "stat_key_prefix", s.prefix_delimiter as char);
    stat_line(
        out,
        "detail_enabled",
        yes(sh.runtime.detail_enabled.load(Relaxed)),
    );
    stat_line(out, "reqs_per_event", s.reqs_per_event);
    stat_line(out, "cas_enabled", yes(c.use_cas));
    stat_line(out, "tcp_backlog", s.backlog);
    stat_line(out, "binding_protocol", s.protocol.text());
    stat_line(out, "auth_enabled_sasl", yes(s.sasl));
    stat_line(out, "auth_enabled_ascii", yes(s.auth_file.is_some()));
    stat_line(out, "item_size_max", c.item_size_max);
    stat_line(out, "maxconns_fast", yes(s.maxconns_fast));
    // 0 means "the default", as memcached reports it unless -o hashpower.
    stat_line(
        out,
        "hashpower_init",
        if s.hashpower_set { c.hashpower_init } else { 0 },
    );
    stat_line(out, "slab_reassign", yes(c.slab_reassign));
    stat_line(out, "slab_automove", c.slab_automove);
    stat_line(
        out,
        "slab_automove_ratio",
        format!("{:.2}", c.slab_automove_ratio),
    );
    stat_line(out, "slab_automove_window", c.slab_automove_window);
    stat_line(out, "slab_chunk_max", c.chunk_max());
    stat_line(out, "lru_crawler", yes(sh.crawler_enabled.load(Relaxed)));
    stat_line(out, "lru_crawler_sleep", c.lru_crawler_sleep);
    stat_line(out, "lru_crawler_tocrawl", c.lru_crawler_tocrawl);
    stat_line(out, "tail_repair_time", c.tail_repair_time);
    stat_line(out, "flush_enabled", yes(s.flush_enabled));
    stat_line(out, "dump_enabled", yes(s.dump_enabled));
    stat_line(out, "hash_algorithm", s.hash_algorithm);
    stat_line(out, "lru_maintainer_thread", yes(c.lru_maintainer));
    stat_line(out, "lru_segmented", yes(c.lru_segmented));
    // memcached keeps the percentages in an int and prints them with %d,
    // so a huge `lru tune` value shows negative there.
    stat_line(out, "hot_lru_pct", c.hot_lru_pct as i32);
    stat_line(out, "warm_lru_pct", c.warm_lru_pct as i32);
    stat_line(out, "hot_max_factor", format!("{:.2}", c.hot_max_factor));
    stat_line(out, "warm_max_factor", format!("{:.2}", c.warm_max_factor));
    stat_line(out, "temp_lru", yes(c.temp_lru));
    stat_line(out, "temporary_ttl", c.temporary_ttl);
    stat_line(out, "idle_timeout", s.idle_timeout);
    stat_line(out, "watcher_logbuf_size", s.watcher_logbuf_size);
    stat_line(out, "worker_logbuf_size", s.worker_logbuf_size);
    stat_line(out, "read_buf_mem_limit", s.read_buf_mem_limit);
    stat_line(
        out,
        "track_sizes",
        yes(sh.runtime.track_sizes.load(Relaxed)),
    );
    stat_line(out, "inline_ascii_response", "no");
    stat_line(
        out,
        "slab_automove_freeratio",
        format!("{:.3}", s.slab_automove_freeratio),
    );
    stat_line(out, "num_napi_ids", "(null)");
    stat_line(out, "memory_file", "(null)");
}

/// `stats conns`: listeners and clients, by file descriptor.
pub fn conns_stats(sh: &Shared, out: &mut Vec<u8>) {
    let now = sh.engine.clock().now();
    for (fd, info) in sh.conns.lock().iter() {
        stat_line(out, &format!("{fd}:addr"), &info.addr);
        if let Some(l) = &info.listen_addr {
            stat_line(out, &format!("{fd}:listen_addr"), l);
        }
        let state = info.state();
        stat_line(out, &format!("{fd}:state"), state.text());
        let last = info.last_cmd.load(Relaxed);
        let secs = if state == ConnState::Listening {
            now.wrapping_sub(last) as i32
        } else {
            now.saturating_sub(last) as i32
        };
        stat_line(out, &format!("{fd}:secs_since_last_cmd"), secs);
    }
}
