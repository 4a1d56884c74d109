//! Reserved items (`SlabEngine::reserve`): a value read piecewise into the item
//! that will hold it, then stored with the usual modes.

use std::sync::Arc;

// Page moves and per-class counts are the slab engine's own.
use mnemo_engine::slab::{Reserved, SlabEngine};
use mnemo_engine::{Config, GetMode, StoreMode, StoreOutcome, ThreadStats};

fn engine(cfg: Config) -> (Arc<SlabEngine>, Arc<ThreadStats>) {
    let e = SlabEngine::new(cfg).expect("config");
    let ts = e.new_thread_stats();
    (e, ts)
}

fn big() -> Config {
    Config {
        mem_limit: 64 << 20,
        item_size_max: 4 << 20,
        ..Config::default()
    }
}

fn get(e: &SlabEngine, ts: &ThreadStats, key: &[u8]) -> Option<(Vec<u8>, u32)> {
    e.get(key, GetMode::Get, ts, |it| {
        let mut v = Vec::new();
        it.write_value(&mut v);
        (v, it.flags())
    })
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 241) as u8))
        .collect()
}

/// Fills a reservation the way a socket would: at most `step` bytes at a
/// time into whatever `unfilled` offers.
fn fill(r: &mut Reserved, value: &[u8], step: usize) {
    let mut off = 0;
    while off < value.len() {
        let dst = r.unfilled(off);
        assert!(!dst.is_empty(), "room left at {off}");
        let n = dst.len().min(step).min(value.len() - off);
        dst[..n].copy_from_slice(&value[off..off + n]);
        off += n;
    }
    assert!(r.unfilled(off).is_empty(), "exactly the value's length");
}

fn slab_stat(e: &SlabEngine, name: &str) -> u64 {
    e.stats_slabs()
        .into_iter()
        .filter(|(k, _)| k.ends_with(&format!(":{name}")))
        .map(|(_, v)| v.parse::<u64>().expect("number"))
        .sum()
}

#[test]
fn values_of_every_shape_arrive_whole() {
    let (e, ts) = engine(big());
    // Unchained, chained over several chunks, empty.
    for (i, len) in [(0u8, 100_000usize), (1, 1_500_000), (2, 0), (3, 17)] {
        let key = format!("k{i}");
        let v = pattern(i, len);
        let mut r = e
            .reserve(StoreMode::Set, key.as_bytes(), 7, 0, len)
            .expect("reserve");
        assert_eq!(r.len(), len);
        fill(&mut r, &v, 4093);
        let out = e.store_reserved(StoreMode::Set, key.as_bytes(), r, 0, &ts);
        assert!(matches!(out, StoreOutcome::Stored { .. }), "{out:?}");
        assert_eq!(get(&e, &ts, key.as_bytes()), Some((v, 7)));
    }
    assert_eq!(e.count_linked(), 4);
}

#[test]
fn modes_behave_as_with_a_plain_store() {
    let (e, ts) = engine(big());
    let reserve = |mode, val: &[u8]| {
        let mut r = e.reserve(mode, b"k", 1, 0, val.len()).expect("reserve");
        fill(&mut r, val, 1000);
        r
    };
    let v1 = pattern(1, 40_000);
    let r = reserve(StoreMode::Replace, &v1);
    assert_eq!(
        e.store_reserved(StoreMode::Replace, b"k", r, 0, &ts),
        StoreOutcome::NotStored
    );
    let r = reserve(StoreMode::Add, &v1);
    let StoreOutcome::Stored { cas } = e.store_reserved(StoreMode::Add, b"k", r, 0, &ts) else {
        panic!("add of a new key stores");
    };
    let r = reserve(StoreMode::Add, b"x");
    assert_eq!(
        e.store_reserved(StoreMode::Add, b"k", r, 0, &ts),
        StoreOutcome::NotStored
    );
    let r = reserve(StoreMode::Cas, b"y");
    assert_eq!(
        e.store_reserved(StoreMode::Cas, b"k", r, cas + 1, &ts),
        StoreOutcome::Exists
    );
    let tail = pattern(9, 30_000);
    let r = reserve(StoreMode::Append, &tail);
    assert!(matches!(
        e.store_reserved(StoreMode::Append, b"k", r, 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    let head = b"head:".to_vec();
    let r = reserve(StoreMode::Prepend, &head);
    assert!(matches!(
        e.store_reserved(StoreMode::Prepend, b"k", r, 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    let want: Vec<u8> = [&head[..], &v1, &tail].concat();
    // append/prepend keep the old item's flags, as memcached does.
    assert_eq!(get(&e, &ts, b"k"), Some((want, 1)));
    assert_eq!(e.count_linked(), 1);
    assert_eq!(e.stats().curr_items, 1);
}

#[test]
fn a_dropped_reservation_gives_its_memory_back() {
    let (e, ts) = engine(big());
    let free_before = slab_stat(&e, "free_chunks");
    let r = e
        .reserve(StoreMode::Set, b"gone", 0, 0, 900_000)
        .expect("reserve");
    let taken = slab_stat(&e, "used_chunks");
    assert!(taken >= 2, "a chained reservation holds chunks: {taken}");
    drop(r);
    assert_eq!(slab_stat(&e, "used_chunks"), 0);
    assert!(slab_stat(&e, "free_chunks") >= free_before + taken);
    assert_eq!(get(&e, &ts, b"gone"), None);
}

#[test]
fn reservations_count_against_the_memory_limit() {
    // -M: no eviction, so reservations run out of memory as stores do.
    let (e, ts) = engine(Config {
        mem_limit: 8 << 20,
        item_size_max: 1 << 20,
        evict_to_free: false,
        ..Config::default()
    });
    let mut held = Vec::new();
    let refused = loop {
        match e.reserve(StoreMode::Set, b"k", 0, 0, 300_000) {
            Ok(r) => held.push(r),
            Err(out) => break out,
        }
        assert!(
            held.len() < 64,
            "8 MB cannot hold 64 reservations of 300 KB"
        );
    };
    assert_eq!(refused, StoreOutcome::OutOfMemory);
    assert!(held.len() >= 10, "only {} reserved", held.len());
    // A plain store of the same size is refused too while they are held...
    let v = pattern(3, 300_000);
    assert_eq!(
        e.store(StoreMode::Set, b"other", 0, 0, &v, 0, &ts),
        StoreOutcome::OutOfMemory
    );
    // ...and succeeds once they are released.
    held.clear();
    assert!(matches!(
        e.store(StoreMode::Set, b"other", 0, 0, &v, 0, &ts),
        StoreOutcome::Stored { .. }
    ));
}

#[test]
fn a_failed_set_reservation_drops_the_old_value() {
    let (e, ts) = engine(big());
    e.store(StoreMode::Set, b"k", 0, 0, b"old", 0, &ts);
    assert_eq!(
        e.reserve(StoreMode::Set, b"k", 0, 0, 5 << 20).err(),
        Some(StoreOutcome::TooLarge)
    );
    assert_eq!(
        get(&e, &ts, b"k"),
        None,
        "memcached unlinks on a failed set"
    );
    e.store(StoreMode::Set, b"k", 0, 0, b"old", 0, &ts);
    assert_eq!(
        e.reserve(StoreMode::Add, b"k", 0, 0, 5 << 20).err(),
        Some(StoreOutcome::TooLarge)
    );
    assert!(get(&e, &ts, b"k").is_some(), "other modes leave it");
}

#[test]
fn the_page_mover_waits_for_a_reservation() {
    let (e, ts) = engine(big());
    let v = pattern(5, 200_000);
    let mut r = e
        .reserve(StoreMode::Set, b"k", 0, 0, v.len())
        .expect("reserve");
    r.unfilled(0)[..1000].copy_from_slice(&v[..1000]);
    let class = {
        e.store(StoreMode::Set, b"probe", 0, 0, &v, 0, &ts);
        let c = e
            .get(b"probe", GetMode::Get, &ts, |it| it.class_id())
            .expect("hit");
        e.delete(b"probe", &ts);
        c
    };
    // The probe's chunk is free; the reservation's is not.
    assert!(
        !e.move_page_now(class, 0),
        "the reserved chunk's page must stay"
    );
    let mut rest = 1000;
    while rest < v.len() {
        let dst = r.unfilled(rest);
        let n = dst.len().min(v.len() - rest);
        dst[..n].copy_from_slice(&v[rest..rest + n]);
        rest += n;
    }
    assert!(matches!(
        e.store_reserved(StoreMode::Set, b"k", r, 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    // Linked now: the mover can rescue or evict it.
    assert!(e.move_page_now(class, 0));
    assert_eq!(slab_stat(&e, "total_pages"), 0);
    assert!(get(&e, &ts, b"k").map(|(b, _)| b == v).unwrap_or(true));
}
