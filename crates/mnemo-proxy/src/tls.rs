//! TLS in the proxy, on both sides (twemproxy has neither): a pool's
//! `server_tls*` keys encrypt its connections to its servers, its
//! `listen_tls*` keys make its listener accept TLS clients (verifying
//! client certificates when asked, with memcached's `ssl_verify_mode`
//! levels).
//!
//! The keys are parsed here (`set`, `check`) so that `config.rs` only
//! hands them over; `load` then reads the certificate files once per
//! configuration (at start, `-t` and every SIGHUP, so a reload also picks
//! up renewed certificates) into shared rustls configurations. Listener
//! sessions are created by the acceptor (`ServerTls::accept`), backend
//! sessions by the worker opening the connection; both then run their
//! handshake inside the event loop's ordinary reads and writes (see
//! `net::drain` for the one extra rule TLS brings).

use crate::config::{Config, PoolConf};
use mnemo_net::tls::{self, rustls, VerifyMode};
use mnemo_net::{Addr, ClientTlsOptions, ServerTls, ServerTlsOptions, Stream};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Something built from the settings beside it. Equal whenever those
/// settings are, so configurations still compare by what the file says.
pub struct Built<T>(pub Option<Arc<T>>);

impl<T> Clone for Built<T> {
    fn clone(&self) -> Self {
        Built(self.0.clone())
    }
}

impl<T> Default for Built<T> {
    fn default() -> Self {
        Built(None)
    }
}

impl<T> PartialEq for Built<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for Built<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "built" } else { "unbuilt" })
    }
}

/// TLS towards a pool's servers (`server_tls: true` and its companions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSideTls {
    /// `server_tls_ca`: the CAs the servers' certificates must chain to.
    pub ca: Option<PathBuf>,
    /// `server_tls_cert` / `server_tls_key`: the proxy's client
    /// certificate, for servers that verify clients.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `server_tls_name`: the name every server's certificate must carry
    /// (default: each server's host).
    pub name: Option<String>,
    /// `server_tls_skip_verify`: accept any server certificate (tests).
    pub skip_verify: bool,
    pub config: Built<rustls::ClientConfig>,
}

/// TLS on a pool's listener (`listen_tls: true` and its companions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenTls {
    /// `listen_tls_cert`: PEM chain, leaf first; `listen_tls_key` its key
    /// (default: in the chain file).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `listen_tls_ca`: the CAs client certificates must chain to.
    pub ca: Option<PathBuf>,
    /// `listen_tls_verify`: memcached's `ssl_verify_mode`, 0 (default)
    /// to 3.
    pub verify: VerifyMode,
    pub server: Built<ServerTls>,
}

/// A pool's TLS keys, as written; `server_on` / `listen_on` are the
/// switches, the other keys need theirs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolTls {
    pub server_on: bool,
    pub server: ServerSideTls,
    pub listen_on: bool,
    pub listen: ListenTls,
    /// A companion key seen, for `check` (key name, for the message).
    server_key_seen: Option<&'static str>,
    listen_key_seen: Option<&'static str>,
}

impl PoolTls {
    /// TLS towards servers, if on.
    pub fn server(&self) -> Option<&ServerSideTls> {
        self.server_on.then_some(&self.server)
    }
    /// TLS on the listener, if on.
    pub fn listen(&self) -> Option<&ListenTls> {
        self.listen_on.then_some(&self.listen)
    }
}

const KEYS: &[&str] = &[
    "server_tls",
    "server_tls_ca",
    "server_tls_cert",
    "server_tls_key",
    "server_tls_name",
    "server_tls_skip_verify",
    "listen_tls",
    "listen_tls_cert",
    "listen_tls_key",
    "listen_tls_ca",
    "listen_tls_verify",
];

/// True if `key` is one of this module's.
pub fn is_key(key: &str) -> bool {
    KEYS.contains(&key)
}

fn bool_of(v: &str) -> Result<bool, String> {
    match v {
        "true" | "yes" | "True" | "TRUE" => Ok(true),
        "false" | "no" | "False" | "FALSE" => Ok(false),
        _ => Err("is not \"true\" or \"false\"".into()),
    }
}

fn path_of(v: &str) -> Result<Option<PathBuf>, String> {
    if v.is_empty() {
        return Err("expects a file path".into());
    }
    Ok(Some(PathBuf::from(v)))
}

/// Applies one key (see [`is_key`]); the error is the message for the
/// key's line.
pub fn set(t: &mut PoolTls, key: &str, v: &str) -> Result<(), String> {
    let k = KEYS.iter().copied().find(|k| *k == key);
    match key {
        "server_tls" => t.server_on = bool_of(v)?,
        "server_tls_ca" => t.server.ca = path_of(v)?,
        "server_tls_cert" => t.server.cert = path_of(v)?,
        "server_tls_key" => t.server.key = path_of(v)?,
        "server_tls_name" => {
            tls::server_name(Some(v), "").map_err(|e| format!("is not a valid name: {e}"))?;
            t.server.name = Some(v.to_string());
        }
        "server_tls_skip_verify" => t.server.skip_verify = bool_of(v)?,
        "listen_tls" => t.listen_on = bool_of(v)?,
        "listen_tls_cert" => t.listen.cert = path_of(v)?,
        "listen_tls_key" => t.listen.key = path_of(v)?,
        "listen_tls_ca" => t.listen.ca = path_of(v)?,
        "listen_tls_verify" => {
            t.listen.verify = v
                .parse::<i64>()
                .ok()
                .and_then(VerifyMode::from_level)
                .ok_or("is not a verify mode (0 none, 1 request, 2 require, 3 once)")?;
        }
        _ => return Err(format!("unknown directive \"{key}\"")),
    }
    if key.starts_with("server_tls_") {
        t.server_key_seen = k;
    } else if key.starts_with("listen_tls_") {
        t.listen_key_seen = k;
    }
    Ok(())
}

/// Checks a pool's TLS keys against each other and its addresses; the
/// error is the message for the pool's line.
pub fn check(p: &PoolConf) -> Result<(), String> {
    let t = &p.tls;
    if let (false, Some(k)) = (t.server_on, t.server_key_seen) {
        return Err(format!("{k} is set without server_tls: true"));
    }
    if let (false, Some(k)) = (t.listen_on, t.listen_key_seen) {
        return Err(format!("{k} is set without listen_tls: true"));
    }
    if t.server_on {
        if t.server.ca.is_none() && !t.server.skip_verify {
            return Err("server_tls needs server_tls_ca (or server_tls_skip_verify)".into());
        }
        if t.server.key.is_some() && t.server.cert.is_none() {
            return Err("server_tls_key is set without server_tls_cert".into());
        }
        if let Some(s) = p
            .servers
            .iter()
            .find(|s| !matches!(s.addr, Addr::Tcp { .. }))
        {
            return Err(format!(
                "server_tls: server {} is a unix socket (TLS runs over TCP)",
                s.pname
            ));
        }
    }
    if t.listen_on {
        if t.listen.cert.is_none() {
            return Err("listen_tls needs listen_tls_cert".into());
        }
        match &p.listen {
            Some(Addr::Tcp { .. }) => {}
            Some(Addr::Unix(_)) => {
                return Err("listen_tls: the listen address is a unix socket".into())
            }
            None => return Err("listen_tls: the pool has no listen address".into()),
        }
        if t.listen.verify != VerifyMode::None && t.listen.ca.is_none() {
            return Err("listen_tls_verify needs listen_tls_ca".into());
        }
    }
    Ok(())
}

/// Reads every pool's certificates and builds its TLS configurations.
pub fn load(cfg: &mut Config) -> Result<(), String> {
    for p in &mut cfg.pools {
        let name = p.name.clone();
        let t = &mut p.tls;
        if t.server_on {
            let s = &mut t.server;
            let opts = ClientTlsOptions {
                ca_cert: s.ca.clone(),
                cert: s.cert.clone(),
                key: s.key.clone(),
                server_name: s.name.clone(),
                insecure_skip_verify: s.skip_verify,
                ..Default::default()
            };
            let c =
                tls::client_config(&opts).map_err(|e| format!("pool '{name}': server_tls: {e}"))?;
            s.config = Built(Some(mnemo_client::tls::without_resumption(c)));
        }
        if t.listen_on {
            let l = &mut t.listen;
            let opts = ServerTlsOptions {
                chain_cert: l.cert.clone(),
                key: l.key.clone(),
                ca_cert: l.ca.clone(),
                verify_mode: l.verify,
                ..Default::default()
            };
            let s = ServerTls::new(opts).map_err(|e| format!("pool '{name}': listen_tls: {e}"))?;
            l.server = Built(Some(Arc::new(s)));
        }
    }
    Ok(())
}

/// What a worker needs to open TLS connections to a pool's servers.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Arc<rustls::ClientConfig>,
    name: Option<String>,
}

impl Connector {
    pub(crate) fn of(p: &PoolConf) -> Option<Connector> {
        let s = p.tls.server()?;
        Some(Connector {
            config: s.config.0.clone()?,
            name: s.name.clone(),
        })
    }

    /// Wraps a connecting TCP stream to `addr`; the ClientHello goes out
    /// with the first write.
    pub(crate) fn wrap(&self, sock: Stream, addr: &Addr) -> io::Result<Stream> {
        let Addr::Tcp { host, .. } = addr else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS runs over TCP",
            ));
        };
        let name = tls::server_name(self.name.as_deref(), host)?;
        Stream::tls_client(sock, self.config.clone(), name)
    }
}

/// The listener side of pool `p`, if on.
pub(crate) fn acceptor_of(p: &PoolConf) -> Option<Arc<ServerTls>> {
    p.tls.listen().and_then(|l| l.server.0.clone())
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn bad(src: &str, needle: &str) {
        match parse(src) {
            Ok(c) => panic!("accepted {src:?}: {c:?}"),
            Err(e) => assert!(e.to_string().contains(needle), "{e}"),
        }
    }

    #[test]
    fn tls_keys() {
        let c = parse(
            "a:\n  listen: 127.0.0.1:1\n  server_tls: true\n  server_tls_ca: /ca.pem\n  \
             server_tls_name: mc.test\n  listen_tls: true\n  listen_tls_cert: /c.pem\n  \
             listen_tls_ca: /ca.pem\n  listen_tls_verify: 2\n  servers:\n   - h:1:1\n",
        )
        .unwrap();
        let t = &c.pools[0].tls;
        assert_eq!(t.server().unwrap().name.as_deref(), Some("mc.test"));
        assert_eq!(
            t.listen().unwrap().verify,
            mnemo_net::tls::VerifyMode::Require
        );
        let plain = parse("a:\n  listen: 127.0.0.1:1\n  servers:\n   - h:1:1\n").unwrap();
        assert!(plain.pools[0].tls.server().is_none());
        assert!(plain.pools[0].tls.listen().is_none());
        bad(
            "a:\n  listen: 127.0.0.1:1\n  server_tls_ca: /ca.pem\n  servers:\n   - h:1:1\n",
            "without server_tls: true",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  server_tls: true\n  servers:\n   - h:1:1\n",
            "needs server_tls_ca",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  server_tls: true\n  server_tls_skip_verify: true\n  servers:\n   - /s.sock:1\n",
            "unix socket",
        );
        bad(
            "a:\n  listen: /l.sock\n  listen_tls: true\n  listen_tls_cert: /c\n  servers:\n   - h:1:1\n",
            "unix socket",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  listen_tls: true\n  servers:\n   - h:1:1\n",
            "needs listen_tls_cert",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  listen_tls: true\n  listen_tls_cert: /c\n  listen_tls_verify: 5\n  servers:\n   - h:1:1\n",
            "verify mode",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  listen_tls: true\n  listen_tls_cert: /c\n  listen_tls_verify: 2\n  servers:\n   - h:1:1\n",
            "needs listen_tls_ca",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  server_tls: maybe\n  servers:\n   - h:1:1\n",
            "true",
        );
        // Files are read by `load`, not by `parse`.
        let mut c = parse(
            "a:\n  listen: 127.0.0.1:1\n  server_tls: true\n  server_tls_ca: /nonexistent/ca.pem\n  servers:\n   - h:1:1\n",
        )
        .unwrap();
        let e = super::load(&mut c).unwrap_err();
        assert!(e.contains("pool 'a': server_tls"), "{e}");
    }
}
