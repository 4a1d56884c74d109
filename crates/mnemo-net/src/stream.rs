//! One stream type over the socket kinds mnemo speaks on, so that the
//! match over them is written once: [`Stream`] (non-blocking, for mio event
//! loops), [`BlockingStream`] (the client's, with timeouts) and
//! [`Listener`], whose `accept` yields a [`Stream`].
//!
//! TLS is one more variant of each stream enum, wrapping the TCP socket and
//! its rustls session (`tls_stream` for the non-blocking one, rustls's
//! `StreamOwned` for the blocking one); callers keep using `Read`/`Write`.
//! An event loop must also honour [`Stream::wants_write`] (see
//! `tls_stream`'s notes). Socket-kind knowledge stays in this file.

use crate::addr::Addr;
use crate::tls_stream::TlsStream;
use std::io::{self, IoSlice, Read, Write};
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Runs `$body` with `$s` bound to the socket of whichever variant `$e` is
/// (for TLS, the TCP socket under the session).
macro_rules! each {
    ($ty:ident, $e:expr, $s:ident => $body:expr) => {
        match $e {
            $ty::Tcp($s) => $body,
            $ty::Unix($s) => $body,
            $ty::Tls(t) => {
                let $s = &t.sock;
                $body
            }
        }
    };
}

/// `each!` for [`Listener`], which has no TLS variant: TLS is decided per
/// listener by the server when it wraps what `accept` returns.
macro_rules! each_listener {
    ($e:expr, $s:ident => $body:expr) => {
        match $e {
            Listener::Tcp($s) => $body,
            Listener::Unix($s) => $body,
        }
    };
}

/// Like `each!`, with mutable access to the socket.
macro_rules! each_mut {
    ($ty:ident, $e:expr, $s:ident => $body:expr) => {
        match $e {
            $ty::Tcp($s) => $body,
            $ty::Unix($s) => $body,
            $ty::Tls(t) => {
                let $s = &mut t.sock;
                $body
            }
        }
    };
}

/// A non-blocking connected socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
    /// Boxed: a rustls session is large and plain streams should not pay
    /// for it in every slot.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Starts a non-blocking connect to `addr` (a TCP host's first
    /// address); completion shows as writability, then [`Stream::take_error`]
    /// and [`Stream::is_connected`] tell the outcome. TCP gets TCP_NODELAY.
    pub fn connect(addr: &Addr) -> io::Result<Stream> {
        match addr {
            Addr::Tcp { .. } => {
                let t = mio::net::TcpStream::connect(addr.first_socket_addr()?)?;
                // Requests and replies are written whole; Nagle only delays.
                let _ = t.set_nodelay(true);
                Ok(Stream::Tcp(t))
            }
            Addr::Unix(p) => Ok(Stream::Unix(mio::net::UnixStream::connect(p)?)),
        }
    }

    /// Wraps a TCP stream (just accepted) in a server-side TLS session.
    pub fn tls_server(tcp: Stream, config: Arc<rustls::ServerConfig>) -> io::Result<Stream> {
        let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Stream::tls_wrap(tcp, rustls::Connection::Server(conn))
    }

    /// Wraps a TCP stream (connected or connecting, see
    /// [`Stream::connect`]) in a client-side TLS session checking the
    /// server's certificate against `name` (see [`crate::tls::server_name`]).
    /// The ClientHello goes out with the first write or flush.
    pub fn tls_client(
        tcp: Stream,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Stream> {
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        Stream::tls_wrap(tcp, rustls::Connection::Client(conn))
    }

    fn tls_wrap(tcp: Stream, conn: rustls::Connection) -> io::Result<Stream> {
        match tcp {
            Stream::Tcp(s) => Ok(Stream::Tls(Box::new(TlsStream::new(s, conn)))),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS runs over TCP streams only",
            )),
        }
    }

    /// Before closing: a TLS stream sends close_notify (best effort), so
    /// the peer can tell the end from a truncation; plain streams: nothing.
    pub fn close_notify(&mut self) {
        if let Stream::Tls(t) = self {
            t.close_notify();
        }
    }

    /// True for a TLS stream.
    #[inline]
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// True while a TLS stream holds encrypted bytes the socket has not
    /// taken yet: keep writable interest and call [`Stream::flush_tls`]
    /// when writable. Always false for plain streams.
    #[inline]
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(t) => t.wants_write(),
            _ => false,
        }
    }

    /// Sends what a TLS stream holds (`WouldBlock` if some remains);
    /// nothing to do for plain streams.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(t) => t.flush_tls(),
            _ => Ok(()),
        }
    }

    /// The TLS session of a TLS stream.
    pub fn tls(&self) -> Option<&TlsStream> {
        match self {
            Stream::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// SO_KEEPALIVE on a TCP stream; unix streams need none.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).set_keepalive(on),
            Stream::Tls(t) => socket2::SockRef::from(&t.sock).set_keepalive(on),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// The pending socket error (SO_ERROR), e.g. of a failed connect.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        each!(Stream, self, s => s.take_error())
    }

    /// True once a connect has completed (the peer address is known).
    pub fn is_connected(&self) -> bool {
        each!(Stream, self, s => s.peer_addr().is_ok())
    }
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(t) => t.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            // Sockets buffer nothing in user space.
            Stream::Tcp(_) | Stream::Unix(_) => Ok(()),
            Stream::Tls(t) => t.flush(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        each!(Stream, self, s => s.as_raw_fd())
    }
}

impl mio::event::Source for Stream {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each_mut!(Stream, self, s => s.register(r, t, i))
    }
    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each_mut!(Stream, self, s => s.reregister(r, t, i))
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        each_mut!(Stream, self, s => s.deregister(r))
    }
}

/// A non-blocking listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl Listener {
    /// Accepts one connection; `WouldBlock` when none is waiting. Accepted
    /// sockets are non-blocking and keep the listener's inherited options.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        each_listener!(self, s => s.as_raw_fd())
    }
}

impl mio::event::Source for Listener {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each_listener!(self, s => s.register(r, t, i))
    }
    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each_listener!(self, s => s.reregister(r, t, i))
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        each_listener!(self, s => s.deregister(r))
    }
}

/// A blocking connected socket, for the client (and for connecting before
/// switching to non-blocking, as the bench does).
#[derive(Debug)]
pub enum BlockingStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
    /// A client-side TLS session; boxed as in [`Stream`].
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl BlockingStream {
    /// Connects within `connect_timeout` (TCP: each address the host
    /// resolves to in turn, with TCP_NODELAY); `io_timeout` bounds every
    /// later read and write (None: block forever).
    pub fn connect(
        addr: &Addr,
        connect_timeout: Duration,
        io_timeout: Option<Duration>,
    ) -> io::Result<BlockingStream> {
        let s = match addr {
            Addr::Tcp { host, port } => {
                let mut last = None;
                let mut found = None;
                for sa in (host.as_str(), *port).to_socket_addrs()? {
                    match std::net::TcpStream::connect_timeout(&sa, connect_timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match (found, last) {
                    (Some(s), _) => s,
                    (None, Some(e)) => return Err(e),
                    (None, None) => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            "host resolves to no address",
                        ))
                    }
                };
                // Requests are small and latency-bound; Nagle would hold
                // pipelined batches back.
                s.set_nodelay(true)?;
                BlockingStream::Tcp(s)
            }
            Addr::Unix(p) => BlockingStream::Unix(std::os::unix::net::UnixStream::connect(p)?),
        };
        each!(BlockingStream, &s, x => {
            x.set_read_timeout(io_timeout)?;
            x.set_write_timeout(io_timeout)?;
        });
        Ok(s)
    }

    /// Connects as [`BlockingStream::connect`] does (TCP only), then runs
    /// the TLS handshake to completion within `io_timeout`, so that a
    /// refused certificate shows here. `name`: what the server's
    /// certificate must name; None: the host of `addr`.
    pub fn connect_tls(
        addr: &Addr,
        connect_timeout: Duration,
        io_timeout: Option<Duration>,
        config: Arc<rustls::ClientConfig>,
        name: Option<rustls::pki_types::ServerName<'static>>,
    ) -> io::Result<BlockingStream> {
        let Addr::Tcp { host, .. } = addr else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS runs over TCP only",
            ));
        };
        let name = match name {
            Some(n) => n,
            None => crate::tls::server_name(None, host)?,
        };
        let BlockingStream::Tcp(mut sock) =
            BlockingStream::connect(addr, connect_timeout, io_timeout)?
        else {
            return Err(io::Error::other("TCP address gave a non-TCP stream"));
        };
        let mut conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(BlockingStream::Tls(Box::new(rustls::StreamOwned::new(
            conn, sock,
        ))))
    }

    /// The same socket, non-blocking, for an event loop.
    pub fn into_nonblocking(self) -> io::Result<Stream> {
        each!(BlockingStream, &self, s => s.set_nonblocking(true))?;
        Ok(match self {
            BlockingStream::Tcp(s) => Stream::Tcp(mio::net::TcpStream::from_std(s)),
            BlockingStream::Unix(s) => Stream::Unix(mio::net::UnixStream::from_std(s)),
            BlockingStream::Tls(t) => {
                let (conn, sock) = t.into_parts();
                Stream::Tls(Box::new(TlsStream::new(
                    mio::net::TcpStream::from_std(sock),
                    rustls::Connection::Client(conn),
                )))
            }
        })
    }

    /// The TLS session of a TLS stream.
    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match self {
            BlockingStream::Tls(t) => Some(&t.conn),
            _ => None,
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Tcp(s) => s.read(buf),
            BlockingStream::Unix(s) => s.read(buf),
            BlockingStream::Tls(t) => match t.read(buf) {
                // A peer closing TCP without close_notify: the end of the
                // stream, as for a plain socket.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Tcp(s) => s.write(buf),
            BlockingStream::Unix(s) => s.write(buf),
            BlockingStream::Tls(t) => t.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            BlockingStream::Tcp(s) => s.write_vectored(bufs),
            BlockingStream::Unix(s) => s.write_vectored(bufs),
            BlockingStream::Tls(t) => t.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Tcp(_) | BlockingStream::Unix(_) => Ok(()),
            BlockingStream::Tls(t) => t.flush(),
        }
    }
}

impl AsRawFd for BlockingStream {
    fn as_raw_fd(&self) -> RawFd {
        each!(BlockingStream, self, s => s.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{bind_tcp, bind_unix, ListenOpts, StaleSocket};
    use mio::{Events, Interest, Poll, Token};

    fn echo_once(l: Listener) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut poll = Poll::new().unwrap();
            let mut l = l;
            poll.registry()
                .register(&mut l, Token(0), Interest::READABLE)
                .unwrap();
            let mut ev = Events::with_capacity(4);
            let mut s = loop {
                match l.accept() {
                    Ok(s) => break s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        poll.poll(&mut ev, None).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            poll.registry()
                .register(&mut s, Token(1), Interest::READABLE)
                .unwrap();
            let mut b = [0u8; 5];
            let mut got = 0;
            while got < 5 {
                match s.read(&mut b[got..]) {
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        poll.poll(&mut ev, None).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            // Small enough for the socket buffer: one non-blocking write.
            let n = s
                .write_vectored(&[IoSlice::new(&b[..2]), IoSlice::new(&b[2..])])
                .unwrap();
            assert_eq!(n, 5);
        })
    }

    fn round_trip(addr: &Addr) {
        let mut c = BlockingStream::connect(addr, Duration::from_secs(2), None).unwrap();
        assert!(c.as_raw_fd() >= 0);
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
    }

    #[test]
    fn tcp_and_unix_round_trip() {
        let o = ListenOpts {
            backlog: 8,
            reuse_port: false,
            v6_only: false,
            nodelay: true,
        };
        let l = bind_tcp("127.0.0.1:0".parse().unwrap(), &o).unwrap();
        let port = l.local_addr().unwrap().port();
        let h = echo_once(Listener::Tcp(l));
        round_trip(&Addr::Tcp {
            host: "127.0.0.1".into(),
            port,
        });
        h.join().unwrap();

        let p = std::env::temp_dir().join(format!("mnemo-net-stream-{}", std::process::id()));
        let l = bind_unix(&p, StaleSocket::Any).unwrap();
        let h = echo_once(Listener::Unix(l));
        round_trip(&Addr::Unix(p.clone()));
        h.join().unwrap();
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn nonblocking_connect_completes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut s = Stream::connect(&Addr::Tcp {
            host: "127.0.0.1".into(),
            port,
        })
        .unwrap();
        s.set_keepalive(true).unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut s, Token(7), Interest::WRITABLE)
            .unwrap();
        let mut ev = Events::with_capacity(4);
        poll.poll(&mut ev, Some(Duration::from_secs(2))).unwrap();
        assert!(ev.iter().any(|e| e.token() == Token(7)));
        assert!(s.take_error().unwrap().is_none());
        assert!(s.is_connected());
    }

    #[test]
    fn connect_refused_is_an_error() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = Addr::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(BlockingStream::connect(&a, Duration::from_secs(1), None).is_err());
        let missing = Addr::Unix("/nonexistent/mnemo.sock".into());
        assert!(BlockingStream::connect(&missing, Duration::from_secs(1), None).is_err());
    }
}
