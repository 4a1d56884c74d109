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

use std::cell::RefCell;
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

/// Ciphertext goes from the socket into this per-thread buffer and from
/// there into the session, rather than through rustls's `read_tls` on the
/// socket: that reads at most 4 KB at a time, so telling a drained socket
/// would cost a second read returning EAGAIN on every request. Here one
/// `read` of up to the caller's free space answers both. Per thread, so
/// idle connections hold none of it and nothing is zeroed per read.
const CHUNK: usize = 32 * 1024;

thread_local! {
    static CIPHERTEXT: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// What became of the plaintext the session holds.
enum Drained {
    /// All of it copied (or the caller's buffer is full).
    More,
    /// The stream ended (close_notify, or TCP closed without it).
    End,
}

impl TlsStream {
    /// Copies buffered plaintext into `buf[*n..]`.
    fn drain(&mut self, buf: &mut [u8], n: &mut usize) -> io::Result<Drained> {
        while *n < buf.len() {
            match self.conn.reader().read(&mut buf[*n..]) {
                // close_notify received: end of stream.
                Ok(0) => return Ok(Drained::End),
                Ok(k) => *n += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // TCP closed without close_notify: reported as the end of
                // the stream, as a plain socket would.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Drained::End),
                Err(e) => return Err(e),
            }
        }
        Ok(Drained::More)
    }

    /// Hands `cipher` (empty: the socket's EOF) to the session, copying
    /// the plaintext it yields into `buf[*n..]` as it goes.
    ///
    /// Never more ciphertext than the caller has room for is read, and a
    /// record's plaintext is smaller than the record, so what is left in
    /// the session once `buf` is full is at most one record's plaintext
    /// (the one a partial record buffered earlier completed): never over
    /// rustls's 16 KB limit, past which it would refuse input.
    fn feed(&mut self, mut cipher: &[u8], buf: &mut [u8], n: &mut usize) -> io::Result<Drained> {
        let eof = cipher.is_empty();
        loop {
            match self.conn.read_tls(&mut cipher) {
                // After close_notify the session takes nothing more.
                Ok(0) if !eof => cipher = &[],
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(self.fail(e));
            }
            if let Drained::End = self.drain(buf, n)? {
                return Ok(Drained::End);
            }
            if cipher.is_empty() {
                break;
            }
        }
        // Handshake replies, key updates, alerts.
        self.push()?;
        Ok(if eof { Drained::End } else { Drained::More })
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        if let Drained::End = self.drain(buf, &mut n)? {
            return Ok(n);
        }
        while n < buf.len() {
            let want = (buf.len() - n).min(CHUNK);
            let step: io::Result<(Drained, bool)> = CIPHERTEXT.with(|c| {
                let mut c = c.borrow_mut();
                let tmp = &mut c[..want];
                let k = loop {
                    match self.sock.read(tmp) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        r => break r?,
                    }
                };
                Ok((self.feed(&tmp[..k], buf, &mut n)?, k < want))
            });
            match step {
                // The end of the stream: what was read, then 0.
                Ok((Drained::End, _)) => return Ok(n),
                // A short read emptied the socket.
                Ok((Drained::More, true)) => break,
                Ok((Drained::More, false)) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            // The socket is empty and no whole record arrived.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
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
