//! `-o read_buf_mem_limit=N` (megabytes), compared with memcached 1.6.18:
//! one worker (`-t 1`) and 1 MB make 64 objects of 16 KB shared by
//! connections' read buffers and bundles of 13 response objects. Past
//! them a connection that needs a read buffer is closed (`read_buf_oom`),
//! a pipeline whose next command finds no response object is closed
//! (`response_obj_oom`), and a multi-key get that runs out part-way
//! answers `SERVER_ERROR out of memory writing get response`.
mod support;

use std::time::Duration;
use support::{show, Client, Kind, Server};

const LIMITED: &[&str] = &["-t", "1", "-R", "2000", "-o", "read_buf_mem_limit=1"];

fn stat(c: &mut Client, name: &str) -> u64 {
    let body = String::from_utf8_lossy(&c.request(b"stats\r\n")).into_owned();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Sends `bytes` on a fresh connection (after storing `k`) and returns
/// what came back before the server closed or went quiet, whether it
/// closed, and the oom counters from a second connection.
fn run(kind: Kind, bytes: &[u8]) -> (Vec<u8>, bool, u64, u64) {
    let s = Server::start(kind, LIMITED);
    let mut c = s.connect();
    assert_eq!(c.request(b"set k 0 0 1\r\n1\r\n"), b"STORED\r\n");
    c.send(bytes);
    c.set_read_timeout(Duration::from_millis(500));
    let (got, closed) = match c.read_to_eof() {
        Ok(b) => (b, true),
        Err(b) => (b, false),
    };
    let mut st = s.connect();
    let r = stat(&mut st, "read_buf_oom");
    let o = stat(&mut st, "response_obj_oom");
    (got, closed, r, o)
}

fn differential(bytes: &[u8]) -> (Vec<u8>, bool, u64, u64) {
    let m = run(Kind::Memcached, bytes);
    let n = run(Kind::Mnemo, bytes);
    assert_eq!(
        (show(&n.0), n.1, n.2, n.3),
        (show(&m.0), m.1, m.2, m.3),
        "mnemo (left) and memcached (right) differ"
    );
    m
}

#[test]
fn pipeline_within_the_limit_is_answered() {
    // 819 responses: 63 full bundles beside the read buffer.
    let (got, closed, _, oom) = differential(&b"version\r\n".repeat(819));
    assert!(!closed);
    assert_eq!(got.len(), b"VERSION 1.6.18\r\n".len() * 819);
    assert_eq!(oom, 0);
}

#[test]
fn pipeline_past_the_limit_disconnects() {
    let (got, closed, rb, oom) = differential(&b"version\r\n".repeat(820));
    assert!(closed);
    assert!(got.is_empty(), "{}", show(&got));
    assert_eq!((rb, oom), (0, 1));
}

#[test]
fn get_past_the_limit_answers_server_error() {
    let mut req = b"get".to_vec();
    req.extend_from_slice(&b" k".repeat(1000));
    req.extend_from_slice(b"\r\nget k\r\n");
    let (got, closed, _, oom) = differential(&req);
    assert!(!closed);
    assert_eq!(
        got,
        b"SERVER_ERROR out of memory writing get response\r\nVALUE k 0 1\r\n1\r\nEND\r\n"
    );
    assert_eq!(oom, 1);
    // A get's replies are sent before the next command runs, so its
    // response objects are free again for it.
    let mut req = b"get".to_vec();
    req.extend_from_slice(&b" k".repeat(819));
    req.extend_from_slice(b"\r\nversion\r\n");
    let (got, closed, _, oom) = differential(&req);
    assert!(!closed && got.ends_with(b"END\r\nVERSION 1.6.18\r\n"));
    assert_eq!(oom, 0);
}

/// Connections part-way through a large value each hold a read buffer and
/// a response object: 59 of them and 5 bundles use all 64 objects, and
/// every further connection is closed when it needs a read buffer.
#[test]
fn connections_past_the_limit_are_closed() {
    let run = |kind: Kind| {
        let s = Server::start(kind, LIMITED);
        let mut conns: Vec<Client> = (0..70)
            .map(|i| {
                let mut c = s.connect();
                c.send(format!("set k{i} 0 0 100000\r\nxxxxxxxxxx").as_bytes());
                c
            })
            .collect();
        let closed = conns
            .iter_mut()
            .map(|c| {
                c.set_read_timeout(Duration::from_millis(50));
                c.is_closed()
            })
            .filter(|&x| x)
            .count();
        // Free the objects so that `stats` can be asked; a connection the
        // server meets before it has seen the closes is itself refused.
        conns.truncate(0);
        let mut tries = 0;
        let body = loop {
            let mut st = s.connect();
            st.send(b"stats\r\n");
            match st.try_read_until(b"END\r\n") {
                Ok(b) => break String::from_utf8_lossy(&b).into_owned(),
                Err(_) if tries < 100 => tries += 1,
                Err((_, got)) => panic!("{}: no stats: {}", kind.name(), show(&got)),
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let value = |name: &str| -> u64 {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(u64::MAX)
        };
        // Refused stats connections count too; only the first ones are
        // the test's.
        (
            closed,
            value("read_buf_oom") >= 11,
            value("response_obj_oom"),
        )
    };
    let m = run(Kind::Memcached);
    assert_eq!(m, (11, true, 0));
    assert_eq!(run(Kind::Mnemo), m);
}

#[test]
fn limit_is_shown_in_bytes() {
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let s = Server::start(kind, &["-o", "read_buf_mem_limit=3"]);
        let mut c = s.connect();
        let body = String::from_utf8_lossy(&c.request(b"stats settings\r\n")).into_owned();
        assert!(
            body.contains("STAT read_buf_mem_limit 3145728\r\n"),
            "{}: {body}",
            kind.name()
        );
    }
}
