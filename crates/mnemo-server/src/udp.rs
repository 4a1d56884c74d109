//! UDP (`-U`): memcached's datagram framing over the text and meta
//! protocols.
//!
//! Every datagram starts with an 8-byte frame header: request id, sequence
//! number, datagram count, reserved (big-endian u16s). A request must fit
//! in one datagram; the reply echoes the request id and is split over as
//! many numbered datagrams as it needs, each at most
//! [`UDP_MAX_PAYLOAD`] bytes including its header (memcached's
//! UDP_MAX_PAYLOAD_SIZE).
//!
//! One thread per bound socket serves all datagrams: each is independent,
//! so there is no connection state to share, and UDP traffic is rare next
//! to TCP in memcached deployments (it is off by default). The requests in
//! a datagram run through the same dispatch as a connection's
//! ([`dispatch::run_datagram`]); this module only frames and sends.

use crate::dispatch::{self, Ctx};
use crate::listener::resolve;
use crate::out::Out;
use crate::settings::{bind_port, Settings};
use crate::shared::Shared;
use crate::stats::WorkerStats;
use mnemo_net::addr::{listen_entries, split_host_port};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Largest datagram memcached sends, header included.
pub const UDP_MAX_PAYLOAD: usize = 1400;
const FRAME_HEADER: usize = 8;
/// memcached's UDP read buffer.
const UDP_READ_BUFFER: usize = 65536;
/// How often an idle thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

/// Binds the UDP sockets for `-U` on the same interfaces as TCP.
pub fn bind_all(s: &Settings) -> Result<Vec<UdpSocket>, String> {
    let mut out = Vec::new();
    let Some(port) = bind_port(s.udp_port).filter(|_| s.socket_path.is_none()) else {
        return Ok(out);
    };
    for entry in &listen_entries(s.inter.as_deref()) {
        let (host, _) = split_host_port(entry)?;
        for a in resolve(&host, port)? {
            match UdpSocket::bind(a) {
                Ok(sock) => out.push(sock),
                Err(_) if s.inter.is_none() && a.is_ipv6() => {}
                Err(e) => return Err(format!("failed to listen on UDP port {}: {e}", s.udp_port)),
            }
        }
    }
    Ok(out)
}

/// Starts one serving thread per socket. Thread `i` writes the counters
/// `shared.workers[threads + i]` (main allots them), so `stats` includes
/// UDP traffic while every counter keeps a single writer.
pub fn spawn_all(
    socks: Vec<UdpSocket>,
    shared: &Arc<Shared>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, sock) in socks.into_iter().enumerate() {
        sock.set_read_timeout(Some(STOP_POLL))?;
        let shared = Arc::clone(shared);
        let ws = shared
            .workers
            .get(shared.settings.threads + i)
            .cloned()
            .unwrap_or_default();
        handles.push(
            std::thread::Builder::new()
                .name(format!("mnemo-udp-{i}"))
                .spawn(move || serve(sock, shared, ws))?,
        );
    }
    Ok(handles)
}

fn serve(sock: UdpSocket, shared: Arc<Shared>, ws: Arc<WorkerStats>) {
    let ts = shared.engine.new_thread_stats();
    let mut buf = vec![0u8; UDP_READ_BUFFER];
    // Datagrams are framed from plain bytes: values are copied.
    let mut out = Out::new(false);
    let mut dgram = Vec::with_capacity(UDP_MAX_PAYLOAD);
    let fd = sock.as_raw_fd();
    while !shared.stopping.load(Relaxed) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => continue,
        };
        // memcached drops datagrams too short to hold a frame header.
        if n <= FRAME_HEADER {
            continue;
        }
        ws.bytes_read.add(n as u64);
        // memcached drops requests announced as several datagrams.
        if buf[4] != 0 || buf[5] != 1 {
            continue;
        }
        let req_id = [buf[0], buf[1]];
        let mut ctx = Ctx {
            shared: &shared,
            ts: &ts,
            ws: &ws,
            fd,
            pending_output: false,
        };
        dispatch::run_datagram(&mut ctx, &buf[FRAME_HEADER..n], &mut out, |reply| {
            send_reply(&sock, peer, req_id, reply, &mut dgram, &ws);
        });
    }
}

/// Sends one reply as its own numbered sequence of datagrams, as memcached
/// sends each of its response objects.
fn send_reply(
    sock: &UdpSocket,
    peer: SocketAddr,
    req_id: [u8; 2],
    reply: &[u8],
    dgram: &mut Vec<u8>,
    ws: &WorkerStats,
) {
    if reply.is_empty() {
        return;
    }
    let per = UDP_MAX_PAYLOAD - FRAME_HEADER;
    let total = reply.len().div_ceil(per).min(u16::MAX as usize) as u16;
    for (seq, chunk) in reply.chunks(per).enumerate().take(total as usize) {
        dgram.clear();
        dgram.extend_from_slice(&req_id);
        dgram.extend_from_slice(&(seq as u16).to_be_bytes());
        dgram.extend_from_slice(&total.to_be_bytes());
        dgram.extend_from_slice(&[0, 0]);
        dgram.extend_from_slice(chunk);
        if let Ok(w) = sock.send_to(dgram, peer) {
            ws.bytes_written.add(w as u64);
        }
    }
}
