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
//! As in memcached, every UDP socket has one descriptor per worker thread
//! (`-t`; the bound one and duplicates of it), each served by its own
//! thread, and `stats conns` lists each descriptor (memcached's
//! `num_threads_per_udp` connections per socket). Datagrams are
//! independent, so no state is shared between those threads. The requests
//! in a datagram run through the same dispatch as a connection's
//! ([`dispatch::run_datagram`]); this module only frames and sends.

use crate::dispatch::{self, Ctx};
use crate::listener::{addr_text, resolve};
use crate::out::Out;
use crate::settings::{bind_port, Settings};
use crate::shared::{ConnInfo, ConnState, Shared};
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

/// Binds the UDP sockets for `-U` on the same interfaces as TCP and gives
/// each `-t` descriptors (itself and duplicates), one per serving thread.
/// Duplicating here, before any client is accepted, numbers them right
/// after the TCP listeners, where memcached's are.
pub fn bind_all(s: &Settings) -> Result<Vec<UdpSocket>, String> {
    let mut out = Vec::new();
    let Some(port) = bind_port(s.udp_port).filter(|_| s.socket_path.is_none()) else {
        return Ok(out);
    };
    let failed = |e: io::Error| format!("failed to listen on UDP port {}: {e}", s.udp_port);
    for entry in &listen_entries(s.inter.as_deref()) {
        // TCP's `notls:` marker means nothing to UDP.
        let (_, entry) = crate::tls::split_notls(entry);
        let (host, _) = split_host_port(entry)?;
        for a in resolve(&host, port)? {
            match UdpSocket::bind(a) {
                Ok(sock) => {
                    // A socket option, so every duplicate has it too.
                    sock.set_read_timeout(Some(STOP_POLL)).map_err(failed)?;
                    let dups = (1..s.threads.max(1))
                        .map(|_| sock.try_clone())
                        .collect::<io::Result<Vec<_>>>()
                        .map_err(failed)?;
                    out.push(sock);
                    out.extend(dups);
                }
                Err(_) if s.inter.is_none() && a.is_ipv6() => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }
    Ok(out)
}

/// Lists every descriptor in `stats conns` (memcached counts them as
/// connections, like its listeners) and starts one serving thread per
/// descriptor. Thread `i` writes the counters `shared.workers[threads +
/// i]` (main allots them), so `stats` includes UDP traffic while every
/// counter keeps a single writer.
pub fn spawn_all(
    socks: Vec<UdpSocket>,
    shared: &Arc<Shared>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let now = shared.engine.clock().now();
    let mut infos = Vec::with_capacity(socks.len());
    for sock in &socks {
        let fd = sock.as_raw_fd();
        let addr = sock
            .local_addr()
            .map(|a| addr_text("udp", &a))
            .unwrap_or_else(|_| "udp:?".into());
        let info = Arc::new(ConnInfo::udp(fd, addr, now));
        shared.conns.lock().insert(fd, Arc::clone(&info));
        infos.push(info);
    }
    let n = socks.len();
    shared.listeners.fetch_add(n as u32, Relaxed);
    shared.global.total_conns.fetch_add(n as u64, Relaxed);
    let mut handles = Vec::new();
    for (i, (sock, info)) in socks.into_iter().zip(infos).enumerate() {
        let shared = Arc::clone(shared);
        let ws = shared
            .workers
            .get(shared.settings.threads + i)
            .cloned()
            .unwrap_or_default();
        handles.push(
            std::thread::Builder::new()
                .name(format!("mnemo-udp-{i}"))
                .spawn(move || serve(sock, shared, ws, info))?,
        );
    }
    Ok(handles)
}

fn serve(sock: UdpSocket, shared: Arc<Shared>, ws: Arc<WorkerStats>, info: Arc<ConnInfo>) {
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
        // What memcached's UDP connection shows while it runs a request:
        // the sender, the time of the command, conn_parse_cmd.
        info.set_udp_peer(peer);
        info.last_cmd.store(shared.engine.clock().now(), Relaxed);
        info.set_state(ConnState::ParseCmd);
        let mut ctx = Ctx {
            shared: &shared,
            ts: &ts,
            ws: &ws,
            fd,
            ring: usize::MAX,
            budget: None,
            pending_output: false,
        };
        dispatch::run_datagram(&mut ctx, &buf[FRAME_HEADER..n], &mut out, |reply| {
            send_reply(&sock, peer, req_id, reply, &mut dgram, &ws);
        });
        info.set_state(ConnState::Read);
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
