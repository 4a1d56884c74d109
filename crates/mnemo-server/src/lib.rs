//! The server as a library: `main.rs` is only start-up, and the fuzz
//! targets (`fuzz/fuzz_targets/conn.rs`) and tests drive a connection
//! through the same modules the binary runs. Nothing here is a stable
//! API; the modules are public so that the binary and the fuzzers can
//! reach them, not for other users.

#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod batch;
#[doc(hidden)]
pub mod bufbudget;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod conn;
#[doc(hidden)]
pub mod dispatch;
#[doc(hidden)]
pub mod dump;
#[cfg(test)]
mod fuzz_replay;
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod listener;
#[doc(hidden)]
pub mod out;
#[doc(hidden)]
pub mod proto_bin;
#[doc(hidden)]
pub mod proto_meta;
#[doc(hidden)]
pub mod proto_text;
#[doc(hidden)]
pub mod repl;
#[doc(hidden)]
pub mod settings;
#[doc(hidden)]
pub mod shared;
#[doc(hidden)]
pub mod signals;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod tls;
#[doc(hidden)]
pub mod udp;
#[doc(hidden)]
pub mod watch;
#[doc(hidden)]
pub mod worker;

// Keys are refused on the wire above the protocol's limit; the engine's item
// format must be able to hold every key that passes. The two crates do not
// depend on each other, so the server, which joins them, checks it.
const _: () = assert!(mnemo_protocol::MAX_KEY_LEN <= mnemo_engine::MAX_STORED_KEY);
