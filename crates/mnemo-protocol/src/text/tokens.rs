//! Framing and tokenizing of text-protocol request lines, memcached's way:
//! where a line ends, how long one may grow without a newline, and how it
//! splits on spaces (`tokenize_command`). Shared by the text and meta parsers.

use memchr::memchr;

/// Without a newline in this many bytes, a line that is not a `get`/`gets`
/// is junk and the connection is closed (memcached's rule).
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;

/// memcached's MAX_TOKENS: 23 real tokens plus the terminal one.
const MAX_TOKENS: usize = 24;

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
