//! Apply-if-newer against a real engine: newer wins, older and equal are
//! dropped, local writes after a peer's are newer, flush barriers and
//! deletes hold, and versions stay off unless enabled.

use super::*;
use crate::version::{EPOCH_UNIX_MS, MAX_DRIFT_MS};
use crate::{Config, GetMode, StoreOutcome};
use std::sync::Arc;

fn node(n: u8) -> NodeId {
    NodeId::new(n).unwrap()
}

fn engine(n: u8) -> (Arc<Engine>, Arc<ThreadStats>) {
    let e = Engine::new(Config::default()).unwrap();
    assert!(e.enable_versions(node(n)));
    let ts = e.new_thread_stats();
    (e, ts)
}

/// A version of node `n`, `ahead_ms` from now (negative: in the past).
fn ver(ahead_ms: i64, n: u8) -> Version {
    let ms = (wall_unix_ms() - EPOCH_UNIX_MS).saturating_add_signed(ahead_ms);
    Version::pack(ms, 0, node(n))
}

fn read(e: &Engine, ts: &ThreadStats, key: &[u8]) -> Option<(Vec<u8>, u32, u64)> {
    e.get(key, GetMode::Get, ts, |i| {
        let mut v = Vec::new();
        i.write_value(&mut v);
        (v, i.flags(), i.cas())
    })
}

#[test]
fn versions_are_off_until_enabled_and_refused_without_cas() {
    let e = Engine::new(Config::default()).unwrap();
    let ts = e.new_thread_stats();
    assert_eq!(
        e.store(StoreMode::Set, b"k", 0, 0, b"v", 0, &ts),
        StoreOutcome::Stored { cas: 1 }
    );
    assert_eq!(
        e.apply_versioned(b"k", ver(0, 2), 0, 0, b"x", &ts),
        ApplyOutcome::NotEnabled
    );
    assert!(e.versions().is_none());
    let no_cas = Engine::new(Config {
        use_cas: false,
        ..Config::default()
    })
    .unwrap();
    assert!(!no_cas.enable_versions(node(1)));
    // Enabled once only; versions resume above the counter.
    assert!(e.enable_versions(node(1)));
    assert!(!e.enable_versions(node(2)));
    let StoreOutcome::Stored { cas } = e.store(StoreMode::Set, b"k", 0, 0, b"v", 0, &ts) else {
        panic!()
    };
    assert_eq!(Version(cas).node(), Some(node(1)));
    assert!(cas > 1);
}

#[test]
fn newer_applies_older_and_equal_are_stale() {
    let (e, ts) = engine(1);
    let v1 = ver(-1000, 2);
    let v2 = ver(-500, 3);
    assert_eq!(
        e.apply_versioned(b"k", v1, 7, 0, b"one", &ts),
        ApplyOutcome::Applied
    );
    assert_eq!(read(&e, &ts, b"k"), Some((b"one".to_vec(), 7, v1.0)));
    assert_eq!(
        e.apply_versioned(b"k", v2, 8, 0, b"two", &ts),
        ApplyOutcome::Applied
    );
    assert_eq!(
        e.apply_versioned(b"k", v1, 7, 0, b"one", &ts),
        ApplyOutcome::Stale
    );
    assert_eq!(
        e.apply_versioned(b"k", v2, 9, 0, b"dup", &ts),
        ApplyOutcome::Stale
    );
    assert_eq!(read(&e, &ts, b"k"), Some((b"two".to_vec(), 8, v2.0)));
}

#[test]
fn a_local_write_after_a_peers_is_newer_even_if_the_peer_runs_ahead() {
    let (e, ts) = engine(1);
    let ahead = ver(30_000, 200);
    assert_eq!(
        e.apply_versioned(b"k", ahead, 0, 0, b"peer", &ts),
        ApplyOutcome::Applied
    );
    let StoreOutcome::Stored { cas } = e.store(StoreMode::Set, b"k", 0, 0, b"mine", 0, &ts) else {
        panic!()
    };
    assert!(cas > ahead.0);
    // And a `cas` against the peer's version fails once it changed.
    assert_eq!(
        e.store(StoreMode::Cas, b"k", 0, 0, b"x", ahead.0, &ts),
        StoreOutcome::Exists
    );
}

#[test]
fn a_version_too_far_ahead_changes_nothing() {
    let (e, ts) = engine(1);
    let far = ver(MAX_DRIFT_MS as i64 + 10_000, 2);
    assert!(matches!(
        e.apply_versioned(b"k", far, 0, 0, b"x", &ts),
        ApplyOutcome::Skew(_)
    ));
    assert!(matches!(
        e.delete_versioned(b"k", far, &ts),
        ApplyOutcome::Skew(_)
    ));
    assert_eq!(read(&e, &ts, b"k"), None);
}

#[test]
fn deletes_remove_only_older_items() {
    let (e, ts) = engine(1);
    let (v1, v2, v3) = (ver(-3000, 2), ver(-2000, 3), ver(-1000, 2));
    e.apply_versioned(b"k", v2, 0, 0, b"x", &ts);
    assert_eq!(e.delete_versioned(b"k", v1, &ts), ApplyOutcome::Stale);
    assert!(read(&e, &ts, b"k").is_some());
    assert_eq!(e.delete_versioned(b"k", v3, &ts), ApplyOutcome::Applied);
    assert_eq!(read(&e, &ts, b"k"), None);
}

#[test]
fn a_flush_barrier_hides_older_versions_that_arrive_later() {
    let (e, ts) = engine(1);
    let before = ver(-5000, 2);
    e.flush_all(0);
    assert_eq!(
        e.apply_versioned(b"old", before, 0, 0, b"x", &ts),
        ApplyOutcome::Applied
    );
    assert_eq!(read(&e, &ts, b"old"), None);
    let after = e.versions().unwrap().next(wall_unix_ms());
    let after = Version::pack(after.ms(), after.counter(), node(2));
    assert_eq!(
        e.apply_versioned(b"new", after, 0, 0, b"y", &ts),
        ApplyOutcome::Applied
    );
    assert!(read(&e, &ts, b"new").is_some());
}

#[test]
fn expiry_travels_as_an_absolute_time() {
    let (e, ts) = engine(1);
    let now = e.clock.unix_now();
    e.apply_versioned(b"live", ver(-10, 2), 0, now + 3600, b"x", &ts);
    e.apply_versioned(b"dead", ver(-10, 2), 0, now.saturating_sub(3600), b"x", &ts);
    e.apply_versioned(b"huge", ver(-10, 2), 0, u64::MAX, b"x", &ts);
    assert!(read(&e, &ts, b"live").is_some());
    assert!(read(&e, &ts, b"dead").is_none());
    assert!(read(&e, &ts, b"huge").is_some());
    let exp = e.get(b"live", GetMode::Get, &ts, |i| i.exptime()).unwrap();
    assert_eq!(exp, e.clock.realtime((now + 3600) as i64));
}

#[test]
fn oversized_and_empty_keys_are_refused() {
    let (e, ts) = engine(1);
    let big = vec![0u8; 2 * 1024 * 1024];
    assert_eq!(
        e.apply_versioned(b"k", ver(0, 2), 0, 0, &big, &ts),
        ApplyOutcome::TooLarge
    );
    assert_eq!(
        e.apply_versioned(b"", ver(0, 2), 0, 0, b"x", &ts),
        ApplyOutcome::TooLarge
    );
}
