//! `--tls`: the load (and the `stats` CPU probe) over TLS, so that TLS
//! servers are measured the same way as plain ones. Connections are made
//! and their handshakes completed before the measured phase starts (the
//! server CPU reading begins after it), so the figures are those of
//! encrypted requests, not of handshakes.

use clap::Args;
use mnemo_net::tls::{self, rustls};
use mnemo_net::{Addr, BlockingStream, ClientTlsOptions};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Speak TLS to the server (needs --tls-ca or --tls-insecure).
    #[arg(long)]
    pub tls: bool,
    /// PEM CA file the server's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any server certificate (benchmarks on loopback).
    #[arg(long, requires = "tls")]
    pub tls_insecure: bool,
    /// Client certificate chain (PEM), for servers that verify clients.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_cert: Option<PathBuf>,
    /// Key of --tls-cert (default: in the same file).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: its IP address).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_server_name: Option<String>,
}

/// A ready client configuration.
#[derive(Clone)]
pub struct TlsTarget {
    config: Arc<rustls::ClientConfig>,
    name: Option<String>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("name", &self.name)
            .finish()
    }
}

impl TlsArgs {
    /// None without `--tls`.
    pub fn target(&self) -> Result<Option<TlsTarget>, String> {
        if !self.tls {
            return Ok(None);
        }
        if self.tls_ca.is_none() && !self.tls_insecure {
            return Err("--tls needs --tls-ca FILE or --tls-insecure".into());
        }
        let opts = ClientTlsOptions {
            ca_cert: self.tls_ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            server_name: self.tls_server_name.clone(),
            insecure_skip_verify: self.tls_insecure,
            ..Default::default()
        };
        let config = tls::client_config(&opts).map_err(|e| e.0)?;
        Ok(Some(TlsTarget {
            config,
            name: self.tls_server_name.clone(),
        }))
    }
}

impl TlsTarget {
    /// Connects to `addr` and completes the handshake.
    pub fn connect(&self, addr: &SocketAddr, timeout: Duration) -> io::Result<BlockingStream> {
        let host = addr.ip().to_string();
        let name = tls::server_name(self.name.as_deref(), &host)?;
        let a = Addr::Tcp {
            host,
            port: addr.port(),
        };
        BlockingStream::connect_tls(&a, timeout, Some(timeout), self.config.clone(), Some(name))
    }
}
