//! The walk's own checks, behind the page checksums: files whose pages
//! were changed and then sealed again with matching checksums (what a bug
//! writing a wrong header would leave) must never panic, read out of
//! bounds or leave an inconsistent engine.

use std::path::PathBuf;

use super::{meta_path, page_sum, Meta, RestartOutcome};
use crate::config::Config;
use crate::engine::SlabEngine;
use crate::ops::{StoreMode, StoreOutcome};

fn cfg(file: PathBuf) -> Config {
    Config {
        mem_limit: 64 << 20,
        memory_file: Some(file),
        lru_segmented: false,
        ..Config::default()
    }
}

fn fill(e: &SlabEngine) {
    let ts = e.new_thread_stats();
    for i in 0..300usize {
        let len = [3, 40, 200, 900, 3_000, 30_000, 600_000][i % 7];
        let len = if i % 50 == 6 { len } else { len.min(30_000) };
        let v: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        let r = e.store(
            StoreMode::Set,
            format!("k{i}").as_bytes(),
            i as u32,
            0,
            &v,
            0,
            &ts,
        );
        assert!(matches!(r, StoreOutcome::Stored { .. }), "{r:?}");
    }
}

fn rand(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn resealed_damage_in_headers_never_panics() {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let file = base.join(format!("mnemo-reseal-{}", std::process::id()));
    let mut cold = 0;
    for seed in 1..=40u64 {
        let e = SlabEngine::new(cfg(file.clone())).expect("engine");
        fill(&e);
        e.shutdown();
        e.save_memory_file().expect("save");
        let sizes: Vec<usize> = e
            .slab_classes()
            .iter()
            .map(|c| c.chunk_size as usize)
            .collect();
        drop(e);
        let mut m = Meta::parse(&std::fs::read(meta_path(&file)).expect("meta")).expect("parse");
        let mut bytes = std::fs::read(&file).expect("file");
        let mut x = seed * 0x9E37_79B9;
        // A few header words of random linked items (meta word, offset
        // 24 with CAS, has LINKED).
        for _ in 0..1 + seed % 3 {
            let used: Vec<_> = m.pages.iter().filter(|p| p.class.is_some()).collect();
            let mut at = None;
            for _ in 0..10_000 {
                let p = used[rand(&mut x) as usize % used.len()];
                let size = sizes[p.class.unwrap_or(0) as usize];
                let chunk = rand(&mut x) as usize % ((1 << 20) / size);
                let start = p.off as usize * (1 << 20) + chunk * size;
                let meta = bytes
                    .get(start + 24..start + 28)
                    .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                if meta & crate::item::LINKED != 0 {
                    at = Some(start + rand(&mut x) as usize % 40);
                    break;
                }
            }
            let Some(at) = at else { continue };
            let noise = rand(&mut x).to_le_bytes();
            let n = (rand(&mut x) % 8 + 1) as usize;
            for (i, b) in noise.iter().take(n).enumerate() {
                if let Some(t) = bytes.get_mut(at + i) {
                    *t = *b;
                }
            }
        }
        std::fs::write(&file, &bytes).expect("write file");
        for p in m.pages.iter_mut().filter(|p| p.class.is_some()) {
            let off = p.off as usize * (1 << 20);
            p.sum = page_sum(&bytes[off..off + (1 << 20)]);
        }
        std::fs::write(meta_path(&file), m.encode()).expect("write meta");
        let e = SlabEngine::new(cfg(file.clone())).expect("engine");
        if matches!(e.restart_outcome(), RestartOutcome::Cold(_)) {
            cold += 1;
        }
        e.check_invariants().expect("consistent");
        fill(&e);
        e.check_invariants().expect("usable");
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(meta_path(&file));
    // Most damage lands in a header word the walk checks.
    assert!(cold > 12, "only {cold} of 40 caught");
}
