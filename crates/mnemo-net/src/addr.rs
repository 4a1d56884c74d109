//! Addresses: [`Addr`], where a server listens as the client and proxy
//! configure it, and the listening side: splitting and resolving `-l`
//! entries and binding TCP and unix listeners.
//!
//! Each caller keeps the socket options it has always set; [`ListenOpts`]
//! and [`StaleSocket`] spell them out instead of hiding a common choice.

use mio::net::{TcpListener, UnixListener};
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl Addr {
    /// Parse `host:port`, `[v6]:port` or a path starting with `/`.
    pub fn parse(s: &str) -> Option<Addr> {
        if s.starts_with('/') {
            return Some(Addr::Unix(PathBuf::from(s)));
        }
        let (host, port) = s.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return None;
        }
        Some(Addr::Tcp {
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }

    /// The first address a TCP host resolves to (the proxy connects and
    /// binds to that one); unix paths have none.
    pub fn first_socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Addr::Tcp { host, port } => (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
            Addr::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a unix socket has no IP address",
            )),
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Addr::Tcp { host, port } => write!(f, "{host}:{port}"),
            Addr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The entries of a `-l` list (comma separated), or memcached's default of
/// every IPv4 and IPv6 interface when there is none.
pub fn listen_entries(inter: Option<&str>) -> Vec<String> {
    match inter {
        Some(list) => list
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        None => vec!["0.0.0.0".into(), "::".into()],
    }
}

/// Splits one `-l` entry into host and optional port:
/// `1.2.3.4`, `1.2.3.4:11211`, `[::1]`, `[::1]:11211`, `::1`, `localhost`.
pub fn split_host_port(entry: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("Invalid listen address \"{entry}\"");
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail {
            "" => None,
            t => Some(
                t.strip_prefix(':')
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?,
            ),
        };
        return Ok((host.to_string(), port));
    }
    match entry.matches(':').count() {
        0 => Ok((entry.to_string(), None)),
        1 => {
            let (h, p) = entry.split_once(':').ok_or_else(bad)?;
            Ok((h.to_string(), Some(p.parse().map_err(|_| bad())?)))
        }
        // A bare IPv6 address.
        _ => Ok((entry.to_string(), None)),
    }
}

/// Every address a listen host stands for: an IP literal as is (no
/// resolver call), a name through the resolver.
pub fn resolve_host(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
        Err(_) => Ok((host, port).to_socket_addrs()?.collect()),
    }
}

/// Socket options of a TCP listener. SO_REUSEADDR is always set.
#[derive(Debug, Clone, Copy)]
pub struct ListenOpts {
    /// Passed to listen(2) as is.
    pub backlog: i32,
    /// SO_REUSEPORT, for one listener per worker on the same address.
    pub reuse_port: bool,
    /// IPV6_V6ONLY on IPv6 addresses, so that `::` and `0.0.0.0` can be
    /// bound side by side (memcached's way). Off leaves the system default.
    pub v6_only: bool,
    /// TCP_NODELAY on the listener, inherited by accepted sockets on Linux.
    pub nodelay: bool,
}

/// A non-blocking TCP listener on `addr`.
pub fn bind_tcp(addr: SocketAddr, o: &ListenOpts) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if o.reuse_port {
        s.set_reuse_port(true)?;
    }
    if o.v6_only && addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if o.nodelay {
        s.set_nodelay(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(o.backlog)?;
    s.set_nonblocking(true)?;
    Ok(TcpListener::from_std(s.into()))
}

/// What may be removed at a unix listener's path before binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleSocket {
    /// Only a socket file left by an earlier run, never a regular file
    /// (memcached's rule).
    SocketOnly,
    /// Whatever is there.
    Any,
}

/// A non-blocking unix listener at `path`; permissions stay the caller's.
pub fn bind_unix(path: &Path, stale: StaleSocket) -> io::Result<UnixListener> {
    match stale {
        StaleSocket::Any => {
            let _ = std::fs::remove_file(path);
        }
        StaleSocket::SocketOnly => {
            if let Ok(md) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if md.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
    UnixListener::bind(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_round_trips() {
        for s in [
            "127.0.0.1:11211",
            "[::1]:11211",
            "localhost:1",
            "/tmp/m.sock",
        ] {
            let a = Addr::parse(s).unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(Addr::parse(&a.to_string()), Some(a));
        }
        assert_eq!(
            Addr::parse("[fe80::1]:5"),
            Some(Addr::Tcp {
                host: "fe80::1".into(),
                port: 5
            })
        );
        assert_eq!(Addr::parse("/a b"), Some(Addr::Unix(PathBuf::from("/a b"))));
    }

    #[test]
    fn addr_rejects() {
        for s in ["", "host", ":11211", "[]:1", "h:port", "h:70000", "h:"] {
            assert_eq!(Addr::parse(s), None, "{s}");
        }
    }

    #[test]
    fn listen_entries_split_and_default() {
        assert_eq!(listen_entries(None), vec!["0.0.0.0", "::"]);
        assert_eq!(
            listen_entries(Some(" 127.0.0.1:1 ,,::1")),
            vec!["127.0.0.1:1", "::1"]
        );
    }

    #[test]
    fn host_port_forms() {
        let hp = |s: &str| split_host_port(s).unwrap();
        assert_eq!(hp("1.2.3.4"), ("1.2.3.4".into(), None));
        assert_eq!(hp("1.2.3.4:11211"), ("1.2.3.4".into(), Some(11211)));
        assert_eq!(hp("[::1]"), ("::1".into(), None));
        assert_eq!(hp("[::1]:7"), ("::1".into(), Some(7)));
        assert_eq!(hp("::1"), ("::1".into(), None));
        assert_eq!(hp("localhost"), ("localhost".into(), None));
        for bad in ["[::1", "[::1]x", "[::1]:x", "h:x", "h:99999"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_literal_without_resolver() {
        let v = resolve_host("::1", 9).unwrap();
        assert_eq!(v, vec!["[::1]:9".parse().unwrap()]);
    }

    #[test]
    fn bind_tcp_and_unix() {
        let o = ListenOpts {
            backlog: 16,
            reuse_port: true,
            v6_only: true,
            nodelay: true,
        };
        let l = bind_tcp("127.0.0.1:0".parse().unwrap(), &o).unwrap();
        let port = l.local_addr().unwrap().port();
        // SO_REUSEPORT lets a second listener share the port.
        bind_tcp(SocketAddr::new([127, 0, 0, 1].into(), port), &o).unwrap();

        let dir = std::env::temp_dir().join(format!("mnemo-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        drop(bind_unix(&p, StaleSocket::SocketOnly).unwrap());
        // The stale socket file is replaced...
        drop(bind_unix(&p, StaleSocket::SocketOnly).unwrap());
        // ...a regular file is not, unless asked.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"x").unwrap();
        assert!(bind_unix(&p, StaleSocket::SocketOnly).is_err());
        drop(bind_unix(&p, StaleSocket::Any).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
