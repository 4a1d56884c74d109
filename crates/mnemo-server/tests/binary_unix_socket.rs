//! Unix sockets (`-s`, `-a`): the text, meta and binary protocols all
//! served on one socket, with the same answers as memcached 1.6.18.
mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mnemo_protocol::binary::Opcode;
use mnemo_protocol::client::binary::{encode_get, encode_store};
use support::Kind;

/// A server on a unix socket, killed on drop.
struct UnixServer {
    child: Child,
    path: PathBuf,
}

impl UnixServer {
    fn start(kind: Kind, mask: &str) -> UnixServer {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{}-{}-{mask}.sock",
            kind.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let mut args = vec!["-s".to_string(), path.to_string_lossy().into_owned()];
        args.extend(["-a".to_string(), mask.to_string()]);
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            args.extend(["-u".to_string(), "root".to_string()]);
        }
        let child = Command::new(kind.program())
            .args(support::engine_args(kind))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kind.name()));
        let server = UnixServer { child, path };
        let deadline = Instant::now() + Duration::from_secs(15);
        while UnixStream::connect(&server.path).is_err() {
            assert!(Instant::now() < deadline, "{} not listening", kind.name());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes `req` and reads until `want` bytes have arrived.
fn exchange(s: &mut UnixStream, req: &[u8], want: usize) -> Vec<u8> {
    s.write_all(req).expect("write");
    let mut got = vec![0u8; want];
    s.read_exact(&mut got).expect("read reply");
    got
}

fn session(server: &UnixServer) -> Vec<Vec<u8>> {
    let mut answers = Vec::new();
    let mut text = server.connect();
    answers.push(exchange(&mut text, b"set uk 7 0 3\r\nabc\r\n", 8));
    answers.push(exchange(&mut text, b"get uk\r\n", 24));
    let mut meta = server.connect();
    answers.push(exchange(&mut meta, b"mg uk v f s\r\n", 17));
    answers.push(exchange(&mut meta, b"ms uk2 2 T0\r\nhi\r\nmn\r\n", 8));
    let mut bin = server.connect();
    let mut req = Vec::new();
    encode_store(&mut req, Opcode::Set, b"bk", 1, 0, b"bin", 0, 5);
    let mut set_reply = exchange(&mut bin, &req, 24);
    set_reply[16..24].fill(0); // CAS values may differ
    answers.push(set_reply);
    req.clear();
    encode_get(&mut req, Opcode::GetK, b"uk", 6);
    let mut get_reply = exchange(&mut bin, &req, 24 + 4 + 2 + 3);
    get_reply[16..24].fill(0);
    answers.push(get_reply);
    answers
}

#[test]
fn three_protocols_on_a_unix_socket() {
    let reference = UnixServer::start(Kind::Memcached, "700");
    let mnemo = UnixServer::start(Kind::Mnemo, "700");
    let mode = std::fs::metadata(&mnemo.path)
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let want = session(&reference);
    let got = session(&mnemo);
    assert_eq!(want[1], b"VALUE uk 7 3\r\nabc\r\nEND\r\n");
    assert_eq!(want, got);
}
