//! Client side of the memcached protocols, with no I/O: encode requests and
//! parse what a server sends back (what mnemo-client, mnemo-proxy and
//! mnemo-bench need). Text and meta requests are encoded by `encode`,
//! replies parsed by `reply`; [`binary`] does both for the binary protocol.
//!
//! Parsing is incremental and in place: [`parse_reply`] looks at the front of
//! a read buffer and either returns one reply element together with the
//! number of bytes it occupies, says that more bytes are needed (`Ok(None)`),
//! or reports malformed input. It never panics and never copies: keys, values
//! and messages are returned as ranges into the buffer that was parsed.
//!
//! A retrieval reply (`get`, `gets`, `gat`, `gats`) is a sequence of
//! [`Reply::Value`] elements closed by [`Reply::End`]; `stats` is a sequence of
//! [`Reply::Stat`] closed by [`Reply::End`]; every other reply is a single
//! element. The caller loops, consuming `used` bytes after each element.
//!
//! ```
//! use mnemo_protocol::client::{self, Reply};
//!
//! let mut out = Vec::new();
//! client::encode_get(&mut out, [&b"a"[..], &b"b"[..]]);
//! assert_eq!(out, b"get a b\r\n");
//!
//! let buf = b"VALUE a 5 3\r\nxyz\r\nEND\r\n";
//! let mut pos = 0;
//! let mut values = Vec::new();
//! loop {
//!     match client::parse_reply(&buf[pos..]) {
//!         Ok(Some((Reply::Value { key, flags, data, .. }, used))) => {
//!             // Ranges are relative to the slice handed to parse_reply.
//!             let base = pos;
//!             values.push((&buf[base + key.start..base + key.end], flags,
//!                          &buf[base + data.start..base + data.end]));
//!             pos += used;
//!         }
//!         Ok(Some((Reply::End, used))) => { pos += used; break; }
//!         Ok(Some((other, _))) => panic!("unexpected {other:?}"),
//!         Ok(None) => panic!("need more bytes"),
//!         Err(e) => panic!("malformed: {e:?}"),
//!     }
//! }
//! assert_eq!(values, vec![(&b"a"[..], 5, &b"xyz"[..])]);
//! assert_eq!(pos, buf.len());
//! ```

pub mod binary;
mod encode;
mod reply;

pub use encode::{
    encode_arith, encode_cas, encode_delete, encode_flush_all, encode_gat, encode_get, encode_gets,
    encode_meta_arith, encode_meta_delete, encode_meta_get, encode_meta_noop, encode_meta_set,
    encode_stats, encode_store, encode_touch, encode_verbosity, encode_version, valid_key,
    StoreCmd,
};
pub use reply::{meta_flag, parse_reply, parse_u64, MetaStatus, Reply, ReplyError, MAX_LINE};

#[cfg(test)]
mod tests;
