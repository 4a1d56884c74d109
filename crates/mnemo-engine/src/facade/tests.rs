//! The facade builds the engine the configuration names and passes calls and handles through unchanged.

use super::*;

#[test]
fn default_config_builds_the_slab_engine() {
    let e = Engine::new(Config::default()).expect("engine");
    assert_eq!(e.kind(), EngineKind::Slab);
    assert!(e.as_slab().is_some());
}

#[test]
fn segment_config_builds_the_segment_engine() {
    let e = Engine::new(Config {
        engine: EngineKind::Segment,
        ..Config::default()
    })
    .expect("engine");
    assert_eq!(e.kind(), EngineKind::Segment);
    let ts = e.new_thread_stats();
    assert!(matches!(
        e.store(StoreMode::Set, b"k", 3, 0, b"v", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    assert_eq!(
        e.get(b"k", GetMode::Get, &ts, |it| (it.flags(), it.value_len())),
        Some((3, 1))
    );
}

#[test]
fn handles_pass_through() {
    let e = Engine::new(Config {
        item_size_max: 4 << 20,
        ..Config::default()
    })
    .expect("engine");
    let ts = e.new_thread_stats();
    let big = vec![7u8; 3 << 20];
    let mut r = e
        .reserve(StoreMode::Set, b"k", 5, 0, big.len())
        .expect("reserved");
    let mut off = 0;
    while off < big.len() {
        let room = r.unfilled(off);
        let n = room.len();
        room.copy_from_slice(&big[off..off + n]);
        off += n;
    }
    assert!(matches!(
        e.store_reserved(StoreMode::Set, b"k", r, 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    let pinned = e
        .get(b"k", GetMode::Get, &ts, |it| {
            assert_eq!(
                (it.key(), it.flags(), it.value_len()),
                (&b"k"[..], 5, big.len())
            );
            it.pin()
        })
        .flatten()
        .expect("pinned");
    assert_eq!(e.pinned_items(), 1);
    let mut slot = e.lock_key(b"k", &ts);
    assert!(slot.exists());
    assert!(slot.delete());
    drop(slot);
    let mut got = Vec::new();
    pinned.for_each_part(|p| got.extend_from_slice(p));
    assert!(got == big, "a pin keeps the value past its delete");
    drop(pinned);
    assert_eq!(e.pinned_items(), 0);
    e.check_invariants().expect("consistent");
}
