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

#[cfg(test)]
mod tests {
    use super::*;
    use mnemo_net::tls::{self, rustls};
    use mnemo_net::{ClientTlsOptions, ServerTls, ServerTlsOptions};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// Moves the client side of a handshake or of data along: sends what
    /// it has, takes what arrived (plaintext appended to `got`).
    fn pump(c: &mut rustls::ClientConnection, sock: &mut TcpStream, got: &mut Vec<u8>) {
        while c.wants_write() {
            if c.write_tls(sock).is_err() {
                break;
            }
        }
        while let Ok(n) = c.read_tls(sock) {
            if n == 0 {
                break;
            }
            c.process_new_packets().expect("client TLS");
        }
        let mut b = [0u8; 65536];
        while let Ok(n) = c.reader().read(&mut b) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
    }

    /// A TLS stream holds encrypted records a full socket did not take:
    /// `drain` must say Blocked until they are gone, or a closing client
    /// is closed before its last answer (and nothing sends the rest).
    #[test]
    fn drain_is_blocked_while_tls_records_wait() {
        let dir = std::env::temp_dir().join(format!("mnemo-proxy-drain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.join("c.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("c.key"), ck.key_pair.serialize_pem()).unwrap();
        let server = ServerTls::new(ServerTlsOptions {
            chain_cert: Some(dir.join("c.pem")),
            key: Some(dir.join("c.key")),
            ..Default::default()
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let ccfg = tls::client_config(&ClientTlsOptions {
            insecure_skip_verify: true,
            ..Default::default()
        })
        .unwrap();

        // Small buffers on both ends, so a few KB fill the path.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let cs = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        cs.set_recv_buffer_size(4096).unwrap();
        cs.connect(&l.local_addr().unwrap().into()).unwrap();
        let mut csock: TcpStream = cs.into();
        csock.set_nonblocking(true).unwrap();
        let (ss, _) = l.accept().unwrap();
        socket2::SockRef::from(&ss)
            .set_send_buffer_size(4096)
            .unwrap();
        ss.set_nonblocking(true).unwrap();
        let mut srv = server
            .accept(Stream::Tcp(mio::net::TcpStream::from_std(ss)))
            .unwrap();
        let mut cli =
            rustls::ClientConnection::new(ccfg, tls::server_name(None, "127.0.0.1").unwrap())
                .unwrap();
        let mut got = Vec::new();
        let handshaking = |s: &Stream| s.tls().is_some_and(|t| t.is_handshaking());
        for _ in 0..2000 {
            if !cli.is_handshaking() && !handshaking(&srv) {
                break;
            }
            pump(&mut cli, &mut csock, &mut got);
            let mut b = [0u8; 64];
            let _ = srv.read(&mut b);
            let _ = srv.flush_tls();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!cli.is_handshaking() && !handshaking(&srv));
        pump(&mut cli, &mut csock, &mut got);
        let _ = srv.flush_tls();

        // Taken whole by one write (under rustls's 64 KB), more than the
        // path holds: records stay behind.
        let want = 48 * 1024;
        let mut out = vec![b'x'; want];
        let mut pos = 0;
        assert!(drain(&mut out, &mut pos, &mut srv) == Drain::Blocked);
        assert!(srv.wants_write());
        let mut done = false;
        for _ in 0..5000 {
            pump(&mut cli, &mut csock, &mut got);
            if drain(&mut out, &mut pos, &mut srv) == Drain::Done {
                done = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(done && !srv.wants_write());
        for _ in 0..1000 {
            if got.len() >= want {
                break;
            }
            pump(&mut cli, &mut csock, &mut got);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.len(), want);
        assert!(got.iter().all(|&b| b == b'x'));
    }
}
