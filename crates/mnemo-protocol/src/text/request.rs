//! Text-protocol request parsing: one line into a [`Request`] whose keys
//! and arguments are slices of that line, with memcached 1.6.18's answers
//! to every malformed line.

use super::numbers::{strtod, strtol32, strtoul32, strtoull};
use super::tokens::{Keys, Tokens};
use crate::MAX_KEY_LEN;

/// The canonical client error for malformed storage/retrieval lines.
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";

/// Which retrieval command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetKind {
    Get,
    Gets,
    Gat,
    Gats,
}

impl GetKind {
    /// Whether the reply carries the CAS unique.
    pub fn returns_cas(self) -> bool {
        matches!(self, GetKind::Gets | GetKind::Gats)
    }
    /// Whether the command also updates the expiry time.
    pub fn touches(self) -> bool {
        matches!(self, GetKind::Gat | GetKind::Gats)
    }
}

/// Which storage command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// `stats detail` sub-commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailCmd {
    On,
    Off,
    Dump,
}

/// `stats ...` variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsCmd<'a> {
    General,
    Reset,
    Detail(DetailCmd),
    Settings,
    Conns,
    /// `stats cachedump <class> <limit>`, or the error to send when the
    /// arguments are wrong (after the server checks dumping is allowed).
    CacheDump(Result<(u32, u32), &'static str>),
    /// Anything else is for the engine (`items`, `slabs`, `sizes`, ...).
    Engine(&'a [u8]),
}

/// `slabs automove` arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Automove {
    Level(u32),
    Ratio(f64),
}

/// `lru_crawler ...` variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrawlerCmd<'a> {
    Crawl(&'a [u8]),
    Metadump(&'a [u8]),
    Tocrawl(u32),
    Sleep(u32),
    Enable,
    Disable,
}

/// `lru ...` variants, arguments read as memcached 1.6.18 reads them. The
/// checks that need the engine (percentages and factors for `tune`, a
/// running maintainer for `mode` and `temp_ttl`) are the server's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LruCmd {
    /// `lru tune <hot pct> <warm pct> <hot max factor> <warm max factor>`.
    Tune {
        hot_pct: u32,
        warm_pct: u32,
        hot_factor: f64,
        warm_factor: f64,
    },
    /// `lru mode flat|segmented`.
    Mode { segmented: bool },
    /// `lru temp_ttl <n>`: negative turns the TEMP LRU off. memcached
    /// reads it as a `long` and keeps 32 bits of it.
    TempTtl(i32),
}

/// One parsed request. Slices point into the read buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Request<'a> {
    /// `get`/`gets`/`gat`/`gats`; keys are already checked against
    /// [`MAX_KEY_LEN`]. `exptime` is 0 for plain gets.
    Get {
        kind: GetKind,
        exptime: i64,
        keys: Keys<'a>,
    },
    /// A storage command line; `bytes` of data plus `\r\n` follow it.
    Store {
        kind: StoreKind,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        bytes: usize,
        cas: u64,
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    /// `delay` as sent (0 when absent).
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Version,
    /// `watch [stream...]`: the stream names as sent, after the command;
    /// which names exist, and what a watcher gets, is the server's.
    Watch {
        args: Keys<'a>,
    },
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    /// `shutdown` or `shutdown graceful`; whether it is allowed is the
    /// server's business.
    Shutdown {
        graceful: bool,
    },
    /// `shutdown` with an unknown mode (only reported when shutdown is enabled).
    ShutdownBadMode,
    Stats(StatsCmd<'a>),
    /// `cache_memlimit <megabytes>`.
    CacheMemlimit {
        megabytes: u32,
        noreply: bool,
    },
    /// `slabs reassign <src> <dst>`; `None` when the numbers are malformed
    /// (reported after the server checks that reassignment is enabled).
    SlabsReassign(Option<(i32, i32)>),
    SlabsAutomove {
        arg: Automove,
        noreply: bool,
    },
    LruCrawler(CrawlerCmd<'a>),
    /// `lru tune|mode|temp_ttl ...` with well-formed arguments.
    Lru {
        cmd: LruCmd,
        noreply: bool,
    },
    /// Reply with this line (plus `\r\n`) unless `noreply`.
    Error {
        msg: &'static str,
        noreply: bool,
    },
    /// Close the connection without a reply (an HTTP request line).
    Close,
    /// A retrieval command with a key over [`MAX_KEY_LEN`]. memcached
    /// answers [`BAD_FORMAT`] and also discards every reply still queued
    /// for earlier requests of the same batch; the server must do the same.
    GetKeyTooLong,
}

fn error(msg: &'static str) -> Request<'static> {
    Request::Error {
        msg,
        noreply: false,
    }
}

fn error_nr(msg: &'static str, noreply: bool) -> Request<'static> {
    Request::Error { msg, noreply }
}

/// Parses one request line (as returned by [`next_line`](super::next_line)).
pub fn parse_line(line: &[u8]) -> Request<'_> {
    // Gets are most of the traffic and `parse_get` reads their keys from
    // the line itself, so they skip the general tokenizer (a quarter of a
    // get's instructions under callgrind).
    if let Some(kind) = get_command(line) {
        return parse_get(line, kind);
    }
    parse_tokens(line)
}

/// The get-family command starting `line`, if the line has at least one
/// more token (what the general path requires before `parse_get`).
#[inline]
fn get_command(line: &[u8]) -> Option<GetKind> {
    let (kind, cmd_len) = match line {
        [b'g', b'e', b't', b' ', ..] => (GetKind::Get, 3),
        [b'g', b'e', b't', b's', b' ', ..] => (GetKind::Gets, 4),
        [b'g', b'a', b't', b' ', ..] => (GetKind::Gat, 3),
        [b'g', b'a', b't', b's', b' ', ..] => (GetKind::Gats, 4),
        [b'b', b'g', b'e', b't', b' ', ..] => (GetKind::Get, 4),
        _ => return None,
    };
    line[cmd_len..].iter().any(|&b| b != b' ').then_some(kind)
}

/// `parse_line` through the general tokenizer.
pub(super) fn parse_tokens(line: &[u8]) -> Request<'_> {
    let t = Tokens::new(line);
    if t.is_empty() || t.get(0).len() < 2 {
        return error("ERROR");
    }
    let cmd = t.get(0);
    // memcached's ntokens counts a terminal token; `n` here is real tokens.
    let n = t.len();
    match cmd {
        b"get" | b"gets" | b"gat" | b"gats" | b"bget" => {
            if n < 2 {
                return error("ERROR");
            }
            let kind = match cmd {
                b"gets" => GetKind::Gets,
                b"gat" => GetKind::Gat,
                b"gats" => GetKind::Gats,
                _ => GetKind::Get,
            };
            parse_get(line, kind)
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" => {
            if n != 5 && n != 6 {
                return error("ERROR");
            }
            let kind = match cmd {
                b"set" => StoreKind::Set,
                b"add" => StoreKind::Add,
                b"replace" => StoreKind::Replace,
                b"append" => StoreKind::Append,
                _ => StoreKind::Prepend,
            };
            parse_store(&t, kind)
        }
        b"cas" => {
            if n != 6 && n != 7 {
                return error("ERROR");
            }
            parse_store(&t, StoreKind::Cas)
        }
        b"delete" => {
            if !(2..=4).contains(&n) {
                return error("ERROR");
            }
            parse_delete(&t)
        }
        b"incr" | b"decr" => match key_arg_line(&t) {
            Ok((key, noreply)) => match strtoull(t.get(2)) {
                Some(delta) => Request::Arith {
                    incr: cmd == b"incr",
                    key,
                    delta,
                    noreply,
                },
                None => error_nr("CLIENT_ERROR invalid numeric delta argument", noreply),
            },
            Err(e) => e,
        },
        b"touch" => match key_arg_line(&t) {
            Ok((key, noreply)) => match strtol32(t.get(2)) {
                Some(e) => Request::Touch {
                    key,
                    exptime: e as i64,
                    noreply,
                },
                None => error_nr("CLIENT_ERROR invalid exptime argument", noreply),
            },
            Err(e) => e,
        },
        b"flush_all" => {
            if !(1..=3).contains(&n) {
                return error("ERROR");
            }
            let noreply = t.noreply();
            let mut delay = 0i64;
            if n != if noreply { 2 } else { 1 } {
                match strtol32(t.get(1)) {
                    Some(d) => delay = d as i64,
                    None => return error_nr("CLIENT_ERROR invalid exptime argument", noreply),
                }
            }
            Request::FlushAll { delay, noreply }
        }
        b"version" => Request::Version,
        b"watch" => {
            let mut args = Keys::new(line);
            args.next(); // the command itself
            Request::Watch { args }
        }
        b"quit" => Request::Quit,
        b"verbosity" => {
            if n != 2 && n != 3 {
                return error("ERROR");
            }
            let noreply = t.noreply();
            match strtoul32(t.get(1)) {
                Some(level) => Request::Verbosity { level, noreply },
                None => error_nr(BAD_FORMAT, noreply),
            }
        }
        b"shutdown" => {
            if n == 1 {
                Request::Shutdown { graceful: false }
            } else if n == 2 && t.get(1) == b"graceful" {
                Request::Shutdown { graceful: true }
            } else {
                Request::ShutdownBadMode
            }
        }
        b"stats" => parse_stats(&t),
        b"cache_memlimit" => {
            if n != 2 && n != 3 {
                return error("ERROR");
            }
            let noreply = t.noreply();
            match strtoul32(t.get(1)) {
                Some(megabytes) => Request::CacheMemlimit { megabytes, noreply },
                None => error_nr("ERROR", noreply),
            }
        }
        b"slabs" => parse_slabs(&t),
        b"lru_crawler" => parse_crawler(&t),
        b"lru" => parse_lru(&t),
        _ => {
            // Unknown commands starting like a known family are plain errors
            // in memcached; only the rest are checked for an HTTP request,
            // which gets the connection dropped.
            let family = matches!(cmd[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't')
                || (cmd[0] == b'm' && cmd.len() == 2);
            if !family && t.get(n - 1).starts_with(b"HTTP/") {
                Request::Close
            } else {
                error("ERROR")
            }
        }
    }
}

/// The `<cmd> <key> <arg> [noreply]` lines of incr, decr and touch, which
/// memcached checks alike before reading the argument: the key and the
/// noreply flag, or the answer to a wrong token count or an over-long key.
fn key_arg_line<'a>(t: &Tokens<'a>) -> Result<(&'a [u8], bool), Request<'static>> {
    if t.len() != 3 && t.len() != 4 {
        return Err(error("ERROR"));
    }
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > MAX_KEY_LEN {
        return Err(error_nr(BAD_FORMAT, noreply));
    }
    Ok((key, noreply))
}

fn parse_get(line: &[u8], kind: GetKind) -> Request<'_> {
    let mut keys = Keys::new(line);
    keys.next(); // the command itself
    let mut exptime = 0i64;
    if kind.touches() {
        let Some(tok) = keys.next() else {
            return error("ERROR");
        };
        match strtol32(tok) {
            Some(e) => exptime = e as i64,
            None => return error("CLIENT_ERROR invalid exptime argument"),
        }
    }
    // memcached discards the partial reply when it meets an over-long key,
    // so checking all of them first yields the same bytes on the wire.
    if keys.clone().any(|k| k.len() > MAX_KEY_LEN) {
        return Request::GetKeyTooLong;
    }
    Request::Get {
        kind,
        exptime,
        keys,
    }
}

fn parse_store<'a>(t: &Tokens<'a>, kind: StoreKind) -> Request<'a> {
    let noreply = t.noreply();
    let key = t.get(1);
    if key.len() > MAX_KEY_LEN {
        return error_nr(BAD_FORMAT, noreply);
    }
    let (Some(flags), Some(exptime), Some(vlen)) =
        (strtoul32(t.get(2)), strtol32(t.get(3)), strtol32(t.get(4)))
    else {
        return error_nr(BAD_FORMAT, noreply);
    };
    let mut cas = 0;
    if kind == StoreKind::Cas {
        match strtoull(t.get(5)) {
            Some(c) => cas = c,
            None => return error_nr(BAD_FORMAT, noreply),
        }
    }
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return error_nr(BAD_FORMAT, noreply);
    }
    Request::Store {
        kind,
        key,
        flags,
        exptime: exptime as i64,
        bytes: vlen as usize,
        cas,
        noreply,
    }
}

fn parse_delete<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.len();
    let mut noreply = false;
    if n > 2 {
        let hold_is_zero = t.get(2) == b"0";
        noreply = t.noreply();
        let valid = (n == 3 && (hold_is_zero || noreply)) || (n == 4 && hold_is_zero && noreply);
        if !valid {
            return error_nr(
                "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
                noreply,
            );
        }
    }
    let key = t.get(1);
    if key.len() > MAX_KEY_LEN {
        return error_nr(BAD_FORMAT, noreply);
    }
    Request::Delete { key, noreply }
}

fn parse_stats<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.len();
    if n == 1 {
        return Request::Stats(StatsCmd::General);
    }
    let sub = t.get(1);
    let cmd = match sub {
        b"reset" => StatsCmd::Reset,
        b"detail" => {
            let arg = if n < 3 { &b""[..] } else { t.get(2) };
            match arg {
                b"on" => StatsCmd::Detail(DetailCmd::On),
                b"off" => StatsCmd::Detail(DetailCmd::Off),
                b"dump" => StatsCmd::Detail(DetailCmd::Dump),
                _ => return error("CLIENT_ERROR usage: stats detail on|off|dump"),
            }
        }
        b"settings" => StatsCmd::Settings,
        b"conns" => StatsCmd::Conns,
        b"cachedump" => {
            if n < 4 {
                StatsCmd::CacheDump(Err("CLIENT_ERROR bad command line"))
            } else {
                match (strtoul32(t.get(2)), strtoul32(t.get(3))) {
                    (Some(class), Some(limit)) => StatsCmd::CacheDump(Ok((class, limit))),
                    _ => StatsCmd::CacheDump(Err(BAD_FORMAT)),
                }
            }
        }
        other => StatsCmd::Engine(other),
    };
    Request::Stats(cmd)
}

fn parse_slabs<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.len();
    if n == 4 && t.get(1) == b"reassign" {
        return Request::SlabsReassign(strtol32(t.get(2)).zip(strtol32(t.get(3))));
    }
    if n >= 3 && t.get(1) == b"automove" {
        let noreply = t.noreply();
        if t.get(2) == b"ratio" {
            return match (n >= 4).then(|| strtod(t.get(3))).flatten() {
                Some(r) => Request::SlabsAutomove {
                    arg: Automove::Ratio(r),
                    noreply,
                },
                None => error_nr("ERROR", noreply),
            };
        }
        return match strtoul32(t.get(2)) {
            Some(level) if level <= 2 => Request::SlabsAutomove {
                arg: Automove::Level(level),
                noreply,
            },
            Some(_) => error_nr("ERROR", noreply),
            None => error_nr(BAD_FORMAT, noreply),
        };
    }
    error("ERROR")
}

fn parse_crawler<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.len();
    let sub = t.get(1);
    let cmd = match (n, sub) {
        (3, b"crawl") => CrawlerCmd::Crawl(t.get(2)),
        (3, b"metadump") => CrawlerCmd::Metadump(t.get(2)),
        (3, b"tocrawl") => match strtoul32(t.get(2)) {
            Some(v) => CrawlerCmd::Tocrawl(v),
            None => return error(BAD_FORMAT),
        },
        (3, b"sleep") => match strtoul32(t.get(2)) {
            Some(v) if v > 1_000_000 => {
                return error("CLIENT_ERROR sleep must be one second or less")
            }
            Some(v) => CrawlerCmd::Sleep(v),
            None => return error(BAD_FORMAT),
        },
        (2, b"enable") => CrawlerCmd::Enable,
        (2, b"disable") => CrawlerCmd::Disable,
        _ => return error("ERROR"),
    };
    Request::LruCrawler(cmd)
}

/// memcached's `process_lru_command`, after `WANT_TOKENS_MIN(ntokens, 3)`
/// (`n` counts real tokens, one fewer than its `ntokens`). noreply is taken
/// from the last token before anything is checked, so it silences the
/// errors too.
fn parse_lru<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.len();
    if n < 2 {
        return error("ERROR");
    }
    let noreply = t.noreply();
    let cmd = match t.get(1) {
        b"tune" if n >= 6 => match (
            strtoul32(t.get(2)),
            strtoul32(t.get(3)),
            strtod(t.get(4)),
            strtod(t.get(5)),
        ) {
            (Some(hot_pct), Some(warm_pct), Some(hot_factor), Some(warm_factor)) => LruCmd::Tune {
                hot_pct,
                warm_pct,
                hot_factor,
                warm_factor,
            },
            _ => return error_nr("ERROR", noreply),
        },
        b"mode" if n >= 3 => match t.get(2) {
            b"flat" => LruCmd::Mode { segmented: false },
            b"segmented" => LruCmd::Mode { segmented: true },
            _ => return error_nr("ERROR", noreply),
        },
        b"temp_ttl" if n >= 3 => match strtol32(t.get(2)) {
            Some(ttl) => LruCmd::TempTtl(ttl),
            None => return error_nr("ERROR", noreply),
        },
        _ => return error_nr("ERROR", noreply),
    };
    Request::Lru { cmd, noreply }
}
