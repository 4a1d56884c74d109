//! One stream type over the socket kinds mnemo speaks on, so that the
//! match over them is written once: [`Stream`] (non-blocking, for mio event
//! loops), [`BlockingStream`] (the client's, with timeouts) and
//! [`Listener`], whose `accept` yields a [`Stream`].
//!
//! TLS (issue #12) goes here as one more variant of each enum, wrapping the
//! TCP socket and its session; `each!` then gains one arm and every caller
//! keeps using `Read`/`Write` unchanged. Keep socket-kind knowledge in this
//! file so that variant has one place to land.

use crate::addr::Addr;
use std::io::{self, IoSlice, Read, Write};
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Runs `$body` with `$s` bound to the socket of whichever variant `$e` is.
macro_rules! each {
    ($ty:ident, $e:expr, $s:ident => $body:expr) => {
        match $e {
            $ty::Tcp($s) => $body,
            $ty::Unix($s) => $body,
        }
    };
}

/// A non-blocking connected socket.
#[derive(Debug)]
pub enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
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

    /// SO_KEEPALIVE on a TCP stream; unix streams need none.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).set_keepalive(on),
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
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(Stream, self, s => s.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(Stream, self, s => s.write(buf))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        each!(Stream, self, s => s.write_vectored(bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        // Sockets buffer nothing in user space.
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        each!(Stream, self, s => s.as_raw_fd())
    }
}

impl mio::event::Source for Stream {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each!(Stream, self, s => s.register(r, t, i))
    }
    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each!(Stream, self, s => s.reregister(r, t, i))
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        each!(Stream, self, s => s.deregister(r))
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
        each!(Listener, self, s => s.as_raw_fd())
    }
}

impl mio::event::Source for Listener {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each!(Listener, self, s => s.register(r, t, i))
    }
    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        each!(Listener, self, s => s.reregister(r, t, i))
    }
    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        each!(Listener, self, s => s.deregister(r))
    }
}

/// A blocking connected socket, for the client (and for connecting before
/// switching to non-blocking, as the bench does).
#[derive(Debug)]
pub enum BlockingStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
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

    /// The same socket, non-blocking, for an event loop.
    pub fn into_nonblocking(self) -> io::Result<Stream> {
        each!(BlockingStream, &self, s => s.set_nonblocking(true))?;
        Ok(match self {
            BlockingStream::Tcp(s) => Stream::Tcp(mio::net::TcpStream::from_std(s)),
            BlockingStream::Unix(s) => Stream::Unix(mio::net::UnixStream::from_std(s)),
        })
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(BlockingStream, self, s => s.read(buf))
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(BlockingStream, self, s => s.write(buf))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        each!(BlockingStream, self, s => s.write_vectored(bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
