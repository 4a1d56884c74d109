//! Unit tests of the segment engine: semantics against what the slab
//! engine does, eviction, merging, expiry, pins and reservations, and the
//! accounting under all of them.

use std::sync::Arc;

use super::SegmentEngine;
use crate::config::Config;
use crate::ops::{ArithOutcome, GetMode, StoreMode, StoreOutcome};
use crate::stats::ThreadStats;

fn engine(mem_mb: usize) -> Arc<SegmentEngine> {
    SegmentEngine::new(Config {
        mem_limit: mem_mb << 20,
        ..Config::default()
    })
    .unwrap()
}

fn get(e: &SegmentEngine, ts: &ThreadStats, k: &[u8]) -> Option<(Vec<u8>, u32, u64)> {
    e.get(k, GetMode::Get, ts, |it| {
        (it.value().to_vec(), it.flags(), it.cas())
    })
}

fn set(e: &SegmentEngine, ts: &ThreadStats, k: &[u8], v: &[u8]) -> StoreOutcome {
    e.store(StoreMode::Set, k, 0, 0, v, 0, ts)
}

#[test]
fn store_modes_flags_and_cas() {
    let e = engine(8);
    let ts = e.new_thread_stats();
    let StoreOutcome::Stored { cas: c1 } = e.store(StoreMode::Set, b"a", 7, 0, b"one", 0, &ts)
    else {
        panic!()
    };
    assert_eq!(get(&e, &ts, b"a"), Some((b"one".to_vec(), 7, c1)));
    assert_eq!(
        e.store(StoreMode::Add, b"a", 0, 0, b"x", 0, &ts),
        StoreOutcome::NotStored
    );
    assert_eq!(
        e.store(StoreMode::Replace, b"b", 0, 0, b"x", 0, &ts),
        StoreOutcome::NotStored
    );
    assert_eq!(
        e.store(StoreMode::Cas, b"a", 0, 0, b"x", c1 + 100, &ts),
        StoreOutcome::Exists
    );
    assert_eq!(
        e.store(StoreMode::Cas, b"zz", 0, 0, b"x", 1, &ts),
        StoreOutcome::NotFound
    );
    let StoreOutcome::Stored { cas: c2 } = e.store(StoreMode::Cas, b"a", 3, 0, b"two", c1, &ts)
    else {
        panic!()
    };
    assert!(c2 > c1);
    assert!(matches!(
        e.store(StoreMode::Append, b"a", 0, 0, b"!", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    assert!(matches!(
        e.store(StoreMode::Prepend, b"a", 0, 0, b"<", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    let (v, f, _) = get(&e, &ts, b"a").unwrap();
    assert_eq!((v.as_slice(), f), (&b"<two!"[..], 3));
    assert_eq!(
        e.store(StoreMode::Append, b"nope", 0, 0, b"!", 0, &ts),
        StoreOutcome::NotStored
    );
    assert!(e.delete(b"a", &ts));
    assert!(!e.delete(b"a", &ts));
    assert_eq!(get(&e, &ts, b"a"), None);
    e.check_invariants().unwrap();
}

#[test]
fn arithmetic_pads_as_memcached() {
    let e = engine(8);
    let ts = e.new_thread_stats();
    set(&e, &ts, b"n", b"10");
    assert_eq!(e.arith(b"n", false, 1, &ts), ArithOutcome::Value(9));
    assert_eq!(get(&e, &ts, b"n").unwrap().0, b"9 ");
    assert_eq!(e.arith(b"n", true, 991, &ts), ArithOutcome::Value(1000));
    assert_eq!(get(&e, &ts, b"n").unwrap().0, b"1000");
    assert_eq!(e.arith(b"x", true, 1, &ts), ArithOutcome::NotFound);
    set(&e, &ts, b"s", b"abc");
    assert_eq!(e.arith(b"s", true, 1, &ts), ArithOutcome::NonNumeric);
    set(&e, &ts, b"z", b"00000000000000000000000000001");
    assert_eq!(e.arith(b"z", true, 1, &ts), ArithOutcome::Value(2));
    assert_eq!(get(&e, &ts, b"z").unwrap().0.len(), 29);
    e.check_invariants().unwrap();
}

#[test]
fn touch_moves_an_object_without_expiry_field() {
    let e = engine(8);
    let ts = e.new_thread_stats();
    set(&e, &ts, b"k", b"v");
    let cas = get(&e, &ts, b"k").unwrap().2;
    assert!(e.touch(b"k", 100, &ts));
    let (v, _, c) = get(&e, &ts, b"k").unwrap();
    assert_eq!((v.as_slice(), c), (&b"v"[..], cas));
    assert_eq!(
        e.get(b"k", GetMode::Get, &ts, |it| it.exptime()),
        Some(e.clock.now() + 100)
    );
    e.clock.advance(101);
    assert_eq!(get(&e, &ts, b"k"), None);
    e.check_invariants().unwrap();
}

#[test]
fn flush_all_hides_older_items() {
    let e = engine(8);
    let ts = e.new_thread_stats();
    set(&e, &ts, b"a", b"1");
    e.flush_all(0);
    assert_eq!(get(&e, &ts, b"a"), None);
    set(&e, &ts, b"b", b"2");
    assert!(get(&e, &ts, b"b").is_some());
    e.flush_all(10);
    assert!(get(&e, &ts, b"b").is_some());
    e.clock.advance(11);
    assert_eq!(get(&e, &ts, b"b"), None);
}

fn val(i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{i}:").into_bytes();
    v.resize(len, (i % 251) as u8);
    v
}

#[test]
fn eviction_keeps_accounting_exact_and_values_right() {
    let e = engine(4);
    let ts = e.new_thread_stats();
    for i in 0..60_000u64 {
        let k = format!("key{i}");
        assert!(matches!(
            set(&e, &ts, k.as_bytes(), &val(i, 100 + (i % 50) as usize)),
            StoreOutcome::Stored { .. }
        ));
        if i % 7 == 0 {
            let j = i / 2;
            if let Some((v, ..)) = get(&e, &ts, format!("key{j}").as_bytes()) {
                assert_eq!(v, val(j, 100 + (j % 50) as usize));
            }
        }
    }
    e.check_invariants().unwrap();
    let s = e.stats();
    assert!(s.items.evicted > 0);
    assert!(s.curr_items > 8_000, "{}", s.curr_items);
    for i in 0..60_000u64 {
        if let Some((v, ..)) = get(&e, &ts, format!("key{i}").as_bytes()) {
            assert_eq!(v, val(i, 100 + (i % 50) as usize));
        }
    }
}

#[test]
fn merge_keeps_read_objects() {
    let e = engine(4);
    let ts = e.new_thread_stats();
    let hot: Vec<u64> = (0..2000).map(|i| i * 7).collect();
    for i in 0..200_000u64 {
        set(&e, &ts, format!("key{i}").as_bytes(), &val(i, 60));
        if i % 4 == 0 {
            let h = hot[(i as usize / 4) % hot.len()];
            if h < i {
                get(&e, &ts, format!("key{h}").as_bytes());
            }
        }
    }
    e.check_invariants().unwrap();
    let kept = hot
        .iter()
        .filter(|&&h| get(&e, &ts, format!("key{h}").as_bytes()).is_some())
        .count();
    assert!(
        kept > hot.len() * 9 / 10,
        "{kept} of {} hot keys kept",
        hot.len()
    );
    let merges = e.c.merges.load(std::sync::atomic::Ordering::Relaxed);
    assert!(merges > 0);
}

#[test]
fn expired_segments_are_dropped_whole() {
    let e = engine(8);
    let ts = e.new_thread_stats();
    for i in 0..20_000u64 {
        e.store(
            StoreMode::Set,
            format!("t{i}").as_bytes(),
            0,
            5,
            &val(i, 100),
            0,
            &ts,
        );
    }
    set(&e, &ts, b"forever", b"x");
    let free_before = e.segs.free_count();
    e.clock.advance(6);
    assert!(e.expire_segments(e.clock.now()) > 0);
    assert!(e.segs.free_count() > free_before);
    assert_eq!(get(&e, &ts, b"forever").unwrap().0, b"x");
    assert_eq!(get(&e, &ts, b"t5"), None);
    e.check_invariants().unwrap();
}

#[test]
fn pinned_value_survives_overwrite_and_eviction() {
    let e = engine(4);
    let ts = e.new_thread_stats();
    set(&e, &ts, b"p", &val(1, 5000));
    let pin = e
        .get(b"p", GetMode::Get, &ts, |it| it.pin())
        .unwrap()
        .unwrap();
    set(&e, &ts, b"p", b"new");
    for i in 0..100_000u64 {
        set(&e, &ts, format!("key{i}").as_bytes(), &val(i, 200));
    }
    let mut got = Vec::new();
    pin.for_each_part(|p| got.extend_from_slice(p));
    assert_eq!(got, val(1, 5000));
    e.check_invariants().unwrap();
    let free = e.segs.free_count();
    drop(pin);
    assert!(e.segs.free_count() >= free);
}

#[test]
fn abandoned_reservations_leak_nothing() {
    let e = engine(4);
    let ts = e.new_thread_stats();
    for i in 0..2000u64 {
        let mut r = e
            .reserve(StoreMode::Set, format!("r{i}").as_bytes(), 0, 0, 10_000)
            .unwrap();
        r.unfilled(0)[..3].copy_from_slice(b"abc");
        if i % 2 == 0 {
            drop(r);
        } else {
            assert!(matches!(
                e.store_reserved(StoreMode::Set, format!("r{i}").as_bytes(), r, 0, &ts),
                StoreOutcome::Stored { .. }
            ));
        }
    }
    e.check_invariants().unwrap();
    // Everything reserved was given up or stored: every sealed segment
    // can go, so memory keeps coming back.
    for s in e.segs.segs.iter() {
        assert_eq!(s.pending.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}

#[test]
fn no_evict_refuses_when_full() {
    let e = SegmentEngine::new(Config {
        mem_limit: 4 << 20,
        evict_to_free: false,
        ..Config::default()
    })
    .unwrap();
    let ts = e.new_thread_stats();
    let mut oom = false;
    for i in 0..100_000u64 {
        match set(&e, &ts, format!("key{i}").as_bytes(), &val(i, 200)) {
            StoreOutcome::OutOfMemory => {
                oom = true;
                break;
            }
            StoreOutcome::Stored { .. } => {}
            o => panic!("{o:?}"),
        }
    }
    assert!(oom);
    assert!(get(&e, &ts, b"key0").is_some());
    // After a flush, dead segments are reclaimed for new writes.
    e.flush_all(0);
    e.clock.advance(1);
    assert!(matches!(
        set(&e, &ts, b"after", b"x"),
        StoreOutcome::Stored { .. }
    ));
    e.check_invariants().unwrap();
}

#[test]
fn threads_share_the_engine() {
    let e = engine(4);
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                let ts = e.new_thread_stats();
                for i in 0..30_000u64 {
                    let k = format!("k{}", (i * 4 + t) % 20_000);
                    match i % 5 {
                        0 => {
                            e.arith(k.as_bytes(), true, 1, &ts);
                        }
                        1 => {
                            e.store(StoreMode::Append, k.as_bytes(), 0, 0, b"1", 0, &ts);
                        }
                        2 => {
                            if let Some(p) = e.get(k.as_bytes(), GetMode::Get, &ts, |it| it.pin()) {
                                drop(p);
                            }
                        }
                        _ => {
                            set(&e, &ts, k.as_bytes(), &val(i, 150));
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    e.check_invariants().unwrap();
    assert_eq!(e.pinned_items(), 0);
}

#[test]
fn overwrites_are_compacted_not_evicted_while_live_data_is_small() {
    let e = engine(8);
    let ts = e.new_thread_stats();
    // 200 keys of 1-20 KB (about 2 MB live) rewritten many times over
    // 8 MB: garbage must be reclaimed without losing a key.
    let size = |i: u64| 1000 + (i * 97) % 20_000;
    for round in 0..60u64 {
        for i in 0..200u64 {
            let k = format!("k{i}");
            set(&e, &ts, k.as_bytes(), &val(i + round, size(i) as usize));
        }
    }
    for i in 0..200u64 {
        let (v, ..) = get(&e, &ts, format!("k{i}").as_bytes()).expect("no key lost");
        assert_eq!(v, val(i + 59, size(i) as usize));
    }
    assert_eq!(e.stats().items.evicted, 0);
    assert!(e.c.compactions.load(std::sync::atomic::Ordering::Relaxed) > 0);
    e.check_invariants().unwrap();
}

/// Replication's versioned `flush_all`: what was written before the
/// barrier's version is gone, a write after it stays, and the barrier
/// never goes back down.
#[test]
fn versioned_flush_kills_older_items_only() {
    use crate::apply::ApplyOutcome;
    use crate::version::{NodeId, Version};
    let e = engine(8);
    let ts = e.new_thread_stats();
    assert_eq!(e.apply_flush(Version(1)), ApplyOutcome::NotEnabled);
    assert!(e.enable_versions(NodeId::new(3).unwrap()));
    assert!(matches!(
        set(&e, &ts, b"old", b"1"),
        StoreOutcome::Stored { .. }
    ));
    let barrier = Version(e.next_cas());
    assert!(matches!(
        set(&e, &ts, b"new", b"2"),
        StoreOutcome::Stored { .. }
    ));
    assert_eq!(e.apply_flush(barrier), ApplyOutcome::Applied);
    assert_eq!(get(&e, &ts, b"old"), None);
    assert_eq!(get(&e, &ts, b"new").map(|g| g.0), Some(b"2".to_vec()));
    assert_eq!(e.apply_flush(Version(1)), ApplyOutcome::Applied);
    assert_eq!(get(&e, &ts, b"new").map(|g| g.0), Some(b"2".to_vec()));
}
