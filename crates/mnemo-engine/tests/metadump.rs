//! `lru_crawler metadump` walked in steps (as the server streams it): the
//! same bytes as a one-shot dump, and what the walk promises when the
//! cache changes between steps.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mnemo_engine::{
    Config, Engine, ItemRecord, MetadumpCursor, MetadumpTarget, StoreMode, StoreOutcome,
    ThreadStats,
};

fn engine(mem_limit: usize) -> (Arc<Engine>, Arc<ThreadStats>) {
    let e = Engine::new(Config {
        mem_limit,
        ..Config::default()
    })
    .expect("config");
    let ts = e.new_thread_stats();
    (e, ts)
}

fn set(e: &Engine, ts: &ThreadStats, key: &str, val: &[u8]) {
    let r = e.store(StoreMode::Set, key.as_bytes(), 0, 0, val, 0, ts);
    assert!(matches!(r, StoreOutcome::Stored { .. }), "{key}: {r:?}");
}

/// A metadump line as the server writes it, for the keys these tests use
/// (which need no escaping).
fn line(r: &ItemRecord<'_>, out: &mut Vec<u8>) {
    let exp = r.exptime.map_or("-1".to_string(), |e| e.to_string());
    let fetch = if r.fetched { "yes" } else { "no" };
    out.extend_from_slice(
        format!(
            "key={} exp={exp} la={} cas={} fetch={fetch} cls={} size={}\n",
            String::from_utf8_lossy(r.key),
            r.last_access,
            r.cas,
            r.class_id,
            r.total_size
        )
        .as_bytes(),
    );
}

fn one_shot(e: &Engine, target: MetadumpTarget) -> Vec<u8> {
    let mut out = Vec::new();
    e.lru_crawler_metadump(target, |r| line(r, &mut out))
        .expect("metadump");
    out.extend_from_slice(b"END\r\n");
    out
}

/// Runs a dump as the server streams it with the smallest pause: each
/// step walks pages (or shards) until it has listed something; returns
/// each step's output.
fn stepped(e: &Engine, target: MetadumpTarget, mut between: impl FnMut(usize)) -> Vec<Vec<u8>> {
    let mut cursor = MetadumpCursor::new(target);
    let mut steps = Vec::new();
    loop {
        let mut out = Vec::new();
        let mut done = false;
        while out.is_empty() && !done {
            done = e
                .lru_crawler_metadump_step(&mut cursor, |r| line(r, &mut out))
                .expect("metadump step");
        }
        if done {
            out.extend_from_slice(b"END\r\n");
            assert!(cursor.is_done());
            steps.push(out);
            return steps;
        }
        steps.push(out);
        between(steps.len() - 1);
    }
}

fn keys_of(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).expect("utf8 dump");
    text.lines()
        .filter(|l| *l != "END")
        .map(|l| {
            let k = l.split(' ').next().expect("field");
            k.strip_prefix("key=").expect("key= first").to_string()
        })
        .collect()
}

/// Items in two classes, each over several pages.
fn fill(e: &Engine, ts: &ThreadStats) -> (usize, Vec<u32>) {
    for i in 0..30_000 {
        set(e, ts, &format!("s{i:06}"), b"v");
    }
    for i in 0..6_000 {
        set(e, ts, &format!("l{i:06}"), &[b'x'; 400]);
    }
    let mut classes: Vec<u32> = e
        .stats_slabs()
        .iter()
        .filter(|(k, v)| k.ends_with(":total_pages") && v != "0")
        .map(|(k, _)| k.split(':').next().unwrap().parse().unwrap())
        .collect();
    classes.sort();
    (36_000, classes)
}

#[test]
fn stepped_dump_equals_one_shot() {
    let (e, ts) = engine(64 << 20);
    let (n, classes) = fill(&e, &ts);
    assert_eq!(classes.len(), 2, "{classes:?}");
    let targets = [
        MetadumpTarget::All,
        MetadumpTarget::Hash,
        MetadumpTarget::Classes(classes.clone()),
        // Reversed order and a class with no pages.
        MetadumpTarget::Classes(vec![classes[1], 40, classes[0]]),
    ];
    for target in targets {
        let whole = one_shot(&e, target.clone());
        assert!(whole.ends_with(b"END\r\n"));
        let steps = stepped(&e, target.clone(), |_| {});
        let nonempty = steps.iter().filter(|s| !s.is_empty()).count();
        // One page (or shard) per step: there are several pages per class.
        assert!(nonempty > 6, "{target:?}: only {nonempty} steps");
        assert!(steps[..steps.len() - 1]
            .iter()
            .all(|s| !s.ends_with(b"END\r\n")));
        let joined = steps.concat();
        assert_eq!(keys_of(&joined).len(), n, "{target:?}");
        if let MetadumpTarget::Classes(ids) = &target {
            if ids[0] != classes[0] {
                // Class order follows the request: large items come first.
                assert!(joined.starts_with(b"key=l"));
            }
        }
        assert!(joined == whole, "{target:?}: stepped dump differs");
    }
}

#[test]
fn paused_dump_never_repeats_a_key_or_lists_one_deleted_before_its_visit() {
    for target in [MetadumpTarget::All, MetadumpTarget::Hash] {
        let (e, ts) = engine(64 << 20);
        let (_, _) = fill(&e, &ts);
        let mut live: Vec<String> = (0..30_000)
            .map(|i| format!("s{i:06}"))
            .chain((0..6_000).map(|i| format!("l{i:06}")))
            .collect();
        // Key -> the last step whose output may list it.
        let mut deleted_after: HashMap<String, usize> = HashMap::new();
        let mut added = 0;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let steps = stepped(&e, target.clone(), |step| {
            // Keep some items untouched to the end.
            for _ in 0..400.min(live.len().saturating_sub(5_000)) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let k = live.swap_remove(seed as usize % live.len());
                assert!(e.delete(k.as_bytes(), &ts));
                deleted_after.insert(k, step);
            }
            for _ in 0..400 {
                set(&e, &ts, &format!("n{added:06}"), b"new");
                added += 1;
            }
        });
        assert!(deleted_after.len() > 1000, "too few steps to test");
        let mut seen = HashSet::new();
        for (step, out) in steps.iter().enumerate() {
            for k in keys_of(out) {
                if let Some(&last) = deleted_after.get(&k) {
                    assert!(
                        step <= last,
                        "{target:?}: {k} deleted after step {last}, listed in {step}"
                    );
                }
                assert!(seen.insert(k.clone()), "{target:?}: {k} listed twice");
            }
        }
        // Items that were there all along are all listed.
        for k in &live {
            assert!(seen.contains(k), "{target:?}: {k} missing");
        }
        e.check_invariants().unwrap();
    }
}

#[test]
fn dump_paused_across_page_moves_lists_only_real_items() {
    let (e, ts) = engine(8 << 20);
    e.start();
    let known: HashSet<String> = (0..40_000).map(|i| format!("a{i:06}")).collect();
    for k in &known {
        set(&e, &ts, k, &[b'a'; 50]);
    }
    let src: i32 = e.stats_slabs()[0]
        .0
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let steps = stepped(&e, MetadumpTarget::All, |step| {
        // Busy while a move is under way: then this step just waits.
        let _ = e.slabs_reassign(src, 0);
        if step == 0 {
            // At least one move lands between two steps, however slowly a
            // loaded machine schedules the mover thread.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while e.stats().slabs_moved == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    assert!(e.stats().slabs_moved > 0, "no page moved during the dump");
    let joined = steps.concat();
    assert!(joined.ends_with(b"END\r\n"));
    let text = std::str::from_utf8(&joined).unwrap();
    let mut n = 0;
    for l in text.lines().filter(|l| *l != "END") {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 7, "{l}");
        let key = f[0].strip_prefix("key=").unwrap();
        assert!(known.contains(key), "unknown key in {l}");
        assert_eq!(f[1], "exp=-1", "{l}");
        assert_eq!(f[5], format!("cls={src}"), "{l}");
        n += 1;
    }
    // Moves evict what does not fit, so fewer may remain; none is invented.
    assert!(n > 0);
    e.check_invariants().unwrap();
    e.shutdown();
}
