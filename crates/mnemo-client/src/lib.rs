//! mnemo-client: a memcached client placing keys exactly where libmemcached
//! (KETAMA_WEIGHTED) and twemproxy put them.
//!
//! - [`hash`]: twemproxy's key hashes, bit for bit.
//! - [`ring`]: ketama / modula / random placement and hash tags.
//! - [`conn`]: one blocking connection (TCP or unix socket) with timeouts
//!   and pipelining.
//! - [`client`]: a client over many servers: pooled connections, multi-get
//!   split per server, pipelines, failure counting and ejection.
//! - [`tls`]: TLS for every connection of a client ([`Options::tls`]).
//!
//! ```no_run
//! use mnemo_client::{Client, Options, ServerSpec};
//! let servers = vec![
//!     ServerSpec::new("127.0.0.1:11211")?.weight(2),
//!     ServerSpec::new("127.0.0.1:11212")?,
//! ];
//! let c = Client::new(servers, Options::default())?;
//! c.set(b"k", b"v", 0, 0)?;
//! let items = c.get_multi(&[b"k", b"missing"])?;
//! assert_eq!(items[0].as_ref().map(|i| i.value.as_slice()), Some(&b"v"[..]));
//! # Ok::<(), mnemo_client::Error>(())
//! ```
//!
//! Over TLS (memcached `-Z`), checking the servers' certificates against a
//! CA and presenting a client certificate:
//!
//! ```no_run
//! use mnemo_client::{Client, ClientTlsOptions, Options, ServerSpec, Tls};
//! let tls = Tls::new(&ClientTlsOptions {
//!     ca_cert: Some("ca.pem".into()),
//!     cert: Some("client.pem".into()),
//!     key: Some("client.key".into()),
//!     ..Default::default()
//! })?;
//! let opts = Options { tls: Some(tls), ..Options::default() };
//! let c = Client::new(vec![ServerSpec::new("10.0.0.1:11211")?], opts)?;
//! c.set(b"k", b"v", 0, 0)?;
//! # Ok::<(), mnemo_client::Error>(())
//! ```

// Nothing here needs unsafe code; keeping it so leaves raw memory to the
// engine and the server, where every unsafe block is audited (issue #15).
#![forbid(unsafe_code)]

mod bin;
pub mod client;
pub mod conn;
pub mod hash;
pub mod ring;
pub mod tls;

pub use client::{
    Client, Item, MetaReply, Op, OpResult, Options, Pipeline, Protocol, ServerSpec, Stored,
};
pub use conn::{Addr, Conn};
pub use hash::Hash;
pub use ring::{Distribution, Node, Placement, Ring};
pub use tls::{ClientTlsOptions, Tls};

use std::sync::Arc;

/// Client errors.
#[derive(Debug, Clone)]
pub enum Error {
    /// Transport failure (connect refused, reset, closed).
    Io(Arc<std::io::Error>),
    /// A connect, read or write timed out.
    Timeout,
    /// The server's reply is not memcached protocol.
    Protocol(mnemo_protocol::client::ReplyError),
    /// `SERVER_ERROR ...` or `ERROR`.
    Server(String),
    /// `CLIENT_ERROR ...`.
    Client(String),
    /// A well-formed reply that does not answer the request.
    Unexpected(String),
    /// No live server for the key.
    NoServer,
    /// The key is empty, longer than 250 bytes or contains spaces/controls.
    BadKey,
    /// Invalid client configuration.
    Config(String),
}

impl Error {
    /// Classify an I/O error: timeouts apart from other failures.
    pub fn from_io(e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
            _ => Error::Io(Arc::new(e)),
        }
    }

    /// True if the connection's stream can no longer be trusted.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::Timeout | Error::Protocol(_) | Error::Unexpected(_)
        )
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Timeout => f.write_str("timed out"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Server(m) => write!(f, "server error: {m}"),
            Error::Client(m) => write!(f, "client error: {m}"),
            Error::Unexpected(m) => write!(f, "unexpected reply: {m}"),
            Error::NoServer => f.write_str("no live server"),
            Error::BadKey => f.write_str("invalid key"),
            Error::Config(m) => write!(f, "configuration: {m}"),
        }
    }
}

impl std::error::Error for Error {}
