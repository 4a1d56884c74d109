//! The text of memcached 1.6.18's log lines (`logger.c`), byte for byte:
//! `ts=<sec>.<usec> gid=<n> type=...` ending in a bare `\n`. The
//! microseconds are printed as memcached prints them, with `%d`, so
//! without leading zeros.

use std::io::Write;

/// memcached's `was_found` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetStatus {
    NotFound,
    Found,
    Flushed,
    Expired,
}

impl GetStatus {
    fn text(self) -> &'static str {
        match self {
            GetStatus::NotFound => "not_found",
            GetStatus::Found => "found",
            GetStatus::Flushed => "flushed",
            GetStatus::Expired => "expired",
        }
    }
}

/// One `type=item_get` line's fields besides the key.
#[derive(Clone, Copy, Debug)]
pub struct GetLine {
    pub status: GetStatus,
    pub clsid: u32,
    pub size: usize,
}

impl GetLine {
    pub const MISS: GetLine = GetLine {
        status: GetStatus::NotFound,
        clsid: 0,
        size: 0,
    };
}

/// One `type=item_store` line's fields besides the key.
#[derive(Clone, Copy, Debug)]
pub struct StoreLine {
    /// memcached's `status_map` entry.
    pub status: &'static str,
    /// memcached's `cmd_map` entry.
    pub cmd: &'static str,
    pub ttl: u32,
    pub clsid: u32,
    pub size: usize,
}

/// `type=conn_new` / `type=conn_close` fields.
pub struct ConnLine<'a> {
    pub rip: &'a str,
    pub rport: u16,
    pub transport: &'static str,
    pub cfd: i32,
    /// `Some(reason)` for a close.
    pub reason: Option<&'static str>,
}

/// A log line's beginning.
pub fn head(out: &mut Vec<u8>, sec: u64, usec: u32, gid: u64) {
    let _ = write!(out, "ts={sec}.{usec} gid={gid} ");
}

/// memcached's `uriencode`: every byte but ASCII letters, digits and
/// `-._~` becomes `%XX`, upper-case hex.
pub fn uriencode(out: &mut Vec<u8>, key: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

pub fn item_get(out: &mut Vec<u8>, key: &[u8], g: GetLine, cfd: i32) {
    out.extend_from_slice(b"type=item_get key=");
    uriencode(out, key);
    let _ = writeln!(
        out,
        " status={} clsid={} cfd={} size={}",
        g.status.text(),
        g.clsid,
        cfd,
        g.size
    );
}

pub fn item_store(out: &mut Vec<u8>, key: &[u8], s: StoreLine, cfd: i32) {
    out.extend_from_slice(b"type=item_store key=");
    uriencode(out, key);
    let _ = writeln!(
        out,
        " status={} cmd={} ttl={} clsid={} cfd={} size={}",
        s.status, s.cmd, s.ttl, s.clsid, cfd, s.size
    );
}

/// Newer memcached's `watch deletions` line (not in 1.6.18).
pub fn deleted(out: &mut Vec<u8>, key: &[u8], cmd: &str, clsid: u32, size: usize) {
    out.extend_from_slice(b"type=deleted key=");
    uriencode(out, key);
    let _ = writeln!(out, " cmd={cmd} clsid={clsid} size={size}");
}

pub fn eviction(out: &mut Vec<u8>, ev: &mnemo_engine::Eviction) {
    out.extend_from_slice(b"type=eviction key=");
    uriencode(out, ev.key);
    let _ = writeln!(
        out,
        " fetch={} ttl={} la={} clsid={} size={}",
        if ev.fetched { "yes" } else { "no" },
        ev.ttl,
        ev.last_access,
        ev.class_id,
        ev.size
    );
}

pub fn conn(out: &mut Vec<u8>, c: &ConnLine) {
    match c.reason {
        None => {
            let _ = writeln!(
                out,
                "type=conn_new rip={} rport={} transport={} cfd={}",
                c.rip, c.rport, c.transport, c.cfd
            );
        }
        Some(r) => {
            let _ = writeln!(
                out,
                "type=conn_close rip={} rport={} transport={} reason={} cfd={}",
                c.rip, c.rport, c.transport, r, c.cfd
            );
        }
    }
}

/// The remote end as memcached's `_logger_util_addr_endpoint` prints it,
/// from a `stats conns` address (`tcp:1.2.3.4:5`, `tcp:[::1]:5`,
/// `unix:/path`): address, port and transport name.
pub fn endpoint(addr: &str) -> (&str, u16, &'static str) {
    if let Some(rest) = addr
        .strip_prefix("tcp:")
        .or_else(|| addr.strip_prefix("tcp6:"))
    {
        if let Some((host, port)) = rest.rsplit_once(':') {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            return (host, port.parse().unwrap_or(0), "tcp");
        }
        return (rest, 0, "tcp");
    }
    ("unix", 0, "local")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uriencode_as_memcached() {
        let mut v = Vec::new();
        uriencode(&mut v, b"a-b.c_d~e/f g%\xff");
        assert_eq!(v, b"a-b.c_d~e%2Ff%20g%25%FF");
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("tcp:127.0.0.1:4000"), ("127.0.0.1", 4000, "tcp"));
        assert_eq!(endpoint("tcp6:[::1]:5"), ("::1", 5, "tcp"));
        assert_eq!(endpoint("unix:/tmp/x"), ("unix", 0, "local"));
    }

    #[test]
    fn get_line() {
        let mut v = Vec::new();
        head(&mut v, 17, 5, 3);
        item_get(&mut v, b"k", GetLine::MISS, 9);
        assert_eq!(
            v,
            b"ts=17.5 gid=3 type=item_get key=k status=not_found clsid=0 cfd=9 size=0\n"
        );
    }
}
