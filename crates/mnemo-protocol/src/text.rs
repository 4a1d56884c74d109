//! Server-side text protocol: request parsing in place.
//!
//! [`next_line`] finds one request line at the front of a read buffer;
//! [`parse_line`] turns it into a [`Request`] whose keys and arguments are
//! slices of that buffer. Nothing is copied and nothing allocates.
//!
//! The rules are memcached 1.6.18's (`proto_text.c`), including its quirks,
//! because byte-for-byte compatibility is the point:
//! - tokens are split on the space character only, at most 23 per line
//!   (longer `get` lines are simply walked further);
//! - a NUL byte ends the line, as `strlen` does in memcached;
//! - numbers follow `safe_strtol`/`safe_strtoul`/`safe_strtoull`: leading
//!   whitespace and a sign are accepted, a 64-bit value is parsed then
//!   truncated to 32 bits where memcached stores it in a 32-bit field;
//! - `noreply` is the last token, and once seen it silences the error
//!   replies of that command too.

use memchr::memchr;

/// Largest key memcached accepts, in bytes.
pub const KEY_MAX_LENGTH: usize = 250;

/// Without a newline in this many bytes, a line that is not a `get`/`gets`
/// is junk and the connection is closed (memcached's rule).
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;

/// memcached's MAX_TOKENS: 23 real tokens plus the terminal one.
const MAX_TOKENS: usize = 24;

/// The canonical client error for malformed storage/retrieval lines.
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";

/// Outcome of looking for one request line at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// No complete line yet; read more.
    Incomplete,
    /// No newline within [`MAX_LINE_WITHOUT_NEWLINE`] bytes and not a
    /// multi-key get: memcached closes the connection.
    TooLong,
    /// One line without its terminator; `consumed` includes the `\n`.
    Complete { line: &'a [u8], consumed: usize },
}

/// Finds the first request line of `buf`.
pub fn next_line(buf: &[u8]) -> Line<'_> {
    match memchr(b'\n', buf) {
        Some(nl) => {
            let mut end = nl;
            // memcached strips the '\r' only when the line has more than one byte.
            if nl > 1 && buf[nl - 1] == b'\r' {
                end -= 1;
            }
            let mut line = &buf[..end];
            // The C code works on a NUL-terminated string.
            if let Some(z) = memchr(0, line) {
                line = &line[..z];
            }
            Line::Complete {
                line,
                consumed: nl + 1,
            }
        }
        None => {
            if buf.len() > MAX_LINE_WITHOUT_NEWLINE && !is_multiget_prefix(buf) {
                Line::TooLong
            } else {
                Line::Incomplete
            }
        }
    }
}

/// Whether an unterminated long line may be a large multi-get that memcached
/// keeps buffering (up to 100 leading spaces, then `get ` or `gets `).
pub fn is_multiget_prefix(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    if spaces > 100 {
        return false;
    }
    let rest = &buf[spaces..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
}

/// The tokens of one line, split the way memcached's `tokenize_command` does.
#[derive(Clone, Copy, Debug)]
pub struct Tokens<'a> {
    toks: [&'a [u8]; MAX_TOKENS - 1],
    n: usize,
    /// Unsplit remainder when the line has more than 23 tokens.
    rest: Option<&'a [u8]>,
}

impl<'a> Tokens<'a> {
    /// Splits `line` on spaces into at most 23 tokens.
    pub fn new(line: &'a [u8]) -> Self {
        let mut toks: [&'a [u8]; MAX_TOKENS - 1] = [&[]; MAX_TOKENS - 1];
        let mut n = 0;
        let mut rest = None;
        let mut start = 0;
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                if start != i {
                    toks[n] = &line[start..i];
                    n += 1;
                    if n == MAX_TOKENS - 1 {
                        // memcached leaves the rest for a later pass; it is
                        // non-empty only if something follows the space.
                        let r = &line[i + 1..];
                        if !r.is_empty() {
                            rest = Some(r);
                        }
                        return Tokens { toks, n, rest };
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        if start != i {
            toks[n] = &line[start..i];
            n += 1;
        }
        Tokens { toks, n, rest }
    }

    /// Number of real tokens (memcached's `ntokens - 1`).
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the line had no tokens at all.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Token `i`, or an empty slice past the end (memcached would read the
    /// terminal token's empty string there).
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i < self.n {
            self.toks[i]
        } else {
            &[]
        }
    }

    /// Whether the last token is `noreply` (memcached's `set_noreply_maybe`).
    pub fn noreply(&self) -> bool {
        self.n > 0 && self.toks[self.n - 1] == b"noreply"
    }

    /// Whether the line went on past the 23rd token.
    pub fn has_rest(&self) -> bool {
        self.rest.is_some()
    }
}

/// Space-separated keys of a retrieval command, walked lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a> {
    rest: &'a [u8],
}

impl<'a> Keys<'a> {
    /// Keys from a raw, space-separated slice.
    pub fn new(rest: &'a [u8]) -> Self {
        Keys { rest }
    }

    /// The part of the line not walked yet (to resume a paused get).
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let r = &self.rest[start..];
        let end = memchr(b' ', r).unwrap_or(r.len());
        self.rest = &r[end..];
        Some(&r[..end])
    }
}

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
    /// [`KEY_MAX_LENGTH`]. `exptime` is 0 for plain gets.
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
    /// A retrieval command with a key over [`KEY_MAX_LENGTH`]. memcached
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

/// Parses one request line (as returned by [`next_line`]).
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
fn parse_tokens(line: &[u8]) -> Request<'_> {
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
        b"incr" | b"decr" => {
            if n != 3 && n != 4 {
                return error("ERROR");
            }
            let noreply = t.noreply();
            let key = t.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return error_nr(BAD_FORMAT, noreply);
            }
            match strtoull(t.get(2)) {
                Some(delta) => Request::Arith {
                    incr: cmd == b"incr",
                    key,
                    delta,
                    noreply,
                },
                None => error_nr("CLIENT_ERROR invalid numeric delta argument", noreply),
            }
        }
        b"touch" => {
            if n != 3 && n != 4 {
                return error("ERROR");
            }
            let noreply = t.noreply();
            let key = t.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return error_nr(BAD_FORMAT, noreply);
            }
            match strtol32(t.get(2)) {
                Some(e) => Request::Touch {
                    key,
                    exptime: e as i64,
                    noreply,
                },
                None => error_nr("CLIENT_ERROR invalid exptime argument", noreply),
            }
        }
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
    if keys.clone().any(|k| k.len() > KEY_MAX_LENGTH) {
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
    if key.len() > KEY_MAX_LENGTH {
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
    if key.len() > KEY_MAX_LENGTH {
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

// ---- numbers, the way memcached's safe_strto* read them ----

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// strtoull/strtoll core: optional whitespace, sign, decimal digits.
/// Returns (negative, magnitude, bytes used); None when no digits or the
/// magnitude overflows u64 (strto* set ERANGE).
fn scan_decimal(s: &[u8]) -> Option<(bool, u64, usize)> {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        match v
            .checked_mul(10)
            .and_then(|x| x.checked_add((s[i] - b'0') as u64))
        {
            Some(x) => v = x,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start || overflow {
        return None;
    }
    Some((neg, v, i))
}

/// The end test shared by all safe_strto*: the number must be followed by
/// whitespace or the end of the token.
fn ends_ok(s: &[u8], used: usize) -> bool {
    used == s.len() || is_c_space(s[used])
}

/// memcached's `safe_strtoull`.
pub fn strtoull(s: &[u8]) -> Option<u64> {
    let (neg, mag, used) = scan_decimal(s)?;
    if !ends_ok(s, used) {
        return None;
    }
    let v = if neg { mag.wrapping_neg() } else { mag };
    // memcached looks for a '-' only in the span strtoull consumed, which
    // holds one exactly when the sign was '-' (a stored value may have more
    // text after its trailing spaces).
    if (v as i64) < 0 && neg {
        return None;
    }
    Some(v)
}

/// memcached's `safe_strtoul` into a `uint32_t` (the 64-bit result is
/// truncated, as the C assignment does).
pub fn strtoul32(s: &[u8]) -> Option<u32> {
    strtoull(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` into an `int32_t`: parsed as a 64-bit long,
/// then truncated.
pub fn strtol32(s: &[u8]) -> Option<i32> {
    strtoll(s).map(|v| v as i32)
}

/// memcached's `safe_strtoll`.
pub fn strtoll(s: &[u8]) -> Option<i64> {
    let (neg, mag, used) = scan_decimal(s)?;
    if !ends_ok(s, used) {
        return None;
    }
    if neg {
        if mag > i64::MAX as u64 + 1 {
            return None;
        }
        Some((mag as i64).wrapping_neg())
    } else {
        if mag > i64::MAX as u64 {
            return None;
        }
        Some(mag as i64)
    }
}

/// memcached's `safe_strtod` (decimal forms only).
pub fn strtod(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let start = i;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        i += 1;
    }
    let mut digits = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        let mut j = i + 1;
        if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    if !ends_ok(s, i) {
        return None;
    }
    let text = std::str::from_utf8(&s[start..i]).ok()?;
    let v: f64 = text.parse().ok()?;
    if v.is_infinite() {
        return None;
    }
    Some(v)
}

// ---- response encoding helpers ----

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n`.
pub fn encode_value_header(
    out: &mut Vec<u8>,
    key: &[u8],
    flags: u32,
    bytes: usize,
    cas: Option<u64>,
) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, flags as u64);
    out.push(b' ');
    push_u64(out, bytes as u64);
    if let Some(c) = cas {
        out.push(b' ');
        push_u64(out, c);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal form of `v` without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests;
