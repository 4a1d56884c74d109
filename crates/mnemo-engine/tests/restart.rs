//! Warm restart through the engine's interface: a memory file saved by a
//! graceful stop brings back every item (value, flags, CAS, expiry, last
//! access, LRU order); anything else (no save, other settings, a damaged
//! file) starts cold without panicking and leaves a consistent engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mnemo_engine::{
    Config, Engine, GetMode, MetadumpTarget, RestartOutcome, StoreMode, StoreOutcome, ThreadStats,
};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("mnemo-restart-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
    fn file(&self) -> PathBuf {
        self.0.join("cache")
    }
    fn meta(&self) -> PathBuf {
        self.0.join("cache.meta")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cfg(dir: &Dir) -> Config {
    Config {
        mem_limit: 64 << 20,
        memory_file: Some(dir.file()),
        // Flat: items link into COLD, whose order cachedump shows.
        lru_segmented: false,
        ..Config::default()
    }
}

fn open(cfg: Config) -> (Arc<Engine>, Arc<ThreadStats>) {
    let e = Engine::new(cfg).expect("engine");
    let ts = e.new_thread_stats();
    (e, ts)
}

fn value(i: usize) -> Vec<u8> {
    // Sizes across many classes, and two chained (past the 512 KB chunk).
    let len = match i % 7 {
        0 => 0,
        1 => 10,
        2 => 300,
        3 => 5_000,
        4 => 40_000,
        5 => 200_000,
        _ => 10,
    };
    let len = if i == 3 || i == 10 { 700_000 + i } else { len };
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

fn fill(e: &Engine, ts: &ThreadStats, n: usize) {
    for i in 0..n {
        let exp = if i % 3 == 0 { 0 } else { 1000 + i as i64 };
        let r = e.store(
            StoreMode::Set,
            format!("key:{i}").as_bytes(),
            i as u32 * 7,
            exp,
            &value(i),
            0,
            ts,
        );
        assert!(matches!(r, StoreOutcome::Stored { .. }), "{i}: {r:?}");
    }
    // Some read, so FETCHED and last access differ between items.
    for i in (0..n).step_by(5) {
        assert!(get(e, ts, i).is_some());
    }
}

type Got = (Vec<u8>, u32, u64);

fn get(e: &Engine, ts: &ThreadStats, i: usize) -> Option<Got> {
    e.get(format!("key:{i}").as_bytes(), GetMode::Get, ts, |it| {
        let mut v = Vec::new();
        it.write_value(&mut v);
        (v, it.flags(), it.cas())
    })
}

/// Every item's metadata as `lru_crawler metadump` gives it, sorted.
fn dump(e: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    e.lru_crawler_metadump(MetadumpTarget::All, |r| {
        out.push(format!(
            "{} exp={:?} la={} cas={} fetch={} cls={} size={}",
            String::from_utf8_lossy(r.key),
            r.exptime,
            r.last_access,
            r.cas,
            r.fetched,
            r.class_id,
            r.total_size
        ))
    })
    .expect("metadump");
    out.sort();
    out
}

/// Each class's COLD LRU in order (cachedump walks it from the head).
fn cold_order(e: &Engine) -> Vec<Vec<String>> {
    (1..=e.slab_classes().len() as u32)
        .map(|c| {
            let mut keys = Vec::new();
            e.cachedump(c, 0, |r| {
                keys.push(String::from_utf8_lossy(r.key).into_owned());
                true
            });
            keys
        })
        .collect()
}

const N: usize = 60;

/// Fills an engine over the memory file and stops it gracefully; returns
/// what a warm restart must bring back.
fn saved(dir: &Dir, c: Config) -> (Vec<Option<Got>>, Vec<String>, Vec<Vec<String>>) {
    let (e, ts) = open(c);
    assert_eq!(
        *e.restart_outcome(),
        RestartOutcome::Cold(vec![
            "[restart] no metadata save file, starting with a clean cache".into()
        ])
    );
    fill(&e, &ts, N);
    let items: Vec<_> = (0..N).map(|i| get(&e, &ts, i)).collect();
    assert!(items.iter().all(Option::is_some));
    let d = dump(&e);
    let order = cold_order(&e);
    e.shutdown();
    e.save_memory_file().expect("save");
    assert!(dir.meta().exists());
    (items, d, order)
}

#[test]
fn a_graceful_stop_brings_every_item_back() {
    let dir = Dir::new("warm");
    let (items, d, order) = saved(&dir, cfg(&dir));
    let (e, ts) = open(cfg(&dir));
    match e.restart_outcome() {
        RestartOutcome::Warm { items, .. } => assert_eq!(*items, N as u64),
        other => panic!("not warm: {other:?}"),
    }
    // The metadata is gone as soon as the file is in use again.
    assert!(!dir.meta().exists());
    e.check_invariants().expect("consistent");
    // Metadata first: reads would change last access.
    assert_eq!(dump(&e), d);
    assert_eq!(cold_order(&e), order);
    let back: Vec<_> = (0..N).map(|i| get(&e, &ts, i)).collect();
    assert!(back == items, "items differ after the restart");
    // New CAS values continue past every restored one.
    let max = items.iter().flatten().map(|g| g.2).max().unwrap_or(0);
    let r = e.store(StoreMode::Set, b"new", 0, 0, b"v", 0, &ts);
    assert!(matches!(r, StoreOutcome::Stored { .. }));
    let cas = e
        .get(b"new", GetMode::Get, &ts, |it| it.cas())
        .expect("new");
    assert!(cas > max, "{cas} <= {max}");
    // The cache goes on working: overwrite, delete, refill.
    fill(&e, &ts, N);
    e.check_invariants().expect("consistent after refill");
}

#[test]
fn without_a_graceful_stop_the_next_start_is_cold() {
    let dir = Dir::new("crash");
    let (e, ts) = open(cfg(&dir));
    fill(&e, &ts, N);
    drop(e);
    let (e, ts) = open(cfg(&dir));
    assert!(matches!(e.restart_outcome(), RestartOutcome::Cold(_)));
    assert!(get(&e, &ts, 1).is_none());
    // Also after a warm start that then crashed: the metadata is gone.
    drop(e);
    saved(&dir, cfg(&dir));
    let (e, _) = open(cfg(&dir));
    assert!(matches!(e.restart_outcome(), RestartOutcome::Warm { .. }));
    drop(e);
    let (e, _) = open(cfg(&dir));
    assert!(matches!(e.restart_outcome(), RestartOutcome::Cold(_)));
}

fn cold_with(dir: &Dir, c: Config, expect: &str) {
    let (e, ts) = open(c);
    match e.restart_outcome() {
        RestartOutcome::Cold(lines) => {
            assert!(lines.iter().any(|l| l.contains(expect)), "{lines:?}");
        }
        other => panic!("not cold: {other:?}"),
    }
    assert!(!dir.meta().exists());
    assert_eq!(e.stats().curr_items, 0);
    e.check_invariants().expect("consistent");
    fill(&e, &ts, N);
    e.check_invariants().expect("usable");
}

#[test]
fn other_settings_start_cold() {
    let dir = Dir::new("settings");
    for (c, name) in [
        (
            Config {
                mem_limit: 128 << 20,
                ..cfg(&dir)
            },
            "[maxbytes]",
        ),
        (
            Config {
                item_size_max: 2 << 20,
                ..cfg(&dir)
            },
            "[item_size_max]",
        ),
        (
            Config {
                growth_factor: 1.5,
                ..cfg(&dir)
            },
            "[growth_factor]",
        ),
        (
            Config {
                chunk_size: 64,
                ..cfg(&dir)
            },
            "[chunk_size]",
        ),
        (
            Config {
                use_cas: false,
                ..cfg(&dir)
            },
            "[use_cas]",
        ),
        (
            Config {
                slab_chunk_max: 256 << 10,
                ..cfg(&dir)
            },
            "[slab_chunk_size_max]",
        ),
    ] {
        saved(&dir, cfg(&dir));
        cold_with(&dir, c, name);
    }
}

#[test]
fn damaged_files_start_cold() {
    let dir = Dir::new("damage");
    // Truncated memory file.
    saved(&dir, cfg(&dir));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file())
        .expect("file");
    f.set_len(4 << 20).expect("truncate");
    drop(f);
    cold_with(&dir, cfg(&dir), "memory file is");
    // Garbage metadata.
    saved(&dir, cfg(&dir));
    std::fs::write(dir.meta(), b"\x00\xffgarbage\n").expect("write");
    cold_with(&dir, cfg(&dir), "corrupt metadata");
    // Truncated metadata.
    saved(&dir, cfg(&dir));
    let m = std::fs::read(dir.meta()).expect("meta");
    std::fs::write(dir.meta(), &m[..m.len() / 2]).expect("write");
    cold_with(&dir, cfg(&dir), "corrupt metadata");
    // Another version's metadata (re-sealed so only the version differs).
    saved(&dir, cfg(&dir));
    let m = String::from_utf8(std::fs::read(dir.meta()).expect("meta")).expect("text");
    let body = m.rsplit_once("checksum").expect("sum").0;
    let body = body.replacen(
        &format!("version {}", env!("CARGO_PKG_VERSION")),
        "version 9.9.9",
        1,
    );
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    std::fs::write(dir.meta(), format!("{body}checksum {h:016x}\n")).expect("write");
    cold_with(&dir, cfg(&dir), "9.9.9");
}

/// Overwrites `len` bytes of the memory file at `at` with noise.
fn scribble(path: &Path, at: u64, len: usize, seed: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut x = seed | 1;
    let noise: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("file");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&noise).expect("write");
}

#[test]
fn scribbled_pages_never_panic_or_break_the_engine() {
    let dir = Dir::new("scribble");
    // A whole page of noise where items were: the walk must refuse it.
    saved(&dir, cfg(&dir));
    scribble(&dir.file(), 0, 1 << 20, 7);
    cold_with(&dir, cfg(&dir), "does not match its metadata");
    // Smaller damage anywhere, in headers or values: cold, or warm with
    // every value as it was (the damage missed every used page); the
    // engine comes up consistent and keeps working.
    for seed in 1..40u64 {
        let (items, _, _) = saved(&dir, cfg(&dir));
        let at = (seed * 2_654_435_761) % (16 << 20);
        scribble(&dir.file(), at & !7, 32, seed);
        let (e, ts) = open(cfg(&dir));
        if let RestartOutcome::Warm { .. } = e.restart_outcome() {
            let back: Vec<_> = (0..N).map(|i| get(&e, &ts, i)).collect();
            assert!(back == items, "seed {seed}: a changed value was served");
        }
        e.check_invariants().expect("consistent");
        fill(&e, &ts, N);
        e.check_invariants().expect("usable");
    }
}

/// Items invalidated by `flush_all` before the stop stay invisible after
/// it (they are still linked in the file until reclaimed), and a delayed
/// flush still falls due.
#[test]
fn flush_all_before_the_stop_still_holds_after_it() {
    let dir = Dir::new("flush");
    let (e, ts) = open(cfg(&dir));
    fill(&e, &ts, N);
    e.flush_all(0);
    let r = e.store(StoreMode::Set, b"after", 0, 0, b"v", 0, &ts);
    assert!(matches!(r, StoreOutcome::Stored { .. }));
    e.shutdown();
    e.save_memory_file().expect("save");
    drop(e);
    let (e, ts) = open(cfg(&dir));
    assert!(matches!(e.restart_outcome(), RestartOutcome::Warm { .. }));
    for i in 0..N {
        assert!(
            get(&e, &ts, i).is_none(),
            "key:{i} came back after flush_all"
        );
    }
    assert!(e.get(b"after", GetMode::Get, &ts, |_| ()).is_some());
}
