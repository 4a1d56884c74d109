//! Pinned values (`ItemRef::pin`): a reply holding an item's bytes sees
//! them whole and unchanged whatever happens to the key meanwhile, and the
//! memory comes back once the reply lets go.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

// Pins against page moves and per-class counts: the slab engine's own.
use mnemo_engine::slab::{Pinned, SlabEngine};
use mnemo_engine::{ArithOutcome, Config, GetMode, StoreMode, StoreOutcome, ThreadStats};

fn engine(mem_limit: usize) -> (Arc<SlabEngine>, Arc<ThreadStats>) {
    let e = SlabEngine::new(Config {
        mem_limit,
        item_size_max: 4 << 20,
        ..Config::default()
    })
    .expect("config");
    let ts = e.new_thread_stats();
    (e, ts)
}

fn set(e: &SlabEngine, ts: &ThreadStats, key: &[u8], val: &[u8]) {
    let r = e.store(StoreMode::Set, key, 0, 0, val, 0, ts);
    assert!(matches!(r, StoreOutcome::Stored { .. }), "{r:?}");
}

fn pin(e: &SlabEngine, ts: &ThreadStats, key: &[u8]) -> (Pinned, u32) {
    e.get(key, GetMode::Get, ts, |it| {
        (it.pin().expect("engine alive"), it.class_id())
    })
    .expect("hit")
}

fn bytes_of(p: &Pinned) -> Vec<u8> {
    let mut v = Vec::with_capacity(p.len());
    p.for_each_part(|s| v.extend_from_slice(s));
    v
}

fn get(e: &SlabEngine, ts: &ThreadStats, key: &[u8]) -> Option<Vec<u8>> {
    e.get(key, GetMode::Get, ts, |it| {
        let mut v = Vec::new();
        it.write_value(&mut v);
        v
    })
}

fn slab_stat(e: &SlabEngine, class: u32, name: &str) -> u64 {
    let key = format!("{class}:{name}");
    e.stats_slabs()
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.parse().expect("number"))
        .unwrap_or(0)
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add((i % 251) as u8))
        .collect()
}

#[test]
fn a_pinned_value_survives_delete_and_reuse_then_its_chunk_comes_back() {
    let (e, ts) = engine(64 << 20);
    let v1 = pattern(1, 100_000);
    set(&e, &ts, b"big", &v1);
    let (p, class) = pin(&e, &ts, b"big");
    assert_eq!(e.pinned_items(), 1);
    let free_before = slab_stat(&e, class, "free_chunks");
    assert!(e.delete(b"big", &ts));
    assert_eq!(get(&e, &ts, b"big"), None);
    // The deleted item's chunk is not free yet: nothing can overwrite it.
    assert_eq!(slab_stat(&e, class, "free_chunks"), free_before);
    for i in 0..(free_before + 4) {
        set(
            &e,
            &ts,
            format!("other{i}").as_bytes(),
            &pattern(2, 100_000),
        );
    }
    assert_eq!(bytes_of(&p), v1);
    drop(p);
    assert_eq!(e.pinned_items(), 0);
    // Now it is: one more free chunk than the sets above left.
    let free_after = slab_stat(&e, class, "free_chunks");
    e.delete(b"other0", &ts);
    assert_eq!(slab_stat(&e, class, "free_chunks"), free_after + 1);
    assert!(
        free_after >= 1,
        "the unpinned chunk went back to the free list"
    );
}

#[test]
fn overwrite_append_and_incr_leave_a_pinned_value_alone() {
    let (e, ts) = engine(64 << 20);
    set(&e, &ts, b"k", b"first value");
    let (p, _) = pin(&e, &ts, b"k");
    set(&e, &ts, b"k", b"second");
    let r = e.store(StoreMode::Append, b"k", 0, 0, b"+tail", 0, &ts);
    assert!(matches!(r, StoreOutcome::Stored { .. }), "{r:?}");
    assert_eq!(get(&e, &ts, b"k").as_deref(), Some(&b"second+tail"[..]));
    assert_eq!(bytes_of(&p), b"first value");
    drop(p);

    // incr rewrites small numbers in place, except while pinned.
    set(&e, &ts, b"n", b"100       ");
    let (p, _) = pin(&e, &ts, b"n");
    assert_eq!(e.arith(b"n", true, 5, &ts), ArithOutcome::Value(105));
    assert_eq!(bytes_of(&p), b"100       ");
    assert_eq!(get(&e, &ts, b"n").as_deref(), Some(&b"105"[..]));
    drop(p);
    // Unpinned, in place again: padded to the old length, as memcached does.
    assert_eq!(e.arith(b"n", true, 1, &ts), ArithOutcome::Value(106));
    assert_eq!(get(&e, &ts, b"n").as_deref(), Some(&b"106"[..]));
    let (p, _) = pin(&e, &ts, b"n");
    drop(p);
    assert_eq!(e.pinned_items(), 0);
}

#[test]
fn the_page_mover_waits_for_a_pinned_item() {
    let (e, ts) = engine(64 << 20);
    // Chained (bigger than the largest chunk) and plain.
    for (key, len) in [(&b"chained"[..], 700_000), (&b"plain"[..], 200_000)] {
        let v = pattern(3, len);
        set(&e, &ts, key, &v);
        let (p, class) = pin(&e, &ts, key);
        assert!(
            !e.move_page_now(class, 0),
            "the page holding a pinned item must not move"
        );
        assert_eq!(bytes_of(&p), v);
        assert_eq!(get(&e, &ts, key).as_deref(), Some(&v[..]));
        drop(p);
        assert!(e.move_page_now(class, 0), "moves once unpinned");
        assert_eq!(slab_stat(&e, class, "total_pages"), 0);
    }
}

#[test]
fn evicted_while_pinned_the_bytes_stay_whole() {
    // A small cache: sets evict the pinned item's key, its chunks wait.
    let (e, ts) = engine(4 << 20);
    let v = pattern(9, 300_000);
    set(&e, &ts, b"victim", &v);
    let (p, _) = pin(&e, &ts, b"victim");
    for i in 0..100u32 {
        let r = e.store(
            StoreMode::Set,
            format!("fill{i}").as_bytes(),
            0,
            0,
            &pattern(i as u8, 300_000),
            0,
            &ts,
        );
        assert!(
            matches!(r, StoreOutcome::Stored { .. } | StoreOutcome::OutOfMemory),
            "{r:?}"
        );
    }
    assert_eq!(get(&e, &ts, b"victim"), None, "evicted");
    assert_eq!(bytes_of(&p), v);
    drop(p);
    assert_eq!(e.pinned_items(), 0);
}

#[test]
fn readers_holding_pins_never_see_a_torn_value_under_writers() {
    let (e, _) = engine(32 << 20);
    let stop = Arc::new(AtomicBool::new(false));
    let keys: Vec<Vec<u8>> = (0..8).map(|i| format!("key{i}").into_bytes()).collect();
    // Every value is one byte repeated, its length a function of the byte.
    let value = |b: u8| vec![b; 20_000 + usize::from(b) * 37];
    let mut threads = Vec::new();
    for w in 0..2u8 {
        let (e, stop, keys) = (Arc::clone(&e), Arc::clone(&stop), keys.clone());
        threads.push(std::thread::spawn(move || {
            let ts = e.new_thread_stats();
            let mut b = w;
            while !stop.load(Relaxed) {
                for k in &keys {
                    b = b.wrapping_add(7);
                    if b % 5 == 0 {
                        e.delete(k, &ts);
                    } else {
                        set(&e, &ts, k, &value(b));
                    }
                }
            }
        }));
    }
    let ts = e.new_thread_stats();
    let mut held: Vec<Pinned> = Vec::new();
    let mut checked = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut round = 0usize;
    while checked < 2000 && std::time::Instant::now() < deadline {
        round += 1;
        let k = &keys[round % keys.len()];
        if let Some(p) = e.get(k, GetMode::Get, &ts, |it| it.pin().expect("alive")) {
            held.push(p);
        }
        // Hold a few pins across many writes, then check and release.
        if held.len() > 16 {
            for p in held.drain(..8) {
                let bytes = bytes_of(&p);
                let b = bytes[0];
                assert_eq!(bytes, value(b), "torn or reused value");
                checked += 1;
            }
        }
    }
    stop.store(true, Relaxed);
    for t in threads {
        t.join().expect("writer");
    }
    for p in held.drain(..) {
        let bytes = bytes_of(&p);
        assert_eq!(bytes, value(bytes[0]));
    }
    assert!(checked >= 200, "only {checked} pinned values checked");
    assert_eq!(e.pinned_items(), 0);
    assert_eq!(e.count_linked(), e.stats().curr_items);
}

/// A store that needs a page from another class while every page there
/// holds a pinned item must not wait for the pins: they are released by
/// the very worker thread that is storing (issue #15: a worker stalled
/// about a second per such store, found by the server's stress test).
/// Counted, not timed: each pass over a busy page counts its busy items.
#[test]
fn a_store_needing_a_page_does_not_wait_for_pinned_items() {
    let (e, ts) = engine(8 << 20);
    let big = pattern(7, 200_000);
    let mut keys = Vec::new();
    for i in 0.. {
        let key = format!("big{i}");
        if !matches!(
            e.store(StoreMode::Set, key.as_bytes(), 0, 0, &big, 0, &ts),
            StoreOutcome::Stored { .. }
        ) || e.stats().curr_items < keys.len() as u64 + 1
            || i > 200
        {
            break;
        }
        keys.push(key);
    }
    // Every item pinned, as by replies still being written.
    let pins: Vec<Pinned> = keys
        .iter()
        .filter_map(|k| {
            e.get(k.as_bytes(), GetMode::Get, &ts, |it| it.pin())
                .flatten()
        })
        .collect();
    assert!(!pins.is_empty());
    let busy_before = e.stats().slab_reassign_busy_items;
    // A small value: a class with no items, no free chunk and no page left.
    let r = e.store(StoreMode::Set, b"small", 0, 0, b"v", 0, &ts);
    let busy = e.stats().slab_reassign_busy_items - busy_before;
    assert!(
        busy <= pins.len() as u64,
        "the store waited for pinned items: {busy} busy sightings, {} pins ({r:?})",
        pins.len()
    );
    drop(pins);
    assert_eq!(e.pinned_items(), 0);
}
