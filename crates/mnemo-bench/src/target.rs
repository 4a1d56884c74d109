//! Where the load goes: a TCP address, a unix socket, or TCP with TLS
//! (`--tls`), and how a blocking TLS connection to it is made (the CPU
//! probe's `stats` and the fill use one).

use mnemo_net::BlockingStream;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
    /// TCP with TLS (`--tls`): the handshake completes at connect, before
    /// anything is measured; requests then go through the session.
    Tls(SocketAddr, TlsClient),
}

/// What a TLS connection needs: the client configuration and the name the
/// server's certificate must carry.
#[derive(Clone, Debug)]
pub struct TlsClient {
    pub config: Arc<mnemo_net::tls::rustls::ClientConfig>,
    pub name: mnemo_net::tls::rustls::pki_types::ServerName<'static>,
}

impl TlsClient {
    /// A blocking TLS connection to `addr`, handshake done.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<BlockingStream> {
        let a = mnemo_net::Addr::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        BlockingStream::connect_tls(
            &a,
            timeout,
            Some(timeout),
            self.config.clone(),
            Some(self.name.clone()),
        )
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Tls(a, _) => write!(f, "tls:{a}"),
        }
    }
}
