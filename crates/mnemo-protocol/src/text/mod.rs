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
//!
//! The module is split by concern: `tokens` frames lines and splits them,
//! `numbers` reads and writes numbers as memcached does, `request` turns a
//! line into a [`Request`], `response` holds the reply pieces a server
//! writes. Everything public is reached from here, by one path.

mod numbers;
mod request;
mod response;
mod tokens;

pub use numbers::{decimal, push_i64, push_u64, strtod, strtol32, strtoll, strtoul32, strtoull};
pub use request::{
    parse_line, Automove, CrawlerCmd, DetailCmd, GetKind, LruCmd, Request, StatsCmd, StoreKind,
    BAD_FORMAT,
};
pub use response::encode_value_header;
pub use tokens::{is_multiget_prefix, next_line, Keys, Line, Tokens, MAX_LINE_WITHOUT_NEWLINE};

#[cfg(test)]
use request::parse_tokens;

#[cfg(test)]
mod tests;
