//! A rustls session over a non-blocking mio TCP socket, the `Tls` variant
//! of [`crate::Stream`].
//!
//! The handshake is not a separate phase: it advances inside `read` and
//! `write`, so callers keep their ordinary read/write loop. Two things
//! differ from a plain socket, and callers with an event loop must know:
//!
//! - A `write` hands plaintext to the session, which encrypts it and
//!   sends what the socket takes; what it does not take stays in the
//!   session. [`TlsStream::wants_write`] says so, and the loop keeps
//!   writable interest and calls [`TlsStream::flush_tls`] when the socket
//!   is writable again. A `write` refuses new plaintext (`WouldBlock`)
//!   while older records are still unsent, so that buffer stays bounded.
//! - A `read` shorter than the caller's buffer still means the socket was
//!   drained (or closed), as for a plain socket: `read` keeps feeding the
//!   session from the socket until it returns `WouldBlock` or the caller's
//!   buffer is full. Loops relying on edge-triggered readiness keep
//!   working.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};

/// The inner error of an `InvalidData` error returned when the peer broke
/// the TLS protocol before the handshake completed (garbage instead of a
/// ClientHello, an unacceptable certificate): memcached counts these as
/// `ssl_handshake_errors`. See [`is_handshake_error`].
#[derive(Debug)]
pub struct HandshakeError(pub rustls::Error);

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS handshake failed: {}", self.0)
    }
}

impl std::error::Error for HandshakeError {}

/// True if `e` is a failed TLS handshake (as opposed to a socket error or
/// a protocol error after the handshake).
pub fn is_handshake_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<HandshakeError>())
}

/// A TLS session (server or client side) over a non-blocking TCP socket.
pub struct TlsStream {
    pub(crate) sock: mio::net::TcpStream,
    conn: rustls::Connection,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsStream {
    pub(crate) fn new(sock: mio::net::TcpStream, conn: rustls::Connection) -> TlsStream {
        TlsStream { sock, conn }
    }

    /// True while encrypted bytes wait for the socket to take them.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// True until the handshake has completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The rustls session (peer certificates, negotiated version...).
    pub fn connection(&self) -> &rustls::Connection {
        &self.conn
    }

    /// Sends pending encrypted bytes; `WouldBlock` if some remain.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Tells the peer the stream ends (close_notify) and sends what the
    /// socket takes now; for a close that follows at once.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_tls();
    }

    /// `flush_tls` where a full socket is not an error: what remains is
    /// sent on the next writable event.
    fn push(&mut self) -> io::Result<()> {
        match self.flush_tls() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            r => r,
        }
    }

    fn fail(&mut self, e: rustls::Error) -> io::Error {
        let handshaking = self.conn.is_handshaking();
        // rustls queued an alert telling the peer why; best effort.
        let _ = self.push();
        if handshaking {
            io::Error::new(io::ErrorKind::InvalidData, HandshakeError(e))
        } else {
            io::Error::new(io::ErrorKind::InvalidData, e)
        }
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        loop {
            while n < buf.len() {
                match self.conn.reader().read(&mut buf[n..]) {
                    // close_notify received: end of stream.
                    Ok(0) => return Ok(n),
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // TCP closed without close_notify: report it as the end
                    // of the stream, as a plain socket would.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(n),
                    Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
                }
            }
            if n == buf.len() {
                return Ok(n);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => {
                    // Socket EOF: rustls now answers the reader with the
                    // buffered rest, then Ok(0) or UnexpectedEof.
                    if let Err(e) = self.conn.process_new_packets() {
                        return if n > 0 { Ok(n) } else { Err(self.fail(e)) };
                    }
                    return match self.conn.reader().read(&mut buf[n..]) {
                        Ok(k) => Ok(n + k),
                        Err(_) => Ok(n),
                    };
                }
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        return if n > 0 { Ok(n) } else { Err(self.fail(e)) };
                    }
                    // Handshake replies, key updates, alerts.
                    if let Err(e) = self.push() {
                        return if n > 0 { Ok(n) } else { Err(e) };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if n > 0 { Ok(n) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        // Older records first; while they wait, take no more plaintext.
        self.flush_tls()?;
        let n = self.conn.writer().write_vectored(bufs)?;
        if n == 0 {
            // The session's buffer limit (handshake still running).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.push()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
