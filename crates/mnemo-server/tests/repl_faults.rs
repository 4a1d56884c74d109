//! Replication (issue #13) under faults: the fault-injecting relay proven
//! on its own against memcached, then real mnemo nodes joined through it.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::relay::{Dir, Relay};
use support::{Client, Server};

/// Polls `cond` every 20 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn short_client(addr: SocketAddr, timeout: Duration) -> Client {
    let mut c = Client::connect(addr);
    c.set_read_timeout(timeout);
    c
}

#[test]
fn relay_passes_and_counts_both_ways() {
    let mc = Server::memcached(&[]);
    let relay = Relay::to(mc.addr());
    let mut c = relay_client(&relay);
    let set = b"set k 5 0 3\r\nabc\r\n";
    assert_eq!(c.request(set), b"STORED\r\n");
    assert_eq!(c.request(b"get k\r\n"), b"VALUE k 5 3\r\nabc\r\nEND\r\n");
    let up = set.len() + b"get k\r\n".len();
    let down = b"STORED\r\n".len() + b"VALUE k 5 3\r\nabc\r\nEND\r\n".len();
    assert!(wait_for(Duration::from_secs(2), || relay
        .forwarded(Dir::Forward)
        == up as u64
        && relay.forwarded(Dir::Backward) == down as u64));
    assert_eq!(relay.live(), 1);
    assert_eq!(
        relay.dropped(Dir::Forward) + relay.dropped(Dir::Backward),
        0
    );
}

fn relay_client(relay: &Relay) -> Client {
    Client::connect(relay.addr())
}

#[test]
fn relay_without_target_closes_then_forwards_once_set() {
    let mc = Server::memcached(&[]);
    let relay = Relay::new();
    let mut early = short_client(relay.addr(), Duration::from_secs(2));
    assert!(early.is_closed(), "a relay without a target must close");
    relay.set_target(mc.addr());
    let mut c = relay_client(&relay);
    assert_eq!(c.request(b"version\r\n")[..8], *b"VERSION ");
}

#[test]
fn relay_cut_closes_open_and_new_connections_until_healed() {
    let mc = Server::memcached(&[]);
    let relay = Relay::to(mc.addr());
    let mut c = relay_client(&relay);
    assert_eq!(c.request(b"set k 0 0 1\r\nx\r\n"), b"STORED\r\n");
    relay.cut();
    assert!(c.is_closed(), "a cut must close the open connection");
    assert!(wait_for(Duration::from_secs(2), || relay.live() == 0));
    let mut refused = short_client(relay.addr(), Duration::from_secs(2));
    assert!(
        refused.is_closed(),
        "a cut relay must close new connections"
    );
    relay.heal();
    let mut c = relay_client(&relay);
    assert_eq!(c.request(b"get k\r\n"), b"VALUE k 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn relay_stall_holds_bytes_and_connection_until_healed() {
    let mc = Server::memcached(&[]);
    let relay = Relay::to(mc.addr());
    let mut c = short_client(relay.addr(), Duration::from_millis(300));
    assert_eq!(c.request(b"version\r\n")[..8], *b"VERSION ");
    relay.stall();
    c.send(b"set s 0 0 2\r\nok\r\n");
    assert!(!c.is_closed(), "a stall keeps the connection open");
    assert!(c.pending().is_empty(), "a stall forwards nothing");
    let mut direct = mc.connect();
    assert_eq!(
        direct.request(b"get s\r\n"),
        b"END\r\n",
        "stalled bytes reached memcached"
    );
    relay.heal();
    c.set_read_timeout(Duration::from_secs(5));
    assert_eq!(c.read_line(), b"STORED\r\n");
    assert_eq!(
        direct.request(b"get s\r\n"),
        b"VALUE s 0 2\r\nok\r\nEND\r\n"
    );
}

#[test]
fn relay_one_way_forward_blackholes_replies_then_closes_on_heal() {
    let mc = Server::memcached(&[]);
    let relay = Relay::to(mc.addr());
    let mut c = short_client(relay.addr(), Duration::from_millis(300));
    assert_eq!(c.request(b"version\r\n")[..8], *b"VERSION ");
    relay.one_way(Dir::Forward);
    c.send(b"set f 0 0 1\r\n1\r\n");
    let mut direct = mc.connect();
    assert!(wait_for(Duration::from_secs(3), || direct
        .request(b"get f\r\n")
        == b"VALUE f 0 1\r\n1\r\nEND\r\n"));
    assert!(!c.is_closed(), "the reply must be blackholed, not closed");
    assert!(c.pending().is_empty());
    assert!(wait_for(Duration::from_secs(2), || relay
        .dropped(Dir::Backward)
        == b"STORED\r\n".len() as u64));
    relay.heal();
    c.set_read_timeout(Duration::from_secs(5));
    assert!(
        c.is_closed(),
        "a stream that lost bytes must be closed on heal"
    );
    assert!(c.pending().is_empty(), "no byte after the hole may arrive");
    let mut again = relay_client(&relay);
    assert_eq!(again.request(b"get f\r\n"), b"VALUE f 0 1\r\n1\r\nEND\r\n");
}

#[test]
fn relay_one_way_backward_blackholes_requests() {
    let mc = Server::memcached(&[]);
    let relay = Relay::to(mc.addr());
    let mut c = short_client(relay.addr(), Duration::from_millis(300));
    assert_eq!(c.request(b"version\r\n")[..8], *b"VERSION ");
    relay.one_way(Dir::Backward);
    let set = b"set b 0 0 1\r\n1\r\n";
    c.send(set);
    assert!(wait_for(Duration::from_secs(2), || relay
        .dropped(Dir::Forward)
        == set.len() as u64));
    assert!(!c.is_closed());
    let mut direct = mc.connect();
    assert_eq!(direct.request(b"get b\r\n"), b"END\r\n");
}

#[test]
fn relay_bounds_its_connections() {
    let mc = Server::memcached(&[]);
    let relay = Relay::to(mc.addr());
    let mut held: Vec<Client> = (0..support::relay::MAX_CONNS)
        .map(|_| {
            let mut c = relay_client(&relay);
            assert_eq!(c.request(b"version\r\n")[..8], *b"VERSION ");
            c
        })
        .collect();
    assert_eq!(relay.live(), support::relay::MAX_CONNS);
    let mut over = short_client(relay.addr(), Duration::from_secs(2));
    assert!(
        over.is_closed(),
        "a connection past the bound must be closed"
    );
    held.truncate(0);
    assert!(wait_for(Duration::from_secs(3), || relay.live() == 0));
    let mut c = relay_client(&relay);
    assert_eq!(c.request(b"version\r\n")[..8], *b"VERSION ");
}
