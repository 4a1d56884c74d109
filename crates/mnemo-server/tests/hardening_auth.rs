//! Issue #7: authentication cannot be bypassed by pipelining or by
//! switching protocol mid-connection.
//!
//! ASCII authentication (`-Y`): each hostile stream goes in one write to
//! memcached 1.6.18 and to mnemo; both must answer only with refusals and
//! never with the protected value, which must still be intact afterwards. SASL (`-S`, binary only) is checked against memcached's
//! documented behaviour (Debian's memcached lacks the password file): an
//! unauthenticated connection gets AUTH_ERROR and is closed, whatever
//! follows it in the same write, and text commands are never served.
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use mnemo_protocol::binary::{Header, REQUEST_MAGIC};
use mnemo_protocol::client::binary::parse_packet;
use support::{Kind, Server};

const SECRET: &[u8] = b"s3cr3t-value-never-shown";

fn authfile() -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hardening-authfile-{}", std::process::id()));
    std::fs::write(&path, "user1:pass1\n").expect("write auth file");
    path.to_string_lossy().into_owned()
}

fn pkt(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        magic: REQUEST_MAGIC,
        opcode: op,
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        body_len: (extras.len() + key.len() + value.len()) as u32,
        opaque: 0x0102_0304,
        ..Header::default()
    }
    .encode(&mut out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// Sends `bytes` in one write, half-closes, and reads everything the
/// server sends until it closes (or stays silent for 2 s).
fn exchange(server: &Server, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    // The server may close before taking everything; that is an answer too.
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    support::find(hay, needle).is_some()
}

/// Streams a client might use to get past `-Y` without credentials.
fn ascii_attacks() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "commands pipelined before auth",
            b"get secret\r\ngets secret\r\nmg secret v\r\nstats\r\nincr n 1\r\n".to_vec(),
        ),
        (
            "wrong password then commands in the same write",
            b"set x 0 0 11\r\nuser1 wrong\r\nget secret\r\nmg secret v\r\n".to_vec(),
        ),
        (
            "auth line whose token block hides a get",
            b"set x 0 0 12\r\nget secret\r\n\r\nget secret\r\n".to_vec(),
        ),
        (
            "declared token length shorter than the token",
            b"set x 0 0 5\r\nuser1 pass1\r\nget secret\r\n".to_vec(),
        ),
        (
            "declared token length longer than sent",
            b"set x 0 0 40\r\nuser1 pass1\r\nget secret\r\n".to_vec(),
        ),
        (
            "a meta set as the auth command",
            b"ms x 11\r\nuser1 pass1\r\nget secret\r\n".to_vec(),
        ),
        (
            "noreply and a bare newline",
            b"set x 0 0 11 noreply\r\nuser1 wrong\r\n\nget secret\r\n".to_vec(),
        ),
        (
            "NUL inside the credentials",
            b"set x 0 0 11\r\nuser1\0pass1\r\nget secret\r\n".to_vec(),
        ),
    ];
    // Switching protocol: binary packets to an ASCII-auth server.
    let mut bin = pkt(0x21, b"PLAIN", b"", b"\0user1\0pass1");
    bin.extend(pkt(0x00, b"secret", b"", b""));
    v.push(("binary SASL then a binary get", bin));
    let mut mixed = b"set x 0 0 11\r\nuser1 wrong\r\n".to_vec();
    mixed.extend(pkt(0x00, b"secret", b"", b""));
    mixed.extend_from_slice(b"\r\nget secret\r\n");
    v.push(("failed auth then a binary get", mixed));
    v
}

#[test]
fn ascii_auth_cannot_be_bypassed_by_pipelining_or_binary() {
    let path = authfile();
    let mnemo = Server::start(Kind::Mnemo, &["-Y", &path]);
    let memcached = Server::start(Kind::Memcached, &["-Y", &path]);
    for server in [&mnemo, &memcached] {
        let mut set = b"set x 0 0 11\r\nuser1 pass1\r\n".to_vec();
        set.extend_from_slice(format!("set secret 0 0 {}\r\n", SECRET.len()).as_bytes());
        set.extend_from_slice(SECRET);
        set.extend_from_slice(b"\r\n");
        assert_eq!(
            exchange(server, &set),
            b"STORED\r\nSTORED\r\n",
            "{}: authenticated pipelined set",
            server.kind().name()
        );
    }
    for (what, attack) in ascii_attacks() {
        let theirs = exchange(&memcached, &attack);
        let ours = exchange(&mnemo, &attack);
        assert!(
            !contains(&ours, SECRET),
            "{what}: mnemo revealed the value: {}",
            support::show(&ours)
        );
        // Only refusals: no value, no STORED, no stats, no number. (memcached
        // itself answers only the first line of such a batch and ignores the
        // rest until more bytes arrive; mnemo refuses each line, which is no
        // less safe, so the streams are not compared byte for byte.)
        for (name, reply) in [("mnemo", &ours), ("memcached", &theirs)] {
            for line in reply.split_inclusive(|&b| b == b'\n') {
                assert!(
                    line.starts_with(b"CLIENT_ERROR "),
                    "{what}: {name} answered {} in {}",
                    support::show(line),
                    support::show(reply)
                );
            }
        }
        assert_eq!(
            ours.is_empty(),
            theirs.is_empty(),
            "{what}: one server answered, the other did not: mnemo {}, memcached {}",
            support::show(&ours),
            support::show(&theirs)
        );
    }
    // The value is still there for an authenticated client: nothing the
    // attacks sent was executed.
    let check = exchange(&mnemo, b"set x 0 0 11\r\nuser1 pass1\r\nget secret\r\n");
    assert!(
        contains(&check, SECRET),
        "secret lost: {}",
        support::show(&check)
    );
}

/// One binary response: (opcode, status, value).
type Response = (u8, u16, Vec<u8>);

/// Parses response packets.
fn responses(buf: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Ok(Some((p, used))) = parse_packet(rest) {
        out.push((p.header.opcode, p.header.status, rest[p.value].to_vec()));
        rest = &rest[used..];
    }
    out
}

fn sasl_server() -> Server {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hardening-pwdb-{}", std::process::id()));
    std::fs::write(&path, "testuser:testpass\n").expect("write password file");
    std::env::set_var("MEMCACHED_SASL_PWDB", &path);
    Server::start(Kind::Mnemo, &["-S"])
}

fn send_all(server: &Server, bytes: &[u8]) -> (Vec<Response>, Vec<u8>) {
    let raw = exchange(server, bytes);
    (responses(&raw), raw)
}

#[test]
fn sasl_cannot_be_bypassed_by_pipelining_or_text() {
    const AUTH_ERROR: u16 = 0x20;
    let server = sasl_server();
    let login = pkt(0x21, b"PLAIN", b"", b"\0testuser\0testpass");
    // Store the secret as an authenticated client.
    let mut setup = login.clone();
    setup.extend(pkt(0x01, b"secret", &[0u8; 8], SECRET));
    let (got, _) = send_all(&server, &setup);
    assert_eq!(
        got.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![0, 0],
        "authenticated set"
    );

    let get = pkt(0x00, b"secret", b"", b"");
    let getq = pkt(0x09, b"secret", b"", b"");
    let wrong = pkt(0x21, b"PLAIN", b"", b"\0testuser\0nope");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "get before auth",
            [get.clone(), login.clone(), get.clone()].concat(),
        ),
        (
            "quiet get before auth",
            [getq.clone(), login.clone(), get.clone()].concat(),
        ),
        (
            "wrong password then get",
            [wrong.clone(), get.clone()].concat(),
        ),
        (
            "auth step without a start",
            [
                pkt(0x22, b"PLAIN", b"", b"\0testuser\0testpass"),
                get.clone(),
            ]
            .concat(),
        ),
        ("auth packet cut short then get", {
            let mut p = login.clone();
            p.truncate(p.len() - 3);
            [p, get.clone()].concat()
        }),
    ];
    for (what, bytes) in cases {
        let (got, raw) = send_all(&server, &bytes);
        assert!(!contains(&raw, SECRET), "{what}: the secret leaked");
        for (op, st, value) in &got {
            assert!(
                !(contains(value, SECRET) || *op == 0x00 && *st == 0),
                "{what}: a get was answered without authentication: {got:?}"
            );
        }
        assert!(
            got.iter().any(|r| r.1 == AUTH_ERROR) || got.is_empty(),
            "{what}: no AUTH_ERROR: {got:?}"
        );
    }
    // Text on a SASL server: memcached -S speaks binary only.
    for text in [&b"get secret\r\n"[..], b"mg secret v\r\n", b"stats\r\n"] {
        let (_, raw) = send_all(&server, text);
        assert!(
            !contains(&raw, SECRET) && !raw.starts_with(b"STAT") && !raw.starts_with(b"VALUE"),
            "text command {} served on a SASL server: {}",
            support::show(text),
            support::show(&raw)
        );
    }
    // Authenticated, then text: still refused (no protocol switch).
    let mut switch = login.clone();
    switch.extend_from_slice(b"get secret\r\n");
    let (_, raw) = send_all(&server, &switch);
    let text_answer = raw.get(24 + 13..).unwrap_or_default();
    assert!(
        !contains(text_answer, SECRET),
        "switching to text after SASL served a text get: {}",
        support::show(&raw)
    );
    // And the secret is intact for a real client.
    let (got, _) = send_all(&server, &[login, get].concat());
    assert!(
        got.iter().any(|(_, st, v)| *st == 0 && v.ends_with(SECRET)),
        "secret lost: {got:?}"
    );
}
