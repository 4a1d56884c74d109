//! mnemo-net: the network plumbing the server, the proxy, the client and
//! the bench share, so that each exists once. It knows no protocol.
//!
//! - [`addr`]: [`Addr`] (where a server listens), `-l` entry parsing,
//!   resolution and binding listening sockets with each caller's options.
//! - [`stream`]: one stream type over TCP and unix sockets, non-blocking
//!   ([`Stream`], for mio loops) and blocking ([`BlockingStream`]), and the
//!   matching [`Listener`]. TLS is a variant of these (`tls_stream`).
//! - [`tls`]: memcached's `ssl_*` settings as rustls server and client
//!   configurations; the server's is swapped whole on `refresh_certs`.
//! - [`rbuf`]: [`ReadBuf`], a read buffer that requests and replies are
//!   parsed from in place.
//! - [`slots`]: [`Slots`], a generational slot table whose keys are mio
//!   tokens, so a stale event cannot reach a reused slot.
//! - [`health`]: [`Health`], I/O-free failure counting, ejection and
//!   readmission of a server (twemproxy's auto_eject_hosts).
//!
//! `rbuf`, `slots` and `health` do no I/O of their own (`ReadBuf` reads
//! only through a reader handed to it) and are tested without sockets.

// Nothing here needs unsafe code; keeping it so leaves raw memory to the
// engine and the server, where every unsafe block is audited (issue #15).
#![forbid(unsafe_code)]

pub mod addr;
pub mod health;
pub mod rbuf;
pub mod slots;
pub mod stream;
pub mod tls;
pub mod tls_stream;

pub use addr::{Addr, ListenOpts, StaleSocket};
pub use health::{Health, HealthPolicy};
pub use rbuf::{Fill, ReadBuf};
pub use slots::{Key, Slots};
pub use stream::{BlockingStream, Listener, Stream};
pub use tls::{ClientTlsOptions, ServerTls, ServerTlsOptions, TlsError};
pub use tls_stream::{is_handshake_error, TlsStream};
