//! UDP (`-U`): memcached's 8-byte frame header, the request id echoed,
//! large replies split over numbered datagrams. The reassembled replies
//! must match memcached 1.6.18's.
mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use support::{show_full, Kind, Server};

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("ephemeral UDP port")
}

fn start(kind: Kind) -> (Server, u16) {
    let port = free_udp_port();
    let server = Server::start(kind, &["-U", &port.to_string()]);
    (server, port)
}

/// Sends one request datagram and reassembles the reply; checks every
/// datagram's header on the way.
fn udp_request(port: u16, req_id: u16, body: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut dgram = Vec::new();
    dgram.extend_from_slice(&req_id.to_be_bytes());
    dgram.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    dgram.extend_from_slice(body);
    sock.send_to(&dgram, ("127.0.0.1", port)).expect("send");
    let mut parts = BTreeMap::new();
    let mut total = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("a reply datagram");
        assert!(n >= 8, "short datagram");
        assert_eq!(
            u16::from_be_bytes([buf[0], buf[1]]),
            req_id,
            "request id echoed"
        );
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let count = u16::from_be_bytes([buf[4], buf[5]]);
        assert_eq!(&buf[6..8], &[0, 0]);
        assert!(n <= 1400, "datagram of {n} bytes");
        assert_eq!(
            *total.get_or_insert(count),
            count,
            "same count in every datagram"
        );
        assert!(seq < count);
        parts.insert(seq, buf[8..n].to_vec());
        if parts.len() == count as usize {
            return parts.into_values().flatten().collect();
        }
    }
}

#[test]
fn get_round_trips_match_memcached() {
    let big = vec![b'z'; 5000];
    let mut big_set = b"set big 3 0 5000\r\n".to_vec();
    big_set.extend_from_slice(&big);
    big_set.extend_from_slice(b"\r\n");
    let mut counters = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let (server, port) = start(kind);
        let mut tcp = server.connect();
        assert_eq!(tcp.request(b"set small 5 0 2\r\nhi\r\n"), b"STORED\r\n");
        assert_eq!(tcp.request(&big_set), b"STORED\r\n");
        let got = udp_request(port, 0x1234, b"get small\r\n");
        assert_eq!(got, b"VALUE small 5 2\r\nhi\r\nEND\r\n", "{}", kind.name());
        let got = udp_request(port, 0x1235, b"mg small v f\r\n");
        assert_eq!(got, b"VA 2 f5\r\nhi\r\n", "{}", kind.name());
        let got = udp_request(port, 7, b"get nothing\r\n");
        assert_eq!(got, b"END\r\n", "{}", kind.name());
        // Stored over UDP, read back over TCP.
        let got = udp_request(port, 8, b"set viaudp 0 0 3\r\nabc\r\n");
        assert_eq!(got, b"STORED\r\n", "{}", kind.name());
        assert_eq!(
            tcp.request(b"get viaudp\r\n"),
            b"VALUE viaudp 0 3\r\nabc\r\nEND\r\n"
        );
        // A reply over several datagrams.
        let got = udp_request(port, 0xfffe, b"get big\r\n");
        let mut want = b"VALUE big 3 5000\r\n".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\nEND\r\n");
        // UDP requests count in `stats` like any others.
        let stats = tcp.request(b"stats\r\n");
        let stats = String::from_utf8_lossy(&stats).into_owned();
        for name in ["cmd_get", "get_hits", "get_misses", "cmd_set"] {
            let line = stats
                .lines()
                .find(|l| l.starts_with(&format!("STAT {name} ")))
                .unwrap_or("")
                .to_string();
            counters.push((kind.name(), line));
        }
        assert!(
            got == want,
            "{}: {}",
            kind.name(),
            show_full(&got[..got.len().min(80)])
        );
    }
    let (memcached, mnemo) = counters.split_at(counters.len() / 2);
    let strip = |v: &[(&str, String)]| v.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>();
    assert_eq!(strip(mnemo), strip(memcached));
}

#[test]
fn multi_datagram_requests_are_dropped() {
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let (_server, port) = start(kind);
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // memcached 1.6.18 silently drops a request announced as two
        // datagrams; the next one-datagram request is the first answered.
        let mut d = vec![0, 9, 0, 0, 0, 2, 0, 0];
        d.extend_from_slice(b"get a\r\n");
        sock.send_to(&d, ("127.0.0.1", port)).expect("send");
        let d = [&[0u8, 10, 0, 0, 0, 1, 0, 0][..], b"get a\r\n"].concat();
        sock.send_to(&d, ("127.0.0.1", port)).expect("send");
        let mut buf = [0u8; 2048];
        let (n, _) = sock.recv_from(&mut buf).expect("reply");
        assert_eq!(&buf[..2], &[0, 10], "{}", kind.name());
        assert_eq!(&buf[8..n], b"END\r\n", "{}", kind.name());
    }
}

/// memcached also serves the binary protocol over UDP: each request of the
/// datagram gets its own reply datagram.
#[test]
fn binary_over_udp_matches_memcached() {
    use mnemo_protocol::binary::Opcode;
    use mnemo_protocol::client::binary::{encode_get, encode_simple, encode_store};
    let mut req = Vec::new();
    encode_store(&mut req, Opcode::Set, b"ub", 9, 0, b"value", 0, 1);
    encode_get(&mut req, Opcode::GetK, b"ub", 2);
    encode_get(&mut req, Opcode::GetQ, b"ub-miss", 3);
    encode_simple(&mut req, Opcode::Noop, 4);
    let mut answers = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let (_server, port) = start(kind);
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let d = [&[0u8, 5, 0, 0, 0, 1, 0, 0][..], &req].concat();
        sock.send_to(&d, ("127.0.0.1", port)).expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            let (n, _) = sock.recv_from(&mut buf).expect("reply datagram");
            let mut dgram = buf[..n].to_vec();
            // CAS values may differ between the two servers.
            if dgram.len() >= 32 {
                dgram[24..32].fill(0);
            }
            got.push(dgram);
        }
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1]);
}

/// A `stats conns` answer as one line per descriptor (`name=value ...`),
/// sorted: descriptor numbers, ports and `secs_since_last_cmd` (a clock
/// read) masked. Sorted because which of a socket's descriptors serves a
/// datagram is the kernel's choice, in memcached as in mnemo.
fn conn_entries(answer: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(answer);
    let mut by_fd: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("STAT ") else {
            assert_eq!(line, "END", "unexpected line");
            continue;
        };
        let Some((fd, rest)) = rest.split_once(':') else {
            panic!("no descriptor in {line:?}");
        };
        let Some((name, value)) = rest.split_once(' ') else {
            panic!("no value in {line:?}");
        };
        let value = if name == "secs_since_last_cmd" {
            "<secs>".to_string()
        } else if value.starts_with("tcp") || value.starts_with("udp") {
            let host = value.rsplit_once(':').map_or(value, |(host, _port)| host);
            format!("{host}:<port>")
        } else {
            value.to_string()
        };
        let entry = by_fd.entry(fd.to_string()).or_default();
        entry.push_str(&format!("{name}={value} "));
    }
    let mut entries: Vec<String> = by_fd.into_values().collect();
    entries.sort();
    entries
}

/// `stats conns` over TCP and over UDP, and the connection counts of
/// `stats`, with `-U` and two worker threads.
fn udp_conns(kind: Kind) -> Vec<Vec<String>> {
    let port = free_udp_port();
    let server = Server::start(kind, &["-U", &port.to_string(), "-t", "2"]);
    let mut tcp = server.connect();
    let over_tcp = conn_entries(&tcp.request(b"stats conns\r\n"));
    // The TCP client shows its idle state once its server thread is done
    // with the reply, a moment after the client has it (in both servers).
    std::thread::sleep(Duration::from_millis(100));
    let over_udp = conn_entries(&udp_request(port, 1, b"stats conns\r\n"));
    let stats = tcp.request(b"stats\r\n");
    let counts = String::from_utf8_lossy(&stats)
        .lines()
        .filter(|l| {
            l.starts_with("STAT curr_connections ") || l.starts_with("STAT total_connections ")
        })
        .map(str::to_string)
        .collect();
    vec![over_tcp, over_udp, counts]
}

/// memcached lists each UDP socket once per worker thread (`UDP UDP`, its
/// own address, `conn_read` between datagrams; while serving one, the
/// sender's address with its own as listen_addr and `conn_parse_cmd`),
/// and counts those descriptors as connections.
#[test]
fn udp_sockets_in_stats_conns_match_memcached() {
    let memcached = udp_conns(Kind::Memcached);
    let mnemo = udp_conns(Kind::Mnemo);
    assert_eq!(mnemo, memcached);
}
