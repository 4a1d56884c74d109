//! The text protocol's admin commands: `watch`, `lru_crawler`, `lru`.

use super::*;

/// memcached's `process_watch_command`: its refusals, or the streams of an
/// admitted watcher. A trailing `noreply` silences the answer, and, being
/// no stream name, makes it the `ERROR` that is not sent.
#[cold]
#[inline(never)]
pub(super) fn watch_command(
    ctx: &Ctx,
    sess: &Session,
    args: Keys,
    out: &mut Vec<u8>,
) -> Option<u16> {
    let noreply = args.last() == Some(b"noreply".as_slice());
    if !ctx.shared.settings.watch_enabled {
        reply(ctx, out, "CLIENT_ERROR watch commands not allowed", noreply);
        return None;
    }
    // memcached has sent a get's reply by now; any other reply is still
    // on its stack.
    if ctx.pending_output && out.len() > sess.cull_floor {
        reply(
            ctx,
            out,
            "ERROR cannot pipeline other commands before watch",
            noreply,
        );
        return None;
    }
    let Some(flags) = crate::watch::parse_streams(args) else {
        reply(ctx, out, "ERROR", noreply);
        return None;
    };
    if !sess.is_stream() {
        // A datagram has no connection to hand over.
        reply(ctx, out, "WATCHER_FAILED failed to add log watcher", false);
        return None;
    }
    if !ctx.shared.log.admit() {
        reply(
            ctx,
            out,
            "WATCHER_TOO_MANY log watcher limit reached",
            false,
        );
        return None;
    }
    Some(flags)
}

pub(super) fn crawler(ctx: &Ctx, cmd: CrawlerCmd, out: &mut Vec<u8>) {
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
        CrawlerCmd::Enable => switch_crawler(ctx, true, out),
        CrawlerCmd::Disable => switch_crawler(ctx, false, out),
    }
}

/// `lru_crawler enable|disable`: the flag `stats` shows follows the thread.
fn switch_crawler(ctx: &Ctx, on: bool, out: &mut Vec<u8>) {
    let engine = &ctx.shared.engine;
    let switched = if on {
        engine.lru_crawler_enable()
    } else {
        engine.lru_crawler_disable()
    };
    let msg = match (switched, on) {
        (true, _) => {
            ctx.shared.crawler_enabled.store(on, Relaxed);
            "OK"
        }
        (false, true) => "ERROR failed to start lru crawler thread",
        (false, false) => "ERROR failed to stop lru crawler thread",
    };
    reply(ctx, out, msg, false);
}

/// `lru tune|mode|temp_ttl`, as memcached's `process_lru_command`: `mode`
/// and `temp_ttl` exist only while the LRU maintainer runs.
pub(super) fn lru(ctx: &Ctx, cmd: LruCmd, noreply: bool, out: &mut Vec<u8>) {
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
