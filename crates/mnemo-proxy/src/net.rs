//! The proxy's use of `mnemo-net`: binding with its listener options, and
//! the read and write loops its client and server connections share over
//! a `Stream` and a `ReadBuf`.

use mnemo_net::addr::{bind_tcp, bind_unix};
use mnemo_net::{Addr, ListenOpts, Listener, ReadBuf, StaleSocket, Stream};
use std::io::{self, Write};

/// How a `drain` ended.
#[derive(PartialEq, Eq)]
pub(crate) enum Drain {
    /// Everything written; the buffer is emptied for reuse.
    Done,
    Blocked,
    Failed,
}

/// Writes `out[*pos..]` until the socket would block or fails; the one
/// write loop for client and server connections. A TLS stream may keep
/// encrypted records after taking all of `out`: those are pushed here too
/// (and on every later call, each writable event marking the connection),
/// and until they are gone the drain is `Blocked`, not `Done`, so that a
/// closing client is not closed before its last answer has left.
pub(crate) fn drain(out: &mut Vec<u8>, pos: &mut usize, sock: &mut Stream) -> Drain {
    while *pos < out.len() {
        match sock.write(&out[*pos..]) {
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
    // Always false for plain streams.
    if sock.wants_write() {
        match sock.flush_tls() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Blocked,
            Err(_) => return Drain::Failed,
        }
    }
    Drain::Done
}

/// How a `fill` ended.
#[derive(PartialEq, Eq)]
pub(crate) enum Fill {
    Drained,
    Eof,
    Error,
}

/// Reads what the socket has into `buf`, which grows as needed (requests
/// are bounded where they are parsed). A short read normally means the
/// socket is drained (a new edge comes with new data), so the read that
/// would only say EAGAIN is skipped; but once the peer's FIN is reported it
/// raises no further edge, and only the read returning 0 shows it, so with
/// `peer_closed` the loop reads on to EOF.
pub(crate) fn fill(buf: &mut ReadBuf, sock: &mut Stream, peer_closed: bool) -> Fill {
    loop {
        match buf.fill_from(sock, 1, usize::MAX) {
            Ok(mnemo_net::Fill::Data { short, .. }) => {
                if short && !peer_closed {
                    return Fill::Drained;
                }
            }
            Ok(mnemo_net::Fill::Eof) => return Fill::Eof,
            // Full cannot happen without a limit; either way nothing more
            // can be read now.
            Ok(mnemo_net::Fill::WouldBlock | mnemo_net::Fill::Full) => return Fill::Drained,
            Err(_) => return Fill::Error,
        }
    }
}

/// Bind a listening socket for the acceptor, the only thread that
/// accepts: no SO_REUSEPORT, so a second proxy on the same address fails
/// to start instead of sharing its clients. A unix socket's path is
/// replaced whatever is there, as nutcracker does.
pub(crate) fn bind(addr: &Addr, backlog: i32) -> io::Result<Listener> {
    match addr {
        Addr::Tcp { .. } => {
            let opts = ListenOpts {
                backlog: backlog.max(1),
                reuse_port: false,
                v6_only: false,
                // Set on each accepted socket instead.
                nodelay: false,
            };
            Ok(Listener::Tcp(bind_tcp(addr.first_socket_addr()?, &opts)?))
        }
        Addr::Unix(p) => Ok(Listener::Unix(bind_unix(p, StaleSocket::Any)?)),
    }
}
