//! memcached wire protocols, parsed in place and encoded without I/O.
//!
//! Laid out by protocol. Server side: [`text`] and [`meta`] parse request
//! lines from a read buffer without copying; [`binary`] holds the binary
//! protocol's header, opcodes and status codes (the one place server and
//! clients take them from), the server's request framing and validation,
//! and response encoding. Client side: [`client`] parses what a server sends
//! back and encodes requests, for mnemo-client, mnemo-proxy and mnemo-bench.
//! [`repl`] is mnemo's own replication link (handshake and frames).

// Nothing here needs unsafe code; keeping it so leaves raw memory to the
// engine and the server, where every unsafe block is audited (issue #15).
#![forbid(unsafe_code)]

pub mod binary;
pub mod client;
pub mod meta;
pub mod repl;
pub mod text;

/// Largest key memcached accepts, in bytes, in every protocol.
pub const MAX_KEY_LEN: usize = 250;
