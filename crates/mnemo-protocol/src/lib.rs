//! memcached wire protocols, parsed in place and encoded without I/O.
//!
//! Server side: `text` parses requests from a read buffer without copying.
//! Client side: `reply` parses what a server sends back and encodes requests,
//! for mnemo-client, mnemo-proxy and mnemo-bench.

pub mod binary;
pub mod meta;
pub mod reply;
pub mod text;
