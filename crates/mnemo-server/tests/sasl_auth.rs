//! SASL over the binary protocol (`-S`, PLAIN against the password file
//! named by `MEMCACHED_SASL_PWDB`) and ASCII authentication (`-Y`).
//!
//! Debian's memcached is built without its password-file support (it
//! needs a Cyrus sasldb instead), so these check mnemo against memcached's
//! documented behaviour rather than differentially: a client that
//! authenticates works, one that does not is refused with AUTH_ERROR and
//! closed, as `proto_bin.c` does.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mnemo_protocol::binary::{Header, REQUEST_MAGIC};
use mnemo_protocol::client::binary::parse_packet;
use support::{Kind, Server};

const AUTH_ERROR: u16 = 0x20;

fn pwdb() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sasl-pwdb-{}", std::process::id()));
    std::fs::write(&path, "someone:else\ntestuser:testpass\n").expect("write password file");
    path
}

/// Every test here needs the same variable; the server inherits it.
fn sasl_server() -> Server {
    std::env::set_var("MEMCACHED_SASL_PWDB", pwdb());
    Server::start(Kind::Mnemo, &["-S"])
}

fn pkt(op: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        magic: REQUEST_MAGIC,
        opcode: op,
        key_len: key.len() as u16,
        body_len: (key.len() + value.len()) as u32,
        opaque: 0x0a0b_0c0d,
        ..Header::default()
    }
    .encode(&mut out);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// Reads one response packet: (opcode, status, value).
fn response(s: &mut TcpStream) -> (u8, u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((p, _))) = parse_packet(&buf) {
            return (p.header.opcode, p.header.status, buf[p.value].to_vec());
        }
        let n = s.read(&mut chunk).expect("read response");
        assert!(n > 0, "closed before a whole response; got {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn unauthenticated_client_is_refused_and_closed() {
    let server = sasl_server();
    let mut s = connect(&server);
    // Allowed before authentication: the mechanism list and the version.
    s.write_all(&pkt(0x20, b"", b"")).unwrap();
    let (op, st, mechs) = response(&mut s);
    assert_eq!((op, st), (0x20, 0));
    assert!(String::from_utf8_lossy(&mechs).contains("PLAIN"));
    s.write_all(&pkt(0x0b, b"", b"")).unwrap();
    assert_eq!(response(&mut s).1, 0);
    // Anything else: AUTH_ERROR, then the connection closes.
    s.write_all(&pkt(0x00, b"k", b"")).unwrap();
    let (op, st, text) = response(&mut s);
    assert_eq!((op, st), (0x00, AUTH_ERROR));
    assert_eq!(text, b"Auth failure.");
    assert!(closed(&mut s));
}

#[test]
fn wrong_password_is_refused() {
    let server = sasl_server();
    let mut s = connect(&server);
    s.write_all(&pkt(0x21, b"PLAIN", b"\0testuser\0wrong"))
        .unwrap();
    assert_eq!(response(&mut s).1, AUTH_ERROR);
    s.write_all(&pkt(0x21, b"PLAIN", b"\0nobody\0testpass"))
        .unwrap();
    assert_eq!(response(&mut s).1, AUTH_ERROR);
    s.write_all(&pkt(0x21, b"CRAM-MD5", b"x")).unwrap();
    assert_eq!(response(&mut s).1, AUTH_ERROR);
    s.write_all(&pkt(0x00, b"k", b"")).unwrap();
    assert_eq!(response(&mut s).1, AUTH_ERROR);
    assert!(closed(&mut s));
}

#[test]
fn authenticated_raw_client_is_served() {
    let server = sasl_server();
    let mut s = connect(&server);
    s.write_all(&pkt(0x21, b"PLAIN", b"\0testuser\0testpass"))
        .unwrap();
    let (_, st, text) = response(&mut s);
    assert_eq!((st, text.as_slice()), (0, &b"Authenticated"[..]));
    s.write_all(&pkt(0x00, b"nothing-here", b"")).unwrap();
    assert_eq!(response(&mut s).1, 0x01);
}

#[test]
fn pylibmc_authenticates() {
    let server = sasl_server();
    let script = r#"
import sys, pylibmc
addr = ["127.0.0.1:" + sys.argv[1]]
mc = pylibmc.Client(addr, binary=True, username="testuser", password="testpass")
assert mc.set("sk", "v1") is True
assert mc.get("sk") == "v1"
bad = pylibmc.Client(addr, binary=True, username="testuser", password="nope")
try:
    bad.set("sk", "v2")
    raise SystemExit("unauthenticated set succeeded")
except pylibmc.Error:
    pass
assert mc.get("sk") == "v1"
print("OK")
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &server.port().to_string()])
        .output()
        .expect("run /usr/bin/python3 (python3-pylibmc)");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ascii_auth_file() {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("authfile-{}", std::process::id()));
    std::fs::write(&path, "user1:pass1\n").expect("write auth file");
    let path = path.to_string_lossy().into_owned();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let server = Server::start(kind, &["-Y", &path]);
        let mut c = server.connect();
        assert_eq!(
            c.request(b"get foo\r\n"),
            b"CLIENT_ERROR unauthenticated\r\n"
        );
        assert_eq!(
            c.request(b"set x 0 0 11\r\nuser1 wrong\r\n"),
            b"CLIENT_ERROR authentication failure\r\n"
        );
        assert_eq!(c.request(b"set x 0 0 11\r\nuser1 pass1\r\n"), b"STORED\r\n");
        assert_eq!(
            c.request(b"set k 0 0 1\r\nv\r\n"),
            b"STORED\r\n",
            "{}",
            kind.name()
        );
        assert_eq!(c.request(b"get k\r\n"), b"VALUE k 0 1\r\nv\r\nEND\r\n");
    }
}

#[test]
fn oversized_sasl_data_is_refused_not_buffered() {
    let server = sasl_server();
    let mut s = connect(&server);
    let mut big = pkt(0x21, b"PLAIN", b"");
    // Declare 8 MB of SASL data (more than any item). The refusal comes
    // once the data has been swallowed, as any of memcached's that
    // discards a value (conn_swallow); nothing is buffered meanwhile.
    big[8..12].copy_from_slice(&(5 + 8 * 1024 * 1024u32).to_be_bytes());
    s.write_all(&big).unwrap();
    s.write_all(&vec![0u8; 8 * 1024 * 1024]).unwrap();
    let (op, st, text) = response(&mut s);
    assert_eq!((op, st), (0x21, 0x82));
    assert_eq!(text, b"Out of memory");
}
