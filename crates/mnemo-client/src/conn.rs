//! One blocking connection to one memcached server, TCP or unix socket, with
//! connect and I/O timeouts. Requests are buffered and sent with one write
//! (pipelining); replies are parsed in place from the read buffer.

use crate::Error;
use mnemo_protocol::client::{self, Reply};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

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

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(b),
            Stream::Unix(s) => s.write_all(b),
        }
    }
}

const READ_CHUNK: usize = 16 * 1024;

/// A connection. Queue requests with [`Conn::buffer`] (or the encoders in
/// `mnemo_protocol::client` on [`Conn::out`]), send them with
/// [`Conn::flush`], then read one reply element at a time with
/// [`Conn::next_reply`].
pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    rpos: usize,
    out: Vec<u8>,
}

impl Conn {
    /// Connect with a connect timeout; `io_timeout` bounds every later read
    /// and write (None: block forever).
    pub fn connect(
        addr: &Addr,
        connect_timeout: Duration,
        io_timeout: Option<Duration>,
    ) -> Result<Conn, Error> {
        let stream = match addr {
            Addr::Tcp { host, port } => {
                let mut last = None;
                let mut found = None;
                for sa in (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(Error::from_io)?
                {
                    match TcpStream::connect_timeout(&sa, connect_timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match (found, last) {
                    (Some(s), _) => s,
                    (None, Some(e)) => return Err(Error::from_io(e)),
                    (None, None) => {
                        return Err(Error::from_io(io::Error::new(
                            io::ErrorKind::NotFound,
                            "host resolves to no address",
                        )))
                    }
                };
                // Requests are small and latency-bound; Nagle would hold
                // pipelined batches back.
                s.set_nodelay(true).map_err(Error::from_io)?;
                s.set_read_timeout(io_timeout).map_err(Error::from_io)?;
                s.set_write_timeout(io_timeout).map_err(Error::from_io)?;
                Stream::Tcp(s)
            }
            Addr::Unix(p) => {
                let s = UnixStream::connect(p).map_err(Error::from_io)?;
                s.set_read_timeout(io_timeout).map_err(Error::from_io)?;
                s.set_write_timeout(io_timeout).map_err(Error::from_io)?;
                Stream::Unix(s)
            }
        };
        Ok(Conn {
            stream,
            rbuf: Vec::with_capacity(READ_CHUNK),
            rpos: 0,
            out: Vec::with_capacity(1024),
        })
    }

    /// The output buffer, for the `mnemo_protocol::client::encode_*` helpers.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Queue raw request bytes.
    pub fn buffer(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Send everything queued, in one write.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.out);
        self.out.clear();
        r.map_err(Error::from_io)
    }

    /// Read the next reply element. The reply's ranges index the slice
    /// returned alongside it, which stays valid until the next call.
    pub fn next_reply(&mut self) -> Result<(Reply, &[u8]), Error> {
        loop {
            match client::parse_reply(&self.rbuf[self.rpos..]) {
                Ok(Some((r, used))) => {
                    let start = self.rpos;
                    self.rpos += used;
                    return Ok((r, &self.rbuf[start..start + used]));
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(Error::Protocol(e)),
            }
        }
    }

    /// Read the next binary packet; like [`Conn::next_reply`] for
    /// connections speaking the binary protocol.
    pub fn next_packet(&mut self) -> Result<(client::binary::Packet, &[u8]), Error> {
        loop {
            match client::binary::parse_packet(&self.rbuf[self.rpos..]) {
                Ok(Some((p, used))) => {
                    let start = self.rpos;
                    self.rpos += used;
                    return Ok((p, &self.rbuf[start..start + used]));
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(Error::Protocol(e)),
            }
        }
    }

    fn fill(&mut self) -> Result<(), Error> {
        if self.rpos > 0 {
            // Compact so the buffer does not grow with the connection's age.
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let len = self.rbuf.len();
        if self.rbuf.capacity() - len < READ_CHUNK {
            self.rbuf.reserve(READ_CHUNK);
        }
        self.rbuf.resize(self.rbuf.capacity(), 0);
        let r = self.stream.read(&mut self.rbuf[len..]);
        match r {
            Ok(0) => {
                self.rbuf.truncate(len);
                Err(Error::from_io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )))
            }
            Ok(n) => {
                self.rbuf.truncate(len + n);
                Ok(())
            }
            Err(e) => {
                self.rbuf.truncate(len);
                Err(Error::from_io(e))
            }
        }
    }

    /// True when no reply bytes are left unread; a connection is only
    /// reused from a pool in that state.
    pub fn is_idle(&self) -> bool {
        self.rpos == self.rbuf.len() && self.out.is_empty()
    }
}
