//! Socket plumbing shared by client and server connections: the read
//! buffer that requests and replies are parsed in place from, the one write
//! loop, the slot table that mio tokens index, the TCP/unix stream and
//! listener types, and binding.

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use mnemo_client::Addr;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;

/// How a `drain` ended.
#[derive(PartialEq, Eq)]
pub(crate) enum Drain {
    /// Everything written; the buffer is emptied for reuse.
    Done,
    Blocked,
    Failed,
}

/// Writes `out[*pos..]` until the socket would block or fails; the one
/// write loop for client and server connections.
pub(crate) fn drain(
    out: &mut Vec<u8>,
    pos: &mut usize,
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Drain {
    while *pos < out.len() {
        match write(&out[*pos..]) {
            // A socket that takes nothing of a non-empty buffer is gone;
            // retrying would spin.
            Ok(0) => return Drain::Failed,
            Ok(n) => *pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Drain::Failed,
        }
    }
    out.clear();
    *pos = 0;
    Drain::Done
}

/// How a `Buf::fill` ended.
#[derive(PartialEq, Eq)]
pub(crate) enum Fill {
    Drained,
    Eof,
    Error,
}

/// A read buffer: bytes live in `data[start..end]`; reads go straight into
/// the spare tail, so requests and replies are parsed where they landed.
#[derive(Default)]
pub(crate) struct Buf {
    pub(crate) data: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Buf {
    pub(crate) fn with_capacity(n: usize) -> Buf {
        Buf {
            data: vec![0; n],
            start: 0,
            end: 0,
        }
    }
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = (self.data.len() * 2).max(4096);
                self.data.resize(n, 0);
            }
        }
        &mut self.data[self.end..]
    }
    pub(crate) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Reads what the socket has. A short read normally means the socket
    /// is drained (a new edge comes with new data), so the read that would
    /// only say EAGAIN is skipped; but once the peer's FIN is reported it
    /// raises no further edge, and only the read returning 0 shows it, so
    /// with `peer_closed` the loop reads on to EOF.
    pub(crate) fn fill(
        &mut self,
        peer_closed: bool,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Fill {
        loop {
            let spare = self.spare();
            let room = spare.len();
            match read(spare) {
                Ok(0) => return Fill::Eof,
                Ok(n) => {
                    self.end += n;
                    if n < room && !peer_closed {
                        return Fill::Drained;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fill::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Fill::Error,
            }
        }
    }
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

/// Minimal slab: indices are stable, freed ones are reused.
pub(crate) struct Slab<T> {
    pub(crate) items: Vec<Option<T>>,
    pub(crate) free: Vec<usize>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    pub(crate) fn insert(&mut self, t: T) -> usize {
        if let Some(i) = self.free.pop() {
            self.items[i] = Some(t);
            i
        } else {
            self.items.push(Some(t));
            self.items.len() - 1
        }
    }
    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        let t = self.items.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.items.get(i)?.as_ref()
    }
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i)?.as_mut()
    }
    pub(crate) fn indices(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| self.items[i].is_some())
            .collect()
    }
}

pub(crate) enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    pub(crate) fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(b),
            Sock::Unix(s) => s.read(b),
        }
    }
    pub(crate) fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(b),
            Sock::Unix(s) => s.write(b),
        }
    }
    pub(crate) fn register(&mut self, r: &Registry, t: Token) -> io::Result<()> {
        let i = Interest::READABLE | Interest::WRITABLE;
        match self {
            Sock::Tcp(s) => r.register(s, t, i),
            Sock::Unix(s) => r.register(s, t, i),
        }
    }
    pub(crate) fn deregister(&mut self, r: &Registry) {
        let _ = match self {
            Sock::Tcp(s) => r.deregister(s),
            Sock::Unix(s) => r.deregister(s),
        };
    }
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }
    pub(crate) fn connected(&self) -> bool {
        match self {
            Sock::Tcp(s) => s.peer_addr().is_ok(),
            Sock::Unix(s) => s.peer_addr().is_ok(),
        }
    }
}

pub(crate) enum Lsn {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Bind a listening socket (for the acceptor, the only thread that
/// accepts: no SO_REUSEPORT, so a second proxy on the same address fails
/// to start instead of sharing its clients).
pub(crate) fn bind(addr: &Addr, backlog: i32) -> io::Result<Lsn> {
    match addr {
        Addr::Tcp { host, port } => {
            let sa = (host.as_str(), *port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            let s = socket2::Socket::new(
                socket2::Domain::for_address(sa),
                socket2::Type::STREAM,
                None,
            )?;
            s.set_reuse_address(true)?;
            s.set_nonblocking(true)?;
            s.bind(&sa.into())?;
            s.listen(backlog.max(1))?;
            Ok(Lsn::Tcp(TcpListener::from_std(s.into())))
        }
        Addr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            Ok(Lsn::Unix(UnixListener::bind(p)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buf_compacts_and_grows() {
        let mut b = Buf::with_capacity(8);
        b.spare()[..8].copy_from_slice(b"abcdefgh");
        b.end += 8;
        b.consume(6);
        assert_eq!(b.filled(), b"gh");
        // Full: the unread tail moves to the front.
        assert_eq!(b.spare().len(), 6);
        assert_eq!(b.filled(), b"gh");
        b.spare()[..6].copy_from_slice(b"ijklmn");
        b.end += 6;
        // Full with nothing consumed: it grows.
        assert!(b.spare().len() >= 8);
        assert_eq!(b.filled(), b"ghijklmn");
        b.consume(8);
        assert_eq!((b.start, b.end), (0, 0));
    }
}
