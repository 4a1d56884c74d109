//! The engine through its public interface: the rules memcached users rely
//! on, memory bounds, and the consistency walk after every scenario.

use std::sync::Arc;

use mnemo_engine::{
    ArithOutcome, Config, Engine, GetMode, LruTuneError, StoreMode, StoreOutcome, ThreadStats,
};

fn engine(cfg: Config) -> (Arc<Engine>, Arc<ThreadStats>) {
    let e = Engine::new(cfg).expect("config");
    let ts = e.new_thread_stats();
    (e, ts)
}

fn small() -> (Arc<Engine>, Arc<ThreadStats>) {
    engine(Config::default())
}

fn get(e: &Engine, ts: &ThreadStats, key: &[u8]) -> Option<(Vec<u8>, u32, u64)> {
    e.get(key, GetMode::Get, ts, |it| {
        let mut v = Vec::new();
        it.write_value(&mut v);
        (v, it.flags(), it.cas())
    })
}

fn set(e: &Engine, ts: &ThreadStats, key: &[u8], val: &[u8]) -> StoreOutcome {
    e.store(StoreMode::Set, key, 0, 0, val, 0, ts)
}

#[test]
fn set_get_keeps_value_flags_and_unique_cas() {
    let (e, ts) = small();
    assert!(matches!(
        e.store(StoreMode::Set, b"a", 0xdead_beef, 0, b"hello", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    assert!(matches!(
        set(&e, &ts, b"b", b""),
        StoreOutcome::Stored { .. }
    ));
    let (v, f, c1) = get(&e, &ts, b"a").unwrap();
    assert_eq!((v.as_slice(), f), (&b"hello"[..], 0xdead_beef));
    let (v, f, c2) = get(&e, &ts, b"b").unwrap();
    assert_eq!((v.as_slice(), f), (&b""[..], 0));
    assert_ne!(c1, c2);
    assert!(get(&e, &ts, b"c").is_none());
    let s = e.stats();
    assert_eq!(
        (s.get_hits, s.get_misses, s.curr_items, s.total_items),
        (2, 1, 2, 2)
    );
    e.check_invariants().unwrap();
}

#[test]
fn add_replace_cas_follow_memcached() {
    let (e, ts) = small();
    assert_eq!(
        e.store(StoreMode::Replace, b"k", 0, 0, b"x", 0, &ts),
        StoreOutcome::NotStored
    );
    assert!(matches!(
        e.store(StoreMode::Add, b"k", 0, 0, b"1", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    assert_eq!(
        e.store(StoreMode::Add, b"k", 0, 0, b"2", 0, &ts),
        StoreOutcome::NotStored
    );
    assert!(matches!(
        e.store(StoreMode::Replace, b"k", 0, 0, b"3", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    let (_, _, cas) = get(&e, &ts, b"k").unwrap();
    assert_eq!(
        e.store(StoreMode::Cas, b"k", 0, 0, b"4", cas + 1, &ts),
        StoreOutcome::Exists
    );
    assert!(matches!(
        e.store(StoreMode::Cas, b"k", 0, 0, b"5", cas, &ts),
        StoreOutcome::Stored { .. }
    ));
    assert_eq!(
        e.store(StoreMode::Cas, b"k", 0, 0, b"6", cas, &ts),
        StoreOutcome::Exists
    );
    assert_eq!(
        e.store(StoreMode::Cas, b"nope", 0, 0, b"6", 1, &ts),
        StoreOutcome::NotFound
    );
    // A cas of 0 never matches (memcached's CAS_NONE is a bad value for cas).
    assert_eq!(
        e.store(StoreMode::Cas, b"k", 0, 0, b"7", 0, &ts),
        StoreOutcome::Exists
    );
    assert_eq!(get(&e, &ts, b"k").unwrap().0, b"5");
    let s = e.stats();
    assert_eq!((s.cas_hits, s.cas_badval, s.cas_misses), (1, 3, 1));
    e.check_invariants().unwrap();
}

#[test]
fn append_prepend_keep_flags_and_need_the_key() {
    let (e, ts) = small();
    assert_eq!(
        e.store(StoreMode::Append, b"k", 0, 0, b"x", 0, &ts),
        StoreOutcome::NotStored
    );
    e.store(StoreMode::Set, b"k", 7, 0, b"mid", 0, &ts);
    assert!(matches!(
        e.store(StoreMode::Append, b"k", 99, 0, b">>", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    assert!(matches!(
        e.store(StoreMode::Prepend, b"k", 99, 0, b"<<", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    let (v, f, _) = get(&e, &ts, b"k").unwrap();
    assert_eq!((v.as_slice(), f), (&b"<<mid>>"[..], 7));
    e.check_invariants().unwrap();
}

#[test]
fn incr_decr_wrap_floor_and_pad_in_place() {
    let (e, ts) = small();
    assert_eq!(e.arith(b"n", true, 1, &ts), ArithOutcome::NotFound);
    set(&e, &ts, b"n", b"100");
    assert_eq!(e.arith(b"n", false, 1, &ts), ArithOutcome::Value(99));
    // In place: the old length stays, padded with a space, as memcached does.
    assert_eq!(get(&e, &ts, b"n").unwrap().0, b"99 ");
    assert_eq!(e.arith(b"n", true, 901, &ts), ArithOutcome::Value(1000));
    assert_eq!(get(&e, &ts, b"n").unwrap().0, b"1000");
    assert_eq!(e.arith(b"n", false, 5000, &ts), ArithOutcome::Value(0));
    assert_eq!(get(&e, &ts, b"n").unwrap().0, b"0   ");
    set(&e, &ts, b"n", b"18446744073709551615");
    assert_eq!(e.arith(b"n", true, 2, &ts), ArithOutcome::Value(1));
    set(&e, &ts, b"s", b"12abc");
    assert_eq!(e.arith(b"s", true, 1, &ts), ArithOutcome::NonNumeric);
    set(&e, &ts, b"e", b"");
    assert_eq!(e.arith(b"e", true, 1, &ts), ArithOutcome::NonNumeric);
    let s = e.stats();
    assert_eq!((s.incr_misses, s.incr_hits, s.decr_hits), (1, 2, 2));
    e.check_invariants().unwrap();
}

#[test]
fn expiry_rules_relative_absolute_negative() {
    let (e, ts) = small();
    e.store(StoreMode::Set, b"rel", 0, 10, b"v", 0, &ts);
    e.store(StoreMode::Set, b"never", 0, 0, b"v", 0, &ts);
    e.store(StoreMode::Set, b"neg", 0, -1, b"v", 0, &ts);
    let abs = e.clock().unix_now() as i64 + 20;
    e.store(StoreMode::Set, b"abs", 0, abs, b"v", 0, &ts);
    assert!(get(&e, &ts, b"neg").is_none());
    assert!(get(&e, &ts, b"rel").is_some());
    e.clock().advance(11);
    assert!(get(&e, &ts, b"rel").is_none());
    assert!(get(&e, &ts, b"abs").is_some());
    e.clock().advance(10);
    assert!(get(&e, &ts, b"abs").is_none());
    assert!(get(&e, &ts, b"never").is_some());
    // touch and gat move the expiry.
    e.store(StoreMode::Set, b"t", 0, 5, b"v", 0, &ts);
    assert!(e.touch(b"t", 100, &ts));
    e.clock().advance(6);
    assert!(e.get(b"t", GetMode::Touch(1), &ts, |_| ()).is_some());
    e.clock().advance(2);
    assert!(get(&e, &ts, b"t").is_none());
    let s = e.stats();
    assert!(s.get_expired >= 3);
    // Lazily dropped items are not "reclaimed" (memory reused at allocation).
    assert_eq!(s.items.reclaimed, 0);
    e.check_invariants().unwrap();
}

#[test]
fn flush_all_now_and_delayed() {
    let (e, ts) = small();
    set(&e, &ts, b"a", b"1");
    e.flush_all(0);
    assert!(get(&e, &ts, b"a").is_none());
    set(&e, &ts, b"b", b"2");
    assert!(get(&e, &ts, b"b").is_some(), "stored after the flush");
    e.flush_all(10);
    set(&e, &ts, b"c", b"3");
    assert!(get(&e, &ts, b"b").is_some());
    e.clock().advance(11);
    assert!(get(&e, &ts, b"b").is_none());
    assert!(
        get(&e, &ts, b"c").is_none(),
        "stored before the delayed flush time"
    );
    set(&e, &ts, b"d", b"4");
    assert!(get(&e, &ts, b"d").is_some());
    e.check_invariants().unwrap();
}

#[test]
fn too_large_is_refused_and_removes_the_old_value() {
    let (e, ts) = small();
    set(&e, &ts, b"k", b"old");
    let big = vec![b'x'; 1024 * 1024];
    assert_eq!(set(&e, &ts, b"k", &big), StoreOutcome::TooLarge);
    assert!(get(&e, &ts, b"k").is_none());
    e.check_invariants().unwrap();
}

#[test]
fn chained_items_of_1mb_and_5mb_round_trip() {
    let (e, ts) = engine(Config {
        item_size_max: 8 * 1024 * 1024,
        ..Config::default()
    });
    for (k, n) in [
        (&b"one"[..], 1024 * 1024),
        (&b"five"[..], 5 * 1024 * 1024),
        (&b"edge"[..], 512 * 1024),
    ] {
        let v: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        assert!(
            matches!(set(&e, &ts, k, &v), StoreOutcome::Stored { .. }),
            "{n}"
        );
        assert_eq!(get(&e, &ts, k).unwrap().0, v, "{n}");
    }
    assert!(matches!(
        e.store(StoreMode::Append, b"one", 0, 0, b"tail", 0, &ts),
        StoreOutcome::Stored { .. }
    ));
    let v = get(&e, &ts, b"one").unwrap().0;
    assert_eq!(v.len(), 1024 * 1024 + 4);
    assert_eq!(&v[v.len() - 4..], b"tail");
    e.check_invariants().unwrap();
    assert!(e.delete(b"five", &ts));
    e.check_invariants().unwrap();
}

#[test]
fn memory_stays_within_the_limit_and_evicts_old_items() {
    let (e, ts) = engine(Config {
        mem_limit: 4 * 1024 * 1024,
        ..Config::default()
    });
    let v = [b'v'; 100];
    for i in 0..200_000u32 {
        // Same-length keys: one size class, so eviction order is visible.
        let k = format!("key:{i:06}");
        assert!(matches!(
            set(&e, &ts, k.as_bytes(), &v),
            StoreOutcome::Stored { .. }
        ));
    }
    let s = e.stats();
    assert!(s.total_malloced <= 4 * 1024 * 1024, "{}", s.total_malloced);
    assert!(s.items.evicted > 0);
    assert!(
        s.curr_items > 20_000 && s.curr_items < 200_000,
        "{}",
        s.curr_items
    );
    // The newest keys survive; the oldest were evicted.
    assert!(get(&e, &ts, b"key:199999").is_some());
    assert!(get(&e, &ts, b"key:000000").is_none());
    assert_eq!(e.count_linked(), s.curr_items);
    e.check_invariants().unwrap();
}

#[test]
fn no_evict_mode_answers_out_of_memory() {
    let (e, ts) = engine(Config {
        mem_limit: 2 * 1024 * 1024,
        evict_to_free: false,
        ..Config::default()
    });
    let v = [b'v'; 200];
    let mut oom = false;
    for i in 0..100_000u32 {
        match set(&e, &ts, format!("k{i}").as_bytes(), &v) {
            StoreOutcome::Stored { .. } => {}
            StoreOutcome::OutOfMemory => {
                oom = true;
                break;
            }
            o => panic!("{o:?}"),
        }
    }
    assert!(oom);
    assert_eq!(e.stats().items.evicted, 0);
    assert!(get(&e, &ts, b"k0").is_some());
    e.check_invariants().unwrap();
}

#[test]
fn a_new_size_class_gets_a_page_when_memory_is_full() {
    let (e, ts) = engine(Config {
        mem_limit: 2 * 1024 * 1024,
        ..Config::default()
    });
    for i in 0..50_000u32 {
        set(&e, &ts, format!("small{i}").as_bytes(), b"x");
    }
    let big = vec![b'b'; 5000];
    assert!(matches!(
        set(&e, &ts, b"big", &big),
        StoreOutcome::Stored { .. }
    ));
    assert_eq!(get(&e, &ts, b"big").unwrap().0, big);
    e.check_invariants().unwrap();
}

#[test]
fn slabs_reassign_moves_a_page_and_keeps_items_consistent() {
    let (e, ts) = engine(Config {
        mem_limit: 8 * 1024 * 1024,
        ..Config::default()
    });
    e.start();
    for i in 0..40_000u32 {
        set(&e, &ts, format!("a{i:06}").as_bytes(), &[b'a'; 50]);
    }
    let classes = e.stats_slabs();
    let src: i32 = classes[0].0.split(':').next().unwrap().parse().unwrap();
    let pages_of = |e: &Engine, id: i32| -> usize {
        e.stats_slabs()
            .iter()
            .find(|(k, _)| *k == format!("{id}:total_pages"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0)
    };
    let before = pages_of(&e, src);
    assert!(before >= 2);
    let dst = src + 5;
    e.slabs_reassign(src, dst).unwrap();
    for _ in 0..200 {
        if pages_of(&e, dst) == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(pages_of(&e, dst), 1);
    assert_eq!(pages_of(&e, src), before - 1);
    assert_eq!(e.stats().slabs_moved, 1);
    e.check_invariants().unwrap();
    assert_eq!(e.count_linked(), e.stats().curr_items);
    assert_eq!(
        e.slabs_reassign(src, src).unwrap_err().to_string(),
        "SAME src and dst class are identical"
    );
    assert_eq!(
        e.slabs_reassign(99, 1).unwrap_err().to_string(),
        "BADCLASS invalid src or dst class id"
    );
    e.shutdown();
}

#[test]
fn cache_memlimit_shrink_frees_pages() {
    let (e, ts) = engine(Config {
        mem_limit: 16 * 1024 * 1024,
        ..Config::default()
    });
    e.start();
    for i in 0..100_000u32 {
        set(&e, &ts, format!("k{i}").as_bytes(), &[b'v'; 100]);
    }
    assert!(e.stats().total_malloced > 8 * 1024 * 1024);
    e.set_mem_limit(8 * 1024 * 1024).unwrap();
    for _ in 0..500 {
        if e.stats().total_malloced <= 8 * 1024 * 1024 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(e.stats().total_malloced <= 8 * 1024 * 1024);
    e.check_invariants().unwrap();
    e.shutdown();
}

#[test]
fn crawler_reclaims_expired_items() {
    // Without the maintainer, which would also reclaim expired tails.
    let (e, ts) = engine(Config {
        lru_maintainer: false,
        ..Config::default()
    });
    e.start();
    for i in 0..1000u32 {
        e.store(
            StoreMode::Set,
            format!("t{i}").as_bytes(),
            0,
            2,
            b"v",
            0,
            &ts,
        );
    }
    e.clock().advance(3);
    e.lru_crawler_crawl("all").unwrap();
    for _ in 0..300 {
        if e.stats().curr_items == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let s = e.stats();
    assert_eq!(s.curr_items, 0);
    assert_eq!(s.items.crawler_reclaimed, 1000);
    e.check_invariants().unwrap();
    e.shutdown();
}

#[test]
fn metadump_lists_live_items() {
    let (e, ts) = small();
    set(&e, &ts, b"a b", b"1");
    let mut keys = Vec::new();
    e.lru_crawler_metadump(mnemo_engine::MetadumpTarget::All, |r| {
        assert_eq!(r.exptime, None);
        assert!(!r.fetched);
        assert_eq!(r.value_len, 1);
        keys.push(r.key.to_vec());
    })
    .unwrap();
    assert_eq!(keys, [b"a b".to_vec()]);
}

#[test]
fn many_threads_lose_no_update() {
    let (e, _) = engine(Config {
        mem_limit: 64 * 1024 * 1024,
        ..Config::default()
    });
    let ts = e.new_thread_stats();
    for k in 0..4 {
        set(&e, &ts, format!("ctr{k}").as_bytes(), b"0");
        set(&e, &ts, format!("cas{k}").as_bytes(), b"0");
        set(&e, &ts, format!("app{k}").as_bytes(), b"");
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                let ts = e.new_thread_stats();
                for i in 0..2000 {
                    let k = i % 4;
                    assert!(matches!(
                        e.arith(format!("ctr{k}").as_bytes(), true, 1, &ts),
                        ArithOutcome::Value(_)
                    ));
                    loop {
                        let key = format!("cas{k}");
                        let (v, _, cas) = get(&e, &ts, key.as_bytes()).unwrap();
                        let n: u64 = std::str::from_utf8(&v).unwrap().trim().parse().unwrap();
                        let nv = (n + 1).to_string();
                        match e.store(
                            StoreMode::Cas,
                            key.as_bytes(),
                            0,
                            0,
                            nv.as_bytes(),
                            cas,
                            &ts,
                        ) {
                            StoreOutcome::Stored { .. } => break,
                            StoreOutcome::Exists => continue,
                            o => panic!("{o:?}"),
                        }
                    }
                    e.store(
                        StoreMode::Append,
                        format!("app{k}").as_bytes(),
                        0,
                        0,
                        &[b'a' + t as u8],
                        0,
                        &ts,
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for k in 0..4 {
        let ctr = get(&e, &ts, format!("ctr{k}").as_bytes()).unwrap().0;
        assert_eq!(std::str::from_utf8(&ctr).unwrap().trim(), "2000");
        let cas = get(&e, &ts, format!("cas{k}").as_bytes()).unwrap().0;
        assert_eq!(std::str::from_utf8(&cas).unwrap().trim(), "2000");
        let app = get(&e, &ts, format!("app{k}").as_bytes()).unwrap().0;
        assert_eq!(app.len(), 2000);
        for t in 0..4u8 {
            assert_eq!(app.iter().filter(|&&c| c == b'a' + t).count(), 500);
        }
    }
    e.check_invariants().unwrap();
}

#[test]
fn concurrent_mixed_load_with_eviction_keeps_values_whole() {
    let (e, _) = engine(Config {
        mem_limit: 3 * 1024 * 1024,
        ..Config::default()
    });
    e.start();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || {
                let ts = e.new_thread_stats();
                let mut x = t + 1;
                for _ in 0..40_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = format!("k{}", x % 5000);
                    let len = (x % 3000) as usize;
                    // Each value is its key's byte pattern repeated, so a
                    // torn or mixed-up value is visible.
                    let fill = (x % 5000 % 251) as u8;
                    match x % 4 {
                        0 | 1 => {
                            if let Some((v, _, _)) = get(&e, &ts, k.as_bytes()) {
                                let f = (k[1..].parse::<u64>().unwrap() % 251) as u8;
                                assert!(v.iter().all(|&b| b == f), "torn value for {k}");
                            }
                        }
                        2 => {
                            e.store(StoreMode::Set, k.as_bytes(), 0, 0, &vec![fill; len], 0, &ts);
                        }
                        _ => {
                            e.delete(k.as_bytes(), &ts);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    e.shutdown();
    e.check_invariants().unwrap();
    assert_eq!(e.count_linked(), e.stats().curr_items);
    // Past the limit only by first pages, one per class at most, as
    // memcached allows them.
    let classes = e
        .stats_slabs()
        .iter()
        .filter(|(k, _)| k.ends_with(":total_pages"))
        .count() as u64;
    assert!(e.stats().total_malloced <= (3 + classes) * 1024 * 1024);
}

#[test]
fn key_slot_does_compound_meta_steps_atomically() {
    let (e, ts) = small();
    {
        // Vivify on miss: an empty item, win token handed out.
        let mut s = e.lock_key(b"v", &ts);
        assert!(!s.exists());
        assert!(matches!(
            s.store(StoreMode::Add, 0, 30, b"", 0, None),
            StoreOutcome::Stored { .. }
        ));
        s.set_win_sent(true);
        let it = s.item().unwrap();
        assert!(it.win_sent() && !it.stale() && it.value_len() == 0);
    }
    {
        // Explicit new CAS (meta E), then invalidate: stale with a bumped CAS.
        let mut s = e.lock_key(b"v", &ts);
        assert_eq!(
            s.store(StoreMode::Set, 5, 0, b"data", 0, Some(777)),
            StoreOutcome::Stored { cas: 777 }
        );
        let c = s.next_cas();
        s.set_cas(c);
        s.set_stale(true);
        let it = s.item().unwrap();
        assert!(it.stale() && !it.win_sent());
        assert_eq!((it.cas(), it.flags()), (c, 5));
    }
    {
        let mut s = e.lock_key(b"n", &ts);
        assert_eq!(s.arith(true, 1, None), ArithOutcome::NotFound);
        s.store(StoreMode::Add, 0, 0, b"10", 0, None);
        assert_eq!(s.arith(true, 5, Some(42)), ArithOutcome::Value(15));
        assert_eq!(s.item().unwrap().cas(), 42);
        assert!(s.delete());
        assert!(!s.exists());
    }
    e.check_invariants().unwrap();
}

#[test]
fn admin_calls_cachedump_unlink_tune() {
    let (e, ts) = small();
    e.start();
    set(&e, &ts, b"a", b"12345");
    e.store(StoreMode::Set, b"b", 0, 100, b"x", 0, &ts);
    // New items sit in HOT; cachedump lists COLD, as memcached's does.
    let mut n = 0;
    e.cachedump(1, 0, |_| {
        n += 1;
        true
    });
    assert_eq!(n, 0);
    e.unlink_key(b"a");
    assert!(get(&e, &ts, b"a").is_none());
    assert_eq!(e.stats().delete_hits + e.stats().delete_misses, 0);
    assert_eq!(e.lru_tune(10, 30, 0.1, 2.0), Ok(()));
    assert_eq!(e.lru_tune(50, 40, 0.1, 2.0), Err(LruTuneError::PctsOver80));
    assert_eq!((e.config().hot_lru_pct, e.config().warm_lru_pct), (10, 30));
    e.lru_temp_ttl(30);
    assert!(e.config().temp_lru);
    e.flush_all(0);
    assert!(e.oldest_live() > 0);
    e.shutdown();
}

/// `lru tune` checks as memcached's `process_lru_command` does: the sum
/// first (in 32 bits), then the factors; a 0 percentage is fine; a refused
/// call changes nothing.
#[test]
fn lru_tune_refuses_what_memcached_refuses() {
    let (e, _ts) = small();
    let tuned = |e: &Engine| {
        let c = e.config();
        (
            c.hot_lru_pct,
            c.warm_lru_pct,
            c.hot_max_factor,
            c.warm_max_factor,
        )
    };
    assert_eq!(e.lru_tune(0, 0, 0.5, 1.5), Ok(()));
    assert_eq!(tuned(&e), (0, 0, 0.5, 1.5));
    assert_eq!(e.lru_tune(40, 40, 1.0, 1.0), Ok(()));
    assert_eq!(e.lru_tune(41, 40, 1.0, 1.0), Err(LruTuneError::PctsOver80));
    // The sum is checked before the factors.
    assert_eq!(e.lru_tune(81, 0, 0.0, -1.0), Err(LruTuneError::PctsOver80));
    assert_eq!(
        e.lru_tune(10, 10, 0.0, 1.0),
        Err(LruTuneError::FactorNotPositive)
    );
    assert_eq!(
        e.lru_tune(10, 10, 1.0, -0.5),
        Err(LruTuneError::FactorNotPositive)
    );
    assert_eq!(tuned(&e), (40, 40, 1.0, 1.0));
    // memcached adds the two as uint32_t, so this sum wraps to 0.
    assert_eq!(e.lru_tune(u32::MAX, 1, 1.0, 1.0), Ok(()));
    assert_eq!(e.config().hot_lru_pct, u32::MAX);
    assert_eq!(
        LruTuneError::PctsOver80.message(),
        "ERROR hot and warm pcts must not exceed 80"
    );
    assert_eq!(
        LruTuneError::FactorNotPositive.message(),
        "ERROR hot/warm age factors must be greater than 0"
    );
    e.check_invariants().unwrap();
}

/// `lru mode` through the public interface, with the maintainer running:
/// after a switch to flat, HOT and WARM empty into COLD on their own.
#[test]
fn lru_mode_flat_drains_with_the_maintainer() {
    let (e, ts) = small();
    e.start();
    for i in 0..200u32 {
        set(&e, &ts, format!("m{i:03}").as_bytes(), b"v");
    }
    e.set_lru_segmented(false);
    assert!(!e.config().lru_segmented);
    let count = |name: &str| -> u64 {
        e.stats_items()
            .iter()
            .find(|(k, _)| k == &format!("items:1:{name}"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count("number_cold") != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(count("number_cold"), 200);
    assert_eq!(count("number_hot") + count("number_warm"), 0);
    e.check_invariants().unwrap();
    e.shutdown();
}

#[test]
fn cachedump_lists_cold_items() {
    let (e, ts) = engine(Config {
        mem_limit: 2 * 1024 * 1024,
        ..Config::default()
    });
    e.start();
    for i in 0..40_000u32 {
        set(&e, &ts, format!("key:{i:06}").as_bytes(), b"0123456789");
    }
    // The maintainer moves items past HOT's share into COLD.
    for _ in 0..200 {
        if e.stats_items()
            .iter()
            .any(|(k, v)| k == "items:1:number_cold" && v != "0")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut items = Vec::new();
    e.cachedump(1, 2, |r| {
        items.push((r.key.to_vec(), r.value_len, r.exptime));
        true
    });
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].0.starts_with(b"key:"), "{items:?}");
    assert_eq!((items[0].1, items[0].2), (10, None));
    // Stopping early lists no more.
    let mut n = 0;
    e.cachedump(1, 0, |_| {
        n += 1;
        false
    });
    assert_eq!(n, 1);
    e.shutdown();
}

/// The automover follows a shifting size mix: memory filled with small
/// items, then the traffic moves to large ones; the large items' class
/// evicts, and pages move to it from the small items' class, which has
/// old, untouched items.
#[test]
fn automove_gives_pages_to_the_class_that_evicts() {
    // With the automover off, the large class keeps the one page it took
    // when it had none; with it on, it gains more.
    assert_eq!(shift_size_mix(0, 3), 1);
    assert!(shift_size_mix(2, 20) >= 4, "large class got no pages");
}

/// Fills memory with small items, then writes large ones for up to
/// `secs` seconds (or until their class has 4 pages); returns the large
/// class's page count.
fn shift_size_mix(automove: u32, secs: u64) -> usize {
    let (e, ts) = engine(Config {
        mem_limit: 8 * 1024 * 1024,
        slab_automove: automove,
        slab_automove_window: 3,
        ..Config::default()
    });
    e.start();
    let pages = |e: &Engine, class_of_size: usize| -> usize {
        let id = e
            .slab_classes()
            .iter()
            .find(|c| c.chunk_size as usize >= class_of_size)
            .unwrap()
            .id;
        e.stats_slabs()
            .iter()
            .find(|(k, _)| *k == format!("{id}:total_pages"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0)
    };
    for i in 0..80_000u32 {
        set(&e, &ts, format!("s{i:06}").as_bytes(), &[b's'; 60]);
    }
    let small_before = pages(&e, 28 + 7 + 60);
    assert!(small_before >= 6, "{small_before}");
    let big = vec![b'b'; 4000];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut i = 0u32;
    while std::time::Instant::now() < deadline && pages(&e, 28 + 7 + 4000) < 4 {
        for _ in 0..200 {
            set(&e, &ts, format!("b{i:06}").as_bytes(), &big);
            i += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let large = pages(&e, 28 + 7 + 4000);
    if automove > 0 {
        assert!(pages(&e, 28 + 7 + 60) < small_before);
        assert!(e.stats().slabs_moved >= 3);
    }
    e.shutdown();
    e.check_invariants().unwrap();
    large
}

/// memcached's automover (mode 1) after `flush_all`: the class that held
/// everything has only free chunks; once a window passes without it
/// growing or evicting, its pages go to the global pool one after another
/// (not one a second) and the class now written takes them from there.
#[test]
fn idle_class_pages_drain_to_the_pool_for_a_refill() {
    let (e, ts) = engine(Config {
        mem_limit: 32 * 1024 * 1024,
        slab_automove_window: 3,
        ..Config::default()
    });
    e.start();
    let pages = |e: &Engine, size: usize| -> usize {
        let id = e
            .slab_classes()
            .iter()
            .find(|c| c.chunk_size as usize >= size)
            .unwrap()
            .id;
        e.stats_slabs()
            .iter()
            .find(|(k, _)| *k == format!("{id}:total_pages"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0)
    };
    for i in 0..600_000u32 {
        set(&e, &ts, format!("s{i:06}").as_bytes(), &[b's'; 60]);
    }
    assert_eq!(pages(&e, 28 + 7 + 60), 32);
    e.flush_all(0);
    let big = vec![b'b'; 4000];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let mut i = 0u32;
    // Pages arrive together once the window has passed: most of the
    // limit, not one page per second.
    while std::time::Instant::now() < deadline && pages(&e, 28 + 7 + 4000) < 24 {
        for _ in 0..500 {
            set(&e, &ts, format!("b{i:06}").as_bytes(), &big);
            i += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(pages(&e, 28 + 7 + 4000) >= 24, "{:?}", e.stats_slabs());
    assert!(pages(&e, 28 + 7 + 60) <= 3);
    e.shutdown();
    e.check_invariants().unwrap();
}
