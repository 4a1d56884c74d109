//! What the crates' integration tests share: free loopback ports and
//! reference memcached processes that are known to be the ones started.
//! A dev-dependency only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago and that this process has
/// not handed out before: the kernel may give a port just let go to the
/// next bind, and tests running in parallel would then start two servers
/// on one.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot bind an ephemeral port on 127.0.0.1: {e}"));
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Wait until something accepts connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `pid` a memcached-compatible server on `port` reports in `stats`.
pub fn stats_pid(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"stats\r\n").ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .find_map(|l| l.strip_prefix("STAT pid ")?.trim().parse().ok())
}

/// Debian's memcached on 127.0.0.1:`port` without UDP, `args` added (`-m`,
/// `-u`, ...), or None if the server that answers there is not the one
/// started: it could not bind, the port having been taken since
/// `free_port` (by another test binary, say). The child is killed on None.
pub fn memcached_on(port: u16, args: &[&str]) -> Option<Child> {
    let mut child = memcached_unchecked(port, args);
    if stats_pid(port) == Some(child.id()) {
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// As [`memcached_on`], for a memcached that cannot be asked its pid in
/// plain text (`-Z`): the child once something accepts on `port`.
pub fn memcached_unchecked(port: u16, args: &[&str]) -> Child {
    let child = Command::new("/usr/bin/memcached")
        .args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start /usr/bin/memcached (apt-get install memcached): {e}")
        });
    wait_port(port, "memcached", Duration::from_secs(10));
    child
}

/// A memcached on a free port (see [`memcached_on`]): the child and its
/// port.
pub fn memcached(args: &[&str]) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        if let Some(c) = memcached_on(port, args) {
            return (c, port);
        }
    }
    panic!("memcached did not start on any of five ports");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_not_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len());
    }
}
