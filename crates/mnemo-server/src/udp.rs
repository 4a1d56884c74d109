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
//! to TCP in memcached deployments (it is off by default).

use crate::listener::split_host_port;
use crate::out::Out;
use crate::proto_bin::{self, BinConn};
use crate::proto_meta;
use crate::proto_text::{self, Ctx};
use crate::settings::{Protocol, Settings};
use crate::shared::Shared;
use crate::stats::WorkerStats;
use mnemo_protocol::text::{self, Line, Request};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
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
    if s.udp_port == 0 || s.socket_path.is_some() {
        return Ok(out);
    }
    let entries: Vec<String> = match &s.inter {
        Some(list) => list
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        None => vec!["0.0.0.0".into(), "::".into()],
    };
    for entry in &entries {
        let (host, _) = split_host_port(entry)?;
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, s.udp_port)],
            Err(_) => (host.as_str(), s.udp_port)
                .to_socket_addrs()
                .map_err(|e| format!("getaddrinfo(): {e} ({host})"))?
                .collect(),
        };
        for a in addrs {
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
    // Datagrams are parsed in place from `buf`; the pool stays empty.
    let mut rbuf_pool = Vec::new();
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
        let ctx = Ctx {
            shared: &shared,
            ts: &ts,
            ws: &ws,
            fd,
            pending_output: false,
            rbuf_pool: &mut rbuf_pool,
            direct_values: false,
            defer_send: false,
        };
        let mut send = |reply: &[u8]| {
            send_reply(&sock, peer, req_id, reply, &mut dgram, &ws);
        };
        let payload = &buf[FRAME_HEADER..n];
        let binary = match shared.settings.protocol {
            Protocol::Auto => proto_bin::is_binary_start(payload[0]),
            p => p == Protocol::Binary,
        };
        if binary {
            run_binary(&ctx, payload, &mut out, &mut send);
        } else {
            run_requests(&ctx, payload, &mut out, &mut send);
        }
    }
}

/// Runs the binary requests of one datagram, each answered as its own
/// reply, as memcached does over UDP.
fn run_binary(ctx: &Ctx, mut input: &[u8], out: &mut Out, send: &mut dyn FnMut(&[u8])) {
    // No SASL over UDP (refused at start-up), so nothing to authenticate.
    let mut bc = BinConn::default();
    while !input.is_empty() {
        out.clear();
        let step = proto_bin::step(ctx, &mut bc, input, out, None);
        send(out);
        input = match step {
            proto_bin::Step::Done { used } => &input[used..],
            proto_bin::Step::Swallow { used, left } => input.get(used + left..).unwrap_or(&[]),
            proto_bin::Step::NeedInput { .. }
            | proto_bin::Step::Direct { .. }
            | proto_bin::Step::CloseAfterWrite { .. }
            | proto_bin::Step::Close => break,
        };
    }
    out.clear();
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

/// Runs every complete request of one datagram; a value must be in the
/// same datagram as its command line.
fn run_requests(ctx: &Ctx, mut input: &[u8], out: &mut Out, send: &mut dyn FnMut(&[u8])) {
    while !input.is_empty() {
        send(out);
        out.clear();
        let (line, consumed) = match text::next_line(input) {
            Line::Complete { line, consumed } => (line, consumed),
            _ => break,
        };
        if proto_meta::is_meta(line) {
            match proto_meta::run(ctx, line, &input[consumed..], out, None) {
                proto_meta::Step::Done { used } => input = &input[consumed + used..],
                proto_meta::Step::Swallow { left } => {
                    input = input.get(consumed + left..).unwrap_or(&[]);
                }
                proto_meta::Step::NeedData { .. } => break,
            }
            continue;
        }
        let req = text::parse_line(line);
        match req {
            Request::Store { bytes, .. } => {
                if let Some(n) = proto_text::precheck_store(ctx, &req, out) {
                    input = input.get(consumed + n..).unwrap_or(&[]);
                    continue;
                }
                let need = consumed + bytes + 2;
                if input.len() < need {
                    break;
                }
                proto_text::complete_store(ctx, &req, &input[consumed..need], out, None);
                input = &input[need..];
            }
            // Each key of a get is its own reply (a miss sends nothing);
            // the last one carries the END.
            Request::Get {
                kind,
                exptime,
                keys,
            } => {
                let mut keys = keys.peekable();
                while let Some(key) = keys.next() {
                    let one = text::Keys::new(key);
                    let _ = proto_text::get(ctx, kind, exptime, one, out, usize::MAX);
                    if keys.peek().is_some() {
                        let end = out.len() - b"END\r\n".len();
                        out.truncate(end);
                        send(out);
                        out.clear();
                    }
                }
                input = &input[consumed..];
            }
            // No connection to close or shut down over UDP.
            Request::Quit | Request::Shutdown { .. } => break,
            req => {
                let _ = proto_text::execute(ctx, req, out);
                input = &input[consumed..];
            }
        }
    }
    send(out);
    out.clear();
}
