//! Issue #15: client bytes past the parsers. Each input of the committed
//! fuzz corpora (`fuzz/corpus/{text,meta,binary}`, grown by the parser
//! fuzz targets) and a bounded, seeded set of mutations and splices of
//! them run through the server's one dispatch (`dispatch::run_datagram`,
//! the same `step` a stream runs, with replies copied as over UDP)
//! against a real engine, whose state carries over from input to input.
//! After every input: no panic, no item left pinned, and the engine's own
//! consistency walk (`Engine::check_invariants`: free lists, LRUs, index
//! and pages agree, pages within the limit) passes.
//!
//! It runs as a unit test on stable
//! (`cargo test -p mnemo-server --lib fuzz_replay`).

use std::path::Path;
use std::sync::Arc;

use crate::dispatch::{run_datagram, Ctx};
use crate::fuzzing::shared;
use crate::out::Out;
use crate::shared::Shared;

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut inputs = Vec::new();
    for target in ["text", "meta", "binary"] {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            inputs.push(std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
        }
    }
    // Large values: chained items stored, read, appended to, deleted.
    let big = vec![b'v'; 40_000];
    let mut set = b"set big 5 0 40000\r\n".to_vec();
    set.extend_from_slice(&big);
    set.extend_from_slice(b"\r\nget big big\r\nappend big 0 0 3\r\nabc\r\nmg big v k s\r\n");
    inputs.push(set);
    let mut ms = b"ms huge 600000 T0\r\n".to_vec();
    ms.extend(vec![b'h'; 600_000]);
    ms.extend_from_slice(b"\r\nmg huge v\r\nget huge\r\nmd huge\r\n");
    inputs.push(ms);
    inputs
}

/// splitmix64: the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of `a`: byte flips, inserted digits and separators, cuts,
/// or a splice with `b`.
fn mutate(r: &mut Rng, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    for _ in 0..1 + r.below(4) {
        match r.below(5) {
            0 if !v.is_empty() => {
                let i = r.below(v.len());
                v[i] ^= 1 << r.below(8);
            }
            1 => {
                let i = r.below(v.len() + 1);
                let bytes: &[u8] =
                    [&b"\r\n"[..], b" ", b"0", b"9999999999", b"-1", b"\x80"][r.below(6)];
                v.splice(i..i, bytes.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = r.below(v.len());
                v.truncate(i);
            }
            _ => {
                let i = r.below(v.len() + 1);
                let j = r.below(b.len() + 1);
                v.truncate(i);
                v.extend_from_slice(&b[j..]);
            }
        }
    }
    v
}

fn run(sh: &Shared, inputs: &[Vec<u8>], mutations: usize) {
    let ts = sh.engine.new_thread_stats();
    let ws = Arc::clone(&sh.workers[0]);
    let mut ctx = Ctx {
        shared: sh,
        ts: &ts,
        ws: &ws,
        fd: -1,
        pending_output: false,
        // As a datagram: no watch ring of its own, no buffer budget.
        ring: usize::MAX,
        budget: None,
    };
    // As UDP runs it: values copied into the reply, none referenced (the
    // pinned path is the stress test's, tests/stress.rs).
    let mut out = Out::new(false);
    let mut r = Rng(15);
    let mut replied = 0usize;
    let total = inputs.len() + mutations;
    for n in 0..total {
        let mutated;
        let input: &[u8] = if n < inputs.len() {
            &inputs[n]
        } else {
            let a = &inputs[r.below(inputs.len())];
            let b = &inputs[r.below(inputs.len())];
            mutated = mutate(&mut r, a, b);
            &mutated
        };
        run_datagram(&mut ctx, input, &mut out, |reply| replied += reply.len());
        let show = || String::from_utf8_lossy(&input[..input.len().min(200)]).into_owned();
        assert_eq!(
            sh.engine.pinned_items(),
            0,
            "input {n} left an item pinned: {:?}",
            show()
        );
        if let Err(e) = sh.engine.check_invariants() {
            panic!("input {n}: engine inconsistent: {e}; input {:?}", show());
        }
    }
    assert!(replied > 0, "no input was answered");
}

#[test]
fn corpus_and_mutations_keep_the_engine_consistent() {
    let sh = shared(&["-m", "8", "-I", "1m"]);
    let inputs = corpus();
    run(&sh, &inputs, 3000);
}

/// The same under binary-only and text-only servers, where the other
/// protocol's bytes are errors from the first byte.
#[test]
fn forced_protocols_keep_the_engine_consistent() {
    let inputs = corpus();
    for proto in ["binary", "ascii"] {
        let sh = shared(&["-m", "8", "-B", proto]);
        run(&sh, &inputs, 500);
    }
}
