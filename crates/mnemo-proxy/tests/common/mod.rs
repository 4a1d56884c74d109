//! Test harness: real memcached, nutcracker and mnemo-proxy processes on
//! ephemeral loopback ports, killed on drop; a tiny blocking text client
//! whose reads are bounded so no test can hang.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use mnemo_testkit::free_port;

pub fn wait_port(port: u16, what: &str) {
    mnemo_testkit::wait_port(port, what, Duration::from_secs(10));
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn memcached_on(port: u16) -> Proc {
    let child =
        mnemo_testkit::memcached_on(port, &["-m", "32", "-u", "root"]).unwrap_or_else(|| {
            panic!("memcached did not start on {port}, or another process holds it")
        });
    Proc { child, port }
}

pub fn memcached() -> Proc {
    let (child, port) = mnemo_testkit::memcached(&["-m", "32", "-u", "root"]);
    Proc { child, port }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "mnemo-proxy-test-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn server_lines(servers: &[(&Proc, u32)]) -> String {
    servers
        .iter()
        .map(|(p, w)| format!("   - 127.0.0.1:{}:{}\n", p.port, w))
        .collect()
}

/// mnemo-proxy on `conf`, with its stats on a free port.
pub struct Proxy {
    pub proc: Proc,
    pub stats_port: u16,
}

pub fn proxy(conf: &std::path::Path, listen_port: u16) -> Proxy {
    let stats_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mnemo-proxy"))
        .args([
            "-c",
            conf.to_str().expect("path"),
            "-s",
            &stats_port.to_string(),
            "-a",
            "127.0.0.1",
            "--threads",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mnemo-proxy");
    let p = Proc {
        child,
        port: listen_port,
    };
    wait_port(listen_port, "mnemo-proxy");
    Proxy {
        proc: p,
        stats_port,
    }
}

pub fn nutcracker(dir: &TempDir, conf: &std::path::Path, listen_port: u16) -> Proc {
    let stats = free_port();
    let child = Command::new("nutcracker")
        .args([
            "-c",
            conf.to_str().expect("path"),
            "-s",
            &stats.to_string(),
            "-a",
            "127.0.0.1",
            "-p",
            dir.0.join("nc.pid").to_str().expect("path"),
            "-o",
            dir.0.join("nc.log").to_str().expect("path"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nutcracker");
    wait_port(listen_port, "nutcracker");
    Proc {
        child,
        port: listen_port,
    }
}

/// A blocking text-protocol connection whose reads give up after 5 s.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Conn { s, buf: Vec::new() }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("write");
    }

    /// Read until the buffer holds a complete answer as judged by `done`,
    /// return it and keep the rest.
    pub fn read_until(&mut self, done: impl Fn(&[u8]) -> Option<usize>) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(n) = done(&self.buf) {
                return self.buf.drain(..n).collect();
            }
            assert!(
                Instant::now() < deadline,
                "no answer; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            let mut tmp = [0u8; 65536];
            match self.s.read(&mut tmp) {
                Ok(0) => panic!(
                    "connection closed; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => panic!("read: {e}; have {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
    }

    /// One reply line.
    pub fn line(&mut self) -> String {
        let b = self.read_until(|b| b.windows(2).position(|w| w == b"\r\n").map(|i| i + 2));
        String::from_utf8_lossy(&b).into_owned()
    }

    /// A retrieval reply through END (or an error line).
    pub fn values(&mut self) -> String {
        let b = self.read_until(retrieval_len);
        String::from_utf8_lossy(&b).into_owned()
    }

    pub fn cmd(&mut self, c: &str) -> String {
        self.send(c.as_bytes());
        self.line()
    }

    pub fn get(&mut self, keys: &str) -> String {
        self.send(format!("get {keys}\r\n").as_bytes());
        self.values()
    }

    pub fn set(&mut self, k: &str, v: &str) -> String {
        self.cmd(&format!("set {k} 0 0 {}\r\n{v}\r\n", v.len()))
    }

    /// Whether the peer has closed the connection (reads EOF within 2 s).
    pub fn closed(&mut self) -> bool {
        let _ = self.s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut tmp = [0u8; 1024];
        matches!(self.s.read(&mut tmp), Ok(0))
    }
}

/// Length of a complete retrieval reply at the front of `b`.
pub fn retrieval_len(b: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let rest = &b[pos..];
        let nl = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..nl];
        if line == b"END"
            || line.starts_with(b"SERVER_ERROR")
            || line.starts_with(b"CLIENT_ERROR")
            || line == b"ERROR"
        {
            return Some(pos + nl + 2);
        }
        if !line.starts_with(b"VALUE ") {
            return Some(pos + nl + 2);
        }
        let len: usize = std::str::from_utf8(line)
            .ok()?
            .split(' ')
            .nth(3)?
            .parse()
            .ok()?;
        let end = pos + nl + 2 + len + 2;
        if b.len() < end {
            return None;
        }
        pos = end;
    }
}

/// The value of `key` held by one memcached, asked directly.
pub fn direct_get(port: u16, key: &str) -> Option<String> {
    let mut c = Conn::new(port);
    let r = c.get(key);
    r.split("\r\n")
        .nth(1)
        .filter(|_| r.starts_with("VALUE"))
        .map(str::to_string)
}
