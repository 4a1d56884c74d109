//! One blocking connection to one memcached server, TCP or unix socket, with
//! connect and I/O timeouts. Requests are buffered and sent with one write
//! (pipelining); replies are parsed in place from the read buffer. TLS
//! (a [`crate::Tls`]) wraps the same connection; requests and replies are
//! unchanged.

use crate::{Error, Tls};
use mnemo_net::{BlockingStream, Fill, ReadBuf};
use mnemo_protocol::client::{self, Reply};
use std::io::{self, Write};
use std::time::Duration;

pub use mnemo_net::Addr;

const READ_CHUNK: usize = 16 * 1024;

/// A connection. Queue requests with [`Conn::buffer`] (or the encoders in
/// `mnemo_protocol::client` on [`Conn::out`]), send them with
/// [`Conn::flush`], then read one reply element at a time with
/// [`Conn::next_reply`].
pub struct Conn {
    stream: BlockingStream,
    rbuf: ReadBuf,
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
        Conn::connect_with(addr, connect_timeout, io_timeout, None)
    }

    /// [`Conn::connect`], over TLS when `tls` is given: the handshake
    /// completes here, so a refused certificate is this call's error.
    pub fn connect_with(
        addr: &Addr,
        connect_timeout: Duration,
        io_timeout: Option<Duration>,
        tls: Option<&Tls>,
    ) -> Result<Conn, Error> {
        let stream = match tls {
            None => BlockingStream::connect(addr, connect_timeout, io_timeout),
            Some(t) => t.connect(addr, connect_timeout, io_timeout),
        }
        .map_err(Error::from_io)?;
        Ok(Conn {
            stream,
            rbuf: ReadBuf::with_capacity(READ_CHUNK),
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
            match client::parse_reply(self.rbuf.filled()) {
                Ok(Some((r, used))) => return Ok((r, self.rbuf.take(used))),
                Ok(None) => self.fill()?,
                Err(e) => return Err(Error::Protocol(e)),
            }
        }
    }

    /// Read the next binary packet; like [`Conn::next_reply`] for
    /// connections speaking the binary protocol.
    pub fn next_packet(&mut self) -> Result<(client::binary::Packet, &[u8]), Error> {
        loop {
            match client::binary::parse_packet(self.rbuf.filled()) {
                Ok(Some((p, used))) => return Ok((p, self.rbuf.take(used))),
                Ok(None) => self.fill()?,
                Err(e) => return Err(Error::Protocol(e)),
            }
        }
    }

    fn fill(&mut self) -> Result<(), Error> {
        // No limit: a reply is as long as the server makes it, and the
        // io_timeout bounds how long one can take.
        match self
            .rbuf
            .fill_from(&mut self.stream, READ_CHUNK, usize::MAX)
        {
            Ok(Fill::Data { .. }) => Ok(()),
            Ok(Fill::Eof) => Err(Error::from_io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ))),
            // A blocking socket says WouldBlock when its read timeout ran out.
            Ok(Fill::WouldBlock) => Err(Error::Timeout),
            Ok(Fill::Full) => Err(Error::from_io(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "reply larger than the address space",
            ))),
            Err(e) => Err(Error::from_io(e)),
        }
    }

    /// True when no reply bytes are left unread; a connection is only
    /// reused from a pool in that state.
    pub fn is_idle(&self) -> bool {
        self.rbuf.is_empty() && self.out.is_empty()
    }

    /// True if the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.tls().is_some()
    }
}
