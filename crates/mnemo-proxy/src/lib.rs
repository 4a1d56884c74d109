//! The proxy as a library: `main.rs` is only start-up, and the fuzz
//! target `fuzz/fuzz_targets/proxy.rs` and tests drive request
//! translation and multi-get assembly through the same modules the binary
//! runs. Nothing here is a stable API; the modules are public so that the
//! binary and the fuzzers can reach them, not for other users.

#[doc(hidden)]
pub mod acceptor;
#[doc(hidden)]
pub mod backend;
#[doc(hidden)]
pub mod binproto;
#[doc(hidden)]
pub mod client;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod erasure;
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod meta;
#[doc(hidden)]
pub mod mirror;
#[doc(hidden)]
pub mod multiget;
#[doc(hidden)]
pub mod net;
#[doc(hidden)]
pub mod pool;
#[doc(hidden)]
pub mod reload;
#[doc(hidden)]
pub mod request;
#[doc(hidden)]
pub mod route;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod tls;
#[doc(hidden)]
pub mod worker;
