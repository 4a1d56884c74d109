//! Server-side meta protocol (`mg ms md ma mn me`): request parsing in place
//! (here), base64 keys (`base64`) and reply encoding helpers (`response`).
//!
//! [`parse`] takes one request line (as found by [`crate::text::next_line`])
//! and returns a [`Request`] whose key and flag tokens are slices of that
//! line, except a base64 (`b`) key, which is decoded into a buffer the caller
//! provides (on its stack): nothing allocates, nothing is copied otherwise.
//!
//! The answers to bad input are memcached 1.6.18's (`proto_text.c`), down to
//! which message each command uses for the same fault and whether the data
//! block of a failed `ms` is swallowed. Flags a request repeats, or does not
//! know, are refused as memcached refuses them. One documented flag 1.6.18
//! does not know is accepted: `E` (explicit new CAS), which later memcached
//! releases and the protocol document define.
//!
//! What cannot be decided without the item (opaque tokens that are too long
//! for `mg`/`ma`, which memcached notices only while writing the reply) is
//! left to the caller; [`MAX_OPAQUE`] is the limit.

mod base64;
mod response;

pub use base64::{base64_decode, base64_encode};
pub use response::{push_flag_u64, push_key, push_opaque, push_ttl};

use crate::text::{strtol32, strtoul32, strtoull, Tokens, BAD_FORMAT};
use crate::MAX_KEY_LEN;

/// Longest opaque (`O`) token, including the `O`.
pub const MAX_OPAQUE: usize = 32;

/// memcached refuses a meta line with this many tokens or more (counting
/// its terminal token, as `ntokens` does).
const MAX_OPT_TOKENS: usize = 20;

/// Room for a decoded base64 key: a 250-byte token decodes to at most 187.
pub const KEY_BUF_LEN: usize = 192;

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Get,
    Set,
    Delete,
    Arith,
    Noop,
    Debug,
}

/// Recognises a meta command name (the first token of a line). Other
/// two-byte names starting with `m` are plain `ERROR`s, as for any unknown
/// command.
pub fn command(name: &[u8]) -> Option<Cmd> {
    match name {
        b"mg" => Some(Cmd::Get),
        b"ms" => Some(Cmd::Set),
        b"md" => Some(Cmd::Delete),
        b"ma" => Some(Cmd::Arith),
        b"mn" => Some(Cmd::Noop),
        b"me" => Some(Cmd::Debug),
        _ => None,
    }
}

/// `ms` modes (`M` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetMode {
    Set,
    /// `E`: add.
    Add,
    Append,
    Prepend,
    Replace,
}

/// What the flags of one request ask for. Flags that only shape the reply
/// (`O k c f s t v h l`) are found again, in request order, with
/// [`Request::flag_tokens`]; memcached writes them in that order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `b`: the key was base64 and has been decoded.
    pub base64: bool,
    /// `u`: do not bump the item in the LRU.
    pub no_update: bool,
    /// `N<ttl>`: vivify on miss with this client exptime.
    pub vivify: Option<i32>,
    /// `T<ttl>`: set this client exptime.
    pub ttl: Option<i32>,
    /// `R<ttl>`: win the recache token when the remaining TTL is below.
    pub recache: Option<i32>,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: quiet (nominal answers suppressed).
    pub quiet: bool,
    /// `I`: invalidate (mark stale) instead of deleting / when CAS is old.
    pub invalidate: bool,
    /// `F<flags>` (ms).
    pub client_flags: u32,
    /// `C<cas>`: compare CAS.
    pub compare_cas: Option<u64>,
    /// `E<cas>`: use this as the new CAS.
    pub new_cas: Option<u64>,
    /// `M<c>`: mode character, validated per command by [`parse`].
    pub mode: Option<u8>,
    /// `D<n>` (ma).
    pub delta: Option<u64>,
    /// `J<n>` (ma).
    pub initial: Option<u64>,
}

/// One parsed meta request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub cmd: Cmd,
    /// The key, decoded when `flags.base64`.
    pub key: &'a [u8],
    /// `ms`: bytes of data that follow the line (without its `\r\n`).
    pub datalen: usize,
    pub flags: Flags,
    /// `ms` mode (default `Set`).
    pub set_mode: SetMode,
    /// `ma` direction (default increment).
    pub incr: bool,
    toks: Tokens<'a>,
}

impl<'a> Request<'a> {
    /// The tokens after the key, in request order (for `ms` this starts
    /// with the datalen token, as memcached's reply loop does; it never
    /// matches a reply flag).
    pub fn flag_tokens(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (2..self.toks.len()).map(move |i| self.toks.get(i))
    }
}

/// A refused request: the whole reply line (without `\r\n`), and for `ms`
/// the number of input bytes after the line to discard (its data block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub msg: &'static str,
    pub swallow: usize,
}

const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";

fn err(msg: &'static str) -> Error {
    Error { msg, swallow: 0 }
}

/// Parses one meta request line. `keybuf` receives a base64 key's bytes.
pub fn parse<'a>(line: &'a [u8], keybuf: &'a mut [u8; KEY_BUF_LEN]) -> Result<Request<'a>, Error> {
    let toks = Tokens::new(line);
    let Some(cmd) = command(toks.get(0)) else {
        return Err(err("ERROR"));
    };
    let ntokens = toks.len() + 1;
    let mut req = Request {
        cmd,
        key: toks.get(1),
        datalen: 0,
        flags: Flags::default(),
        set_mode: SetMode::Set,
        incr: true,
        toks,
    };
    match cmd {
        // `mn` ignores anything after it.
        Cmd::Noop => {
            req.key = &[];
            return Ok(req);
        }
        Cmd::Debug => return parse_debug(req, ntokens, keybuf),
        _ => {}
    }
    if ntokens < 3 {
        return Err(err("ERROR"));
    }
    if req.key.len() > MAX_KEY_LEN {
        return Err(err(BAD_FORMAT));
    }
    match cmd {
        Cmd::Get => {
            if ntokens > MAX_OPT_TOKENS {
                return Err(err("CLIENT_ERROR options flags are too long"));
            }
            preparse(&mut req, 2, keybuf).map_err(err)?;
        }
        Cmd::Set => {
            if ntokens == 3 {
                return Err(err(BAD_FORMAT));
            }
            if ntokens > MAX_OPT_TOKENS {
                return Err(err("CLIENT_ERROR options flags too long"));
            }
            let vlen = match strtol32(toks.get(2)) {
                Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
                _ => return Err(err(BAD_FORMAT)),
            };
            req.datalen = vlen;
            let swallow = vlen + 2;
            let fail = |msg| Error { msg, swallow };
            preparse(&mut req, 3, keybuf).map_err(fail)?;
            if req
                .flag_tokens()
                .any(|t| t[0] == b'O' && t.len() > MAX_OPAQUE)
            {
                return Err(fail("CLIENT_ERROR opaque token too long"));
            }
            req.set_mode = match req.flags.mode {
                None | Some(b'S') => SetMode::Set,
                Some(b'E') => SetMode::Add,
                Some(b'A') => SetMode::Append,
                Some(b'P') => SetMode::Prepend,
                Some(b'R') => SetMode::Replace,
                Some(_) => return Err(fail("CLIENT_ERROR invalid mode for ms M token")),
            };
        }
        Cmd::Delete | Cmd::Arith => {
            if ntokens > MAX_OPT_TOKENS {
                return Err(err("CLIENT_ERROR options flags too long"));
            }
            if preparse(&mut req, 2, keybuf).is_err() {
                return Err(err("CLIENT_ERROR invalid or duplicate flag"));
            }
            if cmd == Cmd::Delete {
                if req
                    .flag_tokens()
                    .any(|t| t[0] == b'O' && t.len() > MAX_OPAQUE)
                {
                    return Err(err("CLIENT_ERROR opaque token too long"));
                }
            } else {
                req.incr = match req.flags.mode {
                    None | Some(b'I') | Some(b'+') => true,
                    Some(b'D') | Some(b'-') => false,
                    Some(_) => return Err(err("CLIENT_ERROR invalid mode for ma M token")),
                };
            }
        }
        Cmd::Noop | Cmd::Debug => {}
    }
    Ok(req)
}

/// `me <key> [b]`: no flag parsing; only an exact third token `b` decodes.
fn parse_debug<'a>(
    mut req: Request<'a>,
    ntokens: usize,
    keybuf: &'a mut [u8; KEY_BUF_LEN],
) -> Result<Request<'a>, Error> {
    if ntokens < 3 || req.key.len() > MAX_KEY_LEN {
        return Err(err(BAD_FORMAT));
    }
    if ntokens >= 4 && req.toks.get(2) == b"b" {
        let n = base64_decode(req.key, keybuf).ok_or(err(BAD_FORMAT))?;
        req.key = &keybuf[..n];
        req.flags.base64 = true;
    }
    Ok(req)
}

/// memcached's `_meta_flag_preparse`: one pass over the flag tokens from
/// `start`. A repeated or unknown flag stops at once; other faults are
/// noted and the pass goes on, so the last fault's message wins.
fn preparse<'a>(
    req: &mut Request<'a>,
    start: usize,
    keybuf: &'a mut [u8; KEY_BUF_LEN],
) -> Result<(), &'static str> {
    let mut seen = [false; 127];
    let mut fault: Option<&'static str> = None;
    let f = &mut req.flags;
    let mut keybuf = Some(keybuf);
    for i in start..req.toks.len() {
        let t = req.toks.get(i);
        let o = t[0];
        if o >= 127 || seen[o as usize] {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen[o as usize] = true;
        let arg = &t[1..];
        match o {
            b'b' => {
                f.base64 = true;
                // `seen` guarantees a single `b`, so the buffer is there.
                if let Some(buf) = keybuf.take() {
                    match base64_decode(req.key, buf) {
                        Some(n) => req.key = &buf[..n],
                        None => {
                            req.key = &[];
                            fault = Some("CLIENT_ERROR error decoding key");
                        }
                    }
                }
            }
            b'N' => match strtol32(arg) {
                Some(v) => f.vivify = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'T' => match strtol32(arg) {
                Some(v) => f.ttl = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'R' => match strtol32(arg) {
                Some(v) => f.recache = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'l' | b'h' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.quiet = true,
            b'I' => f.invalidate = true,
            // memcached sets no message for a bad F: the default one shows.
            b'F' => match strtoul32(arg) {
                Some(v) => f.client_flags = v,
                None => fault = Some(fault.unwrap_or(BAD_FORMAT)),
            },
            b'C' => match strtoull(arg) {
                Some(v) => f.compare_cas = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'E' => match strtoull(arg) {
                Some(v) => f.new_cas = Some(v),
                None => fault = Some(BAD_TOKEN),
            },
            b'M' => {
                if t.len() != 2 {
                    fault = Some("CLIENT_ERROR incorrect length for M token");
                } else {
                    f.mode = Some(t[1]);
                }
            }
            b'J' => match strtoull(arg) {
                Some(v) => f.initial = Some(v),
                None => fault = Some("CLIENT_ERROR invalid numeric initial value"),
            },
            b'D' => match strtoull(arg) {
                Some(v) => f.delta = Some(v),
                None => fault = Some("CLIENT_ERROR invalid numeric delta value"),
            },
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    match fault {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
