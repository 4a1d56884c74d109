//! TLS for the client's connections: a rustls client configuration built
//! once from [`ClientTlsOptions`] and shared by every connection of a
//! [`crate::Client`], so that certificates are read once. Sessions are not
//! resumed (see [`without_resumption`]).

use crate::Error;
use mnemo_net::tls::{self, rustls};
pub use mnemo_net::ClientTlsOptions;
use mnemo_net::{Addr, BlockingStream};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// A client TLS setting: what to trust, what to present, which name the
/// server's certificate must carry.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    /// None: each server's own host (IP address or DNS name).
    server_name: Option<String>,
}

impl Tls {
    /// Reads the CA, and the client certificate and key if given. Errors
    /// name the file that could not be used.
    pub fn new(opts: &ClientTlsOptions) -> Result<Tls, Error> {
        let config = tls::client_config(opts).map_err(|e| Error::Config(e.0))?;
        let config = without_resumption(config);
        if let Some(n) = &opts.server_name {
            // Checked now so that a bad name is a configuration error, not
            // a failure of every later connect.
            tls::server_name(Some(n), "").map_err(|e| Error::Config(e.to_string()))?;
        }
        Ok(Tls {
            config,
            server_name: opts.server_name.clone(),
        })
    }

    /// From a ready rustls configuration (ALPN, custom verifiers...).
    pub fn from_config(config: Arc<rustls::ClientConfig>, server_name: Option<String>) -> Tls {
        Tls {
            config,
            server_name,
        }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// Connects and completes the handshake. Unix sockets are refused:
    /// memcached serves TLS on TCP only.
    pub(crate) fn connect(
        &self,
        addr: &Addr,
        connect_timeout: Duration,
        io_timeout: Option<Duration>,
    ) -> io::Result<BlockingStream> {
        let name = match (addr, &self.server_name) {
            (Addr::Tcp { host, .. }, n) => Some(tls::server_name(n.as_deref(), host)?),
            (Addr::Unix(_), _) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS runs over TCP only",
                ))
            }
        };
        BlockingStream::connect_tls(addr, connect_timeout, io_timeout, self.config.clone(), name)
    }
}

/// `config` with session resumption off. memcached 1.6.18 with
/// `ssl_verify_mode` 2 answers a handshake that offers a session ticket
/// with an `internal_error` alert (seen in `tests/tls.rs`; OpenSSL will not
/// resume a session on a verifying server without a session id context,
/// which memcached does not set), so every second connection of a client
/// was refused. Connections are pooled and long-lived, so a full handshake
/// per connection costs little.
pub fn without_resumption(config: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let mut c = Arc::unwrap_or_clone(config);
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}
